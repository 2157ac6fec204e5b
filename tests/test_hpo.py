"""emukg hpo: space validation, a pruned study with its outputs, resume, kill -9, two processes, best.yaml re-trains."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("optuna")

from emukg.cli import main  # noqa: E402
from emukg.search import hpo  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def write_shift_graph(folder: Path, n: int = 24, shifts=(1, 3, 5, 7)) -> Path:
    """A graph TransE learns within tens of steps: relation r maps entity h to h + shift_r (mod n)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [(h, r, (h + s) % n) for r, s in enumerate(shifts) for h in range(n)]
    random.Random(0).shuffle(rows)
    k = len(rows) // 8
    splits = {"valid": rows[:k], "test": rows[k:2 * k], "train": rows[2 * k:]}
    (folder / "entities.dict").write_text("".join(f"{i}\te{i}\n" for i in range(n)))
    (folder / "relations.dict").write_text("".join(f"{i}\tr{i}\n" for i in range(len(shifts))))
    for name, part in splits.items():
        (folder / f"{name}.txt").write_text("".join(f"e{h}\tr{r}\te{t}\n" for h, r, t in part))
    return folder


def write_base(tmp_path: Path, max_steps: int = 40, name: str = "base.yaml") -> Path:
    graph = write_shift_graph(tmp_path / "graph")
    path = tmp_path / name
    path.write_text(f"dataset: {graph}\nmodel: TransE\nhidden_dim: 8\ngamma: 6.0\nnegative_sample_size: 8\nbatch_size: 32\n"
                    f"loss: ce\nsampler: uniform\nlearning_rate: 0.1\nmax_steps: {max_steps}\nvalid_steps: 10\nlog_steps: 10\n"
                    f"save_checkpoint_steps: {max_steps}\ndevice: cpu\nthreads: 1\nseed: 3\ndo_test: false\n")
    return path


def write_space(tmp_path: Path, text: str = "learning_rate: {choice: [1.0e-9, 0.1, 0.3]}\ngamma: {float: [3.0, 9.0]}\n") -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


def states(out: Path) -> list[tuple[int, str]]:
    """(number, state) of every trial in the study's SQLite file, read directly (not through emukg)."""
    with sqlite3.connect(out / "study.db") as db:
        return sorted(db.execute("SELECT number, state FROM trials").fetchall())


def finished(out: Path) -> list[int]:
    return [n for n, s in states(out) if s in ("COMPLETE", "PRUNED")]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "emukg", "hpo", *args]


SPACE_ERRORS = [
    ("hiden_dim: {int: [4, 8]}\n", "hiden_dim: not a setting"),
    ("hidden_dim: {range: [4, 8]}\n", "unknown kind 'range'"),
    ("gamma: {float: [9.0, 3.0]}\n", "low 9.0 must be below high 3.0"),
    ("learning_rate: {float: [0.0, 0.1], log: true}\n", "a log scale needs low > 0"),
    ("model: {choice: []}\n", "choice needs a non-empty list"),
    ("hidden_dim: {float: [4, 8]}\n", "hidden_dim is an integer setting"),
    ("emu: {float: [0.1, 1.5]}\nneg_label: {float: [0.0, 1.0]}\n", "emu: 1.5: must lie in [0, 1]"),
    ("model: {choice: [TransE, RotatE]}\n", "model: 'RotatE': needs complex entity embeddings"),
    ("save_path: {choice: [a, b]}\n", "save_path: cannot be searched"),
]


