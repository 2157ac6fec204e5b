"""Seconds to build SANS random-walk neighbourhoods (no cache), median of a few runs.

The reference builds FB15k-237's neighbourhood with k=3, w=1000 in a Python loop over entities x walks x steps
(about 16 minutes); emukg advances all walks of a chunk of entities together as array operations.  Both walk
modes are timed: ``restart`` (every walk starts at its source, as SANS describes) and ``chained`` (the
reference's code: each walk continues from where the previous one ended).  ``--exact`` also times the exact
k-hop neighbourhood (``-nrw 0``).

    EMUKG_DATA_DIR=/work/shared/datasets python -m emukg.bench.sans_build --json out.json

Other benchmark runners import
:func:`bench_sans_build` from ``emukg.bench.sans_build``.
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import sys
import time

DATASETS = ["FB15k-237", "wn18rr"]
MODES = ["restart", "chained"]


def _time_build(kg, k: int, w: int, walk_mode: str, repeats: int, seed: int = 0) -> dict:
    from emukg.negatives.sans import build_neighbourhood

    times, sizes = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        indptr, indices = build_neighbourhood(kg.train, kg.num_entities, k, w, walk_mode, seed)
        times.append(time.perf_counter() - t0)
        sizes = (int(indices.size), indices.size / kg.num_entities)
    return {"seconds": statistics.median(times), "runs": times, "entries": sizes[0], "mean_entries_per_entity": sizes[1]}


def bench_sans_build_details(names=DATASETS, k: int = 3, w: int = 1000, modes=MODES, repeats: int = 3,
                             exact: bool = False) -> dict:
    """``{dataset: {mode: {'seconds', 'runs', 'entries', 'mean_entries_per_entity'}}}``; mode 'exact' with ``exact``."""
    from emukg.data import load_dataset

    out = {}
    for name in names:
        kg = load_dataset(name)
        res = {}
        for mode in modes:
            res[mode] = _time_build(kg, k, w, mode, repeats)
        if exact:
            res["exact"] = _time_build(kg, k, 0, "restart", max(1, min(repeats, 2)))
        out[name] = res
    return out


def bench_sans_build(names=DATASETS, k: int = 3, w: int = 1000, walk_mode: str = "restart", repeats: int = 3) -> dict[str, float]:
    """Median seconds to build each dataset's random-walk neighbourhood (``walk_mode``, no cache)."""
    details = bench_sans_build_details(names, k, w, [walk_mode], repeats)
    return {name: res[walk_mode]["seconds"] for name, res in details.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("-k", "--khop", type=int, default=3)
    p.add_argument("-w", "--num-random-walks", type=int, default=1000)
    p.add_argument("--modes", nargs="+", choices=MODES, default=MODES)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--exact", action="store_true", help="also time the exact k-hop neighbourhood (-nrw 0)")
    p.add_argument("--json", metavar="FILE", help="write the results as JSON")
    args = p.parse_args(argv)
    logging.getLogger("emukg").setLevel(logging.ERROR)

    import torch

    details = bench_sans_build_details(args.datasets, args.khop, args.num_random_walks, args.modes, args.repeats, args.exact)
    for name, res in details.items():
        for mode, r in res.items():
            runs = ", ".join(f"{t:.2f}" for t in r["runs"])
            print(f"{name:>10} k={args.khop} {mode:>8}: {r['seconds']:.2f} s (median of {runs}); "
                  f"{r['mean_entries_per_entity']:.1f} entries per entity")
    if args.json:
        from emukg.io_utils import atomic_write_json

        atomic_write_json(args.json, {
            "benchmark": "sans_build",
            "khop": args.khop,
            "num_random_walks": args.num_random_walks,
            "repeats": args.repeats,
            "results": details,
            "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "torch": torch.__version__,
                        "threads": torch.get_num_threads()},
        })
    return 0


if __name__ == "__main__":
    sys.exit(main())
