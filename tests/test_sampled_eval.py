"""The sampled (OGB-style) evaluation protocol: ranks against brute force over the same candidates, tie policies,
determinism, the memory plan, the config fields and ``emukg evaluate --protocol``."""

from __future__ import annotations

import json

import pytest
import torch

from emukg.config import Config, ConfigError
from emukg.data.graph import KnowledgeGraph
from emukg.errors import EmukgError
from emukg.evaluation import (SIDES, TIE_POLICIES, compute_ranks, evaluate, plan_sampled, sampled_candidates)
from emukg.models import build_model


def _graph(N=30, R=3, seed=0):
    g = torch.Generator().manual_seed(seed)

    def trip(n):
        return torch.stack([torch.randint(0, N, (n,), generator=g), torch.randint(0, R, (n,), generator=g),
                            torch.randint(0, N, (n,), generator=g)], 1)

    return KnowledgeGraph([f"e{i}" for i in range(N)], [f"r{i}" for i in range(R)],
                          {"train": trip(200), "valid": trip(10), "test": trip(12)}, name="tiny")


def _model(name, kg, dim=4, seed=0, integer=True, **kw):
    torch.manual_seed(seed)
    m = build_model(name, kg.num_entities, kg.num_relations, dim, 6.0, **kw)
    if integer:  # small integer weights: exact sums (scalar and batched scores agree) and many ties
        with torch.no_grad():
            m.entity_embedding.copy_(torch.randint(-2, 3, m.entity_embedding.shape).float())
            m.relation_embedding.copy_(torch.randint(-2, 3, m.relation_embedding.shape).float())
    return m


def _brute(model, kg, split, K, filtered, seed=0):
    """Per query: 1 + #(counted candidates scoring above / at-or-above the answer), one scalar score at a time."""
    known = {tuple(t) for s in kg.splits.values() for t in s.tolist()}
    triples = kg.splits[split].tolist()
    opt, pes = [], []
    for side in SIDES:
        cand = sampled_candidates(kg.num_entities, K, split, side, 0, len(triples), seed).tolist()
        for (h, r, t), row in zip(triples, cand):
            def score(e):
                hh, tt = (h, e) if side == "tail" else (e, t)
                with torch.no_grad():
                    return float(model.score_ids(torch.tensor(hh), torch.tensor(r), torch.tensor(tt)))

            answer = t if side == "tail" else h
            s = score(answer)
            gt = ge = 0
            for c in row:
                if c == answer:
                    continue
                if filtered and ((h, r, c) if side == "tail" else (c, r, t)) in known:
                    continue
                v = score(c)
                gt += v > s
                ge += v >= s
            opt.append(1 + gt)
            pes.append(1 + ge)
    return torch.tensor(opt, dtype=torch.float64), torch.tensor(pes, dtype=torch.float64)


@pytest.mark.parametrize("model,kw", [("TransE", {}), ("DistMult", {}), ("RotatE", {"double_entity_embedding": True}),
                                      ("ComplEx", {"double_entity_embedding": True, "double_relation_embedding": True})])
@pytest.mark.parametrize("filtered", [True, False])
def test_sampled_ranks_equal_brute_force(model, kw, filtered):
    kg = _graph()
    m = _model(model, kg, integer=model != "RotatE", **kw)
    rk = compute_ranks(m, kg, "test", protocol="sampled", candidates=25, filtered=filtered, memory_mb=0.05)
    opt, pes = _brute(m, kg, "test", 25, filtered)
    assert torch.equal(rk.optimistic, opt) and torch.equal(rk.pessimistic, pes)
    assert rk.protocol == "sampled-25" and rk.memory.backend == "sampled"
    if model in ("TransE", "DistMult"):
        assert (rk.pessimistic > rk.optimistic).any()  # the integer weights do produce ties


