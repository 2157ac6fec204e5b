"""Wrapper of ``sample_step.c``: filtered negatives, filtered and compacted in one pass."""

from __future__ import annotations

import torch

from .build import _require
from .checks import _check_segments, _status, _tensor, _threads, check_ids, id_range


def filter_fill(rows: torch.Tensor, cand: torch.Tensor, out: torch.Tensor, filled: torch.Tensor, start: torch.Tensor,
                count: torch.Tensor, vals: torch.Tensor, num_entities: int, threads: int | None = None) -> torch.Tensor:
    """Filter and compact in one pass: for each i, append the candidates ``cand[i]`` (R, K) int64 that are not in
    row ``b = rows[i]``'s answer list ``vals[start[b] : start[b] + count[b]]`` to ``out[b]`` (B, n) int64, in draw
    order, while ``filled[b]`` (B,) int64 (updated in place) is below n.  Returns ``found`` (R,): valid candidates
    per row.  ``rows`` must not repeat.  Memory: 8·⌈N/64⌉ bytes per thread in C."""
    fn = "emukg_filter_fill"
    lib = _require("sample_step")
    N = int(num_entities)
    if N < 1:
        raise ValueError(f"{fn}: num_entities must be at least 1, not {N}.")
    _tensor(fn, "out", out, torch.int64, (None, None))
    B, n = out.shape
    _tensor(fn, "filled", filled, torch.int64, (B,))
    _tensor(fn, "rows", rows, torch.int64, (None,))
    R = rows.shape[0]
    _tensor(fn, "cand", cand, torch.int64, (R, None))
    K = cand.shape[1]
    check_ids(fn, "rows", rows, B)
    check_ids(fn, "cand", cand, N)
    if start is None or count is None or vals is None:
        raise ValueError(f"{fn}: start, count and vals (FilterIndex.segments of the B kept pairs) are required.")
    _check_segments(fn, start, count, vals, B, N)
    if B:
        r = id_range(filled)
        if r[0] < 0 or r[1] > n:
            raise ValueError(f"{fn}: filled holds {r[0] if r[0] < 0 else r[1]}, outside 0..{n}; it counts the filled "
                             f"columns of out (start it at zeros).")
    found = torch.empty(R, dtype=torch.int64)
    nt = _threads(threads)
    if R == 0:
        return found
    rc = lib.emukg_filter_fill(R, K, n, N, rows.data_ptr(), start.data_ptr(), count.data_ptr(), vals.data_ptr(),
                               cand.data_ptr(), out.data_ptr(), filled.data_ptr(), found.data_ptr(), nt)
    _status(fn, rc, nt * 8 * (-(-N // 64)), "the machine is out of memory for the per-thread entity bitmaps; free memory")
    return found
