"""Issue 10: every malformed input is refused the same way.

Exit status 2, one sentence on stderr (``emukg: error: ...`` / ``run.py: error: ...``), no traceback, and nothing
written: no run folder, no partial file, no empty folder.  The table below covers the data files, the flags of
``emukg train``, YAML configs, run folders and output paths, the reference's command line and the Python API.

Each case prepares what it needs inside the test's ``tmp_path`` first; the whole tree under ``tmp_path`` (and the
shared tiny dataset and trained run) is then snapshotted, the command runs, and the tree must be unchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from emukg.cli import main as cli_main
from emukg.config import Config
from emukg.errors import EmukgError
from emukg.commands.legacy import run_legacy

REPO = Path(__file__).resolve().parents[1]

ENTITIES = [f"e{i}" for i in range(10)]
RELATIONS = ["r0", "r1", "r2"]


def _triples(n: int, offset: int = 0) -> list[tuple[str, str, str]]:
    return [(ENTITIES[(i + offset) % 10], RELATIONS[i % 3], ENTITIES[(3 * i + 1 + offset) % 10]) for i in range(n)]


TRAIN, VALID, TEST = _triples(30), _triples(4, offset=5), _triples(4, offset=7)


def write_data(folder: Path, *, entities: str | None = None, relations: str | None = None,
               train: str | bytes | None = None, valid: str | None = None, test: str | None = None,
               skip: tuple[str, ...] = ()) -> Path:
    """A tiny reference-layout dataset; any file's text may be replaced (``skip``: files not written)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = lambda ts: "".join("\t".join(t) + "\n" for t in ts)  # noqa: E731
    files = {
        "entities.dict": entities if entities is not None else "".join(f"{i}\t{e}\n" for i, e in enumerate(ENTITIES)),
        "relations.dict": relations if relations is not None else "".join(f"{i}\t{r}\n" for i, r in enumerate(RELATIONS)),
        "train.txt": train if train is not None else rows(TRAIN),
        "valid.txt": valid if valid is not None else rows(VALID),
        "test.txt": test if test is not None else rows(TEST),
    }
    for name, content in files.items():
        if name in skip:
            continue
        if isinstance(content, bytes):
            (folder / name).write_bytes(content)
        else:
            (folder / name).write_text(content, encoding="utf-8")
    return folder


# --- the shared tiny dataset and one trained run (module scope: trained once) ---------------------------
@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from emukg.training import train

    root = tmp_path_factory.mktemp("malformed_shared")
    graph = write_data(root / "g")
    run = root / "run"
    cfg = Config.from_dict(dict(dataset=str(graph), model="TransE", hidden_dim=8, gamma=6.0, negative_sample_size=4,
                                batch_size=8, loss="ce", sampler="uniform", learning_rate=0.05, max_steps=4,
                                valid_steps=2, log_steps=2, save_checkpoint_steps=2, save_path=str(run), device="cpu",
                                progress=False, seed=1))
    train(cfg)
    assert (run / "config.json").is_file() and (run / "checkpoint").is_file() and (run / "best_model").is_file()
    return root


@dataclass
class WS:
    """What a case may use: its own ``root`` (the test's tmp_path, also the working directory), the shared tiny
    dataset ``graph`` and the shared trained ``run`` (both read-only: a case that alters a run copies it)."""

    root: Path
    graph: Path
    run: Path

    def p(self, name: str) -> str:
        return str(self.root / name)

    def data(self, name: str = "d", **kw) -> str:
        return str(write_data(self.root / name, **kw))

    def copy_run(self, name: str = "run") -> Path:
        dest = self.root / name
        shutil.copytree(self.run, dest)
        return dest

    def file(self, name: str, text: str = "x\n") -> str:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return str(path)

    def folder(self, name: str) -> str:
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)


@dataclass
class Case:
    id: str
    kind: str  # "cli" (emukg.cli.main), "legacy" (emukg.commands.legacy.run_legacy), "api" (must raise), "sub" (subprocess)
    make: Callable[[WS], object]  # argv for cli/legacy; a callable for api; a script for sub
    expect: tuple[str, ...] = ()  # substrings the message must contain (case-insensitive); "{root}" -> tmp_path
    exc: tuple[type, ...] = field(default=(EmukgError,))


