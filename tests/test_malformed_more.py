"""Issue 23: a further table of bad inputs, each refused the way tests/test_malformed.py checks (exit status 2, one
sentence naming what is wrong, no traceback, nothing written, no trained file changed).

Kinds: paths that are not plain files or folders (FIFOs, devices, link loops, the kernel's file systems, names too
long), run folders whose checkpoint was altered or belongs to another run, data other than the run's, a folder
another process is writing, memory beyond the machine or ``--max-memory-gb``, empty splits, further flags, YAML
values and Python API types.  ``test_case_counts`` prints the count per kind (the table of the issue's note).
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emukg.config import Config

from test_malformed import (  # noqa: F401  (shared is a fixture)
    ENTITIES, RELATIONS, TEST, TRAIN, VALID, WS, Case, make_ws, run_case, shared, train_argv, write_data,
)
from test_malformed import yc as base_yc

REPO = Path(__file__).resolve().parents[1]


# --- the workspace: the shared run and graph, plus two runs of the same shapes that belong elsewhere ----------
@pytest.fixture(scope="module")
def others(shared):
    """``distmult``: a DistMult run of the shared run's shapes on the same graph; ``renamed``: a graph of the same
    counts whose entities are named otherwise, and ``reordered``: the same names in another id order."""
    from emukg.training import train

    root = shared / "others"
    renamed = write_data(root / "renamed", entities="".join(f"{i}\tx{i}\n" for i in range(10)),
                         train="".join(f"{h.replace('e', 'x')}\t{r}\t{t.replace('e', 'x')}\n" for h, r, t in TRAIN),
                         valid="".join(f"{h.replace('e', 'x')}\t{r}\t{t.replace('e', 'x')}\n" for h, r, t in VALID),
                         test="".join(f"{h.replace('e', 'x')}\t{r}\t{t.replace('e', 'x')}\n" for h, r, t in TEST))
    reordered = write_data(root / "reordered", entities="".join(f"{i}\t{e}\n" for i, e in enumerate(reversed(ENTITIES))))
    cfg = dict(dataset=str(shared / "g"), model="DistMult", hidden_dim=8, gamma=6.0, negative_sample_size=4,
               batch_size=8, loss="ce", sampler="uniform", learning_rate=0.05, max_steps=4, valid_steps=2, log_steps=2,
               save_checkpoint_steps=2, save_path=str(root / "distmult"), device="cpu", progress=False, seed=1)
    train(Config.from_dict(cfg))
    return {"distmult": root / "distmult", "renamed": renamed, "reordered": reordered}


class MoreWS(WS):
    others: dict
    holders: list

    def fifo(self, name: str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        return str(path)

    def link(self, name: str, target: str) -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, path)
        return str(path)

    def loop(self, name: str) -> str:
        return self.link(name, str(self.root / name))

    def run_with(self, name: str, path: str) -> str:
        """A copy of the shared run whose file ``name`` is replaced by ``path`` made by a maker (fifo/link)."""
        run = self.copy_run(f"run_{Path(path).name}")
        (run / name).unlink()
        return str(run)

    def hold(self, folder: str) -> str:
        """Start a process that takes ``folder``'s writer lock and keeps it (stopped after the case)."""
        code = ("import sys, time\nfrom emukg.folder_lock import FolderLock\nFolderLock(sys.argv[1]).acquire()\n"
                "print('held', flush=True)\ntime.sleep(300)\n")
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
        proc = subprocess.Popen([sys.executable, "-c", code, folder], stdout=subprocess.PIPE, text=True, env=env)
        assert proc.stdout.readline().strip() == "held"
        self.holders.append(proc)
        return folder


@pytest.fixture
def ws(shared, others, tmp_path, monkeypatch):
    space = make_ws(shared, tmp_path, monkeypatch, MoreWS)
    space.others, space.holders = others, []
    yield space
    for proc in space.holders:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


