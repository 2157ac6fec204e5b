"""The one boundary to emukg's native CPU kernels: compiling, loading, prototypes, metric codes, checked calls.

Each kernel is a C file in this folder (``transe_step.c``: fused candidate scoring for training; ``score_all.c``:
evaluation ranking; ``sample_step.c``: filtered negatives; ``sparse_optim.c``: row-sparse Adagrad / lazy Adam and
the compaction of a sparse step's rows), all including ``emukg_kernels.h`` (the metric,
mutation and status codes below).  :func:`load` compiles a kernel once (``cc -O3 -march=native -fopenmp``) into
the user cache directory, keyed by a hash of the C source, the header, the compiler flags and the CPU (so an
edited source never reuses a stale ``.so``), declares the prototype (argtypes/restype) of every exported
function from :data:`PROTOTYPES`, and returns the ``ctypes.CDLL`` — or ``None`` when no compiler works or
``EMUKG_NO_NATIVE=1`` is set, in which case callers use plain PyTorch (same results, several times slower on
the CPU).  An unexpected fallback is reported by ONE ``logging.warning`` line per process naming the reason
(a deliberate ``EMUKG_NO_NATIVE=1`` only at INFO); :func:`status` and :func:`describe` say which path runs.
GPU runs never use these kernels.

**Calling a kernel.**  Only through the typed wrappers here — :func:`cand_fwd`, :func:`cand_bwd`,
:func:`cand_ext_fwd`, :func:`cand_ext_bwd`, :func:`sincos`, :func:`emu_mask`, :func:`rank_fused`,
:func:`rank_dense`, :func:`filter_fill`, :func:`score_all_lanes`, :func:`adagrad_rows`, :func:`adam_rows`,
:func:`compact_rows`.  Before
C sees a pointer they check, with explicit ``if … raise`` (kept under ``python -O``): dtype, CPU device,
contiguity, shapes, and that every id is in range (0 ≤ id < N; CSR segments inside their value array) with one
``aminmax`` reduction per id tensor per call (≈60 µs per 250k ids, nothing per element in Python).  Programming
errors raise ``ValueError`` (dtype, device, layout, shape, code) or ``IndexError`` (ids); a kernel that cannot
allocate its working memory returns ``EMUKG_ENOMEM``, turned into ``MemoryError`` naming the kernel and the bytes.
Functions that check user input (``evaluate``'s triples) raise :class:`~emukg.errors.EmukgError` themselves.
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from functools import lru_cache
from pathlib import Path

import torch

from ..io_utils import user_cache_dir

log = logging.getLogger("emukg")

HERE = Path(__file__).resolve().parent
HEADER = HERE / "emukg_kernels.h"
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
KERNELS = ("transe_step", "score_all", "sample_step", "sparse_optim")
COMPILE_TIMEOUT_S = 600
FALLBACK_COST = "using the plain PyTorch path instead: same results, several times slower on CPU"


# ---------------------------------------------------------------------------------------------------------
# codes shared with emukg_kernels.h
class Metric(enum.IntEnum):
    """Distance/similarity codes of every kernel (``EMUKG_METRIC_*``): one numbering for training and evaluation.

    L1: Σᵢ |qᵢ − xᵢ| (TransE); DOT: Σᵢ qᵢ·xᵢ (DistMult, ComplEx); COMPLEX_L1: Σₖ |q_k − x_k| over complex
    coordinates k, rows [real half, imaginary half] (RotatE).  Training only (:func:`cand_ext_fwd`; the
    evaluation kernel refuses them): SIN_L1 Σᵢ |sin(qᵢ − xᵢ/scale)| (pRotatE); TRANSD_L1 Σᵢ |qᵢ − yᵢ| with
    y = normalize(e + (e·eₚ)·a) of a row [e, eₚ] (TransD); HAKE λ_m‖q_m − a∘x_m‖₂ + λ_p Σᵢ |sin(q_pᵢ − x_pᵢ/scale)|
    of a row [x_m, x_p] (HAKE).
    """

    L1 = 0
    DOT = 1
    COMPLEX_L1 = 2
    SIN_L1 = 3
    TRANSD_L1 = 4
    HAKE = 5


EVAL_METRICS = (Metric.L1, Metric.DOT, Metric.COMPLEX_L1)  # the metrics score_all.c and emukg_cand_fwd know
EXT_METRICS = (Metric.SIN_L1, Metric.TRANSD_L1, Metric.HAKE)  # emukg_cand_ext_fwd/bwd's


class Mut(enum.IntEnum):
    """Candidate mutation codes of the training kernel (``EMUKG_MUT_*``)."""

    NONE = 0
    EMU = 1
    MIXUP = 2


STATUS_OK = 0
STATUS_ENOMEM = -1

# The kind names of the model hooks (``kernel_query``: 'l1', 'dot', 'c2'; ``eval_kernel_query``: 'complex_l1')
# mapped to the one numbering.  'c2' and 'complex_l1' are the same metric.
METRIC_CODES: dict[str, Metric] = {"l1": Metric.L1, "dot": Metric.DOT, "c2": Metric.COMPLEX_L1,
                                   "complex_l1": Metric.COMPLEX_L1}


# Kinds of the training hook ``kernel_query`` served by emukg_cand_ext_*: deliberately NOT in METRIC_CODES, so the
# evaluation's fast path (which looks kinds up there) never hands them to score_all.c.
EXT_METRIC_CODES: dict[str, Metric] = {"sin_l1": Metric.SIN_L1, "transd_l1": Metric.TRANSD_L1, "hake": Metric.HAKE}


def metric_code(kind: str) -> Metric:
    """The :class:`Metric` of a model hook's kind name ('l1', 'dot', 'c2' / 'complex_l1')."""
    code = METRIC_CODES.get(kind)
    if code is None:
        raise ValueError(f"kind must be one of {sorted(METRIC_CODES)}, not {kind!r}.")
    return code


