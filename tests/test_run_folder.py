"""RunFolder (the one owner of a run folder), atomic-write permissions, output-path checks, the dataset record,
and evaluate/predict finding a run's data."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from emukg.errors import EmukgError
from emukg.io_utils import atomic_write_text, check_writable_dir, check_writable_file
from emukg.run_folder import BEST, CHECKPOINT, CONFIG, RUN_FILES, RunFolder

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def umask():
    """Set the process umask for a test and restore it afterwards."""
    old = os.umask(0o022)
    os.umask(old)
    yield lambda mask: os.umask(mask)
    os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


# --- file modes ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_atomic_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    run = RunFolder(tmp_path / "run")
    run.create()
    written = [run.write_json(CONFIG, {"a": 1}), run.save_npy("entity_embedding.npy", np.zeros((2, 3), np.float32)),
               run.save_torch(CHECKPOINT, {"step": 1}), run.write_text("results.json", "{}\n"),
               run.append_line("metrics.jsonl", "{}")]
    atomic_write_text(tmp_path / "plain.txt", "x")
    with open(tmp_path / "reference.txt", "w") as f:
        f.write("x")
    expected = 0o666 & ~mask
    assert _mode(tmp_path / "reference.txt") == expected
    for path in [*written, tmp_path / "plain.txt"]:
        assert _mode(path) == expected, path


# --- temp files, create, overwrite ---------------------------------------------------------------------

def test_clean_temp_removes_leftovers_of_interrupted_writes_only(tmp_path):
    run = RunFolder(tmp_path)
    (tmp_path / ".checkpoint.abc.tmp").write_bytes(b"half")
    (tmp_path / ".config.json.k2j4_x9q.tmp").write_text("{")
    (tmp_path / ".mine.abc.tmp").write_text("user's")  # not a run file's temp
    (tmp_path / "checkpoint.tmp").write_text("user's")
    removed = run.clean_temp()
    assert sorted(p.name for p in removed) == [".checkpoint.abc.tmp", ".config.json.k2j4_x9q.tmp"]
    assert _tree(tmp_path) == [".mine.abc.tmp", "checkpoint.tmp"]


def test_create_cleans_temp_and_overwrite_removes_every_run_file_but_keeps_user_files(tmp_path):
    run = RunFolder(tmp_path / "a" / "run")
    run.create()
    assert run.path.is_dir() and not run.has_run()
    for name in RUN_FILES:
        run.write_text(name, "old")
    (run.path / "notes.txt").write_text("mine")
    (run.path / ".best_model.zz.tmp").write_text("half")
    run.create()  # no overwrite: only temp files go
    assert _tree(run.path) == sorted([*RUN_FILES, "notes.txt"])
    assert run.has_run() and run.has_checkpoint("last") and run.has_checkpoint("best")
    run.create(overwrite=True)
    assert _tree(run.path) == ["notes.txt"]
    assert not run.has_run() and not run.has_checkpoint("best")


def test_create_on_a_file_is_one_sentence(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(EmukgError, match="cannot create the run folder"):
        RunFolder(tmp_path / "f").create()
    with pytest.raises(EmukgError, match="cannot create the run folder"):
        RunFolder(tmp_path / "f" / "run").create()


# --- check_target --------------------------------------------------------------------------------------

def test_check_target_refuses_a_file_and_a_path_under_a_file_and_creates_nothing(tmp_path):
    (tmp_path / "f").write_text("x")
    before = _tree(tmp_path)
    with pytest.raises(EmukgError, match=r"^save_path='.*f': is a file"):  # the parameter, as Python spells it
        RunFolder(tmp_path / "f").check_target()
    with pytest.raises(EmukgError, match=r"^out_dir='.*b': lies under the file"):
        RunFolder(tmp_path / "f" / "a" / "b").check_target("out_dir")
    with pytest.raises(EmukgError, match=r"^-save .*f: is a file"):  # a flag is named as given (the reference mode's)
        RunFolder(tmp_path / "f").check_target("-save")
    RunFolder(tmp_path / "new" / "deeper").check_target()  # fine, and still nothing created
    assert _tree(tmp_path) == before


def test_check_target_refuses_an_unwritable_parent_via_os_access(tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path else real(p, mode, **kw))
    with pytest.raises(EmukgError, match=r"save_path='.*run.*not writable"):
        RunFolder(tmp_path / "run" / "x").check_target()
    assert _tree(tmp_path) == []


@pytest.mark.skipif(IS_ROOT, reason="root ignores permissions; the os.access test covers this")
def test_check_target_refuses_a_read_only_parent(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(EmukgError, match="not writable"):
            RunFolder(ro / "run").check_target()
        assert _tree(ro) == []
    finally:
        ro.chmod(0o755)


def test_check_writable_file(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(EmukgError, match=r"--json .*is a folder"):
        check_writable_file(tmp_path, "--json")
    with pytest.raises(EmukgError, match=r"--json .*does not exist"):
        check_writable_file(tmp_path / "missing" / "r.json", "--json", create_parents=False)
    check_writable_file(tmp_path / "missing" / "r.json", "--json")  # the writer will create the folder
    real = os.access
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, "access", lambda p, m, **kw: False if Path(p) == tmp_path else real(p, m, **kw))
        with pytest.raises(EmukgError, match=r"--json .*missing cannot be created because .* is not writable"):
            check_writable_file(tmp_path / "missing" / "r.json", "--json")
        with pytest.raises(EmukgError, match=r"--json .*the folder .* is not writable"):
            check_writable_file(tmp_path / "r.json", "--json")
    with pytest.raises(EmukgError, match=r"--json .*lies under the file"):
        check_writable_file(tmp_path / "f" / "r.json", "--json")
    check_writable_file(tmp_path / "r.json", "--json")
    check_writable_file(tmp_path / "f", "--json")  # an existing file is replaced
    check_writable_dir(tmp_path / "new", "--out")
    assert _tree(tmp_path) == ["f"]


# --- writers map OSError -------------------------------------------------------------------------------

@pytest.mark.parametrize("code, reason", [(errno.EACCES, "permission denied"), (errno.EROFS, "read-only"),
                                          (errno.ENOSPC, "no space left")])
def test_writers_map_os_errors_to_one_sentence(tmp_path, monkeypatch, code, reason):
    run = RunFolder(tmp_path)

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("emukg.io_utils.os.open", refuse)
    monkeypatch.setattr("builtins.open", refuse)
    calls = [lambda: run.write_json(CONFIG, {}), lambda: run.write_text("results.json", ""),
             lambda: run.save_npy("entity_embedding.npy", np.zeros(2)), lambda: run.save_torch(BEST, {}),
             lambda: run.append_line("metrics.jsonl", "{}")]
    for call in calls:
        with pytest.raises(EmukgError, match=reason) as info:
            call()
        msg = str(info.value)
        assert msg.startswith(str(tmp_path)) and msg.count(". ") == 0 and msg.endswith(".")


@pytest.mark.skipif(IS_ROOT, reason="root ignores permissions; the monkeypatched test covers this")
def test_writers_in_a_read_only_folder(tmp_path):
    run = RunFolder(tmp_path / "run")
    run.create()
    run.write_json(CONFIG, {})
    run.path.chmod(0o555)
    try:
        with pytest.raises(EmukgError, match="permission denied"):
            run.save_torch(CHECKPOINT, {"step": 1})
        with pytest.raises(EmukgError, match="permission denied"):
            run.remove(CONFIG)
        assert _tree(run.path) == [CONFIG]
    finally:
        run.path.chmod(0o755)


# --- readers -------------------------------------------------------------------------------------------

def test_readers(tmp_path):
    run = RunFolder(tmp_path)
    with pytest.raises(EmukgError, match="file not found"):
        run.read_config()
    (tmp_path / CONFIG).write_text("{ nope")
    with pytest.raises(EmukgError, match="line 1: not valid JSON"):
        run.read_config()
    from emukg.config import Config

    run.write_json(CONFIG, {**Config(model="TransE", hidden_dim=7).to_dict(), "dataset_record": {"name": "x"}})
    cfg = run.read_config()
    assert cfg.model == "TransE" and cfg.hidden_dim == 7
    assert run.read_json(CONFIG)["dataset_record"] == {"name": "x"}
    with pytest.raises(EmukgError, match="checkpoint not found"):
        run.read_checkpoint("last")
    run.save_torch(CHECKPOINT, {"step": 3})
    assert run.checkpoint_file("best") == CHECKPOINT
    assert run.read_checkpoint("best")["step"] == 3  # falls back to the last checkpoint
    with pytest.raises(EmukgError, match="checkpoint not found"):
        run.read_checkpoint("best", fallback=False)
    run.save_torch(BEST, {"step": 2})
    assert run.checkpoint_file("best") == BEST and run.read_checkpoint("best")["step"] == 2
    assert run.read_checkpoint("last")["step"] == 3
    with pytest.raises(EmukgError, match="checkpoint='middle': choose best or last"):
        run.read_checkpoint("middle")


# --- the dataset record --------------------------------------------------------------------------------

def test_dataset_record_gives_absolute_paths_and_sha256(tmp_path, monkeypatch):
    from conftest import write_dataset

    from emukg.data import dataset_record

    folder = write_dataset(tmp_path / "data" / "tiny")
    (folder / "entities.dict").unlink()
    (folder / "relations.dict").unlink()
    monkeypatch.chdir(tmp_path / "data")
    rec = dataset_record("./tiny")
    assert rec["name"] == "tiny" and rec["given"] == "./tiny"
    assert rec["path"] == str(folder.resolve()) and Path(rec["path"]).is_absolute()
    expected = {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in ("train.txt", "valid.txt", "test.txt")}
    assert rec["sha256"] == expected
    with pytest.raises(EmukgError, match="not found"):
        dataset_record("./nowhere")


# --- evaluate / predict find their data ----------------------------------------------------------------

def _make_run(tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    """A tiny TransE run trained (constructed) on ``../data/tiny`` as given from ``tmp_path/work``; returns
    (run folder, data folder)."""
    import json

    from conftest import write_dataset
    from test_predict import constructed_model

    from emukg.config import Config
    from emukg.data import dataset_record, load_folder

    data = write_dataset(tmp_path / "data" / "tiny")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    run = RunFolder(work / "run")
    run.create()
    cfg = Config(dataset="../data/tiny", model="TransE", hidden_dim=4, gamma=10.0, save_path=str(run.path))
    run.write_json(CONFIG, {**cfg.to_dict(), "dataset_record": dataset_record("../data/tiny")})
    run.save_torch(CHECKPOINT, {"model_state_dict": constructed_model(load_folder(data)).state_dict(), "step": 0})
    assert json.loads(run.file(CONFIG).read_text())["dataset_record"]["path"] == str(data.resolve())
    return run.path, data


def test_load_run_uses_the_recorded_path_from_any_folder(tmp_path, monkeypatch):
    from emukg.run_folder import load_run

    run, data = _make_run(tmp_path, monkeypatch)
    monkeypatch.chdir(tmp_path)  # '../data/tiny' now names nothing
    cfg, kg, model = load_run(run, "best")
    assert kg.name == "tiny" and Path(kg.path) == data.resolve() and kg.num_entities == 8


def test_load_run_warns_when_the_recorded_data_changed(tmp_path, monkeypatch, caplog):
    from emukg.run_folder import load_run

    run, data = _make_run(tmp_path, monkeypatch)
    with open(data / "test.txt", "a") as f:
        f.write("alice\tlikes\tbob\n")
    with caplog.at_level("WARNING", logger="emukg.run_folder"):
        load_run(run)
    assert any("test.txt" in r.getMessage() and "changed" in r.getMessage() for r in caplog.records)


def test_evaluate_and_predict_with_dataset_after_the_data_moved(tmp_path, monkeypatch, capsys):
    import json

    from emukg.cli import main

    run, data = _make_run(tmp_path, monkeypatch)
    moved = tmp_path / "elsewhere" / "tiny2"
    moved.parent.mkdir()
    data.rename(moved)
    monkeypatch.chdir(tmp_path)

    assert main(["evaluate", str(run), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert f"{run / CONFIG}: the run's dataset 'tiny' (recorded at {data.resolve()}) is not found; " \
           "pass --dataset NAME_OR_FOLDER." in err

    out_json = tmp_path / "res.json"
    assert main(["evaluate", str(run), "--device", "cpu", "--dataset", str(moved), "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    assert res["num_queries"] == 6 and res["run"]["dataset"] == "tiny2"
    assert res["run"]["dataset_path"] == str(moved.resolve())
    capsys.readouterr()

    assert main(["predict", str(run), "--head", "bob", "--relation", "knows", "--top-k", "1"]) == 2
    assert "pass --dataset NAME_OR_FOLDER" in capsys.readouterr().err
    assert main(["predict", str(run), "--head", "bob", "--relation", "knows", "--top-k", "1",
                 "--dataset", "elsewhere/tiny2", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[2].split()[1] == "carol"

    assert main(["predict", str(run), "--head", "bob", "--relation", "knows", "--dataset", "nope/none"]) == 2
    assert capsys.readouterr().err.startswith("emukg: error: --dataset nope/none: dataset folder not found")


def test_dataset_with_other_counts_is_refused(tmp_path, monkeypatch, capsys):
    from conftest import TINY_ENTITIES, write_dataset

    from emukg.cli import main

    run, _ = _make_run(tmp_path, monkeypatch)
    other = write_dataset(tmp_path / "bigger", entities=[*TINY_ENTITIES, "ivan"])
    assert main(["evaluate", str(run), "--device", "cpu", "--dataset", str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--dataset {other}: has 9 entities but the checkpoint checkpoint has 8" in err and "\n" not in err


# --- output paths are checked before the work ----------------------------------------------------------

def test_evaluate_json_to_an_unwritable_place_fails_fast(tmp_path, monkeypatch):
    import subprocess
    import sys

    from test_predict import REPO

    run, _ = _make_run(tmp_path, monkeypatch)
    (tmp_path / "afile").write_text("x")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    cases = [(tmp_path, "is a folder"), (tmp_path / "afile" / "r.json", "lies under the file"),
             (tmp_path / "afile" / "sub" / "r.json", "lies under the file")]
    if not IS_ROOT:  # root may write anywhere; the os.access case is covered in test_check_writable_file
        cases += [(ro / "r.json", "is not writable"), (ro / "sub" / "r.json", "is not writable")]
    for target, words in cases:
        p = subprocess.run([sys.executable, "-m", "emukg", "evaluate", str(run), "--device", "cpu", "--json", str(target)],
                           capture_output=True, text=True, env=env, timeout=120)
        assert p.returncode == 2, p.stderr
        assert p.stdout == ""  # nothing evaluated
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"emukg: error: --json {target}: ") and words in lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "data", "ro", "work"]  # nothing written


def test_report_out_checked_first(tmp_path, monkeypatch, capsys):
    from emukg.cli import main

    run, _ = _make_run(tmp_path, monkeypatch)
    (tmp_path / "afile").write_text("x")
    assert main(["report", str(run), "--out", str(tmp_path / "afile"), "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"emukg: error: --out {tmp_path / 'afile'}: is a file") and "\n" not in err
    from emukg.reporting import write_report

    with pytest.raises(EmukgError, match=r"^out_dir='.*afile': is a file"):  # from Python: the parameter's name
        write_report([str(run)], tmp_path / "afile", plots=False)
    assert main(["report", str(tmp_path / "not-a-run"), "--out", str(tmp_path / "afile" / "sub")]) == 2
    assert "--out" in capsys.readouterr().err  # the output path is refused before the runs are read
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == tmp_path else real(p, m, **kw))
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-plots"]) == 2
    assert "not writable" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(run), "--out", str(tmp_path / "rep"), "--no-plots"]) == 0
    assert (tmp_path / "rep" / "results.md").is_file() and "| tiny |" in (tmp_path / "rep" / "results.md").read_text()
