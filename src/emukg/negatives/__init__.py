"""Negative samplers: which entities replace the corrupted side of each positive.

A sampler is looked up by name in :data:`SAMPLERS` (an :class:`emukg.resolver.Registry`: any case, and an unknown
name is a :class:`~emukg.errors.ParamError` about ``sampler`` that suggests the nearest one) and built by
:func:`build_sampler`::

    sampler = SAMPLERS.get("filtered")(kg, num_negatives, device, generator)
    negatives = sampler.sample(positives, side)      # (B, 3) on device -> (B, n) int64 entity ids

``side='tail'`` replaces the tail (the kept pair is (h, r)), ``side='head'`` replaces the head (kept (r, t)).

* ``"uniform"``: n entities uniformly at random, unfiltered (the CE loss's fresh negatives, ``sampler='uniform'``).
* ``"filtered"``: the reference's data-side negatives: draw 2n candidates, drop those that form a
  *training* triple with the kept pair, keep the first n valid ones in draw order, and draw again for the rows
  still short (:func:`filter_and_refill`).
* ``"sans"``: :class:`SANSSampler`, candidates from the kept entity's k-hop neighbourhood (built and cached by
  :mod:`emukg.negatives.sans`), the same filter and refill, and a per-row sticky fallback to uniform draws.

All three are registered when this module is imported.  The dependency is one-directional: this module imports
:mod:`emukg.negatives.sans` (neighbourhood tables), which imports nothing from here.

Everything is batched tensor code on the training device; randomness comes from the passed ``torch.Generator``.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np
import torch

import emukg.kernels as kernels
import emukg.negatives.device as device_module
import emukg.negatives.sans as sans
from ..errors import ParamError
from ..resolver import Registry

log = logging.getLogger("emukg")

SAMPLERS: Registry[type["NegativeSampler"]] = Registry("sampler", "negative sampler")

DrawFn = Callable[[torch.Tensor, int], torch.Tensor]

# the fix for data that leaves no filtered negative, in a ParamError's reason (each caller spells the settings)
UNFILTERED = "use unfiltered negatives ({loss=ce,sampler=uniform})"


def register_sampler(name: str):
    """Class decorator: make a :class:`NegativeSampler` subclass available as ``SAMPLERS.get(name)`` (any case)."""

    def deco(cls):
        SAMPLERS.register(cls, name=name)
        cls.name = name
        return cls

    return deco


def uniform_ids(num_entities: int, shape: tuple[int, ...], generator: torch.Generator, device) -> torch.Tensor:
    """``torch.randint(0, num_entities, shape)`` on ``device``; on the CPU through :func:`emukg.kernels.randint`
    (the same bits and generator state, about 4× faster)."""
    if generator.device.type == "cpu" and torch.device(device).type == "cpu":
        return kernels.randint(num_entities, shape, generator)
    return torch.randint(0, num_entities, shape, generator=generator, device=device)


def uniform_draw(num_entities: int, generator: torch.Generator, device) -> DrawFn:
    """A draw function: ``k`` uniformly random entity ids for each of the given rows."""

    def draw(rows: torch.Tensor, k: int) -> torch.Tensor:
        return uniform_ids(num_entities, (rows.numel(), k), generator, device)

    return draw


def filter_and_refill(kg_filter, positives: torch.Tensor, side: str, n: int, draw_fn: DrawFn,
                      generator: torch.Generator | None = None, *, fallback_fn: DrawFn | None = None,
                      max_rounds: int = 10_000, native: bool | None = None) -> torch.Tensor:
    """Filtered negatives (B, n): candidates from ``draw_fn`` that form no triple of ``kg_filter`` with the kept pair.

    Each round draws ``2n`` candidates for every row that is still short (``draw_fn(rows, 2n)`` → (len(rows), 2n),
    ``rows`` the row indices into ``positives``), drops those for which ``kg_filter.contains`` is true, and appends
    the survivors in draw order until the row holds ``n``.

    ``fallback_fn`` (a uniform draw, for SANS) makes the switch sticky and per row, as in the reference code: a
    row whose ``draw_fn`` round leaves **zero** survivors is flagged "fallen back" (that round adds nothing), and a
    flagged row draws from ``fallback_fn`` in every later round; a row that keeps getting survivors keeps using
    ``draw_fn`` however many rounds it needs.  Without ``fallback_fn`` every round uses ``draw_fn``.

    Rows whose kept pair is true for every entity can never be filled: they raise a :class:`ParamError` after the
    first round; ``max_rounds`` is only a safety net against draws that never produce survivors (a
    :class:`ParamError` about ``negative_sample_size``).  Both name the settings of unfiltered negatives.
    Cost per round: ``2n`` draws and lookups per short row.  ``generator`` is unused here (the draw functions carry
    their own) and kept for symmetry with the samplers.  ``native``: None = the CPU kernel when available, False =
    tensor ops only; both give identical results for the same draws.
    """
    B = positives.shape[0]
    device = positives.device
    out = torch.empty(B, n, dtype=torch.long, device=device)
    if B == 0 or n == 0:
        return out
    h, r, t = positives[:, 0], positives[:, 1], positives[:, 2]
    if side not in ("head", "tail"):
        raise ValueError(f"side must be 'head' or 'tail', not {side!r}")
    filled = torch.zeros(B, dtype=torch.long, device=device)
    rows = torch.arange(B, device=device)
    fallen = torch.zeros(B, dtype=torch.bool, device=device)  # sticky per-row "draws from fallback_fn" flag
    any_fallen = False
    valid = _Validity(kg_filter, h, r, t, side, native=native)
    k = 2 * n
    for round_ in range(max_rounds):
        if any_fallen:
            flag = fallen[rows]
            primary, backup = rows[~flag], rows[flag]
        else:
            primary, backup = rows, rows[:0]
        if primary.numel():
            found = valid.fill(primary, draw_fn(primary, k), out, filled, n)
            if fallback_fn is not None:
                empty = found.to(device) == 0  # nothing survived, so nothing was appended: fall back from now on
                if bool(empty.any()):
                    fallen[primary[empty]] = True
                    any_fallen = True
        if backup.numel():
            valid.fill(backup, fallback_fn(backup, k), out, filled, n)
        rows = rows[filled[rows] < n]
        if rows.numel() == 0:
            return out
        if round_ == 0:
            _check_fillable(kg_filter, h[rows], r[rows], t[rows], side)
    raise ParamError("negative_sample_size", n, f"negative sampling could not find {n} filtered negatives for "
                     f"{rows.numel()} positives after {max_rounds} rounds; lower {{negative_sample_size}} or {UNFILTERED}.")


class _Validity:
    """valid(rows, cand) -> bool (len(rows), k): cand forms no triple of the filter with row's kept pair;
    ``fill(rows, cand, out, filled, n)`` appends each row's valid candidates, in draw order, to ``out``.

    On the CPU with the native library (``kernels/sample_step.c``), ``fill`` filters and compacts in one pass,
    checking each row against its own CSR answer list (``FilterIndex.segments``; a bitmap over the entities
    for long lists), through the checked wrapper :func:`emukg.kernels.filter_fill` (ids, shapes and segments
    checked before C runs).  Otherwise tensor ops: ``FilterIndex.contains`` (a search over all triple keys) and a
    cumsum scatter.
    """

    def __init__(self, kg_filter, h, r, t, side, native: bool | None = None):
        self.filter, self.h, self.r, self.t, self.side = kg_filter, h, r, t, side
        self.lib = None  # the loaded sample_step library when the native path is used (an availability flag only)
        if native is not False and h.device.type == "cpu" and hasattr(kg_filter, "segments"):
            import emukg.kernels as kernels

            self.lib = kernels.load("sample_step")
        if self.lib is not None:
            start, count, vals = kg_filter.segments(h if side == "tail" else t, r, side)
            self.start, self.count, self.vals = start.contiguous(), count.contiguous(), vals.contiguous()

    def __call__(self, rows: torch.Tensor, cand: torch.Tensor) -> torch.Tensor:
        h, r, t = self.h[rows], self.r[rows], self.t[rows]
        if self.side == "tail":
            return ~self.filter.contains(h.unsqueeze(1), r.unsqueeze(1), cand)
        return ~self.filter.contains(cand, r.unsqueeze(1), t.unsqueeze(1))

    def fill(self, rows: torch.Tensor, cand: torch.Tensor, out: torch.Tensor, filled: torch.Tensor, n: int) -> torch.Tensor:
        """Append row ``rows[i]``'s valid candidates ``cand[i]`` (in order) to ``out`` while it holds fewer than ``n``
        (``filled`` counts, updated in place); returns the number of valid candidates per row, (len(rows),)."""
        if self.lib is not None:
            import emukg.kernels as kernels

            if n != out.shape[1]:
                raise ValueError(f"fill: n ({n}) must equal out.shape[1] ({out.shape[1]}) on the native path.")
            return kernels.filter_fill(rows.to(torch.int64).contiguous(), cand.to(torch.int64).contiguous(), out, filled,
                                       self.start, self.count, self.vals, self.filter.num_entities)
        ok = self(rows, cand)
        slot = filled[rows].unsqueeze(1) + torch.cumsum(ok, 1) - 1  # output column of each survivor
        keep = ok & (slot < n)
        sub = keep.nonzero()
        out[rows[sub[:, 0]], slot[sub[:, 0], sub[:, 1]]] = cand[sub[:, 0], sub[:, 1]]
        filled[rows] += keep.sum(1)
        return ok.sum(1)


def _check_fillable(kg_filter, h, r, t, side):
    anchor = h if side == "tail" else t
    full = kg_filter.counts(anchor, r, side) >= kg_filter.num_entities
    if bool(full.any()):
        i = int(full.nonzero()[0, 0])
        raise ParamError("sampler", "", f"negative sampling: ({int(h[i])}, {int(r[i])}, {int(t[i])}) — every entity forms a "
                         f"training triple with the kept pair, so no filtered negative exists; {UNFILTERED}.")


class NegativeSampler:
    """Base class: ``sample(positives (B, 3), side) -> (B, n)`` entity ids on ``device``."""

    name = "base"

    def __init__(self, kg, num_negatives: int, device, generator: torch.Generator):
        self.kg = kg
        self.num_entities = kg.num_entities
        self.num_negatives = int(num_negatives)
        self.device = torch.device(device)
        self.generator = generator

    @classmethod
    def from_config(cls, config, kg, device, generator: torch.Generator) -> "NegativeSampler":
        """Build from a :class:`~emukg.config.Config`; samplers with extra settings (SANS) override this."""
        return cls(kg, config.negative_sample_size, device, generator)

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.num_negatives})"


@register_sampler("uniform")
class UniformSampler(NegativeSampler):
    """n entities uniformly at random, unfiltered (may contain true triples and the positive itself)."""

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        if side not in ("head", "tail"):
            raise ValueError(f"side must be 'head' or 'tail', not {side!r}")
        return uniform_ids(self.num_entities, (positives.shape[0], self.num_negatives), self.generator, self.device)


@register_sampler("filtered")
class FilteredUniformSampler(NegativeSampler):
    """Uniform candidates minus those forming a training triple with the kept pair (the reference's negatives)."""

    def __init__(self, kg, num_negatives, device, generator):
        super().__init__(kg, num_negatives, device, generator)
        self.filter = kg.train_filter.to(self.device)
        self.draw = uniform_draw(self.num_entities, generator, self.device)

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        return filter_and_refill(self.filter, positives, side, self.num_negatives, self.draw, self.generator)


@register_sampler("sans")
class SANSSampler(NegativeSampler):
    """Structure-aware negatives: ``n`` filtered draws per positive from the kept entity's k-hop neighbourhood.

    Head-batch (``side='head'``) draws from the neighbourhood of the tail, tail-batch from that of the head,
    uniformly over its entries (with replacement: entry ``indptr[e] + floor(u * size[e])``).  Candidates forming a
    training triple with the kept pair are dropped and refilled by :func:`filter_and_refill` with the reference's
    sticky fallback: a positive whose neighbourhood round of ``2n`` draws leaves zero survivors draws uniformly for
    all its remaining rounds; until then it draws from the neighbourhood, with no cap on the number of rounds.  An
    entity with an empty neighbourhood (no triple at all, ``k >= 2`` exact) draws uniformly from the start.
    ``max_rounds`` is only the safety net of :func:`filter_and_refill`.  The neighbourhood (CSR on the training
    device) comes from :func:`emukg.negatives.sans.load_or_build_neighbourhood`.
    """

    def __init__(
        self,
        kg,
        num_negatives: int,
        device,
        generator: torch.Generator | None = None,
        *,
        khop: int = 3,
        num_random_walks: int = 0,
        walk_mode: str = "restart",
        seed: int = 0,
        memory_budget_bytes: int = sans.DEFAULT_MEMORY_BUDGET,
        use_cache: bool = True,
        max_rounds: int = 10_000,
        neighbourhood: tuple[np.ndarray, np.ndarray] | None = None,
    ):
        super().__init__(kg, num_negatives, device, generator)
        self.khop, self.num_random_walks, self.walk_mode = int(khop), int(num_random_walks), walk_mode
        self.max_rounds = int(max_rounds)
        N = kg.num_entities
        if neighbourhood is None:
            neighbourhood = sans.load_or_build_neighbourhood(
                kg.train, N, khop, num_random_walks, walk_mode, seed, memory_budget_bytes, use_cache=use_cache
            )
        indptr, indices = np.asarray(neighbourhood[0]), np.asarray(neighbourhood[1])
        problem = sans.check_csr(indptr, indices, N)
        if problem:
            raise ValueError(f"invalid neighbourhood table: {problem}")
        self.indptr = torch.from_numpy(np.ascontiguousarray(indptr, dtype=np.int64)).to(self.device)
        self.indices = torch.from_numpy(np.ascontiguousarray(indices)).to(self.device)
        self.filter = kg.train_filter.to(self.device)
        self.uniform = uniform_draw(N, generator, self.device)
        # floor(u * c) < c for float32 u <= 1 - 2**-24 and integer c < 2**24; beyond that use float64.
        big = max(N, int(np.diff(indptr).max(initial=0)))
        self._float = torch.float32 if big < 2**24 else torch.float64

    @classmethod
    def from_config(cls, config, kg, device, generator: torch.Generator | None = None, **kwargs) -> "SANSSampler":
        return cls(
            kg,
            config.negative_sample_size,
            device,
            generator,
            khop=config.khop,
            num_random_walks=config.num_random_walks,
            walk_mode=config.walk_mode,
            seed=config.seed,
            **{"memory_budget_bytes": int(getattr(config, "sans_memory_mb", sans.DEFAULT_MEMORY_BUDGET >> 20)) << 20, **kwargs},
        )

    def neighbourhood_sizes(self) -> torch.Tensor:
        """Entries per entity, (N,) int64."""
        return self.indptr[1:] - self.indptr[:-1]

    def __repr__(self) -> str:
        how = "exact" if self.num_random_walks == 0 else f"{self.num_random_walks} {self.walk_mode} walks"
        return f"SANSSampler(n={self.num_negatives}, k={self.khop}, {how})"

    def draw_fn(self, positives: torch.Tensor, side: str) -> DrawFn:
        """The neighbourhood draw of :meth:`sample`: ``draw(rows, k)`` → (len(rows), k) ids, uniform over the kept
        entities' neighbourhood entries (uniform over all entities for an empty neighbourhood)."""
        if side == "head":
            kept = positives[:, 2]
        elif side == "tail":
            kept = positives[:, 0]
        else:
            raise ValueError(f"side must be 'head' or 'tail', not {side!r}")
        kept = kept.long()
        size = self.indptr[kept + 1] - self.indptr[kept]
        start = torch.where(size > 0, self.indptr[kept], torch.zeros_like(size))  # empty rows: a valid dummy index
        empty = size == 0
        any_empty = bool(empty.any())
        N, indices = self.num_entities, self.indices

        def draw(rows: torch.Tensor, k: int) -> torch.Tensor:
            u = torch.rand((rows.numel(), k), generator=self.generator, device=kept.device, dtype=self._float)
            if indices.numel() == 0:
                return (u * N).long()
            # floor(u * c) < c for float32 u <= 1 - 2**-24 and integer c < 2**24 (float64 beyond): no clamp needed.
            out = indices[(u * size[rows, None]).long().add_(start[rows, None])].long()
            if any_empty:
                out = torch.where(empty[rows, None], (u * N).long(), out)
            return out

        return draw

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        draw = self.draw_fn(positives, side)
        return filter_and_refill(self.filter, positives, side, self.num_negatives, draw, self.generator,
                                 fallback_fn=self.uniform, max_rounds=self.max_rounds)


class FixedTailNegatives(NegativeSampler):
    """The reference's ``-if_adv_neg``: tail-side negatives from one fixed table, head-side ones from ``inner``.

    The table holds n uniformly random, unfiltered entities per training triple, drawn once when the sampler is
    built (from the run's generator, so a resumed run rebuilds the same table).  That is what the reference's
    "adversarial negatives from the best model" end up being: its rank lookup always reports rank 0, so every row
    falls through to uniform draws.  Memory: 8·n bytes per training triple (FB15k-237, n = 256: 557 MB), plus
    one sorted int64 key per training triple for the lookup.
    """

    name = "fixed-tail"

    def __init__(self, inner: NegativeSampler, kg, device, generator: torch.Generator):
        super().__init__(kg, inner.num_negatives, device, generator)
        self.inner = inner
        train = kg.train.to(self.device)
        self.R = kg.num_relations
        keys = (train[:, 0] * self.R + train[:, 1]) * self.num_entities + train[:, 2]
        self.keys, self.order = torch.sort(keys)
        self.table = torch.randint(0, self.num_entities, (train.shape[0], self.num_negatives), generator=generator, device=self.device)

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        if side != "tail":
            return self.inner.sample(positives, side)
        keys = (positives[:, 0] * self.R + positives[:, 1]) * self.num_entities + positives[:, 2]
        pos = torch.searchsorted(self.keys, keys).clamp_(max=self.keys.numel() - 1)
        if not bool((self.keys[pos] == keys).all()):
            raise ValueError("fixed tail negatives exist for training triples only")
        return self.table[self.order[pos]]


def _build(name: str, config, kg, device, generator) -> NegativeSampler:
    """The registered sampler ``name`` (a Config.sampler name) built from ``config``; with ``sampler_rounds`` (by
    default on CUDA) its fixed-shape twin (:mod:`emukg.negatives.device`)."""
    sampler = SAMPLERS.get(name).from_config(config, kg, device, generator)
    rounds = getattr(config, "sampler_rounds", 0)
    if rounds is None:  # auto: the fixed-shape twin where a host round trip costs (CUDA), the exact loop elsewhere
        rounds = device_module.DEFAULT_ROUNDS if torch.device(device).type == "cuda" else 0
    return device_module.fixed_rounds(sampler, rounds) if rounds else sampler


def build_samplers(config, kg, device, generator: torch.Generator) -> tuple[NegativeSampler | None, NegativeSampler | None]:
    """``(loss sampler, adversarial sampler)`` of a run, from ``config.samplers_used()``: the loss's negatives
    (None for 1-vs-all) and, when the self-adversarial term draws its own data-side negatives (ce over uniform
    negatives, 1-vs-all), their sampler (else None: the term reuses the loss's).  ``fixed_tail_negatives``
    replaces the tail side of the data-side sampler by :class:`FixedTailNegatives`."""
    used = config.samplers_used()
    loss = _build(used["loss"], config, kg, device, generator) if used["loss"] else None
    adv = None
    if config.adversarial_draws_own:
        adv = _build(used["adversarial"], config, kg, device, generator)
    if config.fixed_tail_negatives:
        if adv is not None:
            adv = FixedTailNegatives(adv, kg, device, generator)
        elif loss is not None and used["loss"] != "uniform":
            loss = FixedTailNegatives(loss, kg, device, generator)
    return loss, adv


def build_sampler(config, kg, device, generator: torch.Generator) -> NegativeSampler | None:
    """The loss's negative sampler of a run (``None`` for 1-vs-all); see :func:`build_samplers`."""
    return build_samplers(config, kg, device, generator)[0]
