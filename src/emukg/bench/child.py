"""Measurements in fresh child processes: one helper for every benchmark that needs a process of its own.

A process's peak resident size (``ru_maxrss``) only grows, so a benchmark that reports the peak memory of one case
runs that case in a fresh ``python -m emukg.bench.<module> ...`` child, which prints its result as one JSON line.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path


def peak_rss_mb() -> float:
    """The peak resident size of this process so far, in MiB (``ru_maxrss``, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_child(module: str, args: list[str], *, timeout: float | None = None, torchrun: int = 0) -> dict:
    """Run ``python -m module *args`` (under ``torch.distributed.run --nproc_per_node torchrun`` when > 0) and return
    the last JSON object line of its standard output.

    The folder holding this emukg (site-packages or a checkout's ``src/``) goes first on the child's PYTHONPATH, so
    the child measures the same code as the parent.  A failed child is a ``RuntimeError`` with its stderr's tail."""
    import emukg.version

    root = str(Path(emukg.version.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(torchrun), "-m"]
                if torchrun else [sys.executable, "-m"])
    res = subprocess.run([*launcher, module, *args], capture_output=True, text=True, env=env, timeout=timeout)
    for line in reversed(res.stdout.splitlines()):
        if res.returncode == 0 and line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"benchmark child {module} {' '.join(args)[:200]} failed (exit {res.returncode}):\n"
                       f"{res.stderr.strip()[-3000:]}")
