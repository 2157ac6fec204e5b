"""The schedule study's table and validation curves (issue 14; runs made by studies/schedule_study.sh).

usage: python studies/schedule_table.py OUTDIR    (prints Markdown; draws OUTDIR/curves.png with matplotlib)

Per run (folder OUTDIR/NAME--SCHEDULE): the best validation step, valid and test MRR and Hits@1/3/10 of the best
model (results.json), the training wall-clock (the sum over the logged windows of steps / steps-per-second in
metrics.jsonl, validations excluded), and whether it finished.  Unfinished runs show their best valid MRR so far.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def read_run(folder: Path) -> dict:
    rows = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines() if x.strip()] \
        if (folder / "metrics.jsonl").is_file() else []
    train = [r for r in rows if r["split"] == "training"]
    valid = [(r["step"], r["MRR"]) for r in rows if r["split"] == "valid"]
    seconds, last = 0.0, 0
    for r in train:
        seconds += (r["step"] - last) / max(r.get("steps_per_s", 0.0), 1e-9)
        last = r["step"]
    out = {"curve": valid, "hours": seconds / 3600, "steps": last}
    if (folder / "results.json").is_file():
        res = json.loads((folder / "results.json").read_text())
        out.update(done=True, best_step=res["best_step"], valid=res.get("valid", {}), test=res.get("test", {}))
    else:
        best = max(valid, key=lambda v: v[1], default=(None, float("nan")))
        out.update(done=False, best_step=best[0], valid={"MRR": best[1]}, test={})
    return out


def main(argv=None) -> int:
    outdir = Path((argv or sys.argv[1:])[0])
    runs = {p.name: read_run(p) for p in sorted(outdir.iterdir()) if p.is_dir() and "--" in p.name}
    print("| run | schedule | best valid step | valid MRR | test MRR | H@1 | H@3 | H@10 | train h | steps |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    fmt = lambda d, k: f"{d[k]:.4f}" if k in d else "–"
    for name, r in runs.items():
        run, sched = name.split("--")
        t = r["test"]
        print(f"| {run} | {sched} | {r['best_step']} | {fmt(r['valid'], 'MRR')} | {fmt(t, 'MRR')} | {fmt(t, 'HITS@1')} | "
              f"{fmt(t, 'HITS@3')} | {fmt(t, 'HITS@10')} | {r['hours']:.2f} | {r['steps']}{'' if r['done'] else ' (running)'} |")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("(matplotlib is not installed: no curves; pip install 'emukg[plot]')", file=sys.stderr)
        return 0
    groups = sorted({n.split("--")[0] for n in runs})
    fig, axes = plt.subplots(1, max(1, len(groups)), figsize=(4.5 * max(1, len(groups)), 3.5), squeeze=False)
    for ax, group in zip(axes[0], groups):
        for name, r in runs.items():
            if name.startswith(group + "--") and r["curve"]:
                steps, mrr = zip(*r["curve"])
                ax.plot(steps, mrr, label=name.split("--")[1], lw=1)
        ax.set_title(group, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel("valid MRR")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(outdir / "curves.png", dpi=120)
    print(f"wrote {outdir / 'curves.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