# --- helpers that alter a copy of the shared run ---------------------------------------------------------------
def _altered(ws: MoreWS, name: str, change) -> str:
    """A copy of the run whose checkpoint ``name`` is loaded, changed by ``change(state)`` and saved again with its
    old integrity record (an intact file whose contents no longer match it)."""
    run = ws.copy_run(f"altered_{name}")
    state = torch.load(run / name, weights_only=True)
    change(state)
    torch.save(state, run / name)
    return str(run)


def _flip_raw(ws: MoreWS, name: str) -> str:
    """A copy of the run with one byte of the entity table flipped in the file itself, its zip left as it is (torch
    checks no CRC when it loads, so only the checkpoint's own checksum can tell)."""
    import struct
    import zipfile

    run = ws.copy_run(f"raw_{name}")
    path = run / name
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    raw = bytearray(path.read_bytes())
    n, m = struct.unpack("<HH", raw[info.header_offset + 26:info.header_offset + 30])
    raw[info.header_offset + 30 + n + m + 5] ^= 0x40
    path.write_bytes(bytes(raw))
    return str(run)


def _flip(state):
    table = state["model_state_dict"]["entity_embedding"]
    table.view(-1)[3] = -table.view(-1)[3] + 1.0


def _step(state):
    state["step"] = state["step"] + 1


def _seal(state):
    state["integrity"] = "damaged"


def _swap(ws: MoreWS, source: Path, *names: str) -> str:
    """A copy of the shared run whose checkpoint files come from another run ``source``."""
    run = ws.copy_run("swapped")
    for name in names:
        (run / name).write_bytes((source / name).read_bytes())
    return str(run)


def _resume(ws: MoreWS, run: str, *extra: str) -> list[str]:
    return ["train", "--resume", run, "--device", "cpu", "--no-progress", *extra]


def _evaluate(run: str, *extra: str) -> list[str]:
    return ["evaluate", run, "--device", "cpu", *extra]


def _predict(run: str, *extra: str) -> list[str]:
    return ["predict", run, "--head", "e1", "--relation", "r0", "--device", "cpu", *extra]


def _export(ws: MoreWS, run: str, *extra: str) -> list[str]:
    return ["export", run, "--out", ws.p("exported"), *extra]


def tc(case_id: str, *extra: str, expect: tuple[str, ...] = ()) -> Case:
    return Case(f"train:{case_id}", "cli", lambda ws: train_argv(ws, *extra), expect)


def yc(case_id: str, text: str, key: str) -> Case:
    """A ``--config`` case (tests/test_malformed.py's: the small settings in the YAML file, not as flags)."""
    return base_yc(case_id, text, key or None)


def api(case_id: str, call, expect: tuple[str, ...] = ()) -> Case:
    return Case(f"api:{case_id}", "api", lambda ws: call, expect)


LONG = "n" * 300

