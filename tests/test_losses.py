"""Every loss mode equals its formula computed by hand (plain Python over scalars) on a tiny example."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from emukg import emu
from emukg.config import Config
from emukg.objectives import build_objective
from emukg.models import build_model

N, B, n = 12, 3, 4
PATHS = [False, pytest.param(None, marks=pytest.mark.skipif(not emu.kernel_available(), reason="no native kernel"))]


class FixedSampler:
    """Returns prepared negatives, one batch per call (records the calls)."""

    def __init__(self, *batches):
        self.batches = list(batches)
        self.calls = 0

    def sample(self, positives, side):
        out = self.batches[self.calls % len(self.batches)]
        self.calls += 1
        return out


def setup(model_name="TransE", D=20, seed=0, **cfg):
    torch.manual_seed(seed)
    de, dr = model_name in ("ComplEx", "RotatE"), model_name == "ComplEx"
    cfg.update(double_entity_embedding=de, double_relation_embedding=dr)
    model = build_model(model_name, N, 3, D, 6.0, double_entity_embedding=de, double_relation_embedding=dr)
    with torch.no_grad():  # spread the scores so that the losses are far from trivial
        model.entity_embedding.mul_(3.0)
    g = torch.Generator().manual_seed(seed)
    pos = torch.tensor([[0, 1, 2], [3, 0, 4], [5, 2, 6]])
    neg1 = torch.randint(N, (B, n), generator=g)
    neg2 = torch.randint(N, (B, n), generator=g)
    weights = torch.tensor([0.5, 1.0, 0.25])
    config = Config.from_dict(dict(model=model_name, hidden_dim=D, negative_sample_size=n, batch_size=B, **cfg))
    return model, pos, neg1, neg2, weights, config


def hand_score(model, pos, side, b, e, X=None):
    """score of positive b with entity e (or the explicit candidate row X) on the corrupted side."""
    E, R = model.entity_embedding.detach(), model.relation_embedding.detach()
    h, r, t = (int(v) for v in pos[b])
    x = E[e] if X is None else X
    return float(model.score(x, R[r], E[t]) if side == "head" else model.score(E[h], R[r], x))


def cand_of(pos, side, neg):
    true = pos[:, 2] if side == "tail" else pos[:, 0]
    return torch.cat([true[:, None], neg], 1)


def logsig(x):
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def log_softmax(xs):
    m = max(xs)
    lse = m + math.log(sum(math.exp(x - m) for x in xs))
    return [x - lse for x in xs]


def run(config, model, sampler, pos, side, weights, use_kernel, generator=None):
    kg = SimpleNamespace(num_entities=N)
    obj = build_objective(config, kg, sampler, use_kernel=use_kernel)
    g = generator or torch.Generator().manual_seed(11)
    return obj(model, pos, side, g, weights)


@pytest.mark.parametrize("use_kernel", PATHS)
@pytest.mark.parametrize("adv", [False, True])
@pytest.mark.parametrize("uni", [False, True])
@pytest.mark.parametrize("side", ["tail", "head"])
def test_sigmoid_mode0(use_kernel, adv, uni, side):
    model, pos, neg, _, w, cfg = setup(ce_mode=0, adversarial=adv, uni_weight=uni, adversarial_temperature=0.7)
    loss, logs = run(cfg, model, FixedSampler(neg), pos, side, w, use_kernel)
    cand = cand_of(pos, side, neg)
    pos_terms, neg_terms = [], []
    for b in range(B):
        s = [hand_score(model, pos, side, b, int(cand[b, j])) for j in range(n + 1)]
        pos_terms.append(-logsig(s[0]))
        if adv:
            p = [math.exp(x) for x in log_softmax([0.7 * x for x in s[1:]])]
        else:
            p = [1 / n] * n
        neg_terms.append(-sum(pj * logsig(-x) for pj, x in zip(p, s[1:])))
    ww = [1.0] * B if uni else w.tolist()
    lp = sum(a * c for a, c in zip(ww, pos_terms)) / sum(ww)
    ln = sum(a * c for a, c in zip(ww, neg_terms)) / sum(ww)
    assert logs["positive_sample_loss"] == pytest.approx(lp, rel=1e-5)
    assert logs["negative_sample_loss"] == pytest.approx(ln, rel=1e-5)
    assert loss.item() == pytest.approx((lp + ln) / 2, rel=1e-5)
    assert logs["loss"] == pytest.approx(loss.item())


def hand_ce(model, pos, side, cand):
    out = 0.0
    for b in range(B):
        s = [hand_score(model, pos, side, b, int(cand[b, j])) for j in range(cand.shape[1])]
        out += -log_softmax(s)[0]
    return out / B


@pytest.mark.parametrize("use_kernel", PATHS)
@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("model_name", ["TransE", "DistMult", "RotatE"])
def test_cross_entropy_modes(use_kernel, mode, model_name):
    model, pos, neg, _, w, cfg = setup(model_name, ce_mode=mode)
    sampler = FixedSampler(neg)
    loss, logs = run(cfg, model, sampler, pos, "tail", w, use_kernel)
    assert sampler.calls == 1
    expected = hand_ce(model, pos, "tail", cand_of(pos, "tail", neg))
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert logs["ce_loss"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("model_name", ["DistMult", "ComplEx"])
@pytest.mark.parametrize("side", ["tail", "head"])
def test_one_vs_all_mode3(model_name, side):
    model, pos, _, _, w, cfg = setup(model_name, D=4, ce_mode=3, regularization=0.01)
    loss, logs = run(cfg, model, None, pos, side, w, None)
    ce = 0.0
    for b in range(B):
        s = [hand_score(model, pos, side, b, e) for e in range(N)]
        ce += -log_softmax(s)[int(pos[b, 2] if side == "tail" else pos[b, 0])]
    ce /= B
    reg = 0.01 * float(model.entity_embedding.detach().abs().pow(3).sum() + model.relation_embedding.detach().abs().pow(3).sum())
    assert logs["ce_loss"] == pytest.approx(ce, rel=1e-5)
    assert logs["regularization"] == pytest.approx(reg, rel=1e-5)
    assert loss.item() == pytest.approx(ce + reg, rel=1e-5)


def hand_emu(model, pos, side, cand, p, lam, seed=None, ratio=None):
    """L_EMU by hand: X' = M*X + (1-M)*x+ per component (or a*X + (1-a)*x+), soft target [1, λ, ..., λ]."""
    E = model.entity_embedding.detach()
    C, D = cand.shape[1], E.shape[1]
    mask = emu.hash_mask(seed, B, C, D, p, use_kernel=False).float() if seed is not None else None
    total = 0.0
    for b in range(B):
        xp = E[int(cand[b, 0])]
        s = []
        for j in range(C):
            x = E[int(cand[b, j])]
            if mask is not None:
                x = mask[b, j] * x + (1 - mask[b, j]) * xp
            elif ratio is not None:
                x = ratio[b, j] * x + (1 - ratio[b, j]) * xp
            s.append(hand_score(model, pos, side, b, None, X=x))
        ls = log_softmax(s)
        total += -(ls[0] + lam * sum(ls[1:]))
    return total / B


