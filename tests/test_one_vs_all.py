"""1-vs-all in entity blocks (emukg.objectives.one_vs_all): values and gradients against autograd on the unblocked score for
every registered model, the memory plan, training runs with distance models, and the EMU refusal."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from emukg import emu
from emukg.cli import main as cli_main
from emukg.config import Config, ConfigError
from emukg.errors import EmukgError
from emukg.objectives import build_objective
from emukg.models import MODELS, build_model, model_class
from emukg.objectives.one_vs_all import choose_path, one_vs_all_loss, plan_one_vs_all

# the embedding models (NBFNet, a message-passing model, has its own tests: tests/test_nbfnet.py)
EMBEDDING_MODELS = sorted(n for n, c in MODELS.items() if not getattr(c, "message_passing", False))

N, NR, B = 13, 4, 5
SIDES = ["tail", "head"]
# (entity block, query chunk): blocks dividing N or not, one entity per block, query chunks dividing B or not
SPLITS = [(13, None), (4, 2), (5, 5), (1, 3), (6, 1)]


def make_model(name, n=N, dim=6, dtype=torch.float64, seed=0):
    cls = model_class(name)
    torch.manual_seed(seed)
    m = build_model(name, n, NR, dim, 6.0, cls.requires_double_entity or name == "RotatE", cls.requires_double_relation)
    with torch.no_grad():  # spread the scores so that the softmax is far from uniform
        m.entity_embedding.mul_(3.0)
        m.relation_embedding.mul_(2.0)
    return m.to(dtype)


def queries(n=N, b=B, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(n, (b,), generator=g), torch.randint(NR, (b,), generator=g), torch.randint(n, (b,), generator=g))


def oracle(model, anchor, relation, answer, side):
    """loss_b by the definition: log-softmax of model.score broadcast over every entity, at the answer."""
    E, R = model.entity_embedding, model.relation_embedding
    a, r, cand = E[anchor].unsqueeze(1), R[relation].unsqueeze(1), E.unsqueeze(0)
    s = model.score(a, r, cand) if side == "tail" else model.score(cand, r, a)
    return -torch.log_softmax(s, dim=1).gather(1, answer[:, None])[:, 0]


def loss_and_grads(model, fn, upstream):
    model.zero_grad(set_to_none=True)
    loss = fn()
    (loss * upstream).sum().backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def blocked(model, side, block, chunk, use_kernel=False, path=None):
    plan = plan_one_vs_all(model, B, 512, side, use_kernel, entity_block=block, query_chunk=chunk, path=path)
    return dataclasses.replace(plan, direct=False)


@pytest.mark.parametrize("path", ["own", "broadcast"])
@pytest.mark.parametrize("split", SPLITS, ids=lambda s: f"block{s[0]}-chunk{s[1]}")
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", EMBEDDING_MODELS)
def test_blocked_equals_unblocked(name, side, split, path):
    """Every model, both sides, its own torch path (matmul for DistMult/ComplEx, cdist for TransE, broadcast
    otherwise) and the plain broadcast path: loss and the gradients of every parameter (entity and relation tables,
    pRotatE's modulus, …) equal autograd on the unblocked score, in float64, for blocks that do and do not divide N."""
    model = make_model(name)
    anchor, relation, answer = queries()
    upstream = torch.tensor([1.0, -0.5, 2.0, 0.25, 1.5], dtype=torch.float64)  # a non-uniform gradient per query
    ref, ref_g = loss_and_grads(model, lambda: oracle(model, anchor, relation, answer, side), upstream)
    plan = blocked(model, side, *split, path=None if path == "own" else path)
    expected = {"DistMult": "matmul", "ComplEx": "matmul", "TransE": "cdist"}.get(name, "broadcast")
    assert plan.path == (expected if path == "own" else "broadcast")
    got, got_g = loss_and_grads(model, lambda: one_vs_all_loss(model, anchor, relation, answer, side, plan=plan), upstream)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-10)
    assert set(got_g) == set(ref_g) and len(ref_g) >= 2
    for k in ref_g:
        assert ref_g[k].abs().max() > 0, k  # the oracle gradient is not trivially zero
        torch.testing.assert_close(got_g[k], ref_g[k], rtol=1e-9, atol=1e-10, msg=lambda m: f"{k}: {m}")


needs_kernel = pytest.mark.skipif(not emu.kernel_available(), reason="no native kernel")


