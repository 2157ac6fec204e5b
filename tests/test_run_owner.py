"""Issue 23: a run folder with an owner, checkpoints that say what they belong to, and crash safety tested where it
matters.

- One writer per folder (emukg.folder_lock): two ``emukg train`` processes started together into one folder — one
  trains, the other is refused naming the first's pid, and the folder equals a run trained alone; a lock left by a
  killed process is taken over; the fallback without ``flock`` trusts the holder line.
- Checkpoints carry a fingerprint and a checksum (emukg.run_folder): what they refuse is in
  tests/test_malformed_more.py; here, that a sealed checkpoint reads back and that its checksum sees one changed
  value.
- Fault injection (``EMUKG_FAULT``, emukg.io_utils): a kill at each named point of the writers — inside a step,
  after a validation, at every stage of an atomic write and between the files of one checkpoint save — then
  ``--resume`` gives the uninterrupted run bit for bit; the checkpoint on disk at the kill is the previous one,
  whole; a disk that fills inside a write ends the run in one sentence with every trained file unchanged; a nearly
  full file system is refused before anything is written; a killed export's temp file is removed by the next.
- A mutation check: with ``atomic_path`` replaced by a write in place, the failure test above fails.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from emukg import folder_lock, io_utils
from emukg.cli import main
from emukg.errors import ParamError
from emukg.folder_lock import LOCK_FILE, FolderLock
from emukg.run_folder import RunFolder, checksum, read_checkpoint, seal

from test_run_truth import train_args
from test_training import small_config, write_graph

REPO = Path(__file__).resolve().parents[1]
TRAINED = ("checkpoint", "best_model", "entity_embedding.npy", "relation_embedding.npy", "best_entity_embedding.npy",
           "best_relation_embedding.npy", "results.json")
ARGS = ["--max-steps", "96", "--save-checkpoint-steps", "6", "--valid-steps", "8", "--log-steps", "4",
        "--batch-size", "16", "--threads", "1"]


def env(**extra) -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1", **extra)


def emukg(*argv, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emukg", *map(str, argv)], capture_output=True, text=True, cwd=REPO,
                          timeout=300, **kw)


def same_run(a: Path, b: Path) -> None:
    for name in ("entity_embedding.npy", "relation_embedding.npy", "best_entity_embedding.npy", "best_relation_embedding.npy"):
        assert np.array_equal(np.load(a / name), np.load(b / name)), name
    ra, rb = (json.loads((r / "results.json").read_text()) for r in (a, b))
    metrics = ("MRR", "MR", "HITS@1", "HITS@3", "HITS@10")
    assert {k: ra["test"][k] for k in metrics} == {k: rb["test"][k] for k in metrics} and ra["step"] == rb["step"]


def digests(run: Path) -> dict:
    return {n: (run / n).read_bytes() for n in TRAINED if (run / n).is_file()}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The uninterrupted run every faulted run must equal."""
    root = tmp_path_factory.mktemp("owner")
    graph = write_graph(root / "g")
    run = root / "whole"
    res = emukg(*train_args(graph, run), *ARGS, env=env())
    assert res.returncode == 0, res.stderr
    return graph, run


# --- one writer per folder -----------------------------------------------------------------------------------
def test_two_writers_started_together_one_trains_the_other_is_refused(whole, tmp_path):
    graph, alone = whole
    for round_ in range(2):
        run = tmp_path / f"shared{round_}"
        cmd = [sys.executable, "-m", "emukg", *map(str, train_args(graph, run)), *ARGS]
        procs = [subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env())
                 for _ in range(2)]
        outs = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
        codes = sorted(code for code, _ in outs)
        refused = [err for code, err in outs if code == 2]
        assert codes == [0, 2], outs
        # started together, the second is refused while the first holds the folder (or, had the first already
        # finished, as a folder that holds a run); one line, no traceback, either way
        assert ("pid" in refused[0] and "is writing this run folder" in refused[0]) or "a run already exists" in refused[0]
        assert refused[0].count("\n") == 1 and "Traceback" not in refused[0], refused[0]
        same_run(alone, run)
        log = (run / "train.log").read_text()
        assert log.count("Start training at step 0") == 1  # one writer's log
        assert not (run / LOCK_FILE).exists()


