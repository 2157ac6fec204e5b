"""Benchmark: time to load a dataset, from the files to a KnowledgeGraph with both filter indexes built.

One run = read and parse the dict and split files, encode the triples, build ``kg.filter`` (train ∪ valid ∪
test) and ``kg.train_filter``.  Every run starts from a fresh :class:`KnowledgeGraph` (nothing is reused
between runs; the operating system's file cache is warm after the first run, as in everyday use).  The
median of ``--repeats`` runs (default 3) is reported.

    python -m emukg.bench.load_dataset                      # every registered dataset found locally
    python -m emukg.bench.load_dataset FB15k-237 --json out.json

Datasets are found as ``emukg`` finds them ($EMUKG_DATA_DIR, then the cache); ``--data-dir`` (default:
$EMUKG_DATA_DIR, else ``<repo>/../shared/datasets`` when run from a source checkout) sets the data directory.  Nothing is downloaded.
Target: FB15k-237 under 3 s on a 2-core machine.

Other benchmark runners
``from emukg.bench.load_dataset import bench_load``.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

# the source checkout holding this file (src/emukg/bench/load_dataset.py), None for an installed wheel
REPO = next((p for p in Path(__file__).resolve().parents[3:4] if (p / "pyproject.toml").is_file()), None)
TARGETS_S = {"FB15k-237": 3.0}


def _default_data_dir() -> Path | None:
    env = os.environ.get("EMUKG_DATA_DIR")
    if env:
        return None  # the resolver reads it itself
    if REPO is None:
        return None
    shared = REPO.parent / "shared" / "datasets"
    return shared if shared.is_dir() else None


def _available(names, data_dir: Path | None) -> dict[str, Path]:
    from emukg.data import registry
    from emukg.errors import EmukgError

    explicit = names is not None
    if not explicit:
        names = [info.name for info in registry.list_datasets()]
    old = os.environ.get("EMUKG_DATA_DIR")
    if data_dir is not None:
        os.environ["EMUKG_DATA_DIR"] = str(data_dir)
    try:
        found = {}
        for name in names:
            try:
                path = registry.resolve_dataset(name, download=False)
            except EmukgError as exc:
                if explicit:
                    print(f"skipping {name}: {exc}", file=sys.stderr)
                continue
            info = None if Path(name).is_dir() else registry.find_registered(name)
            found[info.name if info else path.name] = path
        return found
    finally:
        if data_dir is not None:
            if old is None:
                os.environ.pop("EMUKG_DATA_DIR", None)
            else:
                os.environ["EMUKG_DATA_DIR"] = old


def _one_run(path: Path, name: str):
    from emukg.data import load_folder

    gc.collect()
    start = time.perf_counter()
    kg = load_folder(path, name=name)
    kg.filter
    kg.train_filter
    return time.perf_counter() - start, kg


def bench_load(names=None, repeats: int = 3, *, data_dir: str | os.PathLike | None = None,
               details: dict | None = None) -> dict[str, float]:
    """Median seconds to load each dataset (files → KnowledgeGraph + ``filter`` + ``train_filter``).

    ``names``: dataset names or folders; ``None`` means every registered dataset available locally
    (missing ones are skipped).  ``details``, if given, receives per-dataset runs and sizes.
    """
    logging.getLogger("emukg").setLevel(logging.ERROR)  # no unseen-entity warnings in timings
    paths = _available(None if names is None else list(names), Path(data_dir) if data_dir else _default_data_dir())
    medians = {}
    for name, path in paths.items():
        runs, kg = [], None
        for _ in range(max(1, repeats)):
            kg = None  # drop the previous graph before timing the next run
            seconds, kg = _one_run(path, name)
            runs.append(seconds)
        medians[name] = statistics.median(runs)
        if details is not None:
            details[name] = {
                "median_s": medians[name],
                "runs_s": runs,
                "path": str(path),
                "entities": kg.num_entities,
                "relations": kg.num_relations,
                "triples": {s: int(kg.splits[s].shape[0]) for s in ("train", "valid", "test")},
                "target_s": TARGETS_S.get(name),
            }
    return medians


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="dataset names or folders (default: all registered ones found locally)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per dataset; the median is reported (default 3)")
    parser.add_argument("--data-dir", help="folder of datasets (default: $EMUKG_DATA_DIR, else the checkout's ../shared/datasets)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--check", action="store_true", help="exit 1 when a dataset misses its target time")
    args = parser.parse_args(argv)

    import torch

    details: dict = {}
    medians = bench_load(args.names or None, args.repeats, data_dir=args.data_dir, details=details)
    if not medians:
        print("no dataset found locally; set EMUKG_DATA_DIR or pass --data-dir", file=sys.stderr)
        return 2
    failed = []
    print(f"{'dataset':<14} {'median s':>9}  runs (s)              target")
    for name, d in details.items():
        target = d["target_s"]
        verdict = "" if target is None else (f"< {target:g} s ok" if d["median_s"] < target else f"> {target:g} s MISSED")
        if target is not None and d["median_s"] >= target:
            failed.append(name)
        runs = " ".join(f"{r:.3f}" for r in d["runs_s"])
        print(f"{name:<14} {d['median_s']:>9.3f}  {runs:<21} {verdict}")
    if args.json:
        from emukg.io_utils import atomic_write_json

        atomic_write_json(args.json, {
            "benchmark": "load_dataset",
            "what": "files -> KnowledgeGraph + kg.filter + kg.train_filter, median of fresh runs",
            "repeats": args.repeats,
            "results": details,
            "machine": {
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
        })
        print(f"wrote {args.json}")
    return 1 if (args.check and failed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
