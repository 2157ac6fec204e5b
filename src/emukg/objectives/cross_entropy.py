"""The softmax cross-entropy loss (the reference's ``-if_CE`` 1 and 2) and its soft-label form (EMU's).

    L_CE = mean_b −log softmax(s_b)₀                     over [true, n negatives]
    L_soft = mean_b −Σⱼ yⱼ log softmax(s_b)ⱼ,  y = [1, λ, …, λ]  (unnormalised; EMU's, :mod:`emukg.objectives.emu_term`)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy_loss(scores: torch.Tensor, batch, logs: dict) -> torch.Tensor:
    """L_CE of scores (B, 1 + n) whose column 0 is the positive; logs ``ce_loss``."""
    target = torch.zeros(scores.shape[0], dtype=torch.int64, device=scores.device)
    if batch.shard is None:
        loss = F.cross_entropy(scores, target)
    else:
        loss = batch.mean(F.cross_entropy(scores, target, reduction="none"))
    logs["ce_loss"] = loss.detach()
    return loss


def soft_label_ce(scores: torch.Tensor, neg_label: float) -> torch.Tensor:
    """mean_b −Σⱼ yⱼ log softmax(s_b)ⱼ with the unnormalised target y = [1, λ, …, λ] (mean(−x) = −mean(x) exactly)."""
    return soft_label_rows(scores, neg_label).mean()


def soft_label_rows(scores: torch.Tensor, neg_label: float) -> torch.Tensor:
    """Per row: −Σⱼ yⱼ log softmax(s_b)ⱼ (the sharded form's summands)."""
    logp = torch.log_softmax(scores, dim=1)
    return -(logp[:, 0] + neg_label * logp[:, 1:].sum(1))
