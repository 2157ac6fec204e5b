"""Trainer: end-to-end runs, run-folder outputs, resume equivalence, determinism, bad flags, NaN stop."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emukg.config import Config
from emukg.errors import EmukgError
from emukg.training import Trainer, train

REPO = Path(__file__).resolve().parents[1]
OUTPUTS = ["config.json", "checkpoint", "entity_embedding.npy", "relation_embedding.npy", "best_model",
           "best_entity_embedding.npy", "best_relation_embedding.npy", "train.log", "metrics.jsonl"]


def write_graph(folder: Path, n_ent=30, n_rel=4, n_train=300, seed=0) -> Path:
    """A small random graph in the reference layout (structured: tail = (head * (r+2) + r) % n_ent, plus noise)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    ents = [f"e{i}" for i in range(n_ent)]
    rels = [f"r{i}" for i in range(n_rel)]
    triples = set()
    while len(triples) < n_train + 40:
        h, r = rng.randrange(n_ent), rng.randrange(n_rel)
        t = (h * (r + 2) + r) % n_ent if rng.random() < 0.8 else rng.randrange(n_ent)
        triples.add((h, r, t))
    triples = sorted(triples)
    rng.shuffle(triples)
    splits = {"train": triples[:n_train], "valid": triples[n_train:n_train + 20], "test": triples[n_train + 20:]}
    (folder / "entities.dict").write_text("".join(f"{i}\t{e}\n" for i, e in enumerate(ents)))
    (folder / "relations.dict").write_text("".join(f"{i}\t{r}\n" for i, r in enumerate(rels)))
    for name, rows in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"{ents[h]}\t{rels[r]}\t{ents[t]}\n" for h, r, t in rows))
    return folder


@pytest.fixture
def graph(tmp_path):
    return write_graph(tmp_path / "g")


def small_config(graph: Path, save: Path, **kw) -> Config:
    base = dict(dataset=str(graph), model="TransE", hidden_dim=8, gamma=6.0, negative_sample_size=8, batch_size=32,
                ce_mode=1, learning_rate=0.05, max_steps=10, valid_steps=5, log_steps=5, save_checkpoint_steps=5,
                save_path=str(save), device="cpu", progress=False, seed=3)
    base.update(kw)
    return Config.from_dict(base)


