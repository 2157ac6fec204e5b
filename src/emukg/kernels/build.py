"""Compiling, caching and loading the C kernels: the compiler flags, the cache key, the ctypes prototypes of every
exported function, and the one-line report of a fallback to PyTorch.

:func:`load` compiles ``kernels/<name>.c`` once (``cc -O3 -march=native -fopenmp``) into the user cache directory
(:func:`kernel_cache_dir`), keyed by a hash of the C source, the header, the compiler flags and the CPU
(:func:`so_path`), declares the prototype (argtypes/restype) of every exported function from :data:`PROTOTYPES`,
and returns the ``ctypes.CDLL`` — or ``None`` when no compiler works or ``EMUKG_NO_NATIVE=1`` is set.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

from ..io_utils import user_cache_dir

log = logging.getLogger("emukg")

HERE = Path(__file__).resolve().parent
HEADER = HERE / "emukg_kernels.h"
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-std=c11"]
KERNELS = ("candidates", "score_all", "sample_step", "sparse_optim")
COMPILE_TIMEOUT_S = 600
FALLBACK_COST = "using the plain PyTorch path instead: same results, several times slower on CPU"


# ---------------------------------------------------------------------------------------------------------
# prototypes of every exported C function, per kernel
_I64, _INT, _U32, _F32, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_uint32, ctypes.c_float, ctypes.c_void_p
PROTOTYPES: dict[str, dict[str, tuple]] = {
    "candidates": {
        # (B, C, D, q, E, cand, kind, bias, mut, s0, s1, T, b0, ratio, out, keep, nthreads) -> status
        "emukg_cand_fwd": (_INT, [_I64, _I64, _I64, _PTR, _PTR, _PTR, _INT, _F32, _INT, _U32, _U32, _U32, _I64, _PTR,
                                  _PTR, _PTR, _INT]),
        # (B, C, D, NG, q, E, cand, slot, kind, mut, s0, s1, T, b0, ratio, keep, gout, gq, gE, nthreads) -> status
        "emukg_cand_bwd": (_INT, [_I64, _I64, _I64, _I64, _PTR, _PTR, _PTR, _PTR, _INT, _INT, _U32, _U32, _U32, _I64,
                                  _PTR, _PTR, _PTR, _PTR, _PTR, _INT]),
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
        # (n, generator state bytes, range, base, out) -> status
        "emukg_mt_randint": (_INT, [_I64, _PTR, _I64, _I64, _PTR]),
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
def kernel_cache_dir() -> Path:
    """The folder of the compiled kernels (``<user cache>/kernels``)."""
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
    return kernel_cache_dir() / f"{name}-{key}.so"


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