# --- emukg train: a valid base command, then one bad setting ---------------------------------------------
def train_argv(ws: WS, *extra: str, dataset: str | None = None, save: str | None = "run", base: bool = True) -> list[str]:
    argv = ["train"]
    if dataset is not False:
        argv += ["--dataset", dataset or str(ws.graph)]
    if save:
        argv += ["--save-path", ws.p(save)]
    if base:
        argv += ["--model", "TransE", "--hidden-dim", "8", "--batch-size", "8", "--negative-sample-size", "4",
                 "--loss", "ce", "--sampler", "uniform", "--learning-rate", "0.05", "--max-steps", "2",
                 "--device", "cpu", "--no-progress"]
    return argv + list(extra)


def tc(case_id: str, *extra: str, expect: tuple[str, ...] = ()) -> Case:
    """An ``emukg train`` case: the base command plus ``extra`` flags."""
    return Case(f"train:{case_id}", "cli", lambda ws: train_argv(ws, *extra), expect)


def legacy_argv(ws: WS, *extra: str, train: bool = True, data: bool = True, save: bool = True) -> list[str]:
    argv = ["--do_train"] if train else []
    if data:
        argv += ["--data_path", str(ws.graph)]
    if save:
        argv += ["-save", ws.p("run")]
    argv += ["--model", "TransE", "-d", "8", "-n", "4", "-b", "8", "--max_steps", "2", "-if_CE", "1", "-lr", "0.05",
             "--no_progress"]
    return argv + list(extra)


def lc(case_id: str, make: Callable[[WS], list[str]], expect: tuple[str, ...] = ()) -> Case:
    return Case(f"legacy:{case_id}", "legacy", make, expect)


# --- data files: each through 'emukg datasets info' and 'emukg train' -----------------------------------
def _good_rows(ts) -> str:
    return "".join("\t".join(t) + "\n" for t in ts)


DATA_CASES: list[tuple[str, Callable[[WS], str], tuple[str, ...]]] = [
    ("missing-train", lambda ws: ws.data(skip=("train.txt",)), ("train.txt",)),
    ("wrong-column-count", lambda ws: ws.data(train=_good_rows(TRAIN[:5]) + "e1\tr0\n" + _good_rows(TRAIN[5:])),
     ("train.txt", "line 6")),
    ("four-columns", lambda ws: ws.data(train=_good_rows(TRAIN[:2]) + "e1\tr0\te2\te3\n"), ("train.txt", "line 3")),
    ("name-not-in-entities", lambda ws: ws.data(train=_good_rows(TRAIN[:3]) + "e1\tr0\tzed\n"), ("zed", "line 4")),
    ("relation-not-in-relations", lambda ws: ws.data(train=_good_rows(TRAIN[:3]) + "e1\tr9\te2\n"), ("r9",)),
    ("duplicate-entity-id", lambda ws: ws.data(entities="".join(f"{i}\t{e}\n" for i, e in enumerate(ENTITIES)) + "3\textra\n"),
     ("entities.dict", "duplicate")),
    ("non-contiguous-ids", lambda ws: ws.data(entities="".join(f"{i if i < 5 else i + 1}\t{e}\n" for i, e in enumerate(ENTITIES))),
     ("entities.dict",)),
    ("non-numeric-id", lambda ws: ws.data(relations="0\tr0\tx1\tr1\n"), ("relations.dict",)),
    ("empty-train", lambda ws: ws.data(train=""), ("train.txt",)),
    ("undecodable-bytes", lambda ws: ws.data(train=_good_rows(TRAIN[:2]).encode() + b"e1\tr\xff0\te2\n"),
     ("train.txt", "utf-8")),
    ("relations-dict-missing", lambda ws: ws.data(skip=("relations.dict",)), ("relations.dict",)),
    ("folder-does-not-exist", lambda ws: ws.p("no_such_dataset"), ("no_such_dataset",)),
    ("dataset-is-a-file", lambda ws: ws.file("a_file.txt"), ("a_file.txt",)),
    ("unknown-registered-name", lambda ws: "wn18r", ("wn18r", "wn18rr")),
    ("empty-entities-dict", lambda ws: ws.data(entities="\n\n"), ("entities.dict",)),
    ("unknown-entity-in-valid", lambda ws: ws.data(valid=_good_rows(VALID) + "e1\tr0\tstranger\n"),
     ("valid.txt", "stranger")),
    ("train-is-a-folder", lambda ws: [ws.data(skip=("train.txt",)), ws.folder("d/train.txt")][0], ("train.txt", "folder")),
]


