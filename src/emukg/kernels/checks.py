"""The argument checks of every kernel wrapper, explicit ``if … raise`` (kept under ``python -O``): dtype, CPU
device, contiguity, shapes, ids in range (one ``aminmax`` reduction per id tensor), CSR segments inside their value
array, thread counts, unsigned 32-bit words, metric codes; and the status code of a call turned into
``MemoryError``."""

from __future__ import annotations

import torch

from .codes import STATUS_OK, Metric, metric_code


def ptr(tensor) -> int | None:
    """Raw data pointer of a contiguous CPU tensor (None for None), for passing to a kernel."""
    if tensor is None:
        return None
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"expected a torch.Tensor, not {type(tensor).__name__}.")
    if tensor.device.type != "cpu":
        raise ValueError(f"the native kernels read CPU memory only; this tensor is on {tensor.device}.")
    if not tensor.is_contiguous():
        raise ValueError("the native kernels need a contiguous tensor; pass tensor.contiguous().")
    return tensor.data_ptr()


def _tensor(fn: str, name: str, t, dtype: torch.dtype, shape: tuple) -> torch.Tensor:
    """``t`` checked: a CPU, contiguous tensor of ``dtype`` and ``shape`` (None entries: any size)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{fn}: {name} must be a torch.Tensor, not {type(t).__name__}.")
    if t.dtype != dtype:
        raise ValueError(f"{fn}: {name} must have dtype {dtype}, not {t.dtype}; convert it with .to({dtype}).")
    if t.device.type != "cpu":
        raise ValueError(f"{fn}: {name} is on {t.device}, but the native kernels read CPU memory only; use the PyTorch path.")
    if t.dim() != len(shape) or any(want is not None and have != want for have, want in zip(t.shape, shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{fn}: {name} must have shape {want}, not {tuple(t.shape)}.")
    if not t.is_contiguous():
        raise ValueError(f"{fn}: {name} must be contiguous; pass {name}.contiguous().")
    return t


def id_range(ids: torch.Tensor) -> tuple[int, int] | None:
    """(min, max) of an id tensor in one reduction (one host sync on a GPU); None when empty."""
    if ids.numel() == 0:
        return None
    lo, hi = torch.aminmax(ids)
    return int(lo), int(hi)


def check_ids(fn: str, name: str, ids: torch.Tensor, n: int, exc: type[Exception] = IndexError) -> None:
    """Raise ``exc`` unless every value of ``ids`` (any device) lies in [0, n)."""
    r = id_range(ids)
    if r is not None and (r[0] < 0 or r[1] >= n):
        bad = r[0] if r[0] < 0 else r[1]
        raise exc(f"{fn}: {name} holds id {bad}, outside the valid range 0..{n - 1}; pass ids below {n}.")


def _check_segments(fn: str, start, count, vals, rows: int, n: int):
    """CSR exclusion/answer lists: all three or none; start/count int64 (rows,), every segment inside vals,
    every value in [0, n).  Returns the (possibly None) tensors."""
    given = [x is not None for x in (start, count, vals)]
    if not any(given):
        return None, None, None
    if not all(given):
        raise ValueError(f"{fn}: start, count and vals must be given together (or all None).")
    _tensor(fn, "start", start, torch.int64, (rows,))
    _tensor(fn, "count", count, torch.int64, (rows,))
    _tensor(fn, "vals", vals, torch.int64, (None,))
    if rows:
        lo_s, _ = id_range(start)
        lo_c, _ = id_range(count)
        end = int((start + count).max())
        if lo_s < 0 or lo_c < 0 or end > vals.numel():
            raise IndexError(f"{fn}: the segments start/count reach outside vals (min start {lo_s}, min count {lo_c}, "
                             f"max end {end}, len(vals) {vals.numel()}); pass the arrays of one FilterIndex.segments call.")
    check_ids(fn, "vals", vals, n)
    return start, count, vals


def _threads(threads: int | None) -> int:
    t = torch.get_num_threads() if threads is None else int(threads)
    if t < 1:
        raise ValueError(f"threads must be at least 1, not {t}.")
    return t


def _u32(fn: str, name: str, v) -> int:
    v = int(v)
    if not 0 <= v < 1 << 32:
        raise ValueError(f"{fn}: {name} must lie in [0, 2**32), not {v}; mask it with & 0xFFFFFFFF.")
    return v


def _status(fn: str, rc: int, nbytes: int, hint: str) -> None:
    if rc != STATUS_OK:
        raise MemoryError(f"{fn}: could not allocate its working memory (about {nbytes:,} bytes); {hint}.")


def _metric(fn: str, metric) -> Metric:
    if isinstance(metric, str):
        return metric_code(metric)
    try:
        return Metric(int(metric))
    except ValueError:
        raise ValueError(f"{fn}: metric must be one of {[m.name for m in Metric]}, not {metric!r}.") from None
