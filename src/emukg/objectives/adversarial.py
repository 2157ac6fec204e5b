"""The self-adversarial negative term added to the cross-entropy and 1-vs-all losses (the reference's ``-adv``).

    L⁻ = −Σ w Σⱼ pⱼ log σ(−s⁻ⱼ) / Σ w,   pⱼ = softmax(α s⁻)ⱼ (detached)     (the sigmoid loss's negative term)

over the data-side negatives: the loss's own when they are data-side (CE over ``filtered``/``sans``), else a draw of
the ``adversarial_sampler`` (CE over fresh ``uniform`` negatives, ``1vsall``), as the reference's ``-adv`` uses its
data loader's negatives in every CE mode.  (With the sigmoid loss, ``adversarial`` weights that loss's own negative
term instead: :mod:`emukg.objectives.sigmoid`.)
"""

from __future__ import annotations

import torch

from .sigmoid import negative_term


class AdversarialTerm:
    """Draws the term's own negatives when it needs them (:meth:`draw`) and computes L⁻ (:meth:`__call__`)."""

    def __init__(self, config, sampler):
        self.config, self.sampler = config, sampler  # sampler: None when the term uses the loss's negatives

    def draw(self, batch) -> torch.Tensor | None:
        """[positive, own negatives] for this process's rows, or None (the term scores the loss's negatives)."""
        if self.sampler is None:
            return None
        return batch.candidates(self.sampler.sample(batch.positives, batch.side)[batch.rows])

    def __call__(self, scores: torch.Tensor, batch, logs: dict) -> torch.Tensor:
        """L⁻ of scores (B, 1 + n) whose column 0 is the positive; logs ``negative_sample_loss``."""
        neg = batch.mean(negative_term(scores[:, 1:], True, self.config.adversarial_temperature), batch.weights)
        logs["negative_sample_loss"] = neg.detach()
        return neg
