"""Training objectives: the named losses (``Config.loss``) and EMU, built by :func:`build_objective`.

``objective(model, positives, side, generator, weights) -> (loss, logs)`` computes one step's loss for a batch
of positives (B, 3) whose ``side`` ('tail' or 'head') is corrupted; ``weights`` (B,) are the subsampling weights
w = sqrt(1 / (cnt(h, r) + cnt(t, r⁻¹))).  Candidates are always laid out as [true entity, n negatives], so
column 0 of every score matrix is the positive.  Scores come from :class:`emukg.scoring.CandidateScorer`, which uses
the fused native kernel where it can and the model's own score function otherwise.

* ``sigmoid`` (RotatE's; the reference's ``-if_CE 0``): L = (L⁺ + L⁻)/2, L⁺ = −Σ w log σ(s⁺)/Σ w,
  L⁻ = −Σ w Σⱼ pⱼ log σ(−s⁻ⱼ)/Σ w with pⱼ = 1/n, or with ``adversarial`` pⱼ = softmax(α s⁻)ⱼ (detached);
  ``uni_weight``: plain batch means.
* ``ce`` (``-if_CE`` 1 and 2): L_CE = mean_b −log softmax(s_b)₀ over [true, n negatives] — the sampler's
  negatives: fresh unfiltered uniform draws (``sampler='uniform'``, mode 1) or data-side ones (mode 2).
* ``1vsall`` (``-if_CE 3``): L = mean_b (logsumexp_e s(b, e) − s(b, e_b)) over all N entities, for every model:
  scored in entity blocks under ``train_memory_mb`` (:mod:`emukg.objectives.one_vs_all`; its docstring gives the memory).
* EMU (``emu`` = p, loss ``ce``): a second pass on X = [positive, n negatives] (fresh uniform draws with the
  ``uniform`` sampler, the same negatives otherwise), mutated (see :mod:`emukg.emu`), scored, and
  L_EMU = mean_b −Σⱼ yⱼ log softmax(s'_b)ⱼ with y = [1, λ, …, λ]; the step's loss is L_EMU/n + ce_coef·L_CE.
  ``mixup``: one Beta(2, 1) ratio per candidate instead of the mask; ``only_ls``: the soft target without mutation.
* ``adversarial`` with ``ce`` or ``1vsall`` adds the sigmoid loss's self-adversarial negative term L⁻ (weighted
  like it), over the data-side negatives: the loss's own when they are data-side, else a draw of the
  ``adversarial_sampler`` (the reference's ``-adv`` uses its data loader's negatives in every CE mode).
* ``regularization`` r > 0 adds r·(‖E‖₃³ + ‖R‖₃³) with every loss.

Logs (floats): sigmoid ``positive_sample_loss``, ``negative_sample_loss``; ce/1vsall ``ce_loss`` (and
``emu_loss``, ``negative_sample_loss`` when used); always ``loss`` and, with r > 0, ``regularization``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..emu import Mutation
from ..scoring import CandidateScorer, StepWorkspace
from .one_vs_all import one_vs_all_loss


def _true_entity(positives: torch.Tensor, side: str) -> torch.Tensor:
    return positives[:, 2] if side == "tail" else positives[:, 0]


def _weighted_mean(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return x.mean()
    w = weights.to(x.dtype)
    return (w * x).sum() / w.sum()


def negative_term(neg_scores: torch.Tensor, adversarial: bool, temperature: float) -> torch.Tensor:
    """Per positive: −Σⱼ pⱼ log σ(−s⁻ⱼ), pⱼ uniform or the detached self-adversarial softmax(α s⁻)ⱼ."""
    logs = F.logsigmoid(-neg_scores)
    if adversarial:
        p = torch.softmax(neg_scores.detach() * temperature, dim=1)
        return -(p * logs).sum(1)
    return -logs.mean(1)


def soft_label_ce(scores: torch.Tensor, neg_label: float) -> torch.Tensor:
    """mean_b −Σⱼ yⱼ log softmax(s_b)ⱼ with the unnormalised target y = [1, λ, …, λ]."""
    logp = torch.log_softmax(scores, dim=1)
    return -(logp[:, 0] + neg_label * logp[:, 1:].sum(1)).mean()


class Objective:
    """The loss of one training step for a :class:`~emukg.config.Config` (see the module docstring)."""

    def __init__(self, config, kg, sampler, use_kernel: bool | None = None, adversarial_sampler=None,
                 sparse: bool = False):
        self.config = config
        self.sparse = sparse  # row-sparse entity gradients (CandidateScorer(sparse=True)); see emukg.optim
        self.workspace = StepWorkspace() if sparse else None  # memory the row-sparse steps reuse
        self.shard: tuple[int, int] | None = None  # (rank, world size) in data-parallel training; see __call__
        self.loss_name = config.loss
        self.sampler = sampler
        self.adversarial_sampler = adversarial_sampler
        self.fresh = config.fresh_negatives  # CE over unfiltered uniform negatives drawn afresh in every pass
        self.num_entities = kg.num_entities
        self.use_kernel = use_kernel  # None: the fused kernel where possible; False: always the PyTorch path
        if self.loss_name != "1vsall" and sampler is None:
            raise ValueError(f"loss {self.loss_name} needs a negative sampler")
        if config.adversarial_draws_own and adversarial_sampler is None:
            raise ValueError("the self-adversarial term needs its data-side sampler (adversarial_sampler)")

    def __call__(self, model, positives: torch.Tensor, side: str, generator: torch.Generator,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one step and its logged parts.

        **Sharded** (``self.shard = (rank, P)``, data-parallel training, :mod:`emukg.parallel`): ``positives``
        and ``weights`` are the GLOBAL batch, identical on every rank.  Every random draw (negatives, fresh EMU
        negatives, Mixup ratios, the EMU seed) is made for the whole batch from the run's generator, exactly as
        one process makes it, and this rank keeps its contiguous shard of rows (``torch.tensor_split`` sizes).
        Every batch mean is normalised by the global batch (sum over the shard / B, or / Σw of the whole batch),
        and the regulariser is added on rank 0 only, so the ranks' losses (and gradients) sum to the one-process
        loss (and gradient) up to summation order.  The EMU mask is keyed by the row index in the global batch
        (``Mutation.row0``, passed to the kernel as its first row), so a shard's mask is exactly its rows' part of
        the one-process mask.
        """
        cfg = self.config
        w = None if (cfg.uni_weight or weights is None) else weights
        B = positives.shape[0]
        rows = self._rows(B)
        if self.shard is not None:  # the global batch's normalisers, then this rank's rows
            self._count, self._weight = B, (w.sum() if w is not None else None)
            w = w[rows] if w is not None else None
        mine = positives[rows]
        logs: dict[str, torch.Tensor] = {}
        scores = None
        if self.loss_name == "1vsall":
            if self.shard is None:
                loss = self._one_vs_all(model, positives, side, logs)
            else:  # the shard's mean, rescaled to its share of the global mean (no rows: zero)
                loss = (self._one_vs_all(model, mine, side, logs) * (mine.shape[0] / B) if mine.shape[0]
                        else torch.zeros((), device=positives.device))
                logs["ce_loss"] = loss.detach()
        else:
            # every random draw of the step first, in a fixed order (CE negatives, EMU negatives and mask seed, the
            # self-adversarial negatives), so that one scorer knows every entity row the step reads
            negatives = self.sampler.sample(positives, side)[rows]
            cand = torch.cat([_true_entity(mine, side).unsqueeze(1), negatives], dim=1)
            ce = self.loss_name != "sigmoid"
            emu_cand, mutation = self._emu_draws(positives, side, cand, generator, rows) if ce and cfg.emu is not None else (None, None)
            adv_cand = None
            if ce and cfg.adversarial and cfg.adversarial_draws_own:
                adv = self.adversarial_sampler.sample(positives, side)[rows]
                adv_cand = torch.cat([_true_entity(mine, side).unsqueeze(1), adv], dim=1)
            announced = [cand] + [c for c in (emu_cand, adv_cand) if c is not None and c is not cand]
            scorer = CandidateScorer(model, mine, side, self.use_kernel, self.sparse, candidates=announced,
                                     workspace=self.workspace)
            scores = scorer(cand)
            if not ce:
                loss = self._sigmoid(scores, w, logs)
            else:
                if self.shard is None:
                    loss = F.cross_entropy(scores, torch.zeros_like(cand[:, 0]))
                else:
                    loss = self._mean(F.cross_entropy(scores, torch.zeros_like(cand[:, 0]), reduction="none"))
                logs["ce_loss"] = loss.detach()
                if emu_cand is not None:
                    emu_loss = self._emu(scorer, emu_cand, mutation)
                    logs["emu_loss"] = emu_loss.detach()
                    loss = emu_loss / negatives.shape[1] + cfg.ce_coef * loss
                if cfg.adversarial:
                    if adv_cand is not None:
                        scores = scorer(adv_cand)
                    neg = self._mean(negative_term(scores[:, 1:], True, cfg.adversarial_temperature), w)
                    logs["negative_sample_loss"] = neg.detach()
                    loss = loss + neg
        if self.loss_name == "1vsall" and cfg.adversarial:
            adv = self.adversarial_sampler.sample(positives, side)[rows]
            cand = torch.cat([_true_entity(mine, side).unsqueeze(1), adv], dim=1)
            scores = CandidateScorer(model, mine, side, self.use_kernel, self.sparse, candidates=[cand],
                                     workspace=self.workspace)(cand)
            neg = self._mean(negative_term(scores[:, 1:], True, cfg.adversarial_temperature), w)
            logs["negative_sample_loss"] = neg.detach()
            loss = loss + neg
        if cfg.regularization:
            if self.shard is None or self.shard[0] == 0:
                reg = cfg.regularization * model.regularizer()
                loss = loss + reg
            else:  # counted once, on rank 0
                reg = torch.zeros((), device=positives.device)
            logs["regularization"] = reg.detach()
        logs["loss"] = loss.detach()
        values = torch.stack([v.reshape(()).float() for v in logs.values()]).tolist()  # one device sync, not one per value
        return loss, dict(zip(logs, values))

    # --- sharding (data-parallel training) ----------------------------------------------------------
    def _rows(self, B: int) -> slice:
        """This rank's contiguous rows of a global batch of B (``torch.tensor_split`` sizes); all rows unsharded."""
        if self.shard is None:
            return slice(None)
        rank, world = self.shard
        size, extra = divmod(B, world)
        start = rank * size + min(rank, extra)
        return slice(start, start + size + (1 if rank < extra else 0))

    def _mean(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """The (weighted) batch mean of per-row values ``x``; sharded: this shard's part of the global batch's mean."""
        if self.shard is None:
            return _weighted_mean(x, w)
        if w is None:
            return x.sum() / self._count
        return (w.to(x.dtype) * x).sum() / self._weight.to(x.dtype)

    # --- the modes ---------------------------------------------------------------------------
    def _sigmoid(self, scores, w, logs):
        cfg = self.config
        pos = self._mean(-F.logsigmoid(scores[:, 0]), w)
        neg = self._mean(negative_term(scores[:, 1:], cfg.adversarial, cfg.adversarial_temperature), w)
        logs["positive_sample_loss"] = pos.detach()
        logs["negative_sample_loss"] = neg.detach()
        return (pos + neg) / 2

    def _emu_draws(self, positives, side, cand, generator, rows=slice(None)):
        """The EMU pass's candidates and mutation; ``positives`` is the global batch, ``cand`` this rank's rows
        (``rows``) of the CE candidates."""
        cfg = self.config
        if self.fresh:  # fresh uniform draws for the EMU pass
            cand = torch.cat([cand[:, :1], self.sampler.sample(positives, side)[rows]], dim=1)
        if cfg.only_ls:
            mutation = None
        elif cfg.mixup:
            mutation = Mutation.mix(positives.shape[0], cand.shape[1], generator)
            mutation.ratio = mutation.ratio[rows]
        else:
            mutation = Mutation.emu(cfg.emu, generator)
            mutation.row0 = rows.start or 0  # a shard's mask is its rows' part of the one-process mask
        return cand, mutation

    def _emu(self, scorer, cand, mutation):
        """L_EMU of the mutated candidates (soft labels [1, λ, …, λ])."""
        if self.shard is None:
            return soft_label_ce(scorer(cand, mutation), self.config.neg_label)
        logp = torch.log_softmax(scorer(cand, mutation), dim=1)
        return self._mean(-(logp[:, 0] + self.config.neg_label * logp[:, 1:].sum(1)))

    def _one_vs_all(self, model, positives, side, logs):
        anchor = positives[:, 0] if side == "tail" else positives[:, 2]
        memory_mb = getattr(self.config, "train_memory_mb", 512)
        loss = one_vs_all_loss(model, anchor, positives[:, 1], _true_entity(positives, side), side,
                               memory_mb=memory_mb, use_kernel=self.use_kernel).mean()
        logs["ce_loss"] = loss.detach()
        return loss


def build_objective(config, kg, sampler, use_kernel: bool | None = None, adversarial_sampler=None,
                    sparse: bool = False) -> Objective:
    """The training objective of a run: ``objective(model, positives, side, generator, weights) -> (loss, logs)``;
    ``sparse``: row-sparse entity gradients (see :mod:`emukg.optim`)."""
    return Objective(config, kg, sampler, use_kernel=use_kernel, adversarial_sampler=adversarial_sampler, sparse=sparse)
