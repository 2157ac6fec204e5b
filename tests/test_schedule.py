"""Learning-rate schedules and early stopping: closed forms, the rates a run really uses, exact resume across a
scheduler step and a plateau decision, early stopping's stop/best/resume, and the Config's refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emukg.config import Config, ConfigError
from emukg.schedule import EarlyStopping, lr_factor
from emukg.training import Callback, Trainer, train

from test_training import run_cli, small_config, write_graph


@pytest.fixture
def graph(tmp_path):
    return write_graph(tmp_path / "g")


class Rates(Callback):
    """Records the learning rate every step would use (the optimiser's rate after each step)."""

    def __init__(self):
        self.rates: list[float] = []

    def on_log(self, trainer, step, metrics):
        self.rates.append(metrics["learning_rate"])


def rates_of(graph, tmp_path, name, **kw):
    rec = Rates()
    cfg = small_config(graph, tmp_path / name, log_steps=1, do_valid=False, do_test=False, **kw)
    Trainer(cfg, callbacks=[rec]).fit()
    return rec.rates


def test_lr_factor_closed_forms(graph):
    cfg = Config.from_dict(dict(dataset=str(graph), schedule="cosine", learning_rate=0.1, lr_min=0.01, max_steps=110,
                                lr_warmup_steps=10))
    assert [lr_factor(cfg, s) for s in range(3)] == pytest.approx([0.1, 0.2, 0.3])
    assert lr_factor(cfg, 9) == pytest.approx(1.0) and lr_factor(cfg, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 60) == pytest.approx(0.1 + 0.9 * 0.5)  # half-way down the cosine
    assert lr_factor(cfg, 110) == pytest.approx(0.1) and lr_factor(cfg, 500) == pytest.approx(0.1)
    step = Config.from_dict(dict(dataset=str(graph), schedule="step", lr_decay=0.5, lr_decay_steps=4, max_steps=20))
    assert [lr_factor(step, s) for s in (0, 3, 4, 7, 8, 12)] == [1, 1, 0.5, 0.5, 0.25, 0.125]
    default = Config.from_dict(dict(dataset=str(graph), schedule="step", max_steps=20))
    assert lr_factor(default, 9) == 1 and lr_factor(default, 10) == pytest.approx(0.1)


def test_runs_use_the_scheduled_rates(graph, tmp_path):
    """The rate after step s (what step s + 1 uses) is lr · factor(s); the reference schedule divides by 10 once."""
    cos = rates_of(graph, tmp_path, "cos", schedule="cosine", learning_rate=0.05, lr_warmup_steps=3, lr_min=0.001)
    cfg = Config.from_dict(dict(dataset=str(graph), schedule="cosine", learning_rate=0.05, lr_warmup_steps=3,
                                lr_min=0.001, max_steps=10))
    assert cos == pytest.approx([0.05 * lr_factor(cfg, s) for s in range(1, 11)])
    assert rates_of(graph, tmp_path, "const", schedule="constant") == pytest.approx([0.05] * 10)
    ref = rates_of(graph, tmp_path, "ref", warm_up_steps=4)
    assert ref == pytest.approx([0.05] * 3 + [0.005] * 7)
    step = rates_of(graph, tmp_path, "step", schedule="step", lr_decay_steps=3, lr_decay=0.5)
    assert step == pytest.approx([0.05 * 0.5 ** (s // 3) for s in range(1, 11)])


class Crash(Callback):
    """Stops the run (like a kill) when step ``at + 1`` logs, i.e. after the checkpoint of step ``at``."""

    class Stop(Exception):
        pass

    def __init__(self, at):
        self.at = at

    def on_log(self, trainer, step, metrics):
        if trainer.step == self.at + 1:
            raise self.Stop


def _train_split(graph, tmp_path, common, at):
    """A run in one go, and the same run killed after its checkpoint of step ``at`` and resumed unchanged."""
    common = dict(log_steps=1, save_checkpoint_steps=at, **common)
    train(small_config(graph, tmp_path / "full", **common))
    cfg = small_config(graph, tmp_path / "half", **common)
    with pytest.raises(Crash.Stop):
        Trainer(cfg, callbacks=[Crash(at)]).fit()
    assert torch.load(tmp_path / "half" / "checkpoint", weights_only=False)["step"] == at
    train(cfg.replace(init_checkpoint=str(tmp_path / "half")))
    return [torch.load(tmp_path / n / "checkpoint", weights_only=False) for n in ("full", "half")]


@pytest.mark.parametrize("kw", [
    dict(schedule="cosine", lr_warmup_steps=3, lr_min=0.001),
    dict(schedule="step", lr_decay_steps=4, lr_decay=0.5, optimizer="adam"),
])
def test_resume_across_a_scheduler_step_is_exact(graph, tmp_path, kw):
    a, b = _train_split(graph, tmp_path, dict(max_steps=12, do_valid=False, do_test=False, **kw), at=6)
    assert np.array_equal(np.load(tmp_path / "full" / "entity_embedding.npy"), np.load(tmp_path / "half" / "entity_embedding.npy"))
    assert a["schedule"]["learning_rate"] == b["schedule"]["learning_rate"]
    assert a["schedule"]["scheduler_state_dict"]["last_epoch"] == b["schedule"]["scheduler_state_dict"]["last_epoch"] == 12


def test_plateau_decays_after_patience_and_resumes_exactly(graph, tmp_path):
    """A rate so small that the valid MRR never changes: every validation after the first is 'no improvement',
    so the plateau schedule decays after lr_patience of them; a resume between the decisions ends identically."""
    common = dict(max_steps=12, valid_steps=2, learning_rate=1e-30, schedule="plateau", lr_patience=2, lr_decay=0.5,
                  do_test=False)
    a, b = _train_split(graph, tmp_path, common, at=6)
    # validations at 0, 2, 4, …, 12 → 6 without improvement → decays after the 2nd and 4th and 6th of them
    assert a["schedule"]["learning_rate"] == pytest.approx(1e-30 * 0.5 ** 3, rel=1e-9, abs=0)
    assert a["schedule"]["learning_rate"] == b["schedule"]["learning_rate"]
    assert a["schedule"]["scheduler_state_dict"]["num_bad_epochs"] == b["schedule"]["scheduler_state_dict"]["num_bad_epochs"]
    log = (tmp_path / "full" / "train.log").read_text()
    assert log.count("valid MRR has not improved in 2 validations") == 3


def test_early_stopping_stops_keeps_best_and_records_why(graph, tmp_path):
    save = tmp_path / "stop"
    cfg = small_config(graph, save, max_steps=40, valid_steps=2, learning_rate=1e-30, early_stop_patience=3)
    results = train(cfg)
    out = json.loads((save / "results.json").read_text())
    # validations at 0 (the best), 2, 4, 6 without improvement → stop after step 6
    assert out["step"] == 6 and out["stop"]["reason"] == "early_stopping" and out["stop"]["step"] == 6
    assert out["best_step"] == 0 and "test" in results
    assert torch.load(save / "checkpoint", weights_only=False)["step"] == 6
    log = (save / "train.log").read_text()
    assert "Early stopping at step 6" in log and "Valid MRR at step 8" not in log
    # resumed unchanged: no more training, the same final evaluation
    train(cfg.replace(init_checkpoint=str(save)))
    assert json.loads((save / "results.json").read_text())["step"] == 6
    assert "The run stopped early at step 6" in (save / "train.log").read_text()
    # resumed with a larger patience (a documented override): training goes on until that one runs out
    train(cfg.replace(init_checkpoint=str(save), early_stop_patience=5))
    assert json.loads((save / "results.json").read_text())["step"] == 10


def test_early_stopping_min_delta_counts_small_gains_as_none():
    stop = EarlyStopping(patience=2, min_delta=0.01)
    assert not stop.update(0.30) and not stop.update(0.305)  # +0.005 ≤ min delta: one without improvement
    assert not stop.update(0.32)  # +0.02 over the best: improvement, counter reset
    assert not stop.update(0.325) and stop.update(0.33)
    assert stop.best == 0.32 and "patience 2" in stop.reason()
    never = EarlyStopping(patience=None)
    assert not any(never.update(0.1) for _ in range(100))


def test_a_full_run_records_max_steps_as_its_stop(graph, tmp_path):
    train(small_config(graph, tmp_path / "r", schedule="cosine"))
    assert json.loads((tmp_path / "r" / "results.json").read_text())["stop"] == {"reason": "max_steps", "step": 10}


@pytest.mark.parametrize("kw, param, words", [
    (dict(schedule="cosine", warm_up_steps=5), "warm_up_steps", "not used by the cosine schedule"),
    (dict(schedule="reference", lr_warmup_steps=5), "lr_warmup_steps", "not used by the reference schedule"),
    (dict(schedule="constant", lr_decay_steps=5), "lr_decay_steps", "not used by the constant schedule"),
    (dict(schedule="cosine", lr_min=0.5), "lr_min", "below the learning rate"),
    (dict(schedule="plateau", do_valid=False), "schedule", "needs do_valid"),
    (dict(early_stop_patience=3, do_valid=False), "early_stop_patience", "needs do_valid"),
    (dict(early_stop_patience=0), "early_stop_patience", "positive integer"),
    (dict(lr_decay=1.0), "lr_decay", "strictly between 0 and 1"),
    (dict(schedule="linear"), "schedule", "choose reference, constant, step, cosine or plateau"),
])
def test_config_refuses_bad_schedules(graph, kw, param, words):
    with pytest.raises(ConfigError) as err:
        Config.from_dict(dict(dataset=str(graph), learning_rate=0.1, **kw))
    assert err.value.param == param and words in str(err.value)


def test_resume_refuses_a_schedule_change(graph, tmp_path):
    cfg = small_config(graph, tmp_path / "r", do_test=False)
    train(cfg)
    with pytest.raises(ConfigError, match="schedule"):
        Trainer(cfg.replace(max_steps=20, schedule="cosine", init_checkpoint=str(tmp_path / "r")))


def test_cli_schedule_flags(graph, tmp_path):
    save = tmp_path / "cli"
    res = run_cli("-m", "emukg", "train", "--dataset", str(graph), "--model", "TransE", "--hidden-dim", "8",
                  "--batch-size", "32", "--negative-sample-size", "4", "--max-steps", "6", "--valid-steps", "2",
                  "--schedule", "plateau", "--lr-patience", "1", "--early-stop-patience", "2", "--learning-rate",
                  "1e-30", "--save-path", str(save), "--device", "cpu", "--no-do-test")
    assert res.returncode == 0, res.stderr
    out = json.loads((save / "results.json").read_text())
    assert out["stop"]["reason"] == "early_stopping" and out["step"] == 4
    bad = run_cli("-m", "emukg", "train", "--dataset", str(graph), "--schedule", "cosine", "--warm-up-steps", "3",
                  "--save-path", str(tmp_path / "bad"))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "--warm-up-steps" in bad.stderr and "--schedule" in bad.stderr
    assert not (tmp_path / "bad").exists()