PATH_CASES = [
    Case("path:save-path-is-a-fifo", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.fifo("pipe")], ("FIFO",)),
    Case("path:save-path-under-a-fifo", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.fifo("pipe") + "/run"],
         ("FIFO",)),
    Case("path:save-path-is-a-device", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", "/dev/null"], ("device",)),
    Case("path:save-path-link-to-a-device", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.link("zero", "/dev/zero")],
         ("device",)),
    Case("path:save-path-in-proc", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", "/proc/emukg_run"], ("kernel",)),
    Case("path:save-path-in-sys", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", "/sys/emukg_run"], ("kernel",)),
    Case("path:save-path-name-too-long", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.p(LONG)], ("too long",)),
    Case("path:save-path-too-long", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.p("/".join(["d" * 200] * 22))],
         ("long",)),
    Case("path:save-path-link-loop", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.loop("loop")], ("loop",)),
    Case("path:save-path-under-a-link-loop", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.loop("loop") + "/run"],
         ("loop",)),
    Case("path:save-path-broken-link", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.link("dangling", ws.p("nowhere/x"))],
         ("broken",)),
    Case("path:dataset-is-a-fifo", "cli", lambda ws: train_argv(ws, dataset=ws.fifo("data_pipe")), ("FIFO",)),
    Case("path:dataset-link-to-a-device", "cli", lambda ws: train_argv(ws, dataset=ws.link("zero", "/dev/zero")), ("device",)),
    Case("path:dataset-link-loop", "cli", lambda ws: train_argv(ws, dataset=ws.loop("loop")), ("loop",)),
    Case("path:dataset-in-proc", "cli", lambda ws: train_argv(ws, dataset="/proc/self"), ("kernel",)),
    Case("path:train-txt-is-a-fifo", "cli", lambda ws: train_argv(ws, dataset=[ws.data(skip=("train.txt",)), ws.fifo("d/train.txt")][0]),
         ("train.txt", "FIFO")),
    Case("path:valid-txt-link-to-a-device", "cli",
         lambda ws: train_argv(ws, dataset=[ws.data(skip=("valid.txt",)), ws.link("d/valid.txt", "/dev/zero")][0]),
         ("valid.txt", "device")),
    Case("path:test-txt-link-loop", "cli", lambda ws: train_argv(ws, dataset=[ws.data(skip=("test.txt",)), ws.loop("d/test.txt")][0]),
         ("test.txt", "loop")),
    Case("path:entities-dict-is-a-fifo", "cli",
         lambda ws: train_argv(ws, dataset=[ws.data(skip=("entities.dict",)), ws.fifo("d/entities.dict")][0]),
         ("entities.dict", "FIFO")),
    Case("path:datasets-info-fifo", "cli", lambda ws: ["datasets", "info", ws.fifo("data_pipe")], ("FIFO",)),
    Case("path:evaluate-json-is-a-device", "cli", lambda ws: _evaluate(str(ws.run), "--json", "/dev/null"), ("--json", "device")),
    Case("path:evaluate-json-is-a-fifo", "cli", lambda ws: _evaluate(str(ws.run), "--json", ws.fifo("out.json")), ("--json", "FIFO")),
    Case("path:evaluate-json-name-too-long", "cli", lambda ws: _evaluate(str(ws.run), "--json", ws.p(LONG + ".json")),
         ("--json", "too long")),
    Case("path:evaluate-json-in-proc", "cli", lambda ws: _evaluate(str(ws.run), "--json", "/proc/emukg.json"), ("--json", "kernel")),
    Case("path:datasets-info-json-device", "cli", lambda ws: ["datasets", "info", str(ws.graph), "--json", "/dev/null"],
         ("--json", "device")),
    Case("path:export-out-is-a-device", "cli", lambda ws: ["export", str(ws.run), "--out", "/dev/null"], ("--out",)),
    Case("path:export-out-in-proc", "cli", lambda ws: ["export", str(ws.run), "--out", "/proc/emukg_export"], ("--out",)),
    Case("path:export-out-name-too-long", "cli", lambda ws: ["export", str(ws.run), "--out", ws.p(LONG)], ("--out", "too long")),
    Case("path:report-out-name-too-long", "cli", lambda ws: ["report", str(ws.run), "--out", ws.p(LONG)], ("--out", "too long")),
    Case("path:report-out-in-proc", "cli", lambda ws: ["report", str(ws.run), "--out", "/proc/emukg_report"], ("--out", "kernel")),
    Case("path:evaluate-run-is-a-fifo", "cli", lambda ws: _evaluate(ws.fifo("run_pipe")), ("run_pipe",)),
    Case("path:evaluate-run-link-loop", "cli", lambda ws: _evaluate(ws.loop("run_loop")), ("run_loop",)),
    Case("path:checkpoint-is-a-fifo", "cli",
         lambda ws: _evaluate([r := ws.copy_run("fifo_ckpt"), (r / "best_model").unlink(), (r / "checkpoint").unlink(),
                               os.mkfifo(r / "checkpoint")][0].__str__()), ("checkpoint", "FIFO")),
    Case("path:resume-save-path-name-too-long", "cli", lambda ws: ["train", "--resume", ws.p(LONG)], ("--resume",)),
]

