"""Results report over run folders: Markdown and CSV tables, and PNG plots of validation MRR over steps.

A replacement for the reference's ``analyse_result.py``.  For each run folder it reads ``config.json``,
``results.json`` (final metrics of the best model) and ``metrics.jsonl`` (the validation curve).  Rows are
grouped by dataset, model and sampler, with baseline and EMU side by side.

Runs that differ only by their seed (``emukg train --seeds``, or separate runs whose settings agree but for
``seed`` and the folders) form one group: the report adds a table of each group's mean ± sample standard deviation
(n − 1 in the denominator) per metric over its n runs, as a paper's table needs, and the plot draws a group as its
mean validation curve with a band of ± one standard deviation (over the steps every run of the group reached).
A folder written by ``emukg train --seeds`` (``seeds.json``) stands for all its runs.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from .config import Config
from .errors import EmukgError, ParamError
from .io_utils import atomic_write_bytes, atomic_write_text, check_writable_dir, os_reason
from .run_folder import CONFIG, RunFolder

METRICS = ("MRR", "HITS@1", "HITS@3", "HITS@10")
# settings that do not make two runs different experiments: the seed, the folders, and how the run was watched
NOT_THE_EXPERIMENT = ("seed", "seeds", "save_path", "init_checkpoint", "dataset", "progress", "threads", "tracker",
                      "tracking_uri", "test_log_steps", "test_batch_size", "device")


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
    row = {"run": str(run_dir), **describe(cfg, name), "seed": cfg.seed}
    same = {k: v for k, v in cfg.to_dict().items() if k not in NOT_THE_EXPERIMENT}
    data = record.get("sha256") if isinstance(record, dict) and record.get("sha256") else row["dataset"]
    row["group"] = json.dumps({"data": data, **same}, sort_keys=True, default=str)  # runs that differ only by seed
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


def expand_runs(run_dirs) -> list[str]:
    """The run folders to report: a folder of ``emukg train --seeds`` (its ``seeds.json``) stands for its runs."""
    from .multirun import is_multirun, run_folders

    out = []
    for d in run_dirs:
        out += [str(p) for p in run_folders(d)] if is_multirun(d) else [str(d)]
    return out


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """The mean and the sample standard deviation (n − 1 in the denominator; None for one value)."""
    n = len(values)
    mean = math.fsum(values) / n
    if n < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))


def seed_groups(rows: list[dict]) -> list[dict]:
    """The runs grouped by everything but their seed: per group its description, n, the seeds, and for each of
    :data:`METRICS` and ``valid_MRR`` the mean and sample std over the runs that have it (``{key}_mean``,
    ``{key}_std``, ``{key}_n``); sorted as the runs' table."""
    groups: dict[str, list[dict]] = {}
    for r in rows:
        groups.setdefault(r["group"], []).append(r)
    out = []
    for members in groups.values():
        members = sorted(members, key=lambda r: r["seed"])
        first = members[0]
        g = {k: first[k] for k in ("dataset", "model", "loss", "sampler", "method")}
        steps = sorted({m.get("steps") for m in members}, key=str)
        g.update(n=len(members), seeds=[m["seed"] for m in members], steps=steps[0] if len(steps) == 1 else "/".join(map(str, steps)),
                 runs=[m["run"] for m in members], curves=[m["curve"] for m in members])
        for key in (*METRICS, "valid_MRR"):
            values = [float(m[key]) for m in members if isinstance(m.get(key), (int, float))]
            if values:
                g[f"{key}_mean"], g[f"{key}_std"] = mean_std(values)
                g[f"{key}_n"] = len(values)
        out.append(g)
    return sorted(out, key=lambda g: (g["dataset"], g["model"], g["sampler"], g["method"], g["runs"][0]))


def _pm(g: dict, key: str) -> str:
    if f"{key}_mean" not in g:
        return "-"
    std = g[f"{key}_std"]
    return f"{g[f'{key}_mean']:.4f}" + (f" ± {std:.4f}" if std is not None else "")


