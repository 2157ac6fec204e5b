"""Negative samplers: filtering, refill, counts, determinism, and the config -> sampler mapping."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from emukg.config import Config
from emukg.data import load_folder
from emukg.errors import EmukgError
from emukg.negatives import SAMPLERS, NegativeSampler, build_sampler, filter_and_refill, register_sampler, uniform_draw


@pytest.fixture
def kg(tiny_dataset):
    return load_folder(tiny_dataset)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_registry():
    assert SAMPLERS["uniform"].__name__ == "UniformSampler"
    assert SAMPLERS["filtered"].__name__ == "FilteredUniformSampler"
    assert SAMPLERS["sans"].__name__ == "SANSSampler"


def test_no_import_circle():
    """emukg.negatives.sans does not import emukg.negatives; importing emukg.negatives alone registers all three samplers."""
    import subprocess
    import sys

    import ast

    import emukg.negatives.sans as sans_module

    # sans is a submodule now, so importing it runs the package first: the check is on what sans itself imports
    tree = ast.parse(Path(sans_module.__file__).read_text(encoding="utf-8"))
    imported = [(n.level, n.module) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [(0, a.name) for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [i for i in imported if i == (1, None) or (i[0] == 0 and (i[1] or "").startswith("emukg.negatives"))], imported
    code = ("import sys, emukg.negatives as s; before = set(sys.modules)\n"
            "assert {'uniform', 'filtered', 'sans'} <= set(s.SAMPLERS), s.SAMPLERS\n"
            "assert set(sys.modules) == before")
    subprocess.run([sys.executable, "-c", code], check=True)
    subprocess.run([sys.executable, "-c", "import emukg.negatives as s; assert 'sans' in s.SAMPLERS"], check=True)


def test_uniform_shape_range_determinism(kg):
    pos = kg.train
    a = SAMPLERS["uniform"](kg, 7, "cpu", gen(3)).sample(pos, "tail")
    b = SAMPLERS["uniform"](kg, 7, "cpu", gen(3)).sample(pos, "tail")
    c = SAMPLERS["uniform"](kg, 7, "cpu", gen(4)).sample(pos, "tail")
    assert a.shape == (pos.shape[0], 7) and a.dtype == torch.long
    assert int(a.min()) >= 0 and int(a.max()) < kg.num_entities
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("side", ["tail", "head"])
def test_filtered_never_returns_a_training_triple(kg, side):
    pos = kg.train.repeat(4, 1)
    s = SAMPLERS["filtered"](kg, 6, "cpu", gen(1))
    neg = s.sample(pos, side)
    assert neg.shape == (pos.shape[0], 6)
    h, r, t = (pos[:, i : i + 1] for i in range(3))
    hit = kg.train_filter.contains(h, r, neg) if side == "tail" else kg.train_filter.contains(neg, r, t)
    assert not bool(hit.any())
    assert int(neg.min()) >= 0 and int(neg.max()) < kg.num_entities
    # a negative may still be a valid/test triple: only training triples are filtered
    again = SAMPLERS["filtered"](kg, 6, "cpu", gen(1)).sample(pos, side)
    assert torch.equal(neg, again)


def test_filtered_on_a_dense_graph(shared_datasets):
    kg = load_folder(shared_datasets / "nations")  # 14 entities: many rows need several refill rounds
    pos = kg.train
    neg = SAMPLERS["filtered"](kg, 64, "cpu", gen(2)).sample(pos, "tail")
    assert neg.shape == (pos.shape[0], 64)
    assert not bool(kg.train_filter.contains(pos[:, :1], pos[:, 1:2], neg).any())


def test_keeps_first_valid_in_draw_order_and_refills():
    """draw_fn returns a known sequence; the kept negatives are the first valid ones in draw order."""
    from emukg.data.graph import FilterIndex

    # training triples (0, 0, t) for t in {1, 2, 3}: for the pair (0, 0) only 0 and 4..9 are valid tails
    filt = FilterIndex.from_triples(torch.tensor([[0, 0, 1], [0, 0, 2], [0, 0, 3]]), 10, 1)
    pos = torch.tensor([[0, 0, 1], [5, 0, 6]])
    calls = []

    def draw(rows, k):
        calls.append((rows.tolist(), k))
        if len(calls) == 1:  # row 0: [1,2,3,4,1,2] -> only 4 valid; row 1: all valid
            return torch.tensor([[1, 2, 3, 4, 1, 2], [9, 8, 7, 6, 5, 4]])
        return torch.tensor([[3, 0, 5, 6, 7, 8]])  # second round, row 0 only: 0, 5 valid

    out = filter_and_refill(filt, pos, "tail", 3, draw)
    assert calls == [([0, 1], 6), ([0], 6)]
    assert out.tolist() == [[4, 0, 5], [9, 8, 7]]


def test_fallback_is_sticky_per_row():
    """The reference's rule: a row whose primary round leaves zero survivors adds nothing that round and draws from
    the fallback in all later rounds; a row that got survivors keeps drawing from the primary draw."""
    from emukg.data.graph import FilterIndex

    # for the pair (0, 0), tails 1 and 2 are training triples; (5, 0) has no answers
    filt = FilterIndex.from_triples(torch.tensor([[0, 0, 1], [0, 0, 2]]), 10, 1)
    pos = torch.tensor([[0, 0, 1], [5, 0, 6]])
    log = []

    def draw(rows, k):  # row 0: only filtered ids; row 1: one valid id (7) per round, so it needs 4 rounds
        log.append(("draw", rows.tolist()))
        return torch.tensor([[1, 2] * (k // 2) if int(i) == 0 else [7] + [1] * (k - 1) for i in rows])

    def fallback(rows, k):
        log.append(("fallback", rows.tolist()))
        return torch.tensor([[3, 4, 5, 0, 1, 2, 3, 4][:k]] * rows.numel())

    out = filter_and_refill(FilterIndex.from_triples(torch.tensor([[0, 0, 1], [0, 0, 2], [5, 0, 1]]), 10, 1),
                            pos, "tail", 4, draw, fallback_fn=fallback)
    assert out.tolist() == [[3, 4, 5, 0], [7, 7, 7, 7]]
    # round 1: both rows from the primary draw, row 0 gets nothing and falls back; later rounds: row 0 never
    # returns to the primary draw (it was filled by its first fallback round), row 1 never falls back
    assert log == [("draw", [0, 1]), ("draw", [1]), ("fallback", [0]), ("draw", [1]), ("draw", [1])]
    # without a fallback every round uses the primary draw: a row that only ever draws filtered ids is an error
    with pytest.raises(EmukgError, match="lower negative_sample_size or use unfiltered negatives \\(loss='ce', sampler='uniform'\\)"):
        filter_and_refill(filt, pos[:1], "tail", 4, draw, max_rounds=5)


def test_unfillable_row_raises():
    from emukg.data.graph import FilterIndex

    filt = FilterIndex.from_triples(torch.tensor([[0, 0, 0], [0, 0, 1], [0, 0, 2]]), 3, 1)
    with pytest.raises(EmukgError):
        filter_and_refill(filt, torch.tensor([[0, 0, 1]]), "tail", 2, uniform_draw(3, gen(), "cpu"))


def test_build_sampler_modes(kg):
    g = gen()
    assert build_sampler(Config(loss="sigmoid"), kg, "cpu", g).name == "filtered"
    assert build_sampler(Config(loss="ce", sampler="filtered"), kg, "cpu", g).name == "filtered"
    assert build_sampler(Config(loss="ce", sampler="uniform"), kg, "cpu", g).name == "uniform"
    assert build_sampler(Config(loss="1vsall", model="DistMult"), kg, "cpu", g) is None
    s = build_sampler(Config(loss="ce", negative_sample_size=9), kg, "cpu", g)
    assert s.num_negatives == 9


def test_register_sampler_and_from_config(kg, monkeypatch):
    monkeypatch.setattr(SAMPLERS, "_items", dict(SAMPLERS.items()))  # the registration is undone after the test

    @register_sampler("test-constant")
    class Constant(NegativeSampler):
        def sample(self, positives, side):
            return torch.zeros(positives.shape[0], self.num_negatives, dtype=torch.long)

    s = build_sampler(Config(loss="ce", sampler="filtered"), kg, "cpu", gen())
    assert isinstance(s, NegativeSampler)
    c = SAMPLERS["test-constant"].from_config(Config(negative_sample_size=3), kg, "cpu", gen())
    assert c.sample(kg.train, "tail").shape == (kg.train.shape[0], 3)
    assert SAMPLERS.get("Test-Constant") is Constant and Constant.name == "test-constant"
    with pytest.raises(ValueError, match="registered twice"):
        register_sampler("TEST-constant")(Constant)


def test_sampler_registry_lookups_and_suggestions():
    """SAMPLERS is the resolver's Registry: any case, and a near miss suggests the name (Python and CLI spellings)."""
    from emukg.errors import ParamError
    from emukg.resolver import Registry

    assert isinstance(SAMPLERS, Registry) and list(SAMPLERS) == ["uniform", "filtered", "sans"]
    assert SAMPLERS.get("SANS") is SAMPLERS["sans"] and "Filtered" in SAMPLERS
    with pytest.raises(ParamError) as err:
        SAMPLERS.get("filterd")
    assert str(err.value) == ("sampler='filterd': unknown negative sampler; did you mean filtered? "
                              "choose uniform, filtered or sans.")
    assert err.value.render("cli").startswith("--sampler filterd: unknown negative sampler; did you mean filtered?")
    with pytest.raises(ParamError, match="did you mean uniform\\?"):
        SAMPLERS.get("unifrom")


