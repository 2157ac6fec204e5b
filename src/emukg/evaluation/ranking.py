"""The full ranking: :func:`compute_ranks` counts, for every query of a split, the candidates scored above its answer.

Two rankers (see :mod:`emukg.evaluation`): the fused native one (``kernels/score_all.c``; CPU, float32, a model
with a fast-path query from :func:`~emukg.evaluation.hooks.fast_query`) never writes the score matrix; the dense
one scores blocks through ``model.score_all`` and counts them with :mod:`~emukg.evaluation.counting`.  The
sampled protocol is handed to :func:`~emukg.evaluation.sampled.sampled_ranks`.
"""

from __future__ import annotations

import logging
import math
import time

import torch

import emukg.kernels as kernels
from ..data.graph import FilterIndex, KnowledgeGraph
from ..errors import EmukgError, ParamError
from .counting import rank_block_native, rank_block_torch
from .device import DeviceRanker
from .hooks import fast_query
from .metrics import SIDES, Ranks
from .plan import plan_memory
from .progress import Progress, warn_nan
from .sampled import DEFAULT_CANDIDATES, check_protocol, sampled_ranks

BACKENDS = ("auto", "native", "torch", "device")

log = logging.getLogger("emukg")


# native library: reached only through the checked wrappers emukg.kernels.rank_fused / rank_dense
def native_library():
    """The compiled ``score_all`` kernels (ctypes.CDLL), or None (no compiler, EMUKG_NO_NATIVE); an availability
    test — calls go through :func:`emukg.kernels.rank_fused` and :func:`emukg.kernels.rank_dense`."""
    return kernels.load("score_all")


def all_finite(t: torch.Tensor, rows: int = 1 << 16) -> bool:
    """No NaN or inf in ``t``, without a full-size temporary: a finite sum proves it; otherwise check in blocks."""
    if t.numel() == 0 or math.isfinite(float(t.sum())):
        return True
    flat = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(-1, 1)
    return all(bool(torch.isfinite(flat[i:i + rows]).all()) for i in range(0, flat.shape[0], rows))


def _has_fast_query(model) -> bool:
    """Whether the model offers the native ranker a query vector of the entity table's width (:func:`fast_query`)."""
    dev = model.entity_embedding.device
    a = torch.zeros(1, model.entity_embedding.shape[1], device=dev, dtype=model.entity_embedding.dtype)
    r = torch.zeros(1, model.relation_embedding.shape[1], device=dev, dtype=model.relation_embedding.dtype)
    out = fast_query(model, a, r, "tail")
    return out is not None and out[1].shape[-1] == model.entity_embedding.shape[1]


def _exclusion_pairs(index: FilterIndex | None, anchor, relation, answer, side):
    """Flat (query_index, entity) pairs to exclude: the known answers (if ``index``) and each query's answer once."""
    arange = torch.arange(answer.numel(), device=answer.device)
    if index is None:
        return arange, answer
    qi, ent = index.answers(anchor, relation, side)
    other = ent != answer[qi]
    return torch.cat([qi[other], arange]), torch.cat([ent[other], answer])


