"""Prediction by name: the top entity of a constructed model, --filter-known, unknown names with suggestions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emukg.config import Config
from emukg.data import load_folder
from emukg.errors import EmukgError
from emukg.models import build_model
from emukg.prediction import predict

REPO = Path(__file__).resolve().parents[1]


def constructed_model(kg):
    """TransE with e_i = i·u and r = u for 'knows': (e_i, knows, ?) scores e_{i+1} best, then e_i / e_{i+2}."""
    m = build_model("TransE", kg.num_entities, kg.num_relations, 4, 10.0)
    with torch.no_grad():
        u = torch.tensor([1.0, 0, 0, 0])
        m.entity_embedding.copy_(torch.arange(kg.num_entities, dtype=torch.float32)[:, None] * u)
        m.relation_embedding.zero_()
        m.relation_embedding[kg.relation_to_id["knows"]] = u
    return m


@pytest.fixture
def kg_model(tiny_dataset):
    kg = load_folder(tiny_dataset)
    return kg, constructed_model(kg)


def test_top_tail_and_head(kg_model):
    kg, m = kg_model
    out = predict(m, kg, head="bob", relation="knows", top_k=3)
    assert [n for n, _ in out] == ["carol", "bob", "dave"]  # distances 0, 1, 1 (ties keep id order)
    assert out[0][1] == pytest.approx(10.0) and out[1][1] == pytest.approx(9.0)
    heads = predict(m, kg, tail="carol", relation="knows", top_k=1)
    assert heads[0][0] == "bob"
    scores = [s for _, s in predict(m, kg, head="alice", relation="knows", top_k=8)]
    assert scores == sorted(scores, reverse=True) and len(scores) == 8


def test_filter_known(kg_model):
    kg, m = kg_model
    # (bob, knows, carol) is a training triple, (bob, knows, dave) a test triple: both known
    out = predict(m, kg, head="bob", relation="knows", top_k=8, filter_known=True)
    names = [n for n, _ in out]
    assert "carol" not in names and "dave" not in names
    assert names[0] == "bob" and len(names) == 6
    assert len(predict(m, kg, head="bob", relation="knows", top_k=100)) == 8


def test_unknown_names_suggest(kg_model):
    kg, m = kg_model
    with pytest.raises(EmukgError, match="did you mean 'carol'"):
        predict(m, kg, head="carl", relation="knows")
    with pytest.raises(EmukgError, match="did you mean 'likes'"):
        predict(m, kg, head="bob", relation="like")
    with pytest.raises(EmukgError, match="exactly one"):
        predict(m, kg, head="bob", tail="carol", relation="knows")
    with pytest.raises(EmukgError, match="top_k=0: must be a positive integer"):  # the Python parameter
        predict(m, kg, head="bob", relation="knows", top_k=0)


def test_errors_name_the_parameter_as_the_caller_spells_it(tmp_path, tiny_dataset, kg_model, capsys):
    """From Python the error names top_k (and head, relation); the command line prints the same error with its flags."""
    from emukg.cli import main
    from emukg.errors import ParamError

    kg, m = kg_model
    with pytest.raises(ParamError) as err:
        predict(m, kg, head="bob", relation="knows", top_k=0)
    assert str(err.value) == "top_k=0: must be a positive integer." and "--top-k" not in str(err.value)
    assert err.value.render("cli") == "--top-k 0: must be a positive integer."
    with pytest.raises(ParamError, match=r"^head='carl': not a known entity"):
        predict(m, kg, head="carl", relation="knows")
    with pytest.raises(ParamError, match=r"^relation: is required"):
        predict(m, kg, head="bob")
    with pytest.raises(ParamError, match=r"exactly one of head \(predict tails\) or tail \(predict heads\)"):
        predict(m, kg, relation="knows")
    run = make_run(tmp_path, tiny_dataset)
    assert main(["predict", str(run), "--head", "bob", "--relation", "knows", "--top-k", "0"]) == 2
    err_line = capsys.readouterr().err.strip()
    assert err_line == "emukg: error: --top-k 0: must be a positive integer."
    assert main(["predict", str(run), "--head", "carl", "--relation", "knows"]) == 2
    assert capsys.readouterr().err.startswith("emukg: error: --head carl: not a known entity")
    p = run_cli("predict", run, "--head", "bob", "--relation", "knows", "--top-k", "0")
    assert p.returncode == 2 and p.stderr.strip() == "emukg: error: --top-k 0: must be a positive integer."


def make_run(tmp_path: Path, dataset: Path) -> Path:
    run = tmp_path / "run"
    run.mkdir()
    cfg = Config(dataset=str(dataset), model="TransE", hidden_dim=4, gamma=10.0, save_path=str(run))
    (run / "config.json").write_text(json.dumps(cfg.to_dict()))
    m = constructed_model(load_folder(dataset))
    torch.save({"model_state_dict": m.state_dict(), "step": 0}, run / "checkpoint")
    return run


def run_cli(*args):
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run([sys.executable, "-m", "emukg", *map(str, args)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_predict_cli(tmp_path, tiny_dataset, capsys):
    from emukg.cli import main

    run = make_run(tmp_path, tiny_dataset)
    assert main(["predict", str(run), "--head", "bob", "--relation", "knows", "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2].split()[:2] == ["1", "carol"] and lines[2].endswith("*")  # known triple marked
    assert len(lines) == 5
    assert main(["predict", str(run), "--head", "bob", "--relation", "knows", "--filter-known"]) == 0
    out = capsys.readouterr().out
    assert "carol" not in out and out.strip().splitlines()[2].split()[:2] == ["1", "bob"]
    assert main(["predict", str(run), "--tail", "carol", "--relation", "knows", "--top-k", "1"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[2].split()[1] == "bob"
    assert main(["predict", str(run), "--relation", "knows"]) == 2
    assert "exactly one" in capsys.readouterr().err
    # the real command line: an unknown name is one error line with suggestions, exit status 2
    p = run_cli("predict", run, "--head", "carl", "--relation", "knows")
    assert p.returncode == 2
    assert p.stderr.startswith("emukg: error:") and "did you mean 'carol'" in p.stderr
    assert "Traceback" not in p.stderr