@pytest.mark.parametrize("side", ["tail", "head"])
def test_native_filter_equals_contains(kg, side):
    from emukg.negatives import _Validity

    pos = kg.train.repeat(3, 1)
    cand = torch.randint(kg.num_entities, (pos.shape[0], 40), generator=gen(5))
    native = _Validity(kg.train_filter, pos[:, 0], pos[:, 1], pos[:, 2], side)
    if native.lib is None:
        pytest.skip("native kernels unavailable")
    rows = torch.arange(pos.shape[0])
    n = cand.shape[1]  # room for every valid candidate: the output is exactly the valid ones, in order
    out, filled = torch.full((pos.shape[0], n), -1), torch.zeros(pos.shape[0], dtype=torch.long)
    found = native.fill(rows, cand, out, filled, n)
    valid = native(rows, cand)  # the tensor path: FilterIndex.contains
    assert torch.equal(found, valid.sum(1)) and torch.equal(filled, found)
    for i in range(0, pos.shape[0], 7):
        assert torch.equal(out[i, :int(found[i])], cand[i][valid[i]])
    assert bool((~valid).any()) and bool(valid.any())


@pytest.mark.parametrize("side", ["tail", "head"])
def test_native_fill_equals_tensor_path(side):
    """The fused filter+compact kernel gives exactly the tensor path's negatives, for short answer lists (linear
    scan) and long ones (bitmap), including rows refilled by the fallback draw."""
    from emukg.data.graph import FilterIndex
    from emukg.negatives import _Validity

    N = 50
    hub = torch.tensor([[0, 0, t] for t in range(1, 41)] + [[h, 1, 0] for h in range(5, 45)])  # 40 answers each
    rest = torch.randint(N, (200, 3), generator=gen(1))
    rest[:, 1] = torch.randint(3, (200,), generator=gen(2))
    filt = FilterIndex.from_triples(torch.cat([hub, rest]), N, 3)
    probe = _Validity(filt, hub[:1, 0], hub[:1, 1], hub[:1, 2], side)
    if probe.lib is None:
        pytest.skip("native kernels unavailable")
    pos = torch.cat([hub, rest])[torch.randperm(280, generator=gen(3))]

    def run(native):
        g = gen(11)
        # an adversarial draw: entities 1..40 are all known for the hub rows, so their rows often need the fallback
        draw = lambda rows, k: torch.randint(1, 41, (rows.numel(), k), generator=g)
        fallback = lambda rows, k: torch.randint(N, (rows.numel(), k), generator=g)
        return filter_and_refill(filt, pos, side, 7, draw, fallback_fn=fallback, native=native)

    got = run(None)
    assert torch.equal(got, run(False))
    h = pos[:, 0].unsqueeze(1).expand_as(got) if side == "tail" else got
    t = got if side == "tail" else pos[:, 2].unsqueeze(1).expand_as(got)
    assert not bool(filt.contains(h, pos[:, 1].unsqueeze(1).expand_as(got), t).any())


