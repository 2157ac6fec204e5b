"""The Triton candidate kernels (emukg.scoring.triton_kernels) under Triton's interpreter on the CPU
(TRITON_INTERPRET=1; skipped where Triton is not installed): the in-kernel EMU mask equals emu.hash_mask bit for
bit, and the scores and gradients equal the PyTorch path's (exactly on a grid of exact arithmetic)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # before Triton is imported: the kernels run on CPU tensors

import pytest
import torch

triton = pytest.importorskip("triton")

from emukg import emu  # noqa: E402
from emukg import scoring  # noqa: E402
from emukg.models import build_model  # noqa: E402
from emukg.scoring import fast_paths  # noqa: E402
from emukg.scoring import triton_kernels as tk  # noqa: E402

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1" and not torch.cuda.is_available(),
                                reason="Triton needs a GPU or TRITON_INTERPRET=1")


def seed(s):
    return emu.draw_seed(torch.Generator().manual_seed(s))


@pytest.mark.parametrize("B,C,D,row0", [(3, 5, 7, 0), (4, 33, 70, 5), (1, 1, 1, 0)])
def test_kernel_mask_equals_hash_mask(B, C, D, row0):
    for p in (0.39, 0.8):
        s = seed(B + C)
        assert torch.equal(tk.mask_of(s, B, C, D, p, row0=row0), emu.hash_mask(s, B, C, D, p, use_kernel=False, row0=row0))


def grid(*shape, g):
    return torch.randint(-8, 9, shape, generator=g).float() / 8  # sums of these are exact in float32


def reference(q, E, cand, kind, bias, s, p):
    X = E[cand]
    if s is not None:
        X = emu.mutate(X, emu.hash_mask(s, cand.shape[0], cand.shape[1], E.shape[1], p, use_kernel=False))
    if kind == "l1":
        return bias - (q[:, None] - X).abs().sum(-1)
    return bias + (q[:, None] * X).sum(-1)


@pytest.mark.parametrize("kind", ["l1", "dot"])
@pytest.mark.parametrize("use_emu", [False, True])
def test_scores_and_gradients_equal_the_torch_formula(kind, use_emu):
    g = torch.Generator().manual_seed(1)
    B, C, D, N = 5, 19, 40, 30
    q = grid(B, D, g=g).requires_grad_(True)
    E = grid(N, D, g=g).requires_grad_(True)
    cand = torch.randint(0, N, (B, C), generator=g)
    s = seed(3) if use_emu else None
    gout = torch.randn(B, C, generator=g)
    want = reference(q, E, cand, kind, 2.0, s, 0.39)
    (want * gout).sum().backward()
    gq_want, gE_want = q.grad.clone(), E.grad.clone()
    q.grad = E.grad = None
    got = tk.FusedCandidates.apply(q, E, cand, kind, 2.0, s, 0.39, 0)
    assert torch.equal(got, want.detach())  # exact: the same mask and exact sums
    (got * gout).sum().backward()
    torch.testing.assert_close(q.grad, gq_want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(E.grad, gE_want, atol=1e-5, rtol=1e-5)
    assert E.grad.abs().sum() > 0


@pytest.mark.parametrize("name", ["TransE", "DistMult", "ComplEx"])
@pytest.mark.parametrize("side", ["tail", "head"])
def test_model_scores_through_the_fast_path_equal_the_torch_path(name, side):
    torch.manual_seed(0)
    de, dr = name == "ComplEx", name == "ComplEx"
    model = build_model(name, 25, 3, 12, 6.0, double_entity_embedding=de, double_relation_embedding=dr)
    g = torch.Generator().manual_seed(2)
    pos = torch.stack([torch.randint(25, (6,), generator=g), torch.randint(3, (6,), generator=g), torch.randint(25, (6,), generator=g)], 1)
    cand = torch.cat([pos[:, 2:3] if side == "tail" else pos[:, :1], torch.randint(25, (6, 9), generator=g)], 1)
    mutation = emu.Mutation.emu(0.5, torch.Generator().manual_seed(4))
    want = scoring.score_candidates(model, pos, side, cand, mutation, use_kernel=False)
    (want.sum()).backward()
    gE_want = model.entity_embedding.grad.clone()
    model.zero_grad(set_to_none=True)
    E, R = model.entity_embedding, model.relation_embedding
    anchor = E[pos[:, 0] if side == "tail" else pos[:, 2]]
    kind, q, bias = fast_paths.training_query(model, anchor, R[pos[:, 1]], side)
    got = tk.FusedCandidates.apply(q, E, cand, kind, bias, mutation.seed, mutation.p, 0)
    torch.testing.assert_close(got, want.detach(), atol=2e-5, rtol=1e-5)
    got.sum().backward()
    torch.testing.assert_close(model.entity_embedding.grad, gE_want, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("k", [0, 2])
def test_objective_steps_through_the_triton_path_equal_the_torch_path(k, monkeypatch):
    """EMUKG_TRITON=1 (the opt-in): two SGD steps of the objective (TransE CE + EMU; DistMult sigmoid + -adv) give the
    PyTorch path's losses, gradients and parameters, and the Triton kernels really ran."""
    from test_emu import OBJECTIVES, _assert_same_step, _objective_step

    kw = OBJECTIVES[k]
    torch_path = _objective_step(kw, "cpu", False, monkeypatch)
    calls = []
    real = tk.FusedCandidates.forward
    monkeypatch.setattr(tk.FusedCandidates, "forward", staticmethod(lambda *a: calls.append(1) or real(*a)))
    monkeypatch.setenv("EMUKG_TRITON", "1")
    fused = _objective_step(kw, "cpu", False, monkeypatch)
    assert calls  # every pass of the two steps went through the kernels
    _assert_same_step(torch_path, fused, atol=2e-5)
