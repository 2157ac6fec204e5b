"""Filtered link-prediction evaluation: ranks under three tie policies, MRR / MR / HITS@k.

Every triple (h, r, t) of a split gives two queries: (h, r, ?) ("tail", answer t) and (?, r, t) ("head",
answer h).  A query's candidates are all entities except the excluded ones: with ``filtered=True`` every entity
that forms a known triple (train ∪ valid ∪ test) with the query, and always the answer itself.  With s the
answer's score::

    optimistic  rank = 1 + #(candidates with score >  s)
    pessimistic rank = 1 + #(candidates with score >= s)
    realistic   rank = (optimistic + pessimistic) / 2      (the expected rank under random tie breaking)

NaN scores rank as −inf (worst); a NaN answer score therefore ranks behind every finite candidate.  A warning
reports how many NaN scores were seen.

**How.**  Queries are processed in chunks; no step holds queries × entities for the whole split.

* Native path (CPU, a C compiler, a model with a fast-path query vector: TransE and RotatE distances,
  DistMult and ComplEx dot products): ``kernels/score_all.c`` scores a chunk against every entity in
  register blocks and counts the candidates above the answer while it scans, skipping the excluded entities
  through a bit mask built from the filter index's CSR arrays.  The score matrix is never written; a chunk
  needs O(chunk × dim) memory.
* PyTorch path (GPU, other models, no compiler, or a non-finite query): ``model.score_all`` on a block of
  (chunk × entity slice), counts by comparison, and the excluded entities' contributions removed with one
  gather over the flat ``FilterIndex.answers`` pairs.  On a CPU with the compiled library the block is
  ranked by ``emukg_rank_dense`` instead (one pass, exclusions from the filter's CSR arrays).

The chunk (and, for very large graphs, the entity slice) is sized from ``memory_mb``: see :func:`plan_memory`.

**Sampled protocol** (``protocol='sampled'``, OGB's for ogbl-wikikg2; the full ranking above is the default).
Query i of a split's side gets K fixed candidate entities, drawn uniformly *with replacement* from all entities
(as OGB draws them) by a counter-based generator: candidate j is ``splitmix64(key + (i·K + j + 1)·φ) mod N``
with ``key`` from ``candidate_seed``, the split's name and the side (:func:`sampled_candidates`).  So every
evaluation of a split sees the same candidates, on any device and for any chunk size, without storing them.
The answer is ranked among itself and its K candidates with the same tie policies; a candidate equal to the
answer never counts, and with ``filtered=True`` (default) neither does one that forms a known triple with the
query (train ∪ valid ∪ test) — ``filtered=False`` counts them, as OGB does.  Results name it:
``"protocol": "sampled-500"``, ``"candidates"``, ``"candidate_seed"``.  Ranks lie in 1..K+1, so sampled MRR is
higher than full MRR and comparable only with the same K.

**Modules.**  :mod:`~emukg.evaluation.plan` the memory plan (chunk and slice sizes from ``memory_mb``),
:mod:`~emukg.evaluation.ranking` the two rankers and :func:`compute_ranks`, :mod:`~emukg.evaluation.hooks` the
models' fast paths as the rankers read them (:func:`fast_query`, through :mod:`emukg.scoring.fast_paths`),
:mod:`~emukg.evaluation.counting` the counts over one score block, :mod:`~emukg.evaluation.sampled` the sampled
protocol, :mod:`~emukg.evaluation.metrics` :class:`Ranks`, the tie policies and :func:`metrics_report`,
:mod:`~emukg.evaluation.progress` the progress bar and the NaN warning.  This package holds :func:`evaluate`.
Errors about a parameter are :class:`~emukg.errors.ParamError` naming the Python parameter (``memory_mb``,
``tie_policy``, ``protocol``, ``candidates``, ``split``); the command line prints them with its flags.
"""

from __future__ import annotations

import logging

from ..data.graph import KnowledgeGraph
from ..errors import ParamError
from .counting import rank_block_native, rank_block_torch
from .hooks import fast_query
from .metrics import METRICS, SIDES, TIE_POLICIES, Ranks, metrics_from_ranks, metrics_report
from .plan import MemoryPlan, budget_bytes, plan_memory, plan_sampled
from .ranking import BACKENDS, all_finite, check_triples, compute_ranks, native_library
from .sampled import DEFAULT_CANDIDATES, PROTOCOLS, check_candidates, check_protocol, sampled_block, sampled_candidates

__all__ = [
    "evaluate", "compute_ranks", "metrics_report", "metrics_from_ranks", "Ranks", "MemoryPlan", "plan_memory",
    "plan_sampled", "budget_bytes", "fast_query", "native_library", "all_finite", "rank_block_torch",
    "rank_block_native", "sampled_candidates", "sampled_block", "check_protocol", "check_candidates", "check_triples",
    "TIE_POLICIES", "PROTOCOLS", "DEFAULT_CANDIDATES", "METRICS", "SIDES", "BACKENDS",
]


def evaluate(model, kg: KnowledgeGraph, split="test", *, tie_policy: str = "realistic", memory_mb: float = 512,
             filtered: bool = True, progress: bool = False, log_every: int = 0, logger: logging.Logger | None = None,
             backend: str = "auto", protocol: str = "full", candidates: int = DEFAULT_CANDIDATES,
             candidate_seed: int = 0) -> dict:
    """Filtered (or raw) ranking of every head and tail query of ``split`` (a split name or an (n, 3) id tensor).

    Returns the metrics under ``tie_policy`` at the top level (``MRR, MR, HITS@1, HITS@3, HITS@10``), the same
    for every policy under ``'optimistic' / 'pessimistic' / 'realistic'``, per direction under ``'head'`` (queries
    (?, r, t)) and ``'tail'`` ((h, r, ?)) — the chosen policy's metrics, ``num_queries`` and every policy —, per
    relation name under ``'per_relation'`` (chosen policy), and ``num_queries``, ``seconds``, ``queries_per_s``,
    ``nan_scores``, ``backend`` and the ``memory`` plan.

    ``backend``: 'auto' (native kernel where possible on the CPU, the device ranker elsewhere), 'native' (require
    it; TransE, RotatE, DistMult, ComplEx on CPU), 'torch' (plain PyTorch through ``model.score_all``) or 'device'
    (:mod:`emukg.evaluation.device`: the same scores and ranks, with no host round trip inside a block).  The model is put in eval mode; no gradients.
    ``log_every`` > 0 logs progress to ``logger`` about every that many queries.

    ``protocol``: 'full' (every entity is a candidate; default) or 'sampled' (``candidates`` fixed random entities
    per query, drawn from ``candidate_seed``; see the module docstring).  ``result['protocol']`` names it
    ('full' or 'sampled-K'); the sampled protocol ignores ``backend`` (it scores through ``model.score_ids``).
    """
    if tie_policy not in TIE_POLICIES:
        raise ParamError("tie_policy", tie_policy, "choose optimistic, pessimistic or realistic.")
    rk = compute_ranks(model, kg, split, memory_mb=memory_mb, filtered=filtered, progress=progress,
                       log_every=log_every, logger=logger, backend=backend, protocol=protocol, candidates=candidates,
                       candidate_seed=candidate_seed)
    return metrics_report(rk, kg, tie_policy, model_name=type(model).__name__, filtered=filtered)
