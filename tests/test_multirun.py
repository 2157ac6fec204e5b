"""emukg train --seeds: K runs in one process equal K single-seed runs bit for bit (parameters, losses, metrics),
each in its own folder; a kill -9 mid-run + --resume gives the uninterrupted result; refusals write nothing."""

from __future__ import annotations

import json
import os
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
from emukg.multirun import SEEDS_FILE, seed_folder, train_seeds
from emukg.training import train

from test_training import small_config, write_graph

REPO = Path(__file__).resolve().parents[1]
SEEDS = [0, 1, 2]


def losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if r["split"] == "training"]


def metrics(run: Path) -> list[dict]:
    """metrics.jsonl without the timing (steps/s differs between any two runs)."""
    return [untimed(r) for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())]


TIMING = ("seconds", "queries_per_s", "steps_per_s")


def untimed(obj):
    """Results without their timings (the only numbers that differ between two equal runs)."""
    if isinstance(obj, dict):
        return {k: untimed(v) for k, v in obj.items() if k not in TIMING}
    return obj


def assert_same_run(a: Path, b: Path) -> None:
    for name in ("entity_embedding.npy", "relation_embedding.npy", "best_entity_embedding.npy"):
        assert np.array_equal(np.load(a / name), np.load(b / name)), name
    sa, sb = (torch.load(r / "checkpoint", weights_only=True) for r in (a, b))
    assert sa["step"] == sb["step"]
    for key in sa["optimizer_state_dict"]["state"]:
        for name, value in sa["optimizer_state_dict"]["state"][key].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(sb["optimizer_state_dict"]["state"][key][name])), name
    assert torch.equal(sa["generator_state"], sb["generator_state"])
    assert metrics(a) == metrics(b)
    ra, rb = (untimed(json.loads((r / "results.json").read_text())) for r in (a, b))
    assert ra == rb and "MRR" in ra["test"]


@pytest.mark.parametrize("kw", [
    dict(ce_mode=2, emu=0.4, neg_label=0.5, ce_coef=0.2, log_steps=1),
    dict(ce_mode=0, adversarial=True, negative_sample_size=6, model="RotatE", double_entity_embedding=True),
    dict(ce_mode=2, sampler="sans", khop=2, num_random_walks=20, model="DistMult", optimizer="adam", log_steps=2),
])
def test_k_runs_equal_k_single_runs(tmp_path, kw):
    graph = write_graph(tmp_path / "g")
    multi = small_config(graph, tmp_path / "multi", max_steps=12, warm_up_steps=6, seeds=SEEDS, **kw)
    results = train_seeds(multi)
    assert sorted(results) == SEEDS
    manifest = json.loads((tmp_path / "multi" / SEEDS_FILE).read_text())
    assert manifest["seeds"] == SEEDS and manifest["config"]["seeds"] == SEEDS
    embs = []
    for k in SEEDS:
        alone = small_config(graph, tmp_path / f"alone{k}", max_steps=12, warm_up_steps=6, seed=k, **kw)
        assert untimed(train(alone)) == untimed(results[k])
        assert_same_run(seed_folder(tmp_path / "multi", k), tmp_path / f"alone{k}")
        # each run's config.json is that of the seed trained alone (but for its folder)
        ca, cb = (json.loads((r / "config.json").read_text()) for r in (seed_folder(tmp_path / "multi", k), tmp_path / f"alone{k}"))
        assert {**ca, "save_path": ""} == {**cb, "save_path": ""} and ca["seed"] == k and ca["seeds"] is None
        embs.append(np.load(tmp_path / f"alone{k}" / "entity_embedding.npy"))
    assert not np.array_equal(embs[0], embs[1])  # the seeds differ: their own generator streams


def test_one_run_entry_points_refuse_seeds(tmp_path):
    import emukg

    graph = write_graph(tmp_path / "g")
    cfg = small_config(graph, tmp_path / "x", seeds=[0, 1])
    with pytest.raises(EmukgError, match="seeds.*train_seeds"):
        train(cfg)
    with pytest.raises(EmukgError, match="seeds.*train_seeds"):
        emukg.train(config=cfg)
    assert not (tmp_path / "x").exists()


