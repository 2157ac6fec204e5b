"""Filtered-evaluation speed and memory: queries per second on the full FB15k-237 test split (40,932 queries).

Models (random initialisation: speed does not depend on training): TransE d=100, DistMult d=100, ComplEx d=100
(-de -dr), RotatE d=100 (-de).  Each model runs in its own subprocess so that its peak resident memory is its
own: the peak (VmHWM, reset just before evaluating) minus the resident size before evaluating is the evaluation's
working memory (on top of the model and the dataset).  The first evaluation of the test split is the memory measurement (cold: the
allocator has cached nothing yet; the filter index is built before, as part of the dataset); the split is then
evaluated ``--repeats`` more times and the best and the median speed are reported.

    EMUKG_DATA_DIR=/work/shared/datasets python -m emukg.bench.eval_speed --json eval_speed.json
    python -m emukg.bench.eval_speed --synthetic        # 1,000,000 entities, d=100, 64 MiB budget

The children run
``python -m emukg.bench.eval_speed --child SPEC`` with the parent's ``emukg`` first on the import path, so an
installed wheel and a source checkout both work.  Other benchmark runners import :func:`bench_eval` from
``emukg.bench.eval_speed``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
from pathlib import Path

from .child import run_child

MODELS = ["TransE", "DistMult", "ComplEx", "RotatE"]
FLAGS = {"ComplEx": dict(double_entity_embedding=True, double_relation_embedding=True),
         "RotatE": dict(double_entity_embedding=True)}


# --- resident memory -------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process (Linux ≥ 4.0); False where impossible."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def peak_rss_mb() -> float:
    """Peak RSS since the last :func:`reset_peak_rss` (else since start: ru_maxrss, an upper bound)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


class PeakMemory:
    """Context manager: ``extra_mb`` = peak resident memory inside the block minus resident memory before it."""

    def __enter__(self):
        import gc

        gc.collect()
        self.exact = reset_peak_rss()
        self.before = rss_mb()
        return self

    def __exit__(self, *exc):
        self.peak = peak_rss_mb()
        self.extra_mb = self.peak - self.before
        return False


# --- one model, in this process -------------------------------------------------------------------
def run_one(model_name: str, dataset: str = "FB15k-237", device: str = "cpu", repeats: int = 3, split: str = "test",
            backend: str = "auto", memory_mb: float = 512, hidden_dim: int = 100, seed: int = 0) -> dict:
    import torch

    from emukg.data import load_dataset
    from emukg.evaluation import evaluate
    from emukg.models import build_model

    kg = load_dataset(dataset)
    torch.manual_seed(seed)
    model = build_model(model_name, kg.num_entities, kg.num_relations, hidden_dim, 12.0, **FLAGS.get(model_name, {}))
    model = model.to(device)
    kg.filter  # noqa: B018  (the filter index belongs to the dataset: built outside the measurements)
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    with PeakMemory() as pm:  # memory: the first, cold evaluation (nothing cached by the allocator yet)
        res = evaluate(model, kg, split, memory_mb=memory_mb, backend=backend)
    runs = []
    for _ in range(repeats):  # speed: warm evaluations
        res = evaluate(model, kg, split, memory_mb=memory_mb, backend=backend)
        runs.append(res["queries_per_s"])
    out = {
        "model": model_name,
        "queries": res["num_queries"],
        "queries_per_s": max(runs),
        "median_queries_per_s": statistics.median(runs),
        "runs_queries_per_s": runs,
        "eval_extra_rss_mb": pm.extra_mb,
        "peak_rss_mb": peak_rss_mb(),
        "peak_rss_exact": pm.exact,
        "backend": res["backend"],
        "memory_plan": res["memory"],
        "MRR": res["MRR"],
        "threads": torch.get_num_threads(),
    }
    if device.startswith("cuda"):
        out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_synthetic(num_entities: int = 1_000_000, hidden_dim: int = 100, memory_mb: float = 64, num_test: int = 2,
                  backend: str = "auto", model: str = "TransE") -> dict:
    """Evaluate a random graph with ``num_entities`` entities inside ``memory_mb``; report the extra RSS."""
    from emukg.bench.synthetic import synthetic_problem
    from emukg.evaluation import evaluate

    kg, m = synthetic_problem(num_entities, num_relations=4, num_train=2000, num_test=num_test, hidden_dim=hidden_dim,
                              model=model)
    kg.filter  # noqa: B018  (build the index outside the measurement)
    with PeakMemory() as pm:
        res = evaluate(m, kg, "test", memory_mb=memory_mb, backend=backend)
    return {"entities": num_entities, "dim": hidden_dim, "model": model, "budget_mb": memory_mb,
            "queries": res["num_queries"], "seconds": res["seconds"], "backend": res["backend"],
            "planned_mb_per_step": res["memory"]["mb_per_step"], "chunk": res["memory"]["chunk"],
            "entity_slice": res["memory"]["entity_slice"], "eval_extra_rss_mb": pm.extra_mb,
            "peak_rss_exact": pm.exact}