@pytest.mark.parametrize("text,expected", SPACE_ERRORS, ids=[e[1].split(":")[0] for e in SPACE_ERRORS])
def test_space_errors_are_one_sentence_and_write_nothing(tmp_path, capsys, text, expected):
    base, space, out = write_base(tmp_path), write_space(tmp_path, text), tmp_path / "out"
    rc = main(["hpo", "--config", str(base), "--space", str(space), "--trials", "3", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"emukg: error: {space}: ") and expected in err, err
    assert not out.exists()


def test_missing_optuna_is_one_sentence(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # 'import optuna' raises ImportError
    out = tmp_path / "out"
    rc = main(["hpo", "--config", str(write_base(tmp_path)), "--space", str(write_space(tmp_path)), "--trials", "2", "--out", str(out)])
    assert rc == 2
    assert capsys.readouterr().err.strip() == ("emukg: error: emukg hpo needs Optuna; pip install 'emukg[hpo]' (or pip install optuna).")
    assert not out.exists()


def test_cli_help_does_not_import_optuna():
    code = "import sys; from emukg.cli import build_parser; build_parser(); print('optuna' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert res.stdout.strip() == "False", res.stderr


def test_study_prunes_writes_outputs_and_best_yaml_retrains(tmp_path, capsys):
    """8 trials over a learning rate with an absurdly small choice: the small one is pruned once two trials completed;
    trials.csv, best.yaml and the plots are written; best.yaml re-trains to the best trial's valid MRR."""
    import emukg

    out = tmp_path / "out"
    search = emukg.hpo(config=write_base(tmp_path), space=write_space(tmp_path), trials=8, out=out, seed=0, n_startup_trials=2)
    st = states(out)
    assert [n for n, _ in st] == list(range(8)) and all(s in ("COMPLETE", "PRUNED") for _, s in st)
    assert any(s == "PRUNED" for _, s in st), st
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert [int(r["number"]) for r in rows] == list(range(8))
    assert {r["state"] for r in rows} == {s for _, s in st}
    for r in rows:
        assert Path(r["run_folder"]).name == f"trial-{r['number']}" and (Path(r["run_folder"]) / "config.json").is_file()
        assert float(r["duration_s"]) > 0 and r["learning_rate"] and r["gamma"]
    pruned = [r for r in rows if r["state"] == "PRUNED"]
    assert all(r["note"].startswith("pruned at step") and r["value"] for r in pruned)
    # the untrainable rate (its MRR stays the initial model's) is always below the median once two trials completed
    tiny = [r for r in rows if float(r["learning_rate"]) == 1e-9 and int(r["number"]) >= 2]
    assert tiny and all(r["state"] == "PRUNED" for r in tiny)
    for name in ("history.png", "importances.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    best_row = max((r for r in rows if r["state"] == "COMPLETE"), key=lambda r: float(r["value"]))
    assert search.best_value == pytest.approx(float(best_row["value"]), abs=0) and search.best_value > 0.15
    # best.yaml: the base plus the best settings, no save_path; emukg train repeats the best trial exactly
    text = (out / "best.yaml").read_text()
    assert "save_path" not in text and f"learning_rate: {best_row['learning_rate']}" in text
    capsys.readouterr()
    again = tmp_path / "again"
    assert main(["train", "--config", str(out / "best.yaml"), "--save-path", str(again)]) == 0
    mrr = json.loads((again / "results.json").read_text())["valid"]["MRR"]
    assert abs(mrr - float(best_row["value"])) <= 1e-6


def test_resume_runs_only_the_missing_trials(tmp_path):
    base, space, out = write_base(tmp_path), write_space(tmp_path, "gamma: {float: [3.0, 9.0]}\n"), tmp_path / "out"
    first = hpo(config=base, space=space, trials=3, out=out)
    assert first.ran == 3 and finished(out) == [0, 1, 2]
    stamps = {n: (out / f"trial-{n}" / "results.json").stat().st_mtime_ns for n in range(3)}
    second = hpo(config=base, space=space, trials=5, out=out)
    assert second.ran == 2 and finished(out) == [0, 1, 2, 3, 4] and len(states(out)) == 5
    assert stamps == {n: (out / f"trial-{n}" / "results.json").stat().st_mtime_ns for n in range(3)}
    # a study remembers its space: continuing it with another one is refused
    with pytest.raises(Exception, match="differs from what study 'base' was started with"):
        hpo(config=base, space=write_space(tmp_path, "gamma: {float: [3.0, 8.0]}\n"), trials=6, out=out)


def _wait_for_complete(out: Path, proc: subprocess.Popen, timeout: float = 90) -> None:
    """Until one trial completed and the next one is under way (it recorded its process)."""
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if (out / "study.db").is_file():
            try:
                with sqlite3.connect(out / "study.db") as db:
                    running = db.execute("SELECT count(*) FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                                         "WHERE t.state = 'RUNNING' AND a.key = 'pid'").fetchone()[0]
                if running and any(s == "COMPLETE" for _, s in states(out)):
                    return
            except sqlite3.Error:
                pass
        time.sleep(0.05)
    raise AssertionError(f"no trial completed (exit status {proc.poll()}): {proc.stderr.read() if proc.poll() is not None else ''}")


def test_kill_9_then_rerun_finishes_without_repeating(tmp_path):
    base, space, out = write_base(tmp_path, max_steps=150), write_space(tmp_path, "gamma: {float: [3.0, 9.0]}\n"), tmp_path / "out"
    args = cli("--config", str(base), "--space", str(space), "--trials", "5", "--out", str(out))
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_complete(out, proc)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = [n for n, s in states(out) if s == "COMPLETE"]
    assert done and len(done) < 5
    stamps = {n: (out / f"trial-{n}" / "results.json").stat().st_mtime_ns for n in done}
    res = subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    st = states(out)
    assert len(finished(out)) == 5
    numbers = [n for n, _ in st]
    assert numbers == sorted(set(numbers))  # no number twice
    assert all(s in ("COMPLETE", "PRUNED", "FAIL") for _, s in st)  # the killed trial, if any, is FAIL, not RUNNING
    assert stamps == {n: (out / f"trial-{n}" / "results.json").stat().st_mtime_ns for n in done}
    assert sum(s == "FAIL" for _, s in st) == 1 and "were left running by a process that ended" in res.stderr


def test_two_processes_share_one_study(tmp_path):
    base, space, out = write_base(tmp_path, max_steps=100), write_space(tmp_path, "gamma: {float: [3.0, 9.0]}\n"), tmp_path / "out"
    out.mkdir()
    hpo(config=base, space=space, trials=1, out=out)  # creates the study (both processes then load it)
    args = cli("--config", str(base), "--space", str(space), "--trials", "7", "--out", str(out))
    procs = [subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert len(finished(out)) == 7
    assert all(s != "RUNNING" for _, s in states(out))


def test_combination_refused_by_config_fails_the_trial_with_its_reason(tmp_path):
    space = write_space(tmp_path, "model: {choice: [RotatE]}\ndouble_entity_embedding: {choice: [false]}\n")
    out = tmp_path / "out"
    with pytest.raises(Exception, match=r"10 trials in a row failed \(last: settings refused: model='RotatE': needs complex"):
        hpo(config=write_base(tmp_path), space=space, trials=2, out=out)
    rows = list(csv.DictReader((out / "trials.csv").open()))
    assert rows and all(r["state"] == "FAIL" and "double_entity_embedding" in r["note"] for r in rows)


def test_refusals_name_the_parameter_and_the_cli_its_flag(tmp_path, capsys):
    """hpo(out=FILE) is refused about ``out`` (``--out`` from emukg hpo); likewise storage, space and config."""
    from emukg.errors import ParamError

    base, space, file = write_base(tmp_path), write_space(tmp_path), tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(ParamError) as exc:
        hpo(config=base, space=space, trials=1, out=file)
    assert str(exc.value) == f"out={str(file)!r}: is a file; give a folder for the trials and results."
    assert exc.value.render("cli") == f"--out {file}: is a file; give a folder for the trials and results."
    assert main(["hpo", "--config", str(base), "--space", str(space), "--trials", "1", "--out", str(file)]) == 2
    assert f"emukg: error: --out {file}: is a file;" in capsys.readouterr().err
    with pytest.raises(ParamError, match=r"^storage='study\.db': not a database URL;"):
        hpo(config=base, space=space, trials=1, out=tmp_path / "o", storage="study.db")
    assert main(["hpo", "--config", str(base), "--space", str(space), "--trials", "1", "--out", str(tmp_path / "o"),
                 "--storage", "study.db"]) == 2
    assert "emukg: error: --storage study.db: not a database URL;" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    for kwargs, python, flag in ((dict(config=base, space=missing), "space", "--space"),
                                 (dict(config=missing, space=space), "config", "--config")):
        with pytest.raises(ParamError) as exc:
            hpo(trials=1, out=tmp_path / "o", **kwargs)
        assert str(exc.value) == f"{python}={str(missing)!r}: file not found; give the path of a YAML file."
        argv = ["hpo", "--config", str(kwargs["config"]), "--space", str(kwargs["space"]), "--trials", "1"]
        assert main(argv + ["--out", str(tmp_path / "o")]) == 2
        assert f"emukg: error: {flag} {missing}: file not found;" in capsys.readouterr().err


@pytest.mark.parametrize("storage", ["notadb://x", "study.db"])
def test_a_refused_storage_leaves_no_output_folder(tmp_path, storage):
    from emukg.errors import ParamError

    out = tmp_path / "new" / "study"
    with pytest.raises(ParamError, match="^storage="):
        hpo(config=write_base(tmp_path), space=write_space(tmp_path), trials=1, out=out, storage=storage)
    assert not out.exists()


def test_a_new_sqlite_storage_opened_by_many_processes_at_once(tmp_path):
    """Optuna creates the schema on first open; without the lock two processes racing on a new file fail on
    alembic_version's UNIQUE constraint. Eight processes start together; every one must open the storage."""
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'study.db'}"
    start = time.time() + 3
    code = ("import sys, time; from pathlib import Path; from emukg.search import _open_storage; "
            f"time.sleep(max(0, {start} - time.time())); _open_storage({url!r}, Path({str(tmp_path)!r})); print('ok')")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(8)]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 and out.strip() == "ok" for p, (out, _) in zip(procs, results)), [e for _, e in results]
