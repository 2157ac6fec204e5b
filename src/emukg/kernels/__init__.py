"""Small native CPU kernels, compiled on first use with the system C compiler and loaded with ctypes.

Each kernel is a C file in this folder.  :func:`load` compiles it once (``cc -O3 -march=native -fopenmp``)
into the user cache directory, keyed by a hash of the source, the compiler flags and the CPU, and returns a
``ctypes.CDLL`` — or ``None`` when no compiler is available or ``EMUKG_NO_NATIVE=1`` is set, in which case
callers fall back to plain PyTorch (same maths, slower).  GPU runs never use these kernels.
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
FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC", "-std=c11"]


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


@lru_cache(maxsize=None)
def load(name: str):
    """Compile (once) and load ``kernels/<name>.c``; ``None`` if native kernels are unavailable."""
    if os.environ.get("EMUKG_NO_NATIVE", "") not in ("", "0"):
        return None
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        log.debug("no C compiler found; using the PyTorch fallback for %s", name)
        return None
    source = (HERE / f"{name}.c").read_bytes()
    key = hashlib.sha256(source + " ".join(FLAGS).encode() + _cpu_tag().encode() + platform.machine().encode()).hexdigest()[:16]
    target = cache_dir() / f"{name}-{key}.so"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
        os.close(fd)
        try:
            subprocess.run([compiler, *FLAGS, "-o", tmp, str(HERE / f"{name}.c"), "-lm"], check=True, capture_output=True)
            os.replace(tmp, target)
        except (OSError, subprocess.CalledProcessError) as exc:
            Path(tmp).unlink(missing_ok=True)
            log.debug("compiling %s failed (%s); using the PyTorch fallback", name, exc)
            return None
    try:
        return ctypes.CDLL(str(target))
    except OSError as exc:
        log.debug("loading %s failed (%s); using the PyTorch fallback", target, exc)
        return None


def ptr(tensor) -> ctypes.c_void_p:
    """Raw data pointer of a contiguous CPU tensor, for passing to a kernel."""
    assert tensor.is_contiguous() and tensor.device.type == "cpu"
    return ctypes.c_void_p(tensor.data_ptr())