INTEGRITY_CASES = [
    Case("run:evaluate-tensor-bytes-changed", "cli", lambda ws: _evaluate(_altered(ws, "best_model", _flip)), ("best_model", "checksum")),
    Case("run:evaluate-byte-flipped-in-the-file", "cli", lambda ws: _evaluate(_flip_raw(ws, "best_model")), ("checksum",)),
    Case("run:resume-byte-flipped-in-the-file", "cli", lambda ws: _resume(ws, _flip_raw(ws, "checkpoint"), "--max-steps", "6"),
         ("checksum",)),
    Case("run:evaluate-last-tensor-bytes-changed", "cli",
         lambda ws: _evaluate(_altered(ws, "checkpoint", _flip), "--checkpoint", "last"), ("checkpoint", "checksum")),
    Case("run:predict-tensor-bytes-changed", "cli", lambda ws: _predict(_altered(ws, "best_model", _flip)), ("checksum",)),
    Case("run:export-tensor-bytes-changed", "cli", lambda ws: _export(ws, _altered(ws, "best_model", _flip)), ("checksum",)),
    Case("run:resume-tensor-bytes-changed", "cli", lambda ws: _resume(ws, _altered(ws, "checkpoint", _flip), "--max-steps", "6"),
         ("checkpoint", "checksum")),
    Case("run:resume-step-changed", "cli", lambda ws: _resume(ws, _altered(ws, "checkpoint", _step), "--max-steps", "6"),
         ("checksum",)),
    Case("run:evaluate-integrity-record-damaged", "cli", lambda ws: _evaluate(_altered(ws, "best_model", _seal)), ("integrity",)),
    Case("run:resume-checkpoint-of-another-model", "cli",
         lambda ws: _resume(ws, _swap(ws, ws.others["distmult"], "checkpoint"), "--max-steps", "6"),
         ("another run", "model")),
    Case("run:evaluate-checkpoint-of-another-model", "cli",
         lambda ws: _evaluate(_swap(ws, ws.others["distmult"], "checkpoint", "best_model")), ("another run", "model")),
    Case("run:predict-checkpoint-of-another-model", "cli",
         lambda ws: _predict(_swap(ws, ws.others["distmult"], "checkpoint", "best_model")), ("another run",)),
    Case("run:export-checkpoint-of-another-model", "cli",
         lambda ws: _export(ws, _swap(ws, ws.others["distmult"], "checkpoint", "best_model")), ("another run",)),
    Case("run:evaluate-on-renamed-data", "cli", lambda ws: _evaluate(str(ws.run), "--dataset", str(ws.others["renamed"])),
         ("--dataset", "entities")),
    Case("run:evaluate-on-reordered-data", "cli", lambda ws: _evaluate(str(ws.run), "--dataset", str(ws.others["reordered"])),
         ("--dataset", "order")),
    Case("run:predict-on-renamed-data", "cli", lambda ws: _predict(str(ws.run), "--dataset", str(ws.others["renamed"])),
         ("--dataset",)),
    Case("run:resume-on-renamed-data", "cli", lambda ws: _resume(ws, str(ws.copy_run()), "--dataset", str(ws.others["renamed"])),
         ("--dataset",)),
    Case("run:train-into-a-folder-being-written", "cli",
         lambda ws: train_argv(ws, save=None) + ["--save-path", ws.hold(ws.folder("busy"))], ("--save-path", "pid")),
    Case("run:resume-of-a-run-being-written", "cli",
         lambda ws: _resume(ws, ws.hold(str(ws.copy_run())), "--max-steps", "6"), ("pid", "writing")),
    Case("run:overwrite-of-a-run-being-written", "cli",
         lambda ws: train_argv(ws, save=None) + ["--save-path", ws.hold(str(ws.copy_run())), "--overwrite"], ("pid",)),
    Case("legacy:evaluate-a-run-being-written", "legacy",
         lambda ws: ["--do_test", "-init", ws.hold(str(ws.copy_run())), "--no_progress"], ("-init", "pid")),
]

