"""Transparent huge pages for the large tables of a run (Linux; elsewhere a plain allocation).

A row-sparse step reads and writes a few hundred thousand random rows of tables of gigabytes (the entity
embedding, its optimiser state, the step's gradient table).  With 4 KiB pages nearly every row is a TLB miss
and a page walk; with 2 MiB pages the translations of a gigabyte fit the TLB's second level.  Measured on the
2-core EPYC development machine, 2.5 M × 100 table, 257,000 candidates: the fused forward 78 → 61 ms, the backward
120 → 107 ms, allocating and zeroing the 186 MB gradient table 46 → 9 ms (``THP_MEM_ALLOC_ENABLE=1``, PyTorch's own
switch for the same advice, against the default).

PyTorch asks for huge pages only when ``THP_MEM_ALLOC_ENABLE=1`` is set before it is imported; a library cannot
rely on that, so :func:`huge_empty` allocates a table untouched and advises the kernel (``madvise(MADV_HUGEPAGE)``)
before its first write, so that the first touch faults in 2 MiB pages.  It does so for tables of at least
:data:`HUGE_MIN_BYTES` on Linux when ``/sys/kernel/mm/transparent_hugepage/enabled`` is ``madvise`` or
``always``; otherwise it is ``torch.empty``.  The advice is a hint: the kernel may still use 4 KiB pages (memory
fragmented, THP disabled), and results never depend on it.  Resident memory is unchanged for tables that are
touched all over (as these are); a table touched sparsely could grow by up to 2 MiB per touched page.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import lru_cache

import torch

HUGE_MIN_BYTES = 64 << 20  # smaller tables stay on ordinary pages (they fit the TLB's reach well enough)
HUGE_PAGE = 2 << 20
MADV_HUGEPAGE = 14  # <sys/mman.h> on Linux


@lru_cache(maxsize=None)
def _madvise():
    """libc's madvise with its prototype, or None where transparent huge pages cannot be asked for."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled", encoding="ascii") as f:
            mode = f.read()
    except OSError:
        return None
    if "[never]" in mode:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes, fn.restype = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int], ctypes.c_int
    return fn


@lru_cache(maxsize=None)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
    return fn


def release_free_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc's ``malloc_trim``; elsewhere nothing).  After a
    run's set-up (reading the graph, counting pairs) the heap keeps the freed temporaries — ≈ 0.1–0.3 GB at 2.5 M
    entities — which would otherwise stay resident for the whole run."""
    fn = _malloc_trim()
    if fn is not None:
        fn(0)


def advise_huge(tensor: torch.Tensor) -> bool:
    """Ask for 2 MiB pages over the whole 2 MiB extents inside ``tensor``'s memory; True when the kernel accepted.
    Only pages not yet touched are affected at once (see the module docstring)."""
    fn = _madvise()
    nbytes = tensor.numel() * tensor.element_size()
    if fn is None or tensor.device.type != "cpu" or not tensor.is_contiguous() or nbytes < HUGE_MIN_BYTES:
        return False
    start = tensor.data_ptr()
    lo = -(-start // HUGE_PAGE) * HUGE_PAGE
    hi = (start + nbytes) // HUGE_PAGE * HUGE_PAGE
    return hi > lo and fn(lo, hi - lo, MADV_HUGEPAGE) == 0


def huge_empty(shape, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """An uninitialised CPU tensor of ``shape``, advised for huge pages when large (:func:`advise_huge`)."""
    out = torch.empty(shape, dtype=dtype)
    advise_huge(out)
    return out


def huge_zeros_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.zeros_like(t)`` (contiguous), on huge pages when large and on the CPU."""
    if t.device.type != "cpu":
        return torch.zeros_like(t, memory_format=torch.preserve_format)
    return huge_empty(t.shape, t.dtype).zero_()


def rehome_huge(param: torch.Tensor) -> bool:
    """Move a large CPU tensor's values (a parameter's ``.data``) into memory advised for huge pages (one copy);
    True when it moved.  Costs a second copy of the table while it runs."""
    nbytes = param.numel() * param.element_size()
    if _madvise() is None or param.device.type != "cpu" or nbytes < HUGE_MIN_BYTES:
        return False
    fresh = huge_empty(param.shape, param.dtype)
    with torch.no_grad():
        fresh.copy_(param)
    param.data = fresh
    return True


__all__ = ["release_free_memory", "advise_huge", "huge_empty", "huge_zeros_like", "rehome_huge", "HUGE_MIN_BYTES"]


def machine_memory_bytes(device: torch.device | None = None) -> int | None:
    """The memory a run may use: a CUDA device's total memory, else the machine's physical memory or the cgroup's
    limit (``/sys/fs/cgroup/memory.max``, v1's ``memory.limit_in_bytes``) where lower; None where unknown."""
    import os

    if device is not None and device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path, encoding="ascii") as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < (total or 1 << 62):
            total = int(text)
        break
    return total
