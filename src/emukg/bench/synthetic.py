"""A benchmark fixture: a random graph and a freshly initialised model of any size (``synthetic_problem``).

The evaluation benchmarks (:mod:`~emukg.bench.eval_speed`) and the tests measure memory and speed on graphs
larger than any dataset here with it.
"""

from __future__ import annotations

import torch

from ..data.graph import KnowledgeGraph


def synthetic_problem(num_entities: int = 1_000_000, num_relations: int = 10, num_train: int = 1000,
                      num_test: int = 16, hidden_dim: int = 100, model: str = "TransE", seed: int = 0, **model_kwargs):
    """A random graph and a randomly initialised model of the given size, for memory and speed checks of
    :func:`emukg.evaluation.evaluate` on graphs larger than any dataset here (e.g. 1,000,000 entities, d = 100)."""
    from ..models import build_model

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
