"""PyKEEN's rank-based evaluation through emukg's evaluator: :func:`evaluate`.

``evaluate(model, mapped_triples, additional_filter_triples=…)`` ranks every head query (?, r, t) and tail query
(h, r, ?) of ``mapped_triples`` against all entities, filtered by ``mapped_triples`` ∪ ``additional_filter_triples``
(PyKEEN's ``RankBasedEvaluator`` filters the same set; the answer itself always stays), with PyKEEN's tie policies:

    optimistic = 1 + #(score > s)     pessimistic = 1 + #(score ≥ s)     realistic = (optimistic + pessimistic) / 2
    number of candidates = N − #(other known answers)

and returns a :class:`pykeen.evaluation.RankBasedMetricResults` — the very object ``RankBasedEvaluator.evaluate``
returns: its metrics are computed by PyKEEN's own metric classes from these ranks (every default metric: MRR
= inverse_harmonic_mean_rank, MR = arithmetic_mean_rank, hits_at_1/3/5/10, the adjusted and z-scored ones, …;
``get_metric("both.realistic.inverse_harmonic_mean_rank")``, ``to_flat_dict()`` as usual).

**How the scores are made.**  A model with an emukg equivalent (TransE with p = 1, DistMult, ComplEx:
:mod:`emukg.pykeen.convert`) is converted once and ranked by emukg's native kernel (``kernels/score_all.c``: no
score matrix written, filter through a bit mask).  Any other PyKEEN model is scored blockwise by PyKEEN itself
(``model.predict`` on chunks of queries against all entities, so inverse triples and sigmoids are PyKEEN's) and the
blocks are ranked by emukg (``emukg_rank_dense`` on a CPU, the PyTorch counter elsewhere).  Chunks are sized from
``memory_mb`` (:func:`emukg.evaluation.plan_memory`).  Scores are float32 in both; a near-tie closer than float32
rounding may rank differently from PyKEEN's own evaluator (as between any two implementations).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from pykeen.evaluation import RankBasedEvaluator

from ..errors import ParamError
from ..evaluation import compute_ranks
from ..evaluation.ranking import check_triples
from .convert import to_emukg_model, why_not
from .sampling import id_graph

log = logging.getLogger("emukg")


class PyKEENScores(torch.nn.Module):
    """A PyKEEN model seen by emukg's evaluator: ``score_all`` is ``model.predict`` (queries × entities)."""

    def __init__(self, model, width: int):
        super().__init__()
        self.pykeen_model = model
        device = model.device
        # emukg's evaluator reads the tables' shapes, device and dtype only (a zero-stride view: no memory)
        self.entity_embedding = torch.zeros((), device=device).expand(model.num_entities, max(1, width))
        self.relation_embedding = torch.zeros((), device=device).expand(model.num_relations, 1)

    def score_all(self, anchor, relation, side, entities=None):
        if side == "tail":
            return self.pykeen_model.predict(torch.stack([anchor, relation], 1), target="tail", full_batch=False,
                                             ids=entities)
        return self.pykeen_model.predict(torch.stack([relation, anchor], 1), target="head", full_batch=False,
                                         ids=entities)


def _entity_width(model) -> int:
    width = 0
    for rep in getattr(model, "entity_representations", []):
        width += int(np.prod(rep.shape)) * (2 if getattr(rep, "is_complex", False) else 1)
    return width or 1


def emukg_scorer(model):
    """What emukg's evaluator ranks for ``model``: the converted emukg model, else :class:`PyKEENScores`."""
    conv = to_emukg_model(model)
    if conv is not None:
        return conv.model, f"emukg {conv.name}"
    return PyKEENScores(model, _entity_width(model)), f"PyKEEN blocks ({why_not(model) or 'no emukg equivalent'})"