def run_cli(*args, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def test_seed_readme_command_writes_every_output(graph, tmp_path):
    """The seed README's command (fewer steps, small dataset, no --cuda) runs end to end through codes/run.py."""
    save = tmp_path / "models" / "TransE_small_0"
    res = run_cli("-u", "codes/run.py", "--do_train", "--do_valid", "--data_path", str(graph), "--model", "TransE",
                  "-n", "16", "-b", "64", "-d", "16", "-g", "24.0", "-a", "1.0", "-lr", "0.001", "--max_steps", "20",
                  "-save", str(save), "--test_batch_size", "16", "-khop", "3", "-nrw", "1000",
                  "-if_CE", "1", "-if_Mutup", "0.3", "-neg_label", "0.5", "-CE_coef", "0.1", "--valid_steps", "10",
                  "--no_progress")
    assert res.returncode == 0, res.stderr
    for name in OUTPUTS:
        assert (save / name).is_file(), name
    cfg = json.loads((save / "config.json").read_text())
    assert cfg["emu"] == 0.3 and cfg["neg_label"] == 0.5 and cfg["ce_coef"] == 0.1
    assert (cfg["loss"], cfg["sampler"], cfg["walk_mode"], cfg["reference_steps"]) == ("ce", "uniform", "chained", True)
    # -if_CE 1 draws fresh uniform negatives: the README's -khop/-nrw are not used, and config.json says so
    assert cfg["negatives"] == {"loss": "uniform, unfiltered, drawn afresh every pass", "adversarial": None}
    log = (save / "train.log").read_text()
    # the reference's loop: validation after steps 1 and 11 (indices 0 and 10), none of the initial or final model;
    # the best model's final evaluation is labelled with the last index, 19
    assert "Valid MRR at step 0:" in log and "Valid MRR at step 10:" in log and "Valid MRR at step 19:" in log
    assert "Valid MRR at step 20:" not in log and "Training average loss at step 0:" in log
    emb = np.load(save / "entity_embedding.npy")
    assert emb.shape == (30, 16) and np.isfinite(emb).all()
    lines = [json.loads(x) for x in (save / "metrics.jsonl").read_text().splitlines()]
    assert {x["split"] for x in lines} >= {"training", "valid"}
    state = torch.load(save / "checkpoint", weights_only=True)
    assert state["step"] == 20 and "optimizer_state_dict" in state


@pytest.mark.parametrize("kw", [
    dict(ce_mode=2, emu=0.4, neg_label=0.5, ce_coef=0.2),
    dict(ce_mode=0, adversarial=True, negative_sample_size=6),
    dict(ce_mode=1, optimizer="adam"),
])
def test_resume_equals_uninterrupted(graph, tmp_path, kw):
    """N steps + resume + N steps == 2N steps (same seed, CPU), across the Adagrad->Adam switch."""
    common = dict(warm_up_steps=5, do_valid=False, do_test=False, **kw)
    full = small_config(graph, tmp_path / "full", max_steps=12, **common)
    train(full)
    half = small_config(graph, tmp_path / "half", max_steps=6, **common)
    train(half)
    resumed = half.replace(max_steps=12, init_checkpoint=str(tmp_path / "half"))
    train(resumed)
    a = np.load(tmp_path / "full" / "entity_embedding.npy")
    b = np.load(tmp_path / "half" / "entity_embedding.npy")
    assert np.array_equal(a, b)
    assert np.array_equal(np.load(tmp_path / "full" / "relation_embedding.npy"), np.load(tmp_path / "half" / "relation_embedding.npy"))
    sa = torch.load(tmp_path / "full" / "checkpoint", weights_only=True)
    sb = torch.load(tmp_path / "half" / "checkpoint", weights_only=True)
    assert sa["step"] == sb["step"] == 12 and sa["optimizer"] == sb["optimizer"] == "adam"
    assert sa["current_learning_rate"] == sb["current_learning_rate"]


def test_same_seed_same_run_different_seed_differs(graph, tmp_path):
    losses = []
    embs = []
    for i, seed in enumerate([5, 5, 6]):
        cfg = small_config(graph, tmp_path / f"r{i}", seed=seed, emu=0.5, neg_label=0.5, do_test=False, log_steps=1)
        train(cfg)
        rows = [json.loads(x) for x in (tmp_path / f"r{i}" / "metrics.jsonl").read_text().splitlines()]
        losses.append([r["loss"] for r in rows if r["split"] == "training"])
        embs.append(np.load(tmp_path / f"r{i}" / "entity_embedding.npy"))
    assert losses[0] == losses[1] and np.array_equal(embs[0], embs[1])
    assert losses[0] != losses[2] and not np.array_equal(embs[0], embs[2])


def test_nan_loss_stops_and_keeps_last_checkpoint(graph, tmp_path):
    cfg = small_config(graph, tmp_path / "nan", max_steps=20, save_checkpoint_steps=2, do_valid=False, do_test=False)
    trainer = Trainer(cfg)
    real = trainer.objective

    def poisoned(model, positives, side, generator, weights):
        loss, logs = real(model, positives, side, generator, weights)
        return (loss * float("nan") if trainer.step == 4 else loss), logs

    trainer.objective = poisoned
    with pytest.raises(EmukgError, match="step 5"):
        trainer.fit()
    state = torch.load(tmp_path / "nan" / "checkpoint", weights_only=True)
    assert state["step"] == 4
    assert torch.isfinite(state["model_state_dict"]["entity_embedding"]).all()


def test_existing_run_is_not_overwritten(graph, tmp_path):
    cfg = small_config(graph, tmp_path / "run", max_steps=2, do_valid=False, do_test=False)
    train(cfg)
    with pytest.raises(EmukgError, match="^save_path=.*continue it with init_checkpoint .*pass overwrite") as exc:
        train(cfg)  # the library names its parameters ...
    assert "continue it with --resume " in exc.value.render("cli")  # ... emukg train its flags
    assert exc.value.render("cli").startswith("--save-path ") and "pass --overwrite" in exc.value.render("cli")
    assert exc.value.render("legacy").startswith("-save ") and "continue it with -init " in exc.value.render("legacy")
    train(cfg, overwrite=True)


@pytest.mark.parametrize("flags, message", [
    (["--model", "RotatE"], "-de"),
    (["--model", "ComplEx", "-de"], "-dr"),
    (["-if_CE", "1", "-if_EMU", "0.39"], "-neg_label"),
    (["--model", "TransE", "-if_CE", "3"], "1-vs-all"),
    (["--model", "NoSuchModel"], "unknown model"),
    (["--cuda"], "drop --cuda"),
    (["-if_CE", "7"], "-if_CE"),
])
def test_legacy_bad_flags_exit_2(graph, tmp_path, flags, message):
    if "--cuda" in flags and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    res = run_cli("-m", "emukg", "legacy", "--do_train", "--data_path", str(graph), "-save", str(tmp_path / "x"), *flags)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_train_cli_yaml_config_and_flag_override(graph, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"dataset: {graph}\nmodel: DistMult\nhidden_dim: 8\nbatch_size: 32\nnegative_sample_size: 4\n"
                   "ce_mode: 1\nmax_steps: 4\nvalid_steps: 2\nlearning_rate: 0.1\nprogress: false\n")
    res = run_cli("-m", "emukg", "train", "--config", str(cfg), "--max-steps", "6", "--save-path", str(tmp_path / "run"),
                  "--device", "cpu")
    assert res.returncode == 0, res.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"] == "DistMult" and saved["max_steps"] == 6 and saved["hidden_dim"] == 8
    assert "test: MRR" in res.stdout
    # resume a finished run to more steps
    res = run_cli("-m", "emukg", "train", "--resume", str(tmp_path / "run"), "--max-steps", "8")
    assert res.returncode == 0, res.stderr
    assert torch.load(tmp_path / "run" / "checkpoint", weights_only=True)["step"] == 8


@pytest.mark.parametrize("args, message", [
    (["train", "--dataset", "/no/such/folder", "--save-path", "x"], "/no/such/folder"),
    (["train", "--config", "/no/such.yaml"], "/no/such.yaml"),
    (["train", "--resume", "/no/such/run"], "--resume"),
])
def test_train_cli_errors(tmp_path, args, message):
    res = run_cli("-m", "emukg", *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr


def test_learns_on_kinships(tmp_path):
    """A short CE run on kinships: valid MRR clearly above the untrained model's."""
    from emukg.data import load_dataset

    try:
        kg = load_dataset("kinships")
    except EmukgError as exc:
        pytest.skip(f"kinships not available ({exc}); set EMUKG_DATA_DIR to ../shared/datasets")
    cfg = Config.from_dict(dict(dataset="kinships", model="DistMult", hidden_dim=64, negative_sample_size=64, batch_size=512,
                                ce_mode=1, learning_rate=0.1, max_steps=300, valid_steps=300, log_steps=100,
                                save_checkpoint_steps=300, regularization=1e-5, save_path=str(tmp_path / "k"), device="cpu",
                                progress=False, do_test=False))
    trainer = Trainer(cfg, kg=kg)
    untrained = trainer.evaluate("valid")["MRR"]
    results = trainer.fit()
    assert results["valid"]["MRR"] > untrained + 0.15, (untrained, results["valid"]["MRR"])


@pytest.mark.parametrize("kw", [
    dict(ce_mode=2, emu=0.4, neg_label=0.5, ce_coef=0.1),          # the paper's SANS + EMU runs
    dict(ce_mode=2, adversarial=True, regularization=1e-3),        # self-adversarial SANS baseline
    dict(ce_mode=0, adversarial=True),                             # SANS with the sigmoid loss
], ids=["ce2-emu", "ce2-adv", "mode0-adv"])
def test_sans_trains_in_every_mode(graph, tmp_path, kw):
    cfg = small_config(graph, tmp_path / "run", sampler="sans", khop=2, num_random_walks=20, max_steps=6, **kw)
    trainer = Trainer(cfg)
    assert trainer.sampler.name == "sans" and trainer.sampler.khop == 2 and trainer.sampler.num_random_walks == 20
    before = trainer.model.entity_embedding.detach().clone()
    logs = trainer.train_step()
    assert np.isfinite(logs["loss"])
    assert not torch.equal(before, trainer.model.entity_embedding.detach())
    results = trainer.fit()
    assert np.isfinite(results["test"]["MRR"])


def test_legacy_khop_nrw_select_sans():
    from emukg.commands.legacy import build_legacy_parser, legacy_to_config

    parse = lambda *a: legacy_to_config(build_legacy_parser().parse_args(["--do_train", "--data_path", "x", "-save", "y", *a]))
    cfg = parse("-if_CE", "2", "-khop", "3", "-nrw", "1000")
    assert (cfg.sampler, cfg.khop, cfg.num_random_walks, cfg.loss, cfg.walk_mode) == ("sans", 3, 1000, "ce", "chained")
    cfg = parse("-khop", "2")  # exact k-hop neighbourhoods, mode 0
    assert (cfg.sampler, cfg.khop, cfg.num_random_walks, cfg.loss) == ("sans", 2, 0, "sigmoid")
    assert parse().sampler == "filtered"
    # mode 1: fresh uniform CE negatives; -khop feeds only the -adv term (the reference's data loader)
    cfg = parse("-if_CE", "1", "-khop", "3", "-nrw", "1000")
    assert cfg.samplers_used() == {"loss": "uniform", "adversarial": None}
    cfg = parse("-if_CE", "1", "-khop", "3", "-nrw", "1000", "-adv")
    assert cfg.samplers_used() == {"loss": "uniform", "adversarial": "sans"}
    cfg = parse("-if_CE", "3", "--model", "DistMult", "-adv")
    assert cfg.samplers_used() == {"loss": None, "adversarial": "filtered"}
