"""pRotatE, TransD and HAKE on the fused kernel (against the PyTorch path), HAKE's maths and settings, and the
PyTorch path's row chunks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emukg import emu, evaluation, kernels
from emukg import scoring
from emukg.scoring import torch_path
from emukg.config import Config, ConfigError
from emukg.errors import EmukgError
from emukg.models import build_model, model_options

needs_kernel = pytest.mark.skipif(not emu.kernel_available(), reason="native kernels unavailable (no C compiler or EMUKG_NO_NATIVE=1)")

FAST = ["pRotatE", "TransD", "HAKE"]


def _setup(name, D, N=12, B=5, n=6, seed=0):
    torch.manual_seed(seed)
    model = build_model(name, N, 3, D, 8.0)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # move the relations off their initial values, so HAKE's |r_m| and clamps matter
        model.relation_embedding.add_(torch.randn(model.relation_embedding.shape, generator=g) * 0.7)
        if name == "HAKE":  # bias components above 1 and below −|r_m|: both clamps are exercised
            model.relation_embedding[0, 2 * D:] = 1.5
            model.relation_embedding[1, 2 * D:] = -3.0
    pos = torch.stack([torch.randint(N, (B,), generator=g), torch.randint(3, (B,), generator=g),
                       torch.randint(N, (B,), generator=g)], 1)
    pos[:3, 1] = torch.tensor([0, 1, 2])
    neg = torch.randint(N, (B, n), generator=g)
    return model, pos, neg


def _mutation(kind, cand):
    g = torch.Generator().manual_seed(7)
    if kind is None:
        return None
    return emu.Mutation.emu(0.39, g) if kind == "emu" else emu.Mutation.mix(*cand.shape, g)


def _scores_and_grads(model, pos, side, cand, mut, use_kernel, w):
    model.zero_grad(set_to_none=True)
    scorer = scoring.CandidateScorer(model, pos, side, use_kernel=use_kernel)
    assert (scorer.hook is not None) == bool(use_kernel)
    s = scorer(cand, mut)
    (s * w).sum().backward()
    return [s.detach()] + [p.grad.clone() for p in model.parameters()]


# ---------------------------------------------------------------------------------------------------------
# kernel == PyTorch path (values and gradients of every parameter: entity and relation rows, pRotatE's modulus)
@needs_kernel
@pytest.mark.parametrize("name", FAST)
@pytest.mark.parametrize("D", [3, 16, 20, 37])
@pytest.mark.parametrize("side", ["tail", "head"])
@pytest.mark.parametrize("kind", [None, "emu", "mixup"])
def test_kernel_equals_pytorch_path(name, D, side, kind):
    model, pos, neg = _setup(name, D)
    true = pos[:, 2] if side == "tail" else pos[:, 0]
    cand = torch.cat([true[:, None], neg], 1)
    mut = _mutation(kind, cand)
    w = torch.randn(cand.shape, generator=torch.Generator().manual_seed(1))
    fast = _scores_and_grads(model, pos, side, cand, mut, True, w)
    slow = _scores_and_grads(model, pos, side, cand, mut, False, w)
    assert len(fast) == len(list(model.parameters())) + 1
    for (pname, _), a, b in zip([("scores", None)] + list(model.named_parameters()), fast, slow):
        torch.testing.assert_close(a, b, atol=3e-5, rtol=1e-5, msg=lambda m: f"{pname}: {m}")
    # the gradient reaches every kind of input: candidate rows, relation rows, and pRotatE's modulus
    assert fast[1].abs().sum() > 0 and fast[2].abs().sum() > 0
    if name == "pRotatE":
        assert fast[3].abs().sum() > 0


@needs_kernel
@pytest.mark.parametrize("name", FAST)
def test_kernel_mutation_acts_before_the_model(name):
    """EMU in the kernel changes the scores exactly as mutating the gathered rows and calling model.score does."""
    model, pos, neg = _setup(name, 20, N=30, B=4, n=9)
    cand = torch.cat([pos[:, 2:3], neg], 1)
    mut = emu.Mutation.emu(0.5, torch.Generator().manual_seed(3))
    with torch.no_grad():
        s = scoring.score_candidates(model, pos, "tail", cand, mut, use_kernel=True)
        X = mut.apply(model.entity_embedding[cand])
        ref = model.score(model.entity_embedding[pos[:, 0]][:, None], model.relation_embedding[pos[:, 1]][:, None], X)
        plain = scoring.score_candidates(model, pos, "tail", cand, None, use_kernel=True)
    torch.testing.assert_close(s, ref, atol=3e-5, rtol=1e-5)
    torch.testing.assert_close(s[:, 0], plain[:, 0], atol=3e-5, rtol=1e-5)  # the positive is never mutated
    assert not torch.allclose(s[:, 1:], plain[:, 1:])


@needs_kernel
def test_kernel_gradient_is_deterministic():
    model, pos, neg = _setup("HAKE", 40, N=200, B=64, n=30)
    cand = torch.cat([pos[:, 2:3], neg], 1)
    mut = emu.Mutation.emu(0.39, torch.Generator().manual_seed(0))
    grads = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        scoring.score_candidates(model, pos, "tail", cand, mut, use_kernel=True).logsumexp(1).sum().backward()
        grads.append(model.entity_embedding.grad.clone())
    assert torch.equal(grads[0], grads[1])


@needs_kernel
def test_transd_normalisation_at_zero_and_below_eps():
    """A candidate whose projection u is 0 (F.normalize's eps clamp, zero gradient of the norm) agrees too."""
    model, pos, neg = _setup("TransD", 16, N=10, B=3, n=4)
    with torch.no_grad():
        model.entity_embedding[neg[0, 0]] = 0.0  # u = 0: y = 0, ‖u‖ clamped to 1e-12
        model.entity_embedding[neg[1, 1], :16] = 1e-14  # ‖u‖ < eps but not 0
    cand = torch.cat([pos[:, 2:3], neg], 1)
    w = torch.randn(cand.shape, generator=torch.Generator().manual_seed(2))
    fast = _scores_and_grads(model, pos, "tail", cand, None, True, w)
    slow = _scores_and_grads(model, pos, "tail", cand, None, False, w)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, atol=3e-5, rtol=1e-5)