@needs_kernel
@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("name", EMBEDDING_MODELS)
def test_kernel_path_equals_unblocked(name, side):
    """The fused-kernel path (float32; every model with a distance fast path) against float64 autograd of the
    unblocked score."""
    dim = 16
    model = make_model(name, dim=dim, dtype=torch.float32)
    if choose_path(model, side) != "kernel":  # the dot-product models take the matmul, TransE torch.cdist
        assert choose_path(model, side) == ("cdist" if name == "TransE" else "matmul")
        pytest.skip(f"{name}: {choose_path(model, side)} path")
    exact = make_model(name, dim=dim, dtype=torch.float64)
    with torch.no_grad():
        for p, q in zip(exact.parameters(), model.parameters()):
            p.copy_(q.double())
    anchor, relation, answer = queries()
    up = torch.tensor([1.0, -0.5, 2.0, 0.25, 1.5])
    ref, ref_g = loss_and_grads(exact, lambda: oracle(exact, anchor, relation, answer, side), up.double())
    for block, chunk in [(4, 2), (13, None)]:
        plan = blocked(model, side, block, chunk, use_kernel=None)
        assert plan.path == "kernel"
        got, got_g = loss_and_grads(model, lambda: one_vs_all_loss(model, anchor, relation, answer, side, plan=plan), up)
        torch.testing.assert_close(got.double(), ref, rtol=1e-5, atol=1e-5)
        for k in ref_g:
            torch.testing.assert_close(got_g[k].double(), ref_g[k], rtol=1e-4, atol=1e-5 * float(ref_g[k].abs().max()))


def test_small_graph_takes_the_direct_path_and_dot_models_the_matmul():
    """DistMult/ComplEx on a graph that fits: one matrix product over all entities, as before (no recomputation)."""
    for name in ("DistMult", "ComplEx"):
        plan = plan_one_vs_all(make_model(name), 1000, 512)
        assert plan.path == "matmul" and plan.direct and plan.entity_block == N
    plan = plan_one_vs_all(make_model("TransD"), 1000, 512)
    assert plan.path == "broadcast" and plan.direct
    model = make_model("TransE")
    plan = plan_one_vs_all(model, B, 512)
    assert plan.path == "cdist" and plan.direct
    anchor, relation, answer = queries()
    for side in SIDES:
        torch.testing.assert_close(one_vs_all_loss(model, anchor, relation, answer, side, plan=plan),
                                   oracle(model, anchor, relation, answer, side), rtol=1e-10, atol=1e-10)


class MaxNumel(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


@pytest.mark.parametrize("name", ["TransE", "DistMult", "pRotatE", "HAKE"])
def test_budget_bounds_every_tensor(name):
    """Under a small budget the plan splits the entities, its block fits the budget, and no tensor of the forward
    or backward reaches B×N elements (the largest ones are the N×D gradient and one block)."""
    n, b, dim = 4000, 16, 4
    model = make_model(name, n=n, dim=dim, dtype=torch.float32)
    anchor, relation, answer = queries(n, b)
    budget_mb = 0.25
    plan = plan_one_vs_all(model, b, budget_mb)
    assert not plan.direct and plan.entity_block < n
    assert plan.block_bytes == plan.query_chunk * plan.entity_block * plan.pair_bytes + plan.entity_block * plan.entity_bytes
    assert plan.block_bytes <= budget_mb * 2**20
    model.zero_grad(set_to_none=True)
    with MaxNumel() as mode:
        loss = one_vs_all_loss(model, anchor, relation, answer, "tail", memory_mb=budget_mb).mean()
        loss.backward()
    width = model.entity_embedding.shape[1]
    assert mode.largest <= max(n * width, plan.query_chunk * plan.entity_block * width)
    assert mode.largest < b * n
    ref = oracle(model, anchor, relation, answer, "tail").mean()
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)


def test_tiny_budget_lowers_the_query_chunk_then_refuses():
    model = make_model("TransD", n=2000, dim=8, dtype=torch.float32)
    plan = plan_one_vs_all(model, 64, 0.5)
    assert plan.query_chunk < 64 and plan.block_bytes <= 0.5 * 2**20
    with pytest.raises(EmukgError, match=r"^memory_mb=0\.001: too small for a 1-vs-all block") as exc:
        plan_one_vs_all(model, 64, 0.001)
    assert exc.value.render("cli").startswith("--train-memory-mb 0.001: too small")  # a run's train_memory_mb


