"""The memory plan of one evaluation: queries per chunk (and entities per slice) so that a step fits ``memory_mb``.

:func:`plan_memory` sizes the full ranking (native kernel or PyTorch blocks), :func:`plan_sampled` the sampled
protocol; both read the budget through :func:`budget_bytes`, which refuses a ``memory_mb`` that is not positive.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import asdict, dataclass

import torch

from ..errors import ParamError

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


def budget_bytes(memory_mb: float) -> int:
    """``memory_mb`` MiB in bytes; a :class:`~emukg.errors.ParamError` naming ``memory_mb`` unless it is a positive
    number (of at least one byte)."""
    if (isinstance(memory_mb, bool) or not isinstance(memory_mb, numbers.Real) or not math.isfinite(memory_mb)
            or int(memory_mb * 2**20) <= 0):
        raise ParamError("memory_mb", memory_mb, "must be a positive number of MiB.")
    return int(memory_mb * 2**20)


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
    budget = budget_bytes(memory_mb)
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
            raise ParamError("memory_mb", memory_mb, f"too small for {N:,} entities; give at least "
                             f"{math.ceil((fixed + per_query) / 2**20)} MiB.")
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
        raise ParamError("memory_mb", memory_mb, f"too small for this model; give at least {math.ceil(need / 2**20)} MiB.")
    slice_ = min(slice_, N)
    return MemoryPlan("torch", budget, chunk, slice_, int(chunk * per_query + slice_ * (chunk * per_pair + per_slice_entity)))


# bytes per (query, candidate) pair of the sampled protocol besides the gathered embeddings and the model's
# broadcast intermediates: candidate id, score, NaN/comparison masks, the filter lookup (key, position, found key,
# flag) and the exclusion pairs
SAMPLED_PAIR_BYTES = 8 + TORCH_PAIR_BYTES + 8 * 3 + 1 + 16
SAMPLED_MAX_CHUNK = 4096


def plan_sampled(model, candidates: int, memory_mb: float, num_queries: int | None = None) -> MemoryPlan:
    """Queries per chunk of the sampled protocol: per query, ``candidates + 1`` scored pairs, each holding its
    gathered entity row and ``BROADCAST_FACTOR × entity_dim`` floats of the model's intermediates (4 bytes each)
    plus :data:`SAMPLED_PAIR_BYTES`; planned for :data:`TORCH_LIVE_FRACTION` of the budget as on the full path."""
    budget = budget_bytes(memory_mb)
    dim = int(model.entity_embedding.shape[1])
    per_pair = 4 * dim * (1 + BROADCAST_FACTOR.get(type(model).__name__, 3.0)) + SAMPLED_PAIR_BYTES
    per_query = (candidates + 1) * per_pair + 4 * int(model.relation_embedding.shape[1]) + 64
    live = budget * TORCH_LIVE_FRACTION
    chunk = int(live // per_query)
    if chunk < 1:
        raise ParamError("memory_mb", memory_mb, f"too small for {candidates} candidates per query; give at least "
                         f"{math.ceil(per_query / TORCH_LIVE_FRACTION / 2**20)} MiB.")
    chunk = max(1, min(chunk, SAMPLED_MAX_CHUNK, num_queries or SAMPLED_MAX_CHUNK))
    return MemoryPlan("sampled", budget, chunk, candidates, int(chunk * per_query))
