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


class _ReplaySampler:
    """Negatives that do not depend on the device's random stream: call k returns the same (B, n) ids on every
    device (drawn on the CPU from seed k), so a CPU run and a CUDA run of the objective see the same candidates."""

    def __init__(self, N, n, device):
        self.num_entities, self.num_negatives, self.device, self.calls = N, n, torch.device(device), 0

    def sample(self, positives, side):
        g = torch.Generator().manual_seed(1000 + self.calls)
        self.calls += 1
        return torch.randint(self.num_entities, (positives.shape[0], self.num_negatives), generator=g).to(self.device)


OBJECTIVES = [
    dict(model="TransE", loss="ce", sampler="uniform", emu=0.39, neg_label=0.53, ce_coef=0.11),
    dict(model="RotatE", loss="ce", sampler="filtered", emu=0.5, neg_label=0.5, double_entity_embedding=True),
    dict(model="DistMult", loss="sigmoid", sampler="filtered", adversarial=True),
]


def _objective_step(kw, device, use_kernel, monkeypatch, steps=2):
    """Two optimiser steps (SGD) of the objective on ``device``: the losses, each step's gradients and the
    final parameters, on the CPU.  The negatives are replayed and the mask seed fixed (the CPU and CUDA
    generators' streams differ), so only the arithmetic differs between devices."""
    from types import SimpleNamespace

    from emukg.config import Config
    from emukg.objectives import build_objective

    monkeypatch.setattr(emu, "draw_seed", lambda g: torch.tensor([0x1234567, 0x89ABCDE], dtype=torch.int64, device=g.device))
    cfg = Config(hidden_dim=24, negative_sample_size=8, **kw)
    cfg.validate()
    model, pos, _ = _setup(cfg.model, D=24, N=30, B=6)
    model.to(device)
    g = torch.Generator(device=device).manual_seed(0)
    kg = SimpleNamespace(num_entities=30)
    objective = build_objective(cfg, kg, _ReplaySampler(30, 8, device), use_kernel=use_kernel)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)  # (Adagrad's first step is lr·sign(g): it would amplify 1e-8 noise)
    losses, grads = [], []
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        loss, _ = objective(model, pos.to(device), "tail" if step % 2 == 0 else "head", g, torch.ones(6, device=device))
        loss.backward()
        losses.append(loss.detach().cpu())
        grads.append([p.grad.detach().cpu().clone() for p in model.parameters()])
        opt.step()
    return torch.stack(losses), grads, [p.detach().cpu().clone() for p in model.parameters()]


def _assert_same_step(a, b, atol):
    (la, ga, pa), (lb, gb, pb) = a, b
    torch.testing.assert_close(la, lb, atol=atol, rtol=atol)
    for sa, sb in zip(ga, gb):
        for x, y in zip(sa, sb):
            torch.testing.assert_close(x, y, atol=atol, rtol=atol)
    for x, y in zip(pa, pb):
        torch.testing.assert_close(x, y, atol=atol, rtol=atol)


@pytest.mark.parametrize("kw", OBJECTIVES, ids=lambda kw: f"{kw['model']}-{kw['loss']}")
def test_objective_comparison_of_the_cuda_test_on_cpu(kw, monkeypatch):
    """The comparison of test_cuda_mask_and_objective_match_cpu run here: the PyTorch path (the one CUDA runs)
    against the fused CPU kernel, losses, gradients and parameters after two steps; and the comparison fails
    when a gradient differs."""
    torch_path = _objective_step(kw, "cpu", False, monkeypatch)
    fused = _objective_step(kw, "cpu", None, monkeypatch)
    _assert_same_step(torch_path, fused, atol=2e-5)
    assert torch_path[0].ne(0).all() and all(g.abs().sum() > 0 for g in torch_path[1][0])
    broken = (fused[0], [[g * 1.01 for g in step] for step in fused[1]], fused[2])
    with pytest.raises(AssertionError):
        _assert_same_step(torch_path, broken, atol=2e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("kw", OBJECTIVES, ids=lambda kw: f"{kw['model']}-{kw['loss']}")
def test_cuda_mask_and_objective_match_cpu(kw, monkeypatch):
    """The mask bit for bit; the objective's losses, gradients and parameters after two steps to 2e-5."""
    s = seed_of(4)
    assert torch.equal(emu.hash_mask(s.cuda(), 7, 13, 50, 0.39).cpu(), emu.hash_mask(s, 7, 13, 50, 0.39, use_kernel=False))
    cpu = _objective_step(kw, "cpu", None, monkeypatch)
    cuda = _objective_step(kw, "cuda", None, monkeypatch)
    _assert_same_step(cpu, cuda, atol=2e-5)