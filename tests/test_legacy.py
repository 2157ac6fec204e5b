"""The reference mode: codes/run.py / emukg legacy accept every flag of the reference's parser with its type and
default, and default to the reference's behaviour (issue 10 §1)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from emukg.config import Config
from emukg.errors import EmukgError
from emukg.commands.legacy import build_legacy_parser, legacy_to_config, run_legacy

from test_training import write_graph

# The reference's parser (EMU-KG codes/run.py), flag by flag: option strings, type, default.
# (type None = store_true)
REFERENCE_FLAGS = [
    (["--cuda"], None, False), (["--do_train"], None, False), (["--do_valid"], None, False), (["--do_test"], None, False),
    (["--evaluate_train"], None, False), (["--data_path"], str, None), (["--model"], str, "TransE"),
    (["-de", "--double_entity_embedding"], None, False), (["-dr", "--double_relation_embedding"], None, False),
    (["-n", "--negative_sample_size"], int, 128), (["-d", "--hidden_dim"], int, 500), (["-g", "--gamma"], float, 12.0),
    (["-adv", "--negative_adversarial_sampling"], None, False), (["-a", "--adversarial_temperature"], float, 1.0),
    (["-khop", "--negative_k_hop_sampling"], int, 0), (["-nrw", "--negative_n_random_walks"], int, 0),
    (["-b", "--batch_size"], int, 1024), (["-r", "--regularization"], float, 0.0), (["--test_batch_size"], int, 4),
    (["--uni_weight"], None, False), (["-lr", "--learning_rate"], float, 0.0001), (["-cpu", "--cpu_num"], int, 10),
    (["-init", "--init_checkpoint"], str, None), (["-save", "--save_path"], str, None), (["--max_steps"], int, 100000),
    (["--warm_up_steps"], int, None), (["--save_checkpoint_steps"], int, 10000), (["--valid_steps"], int, 10000),
    (["--log_steps"], int, 100), (["--test_log_steps"], int, 1000), (["--nentity"], int, 0), (["--nrelation"], int, 0),
    (["-if_CE"], int, 0), (["-if_EMU"], float, 0.0), (["-if_Mixup"], float, 0.0), (["-if_OnlyLS"], float, 0.0),
    (["-CE_coef"], float, 0.0), (["-neg_label"], float, None), (["-if_Adagrad"], int, 0), (["-if_adv_neg"], int, None),
    (["-best_model_name"], str, None), (["-if_Optuna"], int, 0),
]


def test_every_reference_flag_is_accepted_with_its_type_and_default():
    parser = build_legacy_parser()
    actions = {s: a for a in parser._actions for s in a.option_strings}
    defaults = parser.parse_args([])
    for strings, kind, default in REFERENCE_FLAGS:
        for s in strings:
            assert s in actions, f"{s} is not accepted"
        action = actions[strings[0]]
        assert all(actions[s] is action for s in strings), f"{strings} are not one flag"
        if kind is None:
            assert isinstance(action, argparse._StoreTrueAction), strings
        else:
            assert action.type is kind, (strings, action.type)
        assert getattr(defaults, action.dest) == default, (strings, getattr(defaults, action.dest))
    assert len(REFERENCE_FLAGS) == 42


def parse(*argv) -> Config:
    return legacy_to_config(build_legacy_parser().parse_args(["--do_train", "--data_path", "x", "-save", "y", *argv]))


def test_reference_defaults_and_types():
    cfg = parse()
    assert cfg.ce_coef == 0.0 and cfg.walk_mode == "chained" and cfg.reference_steps
    assert cfg.optimizer == "adagrad" and cfg.warm_up_steps is None
    assert parse("--warm_up_steps", "0").effective_warm_up_steps == 50000  # 0 means unset, as the reference
    assert parse("-if_Adagrad", "2").optimizer == "adam"  # any non-zero value selects Adam
    cfg = parse("-if_CE", "1", "-if_EMU", "0.39", "-neg_label", "0.53", "-if_Mixup", "1.0")
    assert cfg.mixup and cfg.emu == 0.39
    assert parse("-if_CE", "1", "-if_EMU", "0.39", "-neg_label", "0.53", "-if_OnlyLS", "0.5").only_ls
    cfg = parse("--negative_k_hop_sampling", "2", "--negative_n_random_walks", "50")
    assert (cfg.sampler, cfg.khop, cfg.num_random_walks) == ("sans", 2, 50)
    assert parse("-if_adv_neg", "0").fixed_tail_negatives  # the reference tests "is not None"
    assert not parse().fixed_tail_negatives


@pytest.mark.parametrize("argv, match", [
    (["-if_CE", "5"], "-if_CE 5"),
    (["-if_CE", "1", "-if_EMU", "1.5", "-neg_label", "0.5"], "-if_EMU 1.5"),
    (["-if_CE", "1", "-if_EMU", "0.3"], "-neg_label"),
    (["-lr", "nan"], "-lr nan"),
    (["-a", "-1"], "-a -1"),
    (["-CE_coef", "-0.5"], "-CE_coef -0.5"),
])
def test_reference_flag_errors_name_the_reference_flag(argv, match, capsys):
    assert run_legacy(["--do_train", "--data_path", "x", "-save", "y", *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def legacy_run(graph: Path, save: Path, *extra) -> list[str]:
    return ["--do_train", "--do_valid", "--do_test", "--data_path", str(graph), "--model", "TransE", "-n", "8", "-b", "32",
            "-d", "8", "-g", "6.0", "-lr", "0.05", "--max_steps", "6", "--valid_steps", "3", "--log_steps", "3",
            "--save_checkpoint_steps", "3", "-if_CE", "1", "-save", str(save), "--no_progress", *extra]


def test_init_restores_the_architecture_and_eval_only_changes_nothing(tmp_path, capsys):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    assert run_legacy(legacy_run(graph, run, "-d", "12", "-g", "9.0")) == 0
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "test.log"}
    # -init without repeating --model/-d/-g: the reference restores them from the run's config.json
    assert run_legacy(["--do_test", "-init", str(run), "--data_path", str(graph)]) == 0
    out = capsys.readouterr().out
    assert "test: MRR" in out
    assert run_legacy(["--do_test", "-init", str(run), "-save", str(run)]) == 0
    # -save RUN without -init and without --do_train evaluates the saved model and deletes nothing
    assert run_legacy(["--do_test", "--data_path", str(graph), "-save", str(run)]) == 0
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != "test.log"}
    assert after == files, "an evaluation-only run changed the run folder"
    assert "Test MRR at step" in (run / "test.log").read_text()
    results = json.loads(files["results.json"])
    assert f"{results['test']['MRR']:.4f}" in out  # the same model was evaluated


def test_existing_run_is_kept_unless_overwrite_or_init(tmp_path, capsys):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    assert run_legacy(legacy_run(graph, run)) == 0
    before = (run / "best_model").read_bytes()
    assert run_legacy(legacy_run(graph, run)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "best_model").read_bytes() == before
    # -init continues the run in place (the reference's way to resume), more steps
    assert run_legacy(legacy_run(graph, run, "-init", str(run), "--max_steps", "9")) == 0
    ckpt = torch.load(run / "checkpoint", weights_only=True)
    assert ckpt["step"] == 9


def test_reference_step_numbering(tmp_path):
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    assert run_legacy(legacy_run(graph, run, "--max_steps", "7", "--warm_up_steps", "4")) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    valid_steps = [x["step"] for x in lines if x["split"] == "valid"]
    # after steps 1, 4, 7 (indices 0, 3, 6); then the best model's final evaluation labelled 6
    assert valid_steps[:3] == [0, 3, 6] and all(s == 6 for s in valid_steps[3:])
    log = (run / "train.log").read_text()
    # the reference switches after step index warm_up_steps = 4, i.e. after the fifth step
    assert "Change learning_rate to 0.005000 at step 4" in log


def test_fixed_tail_negatives_are_one_table(tmp_path):
    from emukg.data import load_dataset
    from emukg.negatives import build_samplers

    graph = write_graph(tmp_path / "g")
    kg = load_dataset(str(graph))
    cfg = parse("-if_adv_neg", "1", "-n", "5").replace(dataset=str(graph))
    g = torch.Generator().manual_seed(0)
    sampler, adv = build_samplers(cfg, kg, "cpu", g)
    pos = kg.train[:40]
    a, b = sampler.sample(pos, "tail"), sampler.sample(pos, "tail")
    assert torch.equal(a, b) and a.shape == (40, 5)  # fixed per triple
    assert not torch.equal(sampler.sample(pos, "head"), sampler.sample(pos, "head"))  # head side: fresh filtered draws
    # unfiltered: over many triples some table entry forms a training triple (the reference never filters it)
    full = sampler.sample(kg.train, "tail")
    h, r = kg.train[:, 0:1].expand_as(full), kg.train[:, 1:2].expand_as(full)
    assert bool(kg.train_filter.contains(h, r, full).any())


def test_adv_term_uses_data_side_negatives_in_ce_modes():
    cfg = parse("-if_CE", "1", "-adv", "-khop", "2")
    assert cfg.samplers_used() == {"loss": "uniform", "adversarial": "sans"}
    cfg = parse("-if_CE", "2", "-adv")
    assert cfg.samplers_used() == {"loss": "filtered", "adversarial": "filtered"}
    cfg = parse("-if_CE", "3", "--model", "DistMult", "-adv")
    assert cfg.loss == "1vsall" and cfg.samplers_used()["adversarial"] == "filtered"


def test_adv_term_is_added_with_one_vs_all(tmp_path):
    """-if_CE 3 -adv: the reference adds the self-adversarial term over its data loader's negatives."""
    from types import SimpleNamespace

    from emukg.objectives import build_objective
    from emukg.models import build_model

    class Fixed:
        def sample(self, positives, side):
            return torch.tensor([[1, 2], [3, 4]])

    N = 6
    model = build_model("DistMult", N, 2, 4, 6.0)
    pos = torch.tensor([[0, 0, 5], [2, 1, 4]])
    plain = Config(model="DistMult", loss="1vsall")
    adv = Config(model="DistMult", loss="1vsall", adversarial=True, uni_weight=True)
    kg = SimpleNamespace(num_entities=N)
    g = torch.Generator().manual_seed(0)
    base, _ = build_objective(plain, kg, None)(model, pos, "tail", g)
    loss, logs = build_objective(adv, kg, None, adversarial_sampler=Fixed())(model, pos, "tail", g)
    with torch.no_grad():
        s = torch.stack([model.score_ids(pos[:, 0:1], pos[:, 1:2], torch.tensor([[1, 2], [3, 4]]))])[0]
        w = torch.softmax(s, 1)
        term = -(w * torch.nn.functional.logsigmoid(-s)).sum(1).mean()
    assert logs["negative_sample_loss"] == pytest.approx(float(term), rel=1e-5)
    assert float(loss.detach()) == pytest.approx(float(base.detach()) + float(term), rel=1e-5)


