"""The run folder tells the truth and nothing is lost (issue 10 §3, §6): resume refuses what shapes the model and
records the overrides it applies, --overwrite resets every output, a refused run writes nothing, the NaN stop
names the checkpoint that exists, no progress bar off a terminal, and kill -9 at random moments + resume gives the
same embeddings bit for bit with no temp files left."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from emukg.cli import main
from emukg.errors import EmukgError
from emukg.training import Trainer

from test_training import small_config, write_graph

REPO = Path(__file__).resolve().parents[1]


def cli(*argv) -> int:
    return main([str(a) for a in argv])


def train_args(graph, run, *extra):
    return ["train", "--dataset", graph, "--model", "TransE", "--hidden-dim", 8, "--gamma", 6, "--negative-sample-size", 8,
            "--batch-size", 32, "--loss", "ce", "--sampler", "uniform", "--learning-rate", 0.05, "--max-steps", 6,
            "--valid-steps", 3, "--log-steps", 3, "--save-checkpoint-steps", 3, "--device", "cpu", "--save-path", run, *extra]


def tree(path: Path) -> dict:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))} if path.exists() else {}


def test_resume_refuses_what_shapes_the_model_and_records_overrides(tmp_path, capsys):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    assert cli(*train_args(graph, run)) == 0
    capsys.readouterr()
    before = tree(run)
    for flag, value in (("--model", "DistMult"), ("--hidden-dim", "16"), ("--negative-sample-size", "4"), ("--seed", "5"),
                        ("--loss", "sigmoid"), ("--dataset", str(write_graph(tmp_path / "other", seed=1)))):
        assert cli("train", "--resume", run, flag, value) == 2
        err = capsys.readouterr().err
        assert flag in err and "new run" in err and len(err.strip().splitlines()) == 1, err
    assert tree(run) == before  # refused: nothing written
    # documented overrides: more steps, another learning rate (applied from the resume on) — recorded
    assert cli("train", "--resume", run, "--max-steps", 8, "--learning-rate", 0.5) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["max_steps"] == 8 and cfg["learning_rate"] == 0.5
    assert cfg["resumes"][-1]["step"] == 6
    assert cfg["resumes"][-1]["changes"] == {"learning_rate": [0.05, 0.5], "max_steps": [6, 8]}
    state = torch.load(run / "checkpoint", weights_only=True)
    assert state["step"] == 8 and state["current_learning_rate"] == 0.5  # the next schedule switch is at 9
    assert state["optimizer_state_dict"]["param_groups"][0]["lr"] == 0.5


def test_config_json_records_the_dataset_and_the_samplers(tmp_path):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    assert cli(*train_args(graph, run, "--loss", "sigmoid", "--sampler", "filtered", "--adversarial")) == 0
    cfg = json.loads((run / "config.json").read_text())
    rec = cfg["dataset_record"]
    assert Path(rec["path"]).is_absolute() and Path(rec["path"]) == graph.resolve()
    assert set(rec["sha256"]) >= {"train.txt", "valid.txt", "test.txt"}
    assert cfg["negatives"] == {"loss": "uniform minus training triples", "adversarial": "uniform minus training triples"}
    assert cfg["sampler"] == "filtered" and cfg["adversarial_sampler"] is None


def test_overwrite_resets_every_output(tmp_path):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    assert cli(*train_args(graph, run)) == 0
    (run / "notes.txt").write_text("mine")
    assert cli(*train_args(graph, run, "--overwrite", "--no-do-valid", "--no-do-test")) == 0
    names = {p.name for p in run.iterdir()}
    assert "results.json" not in names and not any(n.startswith("best_") for n in names)
    assert "notes.txt" in names  # not emukg's to delete
    assert all(json.loads(x)["split"] == "training" for x in (run / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("extra", [["--learning-rate", "nan"], ["--gamma", "nan"], ["--model", "Nope"],
                                   ["--neg-label", "2", "--emu", "0.3"], ["--threads", "0"]])
def test_a_refused_run_writes_nothing(tmp_path, capsys, extra):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "deep" / "run"
    assert cli(*train_args(graph, run, *extra)) == 2
    assert not (tmp_path / "deep").exists()
    err = capsys.readouterr().err
    assert extra[0] in err and "Traceback" not in err


def _poisoned_trainer(cfg, at_step):
    trainer = Trainer(cfg)
    real = trainer.objective

    def poisoned(model, positives, side, generator, weights):
        loss, logs = real(model, positives, side, generator, weights)
        return (loss * float("nan") if trainer.step == at_step else loss), logs

    trainer.objective = poisoned
    return trainer


def test_nan_stop_names_the_checkpoint_that_exists(tmp_path):
    graph = write_graph(tmp_path / "g")
    cfg = small_config(graph, tmp_path / "run", max_steps=50, save_checkpoint_steps=1000, do_valid=False)
    with pytest.raises(EmukgError) as exc:
        _poisoned_trainer(cfg, 3).fit()
    msg = str(exc.value)
    assert "no checkpoint was saved yet" in msg and "intact" not in msg
    cfg = small_config(graph, tmp_path / "run2", max_steps=50, save_checkpoint_steps=2, do_valid=False)
    with pytest.raises(EmukgError) as exc:
        _poisoned_trainer(cfg, 5).fit()
    assert torch.load(tmp_path / "run2" / "checkpoint", weights_only=True)["step"] == 4
    assert "the checkpoint of step 4 in" in str(exc.value)


def test_no_progress_bar_when_stderr_is_not_a_terminal(tmp_path):
    graph = write_graph(tmp_path / "g")
    res = subprocess.run([sys.executable, "-m", "emukg", *map(str, train_args(graph, tmp_path / "run"))],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "step/s" not in res.stderr and "\r" not in res.stderr  # tqdm redraws nothing into a log


KILL_ARGS = ["--max-steps", "1500", "--save-checkpoint-steps", "7", "--valid-steps", "40", "--log-steps", "20",
             "--batch-size", "16", "--threads", "1"]


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_is_bit_identical(tmp_path):
    graph = write_graph(tmp_path / "g")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole = tmp_path / "whole"
    args = [sys.executable, "-m", "emukg", *map(str, train_args(graph, whole)), *KILL_ARGS]
    assert subprocess.run(args, capture_output=True, cwd=REPO, env=env, timeout=300).returncode == 0

    run = tmp_path / "killed"
    rng = random.Random(7)
    first = [sys.executable, "-m", "emukg", *map(str, train_args(graph, run)), *KILL_ARGS]
    kills = 0
    for attempt in range(40):
        cmd = first if not (run / "config.json").exists() else [sys.executable, "-m", "emukg", "train", "--resume", str(run)]
        log = run / "train.log"
        logged = log.stat().st_size if log.exists() else 0
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=REPO, env=env)
        if kills < 10:
            # wait until this process trains (it adds to the log: past the imports and the set-up), then kill it a
            # random moment later, while it steps, validates or saves
            t0 = time.time()
            while proc.poll() is None and not (log.exists() and log.stat().st_size > logged) and time.time() - t0 < 120:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.0, 0.3))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()
    assert kills == 10 and proc.returncode == 0
    for name in ("entity_embedding.npy", "relation_embedding.npy", "best_entity_embedding.npy"):
        assert np.array_equal(np.load(whole / name), np.load(run / name)), name
    a, b = (json.loads((r / "results.json").read_text())["test"] for r in (whole, run))
    assert {k: a[k] for k in ("MRR", "MR", "HITS@1", "HITS@10")} == {k: b[k] for k in ("MRR", "MR", "HITS@1", "HITS@10")}
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]


def test_resume_from_another_folder_with_a_relative_dataset_path(tmp_path, monkeypatch):
    """A run trained on --dataset ../g resumes from anywhere: the data is found by its recorded absolute path and
    guarded by its checksums (the dataset string is not compared)."""
    write_graph(tmp_path / "g")
    (tmp_path / "a").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    assert cli(*train_args("../g", "../run")) == 0
    monkeypatch.chdir(tmp_path)
    assert cli("train", "--resume", "run", "--max-steps", 8) == 0
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert Path(cfg["dataset"]) == (tmp_path / "g").resolve() and cfg["resumes"][-1]["changes"] == {"max_steps": [6, 8]}
    # other data under the same name is refused by its checksums
    (tmp_path / "g" / "train.txt").write_text((tmp_path / "g" / "train.txt").read_text()[:-40] + "\n")
    assert cli("train", "--resume", "run", "--max-steps", 10) == 2
