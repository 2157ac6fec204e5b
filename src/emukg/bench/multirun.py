"""Step throughput of K runs in one process (``emukg train --seeds``), for K = 1, 8, 32 …

Each K builds :class:`emukg.multirun.MultiRun` with seeds 0 … K−1 (the paper's EMU TransE case by default:
d=100, B=1000, n=256, CE over fresh uniform negatives, EMU p=0.39), steps the runs in lockstep ``warmup`` times
untimed, then ``steps`` times timed (the device synchronised before and after), and reports the run-steps per
second (K · steps / seconds), the milliseconds per lockstep round, and the speed-up over K = 1.  No validation,
no test; the run folders go to a temporary folder (or ``workdir``).

    EMUKG_DATA_DIR=/work/shared/datasets python -m emukg.bench.multirun --k 1 8 32 --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def bench_multirun(ks=(1, 8, 32), *, dataset: str = "FB15k-237", device: str = "cpu", steps: int = 20, warmup: int = 3,
                   model: str = "TransE", loss: str = "emu", hidden_dim: int = 100, batch_size: int = 1000,
                   negatives: int = 256, workdir: str | None = None, log=print) -> dict:
    """``{"cases": [{"k", "seconds", "run_steps_per_s", "round_ms", "speedup"}…], settings…}``."""
    from ..multirun import MultiRun
    from .train_step import make_config

    base = make_config(model, loss, dataset=dataset, hidden_dim=hidden_dim, batch_size=batch_size, negatives=negatives)
    out: dict = {"benchmark": "multirun", "dataset": dataset, "device": device, "model": model, "loss": loss,
                 "hidden_dim": hidden_dim, "batch_size": batch_size, "negatives": negatives, "steps": steps,
                 "warmup": warmup, "torch": torch.__version__, "cases": []}
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for k in ks:
            cfg = base.replace(seeds=list(range(k)), save_path=str(Path(tmp) / f"k{k}"), device=device, do_valid=False,
                               do_test=False, max_steps=warmup + steps, log_steps=warmup + steps,
                               save_checkpoint_steps=warmup + steps, progress=False)
            group = MultiRun(cfg)
            for t in group.trainers.values():
                t.out.console = False  # the runs' logs go to their train.log only
            gens = [t.fit_steps() for t in group.trainers.values()]
            for _ in range(warmup):
                for g in gens:
                    next(g)
            _sync(device)
            t0 = time.perf_counter()
            for _ in range(steps):
                for g in gens:
                    next(g)
            _sync(device)
            seconds = time.perf_counter() - t0
            for g in gens:  # the final checkpoint
                for _ in g:
                    pass
            case = {"k": k, "seconds": seconds, "run_steps_per_s": k * steps / seconds, "round_ms": 1e3 * seconds / steps}
            first = out["cases"][0] if out["cases"] else case
            case["speedup"] = case["run_steps_per_s"] / first["run_steps_per_s"] if first["k"] == 1 else None
            out["cases"].append(case)
            log(f"  K={k:3d}  {case['run_steps_per_s']:9.1f} run-steps/s  {case['round_ms']:9.2f} ms per lockstep round"
                + (f"  x{case['speedup']:.2f} vs K=1" if case["speedup"] is not None else ""))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--k", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--dataset", default="FB15k-237")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--model", default="TransE")
    ap.add_argument("--loss", default="emu", choices=["ce", "emu", "sigmoid-adv"])
    ap.add_argument("--hidden-dim", type=int, default=100)
    ap.add_argument("--batch-size", type=int, default=1000)
    ap.add_argument("--negatives", type=int, default=256)
    ap.add_argument("--json", metavar="FILE")
    a = ap.parse_args(argv)
    res = bench_multirun(a.k, dataset=a.dataset, device=a.device, steps=a.steps, warmup=a.warmup, model=a.model, loss=a.loss,
                         hidden_dim=a.hidden_dim, batch_size=a.batch_size, negatives=a.negatives)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
