"""1-vs-all training steps on a synthetic graph of 1,000,000 entities: seconds per step and the peak memory above
the model + optimiser baseline, against the ``train_memory_mb`` budget (:mod:`emukg.objectives.one_vs_all`).

Each model runs in a fresh child process (``--child``), so its peak resident size (``ru_maxrss``) is its own.  The
child builds the model (d = ``--dim``, the paper's init), an Adagrad optimiser (its state, N×D, exists from the
start), ``--triples`` random triples made in memory from a seeded generator, and the 1vsall objective with
``train_memory_mb = --memory-mb``; it reads its resident size (``/proc/self/statm``) — the *baseline*: tables,
optimiser state, triples, the interpreter and torch — and then runs ``--steps`` full steps (objective, backward,
Adagrad; tail and head batches alternating, the first one untimed).  Reported per model: the plan (path, entity
block C, blocks per pass, planned block bytes W), seconds per step (median of the timed steps), the peak resident
size above the baseline after the first forward + backward (before any optimiser step) and after all steps, and
the first minus the dense entity gradient 4·N·D (every 1-vs-all step has it; it becomes ``E.grad``): the working
memory that the budget bounds.  The peak after all steps also holds Adagrad's own N×D temporary (√state + ε),
which is the optimiser's, not the loss's.  The same step without blocks would hold
B×N×D floats (TransE, B = 100, N = 10⁶, D = 100: 40 GB for one tensor).

    python -m emukg.bench.onevsall --models TransE DistMult RotatE --json onevsall.json

Not part of ``emukg bench``'s quick
suite: a case needs a few GB of memory and minutes on a small machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

from .child import peak_rss_mb, run_child

MODELS = ["TransE", "DistMult", "RotatE"]
FLAGS = {"ComplEx": dict(double_entity_embedding=True, double_relation_embedding=True),
         "RotatE": dict(double_entity_embedding=True)}


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def run_case(model_name: str, entities: int, relations: int, dim: int, batch: int, triples: int, steps: int,
             memory_mb: int, seed: int = 0, use_kernel: bool | None = None) -> dict:
    """One model's measurement in THIS process (call it in a fresh one: ``ru_maxrss`` is a process-wide peak)."""
    from types import SimpleNamespace

    import torch

    from emukg.config import Config
    from emukg.objectives import build_objective
    from emukg.models import build_model
    from emukg.objectives.one_vs_all import plan_one_vs_all

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    flags = FLAGS.get(model_name, {})
    cfg = Config.from_dict(dict(model=model_name, hidden_dim=dim, gamma=12.0, batch_size=batch, loss="1vsall",
                                train_memory_mb=memory_mb, learning_rate=0.05, **flags))
    model = build_model(model_name, entities, relations, dim, cfg.gamma, flags.get("double_entity_embedding", False),
                        flags.get("double_relation_embedding", False))
    optimizer = torch.optim.Adagrad(model.parameters(), lr=cfg.learning_rate)  # state allocated here
    data = torch.stack([torch.randint(entities, (triples,), generator=g), torch.randint(relations, (triples,), generator=g),
                        torch.randint(entities, (triples,), generator=g)], 1)
    objective = build_objective(cfg, SimpleNamespace(num_entities=entities), None, use_kernel=use_kernel)
    plans = {side: plan_one_vs_all(model, batch, memory_mb, side, use_kernel) for side in ("tail", "head")}
    D = model.entity_embedding.shape[1]
    baseline = _rss_bytes()
    peak_before = peak_rss_mb() * 2**20
    times, losses = [], []
    for step in range(steps + 1):
        side = "tail" if step % 2 == 0 else "head"
        idx = torch.randint(triples, (batch,), generator=g)
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss, logs = objective(model, data[idx], side, g)
        loss.backward()
        if step == 0:  # the 1-vs-all forward and backward alone (Adagrad's step has its own N×D temporary)
            peak_fwd_bwd = peak_rss_mb() * 2**20
        optimizer.step()
        dt = time.perf_counter() - t0
        losses.append(logs["ce_loss"])
        if step:  # the first step is warm-up
            times.append(dt)
    peak = peak_rss_mb() * 2**20
    grad_bytes = model.entity_embedding.numel() * model.entity_embedding.element_size()
    plan = plans["tail"]
    return {
        "model": model_name, "entities": entities, "relations": relations, "hidden_dim": dim, "entity_width": D,
        "batch_size": batch, "triples": triples, "budget_mb": memory_mb, "threads": torch.get_num_threads(),
        "path": plan.path, "entity_block": plan.entity_block, "query_chunk": plan.query_chunk,
        "blocks_per_pass": -(-entities // plan.entity_block), "planned_block_mb": max(p.block_bytes for p in plans.values()) / 2**20,
        "table_mb": grad_bytes / 2**20, "baseline_rss_mb": baseline / 2**20, "peak_before_steps_mb": peak_before / 2**20,
        "peak_rss_mb": peak / 2**20, "peak_above_baseline_mb": (peak - baseline) / 2**20,
        "dense_gradient_mb": grad_bytes / 2**20,
        "fwd_bwd_peak_above_baseline_mb": (peak_fwd_bwd - baseline) / 2**20,
        "working_mb": (peak_fwd_bwd - baseline - grad_bytes) / 2**20,
        "step_s": statistics.median(times) if times else None, "step_times_s": times, "losses": losses,
    }


def bench_one_vs_all(models=MODELS, entities: int = 1_000_000, relations: int = 100, dim: int = 100, batch: int = 100,
                     triples: int = 300_000, steps: int = 3, memory_mb: int = 512, threads: int | None = None,
                     progress=None) -> list[dict]:
    """:func:`run_case` for each model, each in a fresh ``python -m emukg.bench.onevsall --child`` process."""
    out = []
    for name in models:
        cmd = ["--child", "--models", name, "--entities", str(entities),
               "--relations", str(relations), "--dim", str(dim), "--batch", str(batch), "--triples", str(triples),
               "--steps", str(steps), "--memory-mb", str(memory_mb)]
        if threads:
            cmd += ["--threads", str(threads)]
        row = run_child("emukg.bench.onevsall", cmd)
        out.append(row)
        if progress:
            progress(row)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--entities", type=int, default=1_000_000)
    ap.add_argument("--relations", type=int, default=100)
    ap.add_argument("--dim", type=int, default=100, help="hidden_dim d (RotatE's rows are 2d wide)")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--triples", type=int, default=300_000, help="random training triples made in memory")
    ap.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    ap.add_argument("--memory-mb", type=int, default=512, help="train_memory_mb: the 1-vs-all block budget")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        import torch

        if args.threads:
            torch.set_num_threads(args.threads)
        row = run_case(args.models[0], args.entities, args.relations, args.dim, args.batch, args.triples, args.steps,
                       args.memory_mb)
        print(json.dumps(row))
        return 0
    import torch

    print(f"torch {torch.__version__}, {platform.machine()}, {args.threads or torch.get_num_threads()} threads; "
          f"N={args.entities:,}, d={args.dim}, B={args.batch}, budget {args.memory_mb} MiB", flush=True)
    print(f"{'model':9s} {'path':9s} {'block C':>8s} {'blocks':>6s} {'W MiB':>6s} {'step s':>7s} {'baseline MiB':>12s} "
          f"{'fwd+bwd-base':>12s} {'-grad':>7s} {'all-base':>9s}", flush=True)

    def show(r):
        step = f"{r['step_s']:7.2f}" if r["step_s"] is not None else f"{'-':>7s}"
        print(f"{r['model']:9s} {r['path']:9s} {r['entity_block']:8d} {r['blocks_per_pass']:6d} {r['planned_block_mb']:6.0f} "
              f"{step} {r['baseline_rss_mb']:12.0f} {r['fwd_bwd_peak_above_baseline_mb']:12.0f} {r['working_mb']:7.0f} "
              f"{r['peak_above_baseline_mb']:9.0f}", flush=True)

    rows = bench_one_vs_all(args.models, args.entities, args.relations, args.dim, args.batch, args.triples, args.steps,
                            args.memory_mb, args.threads, progress=show)
    if args.json:
        payload = {"benchmark": "onevsall", "unit": "s per full step; MiB", "torch": torch.__version__,
                   "machine": platform.machine(), "python": sys.version.split()[0], "results": rows}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(payload, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