def test_subsampling_weights_count_like_the_reference():
    """The reference's counter starts at 4 at a pair's first occurrence: cnt = occurrences + 3."""
    from emukg.data.graph import KnowledgeGraph


    triples = torch.tensor([[0, 0, 1], [0, 0, 2], [3, 1, 1]])
    kg = load_tiny(triples)
    w = kg.subsampling_weights()
    # (0,0) occurs twice -> 5; tails: (1, r0) once -> 4, (2, r0) once -> 4, (1, r1) once -> 4; (3, 1) once -> 4
    expected = [1 / math.sqrt(5 + 4), 1 / math.sqrt(5 + 4), 1 / math.sqrt(4 + 4)]
    assert w.tolist() == pytest.approx(expected)
    assert isinstance(kg, KnowledgeGraph)


def load_tiny(triples):
    import tempfile

    from emukg.data import load_dataset

    folder = Path(tempfile.mkdtemp())
    names = [f"e{i}" for i in range(4)]
    for split, rows in (("train", triples), ("valid", triples[:1]), ("test", triples[:1])):
        (folder / f"{split}.txt").write_text("".join(f"{names[h]}\tr{r}\t{names[t]}\n" for h, r, t in rows.tolist()))
    (folder / "entities.dict").write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(names)))
    (folder / "relations.dict").write_text("0\tr0\n1\tr1\n")
    return load_dataset(str(folder))


def test_if_optuna_searches_the_emu_settings(tmp_path, capsys):
    pytest.importorskip("optuna")
    graph = write_graph(tmp_path / "g")
    run = tmp_path / "run"
    argv = legacy_run(graph, run, "--max_steps", "4", "--valid_steps", "2", "-if_Optuna", "1", "--n_trials", "2")
    assert run_legacy(argv) == 0
    out = capsys.readouterr().out
    assert "best valid MRR" in out
    rows = (run / "optuna" / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and "emu" in rows[0] and "neg_label" in rows[0] and "ce_coef" in rows[0]
    assert run_legacy(legacy_run(graph, tmp_path / "r2", "-if_CE", "0", "-if_Optuna", "1")) == 2
    assert "-if_CE 1" in capsys.readouterr().err