def test_a_second_writer_is_refused_while_the_first_trains(whole, tmp_path, capsys):
    graph, _ = whole
    run = tmp_path / "busy"
    long = [*ARGS, "--max-steps", "1200", "--valid-steps", "600"]
    first = subprocess.Popen([sys.executable, "-m", "emukg", *map(str, train_args(graph, run)), *long],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO, env=env())
    try:
        deadline = time.time() + 120
        while not (run / "train.log").exists() and time.time() < deadline and first.poll() is None:
            time.sleep(0.02)
        holder = json.loads((run / LOCK_FILE).read_text())
        assert holder["pid"] == first.pid and holder["host"] == socket.gethostname()
        tried = 0
        for argv in (train_args(graph, run, *long), ["train", "--resume", run, "--device", "cpu"],
                     train_args(graph, run, *long, "--overwrite")):
            if first.poll() is not None:
                break
            code = main([str(a) for a in argv])
            err = capsys.readouterr().err
            assert code == 2 and f"pid {first.pid}" in err, err
            tried += 1
        assert tried >= 1
    finally:
        assert first.wait(timeout=300) == 0
    log = (run / "train.log").read_text()
    assert log.count("Start training at step 0") == 1 and "Resumed" not in log
    assert json.loads((run / "results.json").read_text())["step"] == 1200


def test_two_trainers_in_one_process_exclude_each_other(tmp_path):
    from emukg.training import Trainer

    graph = write_graph(tmp_path / "g")
    first = Trainer(small_config(graph, tmp_path / "run"))
    with pytest.raises(ParamError, match="this process is already writing"):
        Trainer(small_config(graph, tmp_path / "run"))
    first.fit()
    assert not (tmp_path / "run" / LOCK_FILE).exists()
    Trainer(small_config(graph, tmp_path / "run", max_steps=12, init_checkpoint=str(tmp_path / "run"))).fit()


def test_the_lock_is_released_when_the_run_fails(tmp_path):
    from emukg.errors import EmukgError
    from emukg.training import Trainer

    graph = write_graph(tmp_path / "g")
    trainer = Trainer(small_config(graph, tmp_path / "run"))
    trainer.objective = lambda *a: (torch.tensor(float("nan"), requires_grad=True), {"loss": float("nan")})
    with pytest.raises(EmukgError, match="loss became nan"):
        trainer.fit()
    assert not (tmp_path / "run" / LOCK_FILE).exists()


def test_a_killed_holders_lock_is_taken_over(whole, tmp_path):
    graph, alone = whole
    run = tmp_path / "killed"
    res = emukg(*train_args(graph, run), *ARGS, env=env(EMUKG_FAULT="train.step:9"))
    assert res.returncode == -signal.SIGKILL
    stale = json.loads((run / LOCK_FILE).read_text())
    assert stale["pid"] != os.getpid()
    res = emukg("train", "--resume", run, "--device", "cpu", env=env())
    assert res.returncode == 0, res.stderr
    assert f"Took over {LOCK_FILE} of pid {stale['pid']}" in (run / "train.log").read_text()
    assert not (run / LOCK_FILE).exists()
    same_run(alone, run)


def _no_flock(fd, op):
    raise OSError(errno.ENOLCK, "No locks available")