def test_resume_in_python_equals_uninterrupted(tmp_path):
    graph = write_graph(tmp_path / "g")
    common = dict(warm_up_steps=5, emu=0.5, neg_label=0.5, ce_mode=2)
    full = small_config(graph, tmp_path / "full", max_steps=12, seeds=[3, 4], **common)
    train_seeds(full)
    half = small_config(graph, tmp_path / "half", max_steps=6, seeds=[3, 4], **common)
    train_seeds(half)
    train_seeds(half.replace(max_steps=12, init_checkpoint=str(tmp_path / "half")))
    for k in (3, 4):
        a, b = seed_folder(tmp_path / "full", k), seed_folder(tmp_path / "half", k)
        for name in ("entity_embedding.npy", "relation_embedding.npy"):
            assert np.array_equal(np.load(a / name), np.load(b / name))
        assert untimed(json.loads((a / "results.json").read_text())) == untimed(json.loads((b / "results.json").read_text()))


def cli_args(graph, run, *extra):
    return ["train", "--dataset", graph, "--model", "TransE", "--hidden-dim", 8, "--gamma", 6, "--negative-sample-size", 8,
            "--batch-size", 16, "--loss", "ce", "--sampler", "uniform", "--emu", 0.5, "--neg-label", 0.5,
            "--learning-rate", 0.05, "--max-steps", 6, "--valid-steps", 3, "--log-steps", 3, "--save-checkpoint-steps", 3,
            "--device", "cpu", "--save-path", run, *extra]


def test_cli_seeds_refusals_and_resume(tmp_path, capsys):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "runs"
    assert main([str(a) for a in cli_args(graph, run, "--seeds", 0, 1)]) == 0
    out = capsys.readouterr().out
    assert "seed 0 test: MRR" in out and "seed 1 test: MRR" in out
    assert (run / "seed0" / "results.json").is_file() and (run / "seed1" / "results.json").is_file()
    before = sorted(p.name for p in run.rglob("*"))
    # refused, writing nothing: the folder holds runs; a repeated seed; --nproc with --seeds; another model on resume
    for argv, words in ((cli_args(graph, run, "--seeds", 0, 1), "--resume"),
                        (cli_args(graph, tmp_path / "x", "--seeds", 0, 0), "--seeds"),
                        (cli_args(graph, tmp_path / "x", "--seeds", 0, 1, "--nproc", 2)[0:1] + ["--nproc", "2", "--seeds", "0", "1",
                         "--dataset", str(graph), "--save-path", str(tmp_path / "x")], "--seeds"),
                        (["train", "--resume", run, "--model", "DistMult"], "--model"),
                        (["train", "--resume", run, "--seeds", 0, 2], "--seeds")):
        assert main([str(a) for a in argv]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in run.rglob("*")) == before and not (tmp_path / "x").exists()
    # resume with more steps: every run continues; the shared settings follow
    assert main(["train", "--resume", str(run), "--max-steps", "9"]) == 0
    for k in (0, 1):
        assert json.loads((run / f"seed{k}" / "results.json").read_text())["step"] == 9
    assert json.loads((run / SEEDS_FILE).read_text())["config"]["max_steps"] == 9
    # emukg report on the folder: its two runs, and their group's mean ± std
    capsys.readouterr()
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    md = (tmp_path / "rep" / "results.md").read_text()
    mrr = [json.loads((run / f"seed{k}" / "results.json").read_text())["test"]["MRR"] for k in (0, 1)]
    mean, std = sum(mrr) / 2, abs(mrr[0] - mrr[1]) / 2 ** 0.5
    assert f"| 9 | 2 | 0 1 | {mean:.4f} ± {std:.4f} |" in md, md
    # a single-run folder is not a place for --seeds
    single = tmp_path / "single"
    assert main([str(a) for a in cli_args(graph, single)]) == 0
    capsys.readouterr()
    assert main([str(a) for a in cli_args(graph, single, "--seeds", 0, "--overwrite")]) == 2
    assert "single run" in capsys.readouterr().err