MEMORY_CASES = [
    tc("max-memory-gb-0", "--max-memory-gb", "0", expect=("--max-memory-gb",)),
    tc("max-memory-gb-neg", "--max-memory-gb", "-1", expect=("--max-memory-gb",)),
    tc("max-memory-gb-nan", "--max-memory-gb", "nan", expect=("--max-memory-gb",)),
    tc("max-memory-gb-inf", "--max-memory-gb", "inf", expect=("--max-memory-gb",)),
    tc("max-memory-gb-text", "--max-memory-gb", "lots", expect=("--max-memory-gb",)),
    tc("beyond-max-memory-gb", "--max-memory-gb", "0.001", expect=("--max-memory-gb", "GB")),
    tc("step-beyond-max-memory", "--batch-size", "1000", "--negative-sample-size", "100000", "--max-memory-gb", "1",
       expect=("--negative-sample-size", "--batch-size")),
    tc("step-beyond-the-machine", "--batch-size", "100000", "--negative-sample-size", "100000",
       expect=("--negative-sample-size", "machine")),
    tc("eval-chunk-beyond-max-memory", "--eval-memory-mb", "4000", "--max-memory-gb", "1", expect=("--eval-memory-mb",)),
    tc("1vsall-block-beyond-the-machine", "--loss", "1vsall", "--train-memory-mb", "100000000", expect=("--train-memory-mb",)),
    tc("nbfnet-block-beyond-the-machine", "--model", "NBFNet", "--train-memory-mb", "100000000", expect=("--train-memory-mb",)),
    tc("sans-table-beyond-the-machine", "--sampler", "sans", "--sans-memory-mb", "100000000", expect=("--sans-memory-mb",)),
]

SPLIT_CASES = [
    Case("split:empty-valid", "cli", lambda ws: train_argv(ws, dataset=ws.data(valid="")), ("valid", "--do-valid")),
    Case("split:empty-test", "cli", lambda ws: train_argv(ws, dataset=ws.data(test="")), ("test", "--do-test")),
    Case("split:blank-valid", "cli", lambda ws: train_argv(ws, dataset=ws.data(valid="\n\n\n")), ("valid",)),
    Case("split:empty-test-without-valid", "cli", lambda ws: train_argv(ws, "--no-do-valid", dataset=ws.data(test="")), ("test",)),
    Case("legacy:empty-valid", "legacy",
         lambda ws: ["--do_train", "--do_valid", "--data_path", ws.data(valid=""), "-save", ws.p("run"), "--model", "TransE",
                     "-d", "8", "-n", "4", "-b", "8", "--max_steps", "2", "-if_CE", "1", "-lr", "0.05", "--no_progress"],
         ("valid",)),
]

