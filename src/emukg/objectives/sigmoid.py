"""The sigmoid loss (RotatE's; the reference's ``-if_CE 0``) and its negative term, shared by the adversarial term.

    L = (L⁺ + L⁻)/2,   L⁺ = −Σ w log σ(s⁺)/Σ w,   L⁻ = −Σ w Σⱼ pⱼ log σ(−s⁻ⱼ)/Σ w

with pⱼ = 1/n, or with ``adversarial`` pⱼ = softmax(α s⁻)ⱼ (detached); ``uni_weight``: plain batch means.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def negative_term(neg_scores: torch.Tensor, adversarial: bool, temperature: float) -> torch.Tensor:
    """Per positive: −Σⱼ pⱼ log σ(−s⁻ⱼ), pⱼ uniform or the detached self-adversarial softmax(α s⁻)ⱼ."""
    logs = F.logsigmoid(-neg_scores)
    if adversarial:
        p = torch.softmax(neg_scores.detach() * temperature, dim=1)
        return -(p * logs).sum(1)
    return -logs.mean(1)


def sigmoid_loss(scores: torch.Tensor, batch, config, logs: dict) -> torch.Tensor:
    """(L⁺ + L⁻)/2 of scores (B, 1 + n) whose column 0 is the positive; logs its two parts."""
    pos = batch.mean(-F.logsigmoid(scores[:, 0]), batch.weights)
    neg = batch.mean(negative_term(scores[:, 1:], config.adversarial, config.adversarial_temperature), batch.weights)
    logs["positive_sample_loss"] = pos.detach()
    logs["negative_sample_loss"] = neg.detach()
    return (pos + neg) / 2