@needs_kernel
def test_vectorised_sin_cos_accuracy():
    """The kernel's sin/cos (Cody-Waite reduction + minimax polynomials; libm beyond |z| = 8192) against
    double precision: absolute error below 3e-7 (torch's float sin: about 6e-8)."""
    g = torch.Generator().manual_seed(0)
    z = torch.cat([torch.linspace(-8192, 8192, 400_001), torch.randn(100_000, generator=g) * 4,
                   (torch.arange(-2000, 2001) * (math.pi / 2)), torch.tensor([0.0, -0.0, 1e-30, 8191.9, 8192.5, 1e5, -3e7])]).float()
    s, c = kernels.sincos(z.contiguous())
    zd = z.double()
    assert (s.double() - zd.sin()).abs().max() < 3e-7
    assert (c.double() - zd.cos()).abs().max() < 3e-7
    s, c = kernels.sincos(torch.tensor([float("inf"), float("nan")]))
    assert s.isnan().all() and c.isnan().all()


# ---------------------------------------------------------------------------------------------------------
# HAKE: the maths by hand, settings, training
def test_hake_score_by_hand():
    model = build_model("HAKE", 3, 2, 2, 6.0, modulus_weight=0.7, phase_weight=0.3)
    rng = model.embedding_range_value  # (6 + 2) / 2 = 4
    assert rng == 4.0
    h = torch.tensor([0.5, -1.0, 1.0, 2.0])     # h_m = (0.5, −1), h_p = (1, 2)
    t = torch.tensor([0.25, 0.5, -1.0, 3.0])
    r = torch.tensor([-2.0, 0.5, 0.4, -1.2, 1.7, -0.9])  # |r_m| = (2, 0.5); bias (1.7 → 1, −0.9 → −0.5)
    rm, rb = [2.0, 0.5], [1.0, -0.5]
    hm, tm, hp, tp, rp = [0.5, -1.0], [0.25, 0.5], [1.0, 2.0], [-1.0, 3.0], [0.4, -1.2]
    d_m = math.sqrt(sum((hm[i] * (rm[i] + rb[i]) - tm[i] * (1 - rb[i])) ** 2 for i in range(2)))
    unit = rng / math.pi
    d_p = sum(abs(math.sin((hp[i] / unit + rp[i] / unit - tp[i] / unit) / 2)) for i in range(2))
    expected = 6.0 - (0.7 * d_m + 0.3 * d_p)
    assert float(model.score(h, r, t)) == pytest.approx(expected, rel=1e-6)