# --- the objective, Config, training -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["TransE", "RotatE", "TransD"])
def test_objective_mean_and_budget_setting(name):
    """Objective('1vsall') is the batch mean of the per-query loss, with the Config's train_memory_mb."""
    model = make_model(name, dtype=torch.float32)
    cls = model_class(name)
    cfg = Config.from_dict(dict(model=name, hidden_dim=6, loss="1vsall", train_memory_mb=1,
                                double_entity_embedding=cls.requires_double_entity or name == "RotatE",
                                double_relation_embedding=cls.requires_double_relation))
    obj = build_objective(cfg, SimpleNamespace(num_entities=N), None)
    anchor, relation, answer = queries()
    pos = torch.stack([anchor, relation, answer], 1)
    for side in SIDES:
        loss, logs = obj(model, pos, side, torch.Generator().manual_seed(0))
        true = answer if side == "tail" else anchor
        other = anchor if side == "tail" else answer
        ref = oracle(model, other, relation, true, side).mean()
        assert logs["ce_loss"] == pytest.approx(float(ref.detach()), rel=1e-5)


@pytest.mark.parametrize("name", EMBEDDING_MODELS)
def test_config_accepts_every_model(name):
    cls = model_class(name)
    cfg = Config(model=name, loss="1vsall", double_entity_embedding=cls.requires_double_entity or name == "RotatE",
                 double_relation_embedding=cls.requires_double_relation)
    cfg.validate()
    assert cfg.sampler is None


def test_train_memory_mb_must_be_positive():
    with pytest.raises(ConfigError, match="train_memory_mb"):
        Config.from_dict(dict(loss="1vsall", train_memory_mb=0))


def test_emu_with_one_vs_all_is_refused_in_one_sentence():
    with pytest.raises(ConfigError) as info:
        Config.from_dict(dict(model="DistMult", loss="1vsall", emu=0.5, neg_label=0.5))
    msg = str(info.value)
    assert msg.startswith("emu=0.5: EMU is not defined for 1-vs-all")
    assert "loss='ce'" in msg and "--loss ce" in info.value.render("cli") and msg.count(". ") == 0 and msg.endswith(".")


def test_cli_refuses_emu_with_one_vs_all(tmp_path, capsys):
    from test_training import write_graph

    graph = write_graph(tmp_path / "g")
    code = cli_main(["train", "--dataset", str(graph), "--save-path", str(tmp_path / "run"), "--model", "TransE",
                     "--hidden-dim", "8", "--loss", "1vsall", "--emu", "0.5", "--neg-label", "0.5", "--max-steps", "2",
                     "--device", "cpu", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "--emu 0.5: EMU is not defined for 1-vs-all" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("name", ["TransE", "RotatE", "pRotatE", "TransD", "HAKE"])
def test_training_with_one_vs_all(tmp_path, name):
    """A few Trainer steps of 1-vs-all with a distance model under a budget that forces several blocks: finite
    losses, every entity row moves (1-vs-all gives every entity a gradient), and the training loss goes down."""
    from emukg.training import Trainer
    from test_training import write_graph

    graph = write_graph(tmp_path / "g", n_ent=300, n_train=400)
    cfg = Config.from_dict(dict(dataset=str(graph), model=name, hidden_dim=16 if name == "RotatE" else 8, gamma=6.0, batch_size=256,
                                loss="1vsall", train_memory_mb=1, learning_rate=0.1, max_steps=12, valid_steps=100,
                                log_steps=1, save_checkpoint_steps=100, do_valid=False, do_test=False,
                                save_path=str(tmp_path / "run"), device="cpu", progress=False, seed=3,
                                double_entity_embedding=name == "RotatE"))
    trainer = Trainer(cfg)
    plan = plan_one_vs_all(trainer.model, cfg.batch_size, cfg.train_memory_mb)
    assert not plan.direct and plan.entity_block < 300  # several blocks: cdist (TransE), the kernel (the others)
    before = trainer.model.entity_embedding.detach().clone()
    losses = [trainer.train_step()["ce_loss"] for _ in range(cfg.max_steps)]
    after = trainer.model.entity_embedding.detach()
    assert all(torch.isfinite(torch.tensor(losses)))
    assert bool(((after - before).abs().sum(1) > 0).all())
    assert sum(losses[-4:]) < sum(losses[:4])
