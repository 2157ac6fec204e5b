"""Experiment trackers (--tracker): TensorBoard event files and MLflow runs mirror metrics.jsonl; missing packages
give one sentence; a failed run ends its MLflow run FAILED; emukg stays free of the tracker packages until asked."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from emukg.errors import EmukgError
from emukg.tracking import ARTIFACTS, check_tracker_available, mlflow_name
from emukg.training import Callback, Trainer, train

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_training import REPO, run_cli, small_config, write_graph  # noqa: E402

TRACKING = dict(max_steps=6, valid_steps=3, log_steps=3, save_checkpoint_steps=3, do_test=True)


@pytest.fixture
def graph(tmp_path):
    return write_graph(tmp_path / "g")


def jsonl_series(run: Path, name=lambda tag: tag) -> dict:
    """{(tag, step): [values]} of metrics.jsonl, tags as ``split/metric`` (``training`` lines as ``train/``)."""
    out = defaultdict(list)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        split = row.pop("split")
        split = "train" if split == "training" else split
        step = row.pop("step")
        for key, value in row.items():
            out[(name(f"{split}/{key}"), step)].append(value)
    return out


def tensorboard_series(logdir: Path) -> tuple[dict, object]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    out = defaultdict(list)
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            out[(tag, event.step)].append(event.value)
    return out, acc


def assert_same_series(got: dict, expected: dict, rel=1e-6) -> None:
    """The same (tag, step) pairs as metrics.jsonl (plus the callback-only learning rate), with the same values."""
    assert {k for k in got if not k[0].endswith("learning_rate")} == set(expected)
    for key, values in expected.items():
        assert key in got, key
        assert got[key] == pytest.approx(values, rel=rel), key


# --- TensorBoard ---------------------------------------------------------------------------------
def test_tensorboard_event_files_hold_every_metric_of_metrics_jsonl(graph, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    train(small_config(graph, run, tracker="tensorboard", **TRACKING))
    got, acc = tensorboard_series(run / "tensorboard")
    expected = jsonl_series(run)
    assert_same_series(got, expected, rel=1e-6)  # event files store float32
    # every validation (0, 3, 6) and the final evaluation, the training losses and the callback-only extras
    steps = {tag: sorted({s for t, s in got if t == tag}) for tag, _ in got}
    assert steps["valid/MRR"] == [0, 3, 6] and steps["test/MRR"] == [6] and steps["train/loss"] == [3, 6]
    assert len(got[("valid/MRR", 6)]) == 2  # the last validation and the best model's final one, as metrics.jsonl
    assert {"train/learning_rate", "train/steps_per_s", "valid/HITS@10", "test/MR"} <= {t for t, _ in got}
    assert got[("train/learning_rate", 3)] == pytest.approx([0.005])  # lr/10 after warm_up_steps = 3
    # the resolved config as text
    text = acc.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert '"model": "TransE"' in text and '"learning_rate": 0.05' in text and '"emukg_version"' in text
    # and as hparams of this run (TensorBoard's HParams tab), with the validation metrics as its columns
    from tensorboard.plugins.hparams import plugin_data_pb2

    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["model"].string_value == "TransE" and start.hparams["learning_rate"].number_value == 0.05
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "valid/MRR" in {m.name.tag for m in experiment.metric_infos}


def test_tensorboard_resume_drops_what_came_after_the_checkpoint(graph, tmp_path):
    """A resumed run continues the same curves; a fresh --overwrite run in the folder replaces them."""
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    cfg = small_config(graph, run, tracker="tensorboard", **TRACKING)
    train(cfg)
    train(cfg.replace(max_steps=9, init_checkpoint=str(run)))
    got, _ = tensorboard_series(run / "tensorboard")
    expected = jsonl_series(run)
    assert_same_series(got, expected)
    assert sorted(s for t, s in got if t == "train/loss") == [3, 6, 9]
    Trainer(cfg.replace(max_steps=3), overwrite=True).fit()
    got, _ = tensorboard_series(run / "tensorboard")
    assert sorted(s for t, s in got if t == "train/loss") == [3]
    assert_same_series(got, jsonl_series(run))
    assert sorted(s for t, s in got if t == "valid/MRR") == [0, 3] and len(got[("valid/MRR", 3)]) == 2


def test_cli_tracker_tensorboard(graph, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "cli_run"
    res = run_cli("-m", "emukg", "train", "--dataset", str(graph), "--model", "TransE", "--hidden-dim", "8",
                  "--batch-size", "32", "--max-steps", "4", "--valid-steps", "2", "--log-steps", "2",
                  "--device", "cpu", "--no-progress", "--save-path", str(run), "--tracker", "tensorboard")
    assert res.returncode == 0, res.stderr
    got, _ = tensorboard_series(run / "tensorboard")
    assert_same_series(got, jsonl_series(run))
    assert sorted(s for t, s in got if t == "train/loss") == [2, 4]


# --- MLflow --------------------------------------------------------------------------------------
@pytest.fixture
def mlflow_env(monkeypatch, tmp_path):
    """A clean MLflow environment: no tracking URI or file-store opt-in from the caller, cwd = tmp_path."""
    pytest.importorskip("mlflow")
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def only_run(uri: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("g")  # the dataset's name (the test graph's folder)
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_file_store_holds_params_metrics_artifacts(graph, tmp_path, mlflow_env, monkeypatch):
    import emukg.tracking

    # small limits, so that this small config needs several batches and a long value is cut
    monkeypatch.setattr(emukg.tracking, "MLFLOW_BATCH_LIMIT", 7)
    monkeypatch.setattr(emukg.tracking, "MLFLOW_PARAM_LIMIT", 40)
    store = tmp_path / "store"
    run = tmp_path / "run_a"
    train(small_config(graph, run, tracker="mlflow", tracking_uri=store.as_uri(), **TRACKING))
    client, mrun = only_run(store.as_uri())
    assert mrun.info.status == "FINISHED" and mrun.info.run_name == "run_a"
    params = mrun.data.params
    assert params["model"] == "TransE" and float(params["learning_rate"]) == 0.05 and params["max_steps"] == "6"
    assert params["dataset_record.name"] == "g" and params["negatives.adversarial"] == "null"
    assert len(str(graph)) > 40 and params["dataset"] == str(graph)[:40]
    config = json.loads((run / "config.json").read_text())
    assert set(params) >= {k for k, v in config.items() if not isinstance(v, (dict, list))}  # every batch arrived
    # every metrics.jsonl value with its step (HITS@10 becomes HITS_10), plus the learning rate
    expected = jsonl_series(run, name=mlflow_name)
    got = defaultdict(list)
    for tag in {t for t, _ in expected} | {"train/learning_rate"}:
        for m in client.get_metric_history(mrun.info.run_id, tag):
            got[(tag, m.step)].append(m.value)
    assert_same_series(got, expected, rel=1e-12)
    assert sorted(s for t, s in got if t == "valid/HITS_10") == [0, 3, 6] and len(got[("valid/HITS_10", 6)]) == 2
    assert sorted(s for t, s in got if t == "train/learning_rate") == [3, 6]
    artifacts = {a.path for a in client.list_artifacts(mrun.info.run_id)}
    assert artifacts == set(ARTIFACTS)  # the small files, not the checkpoints or embeddings
    local = Path(client.download_artifacts(mrun.info.run_id, "metrics.jsonl", str(tmp_path / "dl")))
    assert local.read_text() == (run / "metrics.jsonl").read_text()
    assert not (tmp_path / "mlruns").exists()  # the given URI, not the default


class Boom(Callback):
    def on_validation(self, trainer, step, metrics):
        if step == 3:
            raise RuntimeError("stop here")


def test_mlflow_default_store_and_failed_run(graph, tmp_path, mlflow_env):
    """Without --tracking-uri the runs go to ./mlruns; a run stopped by an error ends FAILED, with what it logged."""
    run = tmp_path / "run_b"
    with pytest.raises(RuntimeError, match="stop here"):
        Trainer(small_config(graph, run, tracker="mlflow", **TRACKING), callbacks=[Boom()]).fit()
    client, mrun = only_run((tmp_path / "mlruns").as_uri())
    assert mrun.info.status == "FAILED" and mrun.data.tags["emukg.error"] == "RuntimeError: stop here"
    # Boom raised at step 3 before the tracker (callbacks given to the Trainer come before the trackers) saw it
    assert [m.step for m in client.get_metric_history(mrun.info.run_id, "valid/MRR")] == [0]
    assert [m.step for m in client.get_metric_history(mrun.info.run_id, "train/loss")] == [3]
    assert {"config.json", "metrics.jsonl", "train.log"} <= {a.path for a in client.list_artifacts(mrun.info.run_id)}


# --- missing packages, lazy imports --------------------------------------------------------------
@pytest.mark.parametrize("tracker", ["tensorboard", "mlflow"])
def test_missing_package_is_one_sentence(graph, tmp_path, monkeypatch, tracker):
    monkeypatch.setitem(sys.modules, tracker, None)  # makes `import tracker` fail as if it were not installed
    sentence = f"tracker={tracker!r}: needs the {tracker} package; pip install 'emukg[{tracker}]'."  # the library's
    cfg = small_config(graph, tmp_path / "run", tracker=tracker)
    with pytest.raises(EmukgError) as exc:
        check_tracker_available(cfg)
    assert str(exc.value) == sentence
    assert exc.value.render("cli") == f"--tracker {tracker}: needs the {tracker} package; pip install 'emukg[{tracker}]'."
    assert not (tmp_path / "run").exists()
    with pytest.raises(EmukgError) as exc:
        Trainer(cfg)
    assert str(exc.value) == sentence
    check_tracker_available(cfg.replace(tracker=None))  # no tracker, nothing to check


def test_emukg_imports_no_tracker_package():
    code = ("import sys, emukg, emukg.tracking, emukg.training, emukg.cli\n"
            "try:\n    emukg.cli.main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorboard', 'mlflow') or m == 'torch.utils.tensorboard')\n"
            "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.returncode == 0, res.stderr
