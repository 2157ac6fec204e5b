"""The device ranker (emukg.evaluation.device, backend='device'; the default off the CPU) run here on the CPU:
its ranks equal the brute force and the dense ranker exactly, for every model, filtered or not, with entity
slices, many chunks and NaN scores; on CUDA (skipped here) it equals the CPU evaluation and does not sync per block."""

from __future__ import annotations

import pytest
import torch

from emukg.evaluation import compute_ranks, evaluate
from emukg.evaluation.plan import plan_memory

# EMBEDDING_MODELS: NBFNet scores all tails from its own message passing (tests/test_nbfnet.py ranks it)
from test_evaluation import EMBEDDING_MODELS, brute_force_ranks, make_model, random_graph


@pytest.mark.parametrize("name", EMBEDDING_MODELS)
@pytest.mark.parametrize("filtered", [True, False])
def test_device_ranks_equal_brute_force_and_dense(name, filtered):
    kg = random_graph()
    model = make_model(name, kg)
    opt, pes = brute_force_ranks(model, kg, "test", filtered)
    rk = compute_ranks(model, kg, "test", filtered=filtered, backend="device")
    assert rk.backend == "device"
    assert torch.equal(rk.optimistic, opt) and torch.equal(rk.pessimistic, pes)
    assert (pes > opt).any()  # exact ties are in the data


@pytest.mark.parametrize("name", EMBEDDING_MODELS)
def test_device_equals_dense_with_slices_and_chunks(name):
    kg = random_graph(n_ent=200, n_rel=4, n_train=1500, n_test=60, seed=5)
    model = make_model(name, kg, quantize=name not in ("RotatE", "pRotatE", "HAKE"))
    budget = 1.0
    while plan_memory(model, kg.num_entities, budget, backend="torch").entity_slice > kg.num_entities // 3:
        budget /= 1.5
    for memory_mb in (512, budget):
        dense = compute_ranks(model, kg, "test", backend="torch", memory_mb=memory_mb)
        dev = compute_ranks(model, kg, "test", backend="device", memory_mb=memory_mb)
        assert torch.equal(dense.optimistic, dev.optimistic) and torch.equal(dense.pessimistic, dev.pessimistic)
    assert dev.memory.entity_slice < kg.num_entities and dev.memory.chunk < kg.test.shape[0]


def test_device_nan_scores_rank_worst():
    kg = random_graph(seed=2)
    model = make_model("TransE", kg, duplicates=())
    with torch.no_grad():
        model.entity_embedding[4, 0] = float("nan")
    triples = kg.test.clone()
    triples[0] = torch.tensor([1, 0, 4])
    kg.splits["test"] = triples
    kg._filter = None
    opt, pes = brute_force_ranks(model, kg, "test")
    with pytest.warns(RuntimeWarning, match="NaN"):
        rk = compute_ranks(model, kg, "test", backend="device")
    assert rk.nan_scores > 0 and torch.equal(rk.optimistic, opt) and torch.equal(rk.pessimistic, pes)


def test_evaluate_reports_the_device_backend():
    kg = random_graph(seed=1)
    model = make_model("DistMult", kg)
    a, b = evaluate(model, kg, "test", backend="device"), evaluate(model, kg, "test", backend="torch")
    assert a["backend"] == "device" and a["MRR"] == b["MRR"] and a["HITS@10"] == b["HITS@10"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("name", EMBEDDING_MODELS)
def test_cuda_ranks_equal_cpu(name):
    kg = random_graph(n_ent=300, n_rel=4, n_train=2000, n_test=100, seed=6)
    model = make_model(name, kg)  # quantized: exact arithmetic, so the devices agree exactly (RotatE & co: near)
    cpu = compute_ranks(model, kg, "test", backend="torch")
    gpu = compute_ranks(model.cuda(), kg, "test")  # auto on CUDA: the device ranker
    assert gpu.backend == "device"
    same = (cpu.optimistic == gpu.optimistic).double().mean()
    assert same == 1.0 if name in ("TransE", "DistMult", "ComplEx", "TransD") else same > 0.97
