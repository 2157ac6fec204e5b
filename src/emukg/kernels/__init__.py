"""The one boundary to emukg's native CPU kernels: compiling, loading, prototypes, metric codes, checked calls.

The C files of this folder, all including ``emukg_kernels.h`` (the metric, mutation and status codes):

- ``candidates.c``: fused candidate scoring for training (all seven models: forward and backward, EMU and Mixup,
  the extended metrics), the EMU keep mask;
- ``score_all.c``: evaluation ranking against every entity;
- ``sample_step.c``: filtered negatives, and torch.randint's draws from a CPU generator (bit for bit, faster);
- ``sparse_optim.c``: row-sparse Adagrad / lazy Adam and the compaction of a sparse step's rows.

The Python modules, one concern each (this facade re-exports their public names):

- :mod:`.codes`: the codes shared with the header (:class:`Metric`, :class:`Mut`, ``STATUS_*``) and the model
  hooks' kind names mapped to them (:func:`metric_code`, :func:`ext_metric_code`);
- :mod:`.build`: compiling, the cache (:func:`kernel_cache_dir`, :func:`so_path`), :data:`PROTOTYPES`,
  :func:`load`, :func:`available`, :func:`status`, :func:`describe`;
- :mod:`.checks`: the argument checks of every wrapper (:func:`ptr`, :func:`check_ids`, :func:`id_range`, …) and
  status codes turned into ``MemoryError``;
- :mod:`.candidates`: the wrappers of ``candidates.c`` (:func:`cand_fwd`, :func:`cand_bwd`, :func:`cand_ext_fwd`,
  :func:`cand_ext_bwd`, :func:`emu_mask`, :func:`sincos`);
- :mod:`.ranking`: the wrappers of ``score_all.c`` (:func:`rank_fused`, :func:`rank_dense`, :func:`score_all_lanes`);
- :mod:`.sampling`: the wrappers of ``sample_step.c`` (:func:`filter_fill`, :func:`randint`);
- :mod:`.rows`: the wrappers of ``sparse_optim.c`` (:func:`adagrad_rows`, :func:`adam_rows`, :func:`compact_rows`).

**Loading.**  :func:`load` compiles a kernel once (``cc -O3 -march=native -fopenmp``) into the user cache
directory, keyed by a hash of the C source, the header, the compiler flags and the CPU (so an edited source never
reuses a stale ``.so``), declares the prototype (argtypes/restype) of every exported function from
:data:`PROTOTYPES`, and returns the ``ctypes.CDLL`` — or ``None`` when no compiler works or ``EMUKG_NO_NATIVE=1``
is set, in which case callers use plain PyTorch (same results, several times slower on the CPU).  An unexpected
fallback is reported by ONE ``logging.warning`` line per process naming the reason (a deliberate
``EMUKG_NO_NATIVE=1`` only at INFO); :func:`status` and :func:`describe` say which path runs.  GPU runs never use
these kernels.

**Calling a kernel.**  Only through the typed wrappers.  Before C sees a pointer they check, with explicit
``if … raise`` (kept under ``python -O``): dtype, CPU device, contiguity, shapes, and that every id is in range
(0 ≤ id < N; CSR segments inside their value array) with one ``aminmax`` reduction per id tensor per call (≈60 µs
per 250k ids, nothing per element in Python).  Programming errors raise ``ValueError`` (dtype, device, layout,
shape, code) or ``IndexError`` (ids); a kernel that cannot allocate its working memory returns ``EMUKG_ENOMEM``,
turned into ``MemoryError`` naming the kernel and the bytes.  Functions that check user input (``evaluate``'s
triples) raise :class:`~emukg.errors.EmukgError` themselves.
"""

from __future__ import annotations

from .build import (FLAGS, HEADER, HERE, KERNELS, PROTOTYPES, available, describe, kernel_cache_dir, load, so_path,
                    status)
from .candidates import MIN_ROW_FLOATS, cand_bwd, cand_ext_bwd, cand_ext_fwd, cand_fwd, emu_mask, keep_masks, sincos
from .checks import check_ids, id_range, ptr
from .codes import (EVAL_METRICS, EXT_METRIC_CODES, EXT_METRICS, METRIC_CODES, STATUS_ENOMEM, STATUS_OK, Metric, Mut,
                    ext_metric_code, metric_code)
from .ranking import RANGE_BYTES, rank_dense, rank_fused, rank_fused_bytes, score_all_lanes
from .rows import ROOT_CHUNK_BYTES, adagrad_rows, adam_rows, compact_rows
from .sampling import RANDINT_MAX, filter_fill, randint

__all__ = ["Metric", "Mut", "METRIC_CODES", "EXT_METRIC_CODES", "EVAL_METRICS", "EXT_METRICS", "STATUS_OK",
           "STATUS_ENOMEM", "metric_code", "ext_metric_code", "HERE", "HEADER", "FLAGS", "KERNELS", "PROTOTYPES",
           "kernel_cache_dir", "so_path", "load", "available", "status", "describe", "ptr", "check_ids", "id_range",
           "MIN_ROW_FLOATS", "cand_fwd", "cand_bwd", "cand_ext_fwd", "cand_ext_bwd", "emu_mask", "keep_masks", "sincos",
           "RANGE_BYTES", "score_all_lanes", "rank_fused", "rank_fused_bytes", "rank_dense", "filter_fill",
           "adagrad_rows", "adam_rows", "compact_rows", "ROOT_CHUNK_BYTES", "randint", "RANDINT_MAX"]