def _data_cases() -> list[Case]:
    out = []
    for name, make, expect in DATA_CASES:
        out.append(Case(f"data:{name}:datasets-info", "cli", lambda ws, m=make: ["datasets", "info", m(ws)], expect))
        out.append(Case(f"data:{name}:train", "cli", lambda ws, m=make: train_argv(ws, dataset=m(ws)), expect))
    # a registered name without a local copy: 'info' does not download (train would, so it is not run here)
    out.append(Case("data:registered-not-local:datasets-info", "cli", lambda ws: ["datasets", "info", "wn18rr"],
                    ("wn18rr", "download")))
    return out


# --- YAML ------------------------------------------------------------------------------------------------
YAML_BASE = dict(model="TransE", hidden_dim=8, batch_size=8, negative_sample_size=4, loss="ce", sampler="uniform",
                 learning_rate=0.05, max_steps=2, device="cpu", progress=False)


def yc(case_id: str, text: str | None, key: str | None, *, folder: bool = False, name: str = "cfg.yaml",
       raw: bool = False) -> Case:
    """A ``--config`` case: ``text`` plus the valid small settings it does not set (``raw``: ``text`` alone, and
    the small settings as flags)."""
    def make(ws: WS):
        if folder:
            path = ws.folder(name)
        elif text is None:
            path = ws.p(name)
        elif raw:
            path = ws.file(name, text)
        else:
            rest = "".join(f"{k}: {json.dumps(v)}\n" for k, v in YAML_BASE.items() if not re.match(rf"^{k}:", text, re.M))
            path = ws.file(name, rest + text)
        return train_argv(ws, "--config", path, base=raw or folder or text is None)
    return Case(f"yaml:{case_id}", "cli", make, (name,) + ((key,) if key else ()))


YAML_CASES = [
    yc("hidden_dim-eight", "hidden_dim: eight\n", "hidden_dim"),
    yc("hidden_dim-8.7", "hidden_dim: 8.7\n", "hidden_dim"),
    yc("hidden_dim-list", "hidden_dim: [1, 2]\n", "hidden_dim"),
    yc("do_test-quoted-no", 'do_test: "no"\n', "do_test"),
    yc("learning_rate-nan", "learning_rate: .nan\n", "learning_rate"),
    yc("learning_rate-inf", "learning_rate: .inf\n", "learning_rate"),
    yc("unknown-key", "hiden_dim: 8\n", "hiden_dim"),
    yc("top-level-list", "- hidden_dim: 8\n- gamma: 1\n", None, raw=True),
    yc("invalid-syntax", "hidden_dim: [8\ngamma: 1\n", None, raw=True),
    yc("missing-file", None, None, name="nope.yaml"),
    yc("folder-as-file", None, None, folder=True, name="cfgdir.yaml"),
    yc("neg_label-2", "neg_label: 2\n", "neg_label"),
    yc("model-null", "model: null\n", "model"),
]


# --- run folders and output paths ---------------------------------------------------------------------
def _damage(ws: WS, name: str, data: bytes, *also: str) -> str:
    run = ws.copy_run()
    for n in (name, *also):
        (run / n).write_bytes(data)
    return str(run)


def _resume(ws: WS, *extra: str) -> list[str]:
    run = ws.copy_run()
    return ["train", "--resume", str(run), "--device", "cpu", "--no-progress", *extra]


