"""Rank counting over one block of scores: how many candidates score above (and at or above) each query's answer.

:func:`rank_block_torch` (PyTorch, any device; exclusions as flat pairs) and :func:`rank_block_native` (the C
kernel ``emukg_rank_dense`` on a CPU; exclusions as CSR arrays) give the same counts; NaN scores rank as −inf.
"""

from __future__ import annotations

import torch

import emukg.kernels as kernels


def rank_block_torch(S: torch.Tensor, thr: torch.Tensor, ex_q: torch.Tensor, ex_e: torch.Tensor):
    """Counts over one score block ``S`` (queries × candidates): (#> thr, #>= thr, number of NaN scores),
    not counting the excluded pairs ``(ex_q, ex_e)`` (column indices into ``S``).  NaN ranks as −inf."""
    neg_inf = torch.tensor(float("-inf"), device=S.device, dtype=S.dtype)
    nan = torch.isnan(S)
    n_nan = int(nan.sum())
    if n_nan:
        S = S.masked_fill(nan, float("-inf"))
    del nan
    t = torch.where(torch.isnan(thr), neg_inf, thr.to(S.dtype))
    gt = (S > t[:, None]).sum(1)
    ge = (S >= t[:, None]).sum(1)
    if ex_q.numel():
        s, tq = S[ex_q, ex_e], t[ex_q]
        gt.index_add_(0, ex_q, -(s > tq).long())
        ge.index_add_(0, ex_q, -(s >= tq).long())
    return gt, ge, n_nan


def rank_block_native(S: torch.Tensor, thr: torch.Tensor, answer: torch.Tensor, start, count, vals, col0: int = 0,
                      threads: int | None = None, num_entities: int | None = None):
    """C version of :func:`rank_block_torch` for a CPU float32 block holding entities ``col0 ..``; exclusions
    as CSR (``start``/``count`` into ``vals``, entity ids below ``num_entities``, default col0 + columns) plus each
    query's ``answer``.  Returns (gt, ge, nan).  Through the checked wrapper :func:`emukg.kernels.rank_dense`."""
    gt, ge, nan = kernels.rank_dense(S.to(torch.float32).contiguous(), thr.to(torch.float32).contiguous(),
                                     answer.contiguous(), start, count, vals, col0=col0, num_entities=num_entities,
                                     threads=threads)
    return gt, ge, int(nan.sum())