FLAG_CASES = [
    tc("batch-size-huge-int", "--batch-size", "9" * 25, expect=("--batch-size",)),
    tc("seed-2-63", "--seed", str(2 ** 63), expect=("--seed",)),
    tc("learning-rate-underflows", "--learning-rate", "1e-400", expect=("--learning-rate",)),
    tc("threads-neg", "--threads", "-1", expect=("--threads",)),
    tc("log-steps-0", "--log-steps", "0", expect=("--log-steps",)),
    tc("valid-steps-0", "--valid-steps", "0", expect=("--valid-steps",)),
    tc("save-checkpoint-steps-0", "--save-checkpoint-steps", "0", expect=("--save-checkpoint-steps",)),
    tc("eval-memory-mb-0", "--eval-memory-mb", "0", expect=("--eval-memory-mb",)),
    tc("test-batch-size-0", "--test-batch-size", "0", expect=("--test-batch-size",)),
    tc("khop-0", "--sampler", "sans", "--khop", "0", expect=("--khop",)),
    tc("num-random-walks-neg", "--sampler", "sans", "--num-random-walks", "-1", expect=("--num-random-walks",)),
    tc("walk-mode-sideways", "--walk-mode", "sideways", expect=("--walk-mode",)),
    tc("schedule-nonsense", "--schedule", "nonsense", expect=("--schedule",)),
    tc("lr-decay-1.5", "--schedule", "step", "--lr-decay", "1.5", expect=("--lr-decay",)),
    tc("lr-decay-0", "--schedule", "step", "--lr-decay", "0", expect=("--lr-decay",)),
    tc("lr-patience-0", "--schedule", "plateau", "--lr-patience", "0", expect=("--lr-patience",)),
    tc("lr-min-neg", "--schedule", "cosine", "--lr-min", "-1", expect=("--lr-min",)),
    tc("early-stop-patience-0", "--early-stop-patience", "0", expect=("--early-stop-patience",)),
    tc("early-stop-min-delta-neg", "--early-stop-patience", "2", "--early-stop-min-delta", "-1", expect=("--early-stop-min-delta",)),
    tc("plateau-without-valid", "--schedule", "plateau", "--no-do-valid", expect=("--do-valid",)),
    tc("early-stop-without-valid", "--early-stop-patience", "3", "--no-do-valid", expect=("--do-valid",)),
    tc("sparse-with-1vsall", "--loss", "1vsall", "--sparse", expect=("--sparse",)),
    tc("sparse-with-regularization", "--sparse", "--regularization", "0.1", expect=("--sparse", "--regularization")),
    tc("adversarial-sampler-nonsense", "--adversarial-sampler", "nonsense", expect=("--adversarial-sampler",)),
    tc("modulus-weight-on-transe", "--modulus-weight", "1", expect=("--modulus-weight",)),
    tc("hake-modulus-weight-neg", "--model", "HAKE", "--modulus-weight", "-1",
       expect=("--modulus-weight",)),
    tc("tracker-nonsense", "--tracker", "nonsense", expect=("--tracker",)),
    tc("max-steps-fraction", "--max-steps", "1.5", expect=("--max-steps",)),
    tc("emu-nan", "--emu", "nan", "--neg-label", "0.5", expect=("--emu",)),
    tc("neg-label-nan", "--emu", "0.3", "--neg-label", "nan", expect=("--neg-label",)),
    tc("ce-coef-neg", "--ce-coef", "-1", expect=("--ce-coef",)),
    tc("ce-coef-nan", "--ce-coef", "nan", expect=("--ce-coef",)),
    tc("ce-coef-beyond-limit", "--ce-coef", "1e7", expect=("--ce-coef",)),
    tc("regularization-beyond-limit", "--regularization", "1e7", expect=("--regularization",)),
    tc("adversarial-temperature-beyond-limit", "--adversarial-temperature", "1e7", expect=("--adversarial-temperature",)),
    tc("uni-weight-with-a-value", "--uni-weight", "yes"),
    tc("tie-policy-empty", "--tie-policy", "", expect=("--tie-policy",)),
    tc("eval-protocol-nonsense", "--eval-protocol", "nonsense", expect=("--eval-protocol",)),
    Case("train:dataset-empty", "cli", lambda ws: train_argv(ws, dataset=False) + ["--dataset", ""], ("--dataset",)),
    Case("train:save-path-empty", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ""], ("--save-path",)),
    Case("train:resume-on-changed-data", "cli",
         lambda ws: _resume(ws, str(ws.copy_run()), "--dataset", ws.data(train="".join("\t".join(t) + "\n" for t in TRAIN[:-1]))),
         ("--dataset",)),
]

YAML_CASES = [
    yc("max_memory_gb-text", "max_memory_gb: lots\n", "max_memory_gb"),
    yc("max_memory_gb-negative", "max_memory_gb: -3\n", "max_memory_gb"),
    yc("a-bare-scalar", "5\n", ""),
    Case("yaml:non-utf8", "cli", lambda ws: train_argv(ws, "--config", [(ws.root / "cfg.yaml").write_bytes(b"seed: \xff\xfe\n"),
                                                                      str(ws.root / "cfg.yaml")][1]), ("cfg.yaml", "UTF-8")),
    yc("nested-mapping-value", "hidden_dim: {a: 1}\n", "hidden_dim"),
    yc("gamma-boolean", "gamma: true\n", "gamma"),
    yc("seed-beyond-2-64", f"seed: {2 ** 64}\n", "seed"),
    yc("model-number", "model: 5\n", "model"),
    yc("sampler-list", "sampler: [uniform]\n", "sampler"),
    yc("device-null", "device: null\n", "device"),
    yc("max_steps-negative", "max_steps: -1\n", "max_steps"),
    yc("misspelt-key", "hiddn_dim: 8\n", "hiddn_dim"),
    yc("alias-bomb", "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
       "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nhidden_dim: [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n", ""),
    yc("python-object-tag", "hidden_dim: !!python/object/apply:os.system ['true']\n", ""),
    yc("tab-indentation", "hidden_dim:\n\t8\n", ""),
    yc("emu-text", "emu: lots\nneg_label: 0.5\n", "emu"),
]


