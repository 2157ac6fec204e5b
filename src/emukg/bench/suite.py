"""The emukg benchmark suite: ``emukg bench [--quick] [--device cpu|cuda] [--json FILE]``.

Runs the four benchmarks of this subpackage (``emukg.bench``) and prints one table; the JSON holds these keys, each a mapping from a
case name to a number (plus ``machine``):

* ``train_step_ms``      ``MODEL/loss/sampler`` → median ms per full training step (FB15k-237, d=100, B=1000,
                         n=256; the four main models × {ce, emu, sigmoid-adv} × {uniform, sans}, and
                         pRotatE, TransD, HAKE × {ce, emu, sigmoid-adv} × {uniform})
* ``eval_queries_per_s`` model → filtered-evaluation queries per second on the FB15k-237 test split
* ``sans_build_s``       dataset → seconds to build SANS neighbourhoods (k=3, w=1000, restart walks)
* ``load_s``             dataset → seconds to load files + filter indexes
* ``peak_rss_mb``        ``suite`` and ``eval/MODEL`` → peak resident memory in MiB
* ``machine``            CPU/GPU name, threads, torch version, and ``kernels``: which CPU path runs
                         ("native C kernels (…)" or "PyTorch fallback: <reason>", emukg.kernels.describe())

The first printed line says which CPU path runs (native C kernels or the PyTorch fallback and why): CPU figures
from the fallback are several times slower and not comparable.  Warm-up is excluded and medians over repeats are
reported.  ``--quick`` runs a subset with fewer repeats and
finishes in under two minutes on a 2-core machine.  Timings are never asserted in tests.

    EMUKG_DATA_DIR=../shared/datasets emukg bench --quick --json bench.json
"""

from __future__ import annotations

import platform
import time

from .child import peak_rss_mb

MAIN_MODELS = ["TransE", "DistMult", "ComplEx", "RotatE"]
MORE_MODELS = ["pRotatE", "TransD", "HAKE"]  # train-step cases of the full suite, uniform sampler only


def machine_info(device: str) -> dict:
    import torch

    import emukg.kernels as kernels

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
            "device": device, "kernels": kernels.describe()}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run_suite(quick: bool = False, device: str = "cpu", log=print) -> dict:
    from ..data import load_dataset
    from .eval_speed import bench_eval
    from .load_dataset import bench_load
    from .sans_build import bench_sans_build
    from .train_step import bench_train_steps

    t_start = time.perf_counter()
    out: dict = {"machine": machine_info(device), "quick": quick}
    log(f"== CPU kernels: {out['machine']['kernels']}")

    datasets = ["FB15k-237"] if quick else ["FB15k-237", "wn18rr"]
    log("== load_s: dataset loading (files + filter indexes)")
    out["load_s"] = bench_load(datasets, repeats=1 if quick else 3)
    for k, v in out["load_s"].items():
        log(f"  {k:28s} {v:8.3f} s")

    log("== sans_build_s: SANS neighbourhoods, k=3, w=1000")
    out["sans_build_s"] = bench_sans_build(datasets, k=3, w=1000, repeats=1 if quick else 3)
    for k, v in out["sans_build_s"].items():
        log(f"  {k:28s} {v:8.3f} s")

    log("== train_step_ms: FB15k-237, d=100, B=1000, n=256 (median full step)")
    kg = load_dataset("FB15k-237")
    if quick:
        cases = dict(models=["TransE", "DistMult"], losses=["ce", "emu"], samplers=("uniform",), steps=3, warmup=1)
    else:
        cases = dict(models=MAIN_MODELS, losses=["ce", "emu", "sigmoid-adv"], samplers=("uniform", "sans"), steps=10, warmup=3)
    say = lambda name, r: log(f"  {name:28s} {r['step_ms']:8.1f} ms")  # noqa: E731
    out["train_step_ms"] = bench_train_steps(kg=kg, device=device, progress=say, **cases)
    if not quick:
        out["train_step_ms"].update(bench_train_steps(kg=kg, device=device, progress=say, models=MORE_MODELS,
                                                      losses=["ce", "emu", "sigmoid-adv"], samplers=("uniform",),
                                                      steps=10, warmup=3))

    log("== eval_queries_per_s: filtered ranking, FB15k-237 test (40,932 queries)")
    ev = bench_eval(["TransE", "DistMult"] if quick else MAIN_MODELS, device=device, repeats=1 if quick else 3)
    out["eval_queries_per_s"] = {m: float(r["median_queries_per_s"]) for m, r in ev.items()}
    peak = {f"eval/{m}": float(r["peak_rss_mb"]) for m, r in ev.items() if "peak_rss_mb" in r}
    for m, r in ev.items():
        log(f"  {m:28s} {r['median_queries_per_s']:8.0f} queries/s   peak RSS {r.get('peak_rss_mb', float('nan')):.0f} MiB")

    peak["suite"] = peak_rss_mb()
    out["peak_rss_mb"] = peak
    out["total_s"] = time.perf_counter() - t_start
    log(f"== done in {out['total_s']:.0f} s on {out['machine']['cpu']} ({out['machine']['threads']} threads, torch {out['machine']['torch']})")
    return out


def main(argv=None) -> int:
    """``python -m emukg.bench.suite`` (or ``python -m emukg.bench.suite``): the suite without the ``emukg`` command."""
    import argparse

    p = argparse.ArgumentParser(description="emukg benchmark suite")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    res = run_suite(args.quick, args.device)
    if args.json:
        from ..io_utils import atomic_write_json

        atomic_write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