def test_without_flock_the_holder_line_decides(tmp_path, monkeypatch):
    monkeypatch.setattr(fcntl, "flock", _no_flock)
    folder = tmp_path / "f"
    folder.mkdir()
    lock_file = folder / LOCK_FILE
    # a live holder on this machine (this test's parent) is trusted
    lock_file.write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname()}))
    with pytest.raises(ParamError, match=f"pid {os.getppid()}.*remove"):
        FolderLock(folder).acquire()
    # a holder on another machine is trusted too: only the user knows it ended
    lock_file.write_text(json.dumps({"pid": 1, "host": "elsewhere.example"}))
    with pytest.raises(ParamError, match="elsewhere.example"):
        FolderLock(folder).acquire()
    # a holder on this machine that no longer runs is stale: taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock_file.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    lock = FolderLock(folder).acquire()
    assert lock.took_over["pid"] == int(dead.stdout)
    assert json.loads(lock_file.read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_file.exists()


def test_a_taker_that_locks_a_released_file_tries_again(tmp_path, monkeypatch):
    """The holder releases (removes the file) between a taker's open and its flock: the taker's lock is on a removed
    file, so it must open again, or a third writer could lock the new file alongside it."""
    folder = tmp_path / "f"
    folder.mkdir()
    first = FolderLock(folder).acquire()
    real, calls = fcntl.flock, []

    def flock(fd, op):
        if not calls:
            calls.append(fd)
            first.release()  # the holder ends now, after the taker opened the file
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", flock)
    monkeypatch.setattr(folder_lock, "_held", {})  # the taker stands for another process: not in this one's registry
    second = FolderLock(folder).acquire()
    monkeypatch.setattr(fcntl, "flock", real)
    assert calls and os.fstat(second._fd).st_ino == os.stat(folder / LOCK_FILE).st_ino
    third = subprocess.run([sys.executable, "-c", "import sys\nfrom emukg.folder_lock import FolderLock\n"
                            "FolderLock(sys.argv[1]).acquire()", str(folder)], capture_output=True, text=True, env=env())
    assert third.returncode != 0 and f"pid {os.getpid()}" in third.stderr, third.stderr
    second.release()


# --- checkpoints sealed -----------------------------------------------------------------------------------------
def test_a_sealed_checkpoint_reads_back_and_its_checksum_sees_one_value(tmp_path):
    state = {"step": 3, "model_state_dict": {"w": torch.arange(6.0)}, "rng": torch.ByteTensor([1, 2, 3]), "lr": 0.1}
    sealed = seal(state, {"model": {"shapes": {"w": [6]}}})
    RunFolder(tmp_path).save_torch("checkpoint", sealed)
    back = read_checkpoint(tmp_path / "checkpoint")
    assert back["integrity"] == sealed["integrity"] and checksum(back) == checksum(state)
    for change in (lambda s: s["model_state_dict"]["w"].__setitem__(2, 2.5), lambda s: s.__setitem__("step", 4),
                   lambda s: s.__setitem__("lr", 0.1000001), lambda s: s["rng"].__setitem__(0, 9)):
        altered = {**back, "model_state_dict": {"w": back["model_state_dict"]["w"].clone()}, "rng": back["rng"].clone()}
        change(altered)
        assert checksum(altered) != back["integrity"]["checksum"]


# --- faults at named points ------------------------------------------------------------------------------------
# (point, pass) pairs: a kill inside a step, after a validation's evaluation, at every stage of an atomic write
# (created, a chunk written, written and synced, renamed) and between the files of one checkpoint save
KILLS = [("train.step", 5), ("train.validation", 2), ("write.begin", 4), ("write.chunk", 9), ("write.written", 6),
         ("write.renamed", 3), ("checkpoint.between", 2), ("train.step", 17), ("write.written", 13), ("train.validation", 3)]


def test_ten_kills_at_named_moments_then_resume_is_bit_identical(whole, tmp_path):
    graph, alone = whole
    run = tmp_path / "faulted"
    cmd = [*train_args(graph, run), *ARGS]
    kills, checked = 0, 0
    for point, n in KILLS:
        before = read_checkpoint(run / "checkpoint")["step"] if (run / "checkpoint").is_file() else -1
        res = emukg(*cmd, env=env(EMUKG_FAULT=f"{point}:{n}"))
        assert res.returncode == -signal.SIGKILL, f"{point}:{n} was not reached: {res.returncode} {res.stderr[-500:]}"
        kills += 1
        # at the kill the checkpoint on disk is whole (its checksum verified): the one before, or a new one
        if (run / "checkpoint").is_file():
            assert read_checkpoint(run / "checkpoint")["step"] >= before
            checked += 1
        cmd = ["train", "--resume", run, "--device", "cpu"]
    assert kills == 10 and checked >= 8
    res = emukg(*cmd, env=env())
    assert res.returncode == 0, res.stderr
    same_run(alone, run)
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_FILE]


def test_a_disk_that_fills_during_a_checkpoint_save_changes_no_trained_file(whole, tmp_path):
    graph, _ = whole
    run = tmp_path / "full"
    assert emukg(*train_args(graph, run), *ARGS, "--max-steps", "12", env=env()).returncode == 0
    kept = digests(run)
    log = (run / "train.log").read_text()
    res = emukg("train", "--resume", run, "--device", "cpu", "--max-steps", "24", env=env(EMUKG_FAULT="write.chunk:3:enospc"))
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    assert last.startswith("emukg: error: ") and "no space left" in last, res.stderr
    assert digests(run) == kept  # no trained file changed
    assert (run / "train.log").read_text().startswith(log)  # the log only grew
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp") or p.name == LOCK_FILE]


def _tmpfs(path: Path, size: str):
    path.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root); the full-disk check runs where it can")


def test_a_nearly_full_file_system_is_refused_before_anything_is_written(tmp_path, capsys):
    graph = write_graph(tmp_path / "g", n_ent=4000)
    disk = tmp_path / "disk"
    _tmpfs(disk, "1m")
    try:
        code = main([str(a) for a in train_args(graph, disk / "run", "--hidden-dim", "64")])
        err = capsys.readouterr().err
        assert code == 2 and "--save-path" in err and "MB free" in err, err
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)])


