"""Fixed-shape samplers (emukg.negatives.device): the compaction against a brute force, the distribution against
the exact samplers (filtered, SANS with its sticky fallback), the documented fallback, the wiring by
sampler_rounds, and (CUDA only) no host synchronisation inside a call."""

from __future__ import annotations

from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from emukg.config import Config
from emukg.data.graph import FilterIndex
from emukg.negatives import SAMPLERS, build_sampler
from emukg.negatives.device import FixedRoundsFiltered, FixedRoundsSANS, first_valid, fixed_rounds


def test_first_valid_equals_a_brute_force():
    g = torch.Generator().manual_seed(0)
    for n in (1, 3, 8):
        cand = torch.randint(0, 50, (40, 20), generator=g)
        ok = torch.rand(40, 20, generator=g) < 0.3
        fallback = torch.randint(100, 150, (40, n), generator=g)
        out, found = first_valid(cand, ok, n, fallback)
        for b in range(40):
            valid = [int(c) for c, k in zip(cand[b], ok[b]) if k][:n]
            want = valid + fallback[b, len(valid):].tolist()
            assert out[b].tolist() == want
            assert int(found[b]) == int(ok[b].sum())


def graph(N=12, answers=(1, 2, 3, 4, 5, 6, 7)):
    """Kept pair (0, r0) has ``answers`` as training tails (valid fraction (N - len(answers)) / N for uniform draws)."""
    triples = torch.tensor([[0, 0, a] for a in answers] + [[3, 1, 4], [5, 1, 6]])
    return SimpleNamespace(num_entities=N, num_relations=2, train=triples,
                           train_filter=FilterIndex.from_triples(triples, N, 2))


def histogram(sampler, B, side="tail", calls=1):
    pos = torch.tensor([[0, 0, 1]] * B)
    c = Counter()
    for _ in range(calls):
        out = sampler.sample(pos, side)
        c.update(map(tuple, out.tolist()))
    total = sum(c.values())
    return {k: v / total for k, v in c.items()}


def tv(p, q) -> float:
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in set(p) | set(q))


def test_filtered_has_the_exact_samplers_distribution():
    kg = graph()
    n = 2
    exact = SAMPLERS["filtered"](kg, n, "cpu", torch.Generator().manual_seed(1))
    fixed = fixed_rounds(SAMPLERS["filtered"](kg, n, "cpu", torch.Generator().manual_seed(2)), rounds=8)
    assert isinstance(fixed, FixedRoundsFiltered)
    p, q = histogram(exact, 40000), histogram(fixed, 40000)
    assert fixed.shortfall() == 0  # valid fraction 5/12, 32 draws for 2 slots: P[a row does not fill] ≈ 8e-7
    valid = {0, 8, 9, 10, 11}
    assert {e for k in q for e in k} <= valid  # never a training triple when the row fills
    # both: n independent draws uniform over the 5 valid tails, so every ordered pair has probability 1/25
    assert max(abs(v - 1 / 25) for v in q.values()) < 0.006 and len(q) == 25
    assert tv(p, q) < 0.03


def test_filtered_fallback_after_the_rounds_is_unfiltered_uniform():
    kg = graph(N=12, answers=tuple(range(1, 12)))  # one valid tail (0) for the kept pair (0, r0): f = 1/12
    fixed = FixedRoundsFiltered(SAMPLERS["filtered"](kg, 4, "cpu", torch.Generator().manual_seed(0)), rounds=1)
    pos = torch.tensor([[0, 0, 1]] * 2000)
    out = fixed.sample(pos, "tail")
    found = fixed.last_found.clamp(max=4)
    assert fixed.shortfall() == int((4 - found).sum()) > 0
    for b in range(2000):
        k = int(found[b])
        assert (out[b, :k] == 0).all()  # the valid slots first, in draw order
    rest = torch.cat([out[b, int(found[b]):] for b in range(2000)])
    counts = torch.bincount(rest, minlength=12).double() / rest.numel()
    assert (counts - 1 / 12).abs().max() < 0.02  # the fallback: unfiltered uniform over all 12 entities


