"""Results report over run folders: Markdown and CSV tables, and PNG plots of validation MRR over steps.

A replacement for the reference's ``analyse_result.py``.  For each run folder it reads ``config.json``,
``results.json`` (final metrics of the best model) and ``metrics.jsonl`` (the validation curve).  Rows are
grouped by dataset, model and sampler, with baseline and EMU side by side.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

from .config import Config
from .errors import EmukgError, ParamError
from .io_utils import atomic_write_bytes, atomic_write_text, check_writable_dir, os_reason
from .run_folder import CONFIG, RunFolder

METRICS = ("MRR", "HITS@1", "HITS@3", "HITS@10")


def describe(cfg: Config, dataset_name: str | None = None) -> dict:
    """The row keys of a run: dataset (``dataset_name``, e.g. from config.json's dataset record, else the last
    part of ``cfg.dataset``), model, loss, sampler and method."""
    sampler = "sans" if cfg.loss != "1vsall" and cfg.sampler == "sans" else "uniform"
    loss = {"sigmoid": "sigmoid", "ce": "CE", "1vsall": "1-vs-all"}[cfg.loss]
    if cfg.adversarial:
        sampler += "-adv"
    method = "EMU" if cfg.emu is not None else "baseline"
    if cfg.emu is not None and cfg.mixup:
        method = "EMU-Mixup"
    if cfg.emu is not None and cfg.only_ls:
        method = "EMU-OnlyLS"
    return {"dataset": dataset_name or Path(cfg.dataset).name, "model": cfg.model, "loss": loss, "sampler": sampler, "method": method}


def read_run(run_dir: str | os.PathLike) -> dict:
    """One report row of a run folder: its description, final metrics (results.json) and validation curve."""
    run = RunFolder(run_dir)
    run_dir = run.path
    if not run.file(CONFIG).is_file():
        raise EmukgError(f"{run_dir}: not a run folder (no config.json); pass folders written by 'emukg train'.")
    cfg = run.read_config()
    record = run.read_json(CONFIG).get("dataset_record")
    name = record.get("name") if isinstance(record, dict) and isinstance(record.get("name"), str) else None
    row = {"run": str(run_dir), **describe(cfg, name)}
    curve: list[tuple[int, float]] = []
    last_step = 0
    if (run_dir / "metrics.jsonl").is_file():
        for number, line in enumerate((run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                raise EmukgError(f"{run_dir / 'metrics.jsonl'}, line {number}: not valid JSON; the file is damaged.") from None
            last_step = max(last_step, int(rec.get("step", 0)))
            if rec.get("split") == "valid" and "MRR" in rec:
                curve.append((int(rec["step"]), float(rec["MRR"])))
    row["steps"] = last_step
    split = None
    if (run_dir / "results.json").is_file():
        res = run.read_json("results.json")
        split = "test" if "test" in res else ("valid" if "valid" in res else None)
        if split:
            row.update({k: res[split][k] for k in METRICS if k in res[split]})
            row["steps"] = res.get("step", last_step)
            if "valid" in res:
                row["valid_MRR"] = res["valid"]["MRR"]
    if split is None and curve:
        split = "valid (best so far)"
        row["MRR"] = max(m for _, m in curve)
    row["split"] = split or "-"
    row["curve"] = curve
    return row


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else ("-" if v is None else str(v))


def build_tables(rows: list[dict]) -> tuple[str, str]:
    """Markdown and CSV of all runs, sorted by dataset, model, sampler, method."""
    cols = ["dataset", "model", "loss", "sampler", "method", "steps", "split", *METRICS, "valid_MRR", "run"]
    rows = sorted(rows, key=lambda r: (r["dataset"], r["model"], r["sampler"], r["method"], r["run"]))
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        md.append("| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    # baseline vs EMU side by side
    emu = {(r["dataset"], r["model"], r["loss"], r["sampler"]): r for r in rows if r["method"] == "EMU"}
    side = []  # every baseline next to the EMU run of the same dataset, model, loss and sampler (-adv baselines too)
    for b in rows:
        e = emu.get((b["dataset"], b["model"], b["loss"], b["sampler"].replace("-adv", "")))
        if b["method"] == "baseline" and e is not None:
            side.append((b, e))
    if side:
        md += ["", "Baseline vs EMU (same dataset, model, loss and sampler; MRR on valid and on test):", "",
               "| dataset | model | loss | baseline sampler | steps | baseline valid | EMU valid | Δ valid "
               "| baseline test | EMU test | Δ test |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for b, e in side:
            cells = []
            for key in ("valid_MRR", "MRR"):
                x, y = b.get(key), e.get(key)
                delta = f"{y - x:+.4f}" if isinstance(x, float) and isinstance(y, float) else "-"
                cells += [_fmt(x), _fmt(y), delta]
            steps = b.get("steps") if b.get("steps") == e.get("steps") else f"{b.get('steps')} / {e.get('steps')}"
            md.append(f"| {b['dataset']} | {b['model']} | {b['loss']} | {b['sampler']} | {steps} | " + " | ".join(cells) + " |")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([r.get(c, "") for c in cols])
    return "\n".join(md) + "\n", buf.getvalue()


def plot_curves(rows: list[dict], path: Path) -> bool:
    """PNG of validation MRR over steps, one line per run (a colour per model and sampler; EMU solid, baselines
    dashed, self-adversarial baselines dotted); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {}  # one colour per model and sampler; EMU solid, baselines dashed
    for r in rows:
        if r["curve"]:
            steps, mrr = zip(*r["curve"])
            key = (r["model"], r["sampler"].replace("-adv", ""))
            colour = colours.setdefault(key, f"C{len(colours) % 10}")
            style = "-" if r["method"] == "EMU" else (":" if r["sampler"].endswith("-adv") else "--")
            ax.plot(steps, mrr, style, color=colour, marker=".", markersize=3,
                    label=f"{r['model']} {r['method']} {r['sampler']} ({r['dataset']})")
    ax.set_xlabel("step")
    ax.set_ylabel("validation MRR")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return True


OUT_FLAG = {"out_dir": "--out"}  # write_report's out_dir is emukg report's --out


def _write_error(path: Path, exc: OSError) -> ParamError:
    return ParamError("out_dir", str(path), f"cannot write ({os_reason(exc)}); make it writable or pass another "
                      "{out_dir} folder.", flags=OUT_FLAG)


def write_report(run_dirs: list[str], out_dir: str | os.PathLike, plots: bool = True) -> dict:
    """Write results.md, results.csv and (with ``plots``) one PNG per dataset into ``out_dir``.

    ``out_dir`` is checked first (a file, under a file, or not writable → :class:`ParamError` about ``out_dir``,
    ``--out`` on the command line), so nothing is read or computed in vain.
    """
    out = Path(out_dir)
    check_writable_dir(out, "out_dir", flags=OUT_FLAG)
    rows = [read_run(d) for d in run_dirs]
    md, csv_text = build_tables(rows)
    try:
        atomic_write_text(out / "results.md", md)
        atomic_write_text(out / "results.csv", csv_text)
    except OSError as exc:
        raise _write_error(out, exc) from None
    written = {"markdown": str(out / "results.md"), "csv": str(out / "results.csv")}
    if plots:
        datasets = sorted({r["dataset"] for r in rows})
        for d in datasets:
            p = out / f"valid_mrr_{d}.png"
            try:
                drawn = plot_curves([r for r in rows if r["dataset"] == d], p)
            except OSError as exc:
                raise _write_error(p, exc) from None
            if drawn:
                written[f"plot_{d}"] = str(p)
    return {"rows": rows, "markdown_text": md, "files": written}
