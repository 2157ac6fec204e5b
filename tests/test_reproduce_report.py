"""Named paper runs (emukg reproduce) and the results report (emukg report)."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from emukg.errors import EmukgError
from emukg.paper import experiment_config, experiments
from emukg.training import train

from test_training import small_config, write_graph

REPO = Path(__file__).resolve().parents[1]


def cli(*args):
    return subprocess.run([sys.executable, "-m", "emukg", *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_every_paper_run_is_named():
    table = experiments()
    # experiments_EMU.sh: 4 models x 2 datasets x {CE1, CE2}; experiments_base.sh: 4 x 2 x {CE1, CE2, CE2 -adv}
    assert len([n for n in table if n.startswith("emu-")]) == 16
    assert len([n for n in table if n.startswith("base-")]) == 24
    cfg = experiment_config("emu-TransE-FB15k-237-uniform")
    assert (cfg.model, cfg.loss, cfg.sampler, cfg.emu, cfg.neg_label, cfg.ce_coef) == ("TransE", "ce", "uniform", 0.39, 0.53, 0.11)
    assert (cfg.walk_mode, cfg.reference_steps) == ("chained", True)  # the reference mode
    assert (cfg.hidden_dim, cfg.batch_size, cfg.negative_sample_size, cfg.gamma, cfg.learning_rate) == (100, 1000, 256, 24.0, 0.05)
    assert (cfg.khop, cfg.num_random_walks, cfg.valid_steps, cfg.log_steps, cfg.max_steps) == (3, 1000, 500, 250, 100000)
    assert cfg.regularization == 0.0
    base = experiment_config("base-ComplEx-wn18rr-sans-adv")
    assert base.loss == "ce" and base.sampler == "sans" and base.adversarial and base.regularization == 1e-5
    assert base.samplers_used() == {"loss": "sans", "adversarial": "sans"}
    assert base.double_entity_embedding and base.double_relation_embedding and base.emu is None
    assert experiment_config("base-RotatE-FB15k-237-uniform").regularization == 1e-3
    with pytest.raises(EmukgError, match="Did you mean"):
        experiment_config("emu-TransE-FB15k237-uniform")
    hake = experiment_config("hake-FB15k-237")
    assert (hake.model, hake.hidden_dim, hake.gamma, hake.batch_size, hake.negative_sample_size) == ("HAKE", 1000, 9.0, 1024, 256)
    assert (hake.modulus_weight, hake.phase_weight, hake.learning_rate, hake.max_steps) == (3.5, 1.0, 5e-5, 100000)
    assert hake.adversarial and hake.adversarial_temperature == 1.0 and hake.loss == "sigmoid"
    wn = experiment_config("hake-WN18RR")
    assert (wn.dataset, wn.hidden_dim, wn.gamma, wn.batch_size, wn.negative_sample_size) == ("wn18rr", 500, 6.0, 512, 1024)
    assert (wn.modulus_weight, wn.phase_weight, wn.adversarial_temperature, wn.max_steps) == (0.5, 0.5, 0.5, 80000)


def test_reproduce_cli_list_and_show():
    res = cli("reproduce", "--list")
    assert res.returncode == 0 and len(res.stdout.strip().splitlines()) == 46  # the paper's 40 + 2 HAKE + 4 NBFNet runs
    res = cli("reproduce", "emu-RotatE-wn18rr-sans", "--show", "--steps", "1000")
    assert res.returncode == 0, res.stderr
    shown = yaml.safe_load(res.stdout)
    assert shown["max_steps"] == 1000 and shown["double_entity_embedding"] and shown["sampler"] == "sans"
    assert shown["warm_up_steps"] == 50000  # a shortened run is a prefix of the paper's schedule
    res = cli("reproduce", "no-such-run")
    assert res.returncode == 2 and "emukg reproduce --list" in res.stderr


def test_reproduce_runs_a_short_paper_config(tmp_path):
    if not os.environ.get("EMUKG_DATA_DIR") or not (Path(os.environ["EMUKG_DATA_DIR"]) / "FB15k-237").is_dir():
        pytest.skip("FB15k-237 not available; set EMUKG_DATA_DIR to ../shared/datasets")
    res = cli("reproduce", "emu-DistMult-FB15k-237-uniform", "--steps", "2", "--device", "cpu",
              "--save-path", str(tmp_path / "run"), "--no-progress")
    assert res.returncode == 0, res.stderr
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["step"] == 2 and 0 < results["test"]["MRR"] < 1


def test_report_tables_and_plot(tmp_path):
    graph = write_graph(tmp_path / "g")
    runs = []
    for name, kw in [("base", {}), ("emu", dict(emu=0.5, neg_label=0.5))]:
        cfg = small_config(graph, tmp_path / name, max_steps=6, valid_steps=2, **kw)
        train(cfg)
        runs.append(str(tmp_path / name))
    res = cli("report", *runs, "--out", str(tmp_path / "rep"))
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "rep" / "results.md").read_text()
    assert "Baseline vs EMU" in md and "| EMU |" in md and "| baseline |" in md
    rows = list(csv.DictReader(open(tmp_path / "rep" / "results.csv")))
    assert {r["method"] for r in rows} == {"baseline", "EMU"}
    for r in rows:
        res_json = json.loads((Path(r["run"]) / "results.json").read_text())
        assert abs(float(r["MRR"]) - res_json["test"]["MRR"]) < 1e-9
    by = {r["method"]: json.loads((Path(r["run"]) / "results.json").read_text()) for r in rows}
    delta = by["EMU"]["test"]["MRR"] - by["baseline"]["test"]["MRR"]
    pair = [ln for ln in md.splitlines() if ln.startswith(f"| {graph.name} | TransE | CE | uniform | 6 |")]
    assert len(pair) == 1 and pair[0].rstrip(" |").endswith(f"{delta:+.4f}")
    png = tmp_path / "rep" / f"valid_mrr_{graph.name}.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cli("report", str(tmp_path / "nothing"))
    assert bad.returncode == 2 and "not a run folder" in bad.stderr