def sans_pair(rounds, seed_exact=1, seed_fixed=2):
    """Entity 0's neighbourhood is [1, 2, 3, 9] where 1, 2, 3 are training tails of (0, r0): a round of 2n draws is dry
    with probability (3/4)^(2n), after which the row draws uniformly (the sticky fallback)."""
    kg = graph(N=12, answers=(1, 2, 3))
    N = kg.num_entities
    lists = {0: [1, 2, 3, 9]}
    indptr = np.zeros(N + 1, dtype=np.int64)
    for e in range(N):
        indptr[e + 1] = indptr[e] + len(lists.get(e, [e]))
    indices = np.concatenate([np.asarray(lists.get(e, [e]), dtype=np.int64) for e in range(N)])
    make = lambda s: SAMPLERS["sans"](kg, 2, "cpu", torch.Generator().manual_seed(s), neighbourhood=(indptr, indices))
    return make(seed_exact), FixedRoundsSANS(make(seed_fixed), rounds=rounds)


def test_sans_has_the_exact_samplers_distribution_with_its_sticky_fallback():
    exact, fixed = sans_pair(rounds=12)
    p, q = histogram(exact, 40000), histogram(fixed, 40000)
    assert fixed.shortfall() == 0
    # the sticky fallback is visible: besides (9, 9) the pairs hold uniform valid tails (0, 4..11)
    assert q[(9, 9)] > 0.2 and sum(v for k, v in q.items() if 9 not in k) > 0.05
    assert {e for k in q for e in k} <= {0, 4, 5, 6, 7, 8, 9, 10, 11}
    assert tv(p, q) < 0.03


def test_sans_sticky_switch_against_a_loop_over_the_same_draws(monkeypatch):
    """The fixed-shape switch equals the reference's per-row loop applied to the very same drawn rounds."""
    _, fixed = sans_pair(rounds=5)
    drawn = {}
    orig_nb, orig_un = fixed._neighbourhood, fixed._uniform
    monkeypatch.setattr(fixed, "_neighbourhood", lambda kept, k: drawn.setdefault("nb", orig_nb(kept, k)))
    monkeypatch.setattr(fixed, "_uniform", lambda B, k: drawn.setdefault(("un", k), orig_un(B, k)))
    B, n, R = 3000, 2, 5
    pos = torch.tensor([[0, 0, 1]] * B)
    out = fixed.sample(pos, "tail")
    nb = drawn["nb"].view(B, R, 2 * n)
    un = drawn[("un", R * 2 * n)].view(B, R, 2 * n)
    fb = drawn[("un", n)]
    bad = {1, 2, 3}
    for b in range(B):
        got, fallen = [], False
        for r in range(R):
            row = (un if fallen else nb)[b, r].tolist()
            valid = [e for e in row if e not in bad]
            if not fallen and not valid:
                fallen = True
            got += valid
        got = got[:n] + fb[b, len(got[:n]):].tolist()
        assert out[b].tolist() == got, b


def test_sampler_rounds_wires_the_twins():
    kg = graph()
    kg.train_filter = kg.train_filter
    for name, cls in (("filtered", FixedRoundsFiltered), ("uniform", None)):
        cfg = Config(loss="ce", sampler=name, negative_sample_size=2, sampler_rounds=3)
        cfg.validate()
        s = build_sampler(cfg, kg, "cpu", torch.Generator().manual_seed(0))
        if cls is None:
            assert type(s).__name__ == "UniformSampler"
        else:
            assert isinstance(s, cls) and s.rounds == 3
    for rounds in (None, 0):  # auto on the CPU, and 0: the exact loop
        cfg = Config(loss="ce", sampler="filtered", negative_sample_size=2, sampler_rounds=rounds)
        cfg.validate()
        assert type(build_sampler(cfg, kg, "cpu", torch.Generator())).__name__ == "FilteredUniformSampler"
    with pytest.raises(Exception, match="sampler_rounds"):
        Config(sampler_rounds=-1).validate()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("which", ["filtered", "sans"])
def test_no_host_sync_inside_a_call_on_cuda(which):
    exact, fixed = sans_pair(rounds=4) if which == "sans" else (None, None)
    if which == "filtered":
        kg = graph()
        kg.train_filter = kg.train_filter.to("cuda")
        fixed = FixedRoundsFiltered(SAMPLERS["filtered"](kg, 2, "cuda", torch.Generator("cuda").manual_seed(0)))
    else:
        inner = fixed.inner
        inner.device, inner.generator = torch.device("cuda"), torch.Generator("cuda").manual_seed(0)
        inner.filter, inner.indptr, inner.indices = inner.filter.to("cuda"), inner.indptr.cuda(), inner.indices.cuda()
        fixed = FixedRoundsSANS(inner, 4)
    pos = torch.tensor([[0, 0, 1]] * 64, device="cuda")
    fixed.sample(pos, "tail")  # warm-up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = fixed.sample(pos, "tail")
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert out.shape == (64, 2) and out.device.type == "cuda"
