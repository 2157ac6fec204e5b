"""Wrappers of ``sparse_optim.c``: fused row-sparse optimiser steps (Adagrad, lazy Adam; emukg.optim), exact
(staged around ``torch.sqrt_``) or fused, and the compaction of a sparse step's rows."""

from __future__ import annotations

import ctypes
import threading

import torch

from .build import _require
from .checks import _status, _tensor, _threads, check_ids


ROOT_CHUNK_BYTES = 16 << 20  # the exact form's buffer of square roots: at most this many bytes, reused over row chunks


def _rows_args(fn: str, param: torch.Tensor, states: dict, idx: torch.Tensor, grad: torch.Tensor) -> tuple[int, int]:
    """Checks of the row-sparse optimiser kernels: param and its state tensors float32 (N, D), idx int64 (U,) strictly
    increasing ids below N (a coalesced gradient's rows: no two threads write one row), grad float32 (U, D), no two
    of them in one storage; returns (U, D)."""
    _tensor(fn, "param", param, torch.float32, (None, None))
    N, D = param.shape
    for name, t in states.items():
        _tensor(fn, name, t, torch.float32, (N, D))
    _tensor(fn, "idx", idx, torch.int64, (None,))
    U = idx.shape[0]
    _tensor(fn, "grad", grad, torch.float32, (U, D))
    check_ids(fn, "idx", idx, N)
    if U > 1 and not bool((idx[1:] > idx[:-1]).all()):
        raise ValueError(f"{fn}: idx must be strictly increasing (distinct rows, as a coalesced gradient's indices); "
                         f"pass grad.coalesce().")
    seen: dict[int, str] = {}
    for name, t in {"param": param, **states, "grad": grad}.items():
        if t.numel():
            key = t.untyped_storage().data_ptr()
            if key in seen:
                raise ValueError(f"{fn}: {name} shares its memory with {seen[key]}; pass separate tensors (e.g. {name}.clone()).")
            seen[key] = name
    return U, D


_ROOT_BUFFERS = threading.local()  # per thread: concurrent optimisers (e.g. parallel trials) never share one


def _root_buffers(count: int, floats: int) -> list[torch.Tensor]:
    """``count`` float32 buffers of at least ``floats`` elements, kept between steps (allocating 2 × 16 MB afresh
    every step costs page faults: ~10 ms at 2.5 M entities)."""
    bufs = getattr(_ROOT_BUFFERS, "bufs", [])
    if len(bufs) < count or bufs[0].numel() < floats:
        bufs = _ROOT_BUFFERS.bufs = [torch.empty(floats, dtype=torch.float32) for _ in range(max(count, 2))]
    return bufs[:count]


