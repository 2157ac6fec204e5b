"""``emukg bench``: the speed benchmarks of the repository's ``benchmarks/`` folder (see benchmarks/suite.py)."""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from ..errors import EmukgError


def find_suite() -> Path:
    candidates = [Path(os.environ["EMUKG_BENCHMARKS"]) if os.environ.get("EMUKG_BENCHMARKS") else None,
                  Path(__file__).resolve().parents[3] / "benchmarks", Path.cwd() / "benchmarks"]
    for c in candidates:
        if c is not None and (c / "suite.py").is_file():
            return c / "suite.py"
    raise EmukgError("emukg bench: benchmarks/suite.py not found; run it from a source checkout (pip install -e .) "
                     "or point EMUKG_BENCHMARKS at the benchmarks folder.")


def run(args: argparse.Namespace) -> int:
    from ..io_utils import atomic_write_json
    from ..training import resolve_device

    resolve_device(args.device)  # a clear error for --device cuda on a machine without a GPU
    path = find_suite()
    spec = importlib.util.spec_from_file_location("emukg_bench_suite", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    res = module.run_suite(quick=args.quick, device=args.device)
    machine = res.setdefault("machine", {})
    if "kernels" not in machine:  # a suite from another checkout (EMUKG_BENCHMARKS) that does not say it
        from .. import kernels

        machine["kernels"] = kernels.describe()
        print(f"CPU kernels: {machine['kernels']}")
    if args.json:
        atomic_write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="speed benchmarks: training step, evaluation, SANS build, loading",
                       description="Run the benchmark suite (benchmarks/suite.py) and print a table; --json saves the figures.")
    p.add_argument("--quick", action="store_true", help="a subset with fewer repeats (< 2 minutes)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training/evaluation device")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.set_defaults(func=run)
