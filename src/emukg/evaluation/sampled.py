"""The sampled protocol (OGB's for ogbl-wikikg2): each query's answer ranked among K fixed random candidates.

Query i of a split's side gets K candidate entities, drawn uniformly *with replacement* from all entities by a
counter-based generator (:func:`sampled_candidates`), so every evaluation of a split sees the same candidates on
any device and for any chunk size, without storing them.  See :mod:`emukg.evaluation` for the protocol.
"""

from __future__ import annotations

import time
import zlib

import numpy as np
import torch

from ..data.graph import FilterIndex, KnowledgeGraph
from ..errors import ParamError
from .counting import rank_block_torch
from .metrics import SIDES, Ranks
from .plan import plan_sampled
from .progress import Progress, warn_nan

PROTOCOLS = ("full", "sampled")
DEFAULT_CANDIDATES = 500  # OGB's ogbl-wikikg2: 500 negative heads and 500 negative tails per test triple


_GOLDEN = 0x9E3779B97F4A7C15
_M64 = (1 << 64) - 1


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's output function on uint64 (wrapping arithmetic)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _stream_key(candidate_seed: int, split: str, side: str) -> int:
    """A 64-bit key per (seed, split name, side): different streams for valid/test and head/tail."""
    label = zlib.crc32(f"{split}/{side}".encode("utf-8"))
    z = np.array([(int(candidate_seed) * _GOLDEN + label) & _M64], dtype=np.uint64)
    return int(_mix64(z)[0])


def sampled_candidates(num_entities: int, candidates: int, split: str, side: str, start: int, stop: int,
                       candidate_seed: int = 0) -> torch.Tensor:
    """The fixed candidate entities (int64, ``(stop − start, candidates)``) of queries ``start..stop−1`` of one
    side of a split: uniform over ``0..num_entities−1``, with replacement, a pure function of its arguments
    (counter-based splitmix64), so any chunking gives the same candidates."""
    key = np.uint64(_stream_key(candidate_seed, split, side))
    with np.errstate(over="ignore"):
        counter = np.arange(start * candidates + 1, stop * candidates + 1, dtype=np.uint64)
        z = _mix64(key + counter * np.uint64(_GOLDEN))
        ids = (z >> np.uint64(11)) % np.uint64(num_entities)  # 53 random bits: bias below N / 2^53
    return torch.from_numpy(ids.astype(np.int64)).reshape(stop - start, candidates)


def check_candidates(candidates: int) -> None:
    """A :class:`~emukg.errors.ParamError` naming ``candidates`` unless it is a positive integer."""
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise ParamError("candidates", candidates, "must be a positive integer (OGB uses 500).")


def check_protocol(protocol: str, candidates: int, candidate_seed: int = 0) -> None:
    """A :class:`~emukg.errors.ParamError` naming the parameter at fault unless ``protocol`` is one of
    :data:`PROTOCOLS`, ``candidates`` a positive integer and ``candidate_seed`` an integer ≥ 0."""
    if protocol not in PROTOCOLS:
        raise ParamError("protocol", protocol, "choose full or sampled.")
    check_candidates(candidates)
    if isinstance(candidate_seed, bool) or not isinstance(candidate_seed, int) or candidate_seed < 0:
        raise ParamError("candidate_seed", candidate_seed, "must be an integer ≥ 0.")


def sampled_block(model, index: FilterIndex | None, anchor, relation, answer, side: str, cand: torch.Tensor):
    """(gt, ge, nan) of one chunk: the answer's score against its candidates ``cand`` (queries × K), the answer
    itself and (with ``index``) known answers among them not counted.  One ``score_ids`` call scores the answer
    (column 0) and the candidates together, so tied scores are computed alike."""
    both = torch.cat([answer[:, None], cand], 1)
    a, r = anchor[:, None], relation[:, None]
    S = model.score_ids(a, r, both) if side == "tail" else model.score_ids(both, r, a)
    thr, S = S[:, 0], S[:, 1:]
    excluded = cand == answer[:, None]
    if index is not None:
        excluded |= index.contains(a, r, cand) if side == "tail" else index.contains(cand, r, a)
    ex_q, ex_e = excluded.nonzero(as_tuple=True)
    return rank_block_torch(S, thr, ex_q, ex_e)


def sampled_ranks(model, kg: KnowledgeGraph, name: str, triples: torch.Tensor, *, memory_mb, filtered, progress,
                  log_every, logger, candidates: int, candidate_seed: int) -> Ranks:
    """The :class:`Ranks` of the sampled protocol (:func:`emukg.evaluation.ranking.compute_ranks` with
    ``protocol='sampled'``): each query's answer against its :func:`sampled_candidates`, in chunks of
    :func:`plan_sampled`."""
    device = model.entity_embedding.device
    triples = triples.to(device)
    n_trip = triples.shape[0]
    total = 2 * n_trip
    plan = plan_sampled(model, candidates, memory_mb, num_queries=n_trip)
    was_training = model.training
    model.eval()
    nan_scores = 0
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            index = kg.filter.to(device) if filtered else None
            gt_all = torch.empty(total, dtype=torch.int64, device=device)
            ge_all = torch.empty(total, dtype=torch.int64, device=device)
            meter = Progress(total, f"{name} (sampled)", progress, log_every, logger, t0)
            for s, side in enumerate(SIDES):
                anchor_all = triples[:, 0] if side == "tail" else triples[:, 2]
                answer_all = triples[:, 2] if side == "tail" else triples[:, 0]
                for c0 in range(0, n_trip, plan.chunk):
                    c1 = min(c0 + plan.chunk, n_trip)
                    cand = sampled_candidates(kg.num_entities, candidates, name, side, c0, c1, candidate_seed).to(device)
                    g, e, n_nan = sampled_block(model, index, anchor_all[c0:c1], triples[c0:c1, 1], answer_all[c0:c1],
                                                side, cand)
                    gt_all[s * n_trip + c0:s * n_trip + c1] = g
                    ge_all[s * n_trip + c0:s * n_trip + c1] = e
                    nan_scores += n_nan
                    meter.advance(c1 - c0)
            meter.close()
            optimistic = (1 + gt_all).to("cpu", torch.float64)
            pessimistic = (1 + ge_all).to("cpu", torch.float64)
            seconds = time.perf_counter() - t0
    finally:
        model.train(was_training)
    warn_nan(nan_scores, logger, stacklevel=4)
    return Ranks(name, optimistic, pessimistic, triples[:, 1].to("cpu").repeat(2), seconds, nan_scores, "torch", plan,
                 protocol=f"sampled-{candidates}", candidates={"candidates": candidates, "candidate_seed": candidate_seed})
