"""Ranks and what is reported from them: the tie policies, MRR / MR / HITS@k, per direction and per relation.

:class:`Ranks` holds a split's per-query ranks (optimistic and pessimistic counts; realistic is their mean);
:func:`metrics_report` turns them into the result dictionary of :func:`emukg.evaluation.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data.graph import KnowledgeGraph
from .plan import MemoryPlan

TIE_POLICIES = ("optimistic", "pessimistic", "realistic")
METRICS = ("MRR", "MR", "HITS@1", "HITS@3", "HITS@10")
SIDES = ("tail", "head")


@dataclass
class Ranks:
    """Per-query ranks of one split: tail queries (h, r, ?) first, then head queries (?, r, t), in split order."""

    split: str
    optimistic: torch.Tensor  # float64, 1 + #(score > answer's)
    pessimistic: torch.Tensor  # float64, 1 + #(score >= answer's), the answer itself not counted
    relations: torch.Tensor  # relation id of every query
    seconds: float
    nan_scores: int
    backend: str
    memory: MemoryPlan
    protocol: str = "full"  # 'full' or 'sampled-K'
    candidates: dict | None = None  # sampled protocol: {'candidates': K, 'candidate_seed': seed}

    @property
    def realistic(self) -> torch.Tensor:
        return (self.optimistic + self.pessimistic) / 2

    def by_policy(self, policy: str) -> torch.Tensor:
        return getattr(self, policy)


def metrics_from_ranks(ranks: torch.Tensor) -> dict:
    """MRR, MR, HITS@1/3/10 of a float rank tensor (empty → NaN)."""
    if ranks.numel() == 0:
        return {k: float("nan") for k in METRICS}
    r = ranks.to(torch.float64)
    return {
        "MRR": float((1.0 / r).mean()),
        "MR": float(r.mean()),
        "HITS@1": float((r <= 1).to(torch.float64).mean()),
        "HITS@3": float((r <= 3).to(torch.float64).mean()),
        "HITS@10": float((r <= 10).to(torch.float64).mean()),
    }


def _per_group(ranks: torch.Tensor, groups: torch.Tensor, size: int) -> list[dict | None]:
    """Metrics per group id in one vectorised pass (bincount with weights)."""
    r = ranks.to(torch.float64)
    n = torch.bincount(groups, minlength=size).to(torch.float64)
    sums = {
        "MRR": torch.bincount(groups, weights=1.0 / r, minlength=size),
        "MR": torch.bincount(groups, weights=r, minlength=size),
        "HITS@1": torch.bincount(groups, weights=(r <= 1).to(torch.float64), minlength=size),
        "HITS@3": torch.bincount(groups, weights=(r <= 3).to(torch.float64), minlength=size),
        "HITS@10": torch.bincount(groups, weights=(r <= 10).to(torch.float64), minlength=size),
    }
    out: list[dict | None] = []
    n_list = n.tolist()
    cols = {k: (v / n.clamp(min=1)).tolist() for k, v in sums.items()}
    for g in range(size):
        if n_list[g] == 0:
            out.append(None)
        else:
            out.append({k: cols[k][g] for k in METRICS} | {"num_queries": int(n_list[g])})
    return out


def metrics_report(rk: Ranks, kg: KnowledgeGraph, tie_policy: str = "realistic", model_name: str = "",
                   filtered: bool = True) -> dict:
    """The result dictionary of :func:`evaluate` from computed ranks."""
    ranks = {pol: rk.by_policy(pol) for pol in TIE_POLICIES}
    chosen = ranks[tie_policy]
    n_trip = chosen.numel() // 2
    result: dict = {
        "split": rk.split,
        "dataset": kg.name,
        "model": model_name,
        "filtered": bool(filtered),
        "protocol": rk.protocol,
        **(rk.candidates or {}),
        "tie_policy": tie_policy,
        **metrics_from_ranks(chosen),
    }
    for pol in TIE_POLICIES:
        result[pol] = metrics_from_ranks(ranks[pol])
    for s, side in enumerate(SIDES):
        part = {pol: metrics_from_ranks(ranks[pol][s * n_trip:(s + 1) * n_trip]) for pol in TIE_POLICIES}
        result[side] = {**part[tie_policy], "num_queries": n_trip, **part}
    per_rel = _per_group(chosen, rk.relations, kg.num_relations)
    result["per_relation"] = {kg.relations[i]: m for i, m in enumerate(per_rel) if m is not None}
    result.update({
        "num_queries": 2 * n_trip,
        "seconds": rk.seconds,
        "queries_per_s": 2 * n_trip / rk.seconds if rk.seconds > 0 else float("inf"),
        "nan_scores": rk.nan_scores,
        "backend": rk.backend,
        "memory": rk.memory.to_dict(),
    })
    return result
