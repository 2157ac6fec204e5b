"""The prepared GPU window's Python parts (``benchmarks/gpu_window.sh OUT`` calls them).

* ``python -m emukg.bench.window data DIR``: the dry mode's tiny synthetic dataset (200 entities, 1,000 triples).
* ``python -m emukg.bench.window table OUT --budget-s S``: as much of the paper's table (``emukg reproduce
  --list``: 16 EMU and 24 baseline runs, 100,000 steps each) as fits in S seconds, in chunks that resume: each run
  is ``emukg train --config <the named run's settings>`` in ``OUT/table/NAME`` with a checkpoint every 1,000 steps
  and 8 GiB evaluation blocks;
  a run already finished (its ``results.json``) is skipped, one begun is continued with ``emukg train --resume``,
  and the run in progress when the budget ends is killed (kill -9 is safe: the next window resumes it from its
  last checkpoint to the same run).  ``--dry DATA`` runs the same on DATA with tiny shapes and 4 steps per run.
* ``python -m emukg.bench.window summary OUT``: ``OUT/summary.json`` from what the stages wrote: the benchmark
  figures, the K-runs throughput, and per table run its steps done, state and test MRR.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

DRY_SHAPES = ["--hidden-dim", "8", "--batch-size", "32", "--negative-sample-size", "4", "--num-random-walks", "10",
              "--valid-steps", "2", "--log-steps", "2"]


def dry_data(folder: str | os.PathLike) -> Path:
    from ..data.synthetic import holds_dataset, write_synthetic

    folder = Path(folder)
    if not holds_dataset(folder):
        write_synthetic(folder, 200, 4, 1000, valid=50, test=50, seed=0)
    return folder


def _state(run: Path) -> dict:
    """Steps done, state ('done', 'started', 'new') and the test MRR of a table run folder."""
    if (run / "results.json").is_file():
        res = json.loads((run / "results.json").read_text(encoding="utf-8"))
        return {"state": "done", "step": res.get("step"), "test_MRR": (res.get("test") or {}).get("MRR"),
                "valid_MRR": (res.get("valid") or {}).get("MRR")}
    step = None
    if (run / "metrics.jsonl").is_file():
        for line in (run / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
            try:
                step = max(step or 0, int(json.loads(line).get("step", 0)))
            except (json.JSONDecodeError, ValueError):
                continue
    return {"state": "started" if (run / "config.json").is_file() else "new", "step": step}


def table(out: str | os.PathLike, budget_s: float, device: str = "cuda", dry: str | None = None, names=None,
          log=print) -> list[dict]:
    """Advance the paper's runs in order until ``budget_s`` seconds are spent (see the module's docstring)."""
    from ..paper import experiments

    root = Path(out) / "table"
    root.mkdir(parents=True, exist_ok=True)
    names = list(names or [n for n in experiments() if n.startswith(("emu-", "base-"))])
    deadline = time.monotonic() + budget_s
    done = []
    py = [sys.executable, "-m", "emukg"]
    for name in names:
        run = root / name
        state = _state(run)
        if state["state"] == "done":
            continue
        left = deadline - time.monotonic()
        if left < (3 if dry else 15):
            break
        if state["state"] == "started":
            cmd = [*py, "train", "--resume", str(run)]
        else:
            show = [*py, "reproduce", name, "--show"] + (["--steps", "4"] if dry else [])
            settings = subprocess.run(show, capture_output=True, text=True, check=True).stdout
            yaml_file = root / f"{name}.yaml"
            yaml_file.write_text(settings, encoding="utf-8")
            cmd = [*py, "train", "--config", str(yaml_file), "--device", device, "--save-path", str(run), "--no-progress",
                   "--save-checkpoint-steps", "2" if dry else "1000"]
            if dry:
                cmd += ["--dataset", str(dry), *DRY_SHAPES]
            else:  # a GPU's memory: larger evaluation blocks (200 validations per run; training does not depend on it)
                cmd += ["--eval-memory-mb", "8192"]
        t0 = time.monotonic()
        with open(root / f"{name}.log", "a", encoding="utf-8") as fh:
            try:
                rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=left).returncode
            except subprocess.TimeoutExpired:
                rc = "budget"  # killed: the next window resumes it from its last checkpoint
        state = {"name": name, **_state(run), "seconds": round(time.monotonic() - t0, 1), "rc": rc}
        log(f"  {name:36s} {state['state']:8s} step {state['step']}  ({state['seconds']} s, rc {rc})")
        done.append(state)
        if rc == "budget":
            break
    return done


def summary(out: str | os.PathLike) -> dict:
    """``OUT/summary.json``: every stage's figures and the table's progress."""
    from ..paper import experiments

    out = Path(out)

    def read(name):
        p = out / name
        try:
            return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None
        except json.JSONDecodeError:
            return {"error": f"{p} is not valid JSON (the stage was cut short)"}

    runs = {n: _state(out / "table" / n) for n in experiments() if n.startswith(("emu-", "base-"))}
    stages = read("stages.json") or {}
    res = {"stages": stages, "train_step_ms": read("train_step.json"), "eval": read("eval.json"),
           "multirun": read("multirun.json"), "triton": read("triton.json"), "train_step_triton": read("train_step_triton.json"), "table": runs,
           "table_done": sum(r["state"] == "done" for r in runs.values()), "table_total": len(runs)}
    (out / "summary.json").write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    d = sub.add_parser("data")
    d.add_argument("folder")
    t = sub.add_parser("table")
    t.add_argument("out")
    t.add_argument("--budget-s", type=float, required=True)
    t.add_argument("--device", default="cuda")
    t.add_argument("--dry", metavar="DATA")
    t.add_argument("--names", nargs="+")
    s = sub.add_parser("summary")
    s.add_argument("out")
    a = ap.parse_args(argv)
    if a.what == "data":
        print(dry_data(a.folder))
    elif a.what == "table":
        table(a.out, a.budget_s, a.device, a.dry, a.names)
    else:
        res = summary(a.out)
        print(f"summary: {res['table_done']} of {res['table_total']} table runs done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
