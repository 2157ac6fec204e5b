"""Benchmarks at the scale of ogbl-wikikg2 (2.5 M entities, 16 M training triples), each in a fresh subprocess.

* :func:`scale_eval`: a TransE model with 2,500,000 entities, d = 100 (random weights) ranks 10,000 test triples
  (20,000 queries) against every entity with full filtered ranking under ``memory_mb`` = 1024; reports the wall
  time and the peak resident memory above the model table (and the graph).  The graph is a synthetic power-law
  graph (:mod:`emukg.data.synthetic`, in memory) with ``train`` triples, so the filter index is realistic.
* :func:`scale_load`: peak resident memory and seconds of ``load_dataset`` + ``kg.filter`` + ``kg.train_filter``
  + ``subsampling_weights`` on a dataset folder (e.g. one written by ``emukg datasets synthetic``).

    python -m emukg.bench.scale_eval eval [--entities 2500000 --queries 10000 --memory-mb 1024 --train 1000000]
    python -m emukg.bench.scale_eval load FOLDER

Peak resident memory is the kernel's high-water mark (VmHWM, reset just before the measured part where Linux
allows, else ru_maxrss since start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

from .child import peak_rss_mb, run_child


def _child(kind: str, kwargs: dict, timeout: float | None = None) -> dict:
    return run_child("emukg.bench.scale_eval", ["--child", json.dumps({"kind": kind, "kwargs": kwargs})], timeout=timeout)


def run_load(folder: str) -> dict:
    """In this process: seconds and peak RSS (ru_maxrss, MiB) after each stage of loading ``folder``."""
    import logging

    import torch

    from emukg.data import load_dataset

    logging.getLogger("emukg").setLevel(logging.ERROR)
    stages = {"start": {"seconds": 0.0, "maxrss_mb": peak_rss_mb()}}
    t0 = time.perf_counter()
    kg = load_dataset(folder, download=False)
    stages["load_dataset"] = {"seconds": time.perf_counter() - t0, "maxrss_mb": peak_rss_mb()}
    t = time.perf_counter()
    kg.filter  # noqa: B018
    stages["filter"] = {"seconds": time.perf_counter() - t, "maxrss_mb": peak_rss_mb()}
    t = time.perf_counter()
    kg.train_filter  # noqa: B018
    stages["train_filter"] = {"seconds": time.perf_counter() - t, "maxrss_mb": peak_rss_mb()}
    t = time.perf_counter()
    w = kg.subsampling_weights()
    stages["subsampling_weights"] = {"seconds": time.perf_counter() - t, "maxrss_mb": peak_rss_mb()}
    n = {s: int(kg.splits[s].shape[0]) for s in kg.splits}
    sizes = {
        "splits_mb": sum(x.numel() * 8 for x in kg.splits.values()) / 2**20,
        "filter_mb": _index_bytes(kg.filter) / 2**20,
        "train_filter_mb": _index_bytes(kg.train_filter) / 2**20,
        "weights_mb": w.numel() * 4 / 2**20,
    }
    total = sum(n.values())
    return {"folder": str(folder), "entities": kg.num_entities, "relations": kg.num_relations, "triples": n,
            "stages": stages, "sizes": sizes, "seconds": time.perf_counter() - t0,
            "peak_rss_mb": peak_rss_mb(), "peak_rss_bytes_per_triple": peak_rss_mb() * 2**20 / total,
            "threads": torch.get_num_threads()}


def _index_bytes(index) -> int:
    return sum(getattr(index, n).numel() * getattr(index, n).element_size()
               for n in ("tail_keys", "tail_ptr", "tail_vals", "head_keys", "head_ptr", "head_vals", "triple_keys"))


def run_eval(entities: int = 2_500_000, queries: int = 10_000, hidden_dim: int = 100, memory_mb: float = 1024,
             train: int = 1_000_000, relations: int = 500, seed: int = 0, backend: str = "auto") -> dict:
    """In this process: full filtered ranking of ``queries`` test triples of a synthetic graph by a random TransE."""
    import torch

    from emukg.bench.eval_speed import PeakMemory, rss_mb
    from emukg.data.synthetic import synthetic_graph
    from emukg.evaluation import evaluate
    from emukg.models import build_model

    t = time.perf_counter()
    kg = synthetic_graph(entities, relations, train, valid=1, test=queries, seed=seed)
    kg.filter  # noqa: B018  (the dataset's: built before the measurement)
    graph_s = time.perf_counter() - t
    torch.manual_seed(seed)
    model = build_model("TransE", entities, relations, hidden_dim, 12.0)
    table_mb = (model.entity_embedding.numel() + model.relation_embedding.numel()) * 4 / 2**20
    before = rss_mb()
    with PeakMemory() as pm:
        res = evaluate(model, kg, "test", memory_mb=memory_mb, backend=backend)
    return {"entities": entities, "relations": relations, "train_triples": train, "test_triples": queries,
            "queries": res["num_queries"], "dim": hidden_dim, "memory_mb": memory_mb, "seconds": res["seconds"],
            "queries_per_s": res["queries_per_s"], "backend": res["backend"], "memory_plan": res["memory"],
            "model_table_mb": table_mb, "rss_before_mb": before, "eval_peak_rss_above_mb": pm.extra_mb,
            "peak_rss_mb": pm.peak, "peak_rss_exact": pm.exact, "graph_seconds": graph_s,
            "threads": torch.get_num_threads(), "MRR": res["MRR"]}


def scale_eval(entities: int = 2_500_000, queries: int = 10_000, hidden_dim: int = 100, memory_mb: float = 1024,
               train: int = 1_000_000, timeout: float | None = None, **kw) -> dict:
    """:func:`run_eval` in a fresh subprocess.  ``eval_peak_rss_above_mb``: the peak resident memory of the
    evaluation above what was resident before it (the model table, the graph and its filter index)."""
    return _child("eval", dict(entities=entities, queries=queries, hidden_dim=hidden_dim, memory_mb=memory_mb,
                               train=train, **kw), timeout)


def scale_load(folder: str | os.PathLike, timeout: float | None = None) -> dict:
    """:func:`run_load` in a fresh subprocess (its peak RSS is the loading's own)."""
    return _child("load", {"folder": str(folder)}, timeout)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", help=argparse.SUPPRESS)
    sub = ap.add_subparsers(dest="what")
    e = sub.add_parser("eval", help="full filtered ranking by a 2.5 M-entity TransE")
    e.add_argument("--entities", type=int, default=2_500_000)
    e.add_argument("--queries", type=int, default=10_000, help="test triples (two queries each)")
    e.add_argument("--dim", type=int, default=100)
    e.add_argument("--memory-mb", type=float, default=1024)
    e.add_argument("--train", type=int, default=1_000_000, help="training triples of the synthetic graph")
    ld = sub.add_parser("load", help="load a dataset folder and build its indexes")
    ld.add_argument("folder")
    for p in (e, ld):
        p.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        fn = run_eval if spec["kind"] == "eval" else run_load
        print(json.dumps(fn(**spec["kwargs"])))
        return 0
    if args.what == "eval":
        res = scale_eval(args.entities, args.queries, args.dim, args.memory_mb, args.train)
        print(f"{res['entities']:,} entities, d={res['dim']}: {res['queries']:,} queries in {res['seconds']:.1f} s "
              f"({res['queries_per_s']:,.0f} queries/s, {res['backend']}), peak RSS {res['eval_peak_rss_above_mb']:.0f} MiB "
              f"above the model table ({res['model_table_mb']:.0f} MiB) and graph; budget {res['memory_mb']:g} MiB")
    elif args.what == "load":
        res = scale_load(args.folder)
        print(f"{args.folder}: {res['seconds']:.1f} s, peak RSS {res['peak_rss_mb']:.0f} MiB "
              f"({res['peak_rss_bytes_per_triple']:.0f} bytes per triple)")
        for name, st in res["stages"].items():
            print(f"  {name:<20} {st['seconds']:>7.1f} s  max RSS {st['maxrss_mb']:>8.0f} MiB")
    else:
        ap.print_help()
        return 2
    res["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    if args.json:
        from emukg.io_utils import atomic_write_json

        atomic_write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
