"""Negative samplers: which entities replace the corrupted side of each positive.

A sampler is looked up by name in :data:`SAMPLERS` and built by :func:`build_sampler`::

    sampler = SAMPLERS["uniform-filtered"](kg, num_negatives, device, generator)
    negatives = sampler.sample(positives, side)      # (B, 3) on device -> (B, n) int64 entity ids

``side='tail'`` replaces the tail (the kept pair is (h, r)), ``side='head'`` replaces the head (kept (r, t)).

* ``"uniform"``: n entities uniformly at random, unfiltered (the CE modes' fresh negatives, ``-if_CE 1``).
* ``"uniform-filtered"``: the reference's data-side negatives: draw 2n candidates, drop those that form a
  *training* triple with the kept pair, keep the first n valid ones in draw order, and draw again for the rows
  still short (:func:`filter_and_refill`).
* ``"sans"``: registered by :mod:`emukg.sans`; it supplies only the candidate draw and reuses
  :func:`filter_and_refill`.

Everything is batched tensor code on the training device; randomness comes from the passed ``torch.Generator``.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from .errors import EmukgError

log = logging.getLogger("emukg")

SAMPLERS: dict[str, type["NegativeSampler"]] = {}

DrawFn = Callable[[torch.Tensor, int], torch.Tensor]


def register_sampler(name: str):
    """Class decorator: make a :class:`NegativeSampler` subclass available as ``SAMPLERS[name]``."""

    def deco(cls):
        SAMPLERS[name] = cls
        cls.name = name
        return cls

    return deco


def uniform_draw(num_entities: int, generator: torch.Generator, device) -> DrawFn:
    """A draw function: ``k`` uniformly random entity ids for each of the given rows."""

    def draw(rows: torch.Tensor, k: int) -> torch.Tensor:
        return torch.randint(0, num_entities, (rows.numel(), k), generator=generator, device=device)

    return draw


def filter_and_refill(kg_filter, positives: torch.Tensor, side: str, n: int, draw_fn: DrawFn,
                      generator: torch.Generator | None = None, *, fallback_fn: DrawFn | None = None,
                      max_rounds: int = 10_000, native: bool | None = None) -> torch.Tensor:
    """Filtered negatives (B, n): candidates from ``draw_fn`` that form no triple of ``kg_filter`` with the kept pair.

    Each round draws ``2n`` candidates for every row that is still short (``draw_fn(rows, 2n)`` → (len(rows), 2n),
    ``rows`` the row indices into ``positives``), drops those for which ``kg_filter.contains`` is true, and appends
    the survivors in draw order until the row holds ``n``.  ``fallback_fn`` (e.g. a uniform draw, for SANS) redraws,
    in the same round, the rows whose ``draw_fn`` candidates were all filtered out.  Rows whose kept pair is true
    for every entity can never be filled: they raise :class:`EmukgError`.  ``generator`` is unused here (the draw
    functions carry their own) and kept for symmetry with the samplers.  ``native``: None = the CPU kernel when
    available, False = tensor ops only; both give identical results for the same draws.
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
    valid = _Validity(kg_filter, h, r, t, side, native=native)
    k = 2 * n
    for round_ in range(max_rounds):
        cand = draw_fn(rows, k)
        found = valid.fill(rows, cand, out, filled, n)
        if fallback_fn is not None:
            empty = found == 0  # nothing survived, so nothing was appended: redraw these rows in this round
            if bool(empty.any()):
                redo = rows[empty]
                valid.fill(redo, fallback_fn(redo, k), out, filled, n)
        rows = rows[filled[rows] < n]
        if rows.numel() == 0:
            return out
        if round_ == 0:
            _check_fillable(kg_filter, h[rows], r[rows], t[rows], side)
    raise EmukgError(f"negative sampling could not find {n} filtered negatives for {rows.numel()} positives after "
                     f"{max_rounds} rounds; lower -n or use unfiltered negatives (-if_CE 1).")


class _Validity:
    """valid(rows, cand) -> bool (len(rows), k): cand forms no triple of the filter with row's kept pair;
    ``fill(rows, cand, out, filled, n)`` appends each row's valid candidates, in draw order, to ``out``.

    On the CPU with the native library (``kernels/sample_step.c``), ``fill`` filters and compacts in one pass,
    checking each row against its own CSR answer list (``FilterIndex.segments``; a bitmap over the entities
    for long lists).  Otherwise tensor ops: ``FilterIndex.contains`` (a search over all triple keys) and a
    cumsum scatter.
    """

    def __init__(self, kg_filter, h, r, t, side, native: bool | None = None):
        self.filter, self.h, self.r, self.t, self.side = kg_filter, h, r, t, side
        self.lib = None
        if native is not False and h.device.type == "cpu" and hasattr(kg_filter, "segments"):
            from . import kernels

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
            import ctypes

            cand = cand.to(torch.int64).contiguous()
            rows = rows.contiguous()
            found = torch.empty(rows.shape[0], dtype=torch.int64)
            p, i64 = ctypes.c_void_p, ctypes.c_int64
            rc = self.lib.emukg_filter_fill(i64(cand.shape[0]), i64(cand.shape[1]), i64(n), i64(self.filter.num_entities),
                                            p(rows.data_ptr()), p(self.start.data_ptr()), p(self.count.data_ptr()),
                                            p(self.vals.data_ptr()), p(cand.data_ptr()), p(out.data_ptr()),
                                            p(filled.data_ptr()), p(found.data_ptr()), ctypes.c_int(torch.get_num_threads()))
            if rc != 0:
                raise MemoryError("emukg_filter_fill: out of memory for the per-thread entity bitmaps")
            return found
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
        raise EmukgError(f"negative sampling: ({int(h[i])}, {int(r[i])}, {int(t[i])}) — every entity forms a training "
                         f"triple with the kept pair, so no filtered negative exists; use unfiltered negatives (-if_CE 1).")


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
        return torch.randint(0, self.num_entities, (positives.shape[0], self.num_negatives),
                             generator=self.generator, device=self.device)


@register_sampler("uniform-filtered")
class FilteredUniformSampler(NegativeSampler):
    """Uniform candidates minus those forming a training triple with the kept pair (the reference's negatives)."""

    def __init__(self, kg, num_negatives, device, generator):
        super().__init__(kg, num_negatives, device, generator)
        self.filter = kg.train_filter.to(self.device)
        self.draw = uniform_draw(self.num_entities, generator, self.device)

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        return filter_and_refill(self.filter, positives, side, self.num_negatives, self.draw, self.generator)


def sampler_name(config) -> str | None:
    """The sampler a config trains with: modes 0 and 2 use ``config.sampler``, mode 1 unfiltered uniform, mode 3 none."""
    if config.ce_mode == 3:
        return None
    if config.ce_mode == 1:
        return "uniform"
    return "uniform-filtered" if config.sampler == "uniform" else config.sampler


def build_sampler(config, kg, device, generator: torch.Generator) -> NegativeSampler | None:
    """The negative sampler of a run (``None`` for 1-vs-all, mode 3)."""
    name = sampler_name(config)
    if name is None:
        return None
    if name not in SAMPLERS and name == "sans":
        try:
            from . import sans  # noqa: F401  (registers "sans")
        except ImportError:
            pass
    if name not in SAMPLERS:
        raise EmukgError(f"--sampler {config.sampler}: no negative sampler named {name!r} is available; "
                         f"choose one of {', '.join(sorted(SAMPLERS))}.")
    return SAMPLERS[name].from_config(config, kg, device, generator)
