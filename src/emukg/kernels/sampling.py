"""Wrappers of ``sample_step.c``: filtered negatives, filtered and compacted in one pass; :func:`randint`, the uniform
draws of a CPU generator."""

from __future__ import annotations

import torch

from .build import _require, available
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


RANDINT_MAX = (1 << 28) - 1  # the largest high that randint draws in C (the module's randint docstring)
_STATE_BYTES = 5056  # CPUGeneratorImplState: seed, left, seeded, next, 624 words (8 bytes each), the normal cache
_RANDINT_OK: list[bool] = []  # the first call's check against torch.randint, once per process


def _mt_draw(generator: torch.Generator, high: int, n: int) -> torch.Tensor | None:
    """n draws of randint(0, high) from the generator's MT19937 in C, the generator advanced as torch would; None
    (nothing drawn) where its state has another layout."""
    import struct

    blob = generator.get_state()
    if blob.numel() != _STATE_BYTES or blob.dtype != torch.uint8:
        return None
    left, nxt = struct.unpack_from("<i", blob.numpy(), 8)[0], struct.unpack_from("<q", blob.numpy(), 16)[0]
    if not (1 <= left and 0 <= nxt and nxt + left - 1 <= 624):
        return None
    out = torch.empty(n, dtype=torch.int64)
    _status("emukg_mt_randint", _require("sample_step").emukg_mt_randint(n, blob.data_ptr(), high, 0, out.data_ptr()),
            0, "it allocates nothing; report this as a bug")
    generator.set_state(blob)
    return out


def randint(high: int, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """``torch.randint(0, high, shape, generator=generator)`` for a CPU generator, bit for bit and with the generator
    left in the same state, drawn by ``sample_step.c``'s MT19937 (``emukg_mt_randint``): ATen's CPU kernel spends a
    64-bit division on each element; this tempers and reduces the words between two twists in one vectorised loop
    (256,000 draws: 0.65 → 0.16 ms on the development machine, docs/results.md §K3).  ``high`` from 1 to
    :data:`RANDINT_MAX` (2²⁸ − 1; from 2²⁸ on torch 2.13 draws otherwise, measured); anything else — a larger
    ``high``, another device, no native kernel, a generator state of another layout — is drawn by ``torch.randint``.
    The first call in a process checks the kernel against ``torch.randint`` on a probe generator and, should they
    differ, leaves every later call to torch.  The state is read and written back around the draw, so two threads
    must not draw from one generator at once (torch.randint locks the generator; this does not)."""
    n = 1
    for s in shape:
        n *= int(s)
    high = int(high)
    if (generator.device.type != "cpu" or not 1 <= high <= RANDINT_MAX or n == 0
            or not available("sample_step")):
        return torch.randint(0, high, shape, generator=generator)
    if not _RANDINT_OK:
        probe, twin = torch.Generator().manual_seed(20_201), torch.Generator()
        twin.set_state(probe.get_state())
        ok = True
        for top, count in ((14_541, 1_500), (RANDINT_MAX, 700), (1, 3)):
            got = _mt_draw(probe, top, count)
            ok = ok and (got is not None and torch.equal(got, torch.randint(0, top, (count,), generator=twin))
                         and torch.equal(probe.get_state(), twin.get_state()))
        _RANDINT_OK.append(bool(ok))
    if not _RANDINT_OK[0]:
        return torch.randint(0, high, shape, generator=generator)
    out = _mt_draw(generator, high, n)
    if out is None:
        return torch.randint(0, high, shape, generator=generator)
    return out.view(shape)
