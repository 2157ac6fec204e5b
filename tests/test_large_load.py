"""The block loader (load_folder's default with dicts) against the line-by-line loader: same ids, same tensors,
same error message, on the shared datasets, on random messy and malformed files, across block boundaries."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

import emukg.data.files as files
from emukg.data import load_folder
from emukg.data.files import encode_triples, iter_blocks, read_triples
from emukg.errors import EmukgError


def _load(folder, blocks):
    try:
        kg = load_folder(folder, blocks=blocks)
    except EmukgError as exc:
        return ("error", str(exc))
    return ("ok", kg.entities, kg.relations, {s: kg.splits[s].tolist() for s in kg.splits}, dict(kg.unseen))


@pytest.mark.parametrize("name", ["nations", "kinships", "umls", "wn18rr", "FB15k-237", "countries_S1"])
def test_same_graph_as_the_line_loader_on_shared_datasets(shared_datasets, name):
    folder = shared_datasets / name
    if not folder.is_dir():
        pytest.skip(f"{name} not in the shared datasets")
    a, b = load_folder(folder), load_folder(folder, blocks=False)
    assert a.entities == b.entities and a.relations == b.relations and a.unseen == b.unseen
    for s in ("train", "valid", "test"):
        assert a.splits[s].dtype == b.splits[s].dtype == torch.int64
        assert torch.equal(a.splits[s], b.splits[s])
    assert a.entity_to_id == b.entity_to_id and a.relation_to_id == b.relation_to_id


ENT = ["a", "b", "c", "New York", "ü", "x\u2028y", "d"]
REL = ["r", "s", "t u"]
# names that are their ids' text behind a prefix: parsed as integers; the unknown ones look almost right
VOCABS = {"names": (ENT, REL, ["zed"], ["q"]),
          "ids": ([f"e{i}" for i in range(12)], [f"r{i}" for i in range(3)], ["e07", "e12", "e", "e-1", "x1", "zed"],
                  ["r3", "r01", "q", "r"]),
          "bare": ([str(i) for i in range(12)], ["r0", "r1"], ["07", "12", "-1", "+3", "1e1"], ["r2", "q"])}


def _line(rng: random.Random, bad: bool, vocab=VOCABS["names"]) -> str:
    ENT, REL, BAD_E, BAD_R = vocab
    h, r, t = rng.choice(ENT), rng.choice(REL), rng.choice(ENT)
    if not bad:
        sep = rng.choice(["\t"] * 8 + [" \t", "\t "])
        return f"{h}{sep}{r}\t{t}" if " " not in h + r + t or "\t" in sep else f"{h}\t{r}\t{t}"
    kind = rng.randrange(6)
    if kind == 0:
        return f"{h}\t{r}"  # two columns
    if kind == 1:
        return f"{h}\t{r}\t{t}\textra"  # four columns
    if kind == 2:
        return f"{h}\t\t{t}"  # an empty column
    if kind == 3:
        return rng.choice([f"{rng.choice(BAD_E)}\t{r}\t{t}", f"{h}\t{r}\t{rng.choice(BAD_E)}"])  # an unknown entity
    if kind == 4:
        return f"{h}\t{rng.choice(BAD_R)}\t{t}"  # an unknown relation
    return "a r b"  # whitespace instead of tabs (fine: no tab on the line)


def _split_text(rng: random.Random, n: int, p_bad: float, vocab=VOCABS["names"]) -> bytes:
    lines = [_line(rng, rng.random() < p_bad, vocab) for _ in range(n)]
    out = []
    for ln in lines:
        out.append(ln)
        if rng.random() < 0.05:
            out.append(rng.choice(["", "   ", "\t"]))  # blank lines
    ends = rng.choice(["\n", "\n", "\r\n", "mixed"])
    if ends == "mixed":
        text = "".join(ln + rng.choice(["\n", "\r\n", "\r"]) for ln in out)
    else:
        text = ends.join(out) + (ends if rng.random() < 0.7 else "")
    data = text.encode("utf-8")
    if rng.random() < 0.1:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.05:
        pos = rng.randrange(len(data) + 1)
        data = data[:pos] + b"\xff" + data[pos:]  # not UTF-8
    return data


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("block", [5, 64, 1 << 23])
@pytest.mark.parametrize("vocab", sorted(VOCABS))
def test_random_files_same_result_or_same_error(tmp_path, monkeypatch, seed, block, vocab):
    rng = random.Random(seed)
    monkeypatch.setattr(files, "BLOCK_BYTES", block)
    ent, rel = VOCABS[vocab][:2]
    d = tmp_path / "d"
    d.mkdir()
    (d / "entities.dict").write_text("".join(f"{i}\t{e}\n" for i, e in enumerate(ent)), encoding="utf-8")
    (d / "relations.dict").write_text("".join(f"{i}\t{r}\n" for i, r in enumerate(rel)), encoding="utf-8")
    p_bad = rng.choice([0.0, 0.0, 0.01, 0.05])
    for s, n in (("train", 60), ("valid", 10), ("test", 10)):
        (d / f"{s}.txt").write_bytes(_split_text(rng, n if rng.random() > 0.05 else 0, p_bad, VOCABS[vocab]))
    if rng.random() < 0.1:
        (d / "entities.dict").write_text("0\ta\n0\tb\n", encoding="utf-8")  # a bad dict after bad splits
    assert _load(d, True) == _load(d, False)


def test_error_order_follows_the_line_loader(tmp_path):
    """An unknown name early in train loses to a column error later in test (every split parses first)."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "entities.dict").write_text("0\ta\n1\tb\n", encoding="utf-8")
    (d / "relations.dict").write_text("0\tr\n", encoding="utf-8")
    (d / "train.txt").write_text("zed\tr\ta\n" + "a\tr\tb\n" * 50, encoding="utf-8")
    (d / "valid.txt").write_text("a\tr\tb\n", encoding="utf-8")
    (d / "test.txt").write_text("a\tr\tb\n" * 5 + "a\tr\n", encoding="utf-8")
    for blocks in (True, False):
        with pytest.raises(EmukgError, match=r"test\.txt, line 6: expected 3 tab-separated columns"):
            load_folder(d, blocks=blocks)
    (d / "test.txt").write_text("a\tr\tb\n", encoding="utf-8")
    for blocks in (True, False):
        with pytest.raises(EmukgError, match=r"train\.txt, line 1: entity 'zed' is not in entities\.dict"):
            load_folder(d, blocks=blocks)