# ---------------------------------------------------------------------------------------------------------
# rank counting
class _Ranker:
    """Counts, for one chunk of queries of one side, the candidates scored above / at-or-above the answer."""

    def __init__(self, model, index: FilterIndex | None, lib, threads: int):
        self.model, self.index, self.lib, self.threads = model, index, lib, threads
        self.E = model.entity_embedding.detach()
        self.R = model.relation_embedding.detach()
        self.N = self.E.shape[0]
        self.nan_scores = 0
        self.native_chunks = 0
        self.torch_chunks = 0

    # -- native ------------------------------------------------------------------------------------------
    def native(self, anchor, relation, answer, side):
        fq = fast_query(self.model, self.E.index_select(0, anchor), self.R.index_select(0, relation), side)
        if fq is None:
            return None
        kind, q = fq
        q = q.detach().to(torch.float32).contiguous()
        if not all_finite(q):
            return None  # NaN/inf queries: the PyTorch path applies the NaN policy
        if self.index is not None:
            start, count, vals = self.index.segments(anchor, relation, side)
        else:
            start = count = vals = None
        gt, ge, _ = kernels.rank_fused(kernels.metric_code(kind), q, self.E.contiguous(), answer.contiguous(), start,
                                       count, vals, self.threads)
        self.native_chunks += 1
        return gt, ge

    # -- PyTorch ---------------------------------------------------------------------------------------
    def _scores(self, anchor, relation, side, e0, e1):
        entities = None if (e0 == 0 and e1 == self.N) else torch.arange(e0, e1, device=anchor.device)
        return self.model.score_all(anchor, relation, side, entities=entities)

    def torch(self, anchor, relation, answer, side, entity_slice):
        """Counts through ``model.score_all`` blocks.  Ranking the blocks uses ``emukg_rank_dense`` on a CPU with
        the compiled library (exclusions straight from the filter's CSR arrays), else PyTorch with the flat
        ``FilterIndex.answers`` pairs."""
        device, nq, N = anchor.device, anchor.numel(), self.N
        dense_c = self.lib is not None and device.type == "cpu" and self.E.dtype == torch.float32
        if dense_c:
            answer = answer.contiguous()
            csr = self.index.segments(anchor, relation, side) if self.index is not None else (None, None, None)
        else:
            ex_q, ex_e = _exclusion_pairs(self.index, anchor, relation, answer, side)
        gt = torch.zeros(nq, dtype=torch.int64, device=device)
        ge = torch.zeros(nq, dtype=torch.int64, device=device)
        thr = None
        if entity_slice < N:  # first pass: the answer's own score, from the slice that holds it
            thr = torch.empty(nq, device=device, dtype=self.E.dtype)
            for e0 in range(0, N, entity_slice):
                e1 = min(e0 + entity_slice, N)
                sel = ((answer >= e0) & (answer < e1)).nonzero().reshape(-1)
                if sel.numel():
                    S = self._scores(anchor[sel], relation[sel], side, e0, e1)
                    thr[sel] = S[torch.arange(sel.numel(), device=device), answer[sel] - e0].to(thr.dtype)
                    del S
        for e0 in range(0, N, entity_slice):
            e1 = min(e0 + entity_slice, N)
            S = self._scores(anchor, relation, side, e0, e1)
            if thr is None:
                thr = S[torch.arange(nq, device=device), answer]
            if dense_c:
                g, e, n_nan = rank_block_native(S, thr, answer, *csr, col0=e0, threads=self.threads, num_entities=N)
            else:
                if entity_slice < N:
                    keep = (ex_e >= e0) & (ex_e < e1)
                    bq, be = ex_q[keep], ex_e[keep] - e0
                else:
                    bq, be = ex_q, ex_e
                g, e, n_nan = rank_block_torch(S, thr, bq, be)
            gt += g
            ge += e
            self.nan_scores += n_nan
            del S
        self.torch_chunks += 1
        return gt, ge


def _split_triples(kg: KnowledgeGraph, split) -> tuple[str, torch.Tensor]:
    if isinstance(split, torch.Tensor):
        if split.is_floating_point() or split.is_complex() or split.dtype == torch.bool:
            raise ParamError("split", "", f"a tensor of triples must hold integer ids, not {split.dtype}; pass an (n, 3) "
                             "int64 tensor.")
        if split.numel() % 3:
            raise ParamError("split", "", f"a tensor of triples must have shape (n, 3), not {tuple(split.shape)}.")
        return "custom", split.reshape(-1, 3).long()
    if split not in kg.splits:
        raise ParamError("split", split, f"no such split; choose one of {', '.join(kg.splits)}.")
    return split, kg.splits[split]


def check_triples(triples: torch.Tensor, num_entities: int, num_relations: int, name: str = "custom") -> None:
    """EmukgError unless every head/tail id of ``triples`` (n, 3) lies in [0, num_entities) and every relation id
    in [0, num_relations): one min/max reduction per column group (no per-triple loop), on any device."""
    what = "the triples passed as split" if name == "custom" else f"split {name!r}"
    for cols, n, kind, kinds in (([0, 2], num_entities, "entity", "entities"), ([1], num_relations, "relation", "relations")):
        r = kernels.id_range(triples[:, cols])
        if r is not None and (r[0] < 0 or r[1] >= n):
            bad = r[0] if r[0] < 0 else r[1]
            raise EmukgError(f"evaluate: {what} holds {kind} id {bad}, outside 0..{n - 1}; pass {kind} ids below the "
                             f"number of {kinds} ({n}) of the model and dataset.")


