"""EMU masks (statistics, kernel == torch hash), gradient flow, and the fused kernel against the PyTorch path."""

from __future__ import annotations

import pytest
import torch

from emukg import emu
from emukg import scoring
from emukg.models import build_model

needs_kernel = pytest.mark.skipif(not emu.kernel_available(), reason="native kernels unavailable (no C compiler or EMUKG_NO_NATIVE=1)")


def seed_of(s):
    return emu.draw_seed(torch.Generator().manual_seed(s))


def test_h32_matches_the_c_definition():
    def h32(x):
        x ^= x >> 16
        x = (x * 0x7FEB352D) & 0xFFFFFFFF
        x ^= x >> 15
        x = (x * 0x846CA68B) & 0xFFFFFFFF
        return x ^ (x >> 16)

    xs = [0, 1, 2, 12345, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xDEADBEEF]
    assert emu.h32(torch.tensor(xs)).tolist() == [h32(x) for x in xs]


@pytest.mark.parametrize("p", [0.39, 0.8])
def test_mask_statistics(p):
    m = emu.hash_mask(seed_of(0), 200, 65, 100, p, use_kernel=False)
    assert m.shape == (200, 65, 100) and m.dtype == torch.bool
    assert bool(m[:, 0].all())  # the positive's row is all ones
    frac = m[:, 1:].float().mean().item()
    assert abs(frac - p) < 0.003  # 1.28M draws: std ≈ 4e-4
    # per position (component, candidate, batch row) the rate is p as well, not a structured pattern
    assert (m[:, 1:].float().mean((0, 1)) - p).abs().max() < 0.02
    assert (m[:, 1:].float().mean((0, 2)) - p).abs().max() < 0.03
    # neighbouring components and neighbouring candidates are uncorrelated
    x = m[:, 1:].float() - p
    assert abs((x[..., 1:] * x[..., :-1]).mean().item()) < 0.004
    assert abs((x[:, 1:] * x[:, :-1]).mean().item()) < 0.004


def test_mask_extremes_and_seeds():
    s = seed_of(1)
    assert not bool(emu.hash_mask(s, 3, 5, 7, 0.0, use_kernel=False)[:, 1:].any())
    assert bool(emu.hash_mask(s, 3, 5, 7, 1.0, use_kernel=False).all())
    a = emu.hash_mask(s, 4, 9, 20, 0.5, use_kernel=False)
    assert torch.equal(a, emu.hash_mask(s, 4, 9, 20, 0.5, use_kernel=False))
    assert not torch.equal(a, emu.hash_mask(seed_of(2), 4, 9, 20, 0.5, use_kernel=False))
    assert emu.expected_keep_fraction(0.39) == pytest.approx(0.39, abs=3e-8)


def test_seed_comes_from_the_generator():
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(emu.draw_seed(g1), emu.draw_seed(g2))
    assert not torch.equal(emu.draw_seed(g1), emu.draw_seed(torch.Generator().manual_seed(6)))


@needs_kernel
@pytest.mark.parametrize("D", [3, 16, 20, 37, 100])
def test_kernel_mask_equals_torch_hash(D):
    s = seed_of(3)
    assert torch.equal(emu.kernel_mask(s, 5, 11, D, 0.39), emu.hash_mask(s, 5, 11, D, 0.39, use_kernel=False))


def test_mutate_and_mixup_formulas():
    X = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
    mask = torch.rand(2, 3, 4, generator=torch.Generator().manual_seed(0)) < 0.5
    mask[:, 0] = True
    Xm = emu.mutate(X, mask)
    M = mask.float()
    torch.testing.assert_close(Xm, M * X + (1 - M) * X[:, :1])
    a = emu.mixup_ratios(2, 3, torch.Generator().manual_seed(0))
    assert bool((a[:, 0] == 1).all()) and bool(((a > 0) & (a <= 1)).all())
    torch.testing.assert_close(emu.mixup(X, a), a[..., None] * X + (1 - a[..., None]) * X[:, :1])


def test_mixup_ratios_are_beta_2_1():
    a = emu.mixup_ratios(4000, 51, torch.Generator().manual_seed(1))[:, 1:]
    assert a.mean().item() == pytest.approx(2 / 3, abs=0.005)
    assert (a < 0.5).float().mean().item() == pytest.approx(0.25, abs=0.005)  # CDF of Beta(2,1) is a^2


def _setup(name="TransE", D=20, N=12, B=5, n=6, seed=0):
    torch.manual_seed(seed)
    de, dr = name in ("ComplEx", "RotatE"), name == "ComplEx"
    model = build_model(name, N, 3, D, 8.0, double_entity_embedding=de, double_relation_embedding=dr)
    g = torch.Generator().manual_seed(seed)
    pos = torch.stack([torch.randint(N, (B,), generator=g), torch.randint(3, (B,), generator=g),
                       torch.randint(N, (B,), generator=g)], 1)
    neg = torch.randint(N, (B, n), generator=g)
    return model, pos, neg


