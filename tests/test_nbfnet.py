"""NBFNet (emukg.nbfnet): the message passing against a dense brute-force Bellman-Ford (values and gradients), the
removal of the query's edges, EMU on the final node representations against a hand-computed mutation, the filtered
ranks against a brute force, the command line on a tiny fixture, and the Config's refusals."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch

from conftest import write_dataset
from emukg.cli import main
from emukg.config import Config, ConfigError
from emukg.data import load_folder
from emukg.emu import hash_mask, keep_threshold
from emukg.evaluation import compute_ranks, evaluate
from emukg.models import build_model
from emukg.nbfnet.model import NBFNet
from emukg.nbfnet.step import NBFNetObjective

# a toy graph: 6 entities, 2 relations; node 5 has no in-edge of relation 0, node 0 two in-edges, a self-loop on 3
TOY = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 1, 0], [4, 0, 0], [1, 1, 3], [3, 0, 3], [2, 0, 4], [0, 1, 5], [5, 1, 2]])
N, R = 6, 2


def toy_model(message="distmult", aggregation="pna", dependent=True, layers=2, d=4, remove="query", seed=0):
    torch.manual_seed(seed)
    m = build_model("NBFNet", N, R, d, 0.0, num_layers=layers, message_function=message, aggregation=aggregation,
                    query_dependent=dependent, remove_edges=remove).double()
    for p in m.parameters():  # larger weights than the default init, so that every part matters
        p.data.normal_(0, 0.7)
    m.set_graph(TOY)
    return m


def graph_edges(triples: torch.Tensor):
    """(src, rel, dst) of the reciprocal graph of ``triples``, as a Python list (for the dense reference)."""
    out = [(int(h), int(r), int(t)) for h, r, t in triples.tolist()]
    return out + [(t, r + R, h) for h, r, t in out]


def message(kind, h, w):
    if kind == "distmult":
        return h * w
    if kind == "transe":
        return h + w
    k = h.shape[-1] // 2
    return torch.cat([h[..., :k] * w[..., :k] - h[..., k:] * w[..., k:], h[..., :k] * w[..., k:] + h[..., k:] * w[..., :k]], -1)


def dense_bellman_ford(m: NBFNet, u: int, qrel: int, edges, delta: float):
    """The same network as dense tensors: an adjacency A[r, x, v] per relation, every node's message set as a masked
    (v, 2R·N + 1, d) tensor (the boundary last); no edge lists, no scatter."""
    d, R2 = m.hidden_dim, 2 * R
    q = torch.cat([m.relation_embedding, m.inverse_relation_embedding])[qrel]
    A = torch.zeros(R2, N, N, dtype=torch.float64)
    for x, r, v in edges:
        A[r, x, v] = 1.0
    h0 = torch.nn.functional.one_hot(torch.tensor(u), N).double()[:, None] * q[None, :]
    h = h0
    for layer in range(m.num_layers):
        W = (m.relation_maps[layer](q).reshape(R2, d) if m.query_dependent else m.relation_tables[layer])
        M = message(m.message_function, h[None, :, :], W[:, None, :])  # (r, x, d): the message of x along r
        if m.aggregation == "sum":
            a = h0 + torch.einsum("rxv,rxd->vd", A, M)
        else:
            sets = torch.cat([M.reshape(1, R2 * N, d).expand(N, -1, -1), h0[:, None, :]], 1)  # (v, K + 1, d)
            mask = torch.cat([A.permute(2, 0, 1).reshape(N, R2 * N), torch.ones(N, 1, dtype=torch.float64)], 1) > 0
            cnt = mask.sum(1, keepdim=True).double()
            mf = mask[..., None].double()
            mean = (sets * mf).sum(1) / cnt
            sq = (sets * sets * mf).sum(1) / cnt
            std = (sq - mean * mean).clamp(min=1e-6).sqrt()
            mx = torch.where(mask[..., None], sets, torch.tensor(-math.inf, dtype=torch.float64)).amax(1)
            mn = torch.where(mask[..., None], sets, torch.tensor(math.inf, dtype=torch.float64)).amin(1)
            f = torch.cat([mean, mx, mn, std], -1)
            scale = torch.log(cnt + 1) / delta
            a = torch.cat([f, f * scale, f / scale], -1)
        h = torch.relu(m.norms[layer](m.linears[layer](torch.cat([h, a], -1)))) + h
    scores = m.mlp(torch.cat([h, q.expand(N, d)], -1)).squeeze(-1)
    return h, scores


def full_delta(triples):
    deg = torch.zeros(N)
    for _, _, v in graph_edges(triples):
        deg[v] += 1
    return float(torch.log(deg + 1 + 1).mean())


CASES = list(itertools.product(["distmult", "transe", "rotate"], ["sum", "pna"], [True, False]))


@pytest.mark.parametrize("msg,agg,dep", CASES)
def test_message_passing_equals_dense_bellman_ford_values_and_gradients(msg, agg, dep):
    m = toy_model(msg, agg, dep)
    # three queries: a tail query, a head query as its reciprocal (relation + R), one on a removed triple
    anchor, rel = torch.tensor([0, 2, 1]), torch.tensor([0, 1 + R, 1])
    remove = torch.tensor([[0, 0, 1], [1, 0, 2], [1, 1, 3]])  # the training triple of each query
    x, q = m.propagate(anchor, rel, remove=remove)
    s = m.head_scores(x, q)
    weights = torch.randn(s.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = torch.autograd.grad((s * weights).sum(), list(m.parameters()), allow_unused=True)
    delta = full_delta(TOY)
    assert m.log_degree_mean == pytest.approx(delta)
    dense_s, dense_x = [], []
    for i in range(3):
        h_, t_ = [int(v) for v in remove[i, [0, 2]]]
        r_ = int(remove[i, 1])
        edges = [e for e in graph_edges(TOY) if e not in ((h_, r_, t_), (t_, r_ + R, h_))]
        hx, sc = dense_bellman_ford(m, int(anchor[i]), int(rel[i]), edges, delta)
        dense_x.append(hx)
        dense_s.append(sc)
    dense_s = torch.stack(dense_s)
    torch.testing.assert_close(x, torch.stack(dense_x), rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(s, dense_s, rtol=1e-10, atol=1e-10)
    dense_grads = torch.autograd.grad((dense_s * weights).sum(), list(m.parameters()), allow_unused=True)
    for (name, _), g, dg in zip(m.named_parameters(), grads, dense_grads):
        if g is None and dg is None:  # the (N, 0) entity table: NBFNet has no entity embeddings
            continue
        torch.testing.assert_close(g, dg, rtol=1e-9, atol=1e-10, msg=lambda text: f"{name}: {text}")


def test_removed_edges_are_exactly_the_query_edge_and_its_reciprocal():
    m = toy_model()
    rows, edges = m.removed_edges(torch.tensor([[0, 0, 1], [1, 1, 3], [3, 0, 3]]))
    got = {(int(r), (int(m.edge_src[e]), int(m.edge_rel[e]), int(m.edge_dst[e]))) for r, e in zip(rows, edges)}
    assert got == {(0, (0, 0, 1)), (0, (1, 2, 0)), (1, (1, 1, 3)), (1, (3, 3, 1)), (2, (3, 0, 3)), (2, (3, 2, 3))}
    src, rel, dst = m.batch_graph(3, torch.tensor([[0, 0, 1], [1, 1, 3], [3, 0, 3]]))
    assert src.numel() == 3 * 2 * TOY.shape[0] - 6
    # query 0's own graph lacks 0 -r0-> 1 and 1 -r0⁻¹-> 0, and keeps every other edge
    own = {(int(s), int(r), int(t)) for s, r, t in zip(src, rel, dst) if s < N}
    assert own == set(graph_edges(TOY)) - {(0, 0, 1), (1, 2, 0)}
    # the pair rule removes every edge between h and t, either way, whatever its relation
    pm = toy_model(remove="pair")
    rows, edges = pm.removed_edges(torch.tensor([[1, 0, 2]]))
    got = {(int(pm.edge_src[e]), int(pm.edge_rel[e]), int(pm.edge_dst[e])) for e in edges}
    assert got == {(1, 0, 2), (2, 2, 1)}
    rows, edges = pm.removed_edges(torch.tensor([[5, 1, 2]]))
    got = {(int(pm.edge_src[e]), int(pm.edge_rel[e]), int(pm.edge_dst[e])) for e in edges}
    assert got == {(5, 1, 2), (2, 3, 5)}
    pm.set_graph(torch.tensor([[0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 2]]))  # three triples between 0 and 1
    rows, edges = pm.removed_edges(torch.tensor([[0, 0, 1], [1, 0, 2]]))
    got = {(int(r), (int(pm.edge_src[e]), int(pm.edge_rel[e]), int(pm.edge_dst[e]))) for r, e in zip(rows, edges)}
    assert got == {(0, (0, 0, 1)), (0, (1, 2, 0)), (0, (1, 1, 0)), (0, (0, 3, 1)), (0, (0, 1, 1)), (0, (1, 3, 0)),
                   (1, (1, 0, 2)), (1, (2, 2, 1))}


@pytest.mark.parametrize("remove,dropped", [("query", [[1, 1, 3]]), ("pair", [[1, 1, 3]]), ("none", [])])
def test_a_query_with_its_edges_removed_equals_the_graph_without_them(remove, dropped):
    """propagate(remove=triple) equals propagate on the graph built without that triple (for every aggregator the
    degrees follow), and differs from the full graph."""
    m = toy_model(remove=remove)
    x, _ = m.propagate(torch.tensor([1]), torch.tensor([1]), remove=torch.tensor([[1, 1, 3]]))
    keep = [t for t in TOY.tolist() if t not in dropped]
    ref = toy_model(remove=remove)
    ref.load_state_dict(m.state_dict())
    ref.set_graph(torch.tensor(keep))
    ref.log_degree_mean = m.log_degree_mean  # δ belongs to the training graph, not the query's
    y, _ = ref.propagate(torch.tensor([1]), torch.tensor([1]))
    torch.testing.assert_close(x, y, rtol=0, atol=0)
    full, _ = m.propagate(torch.tensor([1]), torch.tensor([1]))
    assert torch.equal(full, x) == (remove == "none")


class FixedSampler:
    """Negatives given in advance (the sampler interface: sample(positives, side) -> (B, n))."""

    def __init__(self, neg):
        self.neg = neg

    def sample(self, positives, side):
        return self.neg


def emu_config(**kw):
    cfg = Config(model="NBFNet", loss="ce", sampler="filtered", emu=0.5, neg_label=0.3, ce_coef=0.2, hidden_dim=4,
                 num_layers=2, uni_weight=True, **kw)
    cfg.validate()
    return cfg


@pytest.mark.parametrize("side", ["tail", "head"])
def test_emu_on_nbfnet_equals_a_hand_computed_mutation(side):
    m = toy_model(d=4)
    pos = torch.tensor([[0, 0, 1], [1, 1, 3], [4, 0, 0]])
    neg = torch.tensor([[2, 3, 5], [0, 5, 4], [1, 2, 3]])
    cfg = emu_config()
    obj = NBFNetObjective(cfg, None, FixedSampler(neg), accumulate=False)
    loss, logs = obj(m, pos, side, torch.Generator().manual_seed(7), None)
    seed = torch.randint(0, 1 << 32, (2,), generator=torch.Generator().manual_seed(7), dtype=torch.int64)
    # by hand: the queries, one pass each, the candidates' rows, the mutation component by component, the two losses
    true = pos[:, 2] if side == "tail" else pos[:, 0]
    cand = torch.cat([true[:, None], neg], 1)
    anchor = pos[:, 0] if side == "tail" else pos[:, 2]
    rel = pos[:, 1] if side == "tail" else pos[:, 1] + R
    B, C, d = 3, 4, 4
    mask = hash_mask(seed, B, C, d, 0.5, use_kernel=False)
    assert 0 < int(mask[:, 1:].sum()) < B * (C - 1) * d  # a real mixture of kept and replaced components
    ce = emu = 0.0
    for b in range(B):
        x, q = m.propagate(anchor[b:b + 1], rel[b:b + 1], remove=pos[b:b + 1])
        rows = [x[0, int(cand[b, j])] for j in range(C)]
        mutated = [torch.stack([rows[j][i] if mask[b, j, i] else rows[0][i] for i in range(d)]) for j in range(C)]
        s = torch.stack([m.mlp(torch.cat([rows[j], q[0]])).squeeze() for j in range(C)])
        s2 = torch.stack([m.mlp(torch.cat([mutated[j], q[0]])).squeeze() for j in range(C)])
        ce = ce + (torch.logsumexp(s, 0) - s[0]) / B
        lp = s2 - torch.logsumexp(s2, 0)
        emu = emu - (lp[0] + 0.3 * lp[1:].sum()) / B
    expected = emu / (C - 1) + 0.2 * ce
    torch.testing.assert_close(loss, expected, rtol=1e-10, atol=1e-12)
    assert logs["emu_loss"] == pytest.approx(float(emu.detach())) and logs["ce_loss"] == pytest.approx(float(ce.detach()))
    # gradients of the step equal the hand-computed loss's
    g1 = torch.autograd.grad(loss, list(m.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(expected, list(m.parameters()), allow_unused=True)
    for a, b in zip(g1, g2):
        if a is not None or b is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_micro_batches_change_nothing_but_the_memory():
    """The step in micro-batches of one query (a tiny train_memory_mb) gives the loss and gradients of one pass."""
    cfg = emu_config()
    pos = torch.tensor([[0, 0, 1], [1, 1, 3], [4, 0, 0]])
    neg = torch.tensor([[2, 3, 5], [0, 5, 4], [1, 2, 3]])
    out = []
    for budget in (512, None):
        m = toy_model(d=4)
        if budget is None:
            m.train_memory_mb = 1.01 * m.bytes_per_query(True) / 2**20  # one query per micro-batch
            assert m.queries_per_pass(m.train_memory_mb, True, "train_memory_mb") == 1
        loss, logs = NBFNetObjective(cfg, None, FixedSampler(neg))(m, pos, "tail", torch.Generator().manual_seed(3), None)
        assert not loss.requires_grad  # the step back-propagated its micro-batches itself
        out.append((float(loss), [p.grad.clone() for p in m.parameters() if p.grad is not None]))
    assert out[0][0] == pytest.approx(out[1][0], rel=1e-12)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_self_adversarial_binary_loss_by_hand():
    m = toy_model(d=4)
    pos = torch.tensor([[0, 0, 1], [2, 0, 4]])
    neg = torch.tensor([[3, 4], [0, 1]])
    cfg = Config(model="NBFNet", loss="sigmoid", adversarial=True, adversarial_temperature=0.5, hidden_dim=4, num_layers=2)
    cfg.validate()
    w = torch.tensor([0.25, 0.75], dtype=torch.float64)
    loss, _ = NBFNetObjective(cfg, None, FixedSampler(neg), accumulate=False)(m, pos, "tail", torch.Generator(), w)
    x, q = m.propagate(pos[:, 0], pos[:, 1], remove=pos)
    s = m.head_scores(x[torch.arange(2)[:, None], torch.cat([pos[:, 2:], neg], 1)], q)
    p = torch.softmax(0.5 * s[:, 1:].detach(), 1)
    lpos = -(w * torch.log(torch.sigmoid(s[:, 0]))).sum() / w.sum()
    lneg = -(w * (p * torch.log(torch.sigmoid(-s[:, 1:]))).sum(1)).sum() / w.sum()
    torch.testing.assert_close(loss, (lpos + lneg) / 2, rtol=1e-10, atol=1e-12)


def brute_force_ranks(m, kg, triples):
    """Filtered ranks of every tail query, then every head query (as (t, r + R, ?)), one query at a time."""
    known = {tuple(t) for t in kg.all_triples.tolist()} if hasattr(kg, "all_triples") else None
    if known is None:
        known = {tuple(t) for s in ("train", "valid", "test") for t in kg.splits[s].tolist()}
    opt, pes = [], []
    for side in ("tail", "head"):
        for h, r, t in triples.tolist():
            a, ans = (h, t) if side == "tail" else (t, h)
            x, q = m.propagate(torch.tensor([a]), torch.tensor([r if side == "tail" else r + kg.num_relations]))
            s = m.head_scores(x, q)[0].tolist()
            gt = ge = 0
            for e in range(kg.num_entities):
                if e == ans or ((a, r, e) if side == "tail" else (e, r, a)) in known:
                    continue
                gt += s[e] > s[ans]
                ge += s[e] >= s[ans]
            opt.append(1 + gt)
            pes.append(1 + ge)
    return torch.tensor(opt, dtype=torch.float64), torch.tensor(pes, dtype=torch.float64)


def test_filtered_ranks_equal_brute_force(tmp_path):
    kg = load_folder(write_dataset(tmp_path / "tiny"))
    torch.manual_seed(0)
    m = build_model("NBFNet", kg.num_entities, kg.num_relations, 4, 0.0, num_layers=1, aggregation="sum",
                    message_function="distmult")
    m.attach(kg)
    with torch.no_grad():
        m.mlp[2].bias.zero_()
        m.mlp[2].weight[:, 4:].zero_()  # the query part gives no score: ties only where node rows tie
        rk = compute_ranks(m, kg, "test")
        opt, pes = brute_force_ranks(m, kg, kg.splits["test"])
    assert torch.equal(rk.optimistic, opt) and torch.equal(rk.pessimistic, pes)
    # tie policies: the entities one layer does not reach from the anchor share one representation: ties
    assert bool((pes > opt).any())
    res = evaluate(m, kg, "test", tie_policy="pessimistic")
    assert res["MRR"] == pytest.approx(float((1 / pes).mean()))
    assert res["realistic"]["MRR"] == pytest.approx(float((2 / (opt + pes)).mean()))
    # a budget of one query per chunk ranks the same
    m.eval_memory_mb = 1.01 * m.bytes_per_query(False) / 2**20
    with torch.no_grad():
        rk1 = compute_ranks(m, kg, "test")
    assert torch.equal(rk1.optimistic, opt)
    # a query asked twice is passed once and scored the same; entity subsets are columns of the full scores
    a, r = torch.tensor([3, 0, 3, 5]), torch.tensor([1, 2, 1, 0])
    with torch.no_grad():
        both = m.score_all(a, r, "head")
        one = torch.cat([m.score_all(a[i:i + 1], r[i:i + 1], "head") for i in range(4)])
        sub = m.score_all(a, r, "head", entities=torch.tensor([6, 1]))
    assert torch.equal(both, one) and torch.equal(both[0], both[2])
    torch.testing.assert_close(sub, both[:, [6, 1]], rtol=1e-6, atol=1e-7)  # (the MLP's matmul blocks differ)


def test_cli_trains_and_evaluates_nbfnet_with_and_without_emu(tmp_path, capsys):
    data = write_dataset(tmp_path / "tiny")
    common = ["--dataset", str(data), "--model", "NBFNet", "--hidden-dim", "8", "--num-layers", "2", "--batch-size", "4",
              "--negative-sample-size", "3", "--max-steps", "4", "--valid-steps", "2", "--optimizer", "adam",
              "--learning-rate", "0.01", "--schedule", "constant", "--threads", "1"]
    runs = {"plain": ["--loss", "sigmoid", "--adversarial", "--uni-weight"],
            "emu": ["--loss", "ce", "--emu", "0.5", "--neg-label", "0.3", "--ce-coef", "0.1", "--aggregation", "sum"]}
    for name, extra in runs.items():
        run = tmp_path / name
        assert main(["train", *common, *extra, "--save-path", str(run)]) == 0
        results = json.loads((run / "results.json").read_text())
        assert 0 < results["test"]["MRR"] <= 1 and results["step"] == 4
        saved = json.loads((run / "config.json").read_text())
        assert saved["model"] == "NBFNet" and saved["num_layers"] == 2 and saved["remove_edges"] == "query"
        assert main(["evaluate", str(run), "--split", "test", "--json", str(tmp_path / f"{name}.json")]) == 0
        again = json.loads((tmp_path / f"{name}.json").read_text())
        assert again["MRR"] == pytest.approx(results["test"]["MRR"], rel=1e-6)


@pytest.mark.parametrize("settings,param,words", [
    (dict(model="NBFNet", num_layers=0), "num_layers", "from 1 to 100"),
    (dict(model="NBFNet", message_function="complex"), "message_function", "distmult"),
    (dict(model="NBFNet", aggregation="max"), "aggregation", "pna"),
    (dict(model="NBFNet", remove_edges="all"), "remove_edges", "query"),
    (dict(model="TransE", num_layers=3), "num_layers", "NBFNet only"),
    (dict(model="RotatE", double_entity_embedding=True, aggregation="sum"), "aggregation", "NBFNet only"),
    (dict(model="NBFNet", loss="1vsall"), "loss", "sigmoid"),
    (dict(model="NBFNet", loss="ce", adversarial=True), "adversarial", "sigmoid"),
    (dict(model="NBFNet", regularization=1e-3), "regularization", "embedding tables"),
    (dict(model="NBFNet", sparse=True), "sparse", "entity rows"),
    (dict(model="NBFNet", eval_protocol="sampled"), "eval_protocol", "full"),
    (dict(model="NBFNet", message_function="rotate", hidden_dim=7), "hidden_dim", "even"),
    (dict(model="NBFNet", double_entity_embedding=True), "double_entity_embedding", "row layout"),
    (dict(model="NBFNet", emu=0.5, neg_label=0.3), "emu", "cross-entropy"),
])
def test_bad_settings_are_refused_in_one_sentence(settings, param, words):
    with pytest.raises(ConfigError) as info:
        Config(**settings).validate()
    assert info.value.param == param and words in str(info.value)
    text = info.value.render("cli")
    assert text.count(". ") == 0 and text.endswith(".") and "--" + param.replace("_", "-") in text


def test_the_cli_refuses_a_bad_nbfnet_flag_with_exit_2(tmp_path, capsys):
    data = write_dataset(tmp_path / "tiny")
    code = main(["train", "--dataset", str(data), "--model", "NBFNet", "--aggregation", "mean",
                 "--save-path", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "--aggregation" in err and "Traceback" not in err and not (tmp_path / "run").exists()


def test_defaults_and_too_small_budget():
    cfg = Config(model="NBFNet")
    cfg.validate()
    assert (cfg.num_layers, cfg.message_function, cfg.aggregation, cfg.query_dependent, cfg.remove_edges,
            cfg.sparse) == (6, "distmult", "pna", True, "query", False)
    m = toy_model()
    with pytest.raises(ConfigError.__mro__[1], match="train_memory_mb.*give at least"):
        m.queries_per_pass(1e-6, True, "train_memory_mb")


def test_named_nbfnet_configs():
    from emukg.paper import experiment_config, experiments

    fb = experiment_config("nbfnet-FB15k-237")
    assert (fb.model, fb.hidden_dim, fb.num_layers, fb.message_function, fb.aggregation) == ("NBFNet", 32, 6, "distmult", "pna")
    assert (fb.negative_sample_size, fb.batch_size, fb.learning_rate, fb.optimizer) == (32, 64, 5e-3, "adam")
    assert (fb.loss, fb.adversarial, fb.adversarial_temperature, fb.query_dependent, fb.remove_edges) == ("sigmoid", True, 0.5, True, "pair")
    assert fb.max_steps == 20 * -(-272115 // 64) and fb.sampler == "filtered" and fb.emu is None
    wn = experiment_config("nbfnet-emu-wn18rr")
    assert (wn.loss, wn.emu, wn.neg_label, wn.ce_coef, wn.query_dependent, wn.remove_edges) == ("ce", 0.39, 0.53, 0.11, False, "query")
    assert {n for n in experiments() if n.startswith("nbfnet")} == {
        "nbfnet-FB15k-237", "nbfnet-emu-FB15k-237", "nbfnet-wn18rr", "nbfnet-emu-wn18rr"}
    short = experiment_config("nbfnet-wn18rr", max_steps=10)  # a shortened run keeps the constant schedule
    assert short.max_steps == 10 and short.warm_up_steps is None


def test_resume_continues_exactly_and_load_restores_the_graph(tmp_path):
    """3 steps + resume + 3 steps = 6 steps (same weights), and a loaded run scores as the trained model did."""
    import emukg
    from emukg.training import train

    data = write_dataset(tmp_path / "tiny")
    common = dict(dataset=str(data), model="NBFNet", hidden_dim=4, num_layers=2, batch_size=4, negative_sample_size=3,
                  loss="ce", emu=0.5, neg_label=0.3, optimizer="adam", learning_rate=0.01, schedule="constant",
                  do_valid=False, do_test=True, save_checkpoint_steps=3, threads=1)
    train(Config(**common, max_steps=6, save_path=str(tmp_path / "straight")))
    train(Config(**common, max_steps=3, save_path=str(tmp_path / "split")))
    res = train(Config(**common, max_steps=6, save_path=str(tmp_path / "split"), init_checkpoint=str(tmp_path / "split")))
    a = torch.load(tmp_path / "straight" / "checkpoint", weights_only=False)["model_state_dict"]
    b = torch.load(tmp_path / "split" / "checkpoint", weights_only=False)["model_state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    run = emukg.load(tmp_path / "split", checkpoint="last")
    assert run.model.graph_edges == 2 * 16
    again = evaluate(run.model, run.kg, "test")
    assert again["MRR"] == pytest.approx(res["test"]["MRR"], rel=1e-9)