def _load(ws, run=None, **kw):
    import emukg

    return emukg.load(str(run or ws.run), **kw)


API_CASES = [
    api("config-hidden_dim-bool", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), hidden_dim=True)), ("hidden_dim",)),
    api("config-hidden_dim-array", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), hidden_dim=[8])), ("hidden_dim",)),
    api("config-learning_rate-text", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), learning_rate="fast")),
        ("learning_rate",)),
    api("config-max_memory_gb-text", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), max_memory_gb="a lot")),
        ("max_memory_gb",)),
    api("config-max_memory_gb-0", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), max_memory_gb=0)), ("max_memory_gb",)),
    api("config-model-none", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), model=None)), ("model",)),
    api("config-seed-huge", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), seed=2 ** 70)), ("seed",)),
    api("config-gamma-complex", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), gamma=1j)), ("gamma",)),
    api("config-batch-size-tensor-vector", lambda ws: Config.from_dict(dict(dataset=str(ws.graph), batch_size=torch.tensor([8, 8]))),
        ("batch_size",)),
    api("predict-head-float", lambda ws: _load(ws).predict(head=1.5, relation="r0"), ("head",)),
    api("predict-relation-missing", lambda ws: _load(ws).predict(head="e1"), ("relation",)),
    api("predict-top_k-negative", lambda ws: _load(ws).predict(head="e1", relation="r0", top_k=-1), ("top_k",)),
    api("predict-head-id-out-of-range", lambda ws: _load(ws).predict(head=10 ** 6, relation="r0"), ("head",)),
    api("load-checkpoint-middle", lambda ws: _load(ws, checkpoint="middle"), ("checkpoint",)),
    api("load-device-tpu", lambda ws: _load(ws, device="tpu"), ("device",)),
    Case("api:load-a-fifo", "api", lambda ws: (lambda ws, p=ws.fifo("api_pipe"): _load(ws, run=p)), ("api_pipe",)),
    Case("api:load-other-model-checkpoint", "api",
         lambda ws: (lambda ws, p=_swap(ws, ws.others["distmult"], "checkpoint", "best_model"): _load(ws, run=p)), ("another run",)),
    api("load-renamed-data", lambda ws: _load(ws, dataset=str(ws.others["renamed"])), ("dataset",)),
    Case("api:load-tensor-bytes-changed", "api",
         lambda ws: (lambda ws, p=_altered(ws, "best_model", _flip): _load(ws, run=p)), ("checksum",)),
    api("evaluate-split-dev", lambda ws: _load(ws).evaluate("dev"), ("split",)),
    api("evaluate-tie-policy-best", lambda ws: _load(ws).evaluate("test", tie_policy="best"), ("tie_policy",)),
]

CASES = PATH_CASES + INTEGRITY_CASES + MEMORY_CASES + SPLIT_CASES + FLAG_CASES + YAML_CASES + API_CASES


def test_case_counts(capsys):
    kinds = collections.Counter(c.id.split(":")[0] if c.id.split(":")[0] not in ("train", "legacy") else
                                ("run" if c in INTEGRITY_CASES else "split" if c in SPLIT_CASES else
                                 "memory" if c in MEMORY_CASES else "flags") for c in CASES)
    with capsys.disabled():
        print("\nfurther bad-input cases by kind:", dict(sorted(kinds.items())), "total", len(CASES))
    assert len(CASES) >= 100 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(case: Case, ws: MoreWS, capsys):
    run_case(case, ws, capsys)