@pytest.mark.parametrize("use_kernel", [False, pytest.param(True, marks=needs_kernel)])
@pytest.mark.parametrize("side", ["tail", "head"])
def test_gradients_reach_negatives_and_positive(use_kernel, side):
    model, pos, _ = _setup(N=40, B=2, n=3)
    true = pos[:, 2] if side == "tail" else pos[:, 0]
    anchor = pos[:, 0] if side == "tail" else pos[:, 2]
    used = set(true.tolist()) | set(anchor.tolist())
    free = [e for e in range(40) if e not in used]
    neg = torch.tensor([free[:3], free[3:6]])
    cand = torch.cat([true[:, None], neg], 1)
    mut = emu.Mutation.emu(0.5, torch.Generator().manual_seed(0))
    s = scoring.score_candidates(model, pos, side, cand, mut, use_kernel=use_kernel)
    torch.log_softmax(s, 1)[:, 1:].sum().backward()
    g = model.entity_embedding.grad
    rows_with_grad = set((g.abs().sum(1) > 0).nonzero().squeeze(1).tolist())
    assert set(neg.reshape(-1).tolist()) <= rows_with_grad  # kept components feed the negatives
    assert set(true.tolist()) <= rows_with_grad  # replaced components feed the positive
    assert rows_with_grad <= set(cand.reshape(-1).tolist()) | set(anchor.tolist())
    # the gradient of a negative lives only on its kept components, the positive gets the rest
    mask = emu.hash_mask(mut.seed, 2, 4, model.entity_dim, 0.5, use_kernel=False)
    for b in range(2):
        for j in range(1, 4):
            e = int(cand[b, j])
            assert bool((g[e][~mask[b, j]] == 0).all())


KERNEL_CASES = [(m, D) for m in ("TransE", "DistMult", "ComplEx") for D in (5, 20, 37)] + [("RotatE", 16), ("RotatE", 37)]


@needs_kernel
@pytest.mark.parametrize("name,D", KERNEL_CASES)
@pytest.mark.parametrize("side", ["tail", "head"])
@pytest.mark.parametrize("kind", [None, "emu", "mixup"])
def test_kernel_equals_pytorch_path(name, D, side, kind):
    model, pos, neg = _setup(name, D=D)
    true = pos[:, 2] if side == "tail" else pos[:, 0]
    cand = torch.cat([true[:, None], neg], 1)
    g = torch.Generator().manual_seed(7)
    mut = None if kind is None else (emu.Mutation.emu(0.39, g) if kind == "emu" else emu.Mutation.mix(*cand.shape, g))
    w = torch.randn(cand.shape, generator=torch.Generator().manual_seed(1))
    out = []
    for use_kernel in (True, False):
        model.zero_grad(set_to_none=True)
        s = scoring.score_candidates(model, pos, side, cand, mut, use_kernel=use_kernel)
        (s * w).sum().backward()
        out.append((s.detach(), model.entity_embedding.grad, model.relation_embedding.grad))
    for a, b in zip(*out):
        torch.testing.assert_close(a, b, atol=2e-5, rtol=1e-5)


@needs_kernel
def test_kernel_is_deterministic_and_uses_all_threads_consistently():
    model, pos, neg = _setup(N=300, D=100, B=64, n=40)
    cand = torch.cat([pos[:, 2:3], neg], 1)
    mut = emu.Mutation.emu(0.39, torch.Generator().manual_seed(0))
    grads = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        scoring.score_candidates(model, pos, "tail", cand, mut, use_kernel=True).logsumexp(1).sum().backward()
        grads.append(model.entity_embedding.grad.clone())
    assert torch.equal(grads[0], grads[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_mask_and_objective_match_cpu():
    from types import SimpleNamespace

    from emukg.config import Config
    from emukg.objectives import build_objective
    from emukg.negatives import SAMPLERS

    s = seed_of(4)
    assert torch.equal(emu.hash_mask(s.cuda(), 7, 13, 50, 0.39).cpu(), emu.hash_mask(s, 7, 13, 50, 0.39, use_kernel=False))
    cfg = Config(model="TransE", hidden_dim=24, loss="ce", sampler="uniform", emu=0.39, neg_label=0.53, ce_coef=0.11, negative_sample_size=8)
    losses = []
    for device in ("cpu", "cuda"):
        model, pos, _ = _setup(D=24, N=30, B=6)
        model.to(device)
        g = torch.Generator(device=device).manual_seed(0)
        kg = SimpleNamespace(num_entities=30)
        sampler = SAMPLERS["uniform"](kg, 8, device, g)
        loss, _ = build_objective(cfg, kg, sampler)(model, pos.to(device), "tail", g, torch.ones(6, device=device))
        loss.backward()
        assert model.entity_embedding.grad is not None and torch.isfinite(loss)
        losses.append(float(loss))