RUN_CASES = [
    Case("run:save-path-is-a-file", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.file("taken")],
         ("--save-path", "taken")),
    Case("run:save-path-under-a-file", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", ws.file("taken") + "/sub"],
         ("--save-path", "taken")),
    Case("run:save-path-holds-a-run", "cli", lambda ws: train_argv(ws, save=None) + ["--save-path", str(ws.copy_run())],
         ("--save-path", "--overwrite")),
    Case("run:resume-missing-folder", "cli", lambda ws: ["train", "--resume", ws.p("gone")], ("--resume", "gone")),
    Case("run:resume-without-config", "cli", lambda ws: ["train", "--resume", ws.folder("empty_run")],
         ("--resume", "config.json")),
    Case("run:resume-model-changed", "cli", lambda ws: _resume(ws, "--model", "DistMult"), ("--model",)),
    Case("run:resume-hidden-dim-changed", "cli", lambda ws: _resume(ws, "--hidden-dim", "16"), ("--hidden-dim",)),
    Case("run:resume-with-overwrite", "cli", lambda ws: _resume(ws, "--overwrite"), ("--resume", "--overwrite")),
    Case("run:resume-with-other-save-path", "cli", lambda ws: _resume(ws, "--save-path", ws.p("elsewhere")),
         ("--save-path",)),
    Case("evaluate:missing-folder", "cli", lambda ws: ["evaluate", ws.p("gone"), "--device", "cpu"], ("gone",)),
    Case("evaluate:damaged-config-json", "cli", lambda ws: ["evaluate", _damage(ws, "config.json", b'{"model": "TransE",'),
                                                            "--device", "cpu"], ("config.json",)),
    Case("evaluate:config-json-not-an-object", "cli", lambda ws: ["evaluate", _damage(ws, "config.json", b"[1, 2]"),
                                                                  "--device", "cpu"], ("config.json",)),
    Case("evaluate:damaged-checkpoint", "cli",
         lambda ws: ["evaluate", _damage(ws, "best_model", b"\x00garbage\xff" * 7, "checkpoint"), "--device", "cpu"],
         ("best_model",)),
    Case("evaluate:damaged-last-checkpoint", "cli",
         lambda ws: ["evaluate", _damage(ws, "checkpoint", b"PK\x03\x04 not a zip"), "--checkpoint", "last", "--device", "cpu"],
         ("checkpoint",)),
    Case("evaluate:json-into-missing-folder", "cli",
         lambda ws: ["evaluate", str(ws.run), "--device", "cpu", "--json", ws.p("no_dir/out.json")], ("--json",)),
    Case("evaluate:json-onto-a-folder", "cli",
         lambda ws: ["evaluate", str(ws.run), "--device", "cpu", "--json", ws.folder("out_dir")], ("--json",)),
    Case("evaluate:json-under-a-file", "cli",
         lambda ws: ["evaluate", str(ws.run), "--device", "cpu", "--json", ws.file("plain") + "/out.json"], ("--json",)),
    Case("evaluate:memory-mb-0", "cli", lambda ws: ["evaluate", str(ws.run), "--device", "cpu", "--memory-mb", "0"],
         ("--memory-mb",)),
    Case("evaluate:device-tpu", "cli", lambda ws: ["evaluate", str(ws.run), "--device", "tpu"], ("--device",)),
    Case("report:out-onto-existing-file", "cli", lambda ws: ["report", str(ws.run), "--out", ws.file("report.md")],
         ("--out",)),
    Case("report:not-a-run-folder", "cli", lambda ws: ["report", ws.folder("not_a_run"), "--out", ws.p("rep")],
         ("not_a_run",)),
    Case("datasets:info-json-onto-a-folder", "cli",
         lambda ws: ["datasets", "info", str(ws.graph), "--json", ws.folder("stats_dir")], ("--json",)),
    Case("datasets:info-json-under-a-file", "cli",
         lambda ws: ["datasets", "info", str(ws.graph), "--json", ws.file("plain") + "/stats.json"], ("--json",)),
    Case("datasets:info-json-into-missing-folder", "cli",
         lambda ws: ["datasets", "info", str(ws.graph), "--json", ws.p("no_dir/stats.json")], ("--json",)),
    Case("datasets:list-json-onto-a-folder", "cli", lambda ws: ["datasets", "list", "--json", ws.folder("list_dir")],
         ("--json",)),
    Case("datasets:download-unknown-name", "cli", lambda ws: ["datasets", "download", "nosuchset"], ("nosuchset",)),
    Case("datasets:unknown-action", "cli", lambda ws: ["datasets", "fetch", "wn18rr"], ("fetch",)),
    Case("predict:unknown-entity", "cli",
         lambda ws: ["predict", str(ws.run), "--head", "nobody", "--relation", "r0", "--device", "cpu"], ("nobody",)),
    Case("predict:unknown-relation", "cli",
         lambda ws: ["predict", str(ws.run), "--head", "e1", "--relation", "r7", "--device", "cpu"], ("r7",)),
    Case("predict:top-k-0", "cli",
         lambda ws: ["predict", str(ws.run), "--head", "e1", "--relation", "r0", "--top-k", "0", "--device", "cpu"],
         ("--top-k",)),
    Case("predict:head-and-tail", "cli",
         lambda ws: ["predict", str(ws.run), "--head", "e1", "--tail", "e2", "--relation", "r0", "--device", "cpu"]),
    Case("predict:missing-folder", "cli",
         lambda ws: ["predict", ws.p("gone"), "--head", "e1", "--relation", "r0", "--device", "cpu"], ("gone",)),
]


