"""The kernel path's per-step gradient table (emukg.scoring.StepRows): slot-mapped backward kernels that add to a table,
row ownership by entity id, compact (row-sparse) and dense tables, and the compaction of a step's ids."""

from __future__ import annotations

import pytest
import torch

from emukg import emu, kernels
from emukg import scoring
from emukg.models import build_model

needs_kernel = pytest.mark.skipif(not emu.kernel_available(), reason="native kernels unavailable (no C compiler or EMUKG_NO_NATIVE=1)")


@pytest.mark.parametrize("native", [True, False], ids=["kernel", "torch"])
@pytest.mark.parametrize("num_rows,n", [(50, 400), (10_000, 300), (7, 0), (13, 5)])
def test_compact_ids_equals_torch_unique(num_rows, n, native, monkeypatch):
    if native and not kernels.available("sparse_optim"):
        pytest.skip("native kernels unavailable")
    if not native:
        monkeypatch.setattr(kernels, "available", lambda name: False)
    g = torch.Generator().manual_seed(num_rows)
    ws = scoring.StepWorkspace()
    for _ in range(3):  # the workspace's bitmap is left all False after every call
        ids = torch.randint(num_rows, (n,), generator=g)
        want_u, want_inv = torch.unique(ids, sorted=True, return_inverse=True)
        for got_u, got_inv in (scoring.compact_ids(ids, num_rows), scoring.compact_ids(ids, num_rows, ws)):
            assert torch.equal(got_u, want_u) and torch.equal(got_inv, want_inv)
        assert torch.equal(got_u[got_inv], ids)
        assert not ws.index(num_rows)[0].any()


@needs_kernel
def test_compact_rows_checks_its_input():
    with pytest.raises(IndexError):
        kernels.compact_rows(torch.tensor([3, 10]), 10)
    with pytest.raises(ValueError, match="int64"):
        kernels.compact_rows(torch.tensor([3, 4], dtype=torch.int32), 10)
    uniq, inv = kernels.compact_rows(torch.tensor([[9, 2], [2, 0]]), 10)
    assert uniq.tolist() == [0, 2, 9] and inv.tolist() == [[2, 1], [1, 0]]
    big = torch.randint(200_000, (100_000,), generator=torch.Generator().manual_seed(0))  # the threaded ranking
    u, i = kernels.compact_rows(big, 200_000)
    want_u, want_i = torch.unique(big, sorted=True, return_inverse=True)
    assert torch.equal(u, want_u) and torch.equal(i, want_i)


def _case(metric, D, N=40, B=6, C=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    E = torch.randn(N, D, generator=g)
    q = torch.randn(B, D, generator=g)
    cand = torch.randint(N, (B, C), generator=g)
    cand[1, 3] = cand[1, 0]  # the positive again among the candidates, and one row in two batch rows
    cand[4, 5] = cand[2, 7]
    gout = torch.randn(B, C, generator=g)
    return E, q, cand, gout


MUTS = [(kernels.Mut.NONE, None), (kernels.Mut.EMU, None), (kernels.Mut.MIXUP, "ratio")]


@needs_kernel
@pytest.mark.parametrize("metric,D", [("l1", 16), ("dot", 20), ("c2", 36)])
@pytest.mark.parametrize("mut,ratio", MUTS, ids=["none", "emu", "mixup"])
def test_slot_mapped_backward_adds_the_same_rows_as_the_whole_table(metric, D, mut, ratio):
    E, q, cand, gout = _case(metric, D)
    B, C = cand.shape
    r = torch.rand(B, C, generator=torch.Generator().manual_seed(1)) if ratio else None
    T = emu.keep_threshold(0.4) if mut == kernels.Mut.EMU else 0
    args = (q, E, cand, gout, metric, mut, 11, 22, T, r)
    gq, whole = kernels.cand_bwd(*args)
    uniq, inv = scoring.compact_ids(cand.reshape(-1), E.shape[0])
    table = torch.zeros(uniq.numel(), D)
    gq2, out = kernels.cand_bwd(*args, out_E=table, slot=inv.view(B, C))
    assert out is table and torch.equal(gq, gq2) and torch.equal(table, whole[uniq])
    again = torch.full((uniq.numel(), D), 0.5)  # added to, not overwritten
    kernels.cand_bwd(*args, out_E=again, slot=inv.view(B, C))
    assert torch.allclose(again, whole[uniq] + 0.5, atol=1e-6)
    untouched = torch.ones(E.shape[0], dtype=torch.bool)
    untouched[uniq] = False
    assert torch.count_nonzero(whole[untouched]) == 0
    # the same gradient as autograd through the PyTorch formula (dense table)
    Eg, qg = E.clone().requires_grad_(), q.clone().requires_grad_()
    mutation = None
    if mut == kernels.Mut.EMU:
        mutation = emu.Mutation("emu", seed=torch.tensor([11, 22]), p=0.4)
    elif mut == kernels.Mut.MIXUP:
        mutation = emu.Mutation("mixup", ratio=r)
    X = Eg[cand]
    if mutation is not None:
        X = mutation.apply(X)
    if metric == "l1":
        s = -(qg[:, None] - X).abs().sum(-1)
    elif metric == "dot":
        s = (qg[:, None] * X).sum(-1)
    else:
        h = D // 2
        s = -torch.sqrt((qg[:, None, :h] - X[..., :h]) ** 2 + (qg[:, None, h:] - X[..., h:]) ** 2).sum(-1)
    (s * gout).sum().backward()
    assert torch.allclose(whole, Eg.grad, atol=1e-5) and torch.allclose(gq, qg.grad, atol=1e-5)


@needs_kernel
def test_backward_is_deterministic_and_nearly_independent_of_the_thread_count():
    E, q, cand, gout = _case("l1", 32, N=200, B=40, C=30)
    args = (q, E, cand, gout, "l1", kernels.Mut.EMU, 5, 6, emu.keep_threshold(0.5), None)
    one = kernels.cand_bwd(*args, threads=1)
    two = [kernels.cand_bwd(*args, threads=2) for _ in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*two))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one, two[0]))


