"""Benchmark: PyKEEN's ``RankBasedEvaluator`` against ``emukg.pykeen.evaluate`` on the same PyKEEN model, side by side.

The model is a PyKEEN ``TransE`` (p = 1, PyKEEN's default) of width ``--dim`` (default 100) on a dataset emukg finds
(default FB15k-237), untrained (seeded random initialisation: ranking costs the same for any weights).  Both rank
the test triples' head and tail queries against all entities, filtered by train ∪ valid ∪ test, with PyKEEN's
default metrics.

* emukg ranks **every** test query (``emukg.pykeen.evaluate``, the model converted to emukg's TransE and ranked by
  the native kernel).
* PyKEEN's evaluator is slow, so it ranks only the first ``--pykeen-triples`` test triples (default 500, i.e. 1,000
  queries; the full test set stays in its filter), and its queries per second are extrapolated to the whole test
  set — stated as an extrapolation in the output.  On that same subset emukg is timed too, and the two results are
  compared metric by metric (the largest absolute difference is printed).

    python -m emukg.bench.pykeen_eval                          # FB15k-237, TransE d=100
    python -m emukg.bench.pykeen_eval --pykeen-triples 200 --json out.json

Needs the ``pykeen`` extra (``pip install -c constraints/cpu-torch.txt "emukg[pykeen]"``).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def bench_pykeen_eval(dataset: str = "FB15k-237", dim: int = 100, pykeen_triples: int = 500, seed: int = 0,
                      pykeen_batch_size: int | None = None, memory_mb: float = 512) -> dict:
    """The figures of one side-by-side run (see the module docstring)."""
    import torch
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import TransE
    from pykeen.triples import CoreTriplesFactory

    import emukg.pykeen as ep
    from emukg.data import load_dataset

    kg = load_dataset(dataset)
    train, valid, test = kg.train, kg.valid, kg.test
    factory = CoreTriplesFactory.create(mapped_triples=train, num_entities=kg.num_entities, num_relations=kg.num_relations)
    torch.manual_seed(seed)
    model = TransE(triples_factory=factory, embedding_dim=dim).eval()

    t0 = time.perf_counter()
    full, ranks, path = ep.evaluate(model, test, additional_filter_triples=[train, valid], memory_mb=memory_mb,
                                    return_ranks=True)
    emukg_s = time.perf_counter() - t0
    n_queries = 2 * test.shape[0]

    sub = test[:pykeen_triples]
    t0 = time.perf_counter()
    mine_sub = ep.evaluate(model, sub, additional_filter_triples=[train, valid, test], memory_mb=memory_mb)
    emukg_sub_s = time.perf_counter() - t0
    evaluator = RankBasedEvaluator()
    t0 = time.perf_counter()
    ref_sub = evaluator.evaluate(model, sub, additional_filter_triples=[train, valid, test], use_tqdm=False,
                                 batch_size=pykeen_batch_size)
    pykeen_sub_s = time.perf_counter() - t0
    a, b = ref_sub.to_flat_dict(), mine_sub.to_flat_dict()
    diffs = [abs(a[k] - b[k]) for k in a if a[k] == a[k] or b[k] == b[k]]
    sub_queries = 2 * sub.shape[0]
    pykeen_qps = sub_queries / pykeen_sub_s
    emukg_qps = n_queries / emukg_s
    return {
        "dataset": kg.name or dataset, "model": f"PyKEEN TransE (p=1), d={dim}, untrained (seed {seed})",
        "entities": kg.num_entities, "test_queries": n_queries, "emukg_path": path,
        "emukg": {"queries": n_queries, "seconds": emukg_s, "queries_per_s": emukg_qps,
                  "MRR": full.get_metric("both.realistic.inverse_harmonic_mean_rank")},
        "subset": {"queries": sub_queries, "pykeen_seconds": pykeen_sub_s, "pykeen_queries_per_s": pykeen_qps,
                   "emukg_seconds": emukg_sub_s, "emukg_queries_per_s": sub_queries / emukg_sub_s,
                   "metrics_compared": len(a), "max_abs_metric_difference": max(diffs) if diffs else 0.0,
                   "pykeen_batch_size": pykeen_batch_size},
        "pykeen_extrapolated_full_seconds": n_queries / pykeen_qps,
        "speedup_full_vs_extrapolated": emukg_qps / pykeen_qps,
        "machine": {"cpu": _cpu_name(), "threads": torch.get_num_threads(), "torch": torch.__version__,
                    "pykeen": ep.PYKEEN_VERSION},
    }


def report(res: dict) -> str:
    s, e = res["subset"], res["emukg"]
    return "\n".join([
        f"{res['dataset']}: {res['model']}, {res['entities']} entities; filtered by train ∪ valid ∪ test",
        f"machine: {res['machine']['cpu']}, {res['machine']['threads']} threads, torch {res['machine']['torch']}, "
        f"PyKEEN {res['machine']['pykeen']}",
        f"emukg.pykeen.evaluate  all {e['queries']} queries: {e['seconds']:.2f} s = {e['queries_per_s']:,.0f} queries/s "
        f"({res['emukg_path']}); MRR {e['MRR']:.6f}",
        f"subset of {s['queries']} queries: PyKEEN RankBasedEvaluator {s['pykeen_seconds']:.2f} s = "
        f"{s['pykeen_queries_per_s']:,.1f} queries/s; emukg {s['emukg_seconds']:.3f} s; "
        f"{s['metrics_compared']} metrics, largest difference {s['max_abs_metric_difference']:.2e}",
        f"PyKEEN on all {e['queries']} queries, EXTRAPOLATED from the subset's rate: "
        f"{res['pykeen_extrapolated_full_seconds']:.0f} s; emukg is {res['speedup_full_vs_extrapolated']:.0f}× faster",
    ])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m emukg.bench.pykeen_eval", description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="FB15k-237")
    p.add_argument("--dim", type=int, default=100)
    p.add_argument("--pykeen-triples", type=int, default=500, help="test triples PyKEEN ranks (2 queries each)")
    p.add_argument("--pykeen-batch-size", type=int, default=None, help="PyKEEN's evaluation batch size (default: its own search)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    logging.getLogger("pykeen").setLevel(logging.ERROR)
    logging.getLogger("torch_max_mem").setLevel(logging.ERROR)
    res = bench_pykeen_eval(args.dataset, args.dim, args.pykeen_triples, args.seed, args.pykeen_batch_size)
    print(report(res))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
