"""Training objectives: the reference's loss modes (``-if_CE``) and EMU, built by :func:`build_objective`.

``objective(model, positives, side, generator, weights) -> (loss, logs)`` computes one step's loss for a batch
of positives (B, 3) whose ``side`` ('tail' or 'head') is corrupted; ``weights`` (B,) are the subsampling weights
w = sqrt(1 / (cnt(h, r) + cnt(t, r⁻¹))).  Candidates are always laid out as [true entity, n negatives], so
column 0 of every score matrix is the positive.  Scores come from :class:`emukg.emu.CandidateScorer`, which uses
the fused native kernel where it can and the model's own score function otherwise.

* mode 0 (sigmoid, RotatE): L = (L⁺ + L⁻)/2, L⁺ = −Σ w log σ(s⁺)/Σ w, L⁻ = −Σ w Σⱼ pⱼ log σ(−s⁻ⱼ)/Σ w with
  pⱼ = 1/n, or with ``adversarial`` pⱼ = softmax(α s⁻)ⱼ (detached); ``uni_weight``: plain batch means.
* mode 1 / 2 (cross-entropy): L_CE = mean_b −log softmax(s_b)₀ over [true, n negatives] — fresh unfiltered
  uniform negatives in mode 1, the sampler's data-side negatives in mode 2.
* mode 3 (1-vs-all): cross-entropy over all entities (DistMult, ComplEx); no sampled negatives, so
  ``adversarial`` has no effect there.
* EMU (``emu`` = p, modes 1 and 2): a second pass on X = [positive, n negatives] (fresh uniform draws in mode 1,
  the same negatives in mode 2), mutated (see :mod:`emukg.emu`), scored, and
  L_EMU = mean_b −Σⱼ yⱼ log softmax(s'_b)ⱼ with y = [1, λ, …, λ]; the step's loss is L_EMU/n + ce_coef·L_CE.
  ``mixup``: one Beta(2, 1) ratio per candidate instead of the mask; ``only_ls``: the soft target without mutation.
* ``adversarial`` in modes 1 and 2 adds mode 0's self-adversarial negative term L⁻ (on the CE pass's negatives).
* ``regularization`` r > 0 adds r·(‖E‖₃³ + ‖R‖₃³) in every mode.

Logs (floats): mode 0 ``positive_sample_loss``, ``negative_sample_loss``; CE modes ``ce_loss`` (and
``emu_loss``, ``negative_sample_loss`` when used); always ``loss`` and, with r > 0, ``regularization``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .emu import CandidateScorer, Mutation


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

    def __init__(self, config, kg, sampler, use_kernel: bool | None = None):
        self.config = config
        self.mode = int(config.ce_mode)
        self.sampler = sampler
        self.num_entities = kg.num_entities
        self.use_kernel = use_kernel  # None: the fused kernel where possible; False: always the PyTorch path
        if self.mode in (0, 1, 2) and sampler is None:
            raise ValueError(f"loss mode {self.mode} needs a negative sampler")

    def __call__(self, model, positives: torch.Tensor, side: str, generator: torch.Generator,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        cfg = self.config
        w = None if (cfg.uni_weight or weights is None) else weights
        logs: dict[str, torch.Tensor] = {}
        if self.mode == 3:
            loss = self._one_vs_all(model, positives, side, logs)
        else:
            negatives = self.sampler.sample(positives, side)
            cand = torch.cat([_true_entity(positives, side).unsqueeze(1), negatives], dim=1)
            scorer = CandidateScorer(model, positives, side, self.use_kernel)
            scores = scorer(cand)
            if self.mode == 0:
                loss = self._sigmoid(scores, w, logs)
            else:
                loss = F.cross_entropy(scores, torch.zeros_like(cand[:, 0]))
                logs["ce_loss"] = loss.detach()
                if cfg.emu is not None:
                    emu_loss = self._emu(scorer, positives, side, cand, generator)
                    logs["emu_loss"] = emu_loss.detach()
                    loss = emu_loss / negatives.shape[1] + cfg.ce_coef * loss
                if cfg.adversarial:
                    neg = _weighted_mean(negative_term(scores[:, 1:], True, cfg.adversarial_temperature), w)
                    logs["negative_sample_loss"] = neg.detach()
                    loss = loss + neg
        if cfg.regularization:
            reg = cfg.regularization * model.regularizer()
            logs["regularization"] = reg.detach()
            loss = loss + reg
        logs["loss"] = loss.detach()
        values = torch.stack([v.reshape(()).float() for v in logs.values()]).tolist()  # one device sync, not one per value
        return loss, dict(zip(logs, values))

    # --- the modes ---------------------------------------------------------------------------
    def _sigmoid(self, scores, w, logs):
        cfg = self.config
        pos = _weighted_mean(-F.logsigmoid(scores[:, 0]), w)
        neg = _weighted_mean(negative_term(scores[:, 1:], cfg.adversarial, cfg.adversarial_temperature), w)
        logs["positive_sample_loss"] = pos.detach()
        logs["negative_sample_loss"] = neg.detach()
        return (pos + neg) / 2

    def _emu(self, scorer, positives, side, cand, generator):
        cfg = self.config
        if self.mode == 1:  # fresh uniform draws for the EMU pass
            cand = torch.cat([cand[:, :1], self.sampler.sample(positives, side)], dim=1)
        if cfg.only_ls:
            mutation = None
        elif cfg.mixup:
            mutation = Mutation.mix(cand.shape[0], cand.shape[1], generator)
        else:
            mutation = Mutation.emu(cfg.emu, generator)
        return soft_label_ce(scorer(cand, mutation), cfg.neg_label)

    def _one_vs_all(self, model, positives, side, logs):
        anchor = positives[:, 0] if side == "tail" else positives[:, 2]
        scores = model.score_all(anchor, positives[:, 1], side)
        loss = F.cross_entropy(scores, _true_entity(positives, side))
        logs["ce_loss"] = loss.detach()
        return loss


def build_objective(config, kg, sampler, use_kernel: bool | None = None) -> Objective:
    """The training objective of a run: ``objective(model, positives, side, generator, weights) -> (loss, logs)``."""
    return Objective(config, kg, sampler, use_kernel=use_kernel)