def test_hake_layout_init_and_options():
    model = build_model("HAKE", 5, 4, 6, 12.0)
    assert (model.entity_dim, model.relation_dim) == (12, 18)
    R = model.relation_embedding.detach()
    assert torch.equal(R[:, :6], torch.ones(4, 6)) and torch.equal(R[:, 12:], torch.zeros(4, 6))
    rng = model.embedding_range_value
    assert R[:, 6:12].abs().max() <= rng and R[:, 6:12].std() > 0  # relation phases uniform
    assert model.entity_embedding.abs().max() <= rng and (model.entity_embedding < 0).any()
    assert (float(model.modulus_weight), float(model.phase_weight)) == (1.0, 0.5)
    assert "modulus_weight" in model.state_dict() and "phase_weight" in model.state_dict()
    with pytest.raises(EmukgError, match="^double_entity_embedding=True: does not apply to HAKE") as exc:
        build_model("HAKE", 5, 4, 6, 12.0, double_entity_embedding=True)  # the library names its parameter ...
    assert exc.value.render("cli").startswith("--double-entity-embedding True: ")  # ... the CLI its flag
    with pytest.raises(EmukgError, match="^phase_weight=0.5: is not a setting of TransE"):
        build_model("TransE", 5, 4, 6, 12.0, phase_weight=0.5)


def test_hake_config_settings():
    cfg = Config(dataset="x", model="hake")
    cfg.validate()
    assert (cfg.model, cfg.modulus_weight, cfg.phase_weight) == ("HAKE", 1.0, 0.5)  # config.json names what runs
    assert model_options(cfg) == {"modulus_weight": 1.0, "phase_weight": 0.5}
    cfg = Config(dataset="x", model="HAKE", modulus_weight=3.5, phase_weight=1.0)
    cfg.validate()
    assert build_model(cfg.model, 4, 2, 3, 9.0, **model_options(cfg)).modulus_weight.item() == 3.5
    for bad, match in [(dict(model="TransE", modulus_weight=1.0), "HAKE only"),
                       (dict(model="RotatE", double_entity_embedding=True, phase_weight=0.5), "HAKE only"),
                       (dict(model="HAKE", phase_weight=-0.1), "≥ 0"),
                       (dict(model="HAKE", modulus_weight=float("nan")), "finite"),
                       (dict(model="HAKE", double_relation_embedding=True), "row layout is fixed")]:
        with pytest.raises(ConfigError, match=match):
            Config(dataset="x", **bad).validate()
    assert model_options(Config(dataset="x", model="TransE")) == {}


@pytest.mark.parametrize("kw", [dict(loss="sigmoid", adversarial=True), dict(loss="ce", sampler="uniform"),
                                dict(loss="ce", sampler="uniform", emu=0.39, neg_label=0.53, ce_coef=0.11)],
                         ids=["sigmoid-adv", "ce", "ce-emu"])
