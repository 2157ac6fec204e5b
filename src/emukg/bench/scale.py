"""Training at scale: step time, positives/s and peak memory at 0.1 M, 1 M and 2.5 M entities (``emukg bench --scale``).

Cases: TransE and ComplEx (``-de -dr``) with EMU (p=0.39, λ=0.53, CE_coef=0.11, fresh uniform negatives), d=100,
B=1000, n=256 — the configuration of :mod:`emukg.bench.train_step` — on graphs of ``SIZES`` entities, plus the
same on FB15k-237 (14,541 entities) for the ratio.  Each case runs in a fresh child process (``python -m
emukg.bench.scale --child ...``) through :class:`emukg.training.Trainer` (so ``Config.sparse`` auto decides dense
or row-sparse updates as a run does), so its peak RSS is its own: graph, model, optimiser state and steps.  The
steps are timed over both optimiser phases of the reference schedule: ``warm_up_steps`` is set to
warm-up + steps, so the timed steps are Adagrad, then ``adam_steps`` more steps after the switch (lazy Adam in
sparse mode) are timed separately; the peak RSS covers both.  Checkpoints are not written (not timed).

Graphs: :func:`emukg.data.synthetic.synthetic_graph` (power-law, N triples over 100 relations) when that module
is there, else uniformly random triples in memory (the step time does not depend on the degree law).

Evaluation memory (``eval/N``): :func:`emukg.bench.scale_eval.scale_eval` in a child of its own — a random TransE
(d=100) of N entities ranks 2,000 filtered test triples (4,000 queries) of a synthetic graph with N training
triples under a 1 GiB chunk budget.

Data-parallel speed-up: the FB15k-237 TransE EMU case as 2 gloo processes (``torch.distributed.run``, one
thread each) against 1 process with 2 threads: global positives/s of each and their ratio.  On a 2-core
machine the two are expected to be close (the same cores either way); the figure is the communication overhead.

JSON (``--json F``; ``emukg bench --scale --json F``):

* ``scale_step_ms``          ``MODEL/emu/ENTITIES`` (and ``MODEL/emu/FB15k-237``) → median Adagrad step, ms
* ``scale_adam_step_ms``     the same keys → median step after the switch to (lazy) Adam, ms
* ``scale_positives_per_s``  the same keys → B / median step
* ``scale_ratio``            ``MODEL/emu/ENTITIES`` → its step / the FB15k-237 step of this run
* ``scale_peak_rss_mb``      ``train/ENTITIES`` (TransE, the larger of its runs), ``eval/ENTITIES``, and
                             ``train/MODEL/ENTITIES`` → peak resident memory of the child, MiB
* ``scale_sparse``           the same keys as ``scale_step_ms`` → whether row-sparse updates ran
* ``scale_ddp``              ``processes``, ``positives_per_s_1``, ``positives_per_s_2``, ``speedup``

    EMUKG_DATA_DIR=/work/shared/datasets emukg bench --scale --json scale.json
    python -m emukg.bench.scale --sizes 100000 --models TransE        # one case
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from .child import peak_rss_mb, run_child

SIZES = (100_000, 1_000_000, 2_500_000)
MODELS = ("TransE", "ComplEx")
RELATIONS = 100


def scale_graph(entities: int, triples: int | None = None, seed: int = 0):
    """A graph of ``entities`` entities and ``triples`` (default ``entities``) training triples."""
    triples = triples or entities
    try:
        from ..data.synthetic import synthetic_graph
    except ImportError:
        synthetic_graph = None
    if synthetic_graph is not None:
        return synthetic_graph(entities, RELATIONS, triples, valid=1000, test=1000, seed=seed)
    import torch

    from ..data.graph import KnowledgeGraph

    g = torch.Generator().manual_seed(seed)

    def rand(n):
        return torch.stack([torch.randint(0, entities, (n,), generator=g), torch.randint(0, RELATIONS, (n,), generator=g),
                            torch.randint(0, entities, (n,), generator=g)], 1)

    return KnowledgeGraph([f"e{i}" for i in range(entities)], [f"r{i}" for i in range(RELATIONS)],
                          {"train": rand(triples), "valid": rand(1000), "test": rand(1000)}, name=f"random-{entities}")


# --- children ------------------------------------------------------------------------------------------------
def child_train(model: str, entities: str, steps: int, warmup: int, adam_steps: int, threads: int | None) -> dict:
    """Time ``Trainer.train_step`` for one case (in this process); under torchrun, every rank runs it."""
    import torch

    from ..data import load_dataset
    from ..training import Trainer
    from .train_step import make_config

    if threads:
        torch.set_num_threads(threads)
    t0 = time.perf_counter()
    kg = load_dataset(entities) if not entities.isdigit() else scale_graph(int(entities))
    graph_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        base = make_config(model, "emu", "uniform", dataset=entities if not entities.isdigit() else "synthetic").to_dict()
        base.update(save_path=str(Path(tmp) / "run"), device="cpu", progress=False, do_valid=False, do_test=False,
                    max_steps=warmup + steps + adam_steps + 1, warm_up_steps=warmup + steps, seed=0)
        from ..config import Config

        trainer = Trainer(Config.from_dict(base), kg=kg)
        times = {"adagrad": [], "adam": []}
        for i in range(warmup + steps + adam_steps):
            t = time.perf_counter()
            trainer.train_step()
            dt = (time.perf_counter() - t) * 1e3
            if warmup <= i < warmup + steps:
                times["adagrad"].append(dt)
            elif i >= warmup + steps:
                times["adam"].append(dt)
        trainer.out.close()
        B = trainer.config.batch_size
        step = statistics.median(times["adagrad"])
        return {"step_ms": step, "adam_step_ms": statistics.median(times["adam"]) if times["adam"] else None,
                "positives_per_s": B / step * 1e3, "sparse": trainer.sparse, "optimizer": type(trainer.optimizer).__name__,
                "peak_rss_mb": peak_rss_mb(), "graph_s": graph_s, "threads": torch.get_num_threads(),
                "world": trainer.dist.world, "entities": kg.num_entities}


def _run_child(args: list[str], torchrun: int = 0, timeout: float = 1800) -> dict:
    return run_child("emukg.bench.scale", ["--child", *args], timeout=timeout, torchrun=torchrun)


# --- the benchmark -----------------------------------------------------------------------------------------
def bench_scale(sizes=SIZES, models=MODELS, steps: int = 5, warmup: int = 2, adam_steps: int = 3, ddp: bool = True,
                eval_memory: bool = True, log=print) -> dict:
    """Run every case in its own child; returns the JSON described in the module docstring."""
    out: dict = {"scale_step_ms": {}, "scale_adam_step_ms": {}, "scale_positives_per_s": {}, "scale_ratio": {},
                 "scale_peak_rss_mb": {}, "scale_sparse": {}}
    for model in models:
        for n in ("FB15k-237", *map(str, sizes)):
            key = f"{model}/emu/{n}"
            r = _run_child(["train", "--model", model, "--entities", n, "--steps", str(steps), "--warmup", str(warmup),
                            "--adam-steps", str(adam_steps)])
            out["scale_step_ms"][key] = r["step_ms"]
            out["scale_adam_step_ms"][key] = r["adam_step_ms"]
            out["scale_positives_per_s"][key] = r["positives_per_s"]
            out["scale_sparse"][key] = r["sparse"]
            out["scale_peak_rss_mb"][f"train/{model}/{n}"] = r["peak_rss_mb"]
            if model == "TransE" and n.isdigit():
                out["scale_peak_rss_mb"][f"train/{n}"] = r["peak_rss_mb"]
            base = out["scale_step_ms"].get(f"{model}/emu/FB15k-237")
            if n.isdigit() and base:
                out["scale_ratio"][key] = r["step_ms"] / base
            log(f"  {key:28s} {r['step_ms']:8.1f} ms  (Adam {r['adam_step_ms'] or float('nan'):7.1f} ms)  "
                f"{r['positives_per_s']:8.0f} positives/s  peak RSS {r['peak_rss_mb']:7.0f} MiB  "
                f"{'sparse' if r['sparse'] else 'dense'} {r['optimizer']}"
                + (f"  ×{out['scale_ratio'][key]:.2f} of FB15k-237" if key in out["scale_ratio"] else ""))
    if eval_memory:
        from .scale_eval import scale_eval

        for n in sizes:
            r = scale_eval(entities=n, queries=2000, train=n)
            out["scale_peak_rss_mb"][f"eval/{n}"] = r["peak_rss_mb"]
            log(f"  eval/{n:<23d} peak RSS {r['peak_rss_mb']:7.0f} MiB  ({r['queries_per_s']:.0f} queries/s)")
    if ddp:
        args = ["train", "--model", "TransE", "--entities", "FB15k-237", "--steps", str(steps), "--warmup", str(warmup),
                "--adam-steps", "0"]
        one = _run_child([*args, "--threads", "2"])
        two = _run_child([*args, "--threads", "1"], torchrun=2)
        out["scale_ddp"] = {"case": "TransE/emu/FB15k-237", "processes": 2, "positives_per_s_1": one["positives_per_s"],
                            "positives_per_s_2": two["positives_per_s"], "speedup": two["positives_per_s"] / one["positives_per_s"]}
        log(f"  2 gloo processes vs 1 (TransE/emu/FB15k-237): {two['positives_per_s']:.0f} vs {one['positives_per_s']:.0f} "
            f"positives/s, speed-up ×{out['scale_ddp']['speedup']:.2f}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--child", choices=["train"], help=argparse.SUPPRESS)
    ap.add_argument("--model", default="TransE", help=argparse.SUPPRESS)
    ap.add_argument("--entities", default="100000", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="entity counts")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--steps", type=int, default=5, help="timed Adagrad steps per case (median reported)")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--adam-steps", type=int, default=3, help="timed steps after the switch to Adam")
    ap.add_argument("--no-ddp", action="store_true", help="skip the 2-process gloo run")
    ap.add_argument("--no-eval", action="store_true", help="skip the evaluation-memory children")
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args(argv)
    if args.child == "train":
        res = child_train(args.model, args.entities, args.steps, args.warmup, args.adam_steps, args.threads)
        if os.environ.get("RANK", "0") == "0":
            print(json.dumps(res), flush=True)
        return 0
    res = bench_scale(args.sizes, args.models, args.steps, args.warmup, args.adam_steps, ddp=not args.no_ddp,
                      eval_memory=not args.no_eval)
    if args.json:
        from ..io_utils import atomic_write_json

        atomic_write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
