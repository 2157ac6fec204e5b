"""SANS neighbourhoods (exact and random-walk), their disk cache, and the "sans" sampler (emukg.negatives)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from emukg.negatives import sans
from emukg.data import KnowledgeGraph
from emukg.errors import EmukgError
from emukg.negatives import SANSSampler


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EMUKG_CACHE_DIR", str(tmp_path / "cache"))


def triples(edges, rel=0):
    return np.array([(h, rel, t) for h, t in edges], dtype=np.int64).reshape(-1, 3)


def rows_of(indptr, indices):
    return [set(indices[indptr[i] : indptr[i + 1]].tolist()) for i in range(len(indptr) - 1)]


def dense_adjacency(tr, N):
    A = np.zeros((N, N), dtype=np.int64)
    for h, _, t in tr:
        A[h, t] = A[t, h] = 1  # self loops included, as in the reference
    return A


def random_graph(N=40, E=70, seed=0, isolated=(), self_loops=()):
    rng = np.random.default_rng(seed)
    pool = np.setdiff1d(np.arange(N), np.array(isolated, dtype=np.int64))
    h, t = rng.choice(pool, E), rng.choice(pool, E)
    tr = np.stack([h, rng.integers(0, 3, E), t], 1)
    loops = np.array([(e, 0, e) for e in self_loops], dtype=np.int64).reshape(-1, 3)
    return np.concatenate([tr, loops]).astype(np.int64)


# --------------------------------------------------------------------------- adjacency and exact neighbourhoods


def test_adjacency_is_binary_undirected_with_self_loops():
    # (2, 0, 2) twice and (1, 2, 1): self loops are edges of A, as in the reference (A[h,t] = A[t,h] = 1 per triple)
    tr = np.array([(0, 0, 1), (1, 1, 0), (0, 2, 1), (2, 0, 2), (1, 0, 3), (2, 1, 2), (1, 2, 1)])
    indptr, indices = sans.undirected_adjacency(tr, 5)
    assert rows_of(indptr, indices) == [{1}, {0, 1, 3}, {2}, {1}, set()]
    assert indptr.tolist() == [0, 1, 4, 5, 6, 6]  # one entry per distinct edge, the loop of 2 counted once
    assert indptr.dtype == np.int64 and indices.dtype == np.int32


def test_cache_format_version_covers_self_loops():
    """Neighbourhoods cached before self loops were kept (format 1) are not reused."""
    assert sans.FORMAT_VERSION >= 2
    assert sans.neighbourhood_key(triples([(0, 1)]), 2, 2, 0)["format"] == sans.FORMAT_VERSION


@pytest.mark.parametrize("method", ["sparse", "bitset"])
def test_exact_path_graph(method):
    tr = triples([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])
    build = lambda k: rows_of(*sans.build_neighbourhood(tr, 6, k, 0, method=method))  # noqa: E731
    # k = 1: A + A^0 = A + I
    assert build(1) == [{0, 1}, {0, 1, 2}, {1, 2, 3}, {2, 3, 4}, {3, 4, 5}, {4, 5}]
    # k = 2: A^2 + A (distances 0, 1, 2 — A^2 holds the diagonal)
    assert build(2) == [{0, 1, 2}, {0, 1, 2, 3}, {0, 1, 2, 3, 4}, {1, 2, 3, 4, 5}, {2, 3, 4, 5}, {3, 4, 5}]
    # k = 3: A^3 + A^2 (odd walks of length 3 reach distances 1 and 3; even ones 0 and 2)
    assert build(3)[0] == {0, 1, 2, 3}
    assert build(3)[5] == {2, 3, 4, 5}


@pytest.mark.parametrize("method", ["sparse", "bitset"])
def test_exact_star_graph_with_isolated_and_self_loop(method):
    # centre 0, leaves 1..4; entity 5 has no triple; entity 6 only a self loop (its one edge of A goes to itself)
    tr = np.concatenate([triples([(0, 1), (0, 2), (3, 0), (4, 0)]), triples([(6, 6)], rel=1)])
    k2 = rows_of(*sans.build_neighbourhood(tr, 7, 2, 0, method=method))
    assert k2[0] == {0, 1, 2, 3, 4}
    assert k2[1] == {0, 1, 2, 3, 4}  # leaf: A^1 = centre, A^2 = all leaves including itself
    assert k2[5] == set()  # no edges: empty for k >= 2 (the sampler draws uniformly)
    assert k2[6] == {6}  # the self loop: every walk stays at 6
    k1 = rows_of(*sans.build_neighbourhood(tr, 7, 1, 0, method=method))
    assert k1[1] == {0, 1} and k1[5] == {5} and k1[6] == {6}  # A^0 = I
    # a self loop on the centre adds the centre to its own row of A
    loop = np.concatenate([tr, triples([(0, 0)])])
    indptr, indices = sans.undirected_adjacency(loop, 7)
    assert rows_of(indptr, indices)[0] == {0, 1, 2, 3, 4}
    assert rows_of(*sans.build_neighbourhood(loop, 7, 1, 0, method=method))[0] == {0, 1, 2, 3, 4}


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_exact_matches_dense_matrix_powers(k):
    N = 40
    tr = random_graph(N, 60, seed=k, isolated=(7,), self_loops=(9,))
    A = dense_adjacency(tr, N)
    want = (np.linalg.matrix_power(A, k) + np.linalg.matrix_power(A, k - 1)) > 0
    for method in ("sparse", "bitset", "auto"):
        indptr, indices = sans.build_neighbourhood(tr, N, k, 0, method=method)
        got = np.zeros((N, N), dtype=bool)
        got[np.repeat(np.arange(N), np.diff(indptr)), indices] = True
        assert np.array_equal(got, want), method
        assert all(np.all(np.diff(indices[indptr[i] : indptr[i + 1]]) > 0) for i in range(N))  # sorted, distinct


def test_exact_in_many_small_blocks(monkeypatch):
    # tiny working memory: one row per sparse block (sorted-merge branch), 64 sources per bitset block
    monkeypatch.setattr(sans, "_WORK_BYTES", 64)
    N, k = 150, 3
    tr = random_graph(N, 160, seed=4, isolated=(0, 149))
    A = dense_adjacency(tr, N)
    want = (np.linalg.matrix_power(A, k) + np.linalg.matrix_power(A, k - 1)) > 0
    for method in ("sparse", "bitset"):
        indptr, indices = sans.build_neighbourhood(tr, N, k, 0, method=method)
        got = np.zeros((N, N), dtype=bool)
        got[np.repeat(np.arange(N), np.diff(indptr)), indices] = True
        assert np.array_equal(got, want), method


def test_exact_refuses_over_budget_and_names_random_walks():
    N = 300
    rng = np.random.default_rng(1)
    tr = np.stack([rng.integers(0, N, 3000), np.zeros(3000, dtype=np.int64), rng.integers(0, N, 3000)], 1)
    with pytest.raises(EmukgError, match=r"^khop=3: .*instead \(num_random_walks 1000\), a smaller khop"):
        sans.build_neighbourhood(tr, N, 3, 0, memory_budget_bytes=50_000)
    # the same graph fits a sufficient budget, and random walks fit the small one
    indptr, _ = sans.build_neighbourhood(tr, N, 3, 0, memory_budget_bytes=10**7)
    assert indptr[-1] > 50_000 // 4
    sans.build_neighbourhood(tr, N, 3, 5, memory_budget_bytes=50_000)


def test_exact_refusal_happens_before_the_full_build(monkeypatch):
    N = 300
    rng = np.random.default_rng(2)
    tr = np.stack([rng.integers(0, N, 3000), np.zeros(3000, dtype=np.int64), rng.integers(0, N, 3000)], 1)
    calls = []
    real = sans._exact_rows_sparse
    monkeypatch.setattr(sans, "_exact_rows_sparse", lambda A, N, k, s, d: calls.append(s.size) or real(A, N, k, s, d))
    with pytest.raises(EmukgError, match="over the memory budget"):
        sans.build_neighbourhood(tr, N, 2, 0, memory_budget_bytes=20_000, method="sparse")
    assert calls == [256]  # only the size sample was computed


def test_invalid_parameters():
    tr = triples([(0, 1)])
    with pytest.raises(EmukgError, match="^khop=0: "):
        sans.build_neighbourhood(tr, 2, 0, 0)
    with pytest.raises(EmukgError, match="^num_random_walks=-1: "):
        sans.build_neighbourhood(tr, 2, 2, -1)
    with pytest.raises(EmukgError, match="^walk_mode='loop': unknown walk mode; choose restart or chained"):
        sans.build_neighbourhood(tr, 2, 2, 3, walk_mode="loop")
    with pytest.raises(EmukgError, match="entity ids"):
        sans.build_neighbourhood(tr, 1, 2, 0)


# --------------------------------------------------------------------------- random-walk neighbourhoods


def test_restart_walk_end_nodes_lie_in_the_exact_pattern():
    N, k = 40, 3
    tr = random_graph(N, 60, seed=3, isolated=(5,))
    A = dense_adjacency(tr, N)
    reach_k = np.linalg.matrix_power(A, k) > 0
    indptr, indices = sans.build_neighbourhood(tr, N, k, 200, "restart", seed=0)
    exact = rows_of(*sans.build_neighbourhood(tr, N, k, 0))
    for i, row in enumerate(rows_of(indptr, indices)):
        if A[i].any():
            assert row <= set(np.flatnonzero(reach_k[i]).tolist()) <= exact[i]
            assert row  # every entity with an edge has end nodes
    assert indptr.dtype == np.int64 and indices.dtype == np.int32
    assert all(np.all(np.diff(indices[indptr[i] : indptr[i + 1]]) > 0) for i in range(N))  # sorted, distinct


@pytest.mark.parametrize("k", [1, 2, 3])
def test_end_node_frequencies_approach_the_k_step_distribution(k):
    N = 8
    tr = triples([(0, 1), (0, 2), (0, 3), (1, 2), (3, 4), (4, 5), (5, 6), (6, 3), (2, 7)])
    A = dense_adjacency(tr, N).astype(float)
    P = np.linalg.matrix_power(A / A.sum(1, keepdims=True), k)
    indptr, indices = sans.undirected_adjacency(tr, N)
    w = 100_000
    ends = sans.random_walk_end_nodes(indptr, indices, np.arange(N), k, w, "restart", rng=7)
    assert ends.shape == (N, w)
    freq = np.stack([np.bincount(row, minlength=N) / w for row in ends])
    assert np.abs(freq - P).max() < 0.01  # ~7 standard deviations at this w


def test_isolated_entities_get_uniform_entities():
    N = 20
    tr = np.concatenate([triples([(0, 1), (1, 2)]), triples([(3, 3)])])  # 3: self loop only; 4..19: no triple
    indptr, indices = sans.undirected_adjacency(tr, N)
    ends = sans.random_walk_end_nodes(indptr, indices, np.array([4, 5]), 2, 4000, "restart", rng=1)
    for row in ends:
        counts = np.bincount(row, minlength=N)
        assert counts.min() > 0 and np.abs(counts / 4000 - 1 / N).max() < 0.02
    for mode in ("restart", "chained"):  # the self loop is 3's only edge: its walks never leave it
        assert np.all(sans.random_walk_end_nodes(indptr, indices, np.array([3]), 2, 50, mode, rng=1) == 3)
    hood = rows_of(*sans.build_neighbourhood(tr, N, 2, 5, "restart", seed=0))
    assert hood[3] == {3}
    for e in range(4, N):
        assert 1 <= len(hood[e]) <= 5
    assert hood[0] == {0, 2}  # two steps from an end of the path: back to itself or on to the far end


def test_chained_mode_runs_differs_and_stays_in_the_component():
    N, k, w = 40, 2, 50
    tr = random_graph(N, 45, seed=5, isolated=(1, 2))
    A = dense_adjacency(tr, N)
    _, comp = sp.csgraph.connected_components(sp.csr_matrix(A), directed=False)
    indptr, indices = sans.undirected_adjacency(tr, N)
    ends = sans.random_walk_end_nodes(indptr, indices, np.arange(N), k, w, "chained", rng=0)
    reach_k = np.linalg.matrix_power(A, k) > 0
    for i in range(N):
        if A[i].any():
            assert reach_k[i, ends[i, 0]]  # the first walk starts at the source
            assert np.all(comp[ends[i]] == comp[i])  # later walks continue from the previous end
    chained = sans.build_neighbourhood(tr, N, k, w, "chained", seed=0)
    restart = sans.build_neighbourhood(tr, N, k, w, "restart", seed=0)
    assert sans.check_csr(*chained, N) is None
    assert not np.array_equal(chained[1], restart[1])
    # chained walks wander: some end node lies outside the k-hop pattern
    exact = rows_of(*sans.build_neighbourhood(tr, N, k, 0))
    assert any(not (row <= exact[i]) for i, row in enumerate(rows_of(*chained)) if A[i].any())


def test_walks_are_seeded():
    tr = random_graph(30, 50, seed=6)
    a = sans.build_neighbourhood(tr, 30, 3, 4, "restart", seed=1)
    b = sans.build_neighbourhood(tr, 30, 3, 4, "restart", seed=1)
    c = sans.build_neighbourhood(tr, 30, 3, 4, "restart", seed=2)
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[0], b[0])
    assert not np.array_equal(a[1], c[1])


def test_walk_budget_refusal():
    tr = random_graph(200, 2000, seed=8)
    with pytest.raises(EmukgError, match="fewer walks"):
        sans.build_neighbourhood(tr, 200, 3, 1000, memory_budget_bytes=20_000)


# --------------------------------------------------------------------------- cache


def counting_build(monkeypatch):
    calls = []
    real = sans.build_neighbourhood

    def build(*args, **kwargs):
        calls.append(args[2:4])
        return real(*args, **kwargs)

    monkeypatch.setattr(sans, "build_neighbourhood", build)
    return calls


def test_cache_hit_miss_and_location(monkeypatch, tmp_path):
    calls = counting_build(monkeypatch)
    tr = random_graph(30, 50, seed=9)
    first = sans.load_or_build_neighbourhood(tr, 30, 2, 10, "restart", seed=0)
    again = sans.load_or_build_neighbourhood(tr.copy(), 30, 2, 10, "restart", seed=0)
    assert len(calls) == 1
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])
    files = sorted((tmp_path / "cache" / "sans").glob("*.npz"))
    assert len(files) == 1
    sans.load_or_build_neighbourhood(tr, 30, 3, 10, "restart", seed=0)  # different k: a miss, a new file
    sans.load_or_build_neighbourhood(tr, 30, 2, 10, "restart", seed=1)  # different seed
    sans.load_or_build_neighbourhood(tr, 30, 2, 10, "chained", seed=0)  # different walk mode
    sans.load_or_build_neighbourhood(tr[::-1], 30, 2, 10, "restart", seed=0)  # different training bytes
    assert len(calls) == 5
    assert len(list((tmp_path / "cache" / "sans").glob("*.npz"))) == 5
    # exact neighbourhoods do not depend on the seed or walk mode: one file serves them all
    sans.load_or_build_neighbourhood(tr, 30, 2, 0, "restart", seed=0)
    sans.load_or_build_neighbourhood(tr, 30, 2, 0, "chained", seed=5)
    assert len(calls) == 6
    # use_cache=False always builds and writes nothing
    sans.load_or_build_neighbourhood(tr, 30, 2, 10, "restart", seed=0, use_cache=False)
    assert len(calls) == 7 and len(list((tmp_path / "cache" / "sans").glob("*.npz"))) == 6


def test_cache_dir_fallbacks(monkeypatch, tmp_path):
    monkeypatch.delenv("EMUKG_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sans.neighbourhood_cache_dir() == tmp_path / "xdg" / "emukg" / "sans"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert sans.neighbourhood_cache_dir() == tmp_path / "home" / ".cache" / "emukg" / "sans"


@pytest.mark.parametrize("damage", ["truncate", "garbage", "stale", "inconsistent"])
def test_damaged_cache_is_detected_logged_and_rebuilt(monkeypatch, caplog, damage):
    tr = random_graph(30, 50, seed=10)
    key = sans.neighbourhood_key(tr, 30, 2, 10, "restart", 0)
    path = sans.cache_file(key)
    good = sans.load_or_build_neighbourhood(tr, 30, 2, 10, "restart", seed=0)
    if damage == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(b"not an npz file")
    elif damage == "stale":
        other = dict(key, khop=3)
        np.savez(path, indptr=good[0], indices=good[1], key=np.array(__import__("json").dumps(other, sort_keys=True)))
    else:
        np.savez(path, indptr=good[0][:-1], indices=good[1], key=np.array(__import__("json").dumps(key, sort_keys=True)))
    calls = counting_build(monkeypatch)
    with caplog.at_level(logging.WARNING, logger="emukg"):
        again = sans.load_or_build_neighbourhood(tr, 30, 2, 10, "restart", seed=0)
    assert len(calls) == 1
    assert "rebuilding" in caplog.text and str(path) in caplog.text
    assert np.array_equal(good[1], again[1])
    # the rebuilt file is good again
    calls.clear()
    sans.load_or_build_neighbourhood(tr, 30, 2, 10, "restart", seed=0)
    assert calls == []


def test_unwritable_cache_is_not_fatal(monkeypatch, tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("EMUKG_CACHE_DIR", str(blocker))  # a file where a folder should be
    with caplog.at_level(logging.WARNING, logger="emukg"):
        indptr, _ = sans.load_or_build_neighbourhood(triples([(0, 1), (1, 2)]), 3, 1, 0)
    assert indptr[-1] == 7 and "continuing without it" in caplog.text


# --------------------------------------------------------------------------- sampler


def make_kg(train, N, R=2):
    train = torch.as_tensor(np.asarray(train), dtype=torch.long)
    empty = torch.zeros((0, 3), dtype=torch.long)
    return KnowledgeGraph([f"e{i}" for i in range(N)], [f"r{i}" for i in range(R)], {"train": train, "valid": empty, "test": empty})


def test_sampler_draws_from_the_kept_side_neighbourhood():
    N = 60
    tr = random_graph(N, 150, seed=11)
    tr[:, 1] %= 2
    kg = make_kg(tr, N)
    g = torch.Generator().manual_seed(0)
    sampler = SANSSampler(kg, 16, "cpu", g, khop=1, num_random_walks=0)
    hood = rows_of(sampler.indptr.numpy(), sampler.indices.numpy())
    pos = kg.train[:64]
    for side, kept in (("head", pos[:, 2]), ("tail", pos[:, 0])):
        cand = sampler.draw_fn(pos, side)(torch.arange(64), 40)
        assert cand.shape == (64, 40) and cand.dtype == torch.long
        for i in range(64):
            assert set(cand[i].tolist()) <= hood[int(kept[i])]
        neg = sampler.sample(pos, side)
        assert neg.shape == (64, 16) and neg.dtype == torch.long
        from_hood = np.mean([[int(e) in hood[int(kept[i])] for e in neg[i]] for i in range(64)])
        assert from_hood > 0.9
        h, r, t = pos[:, 0:1], pos[:, 1:2], pos[:, 2:3]
        true = kg.train_filter.contains(neg, r, t) if side == "head" else kg.train_filter.contains(h, r, neg)
        assert not bool(true.any())


def test_sampler_never_returns_training_triples_even_when_the_neighbourhood_runs_dry():
    # star: every leaf is a true tail of (centre, r0, ?); the centre's 1-hop neighbourhood is {centre, leaves}
    leaves = list(range(1, 9))
    tr = triples([(0, leaf) for leaf in leaves])
    tr = np.concatenate([tr, triples([(0, 0)])])  # the centre itself is a true tail too: the neighbourhood is dry
    N = 30
    kg = make_kg(tr, N, R=1)
    sampler = SANSSampler(kg, 8, "cpu", torch.Generator().manual_seed(1), khop=1, num_random_walks=0)
    pos = torch.tensor([[0, 0, 1]] * 5)
    neg = sampler.sample(pos, "tail")
    assert neg.shape == (5, 8)
    assert not set(neg.flatten().tolist()) & {0, *leaves}
    # an entity without any triple has no neighbourhood (k=2): uniform draws
    sampler2 = SANSSampler(kg, 8, "cpu", torch.Generator().manual_seed(1), khop=2, num_random_walks=0)
    assert int(sampler2.neighbourhood_sizes()[20]) == 0
    cand = sampler2.draw_fn(torch.tensor([[20, 0, 20]]), "head")(torch.tensor([0]), 400)
    assert len(set(cand.flatten().tolist())) > N // 2
    # an entity whose only triple is a self loop has the neighbourhood {itself}, all filtered: uniform fallback
    kg3 = make_kg(np.concatenate([tr, triples([(20, 20)])]), N, R=1)
    sampler3 = SANSSampler(kg3, 8, "cpu", torch.Generator().manual_seed(1), khop=2, num_random_walks=0)
    assert int(sampler3.neighbourhood_sizes()[20]) == 1
    neg = sampler3.sample(torch.tensor([[20, 0, 20]] * 3), "head")
    assert neg.shape == (3, 8) and not bool((neg == 20).any()) and len(set(neg.flatten().tolist())) > 5


def test_sampler_fallback_is_sticky_per_positive():
    """A positive whose neighbourhood round is wholly filtered switches to uniform draws; one whose round kept
    survivors keeps drawing from its neighbourhood, so all its negatives lie in it."""
    N, leaves = 40, list(range(1, 9))
    # centre 0 with leaves 1..8 and a self loop under r0: every entity of 0's 1-hop row {0..8} is a true tail of
    # (0, r0); under r1 only 5 is
    tr = np.concatenate([triples([(0, leaf) for leaf in leaves] + [(0, 0)]), triples([(0, 5)], rel=1),
                         triples([(i, i + 1) for i in range(10, 39)], rel=1)])
    kg = make_kg(tr, N)
    sampler = SANSSampler(kg, 8, "cpu", torch.Generator().manual_seed(2), khop=1, num_random_walks=0)
    hood = set(range(9))
    assert rows_of(sampler.indptr.numpy(), sampler.indices.numpy())[0] == hood
    pos = torch.tensor([[0, 0, 1]] * 20 + [[0, 1, 5]] * 20)
    neg = sampler.sample(pos, "tail")
    dry, wet = neg[:20], neg[20:]
    assert not set(dry.flatten().tolist()) & hood  # fell back: uniform over the entities outside the row
    assert len(set(dry.flatten().tolist())) > 20
    assert set(wet.flatten().tolist()) == hood - {5}  # (1/9)^16 per round to draw nothing valid: never falls back


def test_sampler_registered_and_built_from_config(tiny_dataset):
    from emukg.config import Config
    from emukg.data import load_folder
    from emukg.negatives import SAMPLERS, build_sampler

    assert SAMPLERS["sans"] is SANSSampler
    kg = load_folder(tiny_dataset)
    cfg = Config(dataset=str(tiny_dataset), sampler="sans", loss="ce", khop=2, num_random_walks=20, walk_mode="chained",
                 negative_sample_size=4, seed=3)
    sampler = build_sampler(cfg, kg, "cpu", torch.Generator().manual_seed(0))
    assert isinstance(sampler, SANSSampler)
    assert (sampler.khop, sampler.num_random_walks, sampler.walk_mode) == (2, 20, "chained")
    want = sans.build_neighbourhood(kg.train, kg.num_entities, 2, 20, "chained", 3)
    assert np.array_equal(sampler.indices.numpy(), want[1])
    neg = sampler.sample(kg.train[:5], "head")
    assert neg.shape == (5, 4)


def test_memory_budget_setting_reaches_the_sampler(tiny_dataset, monkeypatch):
    """sans_memory_mb is the budget of an exact build; over it, the error names the settings that fix it (the flags
    on the command line)."""
    from emukg.config import Config
    from emukg.data import load_dataset
    from emukg.errors import EmukgError
    from emukg.negatives import build_sampler

    kg = load_dataset(str(tiny_dataset))
    cfg = Config(dataset=str(tiny_dataset), loss="ce", sampler="sans", khop=2, num_random_walks=0, negative_sample_size=2,
                 sans_memory_mb=1)
    seen = []
    real = sans.load_or_build_neighbourhood

    def spy(*args, **kwargs):
        seen.append(args[6] if len(args) > 6 else kwargs["memory_budget_bytes"])
        return real(*args, **kwargs)

    monkeypatch.setattr(sans, "load_or_build_neighbourhood", spy)
    assert build_sampler(cfg, kg, "cpu", torch.Generator().manual_seed(0)).name == "sans"  # a tiny table fits in 1 MiB
    assert seen == [1 << 20]
    with pytest.raises(EmukgError) as err:
        SANSSampler.from_config(cfg, kg, "cpu", torch.Generator(), memory_budget_bytes=16, use_cache=False)
    assert "num_random_walks" in str(err.value) and "sans_memory_mb" in str(err.value) and "--" not in str(err.value)
    cli = err.value.render("cli")
    assert cli.startswith("--khop 2: ") and "--num-random-walks 1000" in cli and "--sans-memory-mb" in cli
    assert "-nrw 1000), a smaller -khop" in err.value.render("legacy")  # the reference mode's flags
    with pytest.raises(EmukgError, match="sans_memory_mb"):  # named as the caller spells it (Python here)
        Config(sans_memory_mb=0).validate()
