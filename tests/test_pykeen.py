"""emukg.pykeen: EMU, SANS and emukg's evaluator inside PyKEEN (1.11.x), checked against PyKEEN and emukg themselves.

* ``pipeline(training_loop="emu")`` trains seven PyKEEN models; same seed, same losses.
* The EMU loss inside PyKEEN equals emukg's own :class:`~emukg.objectives.Objective` (loss ``ce`` + EMU, its hash
  mask) on the same embeddings, negatives and generator state, to 1e-6 — and so do the gradients.
* The mask covers every component of a tuple representation (TransD's (e, eₚ)) exactly as emukg's row mask.
* ``SANSNegativeSampler`` draws what emukg's SANS sampler draws for the same seed, and runs in a pipeline.
* ``emukg.pykeen.evaluate`` equals PyKEEN's ``RankBasedEvaluator`` on every metric (to 1e-6), for converted models
  and for models scored blockwise by PyKEEN.
* ``emukg import-pykeen`` makes a run folder that ``emukg evaluate / predict / export`` read, with PyKEEN's ranks.
* Without PyKEEN, ``import emukg.pykeen`` is one sentence naming the extra.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SKIP = "PyKEEN is not installed (pip install -c constraints/cpu-torch.txt -e \".[pykeen]\"); the bridge's tests need it"


@pytest.fixture(scope="module")
def ep():
    """emukg.pykeen, or skip (with the reason) when PyKEEN is absent."""
    try:
        import pykeen  # noqa: F401
    except ImportError:
        pytest.skip(SKIP)
    import emukg.pykeen as module

    logging.getLogger("pykeen").setLevel(logging.ERROR)
    return module


def labelled(num_entities: int, num_relations: int, num_triples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = {(f"e{rng.integers(num_entities)}", f"r{rng.integers(num_relations)}", f"e{rng.integers(num_entities)}")
            for _ in range(num_triples)}
    return np.array(sorted(rows), dtype=str)


@pytest.fixture(scope="module")
def tiny(ep):
    """A few dozen triples (12 entities, 3 relations), split 80/20: (train, test) triples factories."""
    from pykeen.triples import TriplesFactory

    tf = TriplesFactory.from_labeled_triples(labelled(12, 3, 70, seed=0))
    return tf.split([0.8, 0.2], random_state=0)


@pytest.fixture(scope="module")
def small(ep):
    """40 entities, 4 relations, ≈ 300 triples, split train / valid / test (for the evaluation tests)."""
    from pykeen.triples import TriplesFactory

    tf = TriplesFactory.from_labeled_triples(labelled(40, 4, 320, seed=1))
    return tf.split([0.7, 0.15, 0.15], random_state=0)


def run_pipeline(train, test, model, *, seed=1, loop_kwargs=None, sampler=None, sampler_kwargs=None, epochs=2,
                 model_kwargs=None):
    from pykeen.pipeline import pipeline

    return pipeline(training=train, testing=test, model=model, model_kwargs=dict(embedding_dim=8, **(model_kwargs or {})),
                    training_loop="emu", training_loop_kwargs=dict(emu=0.4, neg_label=0.5, ce_coef=0.1, **(loop_kwargs or {})),
                    negative_sampler=sampler, negative_sampler_kwargs=dict(num_negs_per_pos=4, **(sampler_kwargs or {})),
                    training_kwargs=dict(num_epochs=epochs, batch_size=16, use_tqdm=False), random_seed=seed,
                    evaluator="emukg", evaluation_kwargs=dict(use_tqdm=False))


# --- training ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("model", ["TransE", "DistMult", "ComplEx", "RotatE", "TransD", "PairRE", "HolE"])
def test_pipeline_with_the_emu_loop(ep, tiny, model):
    train, test = tiny
    torch.manual_seed(0)
    result = run_pipeline(train, test, model)
    assert isinstance(result.training_loop, ep.EMUTrainingLoop)
    assert len(result.losses) == 2 and all(math.isfinite(x) and x > 0 for x in result.losses)
    assert 0 < result.metric_results.get_metric("both.realistic.inverse_harmonic_mean_rank") <= 1


def test_same_seed_same_run_other_mask_seed_other_run(ep, tiny):
    train, test = tiny
    a = run_pipeline(train, test, "TransE", seed=3).losses
    b = run_pipeline(train, test, "TransE", seed=3).losses
    c = run_pipeline(train, test, "TransE", seed=3, loop_kwargs=dict(seed=12345)).losses
    assert a == b
    assert a != c


def test_ablations_and_pykeen_base_loss_train(ep, tiny):
    train, test = tiny
    for kwargs in (dict(mixup=True), dict(only_ls=True), dict(base_loss="pykeen")):
        losses = run_pipeline(train, test, "DistMult", loop_kwargs=kwargs).losses
        assert all(math.isfinite(x) for x in losses), kwargs


def test_filtered_negatives_keep_the_layout(ep, tiny):
    """A PyKEEN filterer drops negatives that are true triples; the loop masks them out instead of flattening."""
    train, test = tiny
    result = run_pipeline(train, test, "TransE", sampler_kwargs=dict(filtered=True))
    assert all(math.isfinite(x) for x in result.losses)


def test_bad_settings_are_one_sentence(ep):
    from emukg.errors import ParamError

    with pytest.raises(ParamError, match=r"^emu=1\.5: must be in \[0, 1\]\.$"):
        ep.EMUSettings(emu=1.5).checked()
    with pytest.raises(ParamError, match="choose one"):
        ep.EMUSettings(mixup=True, only_ls=True).checked()
    with pytest.raises(ParamError, match="base_loss"):
        ep.EMUSettings(base_loss="margin").checked()


# --- the loss equals emukg's ---------------------------------------------------------------------------------------
class FixedNegatives:
    """An emukg sampler stub that returns given negatives (B, n) entity ids."""

    def __init__(self, negatives):
        self.negatives = negatives

    def sample(self, positives, side):
        return self.negatives


def emukg_objective(settings, num_entities):
    from emukg.config import Config
    from emukg.objectives import build_objective

    cfg = Config(loss="ce", sampler="filtered", emu=None if settings.only_ls else settings.emu,
                 neg_label=settings.neg_label, ce_coef=settings.ce_coef, mixup=settings.mixup,
                 only_ls=settings.only_ls)
    if settings.only_ls or settings.mixup:
        cfg.emu = 0.5  # emukg runs its ablations as EMU variants (the mask is then unused)
    return cfg, lambda negs: build_objective(cfg, SimpleNamespace(num_entities=num_entities), FixedNegatives(negs))


def emukg_model_like(ep, model):
    conv = ep.to_emukg_model(model)
    assert conv is not None, ep.why_not(model)
    m = conv.model.train()
    for p in m.parameters():
        p.requires_grad_(True)
    return m


def rows_as_emukg(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.real, x.imag], dim=-1) if x.is_complex() else x


@pytest.mark.parametrize("name,side,variant", [
    ("TransE", "tail", {}), ("TransE", "head", {}), ("DistMult", "tail", {}), ("ComplEx", "head", {}),
    ("ComplEx", "tail", dict(mixup=True)), ("TransE", "tail", dict(only_ls=True)),
])
def test_emu_loss_equals_emukg_loss(ep, small, name, side, variant):
    from pykeen.models import model_resolver

    train = small[0]
    torch.manual_seed(5)
    model = model_resolver.make(name, triples_factory=train, embedding_dim=6)
    N = train.num_entities
    B, n = 10, 7
    g = torch.Generator().manual_seed(11)
    positives = train.mapped_triples[torch.randperm(train.num_triples, generator=g)[:B]].long()
    neg_ids = torch.randint(0, N, (B, n), generator=g)
    negatives = positives.unsqueeze(1).repeat(1, n, 1)
    negatives[..., 2 if side == "tail" else 0] = neg_ids
    settings = ep.EMUSettings(emu=0.37, neg_label=0.53, ce_coef=0.11, **variant).checked()

    ours = ep.emu_loss(model, positives, negatives, generator=torch.Generator().manual_seed(99), settings=settings)
    ours.backward()

    emukg_model = emukg_model_like(ep, model)
    _, build = emukg_objective(settings, N)
    theirs, logs = build(neg_ids)(emukg_model, positives, side, torch.Generator().manual_seed(99))
    theirs.backward()
    assert abs(ours.item() - theirs.item()) < 1e-6, (ours.item(), theirs.item())

    # the gradients agree as well (PyKEEN's complex tables as emukg's [Re; Im] rows)
    rep = model.entity_representations[0]
    grad = rep._embeddings.weight.grad  # PyKEEN stores a complex table as interleaved (re, im) pairs
    ge = rows_as_emukg(torch.view_as_complex(grad.view(N, -1, 2)) if rep.is_complex else grad)
    assert torch.allclose(ge, emukg_model.entity_embedding.grad, atol=1e-6)


def test_the_mask_covers_every_component_of_a_tuple(ep, small):
    """TransD's entity representation (e, eₚ) is mutated as emukg's TransD row [e, eₚ]: one hash mask over it."""
    from pykeen.models import TransD

    from emukg.emu import Mutation, hash_mask, mutate

    train = small[0]
    torch.manual_seed(0)
    model = TransD(triples_factory=train, embedding_dim=5, relation_dim=3)
    B, n = 4, 6
    positives = train.mapped_triples[:B].long()
    negatives = positives.unsqueeze(1).repeat(1, n, 1)
    negatives[..., 2] = torch.randint(0, train.num_entities, (B, n))
    X = torch.cat([positives.unsqueeze(1), negatives], 1)
    _, _, t = model._get_representations(h=X[..., 0], r=X[..., 1], t=X[..., 2], mode=None)
    mutation = Mutation.emu(0.4, torch.Generator().manual_seed(3))
    e, e_p = ep.training.mutate_slot(t, mutation)
    row = torch.cat(list(t), dim=-1)
    want = mutate(row, hash_mask(mutation.seed, B, 1 + n, row.shape[-1], 0.4))
    assert torch.equal(torch.cat([e, e_p], dim=-1), want)
    assert not torch.equal(e_p, t[1])  # the projection vectors are mutated too


# --- SANS --------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("walks", [dict(), dict(num_random_walks=10, walk_mode="restart"),
                                   dict(num_random_walks=10, walk_mode="chained")])
def test_sans_sampler_draws_what_emukg_draws(ep, small, walks, tmp_path, monkeypatch):
    from emukg.negatives import SANSSampler

    monkeypatch.setenv("EMUKG_CACHE_DIR", str(tmp_path))  # the on-disk table cache, used and reused here
    train = small[0]
    sampler = ep.SANSNegativeSampler(mapped_triples=train.mapped_triples, num_entities=train.num_entities,
                                     num_relations=train.num_relations, num_negs_per_pos=5, khop=2, seed=7,
                                     corruption_scheme=("tail",), **walks)
    pos = train.mapped_triples[:20].long()
    got = sampler.corrupt_batch(pos)
    kg = ep.sampling.id_graph(train.mapped_triples, train.num_entities, train.num_relations)
    ref = SANSSampler(kg, 5, "cpu", torch.Generator().manual_seed(7), khop=2, seed=7, use_cache=False, **walks)
    assert np.array_equal(sampler.sans.indptr.numpy(), ref.indptr.numpy())  # the cached table is the built one
    assert list(tmp_path.rglob("*")), "the neighbourhood table was not cached"
    assert got.shape == (20, 5, 3)
    assert torch.equal(got[..., 2], ref.sample(pos, "tail"))
    assert torch.equal(got[..., :2], pos[:, None, :2].expand(20, 5, 2))
    both = ep.SANSNegativeSampler(mapped_triples=train.mapped_triples, num_negs_per_pos=3, khop=2, seed=1,
                                  use_cache=False).corrupt_batch(pos)
    changed = (both != pos[:, None, :]).any(1)  # (20, 3): which columns each positive's negatives changed
    assert not changed[:, 1].any() and not (changed[:, 0] & changed[:, 2]).any()


def test_sans_in_a_pipeline(ep, tiny):
    from pykeen.sampling import negative_sampler_resolver

    assert negative_sampler_resolver.lookup("sans") is ep.SANSNegativeSampler
    train, test = tiny
    for loop in ("emu", "slcwa"):
        from pykeen.pipeline import pipeline

        result = pipeline(training=train, testing=test, model="TransE", model_kwargs=dict(embedding_dim=8),
                          training_loop=loop, negative_sampler="sans",
                          negative_sampler_kwargs=dict(num_negs_per_pos=4, khop=2, use_cache=False),
                          training_kwargs=dict(num_epochs=2, batch_size=16, use_tqdm=False), random_seed=0,
                          evaluator="emukg", evaluation_kwargs=dict(use_tqdm=False))
        assert all(math.isfinite(x) for x in result.losses)


def test_hpo_pipeline_searches_emu_and_gets_its_sampler(ep, tiny):
    pytest.importorskip("optuna")
    train, test = tiny
    hpo = ep.hpo_pipeline(training=train, testing=test, validation=test, model="DistMult",
                          model_kwargs=dict(embedding_dim=8), negative_sampler="sans",
                          negative_sampler_kwargs=dict(num_negs_per_pos=3, khop=2, use_cache=False),
                          training_kwargs=dict(num_epochs=1, batch_size=16, use_tqdm=False),
                          training_kwargs_ranges=dict(emu=dict(type=float, low=0.2, high=0.8)),
                          evaluator="emukg", evaluation_kwargs=dict(use_tqdm=False), n_trials=2)
    study = hpo.study
    assert study.user_attrs["training_loop"] == "emu" and study.user_attrs["negative_sampler"] == "sans"
    values = [t.params["training.emu"] for t in study.trials]
    assert len(values) == 2 and all(0.2 <= v <= 0.8 for v in values)
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    # the identity check is restored after the call
    import pykeen.hpo.hpo as hpo_module
    from pykeen.training import SLCWATrainingLoop

    assert hpo_module.SLCWATrainingLoop is SLCWATrainingLoop


# --- evaluation --------------------------------------------------------------------------------------------------
def assert_same_metrics(ref, got):
    a, b = ref.to_flat_dict(), got.to_flat_dict()
    assert set(a) == set(b)
    for k in a:
        if isinstance(a[k], float) and math.isnan(a[k]):
            assert math.isnan(b[k]), k
        else:
            assert abs(a[k] - b[k]) <= 1e-6, (k, a[k], b[k])


@pytest.mark.parametrize("name,kwargs,path", [
    ("TransE", {}, "emukg TransE"), ("TransE", dict(scoring_fct_norm=2), "PyKEEN"), ("DistMult", {}, "emukg DistMult"),
    ("ComplEx", {}, "emukg ComplEx"), ("RotatE", {}, "PyKEEN"), ("TransD", {}, "PyKEEN"), ("PairRE", {}, "PyKEEN"),
    ("TransE", dict(scoring_fct_norm=2, fast_distances=True), "L2"), ("RotatE", dict(fast_distances=True), "L2"),
    ("TransE", dict(scoring_fct_norm=2, power_norm=True, fast_distances=True), "PyKEEN"),
])
def test_evaluate_equals_rank_based_evaluator(ep, small, name, kwargs, path):
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import model_resolver

    train, valid, test = small
    torch.manual_seed(2)
    kwargs = dict(kwargs)
    fast = kwargs.pop("fast_distances", False)
    model = model_resolver.make(name, triples_factory=train, embedding_dim=8, **kwargs)
    known = [train.mapped_triples, valid.mapped_triples]
    ref = RankBasedEvaluator().evaluate(model, test.mapped_triples, additional_filter_triples=known, use_tqdm=False)
    got, ranks, used = ep.evaluate(model, test.mapped_triples, additional_filter_triples=known, return_ranks=True,
                                   fast_distances=fast)
    assert used.startswith(path)
    assert_same_metrics(ref, got)
    assert len(got.to_flat_dict()) > 200  # every default metric, three sides, three tie policies


def test_evaluate_trained_model_unfiltered_and_small_memory(ep, small):
    from pykeen.evaluation import RankBasedEvaluator

    train, valid, test = small
    result = run_pipeline(train, test, "DistMult", epochs=3)
    model = result.model
    # PyKEEN 1.11.1's RankBasedEvaluator(filtered=False).evaluate raises "needs the true scores" (its evaluation loop
    # passes true_scores only when filtering), so the unfiltered reference feeds PyKEEN's scores to it directly
    ref = RankBasedEvaluator(filtered=False)
    with torch.no_grad():
        for target, column in (("head", 0), ("tail", 2)):
            hrt = test.mapped_triples
            scores = model.predict(hrt, target=target)
            ref.process_scores_(hrt, target, scores, scores[torch.arange(hrt.shape[0]), hrt[:, column]].unsqueeze(-1))
    assert_same_metrics(ref.finalize(), ep.evaluate(model, test.mapped_triples, filtered=False))
    ref = RankBasedEvaluator().evaluate(model, valid.mapped_triples, additional_filter_triples=train.mapped_triples,
                                        use_tqdm=False)
    got = ep.evaluate(model, valid.mapped_triples, additional_filter_triples=train.mapped_triples, memory_mb=0.01,
                      backend="torch")
    assert_same_metrics(ref, got)


# --- import-pykeen -------------------------------------------------------------------------------------------------
def write_labelled(path: Path, factory, mapped) -> Path:
    inv_e = {i: l for l, i in factory.entity_to_id.items()}
    inv_r = {i: l for l, i in factory.relation_to_id.items()}
    path.write_text("".join(f"{inv_e[h]}\t{inv_r[r]}\t{inv_e[t]}\n" for h, r, t in mapped.tolist()), encoding="utf-8")
    return path


def test_import_pykeen_round_trip(ep, small, tmp_path, capsys):
    import json

    from emukg.cli import main
    from emukg.evaluation import evaluate as emukg_evaluate
    from emukg.run_folder import load_run

    train, valid, test = small
    result = run_pipeline(train, test, "TransE", epochs=2)
    saved = tmp_path / "pykeen"
    result.save_to_directory(saved)
    vfile = write_labelled(tmp_path / "valid.tsv", train, valid.mapped_triples)
    tfile = write_labelled(tmp_path / "test.tsv", train, test.mapped_triples)
    run = tmp_path / "run"
    assert main(["import-pykeen", str(saved), "--out", str(run), "--valid", str(vfile), "--test", str(tfile)]) == 0
    cfg, kg, model = load_run(run)
    assert (cfg.model, kg.num_entities, kg.num_relations) == ("TransE", train.num_entities, train.num_relations)
    assert kg.entities == [l for l, _ in sorted(train.entity_to_id.items(), key=lambda kv: kv[1])]
    mine = emukg_evaluate(model, kg, "test")
    theirs = ep.evaluate(result.model, test.mapped_triples,
                         additional_filter_triples=[train.mapped_triples, valid.mapped_triples])
    for policy in ("optimistic", "realistic", "pessimistic"):
        assert abs(mine[policy]["MRR"] - theirs.get_metric(f"both.{policy}.inverse_harmonic_mean_rank")) < 1e-6
        assert abs(mine[policy]["HITS@10"] - theirs.get_metric(f"both.{policy}.hits_at_10")) < 1e-6
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json", str(tmp_path / "m.json")]) == 0
    assert abs(json.loads((tmp_path / "m.json").read_text())["MRR"] - mine["MRR"]) < 1e-9
    first = kg.entities[int(train.mapped_triples[0, 0])]
    rel = kg.relations[int(train.mapped_triples[0, 1])]
    assert main(["predict", str(run), "--head", first, "--relation", rel, "--top-k", "3"]) == 0
    assert main(["export", str(run), "--format", "tsv", "--out", str(tmp_path / "export")]) == 0
    out = capsys.readouterr().out
    assert "export" in out
    # a second import into the same folder is refused, with the flag named; --overwrite replaces it
    assert main(["import-pykeen", str(saved), "--out", str(run)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["import-pykeen", str(saved), "--out", str(run), "--overwrite"]) == 0
    # a missing split file is refused before anything is written
    assert main(["import-pykeen", str(saved), "--out", str(tmp_path / "run2"), "--test", str(tmp_path / "nope")]) == 2
    assert "--test" in capsys.readouterr().err and not (tmp_path / "run2").exists()


def test_import_refuses_a_model_emukg_cannot_score(ep, small, tmp_path):
    from pykeen.models import RotatE

    from emukg.errors import ParamError

    train = small[0]
    with pytest.raises(ParamError, match=r"RotatE.*2-norm.*emukg\.pykeen\.evaluate"):
        ep.import_model(RotatE(triples_factory=train, embedding_dim=4), train, tmp_path / "run")
    assert not (tmp_path / "run").exists()


# --- without the extra ---------------------------------------------------------------------------------------------
def test_missing_pykeen_is_one_sentence_naming_the_extra(tmp_path):
    code = ("import sys; sys.modules['pykeen'] = None\n"
            "from emukg.errors import EmukgError\n"
            "try:\n    import emukg.pykeen\nexcept EmukgError as e:\n    print('ERR', e)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip() == 'ERR emukg.pykeen needs PyKEEN 1.11; install it with pip install "emukg[pykeen]".'
    # the command line says the same sentence, exit status 2, no traceback
    cli = ("import sys; sys.modules['pykeen'] = None\nfrom emukg.cli import main\n"
           f"sys.exit(main(['import-pykeen', {str(tmp_path)!r}, '--out', {str(tmp_path / 'run')!r}]))\n")
    out = subprocess.run([sys.executable, "-c", cli], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert 'pip install "emukg[pykeen]"' in out.stderr


def test_the_emukg_evaluator_in_a_pipeline(ep, small):
    """``pipeline(evaluator="emukg")`` gives the metrics PyKEEN's own evaluator gives the same trained model."""
    from pykeen.evaluation import RankBasedEvaluator, evaluator_resolver
    from pykeen.pipeline import pipeline

    assert evaluator_resolver.lookup("emukg") is ep.EmukgEvaluator
    train, valid, test = small
    result = pipeline(training=train, validation=valid, testing=test, model="ComplEx", model_kwargs=dict(embedding_dim=8),
                      training_loop="emu", training_kwargs=dict(num_epochs=2, batch_size=32, use_tqdm=False),
                      evaluator="emukg", random_seed=4, evaluation_kwargs=dict(use_tqdm=False, batch_size=7))
    ref = RankBasedEvaluator().evaluate(result.model, test.mapped_triples, use_tqdm=False,
                                        additional_filter_triples=[train.mapped_triples, valid.mapped_triples])
    assert_same_metrics(ref, result.metric_results)


