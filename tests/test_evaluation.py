"""Filtered ranking: vectorised ranks against a per-query brute force, tie policies, NaN, kernel vs PyTorch,
memory-budget chunking, the evaluate CLI."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emukg.config import Config
from emukg.data import KnowledgeGraph
from emukg.evaluation import (
    METRICS, TIE_POLICIES, compute_ranks, evaluate, metrics_from_ranks, metrics_report, native_library, plan_memory,
    rank_block_native,
    rank_block_torch,
)
from emukg.bench.synthetic import synthetic_problem
from emukg.errors import ParamError
from emukg.models import MODELS, build_model, model_class

# the embedding models (NBFNet, a message-passing model, has its own tests: tests/test_nbfnet.py)
EMBEDDING_MODELS = sorted(n for n, c in MODELS.items() if not getattr(c, "message_passing", False))

REPO = Path(__file__).resolve().parents[1]
needs_native = pytest.mark.skipif(native_library() is None, reason="no C compiler / EMUKG_NO_NATIVE set")


# ------------------------------------------------------------------------------------------------------
def random_graph(n_ent=13, n_rel=3, n_train=40, n_valid=8, n_test=12, seed=0) -> KnowledgeGraph:
    g = torch.Generator().manual_seed(seed)

    def trip(n):
        return torch.stack([torch.randint(0, n_ent, (n,), generator=g), torch.randint(0, n_rel, (n,), generator=g),
                            torch.randint(0, n_ent, (n,), generator=g)], 1)

    return KnowledgeGraph([f"e{i}" for i in range(n_ent)], [f"r{i}" for i in range(n_rel)],
                          {"train": trip(n_train), "valid": trip(n_valid), "test": trip(n_test)}, name="random")


def make_model(name, kg, dim=8, seed=0, quantize=True, duplicates=((3, 5), (7, 2))):
    """A random model; ``quantize`` puts every embedding on the grid k/8 so that all score arithmetic of
    TransE, DistMult and ComplEx is exact (every summation order gives the same float); ``duplicates`` copies
    entity rows onto others, which creates exact ties."""
    cls = model_class(name)
    torch.manual_seed(seed)
    m = build_model(name, kg.num_entities, kg.num_relations, dim, 4.0, cls.requires_double_entity or name == "RotatE",
                    cls.requires_double_relation)
    with torch.no_grad():
        if quantize:
            for p in (m.entity_embedding, m.relation_embedding):
                p.copy_(torch.randint(-8, 9, p.shape, dtype=torch.float32) / 8)
        for src, dst in duplicates:
            m.entity_embedding[dst] = m.entity_embedding[src]
    return m


def brute_force_ranks(model, kg, split, filtered=True):
    """Per query: score every entity (one query at a time), drop the known answers in a Python loop, count."""
    known = {tuple(t) for t in kg.all_triples.tolist()}
    opt, pes = [], []
    triples = kg.splits[split].tolist()
    with torch.no_grad():
        for side in ("tail", "head"):
            for h, r, t in triples:
                anchor, answer = (h, t) if side == "tail" else (t, h)
                scores = model.score_all(torch.tensor([anchor]), torch.tensor([r]), side)[0].tolist()
                scores = [-math.inf if math.isnan(s) else s for s in scores]
                s_true = scores[answer]
                above = at_or_above = 0
                for e, s in enumerate(scores):
                    if e == answer:
                        continue
                    if filtered and ((h, r, e) if side == "tail" else (e, r, t)) in known:
                        continue
                    above += s > s_true
                    at_or_above += s >= s_true
                opt.append(1 + above)
                pes.append(1 + at_or_above)
    return torch.tensor(opt, dtype=torch.float64), torch.tensor(pes, dtype=torch.float64)


def native_capable(name):
    return name in ("TransE", "DistMult", "ComplEx", "RotatE")


# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", EMBEDDING_MODELS)
@pytest.mark.parametrize("filtered", [True, False])
def test_ranks_equal_brute_force(name, filtered):
    kg = random_graph()
    model = make_model(name, kg)
    opt, pes = brute_force_ranks(model, kg, "test", filtered)
    assert (pes > opt).any(), "the constructed duplicates should create ties"
    backends = ["torch"] + (["native"] if native_library() is not None and native_capable(name) else [])
    if native_library() is not None and not native_capable(name):
        backends.append("auto")  # score_all blocks ranked by the C dense ranker
    for backend in backends:
        if backend == "native" and name == "RotatE":
            continue  # phases are not exact on a grid: RotatE is compared with tolerance-free data below
        rk = compute_ranks(model, kg, "test", filtered=filtered, backend=backend)
        assert rk.backend == ("torch" if backend == "auto" else backend)
        assert torch.equal(rk.optimistic, opt), (backend, rk.optimistic, opt)
        assert torch.equal(rk.pessimistic, pes), backend
        assert torch.equal(rk.realistic, (opt + pes) / 2)


def test_metrics_and_report_structure():
    kg = random_graph()
    model = make_model("TransE", kg)
    opt, pes = brute_force_ranks(model, kg, "test")
    res = evaluate(model, kg, "test", tie_policy="pessimistic", backend="torch")
    for pol, ranks in (("optimistic", opt), ("pessimistic", pes), ("realistic", (opt + pes) / 2)):
        want = metrics_from_ranks(ranks)
        for k in METRICS:
            assert res[pol][k] == pytest.approx(want[k])
    for k in METRICS:
        assert res[k] == res["pessimistic"][k]
    n = kg.test.shape[0]
    assert res["num_queries"] == 2 * n
    assert res["tail"]["num_queries"] == res["head"]["num_queries"] == n
    assert res["tail"]["MRR"] == pytest.approx(float((1 / pes[:n]).mean()))
    assert res["head"]["MR"] == pytest.approx(float(pes[n:].mean()))
    # per relation: query counts add up, and the metrics are the group means
    assert sum(m["num_queries"] for m in res["per_relation"].values()) == 2 * n
    rel = kg.test[:, 1].repeat(2)
    for rid, name in enumerate(kg.relations):
        sel = rel == rid
        if sel.any():
            assert res["per_relation"][name]["MR"] == pytest.approx(float(pes[sel].mean()))
        else:
            assert name not in res["per_relation"]
    assert res["queries_per_s"] > 0 and res["seconds"] > 0
    json.dumps(res)  # serialisable


def test_hand_computed_ties():
    """Three entities with identical embeddings and the answer among them: optimistic 1, pessimistic 3."""
    kg = KnowledgeGraph(["a", "b", "c", "d", "x"], ["r"], {
        "train": torch.tensor([[4, 0, 3]]), "valid": torch.tensor([[3, 0, 4]]), "test": torch.tensor([[4, 0, 0]])})
    model = build_model("TransE", 5, 1, 2, 4.0)
    with torch.no_grad():
        model.relation_embedding.copy_(torch.tensor([[0.0, -0.5]]))
        model.entity_embedding.copy_(torch.tensor([[1.0, 0], [1, 0], [1, 0], [1, 0], [1, 0.5]]))
    # tail query (x, r, ?) answer a: x + r hits a, b, c, d exactly (x itself is 0.5 away); d is a known answer
    for backend in ["torch"] + (["native"] if native_library() else []):
        rk = compute_ranks(model, kg, "test", backend=backend)
        assert rk.optimistic[0] == 1 and rk.pessimistic[0] == 3 and rk.realistic[0] == 2
        rk = compute_ranks(model, kg, "test", filtered=False, backend=backend)
        assert rk.pessimistic[0] == 4


def test_nan_scores_rank_worst_and_warn():
    kg = random_graph(seed=2)
    model = make_model("TransE", kg, duplicates=())
    with torch.no_grad():
        model.entity_embedding[4, 0] = float("nan")
    triples = kg.test.clone()
    triples[0] = torch.tensor([1, 0, 4])  # the answer's own score is NaN for the tail query
    kg.splits["test"] = triples
    kg._filter = None
    opt, pes = brute_force_ranks(model, kg, "test")
    with pytest.warns(RuntimeWarning, match="NaN"):
        rk = compute_ranks(model, kg, "test")  # auto: non-finite embeddings → PyTorch path
    assert rk.nan_scores > 0
    assert torch.equal(rk.optimistic, opt) and torch.equal(rk.pessimistic, pes)
    n_candidates = kg.num_entities - int(kg.filter.counts(torch.tensor([1]), torch.tensor([0]), "tail"))
    assert rk.pessimistic[0] == n_candidates + 1  # NaN answer: behind every other candidate


@needs_native
def test_dense_rank_kernel_equals_torch():
    g = torch.Generator().manual_seed(1)
    S = torch.randint(-3, 4, (37, 53), generator=g).float()
    S[torch.rand(S.shape, generator=g) < 0.05] = float("nan")
    answer = torch.randint(0, 53, (37,), generator=g)
    thr = S[torch.arange(37), answer]
    thr[0] = float("nan")
    # exclusions: sorted entity lists per query (CSR), some containing the answer
    lists = [sorted(set(torch.randint(0, 53, (int(k),), generator=g).tolist()) | ({int(answer[i])} if i % 2 else set()))
             for i, k in enumerate(torch.randint(0, 8, (37,), generator=g))]
    count = torch.tensor([len(x) for x in lists])
    start = torch.cumsum(count, 0) - count
    vals = torch.tensor([e for x in lists for e in x], dtype=torch.long)
    gt, ge, nan = rank_block_native(S, thr, answer, start, count, vals)
    qi = torch.repeat_interleave(torch.arange(37), count)
    keep = vals != answer[qi]
    ex_q = torch.cat([qi[keep], torch.arange(37)])
    ex_e = torch.cat([vals[keep], answer])
    gt2, ge2, nan2 = rank_block_torch(S, thr, ex_q, ex_e)
    assert torch.equal(gt, gt2) and torch.equal(ge, ge2) and nan == nan2 > 0


@needs_native
@pytest.mark.parametrize("name", ["TransE", "DistMult", "ComplEx", "RotatE"])
def test_native_equals_torch_medium(name):
    """A larger graph (several tiles, entity ranges and threads): identical ranks, exact ties included."""
    kg = random_graph(n_ent=700, n_rel=5, n_train=3000, n_valid=50, n_test=150, seed=3)
    dups = tuple((i, i + 1) for i in range(0, 60, 3))
    model = make_model(name, kg, dim=24, quantize=name != "RotatE", duplicates=dups)
    comparable = torch.ones(2 * kg.test.shape[0], dtype=torch.bool)
    if name == "RotatE":  # continuous embeddings: leave out the few queries with a candidate within 1e-4 of the answer
        with torch.no_grad():
            near = []
            for side, a, ans in (("tail", kg.test[:, 0], kg.test[:, 2]), ("head", kg.test[:, 2], kg.test[:, 0])):
                S = model.score_all(a, kg.test[:, 1], side)
                d = (S - S[torch.arange(S.shape[0]), ans][:, None]).abs()
                near.append(((d > 0) & (d < 1e-4)).any(1))
            comparable = ~torch.cat(near)
        assert comparable.float().mean() > 0.9
    rt = compute_ranks(model, kg, "test", backend="torch")
    rn = compute_ranks(model, kg, "test", backend="native")
    assert torch.equal(rt.optimistic[comparable], rn.optimistic[comparable])
    assert torch.equal(rt.pessimistic[comparable], rn.pessimistic[comparable])
    assert (rt.pessimistic > rt.optimistic).any()


@needs_native
def test_native_threads_and_chunks_do_not_change_ranks():
    kg = random_graph(n_ent=300, n_rel=4, n_train=2000, n_test=100, seed=4)
    model = make_model("DistMult", kg, dim=16)
    ref = compute_ranks(model, kg, "test", backend="native")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = compute_ranks(model, kg, "test", backend="native", memory_mb=0.005)  # tiny budget: many chunks
    finally:
        torch.set_num_threads(threads)
    assert one.memory.chunk < 100
    assert torch.equal(ref.optimistic, one.optimistic) and torch.equal(ref.pessimistic, one.pessimistic)


def test_torch_entity_slices_equal_full_rows():
    kg = random_graph(n_ent=200, n_rel=4, n_train=1000, n_test=30, seed=5)
    for name in ("TransE", "DistMult", "TransD"):
        model = make_model(name, kg)
        budget = 1.0
        while plan_memory(model, kg.num_entities, budget, backend="torch").entity_slice > kg.num_entities // 2:
            budget /= 1.5
        full = compute_ranks(model, kg, "test", backend="torch")
        sliced = compute_ranks(model, kg, "test", backend="torch", memory_mb=budget)
        assert 1 <= sliced.memory.entity_slice < kg.num_entities
        assert torch.equal(full.optimistic, sliced.optimistic) and torch.equal(full.pessimistic, sliced.pessimistic)
        if name == "TransD" and native_library() is not None:  # PyTorch scores, C dense ranker, sliced
            auto = compute_ranks(model, kg, "test", backend="auto", memory_mb=budget)
            assert auto.backend == "torch" and auto.memory.entity_slice < kg.num_entities
            assert torch.equal(full.optimistic, auto.optimistic) and torch.equal(full.pessimistic, auto.pessimistic)


# ------------------------------------------------------------------------------------------------------
def test_plan_from_budget():
    model = build_model("TransE", 10, 2, 100, 12.0)
    N = 1_000_000
    plan = plan_memory(model, N, 64, backend="torch")
    budget = 64 * 2**20
    assert plan.bytes_per_step <= budget
    per_pair = 4 + 4 + 1 + 1 + 4 * 100 * 2.0
    assert plan.entity_slice < N  # one query against a million entities does not fit 64 MiB when broadcasting
    assert plan.chunk * plan.entity_slice * per_pair <= budget / 2  # live tensors: half the budget
    dm = build_model("DistMult", 10, 2, 100, 12.0)
    plan = plan_memory(dm, 14541, 64, backend="torch")
    assert plan.entity_slice == 14541
    assert plan.chunk == min(1024, (budget // 2) // (14541 * 10 + 4 * 100 * 2 + 64))
    nat = plan_memory(model, N, 64, backend="native", threads=2)
    assert nat.bytes_per_step <= budget and nat.chunk >= 1000
    with pytest.raises(ParamError, match=r"^memory_mb=0\.001: too small for this model"):
        plan_memory(model, N, 0.001, backend="torch")


@pytest.fixture(scope="module")
def million():
    """1,000,000 entities, d = 100, two test triples (four queries)."""
    return synthetic_problem(1_000_000, num_relations=4, num_train=2000, num_test=2, hidden_dim=100, model="TransE", seed=0)


@pytest.mark.parametrize("backend", ["native", "torch"])
def test_million_entities_small_budget(million, backend):
    if backend == "native" and native_library() is None:
        pytest.skip("no native kernel")
    kg, model = million
    split = kg.test if backend == "native" else kg.test[:1]  # the sliced PyTorch path is slow: one triple
    rk = compute_ranks(model, kg, split, memory_mb=64, backend=backend)
    res = metrics_report(rk, kg)
    assert res["num_queries"] == 2 * split.shape[0]
    assert res["memory"]["bytes_per_step"] <= 64 * 2**20
    assert res["backend"] == backend
    if backend == "torch":
        assert res["memory"]["entity_slice"] < 1_000_000
    # spot-check the first tail query against a direct count (tolerance: a million random scores have near-ties)
    with torch.no_grad():
        h, r, t = split[0].tolist()
        q = model.entity_embedding[h] + model.relation_embedding[r]
        s = model.gamma - torch.cdist(q[None], model.entity_embedding, p=1)[0]
        keep = torch.ones_like(s, dtype=torch.bool)
        keep[kg.filter.answers(torch.tensor([h]), torch.tensor([r]), "tail")[1]] = False
        keep[t] = False
        lo, hi = int((s[keep] > s[t] + 1e-3).sum()), int((s[keep] > s[t] - 1e-3).sum())
    assert 1 + lo <= rk.optimistic[0] <= rk.pessimistic[0] <= 1 + hi


def test_model_left_in_its_mode_and_no_grad():
    kg = random_graph()
    model = make_model("DistMult", kg)
    model.train()
    evaluate(model, kg, "valid")
    assert model.training
    model.eval()
    evaluate(model, kg, "valid")
    assert not model.training


def test_progress_and_log_every(caplog):
    import logging

    kg = random_graph(n_ent=50, n_test=40, seed=6)
    model = make_model("TransE", kg)
    logger = logging.getLogger("emukg.test_eval")
    with caplog.at_level(logging.INFO, logger="emukg.test_eval"):
        res = evaluate(model, kg, "test", progress=True, log_every=10, logger=logger, memory_mb=0.01)
    lines = [r.getMessage() for r in caplog.records if "queries" in r.getMessage()]
    assert lines and "/80 queries" in lines[-1]
    assert res["num_queries"] == 80


def test_bad_arguments():
    kg = random_graph()
    model = make_model("TransE", kg)
    with pytest.raises(ParamError, match="^tie_policy='average': choose optimistic, pessimistic or realistic"):
        evaluate(model, kg, "test", tie_policy="average")
    with pytest.raises(ParamError, match="^split='dev': no such split"):
        evaluate(model, kg, "dev")


@pytest.mark.parametrize("kwargs, python, cli", [
    (dict(memory_mb=-5), "memory_mb=-5: must be a positive number of MiB.", "--memory-mb -5: must be a positive number of MiB."),
    (dict(memory_mb=0), "memory_mb=0: ", "--memory-mb 0: "),
    (dict(memory_mb="64"), "memory_mb='64': ", "--memory-mb 64: "),
    (dict(tie_policy="best"), "tie_policy='best': choose", "--tie-policy best: choose"),
    (dict(protocol="ogb"), "protocol='ogb': choose full or sampled.", "--protocol ogb: choose full or sampled."),
    (dict(protocol="sampled", candidates=0), "candidates=0: must be a positive integer", "--candidates 0: must be"),
    (dict(split="dev"), "split='dev': no such split", "--split dev: no such split"),
])
def test_errors_name_the_python_parameter(kwargs, python, cli):
    """The library names its parameters (str of the error); the CLI's rendering of the same error names the flag."""
    kg = random_graph()
    model = make_model("TransE", kg)
    with pytest.raises(ParamError) as err:
        evaluate(model, kg, **{"split": "test", **kwargs})
    assert str(err.value).startswith(python) and "--" not in str(err.value)
    assert err.value.render("cli").startswith(cli)