# --- subprocess driver ----------------------------------------------------------------------------
def _child(kind: str, kwargs: dict) -> dict:
    """Run :func:`run_one` (``kind`` 'model') or :func:`run_synthetic` in a fresh ``python -m`` child; its result."""
    return run_child("emukg.bench.eval_speed", ["--child", json.dumps({"kind": kind, "kwargs": kwargs})])


def bench_eval(models=MODELS, dataset: str = "FB15k-237", device: str = "cpu", repeats: int = 3,
               backend: str = "auto", memory_mb: float = 512, subprocesses: bool = True) -> dict[str, dict]:
    """Per model: {'queries_per_s' (best of ``repeats``), 'median_queries_per_s', 'eval_extra_rss_mb' (peak
    working memory of one evaluation above the resident model and dataset), 'peak_rss_mb' (the process), ...}."""
    out = {}
    for name in models:
        kw = dict(model_name=name, dataset=dataset, device=device, repeats=repeats, backend=backend, memory_mb=memory_mb)
        out[name] = _child("model", kw) if subprocesses else run_one(**kw)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--dataset", default="FB15k-237")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--backend", choices=["auto", "native", "torch", "device"], default="auto")
    ap.add_argument("--memory-mb", type=float, default=512)
    ap.add_argument("--synthetic", action="store_true", help="also run the 1,000,000-entity check (64 MiB budget)")
    ap.add_argument("--synthetic-only", action="store_true", help="only the 1,000,000-entity check")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        fn = run_one if spec["kind"] == "model" else run_synthetic
        print(json.dumps(fn(**spec["kwargs"])))
        return 0

    import torch

    report = {"machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                          "torch": torch.__version__, "threads": torch.get_num_threads()},
              "dataset": args.dataset, "device": args.device, "repeats": args.repeats, "memory_mb": args.memory_mb}
    if not args.synthetic_only:
        res = bench_eval(args.models, args.dataset, args.device, args.repeats, args.backend, args.memory_mb)
        report["models"] = res
        print(f"{'model':<10} {'best q/s':>10} {'median q/s':>11} {'eval RSS MB':>12} {'peak RSS MB':>12}  backend")
        for name, r in res.items():
            print(f"{name:<10} {r['queries_per_s']:>10,.0f} {r['median_queries_per_s']:>11,.0f} "
                  f"{r['eval_extra_rss_mb']:>12.1f} {r['peak_rss_mb']:>12.1f}  {r['backend']}")
    if args.synthetic or args.synthetic_only:
        report["synthetic"] = []
        for backend in ("native", "torch"):
            kw = dict(num_entities=1_000_000, hidden_dim=100, memory_mb=64, backend=backend,
                      num_test=2 if backend == "native" else 1)
            r = _child("synthetic", kw)
            report["synthetic"].append(r)
            print(f"1,000,000 entities, d=100, budget 64 MiB, {backend}: {r['queries']} queries in {r['seconds']:.1f} s, "
                  f"planned {r['planned_mb_per_step']:.1f} MiB/step, measured extra RSS {r['eval_extra_rss_mb']:.1f} MiB "
                  f"(chunk {r['chunk']}, entity slice {r['entity_slice']:,})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
