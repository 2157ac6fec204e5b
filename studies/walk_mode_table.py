"""The walk-mode study's table (docs/results.md): one row per run folder written by walk_mode_study.sh.

usage: python studies/walk_mode_table.py OUTDIR [--json FILE]
Columns: best validation MRR and its step, the best model's test MRR / HITS@1 / HITS@10, and the wall-clock time.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path


def row(run: Path) -> dict | None:
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        return None
    lines = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    valid = [x for x in lines if x["split"] == "valid"]
    results = json.loads((run / "results.json").read_text()) if (run / "results.json").is_file() else {}
    test = results.get("test", {})
    stamps = [ln[:19] for ln in (run / "train.log").read_text().splitlines() if ln[:4].isdigit()]
    wall = (datetime.fromisoformat(stamps[-1]) - datetime.fromisoformat(stamps[0])).total_seconds() if stamps else float("nan")
    best = max(valid, key=lambda x: x["MRR"]) if valid else {}  # max() keeps the first of equal values
    model, dataset, mode = run.name.split("-", 1)[0], run.name.split("-", 1)[1].rsplit("-", 1)[0], run.name.rsplit("-", 1)[1]
    steps = max((x["step"] for x in lines if x["split"] == "training"), default=-1) + 1
    curve = {x["step"]: x["MRR"] for x in valid}  # periodic validations (the final re-evaluation repeats a step)
    return {"curve": curve, "model": model, "dataset": dataset, "walks": mode, "steps": steps,
            "best_valid_mrr": best.get("MRR"), "best_step": best.get("step"), "test_mrr": test.get("MRR"),
            "test_hits1": test.get("HITS@1"), "test_hits10": test.get("HITS@10"), "wall_s": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("outdir", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [r for r in (row(p) for p in sorted(args.outdir.iterdir()) if p.is_dir()) if r]
    rows.sort(key=lambda r: (r["dataset"], r["model"], r["walks"] != "restart"))
    f = lambda v, d=4: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
    print("| dataset | model | walks | steps | best valid MRR (step) | test MRR | test H@1 | test H@10 | wall-clock |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['dataset']} | {r['model']} | {r['walks']} | {r['steps']:,} | {f(r['best_valid_mrr'])} ({r['best_step']}) | "
              f"{f(r['test_mrr'])} | {f(r['test_hits1'])} | {f(r['test_hits10'])} | {r['wall_s'] / 60:.1f} min |")
    # the same budget for both walk modes: validation MRR at every step both runs reached
    print()
    print("| dataset | model | step | restart valid MRR | chained valid MRR |")
    print("|---|---|---|---|---|")
    pairs: dict = {}
    for r in rows:
        pairs.setdefault((r["dataset"], r["model"]), {})[r["walks"]] = r["curve"]
    for (dataset, model), modes in sorted(pairs.items()):
        if set(modes) != {"restart", "chained"}:
            continue
        for step in sorted(set(modes["restart"]) & set(modes["chained"])):
            if step:
                print(f"| {dataset} | {model} | {step:,} | {modes['restart'][step]:.4f} | {modes['chained'][step]:.4f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
