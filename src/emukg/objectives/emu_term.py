"""EMU as a term of the cross-entropy loss: a second pass over mutated candidates with soft labels.

The pass scores X = [positive, n negatives] — fresh uniform draws with the ``uniform`` sampler, the CE pass's
negatives otherwise — mutated (:mod:`emukg.emu`: the counter-based mask, or Mixup's Beta(2, 1) ratios, or nothing
with ``only_ls``), and adds L_EMU = mean_b −Σⱼ yⱼ log softmax(s'_b)ⱼ, y = [1, λ, …, λ]:

    L = L_EMU / n + ce_coef · L_CE

Sharded (:mod:`emukg.objectives.batch`): the EMU mask is keyed by the row index in the global batch
(``Mutation.row0``, the kernel's first row), so a shard's mask is exactly its rows' part of the one-process mask.
"""

from __future__ import annotations

import torch

from ..emu import Mutation
from .cross_entropy import soft_label_ce, soft_label_rows


class EmuTerm:
    """Draws the EMU pass (:meth:`draw`) and adds its loss to the CE loss (:meth:`add`)."""

    def __init__(self, config, sampler, fresh: bool):
        self.config, self.sampler, self.fresh = config, sampler, fresh

    def draw(self, batch, cand: torch.Tensor, generator: torch.Generator):
        """The EMU pass's candidates and mutation; ``cand``: this process's rows of the CE candidates."""
        cfg = self.config
        if self.fresh:  # fresh uniform draws for the EMU pass
            cand = torch.cat([cand[:, :1], self.sampler.sample(batch.positives, batch.side)[batch.rows]], dim=1)
        if cfg.only_ls:
            mutation = None
        elif cfg.mixup:
            mutation = Mutation.mix(batch.positives.shape[0], cand.shape[1], generator)
            mutation.ratio = mutation.ratio[batch.rows]
        else:
            mutation = Mutation.emu(cfg.emu, generator)
            mutation.row0 = batch.rows.start or 0  # a shard's mask is its rows' part of the one-process mask
        return cand, mutation

    def add(self, ce_loss: torch.Tensor, scorer, batch, cand: torch.Tensor, mutation, logs: dict) -> torch.Tensor:
        """L_EMU / n + ce_coef · L_CE; logs ``emu_loss``."""
        scores = scorer(cand, mutation)
        if batch.shard is None:
            emu_loss = soft_label_ce(scores, self.config.neg_label)
        else:
            emu_loss = batch.mean(soft_label_rows(scores, self.config.neg_label))
        logs["emu_loss"] = emu_loss.detach()
        return emu_loss / (cand.shape[1] - 1) + self.config.ce_coef * ce_loss