def ext_metric_code(kind: str) -> Metric:
    """The :class:`Metric` of an extended training kind ('sin_l1', 'transd_l1', 'hake')."""
    code = EXT_METRIC_CODES.get(kind)
    if code is None:
        raise ValueError(f"kind must be one of {sorted(EXT_METRIC_CODES)}, not {kind!r}.")
    return code


# ---------------------------------------------------------------------------------------------------------
# prototypes of every exported C function, per kernel
_I64, _INT, _U32, _F32, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_uint32, ctypes.c_float, ctypes.c_void_p
PROTOTYPES: dict[str, dict[str, tuple]] = {
    "transe_step": {
        # (B, C, D, q, E, cand, kind, bias, mut, s0, s1, T, b0, ratio, out, nthreads) -> status
        "emukg_cand_fwd": (_INT, [_I64, _I64, _I64, _PTR, _PTR, _PTR, _INT, _F32, _INT, _U32, _U32, _U32, _I64, _PTR,
                                  _PTR, _INT]),
        # (B, C, D, NG, q, E, cand, slot, kind, mut, s0, s1, T, b0, ratio, gout, gq, gE, nthreads) -> status
        "emukg_cand_bwd": (_INT, [_I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _INT, _INT, _U32, _U32, _U32, _I64,
                                  _PTR, _PTR, _PTR, _PTR, _INT]),
        # (B, C, D, b0, s0, s1, T, out, nthreads) -> status
        "emukg_emu_mask": (_INT, [_I64, _I64, _I64, _I64, _U32, _U32, _U32, _PTR, _INT]),
        # (B, C, D, q, aux, E, cand, kind, bias, scale, wm, wp, mut, s0, s1, T, b0, ratio, out, nthreads) -> status
        "emukg_cand_ext_fwd": (_INT, [_I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _INT, _F32, _F32, _F32, _F32, _INT, _U32,
                                      _U32, _U32, _I64, _PTR, _PTR, _INT]),
        # (B, C, D, NG, q, aux, E, cand, slot, kind, scale, wm, wp, mut, s0, s1, T, b0, ratio, gout, gq, gaux, gE,
        #  nthreads) -> status
        "emukg_cand_ext_bwd": (_INT, [_I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _INT, _F32, _F32, _F32, _INT,
                                      _U32, _U32, _U32, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _INT]),
        # (n, z, sin, cos)
        "emukg_sincos": (None, [_I64, _PTR, _PTR, _PTR]),
    },
    "score_all": {
        # (metric, Q, nq, dim, E, n_ent, ld, ans, ex_start, ex_count, ex_vals, gt, ge, thr, nthreads) -> status
        "emukg_rank_fused": (_INT, [_INT, _PTR, _I64, _I64, _PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR,
                                    _INT]),
        # (S, nq, n, ld, col0, thr, ans, ex_start, ex_count, ex_vals, gt, ge, nan_count, nthreads)
        "emukg_rank_dense": (None, [_PTR, _I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR,
                                    _INT]),
        "emukg_score_all_lanes": (_INT, []),
    },
    "sample_step": {
        # (R, K, n, N, rows, start, count, vals, cand, out, filled, found, nthreads) -> status
        "emukg_filter_fill": (_INT, [_I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _INT]),
    },
    "sparse_optim": {
        # (D, nA, idxA, gA, rootA, param, lr, eps, nB, idxB, gB, sum, outB, nthreads) -> status
        "emukg_adagrad_stage": (_INT, [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _F32, _F32, _I64, _PTR, _PTR, _PTR, _PTR, _INT]),
        # (D, nA, idxA, rootA, param, step_size, bc2, eps, nB, idxB, gB, exp_avg, exp_avg_sq, outB, w1, beta2, w2,
        #  nthreads) -> status
        "emukg_adam_stage": (_INT, [_I64, _I64, _PTR, _PTR, _PTR, _F32, _F32, _F32, _I64, _PTR, _PTR, _PTR, _PTR, _PTR,
                                    _F32, _F32, _F32, _INT]),
        # (U, D, idx, grad, param, sum, lr, eps, nthreads) -> status
        "emukg_adagrad_rows": (_INT, [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _F32, _F32, _INT]),
        # (U, D, idx, grad, param, exp_avg, exp_avg_sq, w1, beta2, w2, step_size, bc2, eps, nthreads) -> status
        "emukg_adam_rows": (_INT, [_I64, _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _F32, _F32, _F32, _F32, _F32, _F32, _INT]),
        # (n, ids, N, uniq, inverse, U_out, nthreads) -> status
        "emukg_compact_rows": (_INT, [_I64, _PTR, _I64, _PTR, _PTR, _PTR, _INT]),
    },
}


