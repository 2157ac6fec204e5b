"""The Python API (emukg.train / emukg.load / Run) and emukg export: round trips, validation through the API,
no global state changed behind the caller."""

from __future__ import annotations

import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

import emukg
from emukg.cli import main
from emukg.errors import EmukgError

from test_training import write_graph

SETTINGS = dict(model="TransE", hidden_dim=8, gamma=6.0, negative_sample_size=8, batch_size=32, loss="ce", sampler="uniform",
                learning_rate=0.05, max_steps=6, valid_steps=3, log_steps=3, device="cpu", threads=1)


def test_import_emukg_does_not_import_torch():
    code = "import sys, emukg; assert 'torch' not in sys.modules; emukg.Config; print('ok')"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "ok"


def test_train_evaluate_predict_load_round_trip(tmp_path):
    graph = write_graph(tmp_path / "g")
    threads = torch.get_num_threads()
    handlers = list(logging.getLogger().handlers)
    state = torch.random.get_rng_state()
    run = emukg.train(dataset=str(graph), save_path=str(tmp_path / "run"), seed=3, **SETTINGS)
    # no global state changed behind the caller
    assert torch.get_num_threads() == threads and logging.getLogger().handlers == handlers
    assert torch.equal(torch.random.get_rng_state(), state)
    assert run.metrics["test"]["MRR"] == pytest.approx(run.evaluate("test")["MRR"])
    rows = run.predict(head="e1", relation="r0", top_k=5)
    assert len(rows) == 5 and rows == sorted(rows, key=lambda r: -r.score)
    assert all(run.kg.entities[r.id] == r.name for r in rows)
    known = {int(t) for h, r, t in run.kg.all_triples.tolist() if h == 1 and r == 0}
    assert all(r.known == (r.id in known) for r in rows)
    assert not any(r.known for r in run.predict(head="e1", relation="r0", top_k=30, filter_known=True))
    again = emukg.load(run.run_dir)
    assert torch.equal(again.model.entity_embedding, run.model.entity_embedding)
    emb = again.embeddings()
    assert emb["entity"].shape == (30, 8) and emb["entity_names"][:2] == ["e0", "e1"]
    last = emukg.load(run.run_dir, checkpoint="last")
    assert np.array_equal(last.embeddings()["entity"], np.load(run.run_dir / "entity_embedding.npy"))


def test_settings_are_validated_by_the_config(tmp_path):
    graph = write_graph(tmp_path / "g")
    with pytest.raises(EmukgError, match=r"learning_rate=nan: must be a finite number"):
        emukg.train(dataset=str(graph), save_path=str(tmp_path / "run"), **{**SETTINGS, "learning_rate": float("nan")})
    with pytest.raises(EmukgError, match="unknown setting 'hiden_dim'"):
        emukg.train(dataset=str(graph), hiden_dim=3)
    assert not (tmp_path / "run").exists()


def test_default_run_folder_under_runs(tmp_path, monkeypatch, capsys):
    graph = write_graph(tmp_path / "g")
    monkeypatch.chdir(tmp_path)
    run = emukg.train(dataset=str(graph), config=emukg.Config(**SETTINGS), max_steps=3)
    assert run.run_dir.parent.name == "runs" and (tmp_path / run.run_dir / "checkpoint").is_file()
    assert str(run.run_dir) in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["npy", "tsv", "word2vec"])
def test_export_round_trips(tmp_path, fmt):
    graph = write_graph(tmp_path / "g")
    run = emukg.train(dataset=str(graph), save_path=str(tmp_path / "run"), **SETTINGS)
    out = tmp_path / "out"
    assert main(["export", str(run.run_dir), "--format", fmt, "--out", str(out)]) == 0
    emb = run.embeddings()
    for kind, plural in (("entity", "entities"), ("relation", "relations")):
        if fmt == "npy":
            vectors = np.load(out / f"{kind}_embedding.npy")
            names = (out / f"{plural}.tsv").read_text().splitlines()
        elif fmt == "tsv":
            vectors = np.loadtxt(out / f"{kind}_vectors.tsv", delimiter="\t", dtype=np.float32, ndmin=2)
            names = (out / f"{kind}_metadata.tsv").read_text().splitlines()
        else:
            lines = (out / f"{plural}.w2v.txt").read_text().splitlines()
            assert lines[0] == f"{len(emb[kind])} {emb[kind].shape[1]}"
            names = [ln.split(" ")[0] for ln in lines[1:]]
            vectors = np.array([[float(v) for v in ln.split(" ")[1:]] for ln in lines[1:]], dtype=np.float32)
        assert names == emb[f"{kind}_names"]
        np.testing.assert_array_equal(vectors, emb[kind])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_export_refuses_a_file_as_out_folder(tmp_path, capsys):
    graph = write_graph(tmp_path / "g")
    run = emukg.train(dataset=str(graph), save_path=str(tmp_path / "run"), **SETTINGS)
    (tmp_path / "taken").write_text("x")
    assert main(["export", str(run.run_dir), "--out", str(tmp_path / "taken")]) == 2
    assert "--out" in capsys.readouterr().err


def test_train_from_a_yaml_file_with_overrides_and_tie_policies(tmp_path):
    graph = write_graph(tmp_path / "g")
    yaml_file = tmp_path / "base.yaml"
    yaml_file.write_text("".join(f"{k}: {v}\n" for k, v in {**SETTINGS, "max_steps": 4}.items()))
    run = emukg.train(config=str(yaml_file), dataset=str(graph), save_path=str(tmp_path / "run"), hidden_dim=6)
    assert run.config.hidden_dim == 6 and run.config.max_steps == 4 and run.embeddings()["entity"].shape == (30, 6)
    opt, pes = (run.evaluate("valid", tie_policy=p)["MRR"] for p in ("optimistic", "pessimistic"))
    assert pes <= run.evaluate("valid")["MRR"] <= opt


def test_export_errors_name_the_parameter(tmp_path):
    """export_embeddings names its parameter fmt; the command line's flag for it is --format."""
    from emukg.errors import ParamError
    from emukg.exports import export_embeddings

    emb = {"entity": np.zeros((2, 3)), "relation": np.zeros((1, 3)), "entity_names": ["a", "b"], "relation_names": ["r"]}
    with pytest.raises(ParamError) as err:
        export_embeddings(emb, tmp_path / "out", "tvs")
    assert str(err.value) == "fmt='tvs': unknown export format; did you mean tsv? choose npy, tsv or word2vec."
    assert err.value.render("cli").startswith("--format tvs: unknown export format; did you mean tsv?")
    assert [p.name for p in export_embeddings(emb, tmp_path / "out", "TSV")][0] == "entity_vectors.tsv"  # any case