def test_a_killed_export_leaves_a_temp_file_the_next_export_removes(whole, tmp_path):
    graph, alone = whole
    out = tmp_path / "exported"
    res = emukg("export", alone, "--out", out, "--format", "tsv", env=env(EMUKG_FAULT="write.chunk:2"))
    assert res.returncode == -signal.SIGKILL
    temps = list(out.glob(".*.tmp"))
    assert temps, "the kill inside a write left no temp file: the test no longer kills where it should"
    res = emukg("export", alone, "--out", out, "--format", "tsv", env=env())
    assert res.returncode == 0, res.stderr
    assert not list(out.glob(".*.tmp"))
    assert (out / "entity_vectors.tsv").read_text().count("\n") == 30


def test_a_live_writers_temp_file_is_kept(tmp_path):
    target = tmp_path / "out.txt"
    live = tmp_path / f".out.txt.{os.getppid()}-00000000.tmp"
    live.write_text("in progress")
    io_utils.atomic_write_text(target, "done")
    assert live.exists() and target.read_text() == "done"


# --- the mutation check -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _in_place(path):
    """A mutant of io_utils.atomic_path that writes straight into the final file."""
    path = Path(path)
    open(path, "wb").close()
    yield path


def _old_file_survives_a_failed_write(folder: Path) -> bool:
    """Write a table, then fail a second write of it part-way (no space, injected at its second chunk): True when
    the first table is still there, whole."""
    run = RunFolder(folder)
    first = np.arange(1000, dtype=np.float32)
    run.save_npy("table.npy", first)
    os.environ[io_utils.FAULT_ENV] = "write.chunk:2:enospc"
    io_utils._fault_hits.clear()
    try:
        with pytest.raises(Exception, match="no space left"):
            run.save_npy("table.npy", first + 1)
    finally:
        del os.environ[io_utils.FAULT_ENV]
        io_utils._fault_hits.clear()
    try:
        return np.array_equal(np.load(folder / "table.npy"), first)
    except (ValueError, OSError, EOFError):
        return False


def test_a_write_in_place_instead_of_atomic_makes_the_crash_test_fail(tmp_path, monkeypatch):
    assert _old_file_survives_a_failed_write(tmp_path / "atomic")
    (tmp_path / "mutant").mkdir()
    monkeypatch.setattr(io_utils, "atomic_path", _in_place)
    assert not _old_file_survives_a_failed_write(tmp_path / "mutant")


def test_a_killed_report_leaves_each_file_old_or_new_whole(whole, tmp_path):
    graph, alone = whole
    other = tmp_path / "other"
    assert emukg(*train_args(graph, other), *ARGS, "--max-steps", "12", env=env()).returncode == 0
    out, fresh = tmp_path / "report", tmp_path / "fresh"
    assert emukg("report", alone, "--out", out, env=env()).returncode == 0
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert emukg("report", alone, other, "--out", fresh, env=env()).returncode == 0
    new = {p.name: p.read_bytes() for p in fresh.iterdir()}
    assert old["results.md"] != new["results.md"]
    # killed after results.md is renamed into place, before results.csv is
    res = emukg("report", alone, other, "--out", out, env=env(EMUKG_FAULT="write.written:2"))
    assert res.returncode == -signal.SIGKILL
    for name in ("results.md", "results.csv"):
        assert (out / name).read_bytes() in (old[name], new[name]), name
    assert (out / "results.md").read_bytes() == new["results.md"] and (out / "results.csv").read_bytes() == old["results.csv"]
    assert list(out.glob(".*.tmp"))
    assert emukg("report", alone, other, "--out", out, env=env()).returncode == 0
    assert not list(out.glob(".*.tmp"))
    assert {n: (out / n).read_bytes() for n in ("results.md", "results.csv")} == {n: new[n] for n in ("results.md", "results.csv")}


def test_a_killed_study_leaves_its_finished_trials_byte_identical(tmp_path):
    from test_hpo import cli as hpo_cli, finished, write_base, write_space

    base, space, out = write_base(tmp_path, max_steps=30), write_space(tmp_path, "gamma: {float: [3.0, 9.0]}\n"), tmp_path / "out"
    first = subprocess.run(hpo_cli("--config", str(base), "--space", str(space), "--trials", "2", "--out", str(out)),
                           cwd=REPO, capture_output=True, text=True, env=env(), timeout=300)
    assert first.returncode == 0, first.stderr
    kept = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "study.db"}
    args = hpo_cli("--config", str(base), "--space", str(space), "--trials", "4", "--out", str(out))
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env(EMUKG_FAULT="train.step:7"), timeout=300)
    assert res.returncode == -signal.SIGKILL, res.stderr
    now = {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "study.db"}
    assert {k: now[k] for k in kept} == kept  # the finished trials and the study's files, byte for byte
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env(), timeout=300)
    assert res.returncode == 0, res.stderr
    assert len(finished(out)) == 4
    assert all((out / k).read_bytes() == v for k, v in kept.items() if k.startswith("trial-"))