# --- emukg train flags ---------------------------------------------------------------------------------
TRAIN_CASES = [
    tc("learning-rate-nan", "--learning-rate", "nan", expect=("--learning-rate",)),
    tc("learning-rate-inf", "--learning-rate", "inf", expect=("--learning-rate",)),
    tc("learning-rate-neg", "--learning-rate", "-1", expect=("--learning-rate",)),
    tc("learning-rate-0", "--learning-rate", "0", expect=("--learning-rate",)),
    tc("learning-rate-text", "--learning-rate", "fast"),
    tc("gamma-nan", "--gamma", "nan", expect=("--gamma",)),
    tc("gamma-neg", "--gamma", "-1", expect=("--gamma",)),
    tc("hidden-dim-0", "--hidden-dim", "0", expect=("--hidden-dim",)),
    tc("hidden-dim-neg", "--hidden-dim", "-5", expect=("--hidden-dim",)),
    tc("hidden-dim-float", "--hidden-dim", "8.5", expect=("--hidden-dim",)),
    tc("batch-size-0", "--batch-size", "0", expect=("--batch-size",)),
    tc("negative-sample-size-0", "--negative-sample-size", "0", expect=("--negative-sample-size",)),
    tc("neg-label-1.5", "--neg-label", "1.5", expect=("--neg-label",)),
    tc("neg-label-neg", "--neg-label", "-0.1", expect=("--neg-label",)),
    tc("emu-1.2", "--emu", "1.2", "--neg-label", "0.5", expect=("--emu",)),
    tc("emu-without-neg-label", "--emu", "0.3", expect=("--emu", "--neg-label")),
    tc("emu-with-sigmoid", "--emu", "0.3", "--neg-label", "0.5", "--loss", "sigmoid", "--sampler", "filtered",
       expect=("--emu", "--loss")),
    tc("regularization-neg", "--regularization", "-1", expect=("--regularization",)),
    tc("adversarial-temperature-neg", "--adversarial-temperature", "-1", expect=("--adversarial-temperature",)),
    tc("threads-0", "--threads", "0", expect=("--threads",)),
    tc("warm-up-steps-0", "--warm-up-steps", "0", expect=("--warm-up-steps",)),
    tc("warm-up-steps-neg", "--warm-up-steps", "-10", expect=("--warm-up-steps",)),
    tc("max-steps-neg", "--max-steps", "-1", expect=("--max-steps",)),
    tc("loss-nonsense", "--loss", "nonsense", expect=("--loss",)),
    tc("sampler-nonsense", "--sampler", "nonsense", expect=("--sampler",)),
    tc("model-unknown", "--model", "Nope", expect=("--model",)),
    tc("rotate-without-double-entity", "--model", "RotatE", expect=("--model", "--double-entity-embedding")),
    tc("complex-without-double-relation", "--model", "ComplEx", "--double-entity-embedding",
       expect=("--double-relation-embedding",)),
    tc("1vsall-with-emu", "--loss", "1vsall", "--emu", "0.5", "--neg-label", "0.5", expect=("--emu", "1-vs-all", "--loss ce")),
    tc("train-memory-mb-0", "--loss", "1vsall", "--train-memory-mb", "0", expect=("--train-memory-mb",)),
    tc("device-tpu", "--device", "tpu", expect=("--device",)),
    tc("tie-policy-best", "--tie-policy", "best", expect=("--tie-policy",)),
    tc("seed-neg", "--seed", "-1", expect=("--seed",)),
    tc("mixup-without-emu", "--mixup", expect=("--mixup", "--emu")),
    tc("only-ls-without-emu", "--only-ls", expect=("--only-ls",)),
    tc("optimizer-sgd", "--optimizer", "sgd", expect=("--optimizer",)),
    tc("unknown-flag", "--hiden-dim", "8"),
    tc("init-checkpoint-instead-of-resume", "--init-checkpoint", "somewhere", expect=("--resume",)),
    Case("train:missing-dataset", "cli", lambda ws: train_argv(ws, dataset=False), ("--dataset",)),
    Case("train:missing-save-path", "cli", lambda ws: train_argv(ws, save=None), ("--save-path",)),
    Case("train:no-flags-at-all", "cli", lambda ws: ["train"], ("--dataset",)),
]