# --- torch.randint's draws in C (kernels.randint; issue 20) ----------------------------------------------------------
from emukg import kernels  # noqa: E402

needs_sample_step = pytest.mark.skipif(not kernels.available("sample_step"),
                                       reason="native kernel sample_step unavailable")


@needs_sample_step
@pytest.mark.parametrize("high, shape", [(14541, (1000, 256)), (1, (10,)), (7, (623,)), (7, (624,)), (7, (625,)),
                                         (40943, (3, 1249)), (kernels.RANDINT_MAX, (3000,)), (2_500_000, (50, 77))])
def test_randint_is_torch_randint_bit_for_bit(high, shape):
    """The C draws equal torch.randint's, and leave the generator in the same state, across twists of the MT19937
    state (624 words), over several calls (each starting mid-state), for ranges from 1 to RANDINT_MAX."""
    g, h = torch.Generator().manual_seed(high % 1000), torch.Generator().manual_seed(high % 1000)
    for _ in range(4):
        a, b = kernels.randint(high, shape, g), torch.randint(0, high, shape, generator=h)
        assert a.dtype == b.dtype == torch.int64 and a.shape == b.shape
        assert torch.equal(a, b)
        assert torch.equal(g.get_state(), h.get_state())
    assert torch.equal(torch.rand(5, generator=g), torch.rand(5, generator=h))  # other draws continue alike


