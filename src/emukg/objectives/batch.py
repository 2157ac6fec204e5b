"""One step's batch as the losses see it: the rows this process scores and the batch means they are normalised by.

Unsharded, a :class:`Batch` is the whole batch.  **Sharded** (``shard = (rank, P)``, data-parallel training,
:mod:`emukg.parallel`): ``positives`` and ``weights`` are the GLOBAL batch, identical on every rank; every random
draw is made for the whole batch from the run's generator, exactly as one process makes it, and this rank keeps its
contiguous shard of rows (``torch.tensor_split`` sizes).  Every batch mean is normalised by the global batch (sum
over the shard / B, or / Σw of the whole batch), so the ranks' losses (and gradients) sum to the one-process loss
(and gradient) up to summation order.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def true_entity(positives: torch.Tensor, side: str) -> torch.Tensor:
    """The entity a candidate replaces: the tail ('tail') or the head ('head') of each positive."""
    return positives[:, 2] if side == "tail" else positives[:, 0]


def weighted_mean(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    if weights is None:
        return x.mean()
    w = weights.to(x.dtype)
    return (w * x).sum() / w.sum()


def shard_rows(B: int, shard: tuple[int, int] | None) -> slice:
    """Rank's contiguous rows of a global batch of B (``torch.tensor_split`` sizes); all rows unsharded."""
    if shard is None:
        return slice(None)
    rank, world = shard
    size, extra = divmod(B, world)
    start = rank * size + min(rank, extra)
    return slice(start, start + size + (1 if rank < extra else 0))


@dataclass
class Batch:
    """``positives`` (the global batch, (B, 3)), the corrupted ``side``, this process's ``rows`` of it and their
    ``weights`` (None: plain means), with the global normalisers ``count`` and ``weight_sum``."""

    positives: torch.Tensor
    side: str
    rows: slice
    weights: torch.Tensor | None
    shard: tuple[int, int] | None = None
    count: int = 0
    weight_sum: torch.Tensor | None = None

    @classmethod
    def of(cls, positives: torch.Tensor, side: str, weights: torch.Tensor | None,
           shard: tuple[int, int] | None) -> "Batch":
        B = positives.shape[0]
        rows = shard_rows(B, shard)
        if shard is None:
            return cls(positives, side, rows, weights)
        total = weights.sum() if weights is not None else None
        return cls(positives, side, rows, weights[rows] if weights is not None else None, shard, B, total)

    @property
    def mine(self) -> torch.Tensor:
        """The positives this process scores."""
        return self.positives[self.rows]

    def candidates(self, negatives: torch.Tensor) -> torch.Tensor:
        """[true entity, negatives] for this process's rows: column 0 is the positive."""
        return torch.cat([true_entity(self.mine, self.side).unsqueeze(1), negatives], dim=1)

    def mean(self, x: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
        """The (weighted) batch mean of per-row values ``x``; sharded: this shard's part of the global batch's mean."""
        if self.shard is None:
            return weighted_mean(x, w)
        if w is None:
            return x.sum() / self.count
        return (w.to(x.dtype) * x).sum() / self.weight_sum.to(x.dtype)
