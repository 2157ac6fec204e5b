"""emukg's SANS negatives as a PyKEEN negative sampler: :class:`SANSNegativeSampler` ("sans" in PyKEEN's
``negative_sampler_resolver``).

SANS (structure-aware negative sampling) draws the negatives of a positive (h, r, t) from the k-hop neighbourhood
of the kept entity — the tail's when the head is corrupted, the head's when the tail is — in the undirected
training graph: the exact neighbourhood (``num_random_walks=0``, the non-zero pattern of A^k + A^(k−1)) or the
distinct end nodes of w random walks of k steps (``walk_mode`` "restart" at the source, SANS's description, or
"chained", the reference code's).  Candidates that form a training triple with the kept pair are dropped and
refilled, with the reference's sticky per-row fallback to uniform draws (:class:`emukg.negatives.SANSSampler`).
The neighbourhood table is built once by :func:`emukg.negatives.sans.load_or_build_neighbourhood` and cached on disk
(``EMUKG_CACHE_DIR``), keyed by the training triples, k, w, the walk mode and ``seed``.

Each positive corrupts one side of ``corruption_scheme`` ("head", "tail"), chosen uniformly at random per positive.
The draws come from the sampler's own ``torch.Generator`` (``seed``; None: one draw from torch's global RNG when the
sampler is built, which ``pipeline(random_seed=…)`` seeds).  Like every PyKEEN sampler it runs in the data loader,
on the CPU, without the model; a PyKEEN ``filterer`` (``filtered=True``) may filter the result further.

Memory: the CSR table, 8·(N + 1) bytes plus 4 or 8 bytes per neighbourhood entry (FB15k-237, k = 3, w = 1000:
about 1,000 entries per entity), and per batch of B positives about 2·B·n int64 candidate ids per refill round.
"""

from __future__ import annotations

from typing import Any, ClassVar, Collection

import torch
from pykeen.sampling import NegativeSampler, negative_sampler_resolver

from ..data.graph import KnowledgeGraph
from ..errors import ParamError
from ..negatives import SANSSampler
from ..negatives import sans as sans_tables

SIDES = ("head", "tail")


def id_graph(mapped_triples: torch.Tensor, num_entities: int, num_relations: int) -> KnowledgeGraph:
    """An emukg :class:`KnowledgeGraph` over id triples (names are the ids): the training split is ``mapped_triples``."""
    return KnowledgeGraph(entities=[str(i) for i in range(num_entities)],
                          relations=[str(i) for i in range(num_relations)],
                          splits={"train": mapped_triples.to(torch.long).reshape(-1, 3).cpu()})


class SANSNegativeSampler(NegativeSampler):
    """SANS negatives (see the module docstring); ``negative_sampler="sans"``.

    ``khop`` k ≥ 1, ``num_random_walks`` w ≥ 0 (0: exact), ``walk_mode`` "restart" or "chained", ``seed``,
    ``corruption_scheme`` (a subset of "head", "tail"), ``use_cache`` (the on-disk table cache),
    ``memory_budget_mb`` (an exact table larger than this is refused), plus PyKEEN's sampler arguments.
    """

    hpo_default: ClassVar[dict[str, Any]] = dict(
        num_negs_per_pos=dict(type=int, low=1, high=100, log=True),
        khop=dict(type=int, low=1, high=3),
    )

    def __init__(self, *, mapped_triples: torch.Tensor, num_entities: int | None = None,
                 num_relations: int | None = None, num_negs_per_pos: int | None = None, khop: int = 3,
                 num_random_walks: int = 0, walk_mode: str = "restart", seed: int | None = None,
                 corruption_scheme: Collection[str] | None = None, use_cache: bool = True,
                 memory_budget_mb: int = sans_tables.DEFAULT_MEMORY_BUDGET >> 20, **kwargs) -> None:
        super().__init__(mapped_triples=mapped_triples, num_entities=num_entities, num_relations=num_relations,
                         num_negs_per_pos=num_negs_per_pos, **kwargs)
        scheme = tuple(corruption_scheme or SIDES)
        bad = [s for s in scheme if s not in SIDES]
        if bad or not scheme:
            raise ParamError("corruption_scheme", scheme, "SANS corrupts entities only; use 'head' and/or 'tail'.")
        self.corruption_scheme = scheme
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed)
        self.generator = torch.Generator().manual_seed(self.seed)
        kg = id_graph(mapped_triples, self.num_entities, self.num_relations)
        self.sans = SANSSampler(kg, self.num_negs_per_pos, "cpu", self.generator, khop=khop,
                                num_random_walks=num_random_walks, walk_mode=walk_mode, seed=self.seed % (2**31),
                                memory_budget_bytes=int(memory_budget_mb) << 20, use_cache=use_cache)

    def corrupt_batch(self, positive_batch: torch.Tensor) -> torch.Tensor:
        """(*batch, 3) positives → (*batch, n, 3) negatives, one corrupted side per positive."""
        shape = positive_batch.shape[:-1]
        pos = positive_batch.reshape(-1, 3).to("cpu", torch.long)
        n = self.num_negs_per_pos
        out = pos.unsqueeze(1).repeat(1, n, 1)
        if len(self.corruption_scheme) == 1:
            side_of = torch.full((pos.shape[0],), SIDES.index(self.corruption_scheme[0]), dtype=torch.long)
        else:
            side_of = (torch.rand(pos.shape[0], generator=self.generator) < 0.5).long()  # 0: head, 1: tail
        for s, side in enumerate(SIDES):
            rows = (side_of == s).nonzero().reshape(-1)
            if rows.numel():
                out[rows, :, 0 if side == "head" else 2] = self.sans.sample(pos[rows], side)
        return out.reshape(*shape, n, 3)


def register() -> None:
    """Make "sans" a name of PyKEEN's ``negative_sampler_resolver`` (idempotent)."""
    if negative_sampler_resolver.lookup_dict.get("sans") is not SANSNegativeSampler:
        negative_sampler_resolver.register(SANSNegativeSampler, raise_on_conflict=False)
