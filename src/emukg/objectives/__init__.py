"""Training objectives: the named losses (``Config.loss``) with EMU, the adversarial term and the regulariser as
composable parts, built by :func:`build_objective`.

One module per part: :mod:`~emukg.objectives.sigmoid`, :mod:`~emukg.objectives.cross_entropy` and
:mod:`~emukg.objectives.one_vs_all` (the losses, found by name in :data:`LOSSES`), :mod:`~emukg.objectives.emu_term`
and :mod:`~emukg.objectives.adversarial` (terms added to a loss), :mod:`~emukg.objectives.batch` (the rows a
process scores and the batch means, sharded or not).  :meth:`Objective.__call__` reads top to bottom: draw every
negative → score → the named loss → the terms.

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

from dataclasses import dataclass

import torch

from ..resolver import Registry
from ..scoring import CandidateScorer, StepWorkspace
from .adversarial import AdversarialTerm
from .batch import Batch, true_entity
from .cross_entropy import cross_entropy_loss, soft_label_ce  # noqa: F401  (soft_label_ce: also the tests')
from .emu_term import EmuTerm
from .one_vs_all import one_vs_all_loss
from .sigmoid import negative_term, sigmoid_loss  # noqa: F401  (negative_term: also the tests')

# loss name -> fn(objective, model, batch, scores, logs): the step's loss before the terms (scores: the loss's
# candidates [positive, n negatives], None for 1vsall, which scores every entity itself)
LOSSES: Registry = Registry("loss", "loss")
LOSSES.register(lambda obj, model, batch, scores, logs: sigmoid_loss(scores, batch, obj.config, logs), name="sigmoid")
LOSSES.register(lambda obj, model, batch, scores, logs: cross_entropy_loss(scores, batch, logs), name="ce")
LOSSES.register(lambda obj, model, batch, scores, logs: obj.one_vs_all(model, batch, logs), name="1vsall")


@dataclass
class Draws:
    """Every candidate tensor of one step (this process's rows), drawn before anything is scored: the loss's
    ``cand`` (None for 1vsall), the EMU pass's ``emu_cand`` and ``mutation``, the adversarial term's ``adv_cand``."""

    cand: torch.Tensor | None = None
    emu_cand: torch.Tensor | None = None
    mutation: object = None
    adv_cand: torch.Tensor | None = None

    def announced(self) -> list[torch.Tensor]:
        """The distinct candidate tensors the step's scorer will read (its gradient table knows every row)."""
        return [c for i, c in enumerate((self.cand, self.emu_cand, self.adv_cand))
                if c is not None and (i == 0 or c is not self.cand)]


class Objective:
    """The loss of one training step for a :class:`~emukg.config.Config` (see the module docstring)."""

    def __init__(self, config, kg, sampler, use_kernel: bool | None = None, adversarial_sampler=None,
                 sparse: bool = False):
        self.config = config
        self.sparse = sparse  # row-sparse entity gradients (CandidateScorer(sparse=True)); see emukg.optim
        self.workspace = StepWorkspace() if sparse else None  # memory the row-sparse steps reuse
        self.shard: tuple[int, int] | None = None  # (rank, world size) in data-parallel training (objectives.batch)
        self.loss_name = config.loss
        self.loss = LOSSES.get(config.loss)
        self.sampler = sampler
        self.adversarial_sampler = adversarial_sampler
        self.fresh = config.fresh_negatives  # CE over unfiltered uniform negatives drawn afresh in every pass
        self.num_entities = kg.num_entities
        self.use_kernel = use_kernel  # None: the fused kernel where possible; False: always the PyTorch path
        # True: the logged values stay 0-d tensors on the device (no host round trip per step; the Trainer reads
        # them once per log_steps); False: Python floats, read with one .tolist() per step
        self.log_on_device = False
        if self.loss_name != "1vsall" and sampler is None:
            raise ValueError(f"loss {self.loss_name} needs a negative sampler")
        if config.adversarial_draws_own and adversarial_sampler is None:
            raise ValueError("the self-adversarial term needs its data-side sampler (adversarial_sampler)")
        ce = self.loss_name != "sigmoid"  # (the sigmoid loss weights its own negatives with -adv)
        self.emu = EmuTerm(config, sampler, self.fresh) if ce and config.emu is not None else None
        self.adversarial = (AdversarialTerm(config, adversarial_sampler if config.adversarial_draws_own else None)
                            if ce and config.adversarial else None)

    def __call__(self, model, positives: torch.Tensor, side: str, generator: torch.Generator,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one step and its logged parts (sharded: this rank's part, :mod:`emukg.objectives.batch`)."""
        cfg = self.config
        batch = Batch.of(positives, side, None if (cfg.uni_weight or weights is None) else weights, self.shard)
        draws = self.draw(batch, generator)
        scorer = self.scorer(model, batch, draws.announced()) if draws.cand is not None else None
        scores = scorer(draws.cand) if scorer is not None else None
        logs: dict[str, torch.Tensor] = {}
        loss = self.loss(self, model, batch, scores, logs)
        if self.emu is not None:
            loss = self.emu.add(loss, scorer, batch, draws.emu_cand, draws.mutation, logs)
        if self.adversarial is not None:
            loss = loss + self.adversarial(self.adversarial_scores(model, batch, draws, scorer, scores), batch, logs)
        if cfg.regularization:
            loss = self.regularize(loss, model, batch, logs)
        logs["loss"] = loss.detach()
        if self.log_on_device:
            return loss, {k: v.detach().reshape(()).float() for k, v in logs.items()}
        values = torch.stack([v.reshape(()).float() for v in logs.values()]).tolist()  # one device sync, not one per value
        return loss, dict(zip(logs, values))

    # --- the parts, in the order __call__ runs them ----------------------------------------------------
    def draw(self, batch: Batch, generator: torch.Generator) -> Draws:
        """Every random draw of the step, in a fixed order — the loss's negatives, the EMU pass's negatives and mask
        seed (or Mixup ratios), the adversarial term's own negatives — for the global batch, this process's rows kept."""
        draws = Draws()
        if self.loss_name != "1vsall":
            draws.cand = batch.candidates(self.sampler.sample(batch.positives, batch.side)[batch.rows])
        if self.emu is not None:
            draws.emu_cand, draws.mutation = self.emu.draw(batch, draws.cand, generator)
        if self.adversarial is not None:
            draws.adv_cand = self.adversarial.draw(batch)
        return draws

    def scorer(self, model, batch: Batch, candidates: list[torch.Tensor]) -> CandidateScorer:
        """One scorer for the step's passes over ``candidates`` (announced, so its gradient table knows every row)."""
        return CandidateScorer(model, batch.mine, batch.side, self.use_kernel, self.sparse, candidates=candidates,
                               workspace=self.workspace)

    def one_vs_all(self, model, batch: Batch, logs: dict) -> torch.Tensor:
        """The 1-vs-all loss of this process's rows (sharded: rescaled to its share of the global mean)."""
        mine, side, B = batch.mine, batch.side, batch.positives.shape[0]
        if batch.shard is not None and not mine.shape[0]:  # an empty shard of a tiny batch
            loss = torch.zeros((), device=batch.positives.device)
            logs["ce_loss"] = loss.detach()
            return loss
        anchor = mine[:, 0] if side == "tail" else mine[:, 2]
        memory_mb = getattr(self.config, "train_memory_mb", 512)
        loss = one_vs_all_loss(model, anchor, mine[:, 1], true_entity(mine, side), side,
                               memory_mb=memory_mb, use_kernel=self.use_kernel).mean()
        if batch.shard is not None:
            loss = loss * (mine.shape[0] / B)
        logs["ce_loss"] = loss.detach()
        return loss

    def adversarial_scores(self, model, batch: Batch, draws: Draws, scorer, scores) -> torch.Tensor:
        """The scores the adversarial term weighs: its own draw's, else the loss's."""
        if draws.adv_cand is None:
            return scores
        if scorer is None:  # 1vsall: a scorer of its own, built after the loss (as before the redesign)
            scorer = self.scorer(model, batch, [draws.adv_cand])
        return scorer(draws.adv_cand)

    def regularize(self, loss: torch.Tensor, model, batch: Batch, logs: dict) -> torch.Tensor:
        """loss + r·(‖E‖₃³ + ‖R‖₃³); sharded: counted once, on rank 0."""
        if batch.shard is None or batch.shard[0] == 0:
            reg = self.config.regularization * model.regularizer()
            loss = loss + reg
        else:
            reg = torch.zeros((), device=batch.positives.device)
        logs["regularization"] = reg.detach()
        return loss


def build_objective(config, kg, sampler, use_kernel: bool | None = None, adversarial_sampler=None,
                    sparse: bool = False) -> Objective:
    """The training objective of a run: ``objective(model, positives, side, generator, weights) -> (loss, logs)``;
    ``sparse``: row-sparse entity gradients (see :mod:`emukg.optim`).  A message-passing model (NBFNet) has its own
    step, :class:`emukg.nbfnet.step.NBFNetObjective`, with the same interface."""
    from ..models import model_class

    if getattr(model_class(config.model), "message_passing", False):
        from ..nbfnet.step import NBFNetObjective

        return NBFNetObjective(config, kg, sampler)
    return Objective(config, kg, sampler, use_kernel=use_kernel, adversarial_sampler=adversarial_sampler, sparse=sparse)
