"""Deferred logs (the CUDA step's: the logged values stay on the device and are read once per log_steps and
before every validation and checkpoint), forced here on the CPU: the same run bit for bit, the same metrics.jsonl,
and a loss that is no longer finite still stops the run naming its step, with the last checkpoint intact."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emukg.errors import EmukgError
from emukg.training import Trainer

from test_training import small_config, write_graph


def deferred(trainer: Trainer) -> Trainer:
    trainer.deferred_logs = True
    trainer.objective.log_on_device = True
    return trainer


def lines(run):
    return [{k: v for k, v in json.loads(x).items() if k not in ("steps_per_s", "seconds", "queries_per_s")}
            for x in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kw", [dict(ce_mode=2, emu=0.4, neg_label=0.5, log_steps=3), dict(ce_mode=0, adversarial=True, log_steps=1)])
def test_deferred_logs_give_the_same_run(tmp_path, kw):
    graph = write_graph(tmp_path / "g")
    eager = Trainer(small_config(graph, tmp_path / "eager", max_steps=10, valid_steps=4, save_checkpoint_steps=3, **kw))
    assert not eager.deferred_logs  # the CPU default
    eager.fit()
    late = deferred(Trainer(small_config(graph, tmp_path / "late", max_steps=10, valid_steps=4, save_checkpoint_steps=3, **kw)))
    late.fit()
    assert lines(tmp_path / "eager") == lines(tmp_path / "late")
    for name in ("entity_embedding.npy", "relation_embedding.npy"):
        assert np.array_equal(np.load(tmp_path / "eager" / name), np.load(tmp_path / "late" / name))


def test_deferred_nan_stops_before_the_checkpoint(tmp_path):
    graph = write_graph(tmp_path / "g")
    cfg = small_config(graph, tmp_path / "nan", max_steps=20, save_checkpoint_steps=4, log_steps=10, do_valid=False, do_test=False)
    trainer = deferred(Trainer(cfg))
    real = trainer.objective

    def poisoned(model, positives, side, generator, weights):
        loss, logs = real(model, positives, side, generator, weights)
        assert isinstance(logs["loss"], torch.Tensor)  # nothing read back inside the step
        return (loss * float("nan") if trainer.step == 5 else loss), logs

    poisoned.log_on_device = True
    trainer.objective = poisoned
    with pytest.raises(EmukgError, match="step 6: the loss became nan.*checkpoint of step 4"):
        trainer.fit()
    state = torch.load(tmp_path / "nan" / "checkpoint", weights_only=True)
    assert state["step"] == 4 and torch.isfinite(state["model_state_dict"]["entity_embedding"]).all()


def test_deferred_logs_with_an_objective_that_logs_floats(tmp_path):
    """An objective that returns Python floats (NBFNet's): only the loss stays on the device; the same run."""
    graph = write_graph(tmp_path / "g")
    eager = Trainer(small_config(graph, tmp_path / "eager", max_steps=6, log_steps=2, do_valid=False, do_test=False))
    eager.fit()
    late = deferred(Trainer(small_config(graph, tmp_path / "late", max_steps=6, log_steps=2, do_valid=False, do_test=False)))
    late.objective.log_on_device = False  # it logs floats, as NBFNetObjective does
    late.fit()
    assert lines(tmp_path / "eager") == lines(tmp_path / "late")