def test_filtering_removes_exactly_the_known_answers():
    kg = _graph(N=8, R=1)  # dense: many candidates are known answers
    m = _model("TransE", kg)
    f = compute_ranks(m, kg, "test", protocol="sampled", candidates=40, filtered=True)
    raw = compute_ranks(m, kg, "test", protocol="sampled", candidates=40, filtered=False)
    assert (f.pessimistic <= raw.pessimistic).all() and (f.pessimistic < raw.pessimistic).any()
    assert raw.pessimistic.max() <= 41 and f.optimistic.min() >= 1


def test_metrics_follow_the_tie_policy_and_name_the_protocol():
    kg = _graph()
    m = _model("TransE", kg)
    res = evaluate(m, kg, "test", protocol="sampled", candidates=20, tie_policy="pessimistic")
    assert res["protocol"] == "sampled-20" and res["candidates"] == 20 and res["candidate_seed"] == 0
    rk = compute_ranks(m, kg, "test", protocol="sampled", candidates=20)
    for pol in TIE_POLICIES:
        r = rk.by_policy(pol)
        assert res[pol]["MRR"] == pytest.approx(float((1 / r).mean()))
    assert torch.equal(rk.realistic, (rk.optimistic + rk.pessimistic) / 2)
    assert res["MRR"] == res["pessimistic"]["MRR"]
    assert evaluate(m, kg, "test")["protocol"] == "full"


def test_nan_answer_ranks_last():
    kg = _graph()
    m = _model("TransE", kg, integer=False)
    a = int(kg.test[0, 2])
    with torch.no_grad():
        m.entity_embedding[a] = float("nan")
    with pytest.warns(RuntimeWarning, match="NaN"):
        rk = compute_ranks(m, kg, "test", protocol="sampled", candidates=10, filtered=False)
    cand = sampled_candidates(kg.num_entities, 10, "test", "tail", 0, 1)[0]
    counted = int((cand != a).sum())
    assert rk.pessimistic[0] == 1 + counted


def test_candidates_are_fixed_uniform_and_independent_of_chunking():
    a = sampled_candidates(1000, 50, "test", "tail", 0, 40, candidate_seed=3)
    assert torch.equal(a[10:25], sampled_candidates(1000, 50, "test", "tail", 10, 25, candidate_seed=3))
    assert a.dtype == torch.int64 and a.min() >= 0 and a.max() < 1000
    for other in (sampled_candidates(1000, 50, "test", "head", 0, 40, 3), sampled_candidates(1000, 50, "valid", "tail", 0, 40, 3),
                  sampled_candidates(1000, 50, "test", "tail", 0, 40, 4)):
        assert (other != a).float().mean() > 0.9
    counts = torch.bincount(sampled_candidates(7, 1000, "x", "tail", 0, 70).reshape(-1), minlength=7).double()
    expected = 70 * 1000 / 7
    assert float(((counts - expected) ** 2 / expected).sum()) < 30  # chi-square, 6 degrees of freedom


def test_same_ranks_for_any_memory_budget_and_every_run():
    kg = _graph()
    m = _model("DistMult", kg, integer=False)
    big = compute_ranks(m, kg, "valid", protocol="sampled", candidates=30, memory_mb=64)
    small = compute_ranks(m, kg, "valid", protocol="sampled", candidates=30, memory_mb=0.02)
    assert small.memory.chunk < big.memory.chunk
    assert torch.equal(big.optimistic, small.optimistic) and torch.equal(big.pessimistic, small.pessimistic)
    again = compute_ranks(m, kg, "valid", protocol="sampled", candidates=30, memory_mb=64)
    assert torch.equal(big.pessimistic, again.pessimistic)
    other = compute_ranks(m, kg, "valid", protocol="sampled", candidates=30, candidate_seed=1)
    assert not torch.equal(big.pessimistic, other.pessimistic)