KILL = ["--max-steps", "160", "--save-checkpoint-steps", "7", "--valid-steps", "40", "--log-steps", "1", "--threads", "1"]  # log every step: each logged loss is one step's


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_equals_uninterrupted(tmp_path):
    graph = write_graph(tmp_path / "g")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    whole, run = tmp_path / "whole", tmp_path / "killed"
    base = [sys.executable, "-m", "emukg"]
    seeds = ["--seeds", "0", "1", "2"]
    res = subprocess.run([*base, *map(str, cli_args(graph, whole)), *KILL, *seeds], capture_output=True, cwd=REPO, env=env, timeout=600)
    assert res.returncode == 0, res.stderr.decode()
    kills = 0
    for attempt in range(20):
        cmd = ([*base, *map(str, cli_args(graph, run)), *KILL, *seeds] if not (run / SEEDS_FILE).exists()
               else [*base, "train", "--resume", str(run)])
        err = open(tmp_path / f"stderr{attempt}.txt", "w+")  # a file, not a pipe: a full pipe would block the child
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=REPO, env=env)
        if kills < 3:
            # kill it once some run has written a checkpoint past the last resume point (mid-run, not at its start)
            t0, marks = time.time(), {k: _step(run / f"seed{k}") for k in range(3)}
            while proc.poll() is None and time.time() - t0 < 120:
                if any(_step(run / f"seed{k}") > marks[k] for k in range(3)):
                    break
                time.sleep(0.02)
            time.sleep(0.1 * kills)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        proc.wait(timeout=600)
        if proc.returncode == 0:
            break
        err.seek(0)
        assert proc.returncode == -signal.SIGKILL, err.read()
    assert kills == 3 and proc.returncode == 0
    for k in range(3):
        a, b = whole / f"seed{k}", run / f"seed{k}"
        for name in ("entity_embedding.npy", "relation_embedding.npy", "best_entity_embedding.npy"):
            assert np.array_equal(np.load(a / name), np.load(b / name)), (k, name)
        ra, rb = (untimed(json.loads((r / "results.json").read_text())) for r in (a, b))
        assert ra == rb
        assert [x for x in metrics(a) if x["split"] != "training"] == [x for x in metrics(b) if x["split"] != "training"]
        assert losses(a) == losses(b)


def _step(run: Path) -> int:
    try:
        return int(torch.load(run / "checkpoint", weights_only=True)["step"])
    except Exception:  # absent, or being replaced
        return -1


def test_reproduce_with_seeds_equals_each_seed_alone(tmp_path):
    if not os.environ.get("EMUKG_DATA_DIR") or not (Path(os.environ["EMUKG_DATA_DIR"]) / "FB15k-237").is_dir():
        pytest.skip("FB15k-237 not available; set EMUKG_DATA_DIR to ../shared/datasets")
    name = "emu-TransE-FB15k-237-uniform"
    common = ["--steps", "2", "--device", "cpu", "--no-progress"]
    assert main(["reproduce", name, *common, "--seeds", "0", "1", "--save-path", str(tmp_path / "multi")]) == 0
    assert main(["reproduce", name, *common, "--seed", "1", "--save-path", str(tmp_path / "alone")]) == 0
    a, b = tmp_path / "multi" / "seed1", tmp_path / "alone"
    assert np.array_equal(np.load(a / "entity_embedding.npy"), np.load(b / "entity_embedding.npy"))
    assert untimed(json.loads((a / "results.json").read_text())) == untimed(json.loads((b / "results.json").read_text()))
    assert (tmp_path / "multi" / "seed0" / "results.json").is_file()


def test_a_second_seeds_process_into_the_same_folder_is_refused(tmp_path):
    """The group's folder has one writer: a second --seeds process, while the first runs, is refused naming it and
    changes nothing of the first's runs."""
    from emukg.folder_lock import FolderLock
    from emukg.errors import ParamError

    graph = write_graph(tmp_path / "g")
    cfg = small_config(graph, tmp_path / "runs", seeds=[0, 1])
    (tmp_path / "runs").mkdir()
    holder = FolderLock(tmp_path / "runs").acquire()  # stands for a first --seeds process (in this one)
    try:
        code = subprocess.run([sys.executable, "-m", "emukg", *map(str, cli_args(graph, tmp_path / "runs", "--seeds", 0, 1))],
                              capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1],
                              env=dict(os.environ, OMP_NUM_THREADS="1"), timeout=300)
        assert code.returncode == 2 and f"pid {os.getpid()}" in code.stderr, code.stderr
        assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["writer.lock"]
        with pytest.raises(ParamError, match="this process is already writing"):
            train_seeds(cfg)
    finally:
        holder.release()
    train_seeds(cfg)
    assert not (tmp_path / "runs" / "writer.lock").exists() and (tmp_path / "runs" / SEEDS_FILE).is_file()