def evaluate(model, mapped_triples: torch.Tensor, *, additional_filter_triples=None, filtered: bool = True,
             memory_mb: float = 512, backend: str = "auto", metrics=None, metrics_kwargs=None,
             add_defaults: bool = True, return_ranks: bool = False):
    """PyKEEN's rank-based metrics of ``model`` on ``mapped_triples`` (n, 3) (see the module docstring).

    ``additional_filter_triples``: a tensor or a list of tensors of known true triples (PyKEEN's argument);
    ``filtered=False`` ranks against every entity.  ``metrics`` / ``metrics_kwargs`` / ``add_defaults`` as for
    ``RankBasedEvaluator``.  Returns a ``RankBasedMetricResults``; with ``return_ranks`` also the
    :class:`emukg.evaluation.Ranks` (tail queries first) and the name of the scoring path.
    """
    N, R = model.num_entities, model.num_relations
    device = model.device
    triples = torch.as_tensor(mapped_triples).to(device=device, dtype=torch.long).reshape(-1, 3)
    check_triples(triples, N, R)
    known = [triples]
    if filtered and additional_filter_triples is not None:
        extra = additional_filter_triples if isinstance(additional_filter_triples, (list, tuple)) else [additional_filter_triples]
        known += [torch.as_tensor(x).to(device=device, dtype=torch.long).reshape(-1, 3) for x in extra]
    kg = id_graph(torch.cat(known).cpu(), N, R)
    kg.splits["test"] = triples.cpu()
    scorer, path = emukg_scorer(model)
    was_training = model.training
    try:
        ranks = compute_ranks(scorer, kg, triples, memory_mb=memory_mb, filtered=filtered, backend=backend)
    finally:
        model.train(was_training)
    n = triples.shape[0]
    if filtered:
        index = kg.filter.to(device)
        others = torch.cat([index.counts(triples[:, 0], triples[:, 1], "tail"),
                            index.counts(triples[:, 2], triples[:, 1], "head")]).cpu() - 1
    else:
        others = torch.zeros(2 * n, dtype=torch.long)
    evaluator = RankBasedEvaluator(filtered=filtered, metrics=metrics, metrics_kwargs=metrics_kwargs,
                                   add_defaults=add_defaults)
    evaluator.num_entities = N
    for target, rows in (("tail", slice(0, n)), ("head", slice(n, 2 * n))):
        # the dtypes of PyKEEN's Ranks.from_scores: int64 optimistic / pessimistic, float32 realistic
        opt = torch.as_tensor(ranks.optimistic[rows]).to(torch.int64)
        pes = torch.as_tensor(ranks.pessimistic[rows]).to(torch.int64)
        evaluator.ranks[target, "optimistic"].append(opt.numpy())
        evaluator.ranks[target, "realistic"].append(((opt + pes).float() * 0.5).numpy())
        evaluator.ranks[target, "pessimistic"].append(pes.numpy())
        evaluator.num_candidates[target].append((N - others[rows]).to(torch.int64).numpy())
    result = evaluator.finalize()
    log.debug("emukg.pykeen.evaluate: %d queries in %.3f s through %s", 2 * n, ranks.seconds, path)
    return (result, ranks, path) if return_ranks else result


class EmukgEvaluator(RankBasedEvaluator):
    """PyKEEN's ``RankBasedEvaluator`` whose ``evaluate`` is :func:`evaluate`: ``pipeline(evaluator="emukg")`` (and
    early stopping) then rank through emukg, with the evaluator's metrics.  Other evaluation arguments are accepted
    and ignored (``batch_size``, ``slice_size``, ``use_tqdm``, ``tqdm_kwargs``, ``device``,
    ``do_time_consuming_checks``, ``pre_filtered_triples``); entity or relation restrictions and a single target
    are refused."""

    def evaluate(self, model, mapped_triples, batch_size=None, slice_size=None, device=None, use_tqdm=True,
                 tqdm_kwargs=None, restrict_entities_to=None, restrict_relations_to=None,
                 do_time_consuming_checks=True, additional_filter_triples=None, pre_filtered_triples=True,
                 targets=("head", "tail")):
        for name, value in (("restrict_entities_to", restrict_entities_to), ("restrict_relations_to", restrict_relations_to)):
            if value is not None:
                raise ParamError(name, "", "is not supported by the emukg evaluator; use evaluator='rankbased'.")
        if set(targets) != {"head", "tail"}:
            raise ParamError("targets", tuple(targets), "must be both head and tail for the emukg evaluator.")
        return evaluate(model, mapped_triples, additional_filter_triples=additional_filter_triples,
                        filtered=self.filtered, metrics=self.metrics, add_defaults=False)


def register() -> None:
    """Make "emukg" a name of PyKEEN's ``evaluator_resolver`` (idempotent)."""
    from pykeen.evaluation import evaluator_resolver

    if evaluator_resolver.lookup_dict.get("emukg") is not EmukgEvaluator:
        evaluator_resolver.register(EmukgEvaluator, raise_on_conflict=False)
