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
"""

from __future__ import annotations

import logging
import math
import time
import warnings
import zlib
from dataclasses import asdict, dataclass

import numpy as np
import torch

import emukg.kernels as kernels
from .scoring.fast_paths import eval_query
from .data.graph import FilterIndex, KnowledgeGraph
from .errors import EmukgError

TIE_POLICIES = ("optimistic", "pessimistic", "realistic")
PROTOCOLS = ("full", "sampled")
DEFAULT_CANDIDATES = 500  # OGB's ogbl-wikikg2: 500 negative heads and 500 negative tails per test triple
METRICS = ("MRR", "MR", "HITS@1", "HITS@3", "HITS@10")
SIDES = ("tail", "head")
BACKENDS = ("auto", "native", "torch")

NATIVE_MAX_CHUNK = 4096  # queries per native call: large enough that Python overhead vanishes
NATIVE_RANGE_BYTES = 256 * 1024  # RANGE_BYTES of score_all.c: entity rows per task
TORCH_MAX_CHUNK = 1024  # queries per block on the PyTorch path
SLICE_QUERIES = 16  # queries per chunk when even one query's full score row does not fit the budget

# Live float tensors of shape (chunk, entities, entity_dim) while ``score_all`` broadcasts, per model; measured
# from the score functions' temporaries (e.g. TransE: (a + r − e) and its abs).  Unknown models: 3.
BROADCAST_FACTOR = {"TransE": 2.0, "TransD": 2.5, "RotatE": 2.5, "pRotatE": 2.0}
# Bytes per (query, candidate) pair besides the intermediates: the float score, a NaN-masked copy, and
# the bool masks of the comparisons.
TORCH_PAIR_BYTES = 4 + 4 + 1 + 1
# Bytes per candidate entity of a slice when the graph is sliced: the gathered rows and the model's
# per-candidate temporaries (projections, phases), in floats of entity_dim.
SLICE_ENTITY_FLOATS = 4
# Bytes per excluded (query, entity) pair on the PyTorch path: int64 index pairs, gathered scores, masks.
EXCLUSION_PAIR_BYTES = 48
# The PyTorch path plans its live tensors for this fraction of the budget: the allocator keeps freed blocks
# of a step for the next one (glibc raises its mmap threshold after large frees), and the resident size
# measured around an evaluation runs up to about twice the live tensors.
TORCH_LIVE_FRACTION = 0.5

log = logging.getLogger("emukg")


# ---------------------------------------------------------------------------------------------------------
# native library: reached only through the checked wrappers emukg.kernels.rank_fused / rank_dense
def native_library():
    """The compiled ``score_all`` kernels (ctypes.CDLL), or None (no compiler, EMUKG_NO_NATIVE); an availability
    test — calls go through :func:`emukg.kernels.rank_fused` and :func:`emukg.kernels.rank_dense`."""
    return kernels.load("score_all")


def fast_query(model, anchor_emb: torch.Tensor, rel_emb: torch.Tensor, side: str):
    """``(kind, q)`` when the model's score against every entity e is a distance ‖q − e‖ (kinds 'l1',
    'complex_l1': score = bias − distance) or a dot product q·e (kind 'dot': score = bias + q·e); else None.

    Uses the models' fast paths (:func:`emukg.scoring.fast_paths.eval_query`: an evaluation-only kind such as
    RotatE's complex modulus, else the training kernel's).
    """
    out = eval_query(model, anchor_emb, rel_emb, side)
    if out is not None and out[0] in kernels.METRIC_CODES:
        return out[0], out[1]
    return None


def all_finite(t: torch.Tensor, rows: int = 1 << 16) -> bool:
    """No NaN or inf in ``t``, without a full-size temporary: a finite sum proves it; otherwise check in blocks."""
    if t.numel() == 0 or math.isfinite(float(t.sum())):
        return True
    flat = t.reshape(t.shape[0], -1) if t.dim() > 1 else t.reshape(-1, 1)
    return all(bool(torch.isfinite(flat[i:i + rows]).all()) for i in range(0, flat.shape[0], rows))


def _has_fast_query(model) -> bool:
    dev = model.entity_embedding.device
    a = torch.zeros(1, model.entity_embedding.shape[1], device=dev, dtype=model.entity_embedding.dtype)
    r = torch.zeros(1, model.relation_embedding.shape[1], device=dev, dtype=model.relation_embedding.dtype)
    out = fast_query(model, a, r, "tail")
    return out is not None and out[1].shape[-1] == model.entity_embedding.shape[1]


# ---------------------------------------------------------------------------------------------------------
# memory plan
@dataclass
class MemoryPlan:
    """How one evaluation splits its work to stay inside ``budget_bytes``."""

    backend: str  # 'native' (fused C kernel) or 'torch'
    budget_bytes: int
    chunk: int  # queries per step
    entity_slice: int  # candidates per step (= number of entities unless the graph is too large)
    bytes_per_step: int  # planned working memory of one step (the largest allocation set alive at once)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["budget_mb"] = self.budget_bytes / 2**20
        d["mb_per_step"] = self.bytes_per_step / 2**20
        return d


def plan_memory(model, num_entities: int, memory_mb: float, *, backend: str = "torch", num_queries: int | None = None,
                mean_exclusions: float = 0.0, threads: int | None = None) -> MemoryPlan:
    """Queries per chunk (and entities per slice) so that one step's working memory fits ``memory_mb`` MiB.

    * ``native``: per query the query vector and its transposed copy (2 · 4 · dim bytes), counters, and one
      offset into its exclusion list per entity range; per thread an exclusion bit mask of 4 bytes per entity
      of a range.  Nothing of size queries × entities, so chunks are large.
    * ``torch``: per (query, candidate) pair the score and masks (:data:`TORCH_PAIR_BYTES`), plus, for models
      scored by broadcasting, ``BROADCAST_FACTOR × entity_dim`` floats of intermediates; per query the excluded
      pairs.  If one query against all entities does not fit, the candidates are sliced.  These live tensors
      are planned for half the budget (:data:`TORCH_LIVE_FRACTION`), the rest being allocator headroom.

    The model's own tables are not counted (they exist anyway).
    """
    budget = int(memory_mb * 2**20)
    if budget <= 0:
        raise EmukgError(f"--memory-mb {memory_mb}: must be positive.")
    N = max(int(num_entities), 1)
    dim = int(model.entity_embedding.shape[1])
    nq = num_queries if num_queries is not None else NATIVE_MAX_CHUNK
    threads = threads or torch.get_num_threads()
    if backend == "native":
        # mirrors emukg_rank_fused: entity ranges of NATIVE_RANGE_BYTES, an int64 offset per (query, range) into
        # the exclusion lists, one uint32 mask word per entity of a range per thread
        rng = min(N, max(48, NATIVE_RANGE_BYTES // (4 * dim)))
        parts = max(-(-N // rng), 8 * threads)
        per_query = 2 * 4 * dim + 8 * (parts + 1) + 96  # query + transposed tile copy, offsets, ids/counters
        fixed = threads * 4 * rng
        chunk = (budget - fixed) // per_query
        if chunk < 1:
            raise EmukgError(f"--memory-mb {memory_mb}: too small for {N:,} entities; give at least {math.ceil((fixed + per_query) / 2**20)} MiB.")
        chunk = int(max(1, min(chunk, NATIVE_MAX_CHUNK, nq)))
        return MemoryPlan("native", budget, chunk, N, fixed + chunk * per_query)

    live = budget * TORCH_LIVE_FRACTION
    broadcast = not hasattr(model, "query_vector")
    per_pair = TORCH_PAIR_BYTES + (4 * dim * BROADCAST_FACTOR.get(type(model).__name__, 3.0) if broadcast else 0)
    per_query = 4 * dim * 2 + 64 + EXCLUSION_PAIR_BYTES * mean_exclusions
    per_slice_entity = 4 * dim * SLICE_ENTITY_FLOATS
    full_row = N * per_pair + per_query
    if full_row <= live:
        chunk = int(max(1, min(live // full_row, TORCH_MAX_CHUNK, nq)))
        return MemoryPlan("torch", budget, chunk, N, int(chunk * full_row))
    chunk = int(max(1, min(SLICE_QUERIES, nq)))
    while chunk > 1 and chunk * (per_query + per_pair) + per_slice_entity > live:
        chunk //= 2
    slice_ = int((live - chunk * per_query) // (chunk * per_pair + per_slice_entity))
    if slice_ < 1:
        need = (chunk * per_query + chunk * per_pair + per_slice_entity) / TORCH_LIVE_FRACTION
        raise EmukgError(f"--memory-mb {memory_mb}: too small for this model; give at least {math.ceil(need / 2**20)} MiB.")
    slice_ = min(slice_, N)
    return MemoryPlan("torch", budget, chunk, slice_, int(chunk * per_query + slice_ * (chunk * per_pair + per_slice_entity)))


# ---------------------------------------------------------------------------------------------------------
# exclusions
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


def rank_block_torch(S: torch.Tensor, thr: torch.Tensor, ex_q: torch.Tensor, ex_e: torch.Tensor):
    """Counts over one score block ``S`` (queries × candidates): (#> thr, #>= thr, number of NaN scores),
    not counting the excluded pairs ``(ex_q, ex_e)`` (column indices into ``S``).  NaN ranks as −inf."""
    neg_inf = torch.tensor(float("-inf"), device=S.device, dtype=S.dtype)
    nan = torch.isnan(S)
    n_nan = int(nan.sum())
    if n_nan:
        S = S.masked_fill(nan, float("-inf"))
    del nan
    t = torch.where(torch.isnan(thr), neg_inf, thr.to(S.dtype))
    gt = (S > t[:, None]).sum(1)
    ge = (S >= t[:, None]).sum(1)
    if ex_q.numel():
        s, tq = S[ex_q, ex_e], t[ex_q]
        gt.index_add_(0, ex_q, -(s > tq).long())
        ge.index_add_(0, ex_q, -(s >= tq).long())
    return gt, ge, n_nan


def rank_block_native(S: torch.Tensor, thr: torch.Tensor, answer: torch.Tensor, start, count, vals, col0: int = 0,
                      threads: int | None = None, num_entities: int | None = None):
    """C version of :func:`rank_block_torch` for a CPU float32 block holding entities ``col0 ..``; exclusions
    as CSR (``start``/``count`` into ``vals``, entity ids below ``num_entities``, default col0 + columns) plus each
    query's ``answer``.  Returns (gt, ge, nan).  Through the checked wrapper :func:`emukg.kernels.rank_dense`."""
    gt, ge, nan = kernels.rank_dense(S.to(torch.float32).contiguous(), thr.to(torch.float32).contiguous(),
                                     answer.contiguous(), start, count, vals, col0=col0, num_entities=num_entities,
                                     threads=threads)
    return gt, ge, int(nan.sum())


# ---------------------------------------------------------------------------------------------------------
# sampled protocol
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


# bytes per (query, candidate) pair of the sampled protocol besides the gathered embeddings and the model's
# broadcast intermediates: candidate id, score, NaN/comparison masks, the filter lookup (key, position, found key,
# flag) and the exclusion pairs
SAMPLED_PAIR_BYTES = 8 + TORCH_PAIR_BYTES + 8 * 3 + 1 + 16
SAMPLED_MAX_CHUNK = 4096


def plan_sampled(model, candidates: int, memory_mb: float, num_queries: int | None = None) -> MemoryPlan:
    """Queries per chunk of the sampled protocol: per query, ``candidates + 1`` scored pairs, each holding its
    gathered entity row and ``BROADCAST_FACTOR × entity_dim`` floats of the model's intermediates (4 bytes each)
    plus :data:`SAMPLED_PAIR_BYTES`; planned for :data:`TORCH_LIVE_FRACTION` of the budget as on the full path."""
    budget = int(memory_mb * 2**20)
    if budget <= 0:
        raise EmukgError(f"--memory-mb {memory_mb}: must be positive.")
    dim = int(model.entity_embedding.shape[1])
    per_pair = 4 * dim * (1 + BROADCAST_FACTOR.get(type(model).__name__, 3.0)) + SAMPLED_PAIR_BYTES
    per_query = (candidates + 1) * per_pair + 4 * int(model.relation_embedding.shape[1]) + 64
    live = budget * TORCH_LIVE_FRACTION
    chunk = int(live // per_query)
    if chunk < 1:
        raise EmukgError(f"--memory-mb {memory_mb}: too small for {candidates} candidates per query; give at least "
                         f"{math.ceil(per_query / TORCH_LIVE_FRACTION / 2**20)} MiB.")
    chunk = max(1, min(chunk, SAMPLED_MAX_CHUNK, num_queries or SAMPLED_MAX_CHUNK))
    return MemoryPlan("sampled", budget, chunk, candidates, int(chunk * per_query))


def check_protocol(protocol: str, candidates: int, candidate_seed: int = 0) -> None:
    if protocol not in PROTOCOLS:
        raise EmukgError(f"--protocol {protocol}: choose full or sampled.")
    if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
        raise EmukgError(f"--candidates {candidates}: must be a positive integer (OGB uses 500).")
    if isinstance(candidate_seed, bool) or not isinstance(candidate_seed, int) or candidate_seed < 0:
        raise EmukgError(f"candidate_seed {candidate_seed}: must be an integer ≥ 0.")


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


def _warn_nan(count: int, logger, stacklevel: int) -> None:
    """One warning (Python's and the log's) when ``count`` candidate scores were NaN; ``stacklevel`` as the caller's."""
    if count:
        msg = (f"evaluate: {count:,} candidate scores were NaN; they rank as the worst candidates "
               "(a NaN answer ranks last). The model has probably diverged.")
        warnings.warn(msg, RuntimeWarning, stacklevel=stacklevel + 1)
        logger.warning(msg)


class _Progress:
    """Evaluation progress: a tqdm bar (``progress``) and a log line about every ``log_every`` queries."""

    def __init__(self, total: int, name: str, progress: bool, log_every: int, logger, t0: float):
        self.total, self.name, self.logger, self.t0, self.done = total, name, logger, t0, 0
        self.every = log_every if log_every and log_every > 0 else None
        self.next_log = self.every
        self.bar = None
        if progress:
            from tqdm.auto import tqdm  # a widget in Jupyter, a text bar on a terminal

            self.bar = tqdm(total=total, desc=f"evaluate {name}", unit="q", leave=False)

    def advance(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        if self.next_log is not None and self.done >= self.next_log:
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            self.logger.info("Evaluating %s: %d/%d queries (%.0f queries/s)", self.name, self.done, self.total, rate)
            while self.next_log <= self.done:
                self.next_log += self.every

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _sampled_ranks(model, kg: KnowledgeGraph, name: str, triples: torch.Tensor, *, memory_mb, filtered, progress,
                   log_every, logger, candidates: int, candidate_seed: int) -> Ranks:
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
            meter = _Progress(total, f"{name} (sampled)", progress, log_every, logger, t0)
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
    _warn_nan(nan_scores, logger, stacklevel=4)
    return Ranks(name, optimistic, pessimistic, triples[:, 1].to("cpu").repeat(2), seconds, nan_scores, "torch", plan,
                 protocol=f"sampled-{candidates}", candidates={"candidates": candidates, "candidate_seed": candidate_seed})


# ---------------------------------------------------------------------------------------------------------
# metrics
def metrics_from_ranks(ranks: torch.Tensor) -> dict:
    """MRR, MR, HITS@1/3/10 of a float rank tensor (empty → NaN)."""
    if ranks.numel() == 0:
        return {k: float("nan") for k in METRICS}
    r = ranks.to(torch.float64)
    return {
        "MRR": float((1.0 / r).mean()),
        "MR": float(r.mean()),
        "HITS@1": float((r <= 1).to(torch.float64).mean()),
        "HITS@3": float((r <= 3).to(torch.float64).mean()),
        "HITS@10": float((r <= 10).to(torch.float64).mean()),
    }


def _per_group(ranks: torch.Tensor, groups: torch.Tensor, size: int) -> list[dict | None]:
    """Metrics per group id in one vectorised pass (bincount with weights)."""
    r = ranks.to(torch.float64)
    n = torch.bincount(groups, minlength=size).to(torch.float64)
    sums = {
        "MRR": torch.bincount(groups, weights=1.0 / r, minlength=size),
        "MR": torch.bincount(groups, weights=r, minlength=size),
        "HITS@1": torch.bincount(groups, weights=(r <= 1).to(torch.float64), minlength=size),
        "HITS@3": torch.bincount(groups, weights=(r <= 3).to(torch.float64), minlength=size),
        "HITS@10": torch.bincount(groups, weights=(r <= 10).to(torch.float64), minlength=size),
    }
    out: list[dict | None] = []
    n_list = n.tolist()
    cols = {k: (v / n.clamp(min=1)).tolist() for k, v in sums.items()}
    for g in range(size):
        if n_list[g] == 0:
            out.append(None)
        else:
            out.append({k: cols[k][g] for k in METRICS} | {"num_queries": int(n_list[g])})
    return out


# ---------------------------------------------------------------------------------------------------------
def _split_triples(kg: KnowledgeGraph, split) -> tuple[str, torch.Tensor]:
    if isinstance(split, torch.Tensor):
        if split.is_floating_point() or split.is_complex() or split.dtype == torch.bool:
            raise EmukgError(f"split: a tensor of triples must hold integer ids, not {split.dtype}; pass an (n, 3) int64 tensor.")
        if split.numel() % 3:
            raise EmukgError(f"split: a tensor of triples must have shape (n, 3), not {tuple(split.shape)}.")
        return "custom", split.reshape(-1, 3).long()
    if split not in kg.splits:
        raise EmukgError(f"--split {split}: no such split; choose one of {', '.join(kg.splits)}.")
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


@dataclass
class Ranks:
    """Per-query ranks of one split: tail queries (h, r, ?) first, then head queries (?, r, t), in split order."""

    split: str
    optimistic: torch.Tensor  # float64, 1 + #(score > answer's)
    pessimistic: torch.Tensor  # float64, 1 + #(score >= answer's), the answer itself not counted
    relations: torch.Tensor  # relation id of every query
    seconds: float
    nan_scores: int
    backend: str
    memory: MemoryPlan
    protocol: str = "full"  # 'full' or 'sampled-K'
    candidates: dict | None = None  # sampled protocol: {'candidates': K, 'candidate_seed': seed}

    @property
    def realistic(self) -> torch.Tensor:
        return (self.optimistic + self.pessimistic) / 2

    def by_policy(self, policy: str) -> torch.Tensor:
        return getattr(self, policy)


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
        return _sampled_ranks(model, kg, name, triples, memory_mb=memory_mb, filtered=filtered, progress=progress,
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
            lib = native_library() if device.type == "cpu" and backend != "torch" else None
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
            gt_all = torch.empty(total, dtype=torch.int64, device=device)
            ge_all = torch.empty(total, dtype=torch.int64, device=device)
            meter = _Progress(total, name, progress, log_every, logger, t0)
            for s, side in enumerate(SIDES):
                anchor_all = triples[:, 0] if side == "tail" else triples[:, 2]
                answer_all = triples[:, 2] if side == "tail" else triples[:, 0]
                rel_all = triples[:, 1]
                for c0 in range(0, n_trip, plan.chunk):
                    c1 = min(c0 + plan.chunk, n_trip)
                    a, r, ans = anchor_all[c0:c1], rel_all[c0:c1], answer_all[c0:c1]
                    out = ranker.native(a, r, ans, side) if use_native else None
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

    _warn_nan(ranker.nan_scores, logger, stacklevel=3)
    used = "native" if ranker.native_chunks and not ranker.torch_chunks else ("mixed" if ranker.native_chunks else "torch")
    return Ranks(name, optimistic, pessimistic, triples[:, 1].to("cpu").repeat(2), seconds, ranker.nan_scores, used,
                 plan if ranker.native_chunks else plan_t)


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

    ``backend``: 'auto' (native kernel where possible), 'native' (require it; TransE, RotatE, DistMult, ComplEx
    on CPU) or 'torch' (plain PyTorch through ``model.score_all``).  The model is put in eval mode; no gradients.
    ``log_every`` > 0 logs progress to ``logger`` about every that many queries.

    ``protocol``: 'full' (every entity is a candidate; default) or 'sampled' (``candidates`` fixed random entities
    per query, drawn from ``candidate_seed``; see the module docstring).  ``result['protocol']`` names it
    ('full' or 'sampled-K'); the sampled protocol ignores ``backend`` (it scores through ``model.score_ids``).
    """
    if tie_policy not in TIE_POLICIES:
        raise EmukgError(f"--tie-policy {tie_policy}: choose optimistic, pessimistic or realistic.")
    rk = compute_ranks(model, kg, split, memory_mb=memory_mb, filtered=filtered, progress=progress,
                       log_every=log_every, logger=logger, backend=backend, protocol=protocol, candidates=candidates,
                       candidate_seed=candidate_seed)
    return metrics_report(rk, kg, tie_policy, model_name=type(model).__name__, filtered=filtered)


def metrics_report(rk: Ranks, kg: KnowledgeGraph, tie_policy: str = "realistic", model_name: str = "",
                   filtered: bool = True) -> dict:
    """The result dictionary of :func:`evaluate` from computed ranks."""
    ranks = {pol: rk.by_policy(pol) for pol in TIE_POLICIES}
    chosen = ranks[tie_policy]
    n_trip = chosen.numel() // 2
    result: dict = {
        "split": rk.split,
        "dataset": kg.name,
        "model": model_name,
        "filtered": bool(filtered),
        "protocol": rk.protocol,
        **(rk.candidates or {}),
        "tie_policy": tie_policy,
        **metrics_from_ranks(chosen),
    }
    for pol in TIE_POLICIES:
        result[pol] = metrics_from_ranks(ranks[pol])
    for s, side in enumerate(SIDES):
        part = {pol: metrics_from_ranks(ranks[pol][s * n_trip:(s + 1) * n_trip]) for pol in TIE_POLICIES}
        result[side] = {**part[tie_policy], "num_queries": n_trip, **part}
    per_rel = _per_group(chosen, rk.relations, kg.num_relations)
    result["per_relation"] = {kg.relations[i]: m for i, m in enumerate(per_rel) if m is not None}
    result.update({
        "num_queries": 2 * n_trip,
        "seconds": rk.seconds,
        "queries_per_s": 2 * n_trip / rk.seconds if rk.seconds > 0 else float("inf"),
        "nan_scores": rk.nan_scores,
        "backend": rk.backend,
        "memory": rk.memory.to_dict(),
    })
    return result


# ---------------------------------------------------------------------------------------------------------
def synthetic_problem(num_entities: int = 1_000_000, num_relations: int = 10, num_train: int = 1000,
                      num_test: int = 16, hidden_dim: int = 100, model: str = "TransE", seed: int = 0, **model_kwargs):
    """A random graph and a randomly initialised model of the given size, for memory and speed checks of
    :func:`evaluate` on graphs larger than any dataset here (e.g. 1,000,000 entities, d = 100)."""
    from .models import build_model

    g = torch.Generator().manual_seed(seed)

    def triples(n):
        return torch.stack([torch.randint(0, num_entities, (n,), generator=g),
                            torch.randint(0, num_relations, (n,), generator=g),
                            torch.randint(0, num_entities, (n,), generator=g)], 1)

    splits = {"train": triples(num_train), "valid": triples(max(1, num_test // 2)), "test": triples(num_test)}
    kg = KnowledgeGraph([f"e{i}" for i in range(num_entities)], [f"r{i}" for i in range(num_relations)], splits,
                        name=f"synthetic-{num_entities}")
    torch.manual_seed(seed)
    m = build_model(model, num_entities, num_relations, hidden_dim, model_kwargs.pop("gamma", 12.0), **model_kwargs)
    return kg, m
