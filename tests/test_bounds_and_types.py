"""Issue 23 (part): settings bounded before anything is allocated, one typing policy for numbers (NumPy scalars and
0-d tensors are numbers), duplicate YAML keys refused, and emukg.load's run_dir type checked."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

import emukg
from emukg.config import LIMITS, Config, ConfigError
from emukg.errors import EmukgError, ParamError
from emukg.io_utils import read_yaml


def _tiny_data(root):
    data = root / "data"
    data.mkdir()
    rows = [(f"e{i}", f"r{i % 2}", f"e{(3 * i + 1) % 8}") for i in range(24)]
    for split, part in (("train", rows[:18]), ("valid", rows[18:21]), ("test", rows[21:])):
        (data / f"{split}.txt").write_text("".join(f"{h}\t{r}\t{t}\n" for h, r, t in part))
    return data


@pytest.mark.parametrize("value", [np.int64(8), np.int32(8), torch.tensor(8), np.uint16(8), 8.0, np.float64(8.0)])
def test_integer_settings_take_numpy_and_torch_scalars(value):
    cfg = Config(hidden_dim=value)
    cfg.validate()
    assert cfg.hidden_dim == 8 and type(cfg.hidden_dim) is int


@pytest.mark.parametrize("value", [np.float32(0.5), torch.tensor(0.5), np.float64(0.5), np.int64(1)])
def test_number_settings_take_numpy_and_torch_scalars(value):
    cfg = Config(learning_rate=value)
    cfg.validate()
    assert type(cfg.learning_rate) is float and cfg.learning_rate == float(value)


@pytest.mark.parametrize("value", [np.float64(8.5), torch.tensor([8]), np.array([8]), torch.tensor(8.5)])
def test_integer_settings_refuse_fractions_and_arrays(value):
    with pytest.raises(ConfigError, match="hidden_dim"):
        Config(hidden_dim=value).validate()


@pytest.mark.parametrize("name,value", [("hidden_dim", 10**40), ("hidden_dim", -(10**40)), ("batch_size", 2**63),
                                        ("seed", 10**30), ("max_steps", 1e30)])
def test_huge_integers_are_refused(name, value):
    with pytest.raises(ConfigError, match="below 2\\*\\*63"):
        Config(**{name: value}).validate()


@pytest.mark.parametrize("name", sorted(LIMITS))
def test_every_limit_refuses_above_and_accepts_at_it(name):
    limit = LIMITS[name]
    kind = int if isinstance(limit, int) else float
    with pytest.raises(ConfigError, match=f"{name}=.*largest useful value"):
        Config(**{name: kind(limit * 10)}).validate()
    cfg = Config(**{name: kind(limit)})
    cfg.validate()
    assert getattr(cfg, name) == limit


def test_limits_are_rendered_as_flags_by_the_cli(tmp_path):
    out = subprocess.run([sys.executable, "-m", "emukg", "train", "--dataset", "nations", "--hidden-dim", "1000000000",
                          "--save-path", str(tmp_path / "run")], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "--hidden-dim 1000000000" in out.stderr and "largest useful value" in out.stderr
    assert not (tmp_path / "run").exists()


def test_yaml_huge_width_is_refused_before_any_folder(tmp_path):
    (tmp_path / "c.yaml").write_text("hidden_dim: 1e30\n")
    out = subprocess.run([sys.executable, "-m", "emukg", "train", "--config", str(tmp_path / "c.yaml"), "--dataset",
                          "nations", "--save-path", str(tmp_path / "run")], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr and "hidden_dim" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("text,key,line", [("hidden_dim: 8\nhidden_dim: 16\n", "hidden_dim", 2),
                                           ("model: TransE\ngamma: 1\nmodel: RotatE\n", "model", 3),
                                           ("a:\n  b: 1\n  b: 2\n", "b", 3)])
def test_duplicate_yaml_keys_are_refused_with_their_line(tmp_path, text, key, line):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(EmukgError) as info:
        read_yaml(path)
    message = str(info.value)
    assert f"line {line}" in message and repr(key) in message and "twice" in message and message.count(".") >= 1


def test_distinct_yaml_keys_still_read(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("hidden_dim: 8\nnested:\n  a: 1\n  b: [1, 2]\nother:\n  a: 2\n")
    assert read_yaml(path) == {"hidden_dim": 8, "nested": {"a": 1, "b": [1, 2]}, "other": {"a": 2}}


@pytest.mark.parametrize("value", [None, 123, 1.5, ["runs/x"], b"", ""])
def test_load_refuses_what_is_not_a_path(value):
    with pytest.raises(ParamError, match="run_dir.*must be the path of a run folder"):
        emukg.load(value)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from emukg.config import Config as _Config
    from emukg.training import train

    root = tmp_path_factory.mktemp("tiny")
    data = _tiny_data(root)
    cfg = _Config(dataset=str(data), model="TransE", hidden_dim=4, batch_size=4, negative_sample_size=2, max_steps=3,
                  valid_steps=3, save_path=str(root / "run"), seed=0)
    train(cfg)
    return emukg.load(root / "run")


@pytest.mark.parametrize("head", [np.int64(3), np.int32(3), torch.tensor(3), 3])
def test_predict_takes_numpy_and_tensor_ids(tiny_run, head):
    expected = tiny_run.predict(head=3, relation="r0", top_k=3)
    assert tiny_run.predict(head=head, relation="r0", top_k=3) == expected


@pytest.mark.parametrize("top_k", [np.int64(2), torch.tensor(2)])
def test_predict_takes_numpy_and_tensor_top_k(tiny_run, top_k):
    assert len(tiny_run.predict(head="e1", relation="r0", top_k=top_k)) == 2


@pytest.mark.parametrize("top_k", ["3", 2.5, np.float64(2.0), torch.tensor(2.0), None, [3]])
def test_predict_refuses_top_k_that_is_not_an_integer(tiny_run, top_k):
    with pytest.raises(ParamError, match="top_k.*must be a positive integer"):
        tiny_run.predict(head="e1", relation="r0", top_k=top_k)


@pytest.mark.parametrize("head", [2.5, torch.tensor([1, 2]), np.array([1]), b"e1", torch.tensor(1.0), True])
def test_predict_refuses_heads_that_are_neither_names_nor_ids(tiny_run, head):
    with pytest.raises(ParamError, match="head.*must be the entity.s name \\(text\\) or its id"):
        tiny_run.predict(head=head, relation="r0", top_k=2)


def test_resume_of_a_run_whose_checkpoint_was_deleted_is_refused_and_changes_nothing(tmp_path):
    data = _tiny_data(tmp_path)
    run = tmp_path / "run"
    base = [sys.executable, "-m", "emukg", "train"]
    first = subprocess.run(base + ["--dataset", str(data), "--model", "TransE", "--hidden-dim", "4", "--batch-size", "4",
                                   "--negative-sample-size", "2", "--max-steps", "4", "--valid-steps", "2",
                                   "--save-path", str(run)], capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    (run / "checkpoint").unlink()
    before = {p.name: p.read_bytes() for p in run.iterdir()}
    out = subprocess.run(base + ["--resume", str(run)], capture_output=True, text=True)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "checkpoint file is missing" in out.stderr and "--overwrite" in out.stderr
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


@pytest.mark.parametrize("settings,expected", [
    (dict(neg_label=0.3), "neg_label=0.3 has no effect without emu"),
    (dict(batch_size=50), "batch_size=50 is larger than the 18 training triples"),
    (dict(threads=100_000), "threads=100000 is more than this machine's"),
])
def test_settings_without_effect_are_warned_in_the_log(tmp_path, settings, expected):
    from emukg.training import train

    base = dict(dataset=str(_tiny_data(tmp_path)), model="TransE", hidden_dim=4, batch_size=4, negative_sample_size=2,
                max_steps=2, valid_steps=2, save_path=str(tmp_path / "run"), seed=0)
    train(Config(**{**base, **settings}))
    log = (tmp_path / "run" / "train.log").read_text()
    assert expected in log and log.count("WARNING") == 1


def test_no_warning_for_settings_that_all_take_effect(tmp_path):
    from emukg.training import train

    train(Config(dataset=str(_tiny_data(tmp_path)), model="TransE", hidden_dim=4, batch_size=4, negative_sample_size=2,
                 max_steps=2, valid_steps=2, save_path=str(tmp_path / "run"), seed=0, loss="ce", emu=0.5, neg_label=0.3,
                 threads=1))
    assert "WARNING" not in (tmp_path / "run" / "train.log").read_text()


def test_a_resume_that_trains_nothing_is_warned(tmp_path):
    from emukg.training import train

    cfg = Config(dataset=str(_tiny_data(tmp_path)), model="TransE", hidden_dim=4, batch_size=4, negative_sample_size=2,
                 max_steps=4, valid_steps=2, save_path=str(tmp_path / "run"), seed=0)
    train(cfg)
    weights = (tmp_path / "run" / "entity_embedding.npy").read_bytes()
    train(cfg.replace(max_steps=2, init_checkpoint=str(tmp_path / "run")))
    assert "already at step 4, at or beyond max_steps=2; nothing is trained" in (tmp_path / "run" / "train.log").read_text()
    assert (tmp_path / "run" / "entity_embedding.npy").read_bytes() == weights


def test_a_huge_name_is_quoted_in_part(tmp_path):
    from emukg.data import load_dataset

    data = tmp_path / "data"
    data.mkdir()
    (data / "entities.dict").write_text("0\ta\n1\tb\n")
    (data / "relations.dict").write_text("0\tr\n")
    (data / "train.txt").write_text("a\tr\tb\n" + "x" * 1_000_000 + "\tr\tb\n")
    (data / "valid.txt").write_text("a\tr\tb\n")
    (data / "test.txt").write_text("a\tr\tb\n")
    with pytest.raises(EmukgError) as info:
        load_dataset(str(data))
    message = str(info.value)
    assert "line 2" in message and "1,000,000 characters" in message and len(message) < 400


def test_short_values_are_quoted_whole():
    from emukg.io_utils import quoted

    assert quoted("bob") == "'bob'" and quoted("x" * 100, limit=10) == "'xxxxxxxxx… (100 characters)"