def test_custom_triples_tensor():
    kg = random_graph()
    model = make_model("TransE", kg)
    a = compute_ranks(model, kg, "test", backend="torch")
    b = compute_ranks(model, kg, kg.test.clone(), backend="torch")
    assert torch.equal(a.optimistic, b.optimistic)


# ------------------------------------------------------------------------------------------------------
def make_run(tmp_path: Path, dataset: Path, model="TransE", **kw) -> Path:
    """A run folder by hand: config.json and a checkpoint of a random model."""
    from emukg.data import load_folder

    run = tmp_path / "run"
    run.mkdir()
    cfg = Config(dataset=str(dataset), model=model, hidden_dim=8, gamma=4.0, save_path=str(run), **kw)
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    kg = load_folder(dataset)
    m = build_model(model, kg.num_entities, kg.num_relations, 8, 4.0, cfg.double_entity_embedding, cfg.double_relation_embedding)
    torch.save({"model_state_dict": m.state_dict(), "step": 0}, run / "checkpoint")
    return run


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "emukg", *map(str, args)], capture_output=True, text=True, env=env, timeout=120)


def test_memory_mb_is_named_as_the_caller_spells_it(tmp_path, tiny_dataset):
    """Python (``Run.evaluate``) names ``memory_mb``; ``emukg evaluate RUN --memory-mb -5`` names the flag, status 2."""
    import emukg

    run_dir = make_run(tmp_path, tiny_dataset)
    with pytest.raises(ParamError) as err:
        emukg.load(run_dir).evaluate("test", memory_mb=-5)
    assert str(err.value) == "memory_mb=-5: must be a positive number of MiB."
    p = run_cli("evaluate", run_dir, "--device", "cpu", "--memory-mb", "-5")
    assert p.returncode == 2
    assert p.stderr.strip() == "emukg: error: --memory-mb -5: must be a positive number of MiB."
    assert "memory_mb" not in p.stderr


def test_evaluate_cli(tmp_path, tiny_dataset, capsys):
    from emukg.cli import main

    run = make_run(tmp_path, tiny_dataset)
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--split", "test", "--json", str(out), "--tie-policy", "optimistic",
                 "--memory-mb", "16", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    for word in ("optimistic *", "pessimistic", "realistic", "head", "tail", "MRR", "HITS@10", "queries/s"):
        assert word in text
    res = json.loads(out.read_text())
    assert res["tie_policy"] == "optimistic" and res["num_queries"] == 6
    assert res["MRR"] == res["optimistic"]["MRR"]
    assert res["run"]["checkpoint"] == "checkpoint"  # no best_model in this run folder
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    # the real command line: a bad split is an argparse error, exit status 2
    p = run_cli("evaluate", run, "--split", "nope")
    assert p.returncode == 2 and "invalid choice" in p.stderr
