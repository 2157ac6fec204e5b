"""SANS structure-aware negatives: k-hop neighbourhoods and their disk cache.

A negative for a training triple is drawn from the graph neighbourhood of the entity that is *kept*:
head-batch (the head is corrupted) draws from the neighbourhood of the tail, tail-batch from that of the head.
The ``"sans"`` sampler that draws from these tables is :class:`emukg.negatives.SANSSampler`; this module builds and
caches the tables only and does not import :mod:`emukg.negatives` (the dependency runs sampling → sans).
Neighbourhoods live on the undirected training adjacency ``A``: binary, ``A[h, t] = A[t, h] = 1`` for every
training triple, *including* ``h == t`` — a triple (e, r, e) gives e a self loop, as in the reference code
(WN18RR has 7 such training triples).  A self loop lets a walk stay put, so it enters both kinds of neighbourhood.

Two kinds of neighbourhood, both returned as CSR arrays ``(indptr int64 (N+1,), indices int32 (nnz,))`` with
each row sorted and free of duplicates:

* **exact** (``num_walks == 0``): the non-zero pattern of ``A^k + A^(k-1)``, i.e. every entity joined to the
  row's entity by a walk of exactly ``k`` or exactly ``k-1`` steps.  Taken literally this *contains the entity
  itself*: ``A^0 = I`` for ``k = 1``, and for ``k >= 2`` every entity with an edge reaches itself in two steps.
  We keep it, as the formula gives it — the entity itself is a perfectly good corruption candidate, and it is
  filtered out like any other candidate exactly when it forms a training triple.  An entity without edges has an
  empty row for ``k >= 2`` (the sampler then draws uniformly); an entity whose only triple is a self loop has the
  row ``{itself}``.  Built with boolean sparse products (sparse
  results) or bit-packed breadth-first expansion (dense results, e.g. FB15k-237 with ``k = 3``), whichever a
  cost model predicts to be cheaper; both give the same pattern.  The size of the result is bounded from walk
  counts before anything is built, estimated from a sample of rows when the bound is over the memory budget,
  and checked again while building: an over-budget build is refused with a :class:`~emukg.errors.ParamError` that
  points to random-walk neighbourhoods (``num_random_walks``).  The errors name the settings a run is given
  (``khop``, ``num_random_walks``, ``walk_mode``, ``sans_memory_mb``), which the callers spell as flags.
* **random walk** (``num_walks = w > 0``): ``w`` walks of ``k`` uniform steps per entity; the distinct end nodes
  form the neighbourhood (visit counts are ignored).  ``walk_mode='restart'`` starts every walk at the source
  entity (what SANS describes); ``'chained'`` reproduces the reference code, where walk ``j`` starts where walk
  ``j-1`` ended (the first starts at the source).  All walks of a chunk of entities advance together as array
  operations (``next = indices[indptr[cur] + floor(u * degree[cur])]``), so FB15k-237 with ``k=3, w=1000`` takes
  well under a second instead of the reference's quarter of an hour.  Entities without edges get ``w`` uniformly
  random entities (an entity with only a self loop has an edge: its walks never leave it).  The walks are seeded from the run's seed (a NumPy ``Generator``), so a neighbourhood depends
  only on (training triples, N, k, w, walk mode, seed).  Every end node of a ``restart`` walk lies in the exact
  ``k``-hop pattern; the entity itself can be an end node (a walk that returns), and is kept like any other.

Neighbourhoods are cached on disk (``$EMUKG_CACHE_DIR`` or ``$XDG_CACHE_HOME/emukg`` or ``~/.cache/emukg``, then
``sans/``), keyed by a hash of the training triples' bytes and the parameters above — never by a folder name.
The key is stored inside the ``.npz`` too and checked on load with the array shapes and ranges; an unreadable,
truncated or stale file is logged and rebuilt.  Files are written atomically.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

from ..errors import EmukgError, ParamError
from ..resolver import unknown_name
from ..io_utils import atomic_path, user_cache_dir

log = logging.getLogger("emukg")

FORMAT_VERSION = 2  # 2: the adjacency keeps self loops (neighbourhoods of version 1 lacked them)
# Bytes of neighbourhood table (indices + indptr) a build may produce; the build's peak is about twice that (blocks
# are concatenated at the end) plus one block of working memory (_WORK_BYTES).
DEFAULT_MEMORY_BUDGET = 2 * 1024**3
WALK_MODES = ("restart", "chained")

# Fixed chunk sizes (entities per chunk).  They shape the order in which random numbers are consumed, so they are
# constants rather than memory-dependent: the same seed always gives the same neighbourhood.
_RESTART_CHUNK = 256
_CHAINED_CHUNK = 16384
_SEED_TAG = 0x5A45  # separates the walk stream from other uses of the run's seed
_WORK_BYTES = 64 * 1024**2  # working-memory target of one block of the exact build


# ----------------------------------------------------------------------------------------------------------------
# adjacency


def _as_triples(train_triples) -> np.ndarray:
    if isinstance(train_triples, torch.Tensor):
        train_triples = train_triples.detach().cpu().numpy()
    arr = np.ascontiguousarray(np.asarray(train_triples), dtype=np.int64)
    if arr.size == 0:
        return arr.reshape(0, 3)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"training triples must have shape (n, 3), not {arr.shape}")
    return arr


def _index_dtype(num_entities: int):
    return np.int32 if num_entities < 2**31 else np.int64


def undirected_adjacency(train_triples, num_entities: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(indptr int64, indices)`` of the binary undirected training graph: ``A[h,t] = A[t,h] = 1`` per triple.

    Self loops are kept: a triple (e, r, e) puts e in its own row (one entry, however many such triples).  Rows are
    sorted and duplicate-free; relations are ignored (several relations between two entities give one edge).
    Cost: one sort of ``2 * len(train)`` int64 keys.
    """
    tr = _as_triples(train_triples)
    N = int(num_entities)
    h, t = tr[:, 0], tr[:, 2]
    if tr.size and (min(h.min(), t.min()) < 0 or max(h.max(), t.max()) >= N):
        raise EmukgError(f"the training triples mention entity ids outside 0..{N - 1}; the dataset's entities.dict and its splits disagree.")
    key = np.sort(np.concatenate([h * N + t, t * N + h]))
    if key.size:
        key = key[np.concatenate([[True], key[1:] != key[:-1]])]  # sort + drop repeats (faster than np.unique)
    src, dst = np.divmod(key, N) if key.size else (key, key)
    indptr = np.zeros(N + 1, dtype=np.int64)
    np.cumsum(np.bincount(src, minlength=N), out=indptr[1:])
    return indptr, dst.astype(_index_dtype(N))


