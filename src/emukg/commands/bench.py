"""``emukg bench``: the speed benchmarks of :mod:`emukg.bench` (see emukg/bench/suite.py), from a checkout or a wheel."""

from __future__ import annotations

import argparse


def handle(args: argparse.Namespace) -> int:
    from ..bench.suite import run_suite
    from ..io_utils import atomic_write_json
    from ..training import resolve_device

    resolve_device(args.device)  # a clear error for --device cuda on a machine without a GPU
    if args.scale:
        if args.quick or args.device != "cpu":
            from ..errors import EmukgError

            raise EmukgError("--scale is a separate CPU benchmark with no quick variant; drop --quick and --device.")
        from ..bench.scale import bench_scale

        res = bench_scale()
    else:
        res = run_suite(quick=args.quick, device=args.device)
    if args.json:
        atomic_write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="speed benchmarks: training step, evaluation, SANS build, loading",
                       description="Run the benchmark suite (emukg.bench.suite) and print a table; --json saves the figures.")
    p.add_argument("--quick", action="store_true", help="a subset with fewer repeats (< 2 minutes)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="training/evaluation device")
    p.add_argument("--scale", action="store_true", help="instead of the suite: training step time and peak memory at "
                   "0.1 M, 1 M and 2.5 M entities, evaluation memory, and the 2-process gloo speed-up (emukg.bench.scale)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.set_defaults(func=handle)