def _staged(U: int, D: int, chunk_bytes: int | None, call) -> None:
    """Run the exact (staged) optimiser over rows 0..U in chunks of about ``chunk_bytes``, pipelined: ``call(prev,
    cur)`` finishes chunk ``prev`` and starts chunk ``cur`` (each ``(a, b, buffer (b − a, D))`` or None), then the
    square roots of ``cur``'s buffer are taken with ``torch.sqrt_`` (torch's own, so that the result is torch's).
    Two buffers, alternating."""
    rows = max(1, min(U, int(chunk_bytes or ROOT_CHUNK_BYTES) // max(1, 4 * D)))
    bufs = _root_buffers(2 if U > rows else 1, rows * D)
    prev = None
    for k, a in enumerate(range(0, U, rows)):
        b = min(U, a + rows)
        cur = (a, b, bufs[k % len(bufs)][: (b - a) * D].view(b - a, D))
        call(prev, cur)
        cur[2].sqrt_()
        prev = cur
    call(prev, None)


def _chunk(idx: torch.Tensor, grad: torch.Tensor | None, part):
    """(rows, ids pointer, gradient pointer, buffer pointer) of a chunk ``(a, b, buffer)`` or of None (empty)."""
    if part is None:
        return 0, None, None, None
    a, b, buf = part
    return b - a, idx[a:].data_ptr(), grad[a:].data_ptr() if grad is not None else None, buf.data_ptr()


def adagrad_rows(param: torch.Tensor, sum: torch.Tensor, idx: torch.Tensor, grad: torch.Tensor, lr: float, eps: float,
                 threads: int | None = None, *, exact: bool = True, chunk_bytes: int | None = None) -> None:
    """Adagrad on the rows ``idx`` (U,) int64 of ``param`` and its accumulator ``sum`` (N, D) float32, in place, for
    the row gradients ``grad`` (U, D) float32: ``sum += g·g; param −= lr·g / (√sum + eps)``; ids strictly increasing
    (a coalesced gradient's).  ``exact`` (default): bit-identical to ``torch.optim.Adagrad``'s single-tensor step on
    those rows — two C passes around ``torch.sqrt_`` (torch's sqrt is MKL's, not correctly rounded: sparse_optim.c),
    with a buffer of at most ``chunk_bytes`` (:data:`ROOT_CHUNK_BYTES`).  ``exact=False``: one fused pass with a
    correctly rounded sqrt, no buffer; ``sum`` still bit-identical, ``param`` off by at most 4 ulp of
    max(|param|, |step|) per step (measured; from the sqrt's 1 ulp).
    Bumps the tensors' autograd versions as in-place ops would."""
    fn = "emukg_adagrad_rows"
    lib = _require("sparse_optim")
    U, D = _rows_args(fn, param, {"sum": sum}, idx, grad)
    nt = _threads(threads)
    lr, eps = float(lr), float(eps)
    if U and D and not exact:
        _status(fn, lib.emukg_adagrad_rows(U, D, idx.data_ptr(), grad.data_ptr(), param.data_ptr(), sum.data_ptr(), lr,
                                           eps, nt), 0, "it allocates nothing; report this as a bug")
    elif U and D:
        def call(prev, cur):
            nA, iA, gA, rA = _chunk(idx, grad, prev)
            nB, iB, gB, oB = _chunk(idx, grad, cur)
            _status(fn, lib.emukg_adagrad_stage(D, nA, iA, gA, rA, param.data_ptr(), lr, eps, nB, iB, gB, sum.data_ptr(),
                                                oB, nt), 0, "it allocates nothing; report this as a bug")

        _staged(U, D, chunk_bytes, call)
    torch.autograd.graph.increment_version([param, sum])


def adam_rows(param: torch.Tensor, exp_avg: torch.Tensor, exp_avg_sq: torch.Tensor, idx: torch.Tensor,
              grad: torch.Tensor, beta1: float, beta2: float, step_size: float, bias_correction2_sqrt: float,
              eps: float, threads: int | None = None, *, exact: bool = True, chunk_bytes: int | None = None) -> None:
    """Lazy Adam (emukg.optim._adam_update) on the rows ``idx`` (U,) int64 of ``param`` and its moments ``exp_avg``,
    ``exp_avg_sq`` (N, D) float32, in place, for the row gradients ``grad`` (U, D) float32:
    ``m = lerp(m, g, 1 − β1); v = β2·v + (1 − β2)·g²; param −= step_size·m / (√v / bias_correction2_sqrt + eps)``
    (1 − β1 and 1 − β2 formed in double, as the Python expressions are); ids strictly increasing.  ``exact``,
    ``chunk_bytes``: as :func:`adagrad_rows` (exact: bit-identical to those PyTorch ops on the rows; fused: the
    moments bit-identical, ``param`` within 4 ulp of max(|param|, |step|) per step)."""
    fn = "emukg_adam_rows"
    lib = _require("sparse_optim")
    U, D = _rows_args(fn, param, {"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}, idx, grad)
    nt = _threads(threads)
    beta1, beta2, step_size, bc2, eps = (float(x) for x in (beta1, beta2, step_size, bias_correction2_sqrt, eps))
    if U and D and not exact:
        _status(fn, lib.emukg_adam_rows(U, D, idx.data_ptr(), grad.data_ptr(), param.data_ptr(), exp_avg.data_ptr(),
                                        exp_avg_sq.data_ptr(), 1 - beta1, beta2, 1 - beta2, step_size, bc2, eps, nt),
                0, "it allocates nothing; report this as a bug")
    elif U and D:
        def call(prev, cur):
            nA, iA, _, rA = _chunk(idx, None, prev)
            nB, iB, gB, oB = _chunk(idx, grad, cur)
            _status(fn, lib.emukg_adam_stage(D, nA, iA, rA, param.data_ptr(), step_size, bc2, eps, nB, iB, gB,
                                             exp_avg.data_ptr(), exp_avg_sq.data_ptr(), oB, 1 - beta1, beta2, 1 - beta2,
                                             nt), 0, "it allocates nothing; report this as a bug")

        _staged(U, D, chunk_bytes, call)
    torch.autograd.graph.increment_version([param, exp_avg, exp_avg_sq])


def compact_rows(ids: torch.Tensor, num_rows: int, threads: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unique ids ascending, inverse)`` of the int64 ids ``ids`` (any shape; inverse has it) below ``num_rows``, as
    ``torch.unique(ids, sorted=True, return_inverse=True)``, in linear time through a bitmap of the rows
    (sparse_optim.c).  Memory: the outputs (8 bytes per id, 8 per distinct id) and num_rows/4 bytes in C."""
    fn = "emukg_compact_rows"
    lib = _require("sparse_optim")
    N = int(num_rows)
    if N < 0:
        raise ValueError(f"{fn}: num_rows must be non-negative, not {num_rows}.")
    _tensor(fn, "ids", ids, torch.int64, tuple(ids.shape))
    check_ids(fn, "ids", ids, N)
    n = ids.numel()
    uniq = torch.empty(n, dtype=torch.int64)
    inverse = torch.empty(ids.shape, dtype=torch.int64)
    count = ctypes.c_int64(0)
    rc = lib.emukg_compact_rows(n, ids.data_ptr(), N, uniq.data_ptr(), inverse.data_ptr(), ctypes.byref(count),
                                _threads(threads))
    _status(fn, rc, N // 4 + 16, "the machine is out of memory; free memory")
    return uniq[:count.value], inverse