@needs_sample_step
def test_randint_beyond_its_range_and_on_a_bad_state_is_torch_randint(monkeypatch):
    """Ranges from 2**28 on (torch draws them otherwise) go to torch.randint; so does every call after a failed
    first-call check."""
    import emukg.kernels.sampling as sampling

    g, h = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    for high in (kernels.RANDINT_MAX + 1, 2 ** 31 + 11, 2 ** 32 - 1):
        assert torch.equal(kernels.randint(high, (300,), g), torch.randint(0, high, (300,), generator=h))
    monkeypatch.setattr(sampling, "_RANDINT_OK", [])
    monkeypatch.setattr(sampling, "_mt_draw", lambda gen, high, n: torch.zeros(n, dtype=torch.int64))  # a wrong kernel
    assert torch.equal(kernels.randint(100, (64,), g), torch.randint(0, 100, (64,), generator=h))
    assert sampling._RANDINT_OK == [False]


@needs_sample_step
def test_uniform_sampler_draws_what_torch_randint_draws(kg):
    """The uniform sampler and the filtered sampler's draw go through kernels.randint: the same ids as torch.randint
    from the same generator (so every run's negatives are unchanged)."""
    from emukg.negatives import UniformSampler

    pos = kg.splits["train"][:9]
    s = UniformSampler(kg, 6, "cpu", gen(3))
    want = torch.randint(0, kg.num_entities, (9, 6), generator=gen(3))
    assert torch.equal(s.sample(pos, "tail"), want)
    rows = torch.arange(4)
    assert torch.equal(uniform_draw(kg.num_entities, gen(4), "cpu")(rows, 5),
                       torch.randint(0, kg.num_entities, (4, 5), generator=gen(4)))