# ---------------------------------------------------------------------------------------------------------
# compiling and loading
def cache_dir() -> Path:
    return user_cache_dir("kernels")


def _cpu_tag() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features", "model name")):
                    return line
    except OSError:
        pass
    return platform.processor()


def _disabled() -> bool:
    return os.environ.get("EMUKG_NO_NATIVE", "") not in ("", "0")


_REASONS: dict[str, str] = {}  # kernel name -> why it is not loaded ('' when it is)
_REPORTED = False


def _report_fallback(reason: str, deliberate: bool) -> None:
    """One line per process: WARNING for an unexpected fallback, INFO for EMUKG_NO_NATIVE=1."""
    global _REPORTED
    if _REPORTED:
        log.debug("native kernels: %s", reason)
        return
    _REPORTED = True
    (log.info if deliberate else log.warning)("emukg: native C kernels unavailable (%s); %s.", reason, FALLBACK_COST)


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()
    return ""


def _compile(name: str, compiler: str, target: Path) -> str:
    """Compile kernels/<name>.c to ``target``; '' on success, else the reason (one line)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([compiler, *FLAGS, "-I", str(HERE), "-o", tmp, str(HERE / f"{name}.c"), "-lm"],
                              capture_output=True, text=True, errors="replace", timeout=COMPILE_TIMEOUT_S)
        if proc.returncode != 0:
            first = _first_line(proc.stderr) or _first_line(proc.stdout)
            return (f"compiling {name}.c with {compiler} failed: {first}" if first else
                    f"compiling {name}.c with {compiler} failed with exit status {proc.returncode} and no message")
        os.replace(tmp, target)
        return ""
    except subprocess.TimeoutExpired:
        return f"compiling {name}.c with {compiler} took over {COMPILE_TIMEOUT_S} s"
    except OSError as exc:
        return f"cannot run the C compiler {compiler}: {exc.strerror or exc}"
    finally:
        Path(tmp).unlink(missing_ok=True)


def so_path(name: str) -> Path:
    """Where the compiled ``<name>.c`` is cached: the file name carries a hash of the C source, the shared header,
    the flags and the CPU, so any edit (e.g. of a metric code) compiles afresh instead of loading a stale .so."""
    if name not in PROTOTYPES:
        raise ValueError(f"name must be one of {', '.join(KERNELS)}, not {name!r}.")
    source = (HERE / f"{name}.c").read_bytes() + HEADER.read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + _cpu_tag().encode() + platform.machine().encode()).hexdigest()[:16]
    return cache_dir() / f"{name}-{key}.so"


def _load(name: str):
    """(lib or None, reason, deliberate)."""
    target = so_path(name)
    if _disabled():
        return None, "disabled by EMUKG_NO_NATIVE=1", True
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        return None, "no C compiler found (set CC or install gcc)", False
    if not target.exists():
        try:
            why = _compile(name, compiler, target)
        except OSError as exc:  # the cache folder cannot be created or written
            why = f"cannot write the kernel cache {target.parent}: {exc.strerror or exc} (set EMUKG_CACHE_DIR)"
        if why:
            return None, why, False
    try:
        lib = ctypes.CDLL(str(target))
        for fn_name, (restype, argtypes) in PROTOTYPES[name].items():
            fn = getattr(lib, fn_name)
            fn.argtypes, fn.restype = argtypes, restype
    except (OSError, AttributeError) as exc:
        return None, f"loading {target.name} failed: {_first_line(str(exc))}", False
    return lib, "", False


@lru_cache(maxsize=None)
def load(name: str):
    """Compile (once) and load ``kernels/<name>.c`` with its prototypes declared; ``None`` if unavailable.

    Callers outside this module should use the checked wrappers rather than the returned library.
    """
    lib, reason, deliberate = _load(name)
    _REASONS[name] = reason
    if lib is None:
        _report_fallback(reason, deliberate)
    return lib


def available(name: str) -> bool:
    """Whether kernel ``name`` (one of :data:`KERNELS`) compiled and loaded."""
    return load(name) is not None


def status() -> dict:
    """``{"native": bool, "reason": str, "kernels": {name: {"native": bool, "reason": str}}}`` (loads every kernel).

    ``native`` is True when every kernel loaded; ``reason`` is the first failure's reason ('' when native).
    """
    kernels = {}
    for name in KERNELS:
        ok = load(name) is not None
        kernels[name] = {"native": ok, "reason": _REASONS.get(name, "")}
    failed = [k for k in KERNELS if not kernels[k]["native"]]
    return {"native": not failed, "reason": kernels[failed[0]]["reason"] if failed else "", "kernels": kernels}


def describe() -> str:
    """One line for logs and benchmark headers: 'native C kernels' or 'PyTorch fallback: <reason>'."""
    st = status()
    if st["native"]:
        return "native C kernels (" + ", ".join(KERNELS) + ")"
    missing = [k for k, v in st["kernels"].items() if not v["native"]]
    if len(missing) == len(KERNELS):
        return f"PyTorch fallback: {st['reason']}"
    return f"native C kernels except {', '.join(missing)} (PyTorch fallback: {st['reason']})"


def _require(name: str):
    lib = load(name)
    if lib is None:
        raise RuntimeError(f"the native kernel {name} is not available ({_REASONS.get(name, '')}); "
                           f"call the PyTorch path instead or check emukg.kernels.status().")
    return lib


# ---------------------------------------------------------------------------------------------------------
# argument checks (explicit if/raise: they survive python -O)
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


# ---------------------------------------------------------------------------------------------------------
# transe_step.c: fused candidate scoring (training)
MIN_ROW_FLOATS = 16  # transe_step.c works on 16-float chunks: D (COMPLEX_L1: D/2) must be at least this


def _check_mutation(fn, mut, ratio, cand, B: int, C: int, N: int, T) -> int:
    """The checks every candidate kernel shares: Mixup's ratio (B, C) iff mut=MIXUP, at least the positive's
    column, candidate ids below N, the EMU threshold T ≤ 2²⁴; returns T as an unsigned 32-bit int."""
    if mut == Mut.MIXUP:
        if ratio is None:
            raise ValueError(f"{fn}: mut=MIXUP needs ratio, a float32 (B, C) tensor of mixing ratios.")
        _tensor(fn, "ratio", ratio, torch.float32, (B, C))
    elif ratio is not None:
        raise ValueError(f"{fn}: ratio is only read with mut=MIXUP; pass ratio=None for mut={mut.name}.")
    if C < 1 and B > 0:
        raise ValueError(f"{fn}: cand must hold at least one column (the positive's entity).")
    check_ids(fn, "cand", cand, N)
    T = _u32(fn, "T", T)
    if T > 1 << 24:
        raise ValueError(f"{fn}: T must be at most 2**24 (keep_threshold(p)), not {T}.")
    return T


def _cand_args(fn, q, E, cand, metric, mut, s0, s1, T, ratio):
    metric = _metric(fn, metric)
    try:
        mut = Mut(int(mut))
    except ValueError:
        raise ValueError(f"{fn}: mut must be one of {[m.name for m in Mut]}, not {mut!r}.") from None
    if metric not in EVAL_METRICS:
        raise ValueError(f"{fn}: metric {metric.name} is served by cand_ext_fwd/cand_ext_bwd; call those instead.")
    _tensor(fn, "E", E, torch.float32, (None, None))
    N, D = E.shape
    _tensor(fn, "cand", cand, torch.int64, (None, None))
    B, C = cand.shape
    _tensor(fn, "q", q, torch.float32, (B, D))
    L = D // 2 if metric == Metric.COMPLEX_L1 else D
    if L < MIN_ROW_FLOATS or (metric == Metric.COMPLEX_L1 and D % 2):
        raise ValueError(f"{fn}: rows of {D} floats are too narrow for metric {metric.name}; the kernel needs "
                         f"{'an even D with D/2' if metric == Metric.COMPLEX_L1 else 'D'} >= {MIN_ROW_FLOATS} (pad with zeros).")
    T = _check_mutation(fn, mut, ratio, cand, B, C, N, T)
    return metric, mut, B, C, D, N, _u32(fn, "s0", s0), _u32(fn, "s1", s1), T


def cand_fwd(q: torch.Tensor, E: torch.Tensor, cand: torch.Tensor, metric, bias: float = 0.0, mut=Mut.NONE,
             s0: int = 0, s1: int = 0, T: int = 0, ratio: torch.Tensor | None = None,
             threads: int | None = None, *, b0: int = 0) -> torch.Tensor:
    """Scores (B, C) float32 of candidates ``cand`` (B, C) int64 (column 0 the positive) against queries ``q``
    (B, D) float32 over the entity table ``E`` (N, D) float32: ``bias − dist`` (L1, COMPLEX_L1) or ``bias + q·x``
    (DOT) of the mutated candidate x' (see transe_step.c; ``mut`` EMU with seed words ``s0, s1`` and threshold
    ``T``, MIXUP with ``ratio`` (B, C); ``b0``: the EMU mask of batch rows ``b0 .. b0 + B − 1``, a shard of a larger
    batch).  Memory: the (B, C) output plus 4·D bytes in C."""
    fn = "emukg_cand_fwd"
    lib = _require("transe_step")
    metric, mut, B, C, D, N, s0, s1, T = _cand_args(fn, q, E, cand, metric, mut, s0, s1, T, ratio)
    out = torch.empty(B, C, dtype=torch.float32)
    rc = lib.emukg_cand_fwd(B, C, D, q.data_ptr(), E.data_ptr(), cand.data_ptr(), int(metric), float(bias), int(mut),
                            s0, s1, T, _row0(fn, b0), ratio.data_ptr() if ratio is not None else None, out.data_ptr(), _threads(threads))
    _status(fn, rc, 4 * D, "the machine is out of memory; free memory or lower the batch size")
    return out


def _grad_target(fn: str, out_E, slot, cand: torch.Tensor, N: int, D: int, need_E: bool):
    """The gradient table a backward adds the candidates' rows to, and the row of each candidate in it: ``out_E``
    (checked: float32 (rows, D)) or a fresh zero (N, D) table; ``slot`` (B, C) int64 ids below its rows, or None
    for the entity ids themselves.  None when the entity gradient is not needed."""
    if not need_E:
        if out_E is not None or slot is not None:
            raise ValueError(f"{fn}: out_E and slot are only read with need_E=True.")
        return None
    if out_E is None:
        if slot is not None:
            raise ValueError(f"{fn}: slot maps candidates to the rows of out_E; pass out_E with it.")
        return torch.zeros(N, D, dtype=torch.float32)
    _tensor(fn, "out_E", out_E, torch.float32, (None, D))
    if slot is None:
        if out_E.shape[0] != N:
            raise ValueError(f"{fn}: out_E has {out_E.shape[0]} rows; without slot it must have one per entity ({N}).")
    else:
        _tensor(fn, "slot", slot, torch.int64, tuple(cand.shape))
        check_ids(fn, "slot", slot, out_E.shape[0])
    return out_E


def cand_bwd(q: torch.Tensor, E: torch.Tensor, cand: torch.Tensor, gout: torch.Tensor, metric, mut=Mut.NONE,
             s0: int = 0, s1: int = 0, T: int = 0, ratio: torch.Tensor | None = None, *, need_q: bool = True,
             need_E: bool = True, out_E: torch.Tensor | None = None, slot: torch.Tensor | None = None,
             threads: int | None = None, b0: int = 0):
    """Gradients ``(gq (B, D) | None, gE | None)`` of :func:`cand_fwd` for the output gradient ``gout`` (B, C)
    float32.  The candidates' gradients are ADDED to ``out_E`` at rows ``slot`` (B, C) — a compact table of the
    rows a training step touches — or at their entity ids (``slot`` None); without ``out_E`` to a fresh zero (N, D)
    table.  gE is that table.  Threads own gradient rows by entity id (no private copies of the table; see
    transe_step.c); C allocates 4·D bytes plus, per thread, 2·B·⌈D/16⌉·16 floats of partial sums and C ids."""
    fn = "emukg_cand_bwd"
    lib = _require("transe_step")
    metric, mut, B, C, D, N, s0, s1, T = _cand_args(fn, q, E, cand, metric, mut, s0, s1, T, ratio)
    _tensor(fn, "gout", gout, torch.float32, (B, C))
    gq = torch.empty(B, D, dtype=torch.float32) if need_q else None
    gE = _grad_target(fn, out_E, slot, cand, N, D, need_E)
    nt = _threads(threads)
    rc = lib.emukg_cand_bwd(B, C, D, gE.shape[0] if gE is not None else 0, q.data_ptr(), E.data_ptr(), cand.data_ptr(),
                            ptr(slot), int(metric), int(mut), s0, s1, T, _row0(fn, b0), ptr(ratio), gout.data_ptr(),
                            ptr(gq), ptr(gE), nt)
    _status(fn, rc, 4 * D + nt * (2 * B * _pad_rows(D) * 4 + 8 * C), "the machine is out of memory; free memory or lower the batch size")
    return gq, gE


def emu_mask(B: int, C: int, D: int, s0: int, s1: int, T: int, threads: int | None = None, *, row0: int = 0) -> torch.Tensor:
    """The EMU keep mask (B, C, D) as uint8 (1 = keep; column 0 all ones) for seed words ``s0, s1`` and threshold
    ``T`` (emukg.emu.keep_threshold), of the batch rows ``row0 .. row0 + B − 1`` (a row chunk of a larger batch).
    Memory: B·C·D bytes out, 4·D in C."""
    fn = "emukg_emu_mask"
    lib = _require("transe_step")
    B, C, D, row0 = int(B), int(C), int(D), int(row0)
    if B < 0 or C < 0 or D < 0 or row0 < 0:
        raise ValueError(f"{fn}: B, C, D and row0 must be non-negative, not {(B, C, D, row0)}.")
    T = _u32(fn, "T", T)
    if T > 1 << 24:
        raise ValueError(f"{fn}: T must be at most 2**24 (keep_threshold(p)), not {T}.")
    out = torch.empty(B, C, D, dtype=torch.uint8)
    rc = lib.emukg_emu_mask(B, C, D, row0, _u32(fn, "s0", s0), _u32(fn, "s1", s1), T, out.data_ptr(), _threads(threads))
    _status(fn, rc, 4 * D, "the machine is out of memory; free memory or lower the batch size")
    return out


def _ext_args(fn, q, aux, E, cand, metric, mut, s0, s1, T, ratio, scale, wm, wp):
    """Checks of the extended-metric kernels; returns (metric, mut, B, C, D, N, L, s0, s1, T, scale, wm, wp)."""
    metric = _metric(fn, metric)
    if metric not in EXT_METRICS:
        raise ValueError(f"{fn}: metric must be one of {[m.name for m in EXT_METRICS]}, not {metric.name}; "
                         "call cand_fwd/cand_bwd for the others.")
    try:
        mut = Mut(int(mut))
    except ValueError:
        raise ValueError(f"{fn}: mut must be one of {[m.name for m in Mut]}, not {mut!r}.") from None
    _tensor(fn, "E", E, torch.float32, (None, None))
    N, D = E.shape
    _tensor(fn, "cand", cand, torch.int64, (None, None))
    B, C = cand.shape
    P = 1 if metric == Metric.SIN_L1 else 2
    if D < P or D % P:
        raise ValueError(f"{fn}: metric {metric.name} needs {'rows of at least one float' if P == 1 else 'an even row width (two halves)'}, not {D}.")
    L = D // P
    _tensor(fn, "q", q, torch.float32, (B, L if metric == Metric.TRANSD_L1 else D))
    if metric == Metric.SIN_L1:
        if aux is not None:
            raise ValueError(f"{fn}: metric SIN_L1 reads no aux vector; pass aux=None.")
    else:
        if aux is None:
            raise ValueError(f"{fn}: metric {metric.name} needs aux, a float32 (B, {L}) tensor (one vector per query).")
        _tensor(fn, "aux", aux, torch.float32, (B, L))
    T = _check_mutation(fn, mut, ratio, cand, B, C, N, T)
    scale, wm, wp = float(scale), float(wm), float(wp)
    if metric != Metric.TRANSD_L1 and not (scale > 0 and scale < float("inf")):
        raise ValueError(f"{fn}: scale must be a finite number > 0 (the phase unit, range/π), not {scale}.")
    return metric, mut, B, C, D, N, L, _u32(fn, "s0", s0), _u32(fn, "s1", s1), T, scale, wm, wp


def _row0(fn: str, b0) -> int:
    """The first batch row of a call (the EMU mask's row counter starts there), checked: an integer in [0, 2**62)."""
    if isinstance(b0, bool) or not isinstance(b0, int) or not 0 <= b0 < 1 << 62:
        raise ValueError(f"{fn}: b0 must be an integer in [0, 2**62), not {b0!r}.")
    return b0


def _pad_rows(D: int) -> int:
    return -(-D // 16) * 16


def cand_ext_fwd(q: torch.Tensor, aux: torch.Tensor | None, E: torch.Tensor, cand: torch.Tensor, metric,
                 bias: float = 0.0, *, scale: float = 1.0, wm: float = 1.0, wp: float = 1.0, mut=Mut.NONE, s0: int = 0,
                 s1: int = 0, T: int = 0, ratio: torch.Tensor | None = None, threads: int | None = None,
                 b0: int = 0) -> torch.Tensor:
    """Scores (B, C) float32 of the extended training metrics (:data:`EXT_METRICS`, formulas in transe_step.c):
    SIN_L1 ``bias − wp·Σ|sin(q − x'/scale)|`` (q (B, D), aux None); TRANSD_L1 ``bias − ‖q − normalize(e' +
    (e'·eₚ')·aux)‖₁`` for rows [e, eₚ] (q, aux (B, D/2)); HAKE ``bias − (wm·‖q_m − aux∘x'_m‖₂ + wp·Σ|sin(q_p −
    x'_p/scale)|)`` for rows [x_m, x_p] (q (B, D), aux (B, D/2)).  Any D ≥ 1 (per half).  Mutation as
    :func:`cand_fwd`.  Memory: the (B, C) output; C allocates 4·D + T·6·4·⌈L/16⌉·16 bytes (T threads)."""
    fn = "emukg_cand_ext_fwd"
    lib = _require("transe_step")
    metric, mut, B, C, D, N, L, s0, s1, T, scale, wm, wp = _ext_args(fn, q, aux, E, cand, metric, mut, s0, s1, T,
                                                                     ratio, scale, wm, wp)
    out = torch.empty(B, C, dtype=torch.float32)
    nt = _threads(threads)
    if B == 0:
        return out
    rc = lib.emukg_cand_ext_fwd(B, C, D, q.data_ptr(), ptr(aux), E.data_ptr(), cand.data_ptr(), int(metric), float(bias),
                                scale, wm, wp, int(mut), s0, s1, T, _row0(fn, b0), ptr(ratio), out.data_ptr(), nt)
    _status(fn, rc, 4 * D + nt * 6 * 4 * _pad_rows(L), "the machine is out of memory; free memory or lower the batch size")
    return out


def cand_ext_bwd(q: torch.Tensor, aux: torch.Tensor | None, E: torch.Tensor, cand: torch.Tensor, gout: torch.Tensor,
                 metric, *, scale: float = 1.0, wm: float = 1.0, wp: float = 1.0, mut=Mut.NONE, s0: int = 0, s1: int = 0,
                 T: int = 0, ratio: torch.Tensor | None = None, need_q: bool = True, need_aux: bool = True,
                 need_E: bool = True, out_E: torch.Tensor | None = None, slot: torch.Tensor | None = None,
                 threads: int | None = None, b0: int = 0):
    """Gradients ``(gq | None, gaux | None, gE | None)`` of :func:`cand_ext_fwd` for the output gradient ``gout``
    (B, C) float32 (gaux is None without aux); the candidates' gradients are added to ``out_E`` / ``slot`` as in
    :func:`cand_bwd`.  C allocates 4·D bytes plus, per thread, 5·B·⌈L/16⌉·16 floats of partial sums, C ids and
    10 rows of ⌈L/16⌉·16 floats."""
    fn = "emukg_cand_ext_bwd"
    lib = _require("transe_step")
    metric, mut, B, C, D, N, L, s0, s1, T, scale, wm, wp = _ext_args(fn, q, aux, E, cand, metric, mut, s0, s1, T,
                                                                     ratio, scale, wm, wp)
    _tensor(fn, "gout", gout, torch.float32, (B, C))
    gq = torch.zeros(q.shape, dtype=torch.float32) if need_q else None
    gaux = torch.zeros(B, L, dtype=torch.float32) if need_aux and aux is not None else None
    gE = _grad_target(fn, out_E, slot, cand, N, D, need_E)
    if B == 0:
        return gq, gaux, gE
    nt = _threads(threads)
    rc = lib.emukg_cand_ext_bwd(B, C, D, gE.shape[0] if gE is not None else 0, q.data_ptr(), ptr(aux), E.data_ptr(),
                                cand.data_ptr(), ptr(slot), int(metric), scale, wm, wp, int(mut), s0, s1, T, _row0(fn, b0),
                                ptr(ratio), gout.data_ptr(), ptr(gq), ptr(gaux), ptr(gE), nt)
    _status(fn, rc, 4 * D + nt * (5 * B + 10) * 4 * _pad_rows(L) + nt * 8 * C,
            "the machine is out of memory; free memory or lower the batch size")
    return gq, gaux, gE


def sincos(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin z, cos z) of a float32 tensor by the kernels' vectorised sin/cos (the one SIN_L1 and HAKE use), for
    accuracy tests.  Memory: two outputs of z's size."""
    fn = "emukg_sincos"
    lib = _require("transe_step")
    _tensor(fn, "z", z, torch.float32, tuple(None for _ in z.shape))
    s, c = torch.empty_like(z), torch.empty_like(z)
    if z.numel():
        lib.emukg_sincos(z.numel(), z.data_ptr(), s.data_ptr(), c.data_ptr())
    return s, c


# ---------------------------------------------------------------------------------------------------------
# score_all.c: evaluation ranking
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


# ---------------------------------------------------------------------------------------------------------
# sample_step.c: filtered negatives
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


__all__ = ["Metric", "Mut", "METRIC_CODES", "EXT_METRIC_CODES", "EVAL_METRICS", "EXT_METRICS", "metric_code",
           "ext_metric_code", "cand_ext_fwd", "cand_ext_bwd", "sincos", "PROTOTYPES", "KERNELS", "load", "available", "status",
           "describe", "ptr", "check_ids", "id_range", "cand_fwd", "cand_bwd", "emu_mask", "score_all_lanes",
           "rank_fused", "rank_fused_bytes", "rank_dense", "filter_fill"]


# ---------------------------------------------------------------------------------------------------------
# sparse_optim.c: fused row-sparse optimiser steps (emukg.optim)
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


__all__ += ["adagrad_rows", "adam_rows", "compact_rows", "ROOT_CHUNK_BYTES"]


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
