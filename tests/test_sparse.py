"""Row-sparse training (emukg.optim, Config.sparse): exact Adagrad, lazy Adam, the sparse gradients, resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emukg import optim
from emukg.config import Config, ConfigError
from emukg.optim import LazyAdam, RowSparseAdagrad, make_optimizer, mark_row_sparse, row_chunks, use_sparse
from emukg.training import Trainer, train

from test_training import write_graph


def config(graph, save, **kw) -> Config:
    base = dict(dataset=str(graph), model="TransE", hidden_dim=16, gamma=6.0, negative_sample_size=8, batch_size=32,
                loss="ce", sampler="uniform", emu=0.4, neg_label=0.5, learning_rate=0.05, max_steps=8, warm_up_steps=100,
                valid_steps=100, log_steps=100, save_checkpoint_steps=100, save_path=str(save), device="cpu",
                progress=False, seed=3, do_valid=False, do_test=False)
    base.update(kw)
    return Config.from_dict(base)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return write_graph(tmp_path_factory.mktemp("sparse") / "g")


def random_row_grads(N, D, steps, seed=0):
    """Per step: (dense gradient, the same gradient as an uncoalesced sparse COO tensor with repeated rows)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(steps):
        idx = torch.randint(0, N, (N // 2,), generator=g)
        val = torch.randn(idx.numel(), D, generator=g)
        sparse = torch.sparse_coo_tensor(idx[None], val, (N, D), check_invariants=True)
        out.append((torch.zeros(N, D).index_add_(0, idx, val), sparse))  # duplicates summed in order
    return out


@pytest.mark.parametrize("chunk_bytes", [None, 7 * 4 * 13])  # one chunk; chunks of 13 rows
def test_row_sparse_adagrad_equals_torch_adagrad_bit_for_bit(chunk_bytes, monkeypatch):
    monkeypatch.setattr(optim, "CHUNK_BYTES", chunk_bytes or optim.CHUNK_BYTES)
    N, D = 97, 7
    start = torch.randn(N, D)
    dense, sparse, mixed = (torch.nn.Parameter(start.clone()) for _ in range(3))
    ref, opt, opt_dense = (torch.optim.Adagrad([dense], lr=0.3), RowSparseAdagrad([sparse], lr=0.3),
                           RowSparseAdagrad([mixed], lr=0.3))
    for G, S in random_row_grads(N, D, 6):
        dense.grad, sparse.grad, mixed.grad = G.clone(), S, G.clone()
        ref.step(), opt.step(), opt_dense.step()
    assert torch.equal(dense, sparse) and torch.equal(dense, mixed)
    assert torch.equal(ref.state[dense]["sum"], opt.state[sparse]["sum"])
    # the state loads into torch's optimizer and back (same names and shapes)
    again = torch.optim.Adagrad([torch.nn.Parameter(sparse.detach().clone())], lr=0.3)
    again.load_state_dict(opt.state_dict())
    assert torch.equal(next(iter(again.state.values()))["sum"], ref.state[dense]["sum"])


def test_row_chunks_sum_duplicates_in_order():
    G, S = random_row_grads(50, 3, 1, seed=4)[0]
    parts = list(row_chunks(S, chunk_bytes=3 * 4 * 8))
    assert len(parts) > 2
    idx = torch.cat([p[0] for p in parts])
    val = torch.cat([p[1] for p in parts])
    ones = S._indices()[0].unique()
    assert torch.equal(idx, ones) and torch.equal(val, G[ones])
    seq = torch.zeros(50, 3)  # one row after the other, in the gradient's order
    for i, v in zip(S._indices()[0].tolist(), S._values()):
        seq[i] += v
    assert torch.equal(val, seq[ones])


def test_lazy_adam_is_adam_on_rows_touched_every_step_and_leaves_the_others():
    N, D = 40, 5
    start = torch.randn(N, D)
    a, b, c = (torch.nn.Parameter(start.clone()) for _ in range(3))
    adam, lazy, lazy_rows = torch.optim.Adam([a], lr=0.1), LazyAdam([b], lr=0.1), LazyAdam([c], lr=0.1)
    g = torch.Generator().manual_seed(1)
    for step in range(5):
        G = torch.randn(N, D, generator=g)
        a.grad, b.grad = G.clone(), G.to_sparse(sparse_dim=1)
        adam.step(), lazy.step()
        # lazy: only rows 0..9 get gradients after the first step
        rows = torch.arange(N) if step == 0 else torch.arange(10)
        c.grad = torch.sparse_coo_tensor(rows[None], G[rows], (N, D), check_invariants=True)
        before = c.detach().clone()
        lazy_rows.step()
        untouched = torch.ones(N, dtype=torch.bool)
        untouched[rows] = False
        assert torch.equal(c[untouched], before[untouched])  # untouched rows do not move (dense Adam would)
    assert torch.equal(a, b)  # every row touched every step: Adam exactly
    assert not torch.equal(a[10:], c[10:])


def test_make_optimizer_follows_the_mark():
    model = torch.nn.Linear(3, 2)
    # dense Adagrad on the CPU is RowSparseAdagrad too: torch.optim.Adagrad's bits (test above) without its temporaries
    assert type(make_optimizer("adagrad", model.parameters(), 0.1)) is RowSparseAdagrad
    assert type(make_optimizer("adam", model, 0.1)) is torch.optim.Adam
    mark_row_sparse(model.weight)
    assert type(make_optimizer("adagrad", model.parameters(), 0.1)) is RowSparseAdagrad
    assert type(make_optimizer("adam", model, 0.1)) is LazyAdam
    assert type(make_optimizer("adam", model, 0.1, sparse=False)) is torch.optim.Adam


def test_config_refuses_sparse_where_every_row_is_read(graph, tmp_path):
    with pytest.raises(ConfigError, match="regularization"):
        config(graph, tmp_path / "r", sparse=True, regularization=0.1)
    with pytest.raises(ConfigError, match="1-vs-all"):
        config(graph, tmp_path / "r", sparse=True, model="DistMult", loss="1vsall", emu=None, neg_label=None, sampler=None)
    auto = config(graph, tmp_path / "r")
    assert not use_sparse(auto, 30) and use_sparse(auto, optim.sparse_threshold(auto) + 1)
    assert not use_sparse(config(graph, tmp_path / "r", regularization=0.1), 10**9)
    assert use_sparse(config(graph, tmp_path / "r", sparse=True), 30)


CASES = {
    "TransE-emu": {},
    "ComplEx-emu": dict(model="ComplEx", double_entity_embedding=True, double_relation_embedding=True),
    "RotatE-sigmoid-adv": dict(model="RotatE", double_entity_embedding=True, loss="sigmoid", sampler="filtered",
                               adversarial=True, emu=None, neg_label=None),
    "DistMult-ce-filtered-mixup": dict(model="DistMult", sampler="filtered", mixup=True),
}


@pytest.mark.parametrize("use_kernel", [None, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("case", list(CASES))
def test_sparse_adagrad_training_is_bit_identical_to_dense(graph, tmp_path, case, use_kernel):
    """Same losses and the same parameters after several Adagrad steps, on the kernel and the PyTorch paths."""
    runs = []
    for sparse in (False, True):
        t = Trainer(config(graph, tmp_path / str(sparse), sparse=sparse, **CASES[case]))
        t.objective.use_kernel = use_kernel
        losses = [t.train_step()["loss"] for _ in range(6)]
        runs.append((losses, [p.detach().clone() for p in t.model.parameters()], t))
    (l0, p0, t0), (l1, p1, t1) = runs
    assert type(t0.optimizer) is RowSparseAdagrad and type(t1.optimizer) is RowSparseAdagrad
    assert not t0.model.entity_embedding.grad.is_sparse
    assert t1.model.entity_embedding.grad.is_sparse
    assert l0 == l1
    assert all(torch.equal(a, b) for a, b in zip(p0, p1))


def test_a_sparse_step_writes_only_the_rows_it_touched(tmp_path):
    wide = write_graph(tmp_path / "wide", n_ent=500, n_train=300)
    t = Trainer(config(wide, tmp_path / "s", sparse=True, batch_size=8, negative_sample_size=4))
    before = t.model.entity_embedding.detach().clone()
    t.train_step()
    touched = torch.zeros(before.shape[0], dtype=torch.bool)
    touched[t.model.entity_embedding.grad.coalesce().indices()[0]] = True
    after = t.model.entity_embedding.detach()
    assert touched.any() and not touched.all()
    assert torch.equal(after[~touched], before[~touched])
    assert not torch.equal(after[touched], before[touched])


def test_sparse_run_resumes_exactly_across_the_switch_to_lazy_adam(graph, tmp_path):
    """8 steps straight equal 4 steps + resume + 4 steps, with the switch to (lazy) Adam after step 3."""
    kw = dict(sparse=True, max_steps=8, warm_up_steps=3, save_checkpoint_steps=4)
    train(config(graph, tmp_path / "straight", **kw))
    train(config(graph, tmp_path / "split", **{**kw, "max_steps": 4}))
    train(config(graph, tmp_path / "split", **kw, init_checkpoint=str(tmp_path / "split")))
    a = np.load(tmp_path / "straight" / "entity_embedding.npy")
    b = np.load(tmp_path / "split" / "entity_embedding.npy")
    assert np.array_equal(a, b)
    state = torch.load(tmp_path / "split" / "checkpoint", weights_only=True)
    assert any("exp_avg" in s for s in state["optimizer_state_dict"]["state"].values())


def test_sparse_flag_with_regularization_is_a_cli_error(graph, tmp_path, capsys):
    from emukg.cli import main

    code = main(["train", "--dataset", str(graph), "--save-path", str(tmp_path / "x"), "--sparse", "--regularization", "0.1",
                 "--device", "cpu"])
    assert code == 2 and not (tmp_path / "x").exists()
    assert "--sparse" in capsys.readouterr().err


def test_unknown_optimizer_name_is_refused():
    with pytest.raises(ValueError, match="adagrad or adam"):
        make_optimizer("sgd", [torch.nn.Parameter(torch.zeros(2))], 0.1)
