"""Fixed-shape negative samplers: no host synchronisation, no data-dependent shapes (for a CUDA step).

The samplers of :mod:`emukg.negatives` refill the rows still short of ``n`` filtered negatives in a loop whose
length depends on the data (``filter_and_refill``: a ``.any()`` and a boolean index per round, each a host round
trip on a GPU).  The twins here draw a **fixed number of rounds** ``R`` at once, for every row, and compact with
fixed-shape tensor ops (``cumsum`` and one ``scatter``), so one call is a fixed sequence of kernels a CUDA graph can
capture; nothing calls ``.item()``, ``.cpu()``, ``nonzero`` or a boolean index.  They run on any device; the
tests run them on the CPU against the exact samplers.

**Filtered** (``FixedRoundsFiltered``): for each row, ``R`` rounds of ``2n`` uniform candidates (``R·2n`` draws,
one ``torch.randint``); a candidate is valid when it forms no training triple with the kept pair
(``FilterIndex.contains``, a ``searchsorted`` over the triple keys); the row keeps its first ``n`` valid
candidates in draw order.  **Fallback**: a slot still empty after the ``R`` rounds takes an *unfiltered* uniform
entity (``n`` extra draws per row, drawn always, used only there), so it may be a training triple.

**SANS** (``FixedRoundsSANS``): the same over the kept entity's neighbourhood table, with the reference's sticky
per-row fallback evaluated without a loop: round ``r`` of a row draws from the neighbourhood unless an earlier
neighbourhood round of that row left zero valid candidates, in which case it draws uniformly (each round draws
both, ``2·R·2n`` ids per row, and picks per row); an entity with an empty neighbourhood draws uniformly from the
start.  Slots still empty after ``R`` rounds: unfiltered uniform, as above.

**How the distribution compares with the exact samplers'.**  The exact filtered sampler gives each row ``n``
independent draws, uniform over the row's valid entities (the first ``n`` valid ones of an i.i.d. uniform stream;
the rounds only decide how much of the stream is drawn at once).  The fixed-rounds sampler takes the first ``n``
valid ones of the same kind of stream, cut at ``R·2n`` draws, so **conditioned on the row filling within ``R``
rounds the distribution is exactly the same**; it differs only for rows that do not fill, whose missing slots are
unfiltered uniform.  For a row whose valid fraction is ``f``, the chance of not filling is
``P[Binomial(R·2n, f) < n]``: with ``f ≥ 0.9`` (FB15k-237 and WN18RR, uniform candidates: the training triples of
one kept pair are a tiny part of 14,541 entities) and ``R = 4`` it is below 1e-300; the rows at risk are
those of a kept pair with more than half of all entities as training answers.  For SANS the same holds with ``f``
the valid fraction of the kept entity's neighbourhood entries and the sticky switch evaluated identically to the
reference's (the switch happens at the same round for the same draws).  The random streams differ from the exact
samplers' (different amounts are drawn), so runs are not bit-identical to CPU runs with the exact samplers, only
equal in distribution; :meth:`FixedRounds.shortfall` counts the fallback slots of a call (a host sync: for tests
and benchmarks, not for the step).

Memory per call: ``B · R · 2n`` int64 candidates and as many bools (SANS: twice), e.g. B = 1000, n = 256, R = 4:
16 MB (SANS 33 MB) of ids.
"""

from __future__ import annotations

import torch

DEFAULT_ROUNDS = 4