# --- the reference's command line (prog run.py) ----------------------------------------------------------
def _no_config_run(ws: WS) -> str:
    return ws.folder("half_run")


LEGACY_CASES = [
    lc("no-do-flag", lambda ws: legacy_argv(ws, train=False), ("--do_train",)),
    lc("no-data-path", lambda ws: legacy_argv(ws, data=False), ("--data_path",)),
    lc("do-train-without-save", lambda ws: legacy_argv(ws, save=False), ("-save",)),
    lc("if_CE-5", lambda ws: legacy_argv(ws, "-if_CE", "5"), ("-if_CE",)),
    lc("if_CE-3-transe", lambda ws: legacy_argv(ws, "-if_CE", "3"), ("-if_CE 3", "DistMult", "--loss 1vsall")),
    lc("if_CE-3-emu", lambda ws: legacy_argv(ws, "-if_CE", "3", "--model", "DistMult", "-if_EMU", "0.5", "-neg_label", "0.5"),
       ("-if_EMU", "1-vs-all")),
    lc("if_EMU-1.5", lambda ws: legacy_argv(ws, "-if_EMU", "1.5", "-neg_label", "0.5"), ("-if_EMU",)),
    lc("if_EMU-without-neg_label", lambda ws: legacy_argv(ws, "-if_EMU", "0.3"), ("-if_EMU", "-neg_label")),
    lc("lr-nan", lambda ws: legacy_argv(ws, "-lr", "nan"), ("-lr",)),
    lc("d-0", lambda ws: legacy_argv(ws, "-d", "0"), ("-d",)),
    lc("init-missing-folder", lambda ws: legacy_argv(ws, "-init", ws.p("gone")), ("-init", "gone")),
    lc("init-without-config", lambda ws: legacy_argv(ws, "-init", _no_config_run(ws)), ("-init", "config.json")),
    lc("unknown-flag", lambda ws: legacy_argv(ws, "--bogus_flag", "1"), ("--bogus_flag",)),
    lc("n-not-a-number", lambda ws: legacy_argv(ws, "-n", "many"), ("-n",)),
    lc("data-path-missing-folder", lambda ws: legacy_argv(ws, data=False) + ["--data_path", ws.p("data/nowhere")],
       ("nowhere",)),
    # run.py has no --save-path/--resume: the message must name its own -save/-init
    lc("save-holds-a-run", lambda ws: legacy_argv(ws, save=False) + ["-save", str(ws.copy_run())],
       (r"re:(^|\s)-save\b", r"re:(^|\s)-init\b")),
    lc("save-is-a-file", lambda ws: legacy_argv(ws, save=False) + ["-save", ws.file("taken")], (r"re:(^|\s)-save\b",)),
    lc("do-test-of-missing-run", lambda ws: ["--do_test", "-init", ws.p("gone")], ("gone",)),
]