def compute_ranks(model, kg: KnowledgeGraph, split="test", *, memory_mb: float = 512, filtered: bool = True,
                  progress: bool = False, log_every: int = 0, logger: logging.Logger | None = None,
                  backend: str = "auto", protocol: str = "full", candidates: int = DEFAULT_CANDIDATES,
                  candidate_seed: int = 0) -> Ranks:
    """The ranks behind :func:`evaluate` (same arguments)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    check_protocol(protocol, candidates, candidate_seed)
    logger = logger or log
    name, triples = _split_triples(kg, split)
    if triples.shape[0] == 0:
        raise EmukgError(f"split {name!r} of {kg.name or 'the dataset'} has no triples to evaluate.")
    check_triples(triples, min(kg.num_entities, model.entity_embedding.shape[0]),
                  min(kg.num_relations, model.relation_embedding.shape[0]), name)
    if protocol == "sampled":
        return sampled_ranks(model, kg, name, triples, memory_mb=memory_mb, filtered=filtered, progress=progress,
                             log_every=log_every, logger=logger, candidates=int(candidates),
                              candidate_seed=int(candidate_seed))
    device = model.entity_embedding.device
    triples = triples.to(device)
    n_trip = triples.shape[0]
    total = 2 * n_trip

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            t0 = time.perf_counter()
            index = kg.filter.to(device) if filtered else None
            # the device ranker (no host round trip inside a block): asked for, or the default off the CPU
            use_device = backend == "device" or (backend == "auto" and device.type != "cpu")
            lib = native_library() if device.type == "cpu" and backend not in ("torch", "device") else None
            use_native = (lib is not None and model.entity_embedding.dtype == torch.float32 and _has_fast_query(model)
                          and all_finite(model.entity_embedding.detach()))
            if backend == "native" and not use_native:
                raise RuntimeError("backend='native' needs a CPU float32 model with a fast-path query (TransE, RotatE, "
                                   "DistMult, ComplEx), finite embeddings and the compiled kernel")
            threads = torch.get_num_threads()
            mean_ex = 0.0
            if index is not None:
                counts = [index.counts(triples[:, 0], triples[:, 1], "tail"), index.counts(triples[:, 2], triples[:, 1], "head")]
                mean_ex = float(torch.cat(counts).to(torch.float64).mean())
            plan_t = plan_memory(model, kg.num_entities, memory_mb, backend="torch", num_queries=n_trip,
                                 mean_exclusions=mean_ex, threads=threads)
            plan = plan_memory(model, kg.num_entities, memory_mb, backend="native", num_queries=n_trip,
                               mean_exclusions=mean_ex, threads=threads) if use_native else plan_t
            ranker = _Ranker(model, index, lib, threads)
            on_device = DeviceRanker(model, index) if use_device else None
            gt_all = torch.empty(total, dtype=torch.int64, device=device)
            ge_all = torch.empty(total, dtype=torch.int64, device=device)
            meter = Progress(total, name, progress, log_every, logger, t0)
            for s, side in enumerate(SIDES):
                anchor_all = triples[:, 0] if side == "tail" else triples[:, 2]
                answer_all = triples[:, 2] if side == "tail" else triples[:, 0]
                rel_all = triples[:, 1]
                if on_device is not None:
                    on_device.begin_side(anchor_all, rel_all, answer_all, side)
                for c0 in range(0, n_trip, plan.chunk):
                    c1 = min(c0 + plan.chunk, n_trip)
                    a, r, ans = anchor_all[c0:c1], rel_all[c0:c1], answer_all[c0:c1]
                    out = ranker.native(a, r, ans, side) if use_native else None
                    if on_device is not None:  # the device ranker, in the chunks of the dense plan
                        out = on_device.rank(a, r, ans, side, c0, plan_t.entity_slice)
                    if out is None:  # PyTorch path, in chunks of its own plan
                        gts, ges = [], []
                        for d0 in range(0, c1 - c0, plan_t.chunk):
                            d1 = min(d0 + plan_t.chunk, c1 - c0)
                            g, e = ranker.torch(a[d0:d1], r[d0:d1], ans[d0:d1], side, plan_t.entity_slice)
                            gts.append(g)
                            ges.append(e)
                        out = torch.cat(gts), torch.cat(ges)
                    off = s * n_trip
                    gt_all[off + c0:off + c1] = out[0]
                    ge_all[off + c0:off + c1] = out[1]
                    meter.advance(c1 - c0)
            meter.close()
            optimistic = (1 + gt_all).to("cpu", torch.float64)
            pessimistic = (1 + ge_all).to("cpu", torch.float64)
            seconds = time.perf_counter() - t0
    finally:
        model.train(was_training)

    if on_device is not None:
        ranker.nan_scores += on_device.nan_scores()
    warn_nan(ranker.nan_scores, logger, stacklevel=3)
    used = "native" if ranker.native_chunks and not ranker.torch_chunks else ("mixed" if ranker.native_chunks else "torch")
    if on_device is not None:
        used = "device"
    return Ranks(name, optimistic, pessimistic, triples[:, 1].to("cpu").repeat(2), seconds, ranker.nan_scores, used,
                 plan if ranker.native_chunks else plan_t)