def first_valid(cand: torch.Tensor, ok: torch.Tensor, n: int, fallback: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, the first ``n`` candidates with ``ok`` in column order, the slots beyond the valid count taken from
    ``fallback`` (B, n); also the number of valid candidates per row (B,).  Fixed shapes only: ``cumsum`` gives each
    valid candidate its output slot, one ``scatter`` into a (B, n + 1) buffer whose last column takes everything
    else."""
    B = cand.shape[0]
    slot = torch.cumsum(ok, 1) - 1
    keep = ok & (slot < n)
    out = torch.empty(B, n + 1, dtype=cand.dtype, device=cand.device)
    out.scatter_(1, torch.where(keep, slot, torch.full_like(slot, n)), cand)
    found = ok.sum(1)
    have = torch.arange(n, device=cand.device).unsqueeze(0) < found.unsqueeze(1)
    return torch.where(have, out[:, :n], fallback), found


class FixedRounds:
    """Common part: the filter, the number of rounds, and the validity of candidates for a kept pair."""

    def __init__(self, sampler, rounds: int = DEFAULT_ROUNDS):
        if int(rounds) < 1:
            raise ValueError(f"rounds must be at least 1, not {rounds}")
        self.inner = sampler
        self.rounds = int(rounds)
        self.num_entities, self.num_negatives = sampler.num_entities, sampler.num_negatives
        self.device, self.generator, self.filter = sampler.device, sampler.generator, sampler.filter
        self.name = sampler.name
        self.last_found: torch.Tensor | None = None  # valid candidates per row of the last call (device tensor)

    def _valid(self, positives: torch.Tensor, side: str, cand: torch.Tensor) -> torch.Tensor:
        h, r, t = (positives[:, i].unsqueeze(1) for i in range(3))
        if side == "tail":
            return ~self.filter.contains(h, r, cand)
        if side == "head":
            return ~self.filter.contains(cand, r, t)
        raise ValueError(f"side must be 'head' or 'tail', not {side!r}")

    def _uniform(self, B: int, k: int) -> torch.Tensor:
        return torch.randint(0, self.num_entities, (B, k), generator=self.generator, device=self.device)

    def shortfall(self) -> int:
        """Fallback slots of the last call (unfiltered uniform ones): a host sync, for tests and benchmarks."""
        if self.last_found is None:
            return 0
        return int((self.num_negatives - self.last_found).clamp(min=0).sum())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r}, rounds={self.rounds})"


class FixedRoundsFiltered(FixedRounds):
    """The fixed-shape twin of the ``filtered`` sampler (see the module's docstring)."""

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        B, n = positives.shape[0], self.num_negatives
        cand = self._uniform(B, self.rounds * 2 * n)
        fallback = self._uniform(B, n)
        out, self.last_found = first_valid(cand, self._valid(positives, side, cand), n, fallback)
        return out


class FixedRoundsSANS(FixedRounds):
    """The fixed-shape twin of the ``sans`` sampler, its sticky fallback included (see the module's docstring)."""

    def __init__(self, sampler, rounds: int = DEFAULT_ROUNDS):
        super().__init__(sampler, rounds)
        self.indptr, self.indices, self._float = sampler.indptr, sampler.indices, sampler._float

    def _neighbourhood(self, kept: torch.Tensor, k: int) -> torch.Tensor:
        """(B, k) ids uniform over each kept entity's neighbourhood entries (uniform over all entities when empty);
        the same arithmetic as ``SANSSampler.draw_fn``."""
        N = self.num_entities
        u = torch.rand((kept.numel(), k), generator=self.generator, device=self.device, dtype=self._float)
        if self.indices.numel() == 0:
            return (u * N).long()
        size = self.indptr[kept + 1] - self.indptr[kept]
        start = torch.where(size > 0, self.indptr[kept], torch.zeros_like(size))
        out = self.indices[(u * size[:, None]).long().add_(start[:, None])].long()
        return torch.where((size == 0)[:, None], (u * N).long(), out)

    def sample(self, positives: torch.Tensor, side: str) -> torch.Tensor:
        if side not in ("head", "tail"):
            raise ValueError(f"side must be 'head' or 'tail', not {side!r}")
        B, n, R = positives.shape[0], self.num_negatives, self.rounds
        kept = (positives[:, 2] if side == "head" else positives[:, 0]).long()
        nb = self._neighbourhood(kept, R * 2 * n).view(B, R, 2 * n)
        un = self._uniform(B, R * 2 * n).view(B, R, 2 * n)
        fallback = self._uniform(B, n)
        ok_nb = self._valid(positives, side, nb.view(B, -1)).view(B, R, 2 * n)
        ok_un = self._valid(positives, side, un.view(B, -1)).view(B, R, 2 * n)
        # the sticky switch: round r draws uniformly once an earlier neighbourhood round left no valid candidate
        dry = ~ok_nb.any(2)  # (B, R): this neighbourhood round would leave zero survivors
        fallen = torch.cumsum(dry.long(), 1) - dry.long() > 0  # some earlier round was dry
        use_un = fallen.unsqueeze(2)
        cand = torch.where(use_un, un, nb).view(B, -1)
        ok = torch.where(use_un, ok_un, ok_nb).view(B, -1)
        out, self.last_found = first_valid(cand, ok, n, fallback)
        return out


def fixed_rounds(sampler, rounds: int = DEFAULT_ROUNDS):
    """The fixed-shape twin of ``sampler`` (``filtered`` or ``sans``: sharing its tables and generator); a
    ``uniform`` sampler (already one ``randint``) or any other is returned as it is."""
    name = getattr(sampler, "name", None)  # (by name: this module imports nothing of emukg.negatives)
    if name == "sans":
        return FixedRoundsSANS(sampler, rounds)
    if name == "filtered":
        return FixedRoundsFiltered(sampler, rounds)
    return sampler