def test_hake_trains_with_every_loss(tiny_dataset, tmp_path, kw):
    from emukg.training import Trainer

    cfg = Config.from_dict(dict(dataset=str(tiny_dataset), model="HAKE", hidden_dim=20, gamma=6.0, batch_size=8,
                                negative_sample_size=5, learning_rate=0.05, max_steps=4, valid_steps=4, log_steps=2,
                                modulus_weight=0.8, phase_weight=0.4, save_path=str(tmp_path / "run"), device="cpu",
                                progress=False, **kw))
    trainer = Trainer(cfg)
    assert (float(trainer.model.modulus_weight), float(trainer.model.phase_weight)) == pytest.approx((0.8, 0.4))
    before = trainer.model.entity_embedding.detach().clone()
    logs = trainer.train_step()
    assert np.isfinite(logs["loss"])
    assert not torch.equal(before, trainer.model.entity_embedding.detach())
    results = trainer.fit()
    assert np.isfinite(results["test"]["MRR"])


def test_new_models_stay_off_the_evaluation_kernel():
    """Their training kinds are not evaluation metrics: evaluation scores them with the model (PyTorch), and the
    evaluation kernel refuses the training-only codes."""
    for name in FAST:
        model, pos, _ = _setup(name, 16)
        E, R = model.entity_embedding, model.relation_embedding
        assert evaluation.fast_query(model, E[pos[:, 0]], R[pos[:, 1]], "tail") is None
    if kernels.available("score_all"):
        with pytest.raises(ValueError, match="training-only"):
            kernels.rank_fused(kernels.Metric.SIN_L1, torch.zeros(2, 16), torch.zeros(3, 16), torch.tensor([0, 1]))


@needs_kernel
def test_ext_wrappers_refuse_bad_arguments():
    q, aux, E = torch.randn(2, 8), torch.randn(2, 8), torch.randn(5, 16)
    cand = torch.tensor([[0, 1], [2, 3]])
    ok = dict(scale=1.0)
    kernels.cand_ext_fwd(q, aux, E, cand, kernels.Metric.TRANSD_L1, 1.0, **ok)
    bad = [((q, aux, E, cand, kernels.Metric.L1), "cand_fwd"),
           ((q, None, E, cand, kernels.Metric.TRANSD_L1), "needs aux"),
           ((torch.randn(2, 16), aux, E, cand, kernels.Metric.SIN_L1), "no aux"),
           ((q, aux, E, cand, kernels.Metric.HAKE), r"shape \(2, 16\)"),
           ((q, aux[:1], E, cand, kernels.Metric.TRANSD_L1), r"aux must have shape"),
           ((q, aux, torch.randn(5, 15), cand, kernels.Metric.TRANSD_L1), "even"),
           ((q.double(), aux, E, cand, kernels.Metric.TRANSD_L1), "dtype")]
    for args, match in bad:
        with pytest.raises(ValueError, match=match):
            kernels.cand_ext_fwd(*args, **ok)
    with pytest.raises(IndexError, match="outside the valid range"):
        kernels.cand_ext_fwd(q, aux, E, torch.tensor([[0, 5], [0, 1]]), kernels.Metric.TRANSD_L1, **ok)
    with pytest.raises(ValueError, match="scale"):
        kernels.cand_ext_fwd(torch.randn(2, 16), None, E, cand, kernels.Metric.SIN_L1, scale=0.0)
    with pytest.raises(ValueError, match="cand_ext_fwd"):
        kernels.cand_fwd(torch.randn(2, 16), E, cand, kernels.Metric.SIN_L1)
    with pytest.raises(ValueError, match="gout"):
        kernels.cand_ext_bwd(q, aux, E, cand, torch.ones(2, 3), kernels.Metric.TRANSD_L1)