@pytest.mark.parametrize("use_kernel", PATHS)
@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("side", ["tail", "head"])
@pytest.mark.parametrize("variant", ["emu", "mixup", "only_ls"])
def test_emu_loss(use_kernel, mode, side, variant):
    extra = {"mixup": dict(mixup=True), "only_ls": dict(only_ls=True)}.get(variant, {})
    model, pos, neg1, neg2, w, cfg = setup(ce_mode=mode, emu=0.39, neg_label=0.53, ce_coef=0.11, **extra)
    sampler = FixedSampler(neg1, neg2)
    g = torch.Generator().manual_seed(11)
    g_copy = torch.Generator().manual_seed(11)
    loss, logs = run(cfg, model, sampler, pos, side, w, use_kernel, generator=g)
    # mode 1 draws fresh negatives for the EMU pass; mode 2 reuses the data-side negatives
    assert sampler.calls == (2 if mode == 1 else 1)
    cand_ce = cand_of(pos, side, neg1)
    cand_emu = cand_of(pos, side, neg2 if mode == 1 else neg1)
    seed = ratio = None
    if variant == "emu":
        seed = emu.draw_seed(g_copy)  # the objective's first use of the generator
    elif variant == "mixup":
        ratio = emu.mixup_ratios(B, n + 1, g_copy)
    l_emu = hand_emu(model, pos, side, cand_emu, 0.39, 0.53, seed=seed, ratio=ratio)
    l_ce = hand_ce(model, pos, side, cand_ce)
    assert logs["emu_loss"] == pytest.approx(l_emu, rel=1e-5)
    assert logs["ce_loss"] == pytest.approx(l_ce, rel=1e-5)
    assert loss.item() == pytest.approx(l_emu / n + 0.11 * l_ce, rel=1e-5)


@pytest.mark.parametrize("use_kernel", PATHS)
@pytest.mark.parametrize("uni", [False, True])
def test_adversarial_term_in_ce_mode(use_kernel, uni):
    model, pos, neg, _, w, cfg = setup(ce_mode=2, adversarial=True, adversarial_temperature=1.0, uni_weight=uni,
                                       regularization=1e-3)
    loss, logs = run(cfg, model, FixedSampler(neg), pos, "tail", w, use_kernel)
    cand = cand_of(pos, "tail", neg)
    l_ce = hand_ce(model, pos, "tail", cand)
    terms = []
    for b in range(B):
        s = [hand_score(model, pos, "tail", b, int(cand[b, j])) for j in range(1, n + 1)]
        p = [math.exp(x) for x in log_softmax(s)]
        terms.append(-sum(pj * logsig(-x) for pj, x in zip(p, s)))
    ww = [1.0] * B if uni else w.tolist()
    l_neg = sum(a * c for a, c in zip(ww, terms)) / sum(ww)
    reg = 1e-3 * float(model.entity_embedding.detach().abs().pow(3).sum() + model.relation_embedding.detach().abs().pow(3).sum())
    assert logs["negative_sample_loss"] == pytest.approx(l_neg, rel=1e-5)
    assert logs["regularization"] == pytest.approx(reg, rel=1e-5)
    assert loss.item() == pytest.approx(l_ce + l_neg + reg, rel=1e-5)


def test_kernel_and_pytorch_objectives_agree_and_are_deterministic():
    if not emu.kernel_available():
        pytest.skip("no native kernel")
    results = []
    for use_kernel in (None, None, False):
        model, pos, _, _, w, cfg = setup(D=37, ce_mode=1, emu=0.39, neg_label=0.53, ce_coef=0.11)
        from emukg.negatives import SAMPLERS

        g = torch.Generator().manual_seed(3)
        sampler = SAMPLERS["uniform"](SimpleNamespace(num_entities=N), n, "cpu", g)
        loss, _ = build_objective(cfg, SimpleNamespace(num_entities=N), sampler, use_kernel=use_kernel)(model, pos, "head", g, w)
        loss.backward()
        results.append((loss.detach(), model.entity_embedding.grad.clone(), model.relation_embedding.grad.clone()))
    for a, b in zip(results[0], results[1]):
        assert torch.equal(a, b)
    for a, b in zip(results[0], results[2]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
