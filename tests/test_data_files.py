"""File readers, the KnowledgeGraph built from them, the filter index, and every bad-input message."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import TINY_SPLITS, write_dataset
from emukg.data import FilterIndex, load_folder
from emukg.data.files import read_dict, read_lines, read_triples
from emukg.errors import EmukgError

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- tolerant parsing


def test_tiny_reference_layout(tiny_dataset):
    kg = load_folder(tiny_dataset)
    assert (kg.num_entities, kg.num_relations) == (8, 3)
    assert [kg.splits[s].shape[0] for s in ("train", "valid", "test")] == [16, 3, 3]
    assert kg.entity_to_id["carol"] == 2 and kg.relation_to_id["parent_of"] == 2
    assert kg.train[0].tolist() == [0, 0, 1]
    assert kg.train.dtype == torch.int64 and kg.unseen == {"valid": 0, "test": 0}


def test_crlf_cr_bom_whitespace_and_blank_lines(tmp_path):
    d = tmp_path / "messy"
    d.mkdir()
    (d / "entities.dict").write_bytes(b"\xef\xbb\xbf0\ta\r\n1\tb  \r\n\r\n2\tc\r\n")
    (d / "relations.dict").write_bytes(b"1\ts\r0\tr\r")  # CR only, ids out of order
    (d / "train.txt").write_bytes(b"\xef\xbb\xbfa\tr\tb \r\n\r\n  \r\nb\ts\tc\t\r\n c \t r \t a\r\n")
    (d / "valid.txt").write_bytes(b"a r c\n")  # whitespace instead of tabs
    (d / "test.txt").write_bytes(b"\n\nc\ts\tb")  # no final newline
    kg = load_folder(d)
    assert kg.entities == ["a", "b", "c"] and kg.relations == ["r", "s"]
    assert kg.train.tolist() == [[0, 0, 1], [1, 1, 2], [2, 0, 0]]
    assert kg.valid.tolist() == [[0, 0, 2]] and kg.test.tolist() == [[2, 1, 1]]


def test_line_numbers_count_blank_lines_and_crlf(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"a\tr\tb\r\n\r\nb\tr\tc\r\n")
    assert [n for n, *_ in read_triples(f)] == [1, 3]
    assert read_lines(f) == [(1, "a\tr\tb"), (3, "b\tr\tc")]


def test_only_newline_characters_end_lines(tmp_path):
    # str.splitlines() would also split on these; names may contain them.
    f = tmp_path / "t.txt"
    f.write_text("a\u2028x\tr\tb\x85y\nb\tr\x1cq\tc\n", encoding="utf-8")
    assert read_triples(f) == [(1, "a\u2028x", "r", "b\x85y"), (2, "b", "r\x1cq", "c")]


def test_names_with_spaces_are_kept_when_tabs_separate(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("New York\tlocated in\tUnited States\n", encoding="utf-8")
    assert read_triples(f) == [(1, "New York", "located in", "United States")]


def test_dict_in_any_order(tmp_path):
    f = tmp_path / "e.dict"
    f.write_text("2\tc\n0\ta\n1\tb\n", encoding="utf-8")
    assert read_dict(f) == ["a", "b", "c"]


def test_split_files_only_gives_sorted_name_ids(tmp_path):
    d = write_dataset(tmp_path / "splits_only", entities=None, relations=None)
    kg = load_folder(d)
    names = sorted({x for rows in TINY_SPLITS.values() for h, _, t in rows for x in (h, t)})
    assert kg.entities == names
    assert kg.relations == sorted({r for rows in TINY_SPLITS.values() for _, r, _ in rows})
    h, r, t = TINY_SPLITS["test"][0]
    assert kg.test[0].tolist() == [names.index(h), kg.relations.index(r), names.index(t)]


def test_split_files_only_matches_the_sorted_name_dicts_of_nations(shared_datasets, tmp_path):
    src = shared_datasets / "nations"
    d = tmp_path / "nations"
    d.mkdir()
    for s in ("train", "valid", "test"):
        (d / f"{s}.txt").write_bytes((src / f"{s}.txt").read_bytes())
    a, b = load_folder(src), load_folder(d)
    assert a.entities == b.entities and a.relations == b.relations
    assert all(torch.equal(a.splits[s], b.splits[s]) for s in ("train", "valid", "test"))


def test_unseen_entities_are_kept_and_counted(tmp_path, caplog):
    splits = {k: list(v) for k, v in TINY_SPLITS.items()}
    train = [t for t in splits["train"] if "heidi" not in (t[0], t[2])]  # heidi only in valid/test now
    splits["train"] = train
    splits["test"] = splits["test"] + [("heidi", "knows", "heidi")]
    d = write_dataset(tmp_path / "unseen", splits=splits)
    with caplog.at_level("WARNING", logger="emukg"):
        kg = load_folder(d)
    assert kg.valid.shape[0] == 3 and kg.test.shape[0] == 4  # nothing dropped
    s = kg.summary()
    assert s["unseen_entity_triples"] == {"valid": 1, "test": 2} == kg.unseen
    assert s["unseen_entities"] == {"valid": 1, "test": 1}
    assert s["degree"]["isolated_entities"] == 1
    assert "kept (as LibKGE does)" in caplog.text
    heidi = kg.entity_to_id["heidi"]
    assert bool(kg.filter.contains(torch.tensor(heidi), torch.tensor(0), torch.tensor(heidi)))
    assert not bool(kg.train_filter.contains(torch.tensor(heidi), torch.tensor(0), torch.tensor(heidi)))


def test_summary_counts_and_degree(tiny_dataset):
    s = load_folder(tiny_dataset).summary()
    assert s["entities"] == 8 and s["relations"] == 3
    assert s["triples"] == {"train": 16, "valid": 3, "test": 3}
    assert s["degree"]["min"] >= 1 and s["degree"]["max"] >= s["degree"]["median"]
    assert abs(s["degree"]["mean"] - 2 * 16 / 8) < 1e-9


# ------------------------------------------------------------------------------------------- filter index


def _brute(triples):
    tails, heads = {}, {}
    for h, r, t in triples:
        tails.setdefault((h, r), set()).add(t)
        heads.setdefault((t, r), set()).add(h)
    return set(map(tuple, triples)), tails, heads


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_filter_index_matches_brute_force(seed):
    rng = random.Random(seed)
    N, R = rng.randint(5, 40), rng.randint(1, 6)
    triples = [(rng.randrange(N), rng.randrange(R), rng.randrange(N)) for _ in range(rng.randint(1, 300))]
    triples += triples[: len(triples) // 5]  # duplicates must not count twice
    index = FilterIndex.from_triples(torch.tensor(triples), N, R)
    known, tails, heads = _brute(triples)

    queries = [(rng.randrange(N), rng.randrange(R)) for _ in range(200)] + [(h, r) for h, r, _ in triples[:50]]
    anchor = torch.tensor([q[0] for q in queries])
    rel = torch.tensor([q[1] for q in queries])
    for side, truth in (("tail", tails), ("head", heads)):
        expected = [truth.get(q, set()) for q in queries]
        assert index.counts(anchor, rel, side).tolist() == [len(e) for e in expected]
        qidx, ent = index.answers(anchor, rel, side)
        got = [set() for _ in queries]
        for i, e in zip(qidx.tolist(), ent.tolist()):
            assert e not in got[i]
            got[i].add(e)
        assert got == expected
        assert qidx.tolist() == sorted(qidx.tolist())

    h = torch.randint(0, N, (30, 1), generator=torch.Generator().manual_seed(seed))
    t = torch.arange(N).unsqueeze(0)
    r = torch.tensor(rng.randrange(R))
    got = index.contains(h, r, t)  # broadcast (30, N)
    assert got.shape == (30, N)
    want = [[(hh, int(r), tt) in known for tt in range(N)] for hh in h[:, 0].tolist()]
    assert got.tolist() == want
    assert index.to("cpu").contains(*torch.tensor(triples[0])).item()


def test_filter_index_empty_queries_and_no_answers():
    index = FilterIndex.from_triples(torch.tensor([[0, 0, 1]]), 3, 2)
    qidx, ent = index.answers(torch.tensor([2, 1]), torch.tensor([1, 0]), "tail")
    assert qidx.numel() == 0 and ent.numel() == 0
    qidx, ent = index.answers(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long), "head")
    assert qidx.numel() == 0
    with pytest.raises(ValueError):
        index.counts(torch.tensor([0]), torch.tensor([0]), "middle")


def test_kg_filters_cover_the_right_splits(tiny_dataset):
    kg = load_folder(tiny_dataset)
    all_ = kg.all_triples
    assert kg.filter.contains(all_[:, 0], all_[:, 1], all_[:, 2]).all()
    tr = kg.train_filter.contains(kg.valid[:, 0], kg.valid[:, 1], kg.valid[:, 2])
    assert not tr.any()
    assert kg.train_filter.triple_keys.numel() == 16 and kg.filter.triple_keys.numel() == 22


# ---------------------------------------------------------------------------------- bad input, end to end

GOOD = "0\ta\n1\tb\n2\tc\n"
REL = "0\tr\n1\ts\n"
TRAIN = "a\tr\tb\nb\ts\tc\nc\tr\ta\n"

# name -> (files to write (None: omit the file), fragments the message must contain)
BAD_CASES = {
    "columns_triples": ({"train.txt": "a\tr\tb\nb\ts\tc\nc\tr\n"}, ["train.txt, line 3", "expected 3", "found 2"]),
    "columns_dict": ({"entities.dict": "0\ta\n1\tb\textra\n2\tc\n"}, ["entities.dict, line 2", "expected 2"]),
    "empty_column": ({"test.txt": "a\t\tb\n"}, ["test.txt, line 1", "column 2 is empty"]),
    "unknown_entity": ({"test.txt": "a\tr\tb\nzed\tr\ta\n"}, ["test.txt, line 2", "'zed'", "entities.dict"]),
    "unknown_relation": ({"valid.txt": "\n\na\tq\tb\n"}, ["valid.txt, line 3", "'q'", "relations.dict"]),
    "duplicate_id": ({"entities.dict": "0\ta\n1\tb\n1\tc\n"}, ["entities.dict, line 3", "duplicate id 1"]),
    "duplicate_name": ({"relations.dict": "0\tr\n1\tr\n"}, ["relations.dict, line 2", "duplicate name 'r'"]),
    "gap_in_ids": ({"entities.dict": "0\ta\n1\tb\n3\tc\n"}, ["entities.dict, line 3", "id 2 is missing"]),
    "negative_id": ({"entities.dict": "0\ta\n-1\tb\n2\tc\n"}, ["entities.dict, line 2", "non-negative integer"]),
    "text_id": ({"relations.dict": "0\tr\none\ts\n"}, ["relations.dict, line 2", "'one'"]),
    "empty_train": ({"train.txt": "\n  \n"}, ["train.txt", "training split is empty"]),
    "missing_split": ({"valid.txt": None}, ["valid.txt", "not found"]),
    "missing_dict": ({"relations.dict": None}, ["relations.dict", "not found"]),
    "not_utf8": ({"test.txt": b"a\tr\tb\nc\tr\t\xff\xfe\n"}, ["test.txt, line 2", "UTF-8"]),
    "empty_dict": ({"entities.dict": "\n"}, ["entities.dict", "empty"]),
}


def _write_case(folder: Path, files: dict) -> Path:
    folder.mkdir()
    base = {"entities.dict": GOOD, "relations.dict": REL, "train.txt": TRAIN, "valid.txt": "a\ts\tc\n", "test.txt": "b\tr\ta\n"}
    base.update(files)
    for name, content in base.items():
        if content is None:
            continue
        data = content if isinstance(content, bytes) else content.encode("utf-8")
        (folder / name).write_bytes(data)
    return folder


# Importing torch costs a second or more per interpreter, too slow for ~16 cases.  So every case runs in
# its own *forked* child of one interpreter that imported emukg once: the child executes ``python -m emukg
# datasets info <dir>`` exactly (runpy of emukg.__main__), with its own stdout, stderr and exit status, and an
# uncaught exception prints a traceback as the interpreter would.  Without fork (Windows) each case runs as a
# real ``python -m emukg`` process; cases named in REAL_PROCESS_CASES do so everywhere.
_DRIVER = r"""
import json, os, runpy, sys, traceback
import emukg.cli, emukg.data, emukg.commands.datasets  # the expensive imports (torch), once
results = {}
for name, (argv, out_path, err_path) in json.loads(sys.argv[1]).items():
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.dup2(os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
        os.dup2(os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
        sys.argv = ["emukg", *argv]
        code = 0
        try:
            runpy.run_module("emukg", run_name="__main__", alter_sys=True)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 1
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    results[name] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
print(json.dumps(results))
"""
REAL_PROCESS_CASES: tuple[str, ...] = ()  # test_registry runs the real-process acceptance check


@pytest.fixture(scope="module", autouse=True)
def _bad_input_runs(tmp_path_factory):
    """Start the bad-input processes when this module starts, so they run while the other tests do."""
    root = tmp_path_factory.mktemp("bad")
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    folders = {name: _write_case(root / name, files) for name, (files, _) in BAD_CASES.items()}
    folders["no_folder"] = root / "no_such_folder"

    def run(folder):
        return subprocess.Popen([sys.executable, "-m", "emukg", "datasets", "info", str(folder)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)

    real = {f"{name}[python -m emukg]": (folders[name], run(folders[name])) for name in REAL_PROCESS_CASES}
    forked = {}
    if hasattr(os, "fork"):
        spec = {name: (["datasets", "info", str(f)], str(root / f"{name}.out"), str(root / f"{name}.err"))
                for name, f in folders.items()}
        driver = subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps(spec)], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, env=env)
    else:  # no fork (Windows): one real process per case
        driver = None
        forked = {name: (f, run(f)) for name, f in folders.items()}
    state = {"folders": folders, "root": root, "real": real, "forked": forked, "driver": driver}
    yield state
    for _, p in [*real.values(), *forked.values()] + ([(None, driver)] if driver else []):
        if p.poll() is None:
            p.kill()
            p.communicate()


@pytest.fixture(scope="module")
def cli_results(_bad_input_runs):
    """For every bad case: (folder, exit status, stdout, stderr) of ``python -m emukg datasets info <folder>``."""
    st = _bad_input_runs
    out = {}
    if st["driver"] is not None:
        stdout, stderr = st["driver"].communicate(timeout=300)
        assert st["driver"].returncode == 0, stderr
        codes = json.loads(stdout.strip().splitlines()[-1])
        root = st["root"]
        for name, f in st["folders"].items():
            out[name] = (f, codes[name], (root / f"{name}.out").read_text(), (root / f"{name}.err").read_text())
    for name, (f, p) in [*st["forked"].items(), *st["real"].items()]:
        stdout, stderr = p.communicate(timeout=300)
        out[name] = (f, p.returncode, stdout, stderr)
    return out


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_raises_emukg_error_in_process(tmp_path, case):
    files, fragments = BAD_CASES[case]
    folder = _write_case(tmp_path / case, files)
    with pytest.raises(EmukgError) as info:
        load_folder(folder)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_huge_id_does_not_allocate(tmp_path):
    f = tmp_path / "e.dict"
    f.write_text("0\ta\n999999999999\tb\n", encoding="utf-8")
    with pytest.raises(EmukgError, match=r"line 2: id 999999999999 is out of range .* id 1 is missing"):
        read_dict(f)


@pytest.mark.parametrize("case", sorted(BAD_CASES) + ["no_folder"] + [f"{c}[python -m emukg]" for c in REAL_PROCESS_CASES])
def test_bad_input_exits_2_with_one_message(cli_results, case):
    folder, rc, stdout, stderr = cli_results[case]
    base = case.split("[")[0]
    fragments = BAD_CASES[base][1] if base in BAD_CASES else ["no_such_folder", "folder not found"]
    assert rc == 2, (stdout, stderr)
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("emukg: error: "), stderr
    assert str(folder) in lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
