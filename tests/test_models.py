"""Every model's score function against values computed by hand on tiny tensors."""

from __future__ import annotations

import math

import pytest
import torch

from emukg.errors import EmukgError
from emukg.models import MODELS, build_model
from emukg.scoring.fast_paths import training_query


def t(*rows):
    return torch.tensor(rows, dtype=torch.float32)


def test_registry_has_all_models():
    assert {"TransE", "TransD", "RotatE", "pRotatE", "DistMult", "ComplEx"} <= set(MODELS)


def test_transe():
    m = build_model("TransE", 4, 2, 2, gamma=6.0)
    # h + r - t = [1.5, -2] -> L1 = 3.5
    s = m.score(t([1.0, 2.0]), t([0.5, -1.0]), t([0.0, 3.0]))
    assert s.item() == pytest.approx(6.0 - 3.5)


def test_distmult():
    m = build_model("DistMult", 4, 2, 2, gamma=6.0)
    s = m.score(t([1.0, 2.0]), t([3.0, -1.0]), t([2.0, 0.5]))
    assert s.item() == pytest.approx(1 * 3 * 2 + 2 * (-1) * 0.5)


def test_complex():
    m = build_model("ComplEx", 4, 2, 1, gamma=6.0, double_entity_embedding=True, double_relation_embedding=True)
    # h = 1+2i, r = 3-i, t = 2+0.5i: h·r = 5+5i, times conj(t) = 12.5+7.5i -> Re = 12.5
    s = m.score(t([1.0, 2.0]), t([3.0, -1.0]), t([2.0, 0.5]))
    assert s.item() == pytest.approx(12.5)
    with pytest.raises(EmukgError):
        build_model("ComplEx", 4, 2, 1, gamma=6.0)


def test_rotate():
    m = build_model("RotatE", 4, 2, 2, gamma=12.0, double_entity_embedding=True)
    rng = m.embedding_range_value
    assert rng == pytest.approx((12.0 + 2.0) / 2)
    # phases pi/2 and pi; h = (1, 3) real; rotated h = (i, -3); t = (2i, -3 + 4i) -> |−i| + |−4i| = 5
    r = t([rng / 2, rng])
    h = t([1.0, 3.0, 0.0, 0.0])
    tail = t([0.0, -3.0, 2.0, 4.0])
    assert m.score(h, r, tail).item() == pytest.approx(12.0 - 5.0, abs=1e-5)


def test_protate():
    m = build_model("pRotatE", 4, 2, 2, gamma=12.0)
    rng = m.embedding_range_value
    assert m.modulus.item() == pytest.approx(0.5 * rng)
    # phases: h = (pi/2, 0), r = (0, pi/4), t = 0: |sin(pi/2)| + |sin(pi/4)|
    s = m.score(t([rng / 2, 0.0]), t([0.0, rng / 4]), t([0.0, 0.0]))
    assert s.item() == pytest.approx(12.0 - 0.5 * rng * (1 + math.sqrt(0.5)), abs=1e-5)


def test_transd_projects_over_the_feature_axis():
    m = build_model("TransD", 4, 2, 2, gamma=6.0)
    assert m.entity_dim == 4 and m.relation_dim == 4
    # rows are [e, e_p] and [r, r_p]
    h = t([1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 2.0, 0.0])
    r = t([0.5, 0.5, 0.0, 1.0], [0.5, 0.5, 0.0, 1.0])
    tail = t([0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0])
    # row 0: h·h_p = 1 -> h⊥ = normalize([1, 1]); t⊥ = [0, 1]; |0.7071+0.5| + |0.7071+0.5-1| = sqrt(2)
    # row 1: h·h_p = 0 -> h⊥ = [0, 1]; t⊥ = [1, 0]; |-0.5| + |1.5| = 2
    s = m.score(h, r, tail)
    assert s.tolist() == pytest.approx([6.0 - math.sqrt(2.0), 6.0 - 2.0], abs=1e-5)


@pytest.mark.parametrize("name,de,dr", [("TransE", False, False), ("DistMult", False, False),
                                        ("ComplEx", True, True), ("RotatE", True, False),
                                        ("pRotatE", False, False), ("TransD", False, False)])
def test_broadcasting_and_score_all_agree(name, de, dr):
    torch.manual_seed(0)
    m = build_model(name, 7, 3, 4, gamma=6.0, double_entity_embedding=de, double_relation_embedding=dr)
    E, R = m.entity_embedding.detach(), m.relation_embedding.detach()
    anchor, rel = torch.tensor([0, 3]), torch.tensor([1, 2])
    tails = m.score_all(anchor, rel, "tail")
    heads = m.score_all(anchor, rel, "head")
    for q in range(2):
        for e in range(7):
            assert tails[q, e].item() == pytest.approx(m.score(E[anchor[q]], R[rel[q]], E[e]).item(), abs=1e-5)
            assert heads[q, e].item() == pytest.approx(m.score(E[e], R[rel[q]], E[anchor[q]]).item(), abs=1e-5)


def test_regularizer_is_l3_cubed():
    m = build_model("DistMult", 3, 2, 2, gamma=6.0)
    with torch.no_grad():
        m.entity_embedding.copy_(t([1.0, -2.0], [0.5, 0.0], [0.0, 1.0]))
        m.relation_embedding.copy_(t([-1.0, 3.0], [0.0, 0.0]))
    assert m.regularizer().item() == pytest.approx(1 + 8 + 0.125 + 1 + 1 + 27)


@pytest.mark.parametrize("name,de,dr", [("TransE", False, False), ("DistMult", False, False), ("ComplEx", True, True),
                                        ("RotatE", True, False)])
def test_kernel_query_restates_the_score(name, de, dr):
    """The fast-path hook (kind, q, bias) reproduces model.score for both sides."""
    torch.manual_seed(1)
    m = build_model(name, 6, 2, 3, gamma=5.0, double_entity_embedding=de, double_relation_embedding=dr)
    E, R = m.entity_embedding.detach(), m.relation_embedding.detach()
    a, r = E[[0, 1]], R[[1, 0]]
    for side in ("tail", "head"):
        kind, q, bias = training_query(m, a, r, side)
        if kind == "l1":
            mine = bias - (q[:, None] - E[None]).abs().sum(-1)
        elif kind == "c2":
            z = q[:, None] - E[None]
            d = z.shape[-1] // 2
            mine = bias - (z[..., :d] ** 2 + z[..., d:] ** 2).sqrt().sum(-1)
        else:
            mine = bias + q @ E.T
        ref = m.score(a[:, None], r[:, None], E[None]) if side == "tail" else m.score(E[None], r[:, None], a[:, None])
        torch.testing.assert_close(mine, ref, atol=1e-5, rtol=1e-5)
    # pRotatE, TransD and HAKE use the kernel's extended metrics (tests/test_fast_models.py checks them)
    for other, kind in (("pRotatE", "sin_l1"), ("TransD", "transd_l1"), ("HAKE", "hake")):
        mo = build_model(other, 6, 2, 3, gamma=5.0)
        Eo, Ro = mo.entity_embedding.detach(), mo.relation_embedding.detach()
        assert training_query(mo, Eo[[0, 1]], Ro[[1, 0]], "tail")[0] == kind
