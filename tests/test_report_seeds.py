"""emukg report groups the runs that differ only by seed and prints mean ± sample std per metric (hand-made run
folders with known numbers; a folder of emukg train --seeds stands for its runs)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from emukg.cli import main
from emukg.config import Config
from emukg.reporting import mean_std, seed_groups, read_run, write_report


def make_run(folder: Path, seed: int, mrr: float, curve: dict[int, float], **settings) -> Path:
    folder.mkdir(parents=True)
    cfg = Config(**{"dataset": "/data/toy", "model": "TransE", "loss": "ce", "sampler": "uniform", "max_steps": 100,
                    "seed": seed, "save_path": str(folder), **settings})
    cfg.validate()
    (folder / "config.json").write_text(json.dumps({**cfg.to_dict(), "dataset_record": {"name": "toy", "sha256": {"train.txt": "ab"}}}))
    test = {"MRR": mrr, "HITS@1": mrr / 2, "HITS@3": mrr, "HITS@10": 2 * mrr, "MR": 10.0}
    (folder / "results.json").write_text(json.dumps({"step": 100, "test": test, "valid": {**test, "MRR": max(curve.values())}}))
    (folder / "metrics.jsonl").write_text("".join(json.dumps({"split": "valid", "step": s, "MRR": m}) + "\n" for s, m in curve.items()))
    return folder


def test_mean_std_by_hand():
    assert mean_std([0.2, 0.3, 0.4]) == pytest.approx((0.3, 0.1))
    assert mean_std([0.5]) == (0.5, None)


def test_groups_and_table(tmp_path, capsys):
    runs = [make_run(tmp_path / f"emu{k}", k, m, {0: 0.1, 50: m, 100: m + 0.01}, emu=0.5, neg_label=0.5)
            for k, m in ((0, 0.2), (1, 0.3), (2, 0.4))]
    # the same settings but another learning rate: another experiment, not another seed
    other = make_run(tmp_path / "lr", 0, 0.9, {0: 0.1, 100: 0.9}, emu=0.5, neg_label=0.5, learning_rate=0.5)
    base = [make_run(tmp_path / f"base{k}", k, m, {0: 0.1, 100: m}, threads=k + 1) for k, m in ((3, 0.1), (4, 0.2))]
    groups = seed_groups([read_run(r) for r in [*runs, other, *base]])
    by = {(g["method"], g["n"]): g for g in groups}
    assert sorted(by) == [("EMU", 1), ("EMU", 3), ("baseline", 2)]  # threads do not make another experiment
    g = by[("EMU", 3)]
    assert g["seeds"] == [0, 1, 2] and g["MRR_mean"] == pytest.approx(0.3) and g["MRR_std"] == pytest.approx(0.1)
    assert g["HITS@10_mean"] == pytest.approx(0.6) and g["HITS@10_std"] == pytest.approx(0.2)
    assert g["valid_MRR_mean"] == pytest.approx(0.31)
    b = by[("baseline", 2)]
    assert b["MRR_mean"] == pytest.approx(0.15) and b["MRR_std"] == pytest.approx(0.0707107, abs=1e-6)

    assert main(["report", *map(str, [*runs, other, *base]), "--out", str(tmp_path / "rep")]) == 0
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "Runs that differ only by seed" in md
    line = next(ln for ln in md.splitlines() if "| 0 1 2 |" in ln)
    assert "| 3 | 0 1 2 | 0.3000 ± 0.1000 | 0.1500 ± 0.0500 | 0.3000 ± 0.1000 | 0.6000 ± 0.2000 | 0.3100 ± 0.1000 |" in line
    assert "0.9000" not in line  # the other learning rate stays out of the group
    rows = {r["seeds"]: r for r in csv.DictReader(open(tmp_path / "rep" / "results_by_seed.csv"))}
    assert set(rows) == {"0 1 2", "3 4"} and float(rows["3 4"]["MRR_mean"]) == pytest.approx(0.15)
    png = tmp_path / "rep" / "valid_mrr_toy.png"
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"
    assert "0.3000 ± 0.1000" in capsys.readouterr().out


def test_a_seeds_folder_stands_for_its_runs(tmp_path):
    parent = tmp_path / "runs"
    for k, m in ((0, 0.2), (1, 0.4)):
        make_run(parent / f"seed{k}", k, m, {0: 0.1, 100: m})
    (parent / "seeds.json").write_text(json.dumps({"seeds": [0, 1], "config": Config(dataset="/data/toy").to_dict()}))
    res = write_report([str(parent)], tmp_path / "rep", plots=False)
    assert len(res["rows"]) == 2 and "| 0.3000 ± 0.1414 |" in res["markdown_text"]
