"""Wrappers of ``score_all.c``: evaluation ranking against every entity, fused (no score matrix) or over a block of
scores, with the filter's exclusions."""

from __future__ import annotations

import torch

from .build import _require
from .checks import _check_segments, _metric, _status, _tensor, _threads, check_ids, ptr
from .codes import EVAL_METRICS, Metric


RANGE_BYTES = 256 * 1024  # score_all.c's RANGE_BYTES: entity rows per task
_EB = 6  # score_all.c's EB


def score_all_lanes() -> int:
    """Queries per register tile of ``emukg_rank_fused`` (TQ: 16 with AVX, 32 with AVX-512)."""
    return int(_require("score_all").emukg_score_all_lanes())


def rank_fused_bytes(nq: int, dim: int, num_entities: int, threads: int) -> int:
    """Bytes ``emukg_rank_fused`` allocates: 4·⌈nq/TQ⌉·TQ·(dim + 1) of query tiles, 8·nq·(parts + 1) of exclusion
    offsets (parts = entity ranges of about RANGE_BYTES, at least about 4 per thread), 4·range per thread of mask
    words.  An estimate for error messages (within a small factor)."""
    tq = score_all_lanes()
    tiles = -(-max(nq, 0) // tq)
    rng = min(max(1, num_entities), max(8 * _EB, RANGE_BYTES // max(1, 4 * dim)))
    parts = max(-(-num_entities // rng), 4 * threads)
    return 4 * tiles * tq * (dim + 1) + 8 * nq * (parts + 1) + threads * 4 * rng


def rank_fused(metric, Q: torch.Tensor, E: torch.Tensor, answer: torch.Tensor, start: torch.Tensor | None = None,
               count: torch.Tensor | None = None, vals: torch.Tensor | None = None, threads: int | None = None):
    """Filtered rank counts without a score matrix: for queries ``Q`` (nq, D) float32 (finite) against every row of
    ``E`` (N, D) float32, ``(gt, ge, thr)`` = #candidates strictly better than / at least as good as the answer
    ``answer`` (nq,) int64, and the answer's distance (L1, COMPLEX_L1) or dot product (DOT).  Excluded besides the
    answer: ``vals[start[q] : start[q] + count[q]]`` (sorted, FilterIndex.segments).  Memory: see
    :func:`rank_fused_bytes`."""
    fn = "emukg_rank_fused"
    lib = _require("score_all")
    metric = _metric(fn, metric)
    if metric not in EVAL_METRICS:
        raise ValueError(f"{fn}: metric {metric.name} is a training-only metric; rank with "
                         f"{', '.join(m.name for m in EVAL_METRICS)} or score with the model in PyTorch.")
    _tensor(fn, "E", E, torch.float32, (None, None))
    N, D = E.shape
    _tensor(fn, "Q", Q, torch.float32, (None, D))
    nq = Q.shape[0]
    if metric == Metric.COMPLEX_L1 and D % 2:
        raise ValueError(f"{fn}: metric COMPLEX_L1 needs an even row width (real half, imaginary half), not {D}.")
    _tensor(fn, "answer", answer, torch.int64, (nq,))
    check_ids(fn, "answer", answer, N)
    start, count, vals = _check_segments(fn, start, count, vals, nq, N)
    nt = _threads(threads)
    gt = torch.empty(nq, dtype=torch.int64)
    ge = torch.empty(nq, dtype=torch.int64)
    thr = torch.empty(nq, dtype=torch.float32)
    if nq == 0:
        return gt, ge, thr
    rc = lib.emukg_rank_fused(int(metric), Q.data_ptr(), nq, D, E.data_ptr(), N, D, answer.data_ptr(), ptr(start),
                              ptr(count), ptr(vals), gt.data_ptr(), ge.data_ptr(), thr.data_ptr(), nt)
    _status(fn, rc, rank_fused_bytes(nq, D, N, nt), "lower --memory-mb (evaluate's memory_mb) to rank fewer queries at once")
    return gt, ge, thr


def rank_dense(S: torch.Tensor, thr: torch.Tensor, answer: torch.Tensor, start: torch.Tensor | None = None,
               count: torch.Tensor | None = None, vals: torch.Tensor | None = None, *, col0: int = 0,
               num_entities: int | None = None, threads: int | None = None):
    """Rank counts from a score block ``S`` (nq, n) float32 holding entities ``col0 .. col0+n−1`` (larger = better,
    NaN as −inf): ``(gt, ge, nan)`` int64 (nq,) = #non-excluded candidates of the block with score > / ≥ the answer's
    ``thr`` (nq,) float32, and NaN scores per query.  Exclusions as in :func:`rank_fused`.  ``num_entities``
    (default col0 + n) bounds the ids.  No allocation in C."""
    fn = "emukg_rank_dense"
    lib = _require("score_all")
    _tensor(fn, "S", S, torch.float32, (None, None))
    nq, n = S.shape
    col0 = int(col0)
    N = col0 + n if num_entities is None else int(num_entities)
    if col0 < 0 or col0 + n > N:
        raise ValueError(f"{fn}: the block's columns {col0}..{col0 + n - 1} must lie inside 0..{N - 1}; fix col0 or num_entities.")
    _tensor(fn, "thr", thr, torch.float32, (nq,))
    _tensor(fn, "answer", answer, torch.int64, (nq,))
    check_ids(fn, "answer", answer, N)
    start, count, vals = _check_segments(fn, start, count, vals, nq, N)
    gt = torch.zeros(nq, dtype=torch.int64)
    ge = torch.zeros(nq, dtype=torch.int64)
    nan = torch.zeros(nq, dtype=torch.int64)
    if nq:
        lib.emukg_rank_dense(S.data_ptr(), nq, n, n, col0, thr.data_ptr(), answer.data_ptr(), ptr(start), ptr(count),
                             ptr(vals), gt.data_ptr(), ge.data_ptr(), nan.data_ptr(), _threads(threads))
    return gt, ge, nan
