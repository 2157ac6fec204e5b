"""Synthetic power-law graphs: the documented model, the split guarantees, reproducibility, atomic writes, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import emukg.data.synthetic as syn
from emukg.cli import main as cli_main
from emukg.data import load_folder
from emukg.data.synthetic import generate, synthetic_graph, write_synthetic
from emukg.errors import EmukgError, ParamError


def _keys(t: torch.Tensor, N: int, R: int) -> set:
    return set(((t[:, 0] * R + t[:, 1]) * N + t[:, 2]).tolist())


@pytest.mark.parametrize("N,R,M,V,T", [(300, 4, 3000, 100, 120), (3, 1, 4, 1, 1), (6, 2, 40, 5, 5)])
def test_split_guarantees(N, R, M, V, T):
    kg = synthetic_graph(N, R, M, valid=V, test=T, seed=1)
    tr, va, te = kg.train, kg.valid, kg.test
    assert [x.shape[0] for x in (tr, va, te)] == [M, V, T] and tr.dtype == torch.int64
    allt = torch.cat([tr, va, te])
    assert allt[:, [0, 2]].max() < N and allt[:, 1].max() < R and allt.min() >= 0
    assert (allt[:, 0] != allt[:, 2]).all()  # no self-loops
    assert len(_keys(allt, N, R)) == M + V + T  # distinct, so splits are disjoint
    seen = set(tr[:, [0, 2]].reshape(-1).tolist())
    assert set(torch.cat([va, te])[:, [0, 2]].reshape(-1).tolist()) <= seen
    assert kg.unseen_counts()[0] == {"valid": 0, "test": 0}


def test_every_possible_triple_when_asked_for_all():
    kg = synthetic_graph(3, 2, 10, valid=1, test=1, seed=0)  # 3·2·2 = 12 possible triples
    assert len(_keys(kg.all_triples, 3, 2)) == 12
    with pytest.raises(EmukgError, match=r"^triples=11: 13 distinct triples .* = 12 without self-loops"):
        synthetic_graph(3, 2, 11, valid=1, test=1)


@pytest.mark.parametrize("s", [0.75, 1.0])
def test_degree_follows_the_zipf_ranks(s):
    """Expected degree of the rank-k entity ∝ k^(−s): the log-log slope of sorted degrees is −s."""
    N, M = 20_000, 200_000
    kg = synthetic_graph(N, 50, M, valid=1, test=1, seed=2, exponent=s)
    deg = np.sort(kg.degree().numpy())[::-1].astype(float)
    k = np.arange(10, 2000)
    slope = np.polyfit(np.log(k + 1), np.log(deg[k]), 1)[0]
    assert abs(slope + s) < 0.1, slope
    flat = np.sort(synthetic_graph(N, 50, M, valid=1, test=1, seed=2, exponent=0.0).degree().numpy())[::-1]
    assert abs(np.polyfit(np.log(k + 1), np.log(flat[k].astype(float)), 1)[0]) < 0.15  # order statistics of Poisson(20)


def test_relations_are_zipf_too():
    kg = synthetic_graph(2000, 20, 20_000, valid=1, test=1, seed=0, relation_exponent=1.0)
    counts = np.sort(np.bincount(kg.train[:, 1].numpy(), minlength=20))[::-1].astype(float)
    assert counts[0] / counts[9] == pytest.approx(10, rel=0.2)  # k^-1: rank 1 vs rank 10


def test_reproducible_and_train_independent_of_holdout_sizes(tmp_path):
    a = write_synthetic(tmp_path / "a", 500, 5, 4000, seed=7)
    write_synthetic(tmp_path / "b", 500, 5, 4000, seed=7)
    write_synthetic(tmp_path / "c", 500, 5, 4000, seed=8)
    write_synthetic(tmp_path / "d", 500, 5, 4000, valid=3, test=9, seed=7)
    for f in syn.DATASET_FILES:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert (tmp_path / "a" / "train.txt").read_bytes() != (tmp_path / "c" / "train.txt").read_bytes()
    assert (tmp_path / "a" / "train.txt").read_bytes() == (tmp_path / "d" / "train.txt").read_bytes()
    assert a["triples"] == {"train": 4000, "valid": 80, "test": 80}
    assert json.loads((tmp_path / "a" / syn.RECORD).read_text())["seed"] == 7


def test_files_load_to_the_in_memory_graph(tmp_path):
    write_synthetic(tmp_path / "g", 400, 7, 3000, valid=50, test=60, seed=3)
    kg = load_folder(tmp_path / "g")
    mem = synthetic_graph(400, 7, 3000, valid=50, test=60, seed=3)
    assert kg.entities == mem.entities == [f"e{i}" for i in range(400)] and kg.relations == mem.relations
    for s in ("train", "valid", "test"):
        assert torch.equal(kg.splits[s], mem.splits[s])
    line = (tmp_path / "g" / "train.txt").read_text().splitlines()[0]
    h, r, t = kg.train[0].tolist()
    assert line == f"e{h}\tr{r}\te{t}"


def test_vectorised_formatting_matches_printf():
    ids = np.array([[0, 0, 0], [9, 10, 99], [100, 999, 2499999], [1234567, 5, 7]], dtype=np.int64)
    assert syn._format(ids, 2_500_000, 1000) == "".join(f"e{h}\tr{r}\te{t}\n" for h, r, t in ids.tolist()).encode()


def test_guide_table_sampling_equals_binary_search():
    cdf = syn._zipf_cdf(5000, 0.9)
    u = np.random.default_rng(0).random(100_000)
    u[:3] = [0.0, np.nextafter(1.0, 0), 0.5]
    want = np.searchsorted(cdf, u * cdf[-1], side="right").clip(max=4999)
    assert np.array_equal(syn._Inverse(cdf)(u), want)


def test_rejection_path_streams_chunks(monkeypatch):
    monkeypatch.setattr(syn, "ROUND", 1000)
    chunks = list(generate(10_000, 10, 5000, valid=10, test=10, seed=0))
    assert len([c for s, c in chunks if s == "train"]) >= 5 and all(c.shape[0] <= 1000 for _, c in chunks)


def test_out_folder_rules(tmp_path):
    out = tmp_path / "g"
    write_synthetic(out, 50, 2, 100)
    with pytest.raises(EmukgError, match="already holds a dataset; pass overwrite to replace it"):
        write_synthetic(out, 50, 2, 100)
    before = (out / "train.txt").read_bytes()
    write_synthetic(out, 50, 2, 100, seed=5, overwrite=True)
    assert (out / "train.txt").read_bytes() != before
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(EmukgError, match="holds other files"):
        write_synthetic(tmp_path / "other", 50, 2, 100)
    (tmp_path / "file").write_text("x")
    with pytest.raises(EmukgError, match="is a file"):
        write_synthetic(tmp_path / "file", 50, 2, 100)
    (tmp_path / "empty").mkdir()
    write_synthetic(tmp_path / "empty", 50, 2, 100)
    assert (tmp_path / "empty" / "train.txt").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "file", "g", "other"]  # no temporaries left


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    calls = []

    def boom(ids, N, R):
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return b""

    monkeypatch.setattr(syn, "ROUND", 500)
    monkeypatch.setattr(syn, "_format", boom)
    with pytest.raises(KeyboardInterrupt):
        write_synthetic(tmp_path / "g", 5000, 3, 3000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv,fragment", [
    (["--entities", "1", "--relations", "1", "--triples", "1"], "--entities 1: must be at least 2"),
    (["--entities", "5", "--relations", "0", "--triples", "1"], "--relations 0: must be at least 1"),
    (["--entities", "5", "--relations", "1", "--triples", "0"], "--triples 0: must be at least 1"),
    (["--entities", "5", "--relations", "1", "--triples", "10", "--valid", "-1"], "--valid -1: must be ≥ 0"),
    (["--entities", "5", "--relations", "1", "--triples", "25"], "do not exist with 5 entities"),
    (["--entities", "5", "--relations", "1", "--triples", "3", "--exponent", "nan"], "--exponent nan: must be a finite number"),
])
def test_cli_refuses_bad_sizes_with_one_sentence(tmp_path, capsys, argv, fragment):
    code = cli_main(["datasets", "synthetic", *argv, "--out", str(tmp_path / "g")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("emukg: error: ") and fragment in err[0], err
    assert not (tmp_path / "g").exists() and list(tmp_path.iterdir()) == []


def test_library_names_the_parameter_and_the_cli_its_flag(tmp_path, capsys):
    """write_synthetic(entities=1) is refused about ``entities``; emukg datasets synthetic says ``--entities``."""
    with pytest.raises(ParamError) as exc:
        write_synthetic(tmp_path / "g", 1, 1, 1)
    assert str(exc.value).startswith("entities=1: must be at least 2") and exc.value.param == "entities"
    assert exc.value.render("cli").startswith("--entities 1: must be at least 2")
    with pytest.raises(ParamError) as exc:
        write_synthetic(tmp_path / "g", 5, 1, 3, relation_exponent=-1.0)
    assert str(exc.value).startswith("relation_exponent=-1.0: must be a finite number")
    assert exc.value.render("cli").startswith("--relation-exponent -1.0: must be a finite number")
    write_synthetic(tmp_path / "g", 50, 2, 100)
    with pytest.raises(ParamError) as exc:
        write_synthetic(tmp_path / "g", 50, 2, 100)
    assert str(exc.value) == f"out={str(tmp_path / 'g')!r}: already holds a dataset; pass overwrite to replace it, or another folder."
    assert cli_main(["datasets", "synthetic", "--entities", "50", "--relations", "2", "--triples", "100",
                     "--out", str(tmp_path / "g")]) == 2
    err = capsys.readouterr().err
    assert f"--out {tmp_path / 'g'}: already holds a dataset; pass --overwrite to replace it" in err


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "g"
    assert cli_main(["datasets", "synthetic", "--entities", "100", "--relations", "3", "--triples", "500", "--valid", "7",
                     "--test", "8", "--seed", "2", "--out", str(out)]) == 0
    assert "500 / 7 / 8 triples" in capsys.readouterr().out
    kg = load_folder(out)
    assert (kg.num_entities, kg.num_relations, kg.valid.shape[0], kg.test.shape[0]) == (100, 3, 7, 8)
    assert cli_main(["datasets", "synthetic", "--entities", "100", "--relations", "3", "--triples", "500",
                     "--out", str(out)]) == 2