# ---------------------------------------------------------------------------------------------------------
# the PyTorch path in row chunks
@pytest.mark.parametrize("name", ["TransE", "pRotatE", "HAKE"])
@pytest.mark.parametrize("kind", [None, "emu", "mixup"])
def test_chunked_pytorch_path_equals_unchunked(name, kind):
    model, pos, neg = _setup(name, 12, N=20, B=7, n=5) if name != "TransE" else _setup_transe()
    cand = torch.cat([pos[:, 2:3], neg], 1)
    mut = _mutation(kind, cand)
    w = torch.randn(cand.shape, generator=torch.Generator().manual_seed(1))
    E, R = model.entity_embedding, model.relation_embedding
    B, C = cand.shape
    one_row = 4 * C * E.shape[1]
    assert torch_path.torch_chunk_rows(B, C, E.shape[1], budget=2 * one_row + 1) == 2  # chunks of 2, 2, 2, 1 rows
    out = []
    for budget in (None, 2 * one_row + 1, 1):
        model.zero_grad(set_to_none=True)
        a, r = E.index_select(0, pos[:, 0]), R.index_select(0, pos[:, 1])
        s = torch_path.torch_scores(model, "tail", a, r, E, cand, mut, budget=budget)
        (s * w).sum().backward()
        out.append([s.detach()] + [p.grad.clone() for p in model.parameters()])
    for other in out[1:]:
        assert torch.equal(out[0][0], other[0])  # every row's scores by the same operations
        for a, b in zip(out[0][1:], other[1:]):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)  # only the order of chunk sums differs


def _setup_transe():
    torch.manual_seed(0)
    model = build_model("TransE", 20, 3, 12, 8.0)
    g = torch.Generator().manual_seed(0)
    pos = torch.stack([torch.randint(20, (7,), generator=g), torch.randint(3, (7,), generator=g),
                       torch.randint(20, (7,), generator=g)], 1)
    return model, pos, torch.randint(20, (7, 5), generator=g)


def test_chunked_path_keeps_no_chunk_for_the_backward():
    """Over the budget, autograd's saved tensors of the forward are the chunks' inputs (anchor, relation and id
    rows; no B×C×D intermediate), while the unchunked path saves several gathered-candidate-sized tensors."""
    model, pos, neg = _setup("HAKE", 64, N=30, B=12, n=9)
    cand = torch.cat([pos[:, 2:3], neg], 1)
    mut = emu.Mutation.emu(0.5, torch.Generator().manual_seed(0))
    E, R = model.entity_embedding, model.relation_embedding
    full = 4 * cand.numel() * E.shape[1]

    def saved_bytes(budget):
        sizes = []

        def pack(t):
            sizes.append(t.numel() * t.element_size() if t.data_ptr() not in (E.data_ptr(), R.data_ptr()) else 0)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            a, r = E.index_select(0, pos[:, 0]), R.index_select(0, pos[:, 1])
            s = torch_path.torch_scores(model, "tail", a, r, E, cand, mut, budget=budget)
        s.sum().backward()
        return sum(sizes)

    B, C = cand.shape
    inputs = 4 * B * (E.shape[1] + R.shape[1]) + 8 * B * C + 2 * 8 * B  # a, r, candidate ids, the gathers' indices
    assert saved_bytes(None) >= 2 * full
    assert saved_bytes(full // 4) <= inputs < full / 3


def test_emu_mask_of_a_row_chunk_is_the_batch_mask():
    seed = emu.draw_seed(torch.Generator().manual_seed(5))
    whole = emu.hash_mask(seed, 9, 7, 19, 0.4, use_kernel=False)
    assert torch.equal(emu.hash_mask(seed, 4, 7, 19, 0.4, use_kernel=False, row0=3), whole[3:7])
    if emu.kernel_available():
        assert torch.equal(emu.kernel_mask(seed, 4, 7, 19, 0.4, row0=3), whole[3:7])
        assert torch.equal(emu.hash_mask(seed, 4, 7, 19, 0.4, row0=5), whole[5:9])