def test_memory_plan_is_respected(monkeypatch):
    kg = _graph(N=50)
    m = _model("TransE", kg, dim=16, integer=False)
    budget = 0.1
    plan = plan_sampled(m, 40, budget, num_queries=kg.test.shape[0])
    assert plan.bytes_per_step <= budget * 2**20 and plan.chunk < kg.test.shape[0]
    shapes = []
    real = type(m).score_ids

    def spy(self, h, r, t):
        out = real(self, h, r, t)
        shapes.append(out.shape)
        return out

    monkeypatch.setattr(type(m), "score_ids", spy)
    rk = compute_ranks(m, kg, "test", protocol="sampled", candidates=40, memory_mb=budget)
    assert rk.memory.chunk == plan.chunk
    assert shapes and all(s[0] <= plan.chunk and s[1] == 41 for s in shapes)
    assert sum(s[0] for s in shapes) == 2 * kg.test.shape[0]
    with pytest.raises(EmukgError, match=r"^memory_mb=0\.001: too small for 40 candidates"):
        compute_ranks(m, kg, "test", protocol="sampled", candidates=40, memory_mb=0.001)


def test_bad_protocol_arguments():
    kg = _graph()
    m = _model("TransE", kg)
    with pytest.raises(EmukgError, match="^protocol='ogb': choose full or sampled"):
        evaluate(m, kg, "test", protocol="ogb")
    with pytest.raises(EmukgError, match="^candidates=0: must be a positive integer"):
        evaluate(m, kg, "test", protocol="sampled", candidates=0)


def test_config_fields():
    cfg = Config.from_dict({"dataset": "x", "eval_protocol": "sampled", "eval_candidates": 100})
    assert (cfg.eval_protocol, cfg.eval_candidates) == ("sampled", 100)
    assert (Config().eval_protocol, Config().eval_candidates) == ("full", 500)
    with pytest.raises(ConfigError, match="eval_protocol='ogb': choose full or sampled"):
        Config.from_dict({"dataset": "x", "eval_protocol": "ogb"})
    with pytest.raises(ConfigError, match="eval_candidates=0: must be a positive integer"):
        Config.from_dict({"dataset": "x", "eval_candidates": 0})


def test_emukg_evaluate_protocol_flag(tiny_dataset, tmp_path, capsys):
    from emukg.cli import main
    from emukg.training import train

    run = tmp_path / "run"
    train(Config.from_dict(dict(dataset=str(tiny_dataset), model="TransE", hidden_dim=8, negative_sample_size=4,
                                batch_size=8, max_steps=2, valid_steps=2, log_steps=2, save_checkpoint_steps=2,
                                save_path=str(run), device="cpu", progress=False, do_valid=False, do_test=False)))
    out = tmp_path / "m.json"
    assert main(["evaluate", str(run), "--protocol", "sampled", "--candidates", "5", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["protocol"] == "sampled-5" and res["candidates"] == 5
    assert max(res["pessimistic"]["MR"], res["optimistic"]["MR"]) <= 6
    assert "sampled-5" in capsys.readouterr().out
    assert main(["evaluate", str(run), "--json", str(out)]) == 0
    assert json.loads(out.read_text())["protocol"] == "full"
    assert main(["evaluate", str(run), "--protocol", "sampled", "--candidates", "0"]) == 2
    assert "--candidates 0" in capsys.readouterr().err


def test_training_validates_and_tests_with_the_run_protocol(tiny_dataset, tmp_path):
    """A run with eval_protocol=sampled validates and tests with it, and results.json says so."""
    from emukg.training import train

    run = tmp_path / "run"
    results = train(Config.from_dict(dict(dataset=str(tiny_dataset), model="TransE", hidden_dim=8, negative_sample_size=4,
                                          batch_size=8, max_steps=4, valid_steps=2, log_steps=2, save_checkpoint_steps=2,
                                          save_path=str(run), device="cpu", progress=False, eval_protocol="sampled",
                                          eval_candidates=3)))
    saved = json.loads((run / "results.json").read_text())
    for split in ("valid", "test"):
        assert results[split]["protocol"] == saved[split]["protocol"] == "sampled-3"
        assert saved[split]["MR"] <= 4  # the true entity among itself and 3 candidates