def _gib(nbytes: float) -> str:
    return f"{nbytes / 1024**3:.2f} GiB"


def _table_bytes(entries: float, num_entities: int) -> float:
    return float(entries) * np.dtype(_index_dtype(num_entities)).itemsize + 8.0 * (num_entities + 1)


# ----------------------------------------------------------------------------------------------------------------
# exact k-hop neighbourhoods


def _walk_counts(indptr, indices, N: int, k: int) -> list[np.ndarray]:
    """``[A^j 1 for j = 0..k]``: walks of length j from every entity (float64, clipped to stay finite)."""
    import scipy.sparse as sp

    A = sp.csr_matrix((np.ones(indices.size, dtype=np.float64), indices, indptr), shape=(N, N))
    out = [np.ones(N)]
    for _ in range(k):
        out.append(np.minimum(A @ out[-1], 1e30))
    return out


def _exact_rows_sparse(A, N: int, k: int, sources: np.ndarray, idx_dtype):
    """Rows ``sources`` of pattern(A^k + A^(k-1)) by boolean sparse products. Returns (counts, indices)."""
    import scipy.sparse as sp

    n = sources.size
    prev = sp.csr_matrix((np.ones(n, dtype=bool), sources, np.arange(n + 1)), shape=(n, N))  # rows of A^0 = I
    cur = A[sources]
    for _ in range(k - 1):
        prev, cur = cur, cur @ A
    if n * N <= _WORK_BYTES and (cur.nnz + prev.nnz) * 16 > n * N:
        # Dense result: mark a boolean block and read it back row by row — already sorted, no per-row sort.
        mask = np.zeros((n, N), dtype=bool)
        for part in (prev, cur):
            mask[np.repeat(np.arange(n), np.diff(part.indptr)), part.indices] = True
        return np.count_nonzero(mask, axis=1).astype(np.int64), np.broadcast_to(np.arange(N, dtype=idx_dtype), mask.shape)[mask]
    res = (cur + prev).tocsr()
    res.eliminate_zeros()
    res.sum_duplicates()  # also sorts the indices
    return np.diff(res.indptr).astype(np.int64), res.indices.astype(idx_dtype, copy=False)


