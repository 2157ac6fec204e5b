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
from emukg.run import BEST, CHECKPOINT, CONFIG, RUN_FILES, RunFolder

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
    with pytest.raises(EmukgError, match=r"--save-path .*f: is a file"):
        RunFolder(tmp_path / "f").check_target()
    with pytest.raises(EmukgError, match=r"--out .*lies under the file"):
        RunFolder(tmp_path / "f" / "a" / "b").check_target("--out")
    RunFolder(tmp_path / "new" / "deeper").check_target()  # fine, and still nothing created
    assert _tree(tmp_path) == before


def test_check_target_refuses_an_unwritable_parent_via_os_access(tmp_path, monkeypatch):
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == tmp_path else real(p, mode, **kw))
    with pytest.raises(EmukgError, match=r"--save-path .*run.*not writable"):
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
        check_writable_file(tmp_path / "missing" / "r.json", "--json")
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
    with pytest.raises(EmukgError, match="--checkpoint middle"):
        run.read_checkpoint("middle")
