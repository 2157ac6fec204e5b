"""Data-parallel training (emukg.parallel): sharded objective = one-process objective, and 2 gloo processes
spawned with torchrun against 1 process — losses, metrics, run folder, resume across world sizes.

Tolerance: P processes compute the same terms as one (this configuration has no EMU mask, the one documented
exception), summed in another order (float32), so losses, embeddings and metrics must agree to rtol 1e-4 after
a few steps.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from emukg.config import Config
from emukg.objectives import build_objective
from emukg.models import build_model
from emukg.models.base import model_options
from emukg.negatives import build_samplers
from emukg.training import train

from test_training import write_graph

REPO = Path(__file__).resolve().parents[1]
RTOL = 1e-4
SETTINGS = dict(model="TransE", hidden_dim=16, gamma=6.0, negative_sample_size=8, batch_size=33, loss="ce",
                sampler="uniform", adversarial=True, learning_rate=0.05, max_steps=4, warm_up_steps=3, valid_steps=4, log_steps=1,
                save_checkpoint_steps=2, device="cpu", progress=False, seed=5, sparse=True)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    return write_graph(tmp_path_factory.mktemp("ddp") / "g", n_ent=60, n_train=200)


def flags(**kw) -> list[str]:
    out = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        out += ([flag] if v is True else [f"--no-{k.replace('_', '-')}"] if v is False else [flag, str(v)])
    return out


def spawn(*argv, timeout=150):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    res = subprocess.run([sys.executable, *argv], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    return res


def training_losses(run: Path) -> list[float]:
    rows = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if r["split"] == "training"]


def layout(run: Path) -> set[str]:
    return {p.name for p in run.iterdir()}


# --- the sharded objective, in one process ---------------------------------------------------------------
@pytest.mark.parametrize("kw", [
    dict(loss="ce", sampler="uniform", adversarial=True),
    dict(loss="sigmoid", sampler="filtered", adversarial=True),
    dict(loss="ce", sampler="filtered", emu=0.4, neg_label=0.5, mixup=True),
    dict(loss="ce", sampler="uniform", emu=0.4, neg_label=0.5, ce_coef=0.2),
    dict(loss="ce", sampler="filtered", emu=0.4, neg_label=0.5, model="RotatE", double_entity_embedding=True),
    dict(loss="ce", sampler="uniform", emu=0.4, neg_label=0.5, model="HAKE"),
    dict(loss="ce", sampler="uniform", regularization=0.01),
    dict(loss="1vsall", model="DistMult"),
], ids=["ce-adv", "sigmoid-adv", "mixup", "emu", "emu-rotate", "emu-hake", "regularization", "1vsall"])
@pytest.mark.parametrize("B", [7, 1])  # B = 1: one rank's shard is empty
def test_shards_sum_to_the_one_process_loss_and_gradient(graph, kw, B):
    from emukg.data import load_dataset

    kg = load_dataset(str(graph))
    cfg = Config.from_dict({**SETTINGS, "dataset": str(graph), "save_path": "x", "sparse": None, **kw})
    torch.manual_seed(0)
    model = build_model(cfg.model, kg.num_entities, kg.num_relations, cfg.hidden_dim, cfg.gamma,
                        cfg.double_entity_embedding, cfg.double_relation_embedding, **model_options(cfg))
    positives, weights = kg.train[:B], kg.subsampling_weights()[:B]

    def run(shard):
        gen = torch.Generator().manual_seed(11)
        sampler, adv = build_samplers(cfg, kg, "cpu", gen)
        objective = build_objective(cfg, kg, sampler, adversarial_sampler=adv)
        objective.shard = shard
        model.zero_grad(set_to_none=True)
        loss, logs = objective(model, positives, "head", gen, weights)
        if loss.requires_grad:
            loss.backward()
        grads = [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
        return logs, grads, gen.get_state()

    one_logs, one_grads, one_state = run(None)
    parts = [run((r, 3)) for r in range(3)]
    for _, _, state in parts:  # every rank consumed the generator exactly as one process
        assert torch.equal(state, one_state)
    for key, value in one_logs.items():
        assert sum(p[0][key] for p in parts) == pytest.approx(value, rel=1e-5, abs=1e-7), key
    for i, g in enumerate(one_grads):
        torch.testing.assert_close(sum(p[1][i] for p in parts), g, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("use_kernel", [None, False])
def test_emu_mask_of_a_shard_is_its_rows_of_the_whole_mask(use_kernel):
    """Mutation.row0: scoring rows o.. of a batch with the step's mutation gives those rows' scores of the whole
    batch, on the fused kernel and on the PyTorch path (so sharded EMU is exact)."""
    from emukg.emu import Mutation
    from emukg.scoring import score_candidates

    torch.manual_seed(0)
    model = build_model("TransE", 40, 3, 24, 6.0)
    positives = torch.stack([torch.randint(0, 40, (9,)), torch.randint(0, 3, (9,)), torch.randint(0, 40, (9,))], 1)
    cand = torch.cat([positives[:, 2:], torch.randint(0, 40, (9, 6))], 1)
    mutation = Mutation.emu(0.4, torch.Generator().manual_seed(5))
    whole = score_candidates(model, positives, "tail", cand, mutation, use_kernel=use_kernel)
    part = Mutation("emu", seed=mutation.seed, p=mutation.p, row0=4)
    rows = score_candidates(model, positives[4:], "tail", cand[4:], part, use_kernel=use_kernel)
    torch.testing.assert_close(rows, whole[4:], rtol=0, atol=0)
    unshifted = score_candidates(model, positives[4:], "tail", cand[4:], Mutation("emu", seed=mutation.seed, p=0.4),
                                 use_kernel=use_kernel)
    assert not torch.equal(unshifted, whole[4:])  # the row offset matters


# --- 2 gloo processes against 1 ----------------------------------------------------------------------------
def test_torchrun_two_processes_train_like_one_and_resume_with_any_world_size(graph, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    kw = {**SETTINGS, "dataset": str(graph)}
    train(Config.from_dict({**kw, "save_path": str(one)}))
    spawn("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "emukg", "train",
          *flags(**{**kw, "save_path": str(two)}))
    # the same run folder, written once (rank 0), the same losses and metrics up to summation order
    assert layout(two) == layout(one)
    np.testing.assert_allclose(training_losses(two), training_losses(one), rtol=RTOL)
    r1, r2 = (json.loads((p / "results.json").read_text()) for p in (one, two))
    for split in ("valid", "test"):
        for key in ("MRR", "MR", "HITS@1", "HITS@10"):
            assert r2[split][key] == pytest.approx(r1[split][key], rel=RTOL), (split, key)
        assert r2[split]["num_queries"] == r1[split]["num_queries"]
    assert (two / "train.log").read_text().count("Training loss at step") == 4
    np.testing.assert_allclose(np.load(two / "entity_embedding.npy"), np.load(one / "entity_embedding.npy"), rtol=RTOL, atol=1e-6)

    # resume the 2-process run with 1 process, and the 1-process run with 2 (emukg train --nproc 2): both match
    # a 1-process run of 8 steps
    straight = tmp_path / "straight"
    train(Config.from_dict({**kw, "save_path": str(straight), "max_steps": 8}))
    train(Config.from_dict({**kw, "save_path": str(two), "init_checkpoint": str(two), "max_steps": 8}))
    spawn("-m", "emukg", "train", "--nproc", "2", "--resume", str(one), "--max-steps", "8")
    for run in (one, two):
        assert layout(run) == layout(straight)
        np.testing.assert_allclose(training_losses(run), training_losses(straight), rtol=RTOL)
        np.testing.assert_allclose(np.load(run / "entity_embedding.npy"), np.load(straight / "entity_embedding.npy"),
                                   rtol=RTOL, atol=1e-6)
    assert [r["step"] for r in json.loads((one / "config.json").read_text())["resumes"]] == [4]


def test_nproc_refuses_bad_settings_before_starting_processes(graph, tmp_path, capsys):
    from emukg.cli import main

    assert main(["train", "--nproc", "2", "--dataset", str(graph), "--save-path", str(tmp_path / "x"),
                 "--hidden-dim", "0"]) == 2
    assert "--hidden-dim" in capsys.readouterr().err and not (tmp_path / "x").exists()
    assert main(["train", "--nproc", "0", "--dataset", str(graph), "--save-path", str(tmp_path / "x")]) == 2