def test_readme_from_pykeen_example_runs(ep):
    """README.md's "From PyKEEN" block runs (with 1 epoch instead of 20: the API, not the accuracy, is checked here),
    and examples/pykeen_emu.py holds the same code."""
    import re

    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## From PyKEEN", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    example = (REPO / "examples" / "pykeen_emu.py").read_text(encoding="utf-8")
    assert block.split("print(")[0].strip() in example
    assert "num_epochs=20" in block
    namespace: dict = {}
    exec(compile(block.replace("num_epochs=20", "num_epochs=1"), "README.md", "exec"), namespace)
    assert 0 < namespace["metrics"].get_metric("both.realistic.inverse_harmonic_mean_rank") <= 1


def _model_and_batch(model_cls, train):
    """A seeded PyKEEN model of width 6, its first 8 training triples and 5 tail-corrupted negatives of each."""
    torch.manual_seed(0)
    model = model_cls(triples_factory=train, embedding_dim=6)
    pos = train.mapped_triples[:8].long()
    neg = pos.unsqueeze(1).repeat(1, 5, 1)
    neg[..., 2] = torch.randint(0, train.num_entities, (8, 5))
    return model, pos, neg


def test_regularisation_term_is_pykeen_slcwa_s(ep, small):
    """DistMult's relation Lp regulariser adds the term PyKEEN's own sLCWA loop adds for the same batch."""
    from pykeen.models import DistMult

    train = small[0]
    model, pos, neg = _model_and_batch(DistMult, train)
    neg[:4, :, 1] = torch.randint(0, train.num_relations, (4, 5))  # corrupted relations too
    model.train()
    model.collect_regularization_term()  # (empty)
    model.score_hrt(pos)  # what SLCWATrainingLoop._process_batch_static scores before it collects the term
    model.score_hrt(neg.view(-1, 3))
    theirs = float(model.collect_regularization_term())
    ep.training.candidate_representations(model, pos, neg)
    assert abs(float(model.collect_regularization_term()) - theirs) < 1e-7 and theirs > 0