def test_blocks_end_at_line_ends_and_count_lines(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(b"\xef\xbb\xbfa\tr\tb\r\nb\tr\tc\rc\tr\ta\n\nlong-name-over-the-block\tr\tb")
    blocks = list(iter_blocks(f, 6))
    assert b"".join(raw for raw, _ in blocks) == f.read_bytes()[3:]
    assert all(raw.endswith(b"\n") for raw, _ in blocks[:-1])
    # the first line number of every block is the line-by-line reader's
    numbers = {n for n, *_ in read_triples(f)}
    assert [first for _, first in blocks] == sorted(first for _, first in blocks)
    assert {first for raw, first in blocks if raw.strip()} <= numbers | {4}


def test_encode_is_an_int64_array_and_check_only_counts_rows(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("a\tr\tb\n\nb\tr\ta\n", encoding="utf-8")
    ids = encode_triples(f, {"a": 0, "b": 1}, {"r": 0}, block_bytes=4)
    assert ids.dtype == np.int64 and ids.tolist() == [[0, 0, 1], [1, 0, 0]]
    assert encode_triples(f, None, None) == 2


def _dict_text(rng: random.Random) -> bytes:
    n = rng.randrange(1, 12)
    ids = list(range(n))
    if rng.random() < 0.5:
        rng.shuffle(ids)
    names = [f"n{i}" for i in range(n)] if rng.random() < 0.7 else [f"{i}" for i in range(n)]  # 'i<TAB>n<i>' in order: the byte check
    lines = [f"{i}\t{names[i]}" for i in ids]
    for _ in range(rng.choice([0, 0, 1, 2])):
        k = rng.randrange(n)
        lines[k] = rng.choice([f"0{ids[k]}\t{names[ids[k]]}", f"+{ids[k]}\t{names[ids[k]]}", f"{ids[k]}\tn0",
                               f"{ids[k] + n}\tx", f" {ids[k]}\tx{k}", f"{ids[k]}\tx{k} ", f"{ids[k]}\t", "\t", "",
                               f"{ids[k]} x{k}", f"\u0661\tx{k}", f"{ids[k]}\tü{k}", f"{ids[k]}\ta\tb", "1" * 25 + "\tq"])
    text = rng.choice(["\n", "\r\n", "\r"]).join(lines) + rng.choice(["", "\n"])
    data = text.encode("utf-8")
    return (b"\xef\xbb\xbf" + data) if rng.random() < 0.1 else data


@pytest.mark.parametrize("seed", range(100))
def test_plain_dict_reader_equals_the_line_reader(tmp_path, seed):
    f = tmp_path / "e.dict"
    f.write_bytes(_dict_text(random.Random(seed)))

    def outcome(fn):
        try:
            return ("ok", fn(f))
        except EmukgError as exc:
            return ("error", str(exc))

    assert outcome(files.read_dict) == outcome(files.read_dict_lines)
    lines = outcome(files.read_dict_lines)
    if lines[0] == "ok":
        assert files.read_dict_prefix(f)[1] == files.id_prefix(lines[1])


def test_names_that_are_ids_are_parsed_as_integers(tmp_path, monkeypatch):
    """The integer path really runs for ``e<id>`` names (no dict lookup), and gives the dict path's ids."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "entities.dict").write_text("".join(f"{i}\te{i}\n" for i in range(120)), encoding="utf-8")
    (d / "relations.dict").write_text("0\tr0\n1\tr1\n", encoding="utf-8")
    rows = [(f"e{(7 * i) % 120}", f"r{i % 2}", f"e{(3 * i + 1) % 120}") for i in range(300)]
    for s in ("train", "valid", "test"):
        (d / f"{s}.txt").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    assert files.read_dict_prefix(d / "entities.dict") == ([f"e{i}" for i in range(120)], "e")
    assert files.id_prefix([f"e{i}" for i in range(120)]) == "e" and files.id_prefix(["e0", "e2"]) is None
    monkeypatch.setattr(files.LazyIndex, "_get", lambda self: pytest.fail("looked up a name"))
    kg = load_folder(d)
    assert kg.train.tolist() == [[(7 * i) % 120, i % 2, (3 * i + 1) % 120] for i in range(300)]
