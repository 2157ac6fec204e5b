"""NBFNet's training step: one message-passing pass per query scores its positive and all its negatives.

``NBFNetObjective(config, kg, sampler)(model, positives, side, generator, weights) -> (loss, logs)`` has the
interface of :func:`emukg.objectives.build_objective`'s objectives (which builds it for a message-passing model), so
the :class:`~emukg.training.Trainer`'s step is unchanged.  For a batch of B positives whose ``side`` is corrupted:

1. Negatives: the run's sampler draws n per positive (``filtered``: uniform minus training triples, NBFNet's
   "strict negatives"; ``uniform``; ``sans``), candidates C = [true entity, n negatives].
2. Queries: a tail batch gives (h, r, ?), a head batch (t, r + R, ?) (reciprocal relations), so every candidate is
   a tail of its query.  Each query's graph loses its own edges (``remove_edges``, :mod:`emukg.nbfnet.model`).
3. One pass (:meth:`~emukg.nbfnet.model.NBFNet.propagate`) gives every node's representation x_v (b, N, d); the
   candidates' rows X = x[C] (b, 1 + n, d) are scored by the MLP: s = MLP([X, q]).
4. The loss over s (column 0 the positive):

   * ``sigmoid`` (with ``adversarial``: NBFNet's self-adversarial binary loss): (L⁺ + L⁻)/2 with
     L⁺ = −Σ w log σ(s⁺)/Σ w and L⁻ = −Σ w Σⱼ pⱼ log σ(−s⁻ⱼ)/Σ w, pⱼ = softmax(α s⁻)ⱼ detached (1/n without
     ``adversarial``); w the subsampling weights, or 1 with ``uni_weight`` (NBFNet's own plain mean).  NBFNet's
     code sums L⁺ + L⁻ instead of halving it: a constant factor, absorbed by Adam's step size.
   * ``ce``: L_CE = mean_b −log softmax(s_b)₀.
   * **EMU** (``emu`` p with ``ce``): the candidates' final node representations are mutated per component with
     the positive's, X' = M ⊙ X + (1 − M) ⊙ x⁺, M ~ Bernoulli(p) from :mod:`emukg.emu`'s counter-based mask
     (keyed by the row in the whole batch, so micro-batching does not change it; Mixup's ratios and ``only_ls``
     as for the embedding models), scored by the same MLP, s' = MLP([X', q]), and
     L = L_EMU/n + ce_coef · L_CE with L_EMU = mean_b −Σⱼ yⱼ log softmax(s'_b)ⱼ, y = [1, λ, …, λ].  With the
     ``uniform`` sampler the EMU rows are a fresh draw (as the embedding models' mode 1); otherwise the CE
     pass's negatives.  Both terms read the same message-passing pass: EMU costs one more MLP over B·(1 + n) rows.

**Why the final node representations.**  EMU mutates the embeddings of the candidates; in NBFNet the only
per-candidate vectors are the node representations h_v⁽ᴸ⁾(u, q) that the MLP reads, and mutating them keeps the
mutation "in the space the scorer compares candidates in", as it is for the embedding models.  Alternatives:
(a) mutate the MLP's input [x_v, q] — the same, since q is shared by all candidates; (b) mutate the MLP's hidden
layer — a mutation of features one non-linearity further from the candidates; (c) mutate the representations at
every Bellman-Ford layer — a negative's messages would then have to be recomputed per candidate, (1 + n) passes
instead of one; (d) mutate the query or the boundary — not candidate-specific, so not a mutation of negatives.

**Memory.**  The batch runs in micro-batches of b = :meth:`~emukg.nbfnet.model.NBFNet.queries_per_pass`
(``train_memory_mb``) queries; each micro-batch's loss (its share of the batch means) is back-propagated at once
and the gradients accumulate, so one step holds one micro-batch's graph: ≈ 4 · b · L · (F_E·E·d + F_N·N·d) bytes
(:mod:`emukg.nbfnet.model`), plus (b, 1 + n, d) candidate rows (twice with EMU).  The returned loss is then
detached (the trainer's backward has nothing left to do).  ``accumulate=False`` returns the differentiable sum
of the micro-batch losses instead (for tests).  Cost of a step: B passes of O(L·(E·d + N·d²)), plus B·(1 + n)
MLP rows (2B·(1 + n) with EMU).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..emu import Mutation
from ..errors import EmukgError
from ..objectives.cross_entropy import soft_label_rows
from ..objectives.sigmoid import negative_term


def candidate_rows(x: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
    """The node rows x[i, cand[i, j]] of candidates ``cand`` (b, C) from node representations x (b, N, d)."""
    return x[torch.arange(x.shape[0], device=x.device).unsqueeze(1), cand]


class NBFNetObjective:
    """The loss of one NBFNet training step for a :class:`~emukg.config.Config` (see the module docstring)."""

    def __init__(self, config, kg, sampler, accumulate: bool = True):
        if sampler is None:
            raise ValueError("NBFNet's loss needs a negative sampler")
        self.config, self.sampler, self.accumulate = config, sampler, accumulate
        self.fresh = config.fresh_negatives
        self.shard: tuple[int, int] | None = None  # set by the trainer in data-parallel runs (not supported)

    def draw(self, positives: torch.Tensor, side: str, generator: torch.Generator):
        """Every random draw of the step in a fixed order: the loss's candidates, then the EMU pass's candidates and
        mutation (None without EMU)."""
        cfg = self.config
        true = positives[:, 2] if side == "tail" else positives[:, 0]
        cand = torch.cat([true.unsqueeze(1), self.sampler.sample(positives, side)], dim=1)
        emu_cand = mutation = None
        if cfg.emu is not None:
            emu_cand = torch.cat([true.unsqueeze(1), self.sampler.sample(positives, side)], dim=1) if self.fresh else cand
            if cfg.mixup:
                mutation = Mutation.mix(positives.shape[0], emu_cand.shape[1], generator)
            elif not cfg.only_ls:
                mutation = Mutation.emu(cfg.emu, generator)
        return cand, emu_cand, mutation

    def __call__(self, model, positives: torch.Tensor, side: str, generator: torch.Generator,
                 weights: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
        if self.shard is not None:
            raise EmukgError("NBFNet does not train data-parallel (torchrun) yet; run it in one process.")
        cfg = self.config
        B, R = positives.shape[0], model.num_relations
        cand, emu_cand, mutation = self.draw(positives, side, generator)
        anchor = positives[:, 0] if side == "tail" else positives[:, 2]
        rel = positives[:, 1] if side == "tail" else positives[:, 1] + R
        w = None if (cfg.uni_weight or weights is None) else weights
        wsum = w.sum() if w is not None else None
        chunk = model.queries_per_pass(model.train_memory_mb, True, "train_memory_mb")
        backward = self.accumulate and torch.is_grad_enabled()
        sums: dict[str, torch.Tensor] = {}
        total = None

        def mean(rows, i, weighted):  # this micro-batch's share of the batch mean
            if weighted and w is not None:
                return (w[i:i + rows.shape[0]] * rows).sum() / wsum
            return rows.sum() / B

        for i in range(0, B, chunk):
            j = min(B, i + chunk)
            x, q = model.propagate(anchor[i:j], rel[i:j], remove=positives[i:j])
            scores = model.head_scores(candidate_rows(x, cand[i:j]), q)
            parts = {}
            if cfg.loss == "sigmoid":
                parts["positive_sample_loss"] = mean(-F.logsigmoid(scores[:, 0]), i, True)
                parts["negative_sample_loss"] = mean(negative_term(scores[:, 1:], cfg.adversarial,
                                                                   cfg.adversarial_temperature), i, True)
                loss = (parts["positive_sample_loss"] + parts["negative_sample_loss"]) / 2
            else:
                target = torch.zeros(j - i, dtype=torch.int64, device=scores.device)
                parts["ce_loss"] = mean(F.cross_entropy(scores, target, reduction="none"), i, False)
                loss = parts["ce_loss"]
                if cfg.emu is not None:
                    X = candidate_rows(x, emu_cand[i:j])
                    if mutation is not None:
                        X = mutation.apply(X, row0=i)
                    s2 = model.head_scores(X, q)
                    parts["emu_loss"] = mean(soft_label_rows(s2, cfg.neg_label), i, False)
                    loss = parts["emu_loss"] / (emu_cand.shape[1] - 1) + cfg.ce_coef * parts["ce_loss"]
            if backward:
                loss.backward()
                loss = loss.detach()
            total = loss if total is None else total + loss
            for k, v in parts.items():
                sums[k] = sums.get(k, 0) + v.detach()
        sums["loss"] = total.detach()
        values = torch.stack([v.reshape(()).float() for v in sums.values()]).tolist()
        return total, dict(zip(sums, values))