def _or_step(F: np.ndarray, indptr: np.ndarray, indices: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Bit-packed ``A @ F``: row i of the result is the OR of the rows ``F[m]`` of i's neighbours m."""
    out = np.zeros_like(F)
    words = F.shape[1]
    limit = max(1, (16 * 1024**2) // (8 * words))  # edges gathered at once (~16 MiB)
    ends = indptr[active + 1]
    r0 = 0
    while r0 < active.size:
        e0 = indptr[active[r0]]
        r1 = int(np.searchsorted(ends, e0 + limit, side="right"))
        r1 = min(max(r1, r0 + 1), active.size)
        rows = active[r0:r1]
        gathered = F[indices[e0 : indptr[rows[-1] + 1]]]
        out[rows] = np.bitwise_or.reduceat(gathered, indptr[rows] - e0, axis=0)
        r0 = r1
    return out


def _exact_rows_bitset(indptr, indices, N: int, k: int, sources: np.ndarray, idx_dtype):
    """Rows ``sources`` of pattern(A^k + A^(k-1)) by bit-packed expansion.

    A is symmetric, so row s of A^j equals column s: one bit column per source, ``F_j = A F_(j-1)`` by ORs of
    neighbour rows, and the final bits are transposed back into rows.
    """
    n = sources.size
    width = -(-n // 64) * 64
    deg = np.diff(indptr)
    active = np.flatnonzero(deg > 0)
    cols = np.arange(n)

    def pack(bits: np.ndarray) -> np.ndarray:
        return np.packbits(bits, axis=1, bitorder="little").view(np.uint64)

    bits = np.zeros((N, width), dtype=bool)
    bits[sources, cols] = True
    prev = pack(bits)  # A^0 = I
    bits[sources, cols] = False
    starts, stops = indptr[sources], indptr[sources + 1]
    counts = stops - starts
    rows_of = np.repeat(np.arange(n), counts)
    flat = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(starts, counts)
    bits[indices[flat], rows_of] = True
    cur = pack(bits)  # A^1
    del bits
    for _ in range(k - 1):
        prev, cur = cur, _or_step(cur, indptr, indices, active)
    cur |= prev
    del prev
    unpacked = np.unpackbits(cur.view(np.uint8), axis=1, bitorder="little")[:, :n]
    del cur
    rows = np.ascontiguousarray(unpacked.T).view(bool)  # (n sources, N); unpackbits gives 0/1 bytes
    del unpacked
    row_counts = np.count_nonzero(rows, axis=1).astype(np.int64)
    ids = np.broadcast_to(np.arange(N, dtype=idx_dtype), rows.shape)[rows]
    return row_counts, ids


def _refuse_exact(k: int, N: int, nbytes: float, budget: int, how: str) -> ParamError:
    return ParamError(
        "khop", k,
        f"the exact {k}-hop SANS neighbourhood of {N} entities would need {how} {_gib(nbytes)}, over the memory budget "
        f"of {_gib(budget)}; use random-walk neighbourhoods instead ({{num_random_walks}} 1000), a smaller {{khop}}, "
        f"or raise the budget ({{sans_memory_mb}})."
    )


def _check_khop(k: int) -> None:
    if int(k) < 1:
        raise ParamError("khop", k, "the SANS neighbourhood radius must be at least 1.")


def exact_neighbourhood(
    indptr: np.ndarray,
    indices: np.ndarray,
    num_entities: int,
    k: int,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the non-zero pattern of ``A^k + A^(k-1)`` for the adjacency CSR ``(indptr, indices)``.

    ``method``: ``'sparse'`` (scipy boolean products), ``'bitset'`` (bit-packed expansion) or ``'auto'`` (the one a
    cost model predicts to be cheaper).  Raises :class:`EmukgError` when the table would exceed
    ``memory_budget_bytes``.
    """
    import scipy.sparse as sp

    _check_khop(k)
    N, k = int(num_entities), int(k)
    if method not in ("auto", "sparse", "bitset"):
        raise ValueError(f"method must be 'auto', 'sparse' or 'bitset', not {method!r}")
    idx_dtype = _index_dtype(N)
    indptr = np.asarray(indptr, dtype=np.int64)
    indices = np.asarray(indices).astype(np.int64 if idx_dtype == np.int64 else np.int32, copy=False)
    nnz = int(indices.size)
    wk = _walk_counts(indptr, indices, N, k)
    row_bound = np.minimum(float(N), wk[k] + wk[k - 1])  # distinct entries <= walks, <= N
    bound_bytes = _table_bytes(row_bound.sum(), N)
    if method == "auto":
        # Rough costs in nanoseconds, fitted on FB15k-237 and WN18RR: sparse products pay per multiply-add and per
        # output entry, the bitset path per 64-bit word OR-ed and per bit of the dense N x N result it unpacks.
        sparse_cost = 3.0 * sum(float(np.minimum(wk[j], nnz).sum()) for j in range(2, k + 1)) + 15.0 * float(row_bound.sum())
        bitset_cost = 11.0 * (k - 1) * nnz * math.ceil(N / 64) + 8.0 * float(N) * N
        method = "bitset" if bitset_cost < sparse_cost else "sparse"
    A = sp.csr_matrix((np.ones(nnz, dtype=bool), indices, indptr), shape=(N, N)) if method == "sparse" else None

    def rows_of(sources):
        if method == "sparse":
            return _exact_rows_sparse(A, N, k, sources, idx_dtype)
        return _exact_rows_bitset(indptr, indices, N, k, sources, idx_dtype)

    if bound_bytes > memory_budget_bytes:
        # The walk-count bound is loose on graphs with hubs: measure a random sample of rows before refusing.
        sample = np.sort(np.random.default_rng(0).choice(N, size=min(N, 256), replace=False))
        estimate = _table_bytes(rows_of(sample)[0].mean() * N, N)
        if estimate > memory_budget_bytes:
            raise _refuse_exact(k, N, estimate, memory_budget_bytes, "about")

    # Blocks of consecutive source entities, each bounded in working memory.
    if method == "bitset":
        per_block = max(64, (_WORK_BYTES // max(N, 1)) // 64 * 64)
        bounds = list(range(0, N, per_block)) + [N]
    else:
        cum = np.cumsum(row_bound)
        bounds, start = [0], 0
        while start < N:
            stop = int(np.searchsorted(cum, (cum[start - 1] if start else 0.0) + _WORK_BYTES // 8, side="right"))
            stop = min(max(stop, start + 1), N)
            bounds.append(stop)
            start = stop
    counts, pieces, total = [], [], 0
    for b0, b1 in zip(bounds[:-1], bounds[1:]):
        c, ids = rows_of(np.arange(b0, b1))
        total += ids.size
        if _table_bytes(total, N) > memory_budget_bytes:
            raise _refuse_exact(k, N, _table_bytes(total * N / b1, N), memory_budget_bytes, "about")
        counts.append(c)
        pieces.append(ids)
    out_ptr = np.zeros(N + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=out_ptr[1:])
    out_idx = np.concatenate(pieces) if pieces else np.zeros(0, dtype=idx_dtype)
    return out_ptr, out_idx


# ----------------------------------------------------------------------------------------------------------------
# random-walk neighbourhoods


def _check_walks(k: int, walk_mode: str) -> None:
    if walk_mode not in WALK_MODES:
        raise unknown_name("walk_mode", walk_mode, WALK_MODES, "walk mode")
    _check_khop(k)


def walk_rng(seed: int) -> np.random.Generator:
    """The NumPy generator of the neighbourhood walks for a run seed."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) % 2**64, _SEED_TAG])))


class _Walker:
    """Precomputed per-entity tables and reusable buffers for advancing many walks one uniform step at once."""

    def __init__(self, indptr: np.ndarray, indices: np.ndarray):
        self.N = indptr.size - 1
        deg = np.diff(indptr)
        self.deg = deg
        self.pos_dtype = np.int32 if indices.size < 2**31 else np.int64
        self.node_dtype = _index_dtype(self.N)
        self.start = indptr[:-1].astype(self.pos_dtype)
        # floor(u * d) < d holds in float32 for integer d < 2**24 (u <= 1 - 2**-24: the product rounds down,
        # never up to d); larger degrees need float64.
        self.float_dtype = np.float32 if (deg.max(initial=0) < 2**24) else np.float64
        self.degf = deg.astype(self.float_dtype)
        self.indices = indices.astype(self.node_dtype, copy=False)

    def step(self, cur: np.ndarray, u: np.ndarray, fbuf: np.ndarray, ibuf: np.ndarray, obuf: np.ndarray) -> None:
        """In place: ``cur <- indices[indptr[cur] + floor(u * degree[cur])]`` (every ``cur`` must have an edge)."""
        np.take(self.degf, cur, out=fbuf)
        np.multiply(fbuf, u, out=fbuf)
        np.copyto(obuf, fbuf, casting="unsafe")  # truncation = floor for non-negative values
        np.take(self.start, cur, out=ibuf)
        np.add(ibuf, obuf, out=ibuf)
        np.take(self.indices, ibuf, out=cur)

    def buffers(self, n: int):
        return (
            np.empty(n, dtype=self.float_dtype),
            np.empty(n, dtype=self.float_dtype),
            np.empty(n, dtype=self.pos_dtype),
            np.empty(n, dtype=self.pos_dtype),
        )


def _restart_walks(walker: _Walker, sources: np.ndarray, k: int, w: int, rng: np.random.Generator) -> np.ndarray:
    n = sources.size * w
    cur = np.repeat(sources.astype(walker.node_dtype), w)
    u, fbuf, ibuf, obuf = walker.buffers(n)
    for _ in range(k):
        rng.random(out=u, dtype=walker.float_dtype)
        walker.step(cur, u, fbuf, ibuf, obuf)
    return cur.reshape(sources.size, w)


def _chained_walks(walker: _Walker, sources: np.ndarray, k: int, w: int, rng: np.random.Generator) -> np.ndarray:
    n = sources.size
    ends = np.empty((w, n), dtype=walker.node_dtype)
    cur = sources.astype(walker.node_dtype)
    _, fbuf, ibuf, obuf = walker.buffers(n)
    total = w * k
    per_draw = max(1, min(total, (4 * 1024**2) // max(n, 1)))  # steps whose random numbers are drawn at once
    u = np.empty((per_draw, n), dtype=walker.float_dtype)
    done = 0
    while done < total:
        m = min(per_draw, total - done)
        rng.random(out=u[:m], dtype=walker.float_dtype)
        for i in range(m):
            walker.step(cur, u[i], fbuf, ibuf, obuf)
            s = done + i + 1
            if s % k == 0:
                ends[s // k - 1] = cur
        done += m
    return ends.T


def random_walk_end_nodes(
    indptr: np.ndarray,
    indices: np.ndarray,
    sources,
    k: int,
    num_walks: int,
    walk_mode: str = "restart",
    rng: np.random.Generator | int = 0,
    _walker: _Walker | None = None,
) -> np.ndarray:
    """Raw end nodes ``(len(sources), num_walks)`` of ``num_walks`` ``k``-step walks from every source.

    Duplicates and visit counts are kept (the neighbourhood builder removes them).  Sources without edges get
    uniformly random entities.  ``rng`` is a NumPy generator or a seed for :func:`walk_rng`.
    """
    _check_walks(k, walk_mode)
    if num_walks < 1:
        raise ValueError("num_walks must be positive")
    if not isinstance(rng, np.random.Generator):
        rng = walk_rng(rng)
    indptr = np.asarray(indptr, dtype=np.int64)
    walker = _walker or _Walker(indptr, np.asarray(indices))
    sources = np.asarray(sources, dtype=np.int64).reshape(-1)
    out = np.empty((sources.size, num_walks), dtype=walker.node_dtype)
    has_edges = walker.deg[sources] > 0
    isolated = np.flatnonzero(~has_edges)
    if isolated.size:
        out[isolated] = rng.integers(0, walker.N, size=(isolated.size, num_walks), dtype=walker.node_dtype)
    moving = np.flatnonzero(has_edges)
    if moving.size:
        walk = _restart_walks if walk_mode == "restart" else _chained_walks
        out[moving] = walk(walker, sources[moving], int(k), int(num_walks), rng)
    return out


def _distinct_rows(ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort every row in place and drop repeats: (counts per row, concatenated distinct values)."""
    ends.sort(axis=1)
    keep = np.empty(ends.shape, dtype=bool)
    keep[:, :1] = True
    np.not_equal(ends[:, 1:], ends[:, :-1], out=keep[:, 1:])
    return np.count_nonzero(keep, axis=1).astype(np.int64), ends[keep]


def walk_neighbourhood(
    indptr: np.ndarray,
    indices: np.ndarray,
    num_entities: int,
    k: int,
    num_walks: int,
    walk_mode: str = "restart",
    seed: int = 0,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
) -> tuple[np.ndarray, np.ndarray]:
    """CSR of the distinct end nodes of ``num_walks`` ``k``-step random walks from every entity."""
    N = int(num_entities)
    _check_walks(k, walk_mode)
    rng = walk_rng(seed)
    walker = _Walker(np.asarray(indptr, dtype=np.int64), np.asarray(indices))
    chunk = _RESTART_CHUNK if walk_mode == "restart" else _CHAINED_CHUNK
    counts, pieces, total = [], [], 0
    for c0 in range(0, N, chunk):
        c1 = min(N, c0 + chunk)
        ends = random_walk_end_nodes(indptr, indices, np.arange(c0, c1), k, num_walks, walk_mode, rng, _walker=walker)
        c, ids = _distinct_rows(ends)
        total += ids.size
        if _table_bytes(total, N) > memory_budget_bytes:
            raise ParamError(
                "num_random_walks", num_walks,
                f"the random-walk SANS neighbourhood of {N} entities would need about "
                f"{_gib(_table_bytes(total * N / c1, N))}, over the memory budget of {_gib(memory_budget_bytes)}; "
                "use fewer walks (a smaller {num_random_walks}) or raise the budget ({sans_memory_mb})."
            )
        counts.append(c)
        pieces.append(ids)
    out_ptr = np.zeros(N + 1, dtype=np.int64)
    if counts:
        np.cumsum(np.concatenate(counts), out=out_ptr[1:])
    out_idx = np.concatenate(pieces) if pieces else np.zeros(0, dtype=walker.node_dtype)
    return out_ptr, out_idx


def build_neighbourhood(
    train_triples,
    num_entities: int,
    k: int,
    num_walks: int,
    walk_mode: str = "restart",
    seed: int = 0,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    *,
    method: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The SANS neighbourhood of every entity as CSR ``(indptr int64 (N+1,), indices int32 (nnz,))``.

    ``num_walks == 0``: exact pattern of ``A^k + A^(k-1)``; ``num_walks > 0``: distinct end nodes of that many
    ``k``-step random walks per entity (``walk_mode`` 'restart' or 'chained', seeded by ``seed``).  No cache;
    see :func:`load_or_build_neighbourhood`.
    """
    if int(num_walks) < 0:
        raise ParamError("num_random_walks", num_walks, "the number of random walks must be 0 (exact neighbourhood) or positive.")
    _check_khop(k)
    indptr, indices = undirected_adjacency(train_triples, num_entities)
    if int(num_walks) == 0:
        return exact_neighbourhood(indptr, indices, num_entities, k, memory_budget_bytes, method=method)
    return walk_neighbourhood(indptr, indices, num_entities, k, int(num_walks), walk_mode, seed, memory_budget_bytes)


# ----------------------------------------------------------------------------------------------------------------
# disk cache


def neighbourhood_cache_dir() -> Path:
    """``$EMUKG_CACHE_DIR`` or ``$XDG_CACHE_HOME/emukg`` or ``~/.cache/emukg``, then ``sans/``."""
    return user_cache_dir("sans")


def neighbourhood_key(train_triples, num_entities: int, k: int, num_walks: int, walk_mode: str = "restart", seed: int = 0) -> dict:
    """Everything a neighbourhood depends on.  Walk mode and seed do not matter (and are not part of it) when exact."""
    tr = _as_triples(train_triples)
    exact = int(num_walks) == 0
    return {
        "format": FORMAT_VERSION,
        "train_sha256": hashlib.sha256(tr.tobytes()).hexdigest(),
        "train_shape": list(tr.shape),
        "num_entities": int(num_entities),
        "khop": int(k),
        "num_random_walks": int(num_walks),
        "walk_mode": "exact" if exact else str(walk_mode),
        "seed": None if exact else int(seed),
    }


def cache_file(key: dict, directory: str | os.PathLike | None = None) -> Path:
    """The cache file of a key (a hash of the key, never a dataset's folder name)."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:32]
    return Path(directory) / f"{digest}.npz" if directory is not None else neighbourhood_cache_dir() / f"{digest}.npz"


def check_csr(indptr: np.ndarray, indices: np.ndarray, num_entities: int) -> str | None:
    """Why ``(indptr, indices)`` is not a valid neighbourhood table of ``num_entities`` rows, or None."""
    if indptr.ndim != 1 or indices.ndim != 1:
        return "arrays are not one-dimensional"
    if not (np.issubdtype(indptr.dtype, np.integer) and np.issubdtype(indices.dtype, np.integer)):
        return "arrays are not integer arrays"
    if indptr.size != num_entities + 1:
        return f"indptr has {indptr.size} entries, expected {num_entities + 1}"
    if indptr[0] != 0 or indptr[-1] != indices.size:
        return "indptr does not span the indices"
    if np.any(np.diff(indptr) < 0):
        return "indptr is not monotone"
    if indices.size and (indices.min() < 0 or indices.max() >= num_entities):
        return "entity ids out of range"
    return None


def _read_cache(path: Path, key: dict) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            stored = json.loads(str(z["key"][()]))
            indptr, indices = z["indptr"], z["indices"]
    except Exception as exc:  # unreadable, truncated, not a zip, missing members...
        log.warning("SANS cache %s is unreadable (%s: %s); rebuilding it.", path, type(exc).__name__, exc)
        return None
    if stored != key:
        log.warning("SANS cache %s was built for different inputs (stale or hash collision); rebuilding it.", path)
        return None
    problem = check_csr(indptr, indices, key["num_entities"])
    if problem:
        log.warning("SANS cache %s is inconsistent (%s); rebuilding it.", path, problem)
        return None
    return indptr.astype(np.int64, copy=False), indices


def _write_cache(path: Path, key: dict, indptr: np.ndarray, indices: np.ndarray) -> None:
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, indptr=indptr, indices=indices, key=np.array(json.dumps(key, sort_keys=True)))
                f.flush()
                os.fsync(f.fileno())
    except OSError as exc:
        log.warning("could not write the SANS cache %s (%s); continuing without it.", path, exc)


def load_or_build_neighbourhood(
    train_triples,
    num_entities: int,
    k: int,
    num_walks: int,
    walk_mode: str = "restart",
    seed: int = 0,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    *,
    use_cache: bool = True,
    directory: str | os.PathLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`build_neighbourhood` through the disk cache (see the module docstring)."""
    key = neighbourhood_key(train_triples, num_entities, k, num_walks, walk_mode, seed)
    path = cache_file(key, directory)
    if use_cache:
        hit = _read_cache(path, key)
        if hit is not None:
            log.info("SANS neighbourhood loaded from the cache %s (%.1f entries per entity).", path, hit[1].size / max(1, num_entities))
            return hit
    t0 = time.perf_counter()
    indptr, indices = build_neighbourhood(train_triples, num_entities, k, num_walks, walk_mode, seed, memory_budget_bytes)
    what = "exact" if int(num_walks) == 0 else f"{num_walks} {walk_mode} walks"
    log.info(
        "SANS neighbourhood (k=%d, %s) built in %.2f s: %.1f entries per entity.", k, what, time.perf_counter() - t0, indices.size / max(1, num_entities)
    )
    if use_cache:
        _write_cache(path, key, indptr, indices)
    return indptr, indices