# --- library calls (no CLI) -------------------------------------------------------------------------------
def _from_dict(**bad):
    def call(ws: WS):
        base = dict(dataset=str(ws.graph), save_path=ws.p("run"), hidden_dim=8, device="cpu")
        base.update(bad)
        Config.from_dict(base)
    return call


def _train_empty_save_path(ws: WS):
    from emukg.training import train

    train(Config(dataset=str(ws.graph), save_path="", hidden_dim=8, batch_size=8, negative_sample_size=4, max_steps=2,
                 device="cpu", progress=False))


def _train_bad_config_object(ws: WS):
    from emukg.training import train

    train(Config(dataset=str(ws.graph), save_path=ws.p("run"), hidden_dim=0, device="cpu", progress=False))


API_CASES = [
    Case("api:from_dict-hidden_dim-0", "api", lambda ws: _from_dict(hidden_dim=0), ("hidden_dim",)),
    Case("api:from_dict-hidden_dim-text", "api", lambda ws: _from_dict(hidden_dim="eight"), ("hidden_dim",)),
    Case("api:from_dict-learning_rate-nan", "api", lambda ws: _from_dict(learning_rate=float("nan")), ("learning_rate",)),
    Case("api:from_dict-do_test-text", "api", lambda ws: _from_dict(do_test="no"), ("do_test",)),
    Case("api:from_dict-unknown-key", "api", lambda ws: _from_dict(hiden_dim=8), ("hiden_dim",)),
    Case("api:from_dict-model-unknown", "api", lambda ws: _from_dict(model="Nope"), ("model",)),
    Case("api:from_dict-emu-without-neg_label", "api", lambda ws: _from_dict(loss="ce", emu=0.3), ("emu", "neg_label")),
    Case("api:from_dict-list-value", "api", lambda ws: _from_dict(gamma=[1.0, 2.0]), ("gamma",)),
    Case("api:train-empty-save_path", "api", lambda ws: _train_empty_save_path, ("save_path",)),
    Case("api:train-unvalidated-config", "api", lambda ws: _train_bad_config_object, ("hidden_dim",)),
]

EVAL_SCRIPT = """
import sys, torch
from emukg.data import load_folder
from emukg.errors import EmukgError
from emukg.evaluation import evaluate
from emukg.models import build_model
kg = load_folder({graph!r})
N, R = kg.num_entities, kg.num_relations
model = build_model({model!r}, N, R, 8, 6.0, {double!r}, {double!r})
triples = torch.tensor({triples}, dtype=torch.long)
try:
    evaluate(model, kg, triples, backend={backend!r})
except EmukgError as exc:
    print(f"emukg: error: {{exc}}", file=sys.stderr)
    sys.exit(2)
print("no error was raised", file=sys.stderr)
sys.exit(1)
"""


def ec(case_id: str, triples: str, model: str = "TransE", backend: str = "auto", double: bool = False) -> Case:
    def make(ws: WS) -> str:
        return EVAL_SCRIPT.format(graph=str(ws.graph), model=model, triples=triples, backend=backend, double=double)
    return Case(f"api:evaluate-{case_id}", "sub", make, ("evaluate",))


SUB_CASES = [
    ec("tail-id-too-large", "[[0, 0, N]]"),
    ec("head-id-too-large-native", "[[N + 5, 1, 2]]", backend="native"),
    ec("negative-head-id", "[[-1, 0, 2]]"),
    ec("relation-id-too-large", "[[0, R, 2]]"),
    ec("huge-tail-id-distmult", "[[0, 0, 10**9]]", model="DistMult"),
    ec("tail-id-too-large-torch-backend", "[[1, 0, N + 1]]", backend="torch"),
]