def test_a_sub_batch_mask_is_its_rows_part_of_the_batch_mask(ep, small):
    """``row0``: the EMU loss of rows 3.. of a batch, computed alone, uses those rows' part of the batch's mask."""
    from pykeen.models import TransE

    from emukg.emu import Mutation

    train = small[0]
    model, pos, neg = _model_and_batch(TransE, train)
    X, reps = ep.training.candidate_representations(model, pos, neg)
    whole = Mutation.emu(0.4, torch.Generator().manual_seed(1))
    full = ep.training.candidate_scores(model, X, reps, whole)
    part = Mutation.emu(0.4, torch.Generator().manual_seed(1))
    part.row0 = 3
    Xs, reps_s = ep.training.candidate_representations(model, pos[3:], neg[3:])
    assert torch.allclose(ep.training.candidate_scores(model, Xs, reps_s, part), full[3:], atol=0, rtol=0)
    settings = ep.EMUSettings(mixup=True).checked()  # Mixup with row0 draws this sub-batch's ratios (no index error)
    assert torch.isfinite(ep.emu_loss(model, pos[3:], neg[3:], generator=torch.Generator(), settings=settings, row0=3))


def test_the_benchmark_runs_on_a_tiny_dataset(ep, tmp_path):
    """``python -m emukg.bench.pykeen_eval`` (docs/results.md §P1) on conftest's tiny dataset: the two evaluators'
    225 metrics agree, and the extrapolation is labelled as such."""
    from conftest import write_dataset

    from emukg.bench.pykeen_eval import bench_pykeen_eval, report

    res = bench_pykeen_eval(str(write_dataset(tmp_path / "tiny")), dim=8, pykeen_triples=2)
    assert res["subset"]["queries"] == 4 and res["emukg"]["queries"] == 6
    assert res["subset"]["metrics_compared"] > 200 and res["subset"]["max_abs_metric_difference"] <= 1e-6
    assert "EXTRAPOLATED" in report(res)
    proc = subprocess.run([sys.executable, "-m", "emukg.bench.pykeen_eval", "--help"], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, timeout=120)
    assert proc.returncode == 0 and "--pykeen-triples" in proc.stdout


@pytest.mark.parametrize("name", ["RotatE", "TransD"])
def test_evaluate_in_entity_slices(ep, small, name):
    """A memory budget too small for one block of all entities: the L2 (``fast_distances``) and the PyKEEN-block
    scorers score entity slices (``score_all(..., entities=…)``) and the metrics stay PyKEEN's (on this small graph
    no near-tie is reordered by the L2 scorer's float32 rounding)."""
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import model_resolver

    train, valid, test = small
    torch.manual_seed(3)
    model = model_resolver.make(name, triples_factory=train, embedding_dim=8)
    ref = RankBasedEvaluator().evaluate(model, test.mapped_triples, additional_filter_triples=train.mapped_triples,
                                        use_tqdm=False)
    got, ranks, _ = ep.evaluate(model, test.mapped_triples, additional_filter_triples=train.mapped_triples,
                                memory_mb=0.002, return_ranks=True, fast_distances=True)
    assert ranks.memory.entity_slice < train.num_entities
    assert_same_metrics(ref, got)