@needs_kernel
def test_slot_and_table_are_checked():
    E, q, cand, gout = _case("l1", 16)
    with pytest.raises(ValueError, match="out_E"):
        kernels.cand_bwd(q, E, cand, gout, "l1", slot=torch.zeros_like(cand))
    with pytest.raises(ValueError, match="one per entity"):
        kernels.cand_bwd(q, E, cand, gout, "l1", out_E=torch.zeros(3, 16))
    with pytest.raises(IndexError):
        kernels.cand_bwd(q, E, cand, gout, "l1", out_E=torch.zeros(3, 16), slot=torch.full_like(cand, 3))
    with pytest.raises(ValueError, match="slot"):
        kernels.cand_bwd(q, E, cand, gout, "l1", out_E=torch.zeros(3, 16), slot=torch.zeros(2, 2, dtype=torch.int64))


@needs_kernel
@pytest.mark.parametrize("name,D", [("TransE", 8), ("ComplEx", 20), ("RotatE", 20), ("pRotatE", 12), ("HAKE", 10)])
def test_scorer_gradient_through_the_step_table_matches_the_pytorch_path(name, D):
    """Two passes (CE, EMU) and the anchors through one StepRows (dense and compact) against autograd over
    model.score: the same gradients; the compact table's gradient is a coalesced sparse tensor over its rows."""
    torch.manual_seed(0)
    model = build_model(name, 30, 4, D, 6.0, name in ("ComplEx", "RotatE"), name == "ComplEx")
    g = torch.Generator().manual_seed(3)
    pos = torch.stack([torch.randint(30, (7,), generator=g), torch.randint(4, (7,), generator=g),
                       torch.randint(30, (7,), generator=g)], 1)
    c1 = torch.cat([pos[:, 2:], torch.randint(30, (7, 5), generator=g)], 1)
    c2 = torch.cat([pos[:, 2:], torch.randint(30, (7, 5), generator=g)], 1)
    mutation = emu.Mutation("emu", seed=torch.tensor([3, 4]), p=0.6)
    grads = {}
    for mode, kw in {"pytorch": dict(use_kernel=False), "dense": dict(use_kernel=True),
                     "compact": dict(use_kernel=True, sparse=True, candidates=[c1, c2])}.items():
        model.zero_grad(set_to_none=True)
        scorer = scoring.CandidateScorer(model, pos, "tail", **kw)
        assert (scorer.rows is not None) == (mode != "pytorch")
        loss = scorer(c1).logsumexp(1).sum() + 0.3 * scorer(c2, mutation).square().sum()
        loss.backward()
        grads[mode] = model.entity_embedding.grad
    rows = grads["compact"]._indices()[0]  # (autograd's accumulation drops the coalesced flag, not the order)
    assert grads["compact"].is_sparse and bool((rows[1:] > rows[:-1]).all())
    assert torch.equal(grads["compact"].to_dense(), grads["dense"])
    assert torch.allclose(grads["dense"], grads["pytorch"], atol=1e-4)
    touched = torch.cat([pos[:, 0], c1.reshape(-1), c2.reshape(-1)]).unique()
    assert torch.equal(rows, touched)


@needs_kernel
def test_compact_scorer_refuses_unannounced_candidates():
    model = build_model("TransE", 10, 2, 16, 6.0)
    pos = torch.tensor([[0, 1, 2], [3, 0, 4]])
    c = torch.tensor([[2, 5], [4, 6]])
    with pytest.raises(ValueError, match="announced"):
        scoring.CandidateScorer(model, pos, "tail", sparse=True)
    scorer = scoring.CandidateScorer(model, pos, "tail", sparse=True, candidates=[c])
    with pytest.raises(ValueError, match="announced"):
        scorer(c.clone())


@pytest.mark.skipif(not emu.kernel_available(), reason="native kernel unavailable")
def test_the_workspace_never_overwrites_an_accumulated_sparse_gradient():
    """Two row-sparse steps whose gradients accumulate (no zero_grad between them) give E the sum of both: the second
    step must not zero the table the first step's gradient still lives on (StepWorkspace takes a fresh one then)."""
    torch.manual_seed(0)
    model = build_model("TransE", 30, 3, 16, 6.0)
    positives = torch.tensor([[0, 1, 2], [3, 0, 4], [5, 2, 6]])
    cands = [torch.tensor([[2, 7, 8], [4, 9, 1], [6, 11, 3]]), torch.tensor([[2, 12, 13], [4, 7, 14], [6, 9, 8]])]
    E = model.entity_embedding

    def step(cand, workspace):
        scorer = scoring.CandidateScorer(model, positives, "tail", sparse=True, candidates=[cand], workspace=workspace)
        (scorer(cand) ** 2).sum().backward()

    singles = []
    for cand in cands:
        E.grad = None
        step(cand, scoring.StepWorkspace())
        singles.append(E.grad.to_dense().clone())
    E.grad = None
    ws = scoring.StepWorkspace()
    for cand in cands:
        step(cand, ws)
    assert torch.allclose(E.grad.to_dense(), singles[0] + singles[1], rtol=0, atol=1e-6)
    assert singles[0].abs().sum() > 0 and singles[1].abs().sum() > 0