CASES: list[Case] = [*_data_cases(), *TRAIN_CASES, *YAML_CASES, *RUN_CASES, *LEGACY_CASES, *API_CASES, *SUB_CASES]


# --- the checks -----------------------------------------------------------------------------------------
def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every file and folder under ``roots``: path -> (kind, size, mtime_ns)."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                st = p.lstat()
                out[str(p)] = ("dir" if p.is_dir() else "file", 0 if p.is_dir() else st.st_size,
                               0 if p.is_dir() else st.st_mtime_ns)
    return out


def check_message(stderr: str, expect: tuple[str, ...], root: Path) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert lines, "nothing on stderr"
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    line = lines[0]
    m = re.match(r"^(emukg|run\.py|emukg \w+|emukg \w+ \w+): error: (.+)$", line)
    assert m, f"not '<prog>: error: <sentence>': {line!r}"
    message = m.group(2)
    # one sentence: no sentence end followed by a new capitalised sentence (paths are masked first)
    masked = message.replace(str(root), "ROOT")
    assert not re.search(r"[.!?]\s+[A-Za-z]", masked), f"more than one sentence: {message!r}"
    for want in expect:
        if want.startswith("re:"):  # a flag that must appear as a word of its own (-save, not --save-path)
            assert re.search(want[3:], message), f"{want[3:]!r} not matched in {message!r}"
        else:
            assert want.lower() in message.lower(), f"{want!r} not named in {message!r}"
    return message


def make_ws(shared, tmp_path, monkeypatch, cls=WS):
    """A case's workspace ``tmp_path/w``, made the working directory, with its own (empty) cache and data folders."""
    work = tmp_path / "w"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("EMUKG_CACHE_DIR", str(work / "cache"))
    monkeypatch.setenv("EMUKG_DATA_DIR", str(work / "datasets"))
    monkeypatch.delenv("EMUKG_MIRROR", raising=False)
    return cls(work, shared / "g", shared / "run")


@pytest.fixture
def ws(shared, tmp_path, monkeypatch):
    return make_ws(shared, tmp_path, monkeypatch)


def test_case_count():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_malformed_input(case: Case, ws: WS, capsys):
    run_case(case, ws, capsys)


def run_case(case: Case, ws: WS, capsys) -> None:
    """Run ``case`` and check it: exit status 2, one sentence naming what it expects, no traceback, nothing written
    under the workspace or the shared data (also used by tests/test_malformed_more.py)."""
    made = case.make(ws)
    capsys.readouterr()
    roots = (ws.root, ws.graph.parent)
    before = snapshot(*roots)
    if case.kind == "cli":
        try:
            code = cli_main(made)
        except SystemExit as exc:  # argparse's errors
            code = exc.code
        err = capsys.readouterr().err
    elif case.kind == "legacy":
        try:
            code = run_legacy(made)
        except SystemExit as exc:
            code = exc.code
        err = capsys.readouterr().err
    elif case.kind == "api":
        with pytest.raises(case.exc) as info:
            made(ws)
        code, err = 2, f"emukg: error: {info.value}\n"
        assert not isinstance(info.value, (KeyError, IndexError, TypeError, AttributeError)), repr(info.value)
    else:  # a subprocess: a crash (negative return code, a signal) must not happen
        env = dict(os.environ, PYTHONPATH=str(REPO / "src"), OMP_NUM_THREADS="1")
        res = subprocess.run([sys.executable, "-c", textwrap.dedent(made)], capture_output=True, text=True,
                             cwd=ws.root, env=env, timeout=120)
        assert res.returncode >= 0, f"crashed with signal {-res.returncode}: {res.stderr[-2000:]}"
        code, err = res.returncode, res.stderr
    after = snapshot(*roots)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    changed = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    written = f"written: {added}, removed: {removed}, changed: {changed}" if (added or removed or changed) else "nothing written"
    assert code == 2, f"exit status {code!r} ({written}), stderr: {err[-3000:]!r}"
    check_message(err, case.expect, ws.root)
    assert not (added or removed or changed), written