def seed_table(groups: list[dict]) -> tuple[str, str]:
    """Markdown (mean ± std) and CSV (mean, std columns) of the seed groups with at least two runs."""
    groups = [g for g in groups if g["n"] >= 2]
    if not groups:
        return "", ""
    keys = (*METRICS, "valid_MRR")
    head = ["dataset", "model", "loss", "sampler", "method", "steps", "n", "seeds", *keys]
    md = ["", "Runs that differ only by seed (mean ± sample standard deviation over n runs):", "",
          "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for g in groups:
        cells = [g["dataset"], g["model"], g["loss"], g["sampler"], g["method"], str(g["steps"]), str(g["n"]),
                 " ".join(map(str, g["seeds"])), *(_pm(g, k) for k in keys)]
        md.append("| " + " | ".join(cells) + " |")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["dataset", "model", "loss", "sampler", "method", "steps", "n", "seeds",
                *(f"{k}_{s}" for k in keys for s in ("mean", "std")), "runs"])
    for g in groups:
        w.writerow([g["dataset"], g["model"], g["loss"], g["sampler"], g["method"], g["steps"], g["n"],
                    " ".join(map(str, g["seeds"])), *(g.get(f"{k}_{s}", "") for k in keys for s in ("mean", "std")),
                    " ".join(g["runs"])])
    return "\n".join(md) + "\n", buf.getvalue()


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
    """PNG of validation MRR over steps, one line per run, or per group of runs that differ only by seed (its mean,
    with a band of ± one sample std) (a colour per model and sampler; EMU solid, baselines dashed, self-adversarial
    baselines dotted); False if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(8, 5))
    colours = {}  # one colour per model and sampler; EMU solid, baselines dashed
    for g in seed_groups(rows):  # a group of seeds: its mean curve and a band of ± one sample std
        curves = [dict(c) for c in g["curves"] if c]
        if not curves:
            continue
        common = sorted(set.intersection(*(set(c) for c in curves)))  # the steps every run of the group reached
        if len(curves) > 1 and common:
            stats = [mean_std([c[s] for c in curves]) for s in common]
            steps, mrr = common, [m for m, _ in stats]
            band = [sd for _, sd in stats]
        else:
            steps, mrr = zip(*g["curves"][0]) if g["curves"][0] else ((), ())
            band = None
        key = (g["model"], g["sampler"].replace("-adv", ""))
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        style = "-" if g["method"] == "EMU" else (":" if g["sampler"].endswith("-adv") else "--")
        seeds = f", mean ± std of {len(curves)} seeds" if band else ""
        ax.plot(steps, mrr, style, color=colour, marker=".", markersize=3,
                label=f"{g['model']} {g['method']} {g['sampler']} ({g['dataset']}{seeds})")
        if band:
            ax.fill_between(steps, [m - b for m, b in zip(mrr, band)], [m + b for m, b in zip(mrr, band)],
                            color=colour, alpha=0.2, linewidth=0)
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
    """Write results.md, results.csv, results_by_seed.csv (when some runs differ only by seed) and (with ``plots``)
    one PNG per dataset into ``out_dir``.

    ``out_dir`` is checked first (a file, under a file, or not writable → :class:`ParamError` about ``out_dir``,
    ``--out`` on the command line), so nothing is read or computed in vain.
    """
    out = Path(out_dir)
    check_writable_dir(out, "out_dir", flags=OUT_FLAG)
    rows = [read_run(d) for d in expand_runs(run_dirs)]
    md, csv_text = build_tables(rows)
    seed_md, seed_csv = seed_table(seed_groups(rows))
    md += seed_md
    try:
        atomic_write_text(out / "results.md", md)
        atomic_write_text(out / "results.csv", csv_text)
        if seed_csv:
            atomic_write_text(out / "results_by_seed.csv", seed_csv)
    except OSError as exc:
        raise _write_error(out, exc) from None
    written = {"markdown": str(out / "results.md"), "csv": str(out / "results.csv")}
    if seed_csv:
        written["csv_by_seed"] = str(out / "results_by_seed.csv")
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
