"""The model base class and registry.

A model owns two embedding tables and **one** score function, written once on broadcastable tensors::

    score(h, r, t)  # h, t: (..., entity_dim), r: (..., relation_dim)  ->  (...)

Training calls it on ``(batch, 1, dim)`` against ``(batch, candidates, dim)``; evaluation on
``(queries, 1, dim)`` against ``(1, entities, dim)``; prediction likewise.  Because it works on embedding
rows, not ids, EMU can score *mutated* candidate embeddings with the same function.

Higher scores mean more plausible triples.  A model file holds the maths, the parameters and the docstrings only:
how the fused kernels restate a score as a query vector (the fast paths) lives in :mod:`emukg.scoring.fast_paths`.  Initialisation follows the RotatE / SANS / EMU code line:
``embedding_range = (gamma + epsilon) / hidden_dim`` with ``epsilon = 2``, both tables drawn from
``U(-range, range)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ParamError
from ..resolver import Registry

MODELS: Registry = Registry("model", "model")  # canonical name -> class; case-insensitive lookups (emukg.resolver)
EPSILON = 2.0


def register(cls):
    """Class decorator: the model is found by its class name (any case) from then on."""
    return MODELS.register(cls)


def model_class(name: str) -> type["KGEModel"]:
    """The model class registered as ``name`` (any case); a near miss gets a suggestion."""
    return MODELS.get(name)


class KGEModel(nn.Module):
    """Embedding tables plus the score function of one model family.

    Subclasses set ``entity_factor`` / ``relation_factor`` (table width in units of ``hidden_dim``) through
    :meth:`widths` and implement :meth:`score`.  ``requires_double_entity`` / ``requires_double_relation``
    name the reference's ``-de`` / ``-dr`` flags a model cannot run without.
    """

    distance_based = True  # False for bilinear models (DistMult, ComplEx): 1-vs-all is allowed there
    options: dict[str, float] = {}  # model-specific Config settings -> defaults, taken as keywords (HAKE's weights)
    takes_double_flags = True  # False: a fixed row layout that -de/-dr must not change (HAKE)
    requires_double_entity = False
    requires_double_relation = False

    def __init__(self, num_entities: int, num_relations: int, hidden_dim: int, gamma: float,
                 double_entity_embedding: bool = False, double_relation_embedding: bool = False):
        super().__init__()
        self.check_flags(double_entity_embedding, double_relation_embedding)
        self.num_entities, self.num_relations, self.hidden_dim = num_entities, num_relations, hidden_dim
        self.register_buffer("gamma", torch.tensor([float(gamma)]))
        self.embedding_range_value = (float(gamma) + EPSILON) / hidden_dim
        self.register_buffer("embedding_range", torch.tensor([self.embedding_range_value]))
        self.entity_dim, self.relation_dim = self.widths(hidden_dim, double_entity_embedding, double_relation_embedding)
        rng = self.embedding_range_value
        self.entity_embedding = nn.Parameter(torch.empty(num_entities, self.entity_dim).uniform_(-rng, rng))
        self.relation_embedding = nn.Parameter(torch.empty(num_relations, self.relation_dim).uniform_(-rng, rng))

    @classmethod
    def check_flags(cls, double_entity: bool, double_relation: bool) -> None:
        name = cls.__name__
        if cls.requires_double_entity and not double_entity:
            raise ParamError("model", name, "needs complex entity embeddings; add {double_entity_embedding}.")
        if cls.requires_double_relation and not double_relation:
            raise ParamError("model", name, "needs complex relation embeddings; add {double_relation_embedding}.")

    @classmethod
    def widths(cls, hidden_dim: int, double_entity: bool, double_relation: bool) -> tuple[int, int]:
        return hidden_dim * (2 if double_entity else 1), hidden_dim * (2 if double_relation else 1)

    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- convenience: scores by id -------------------------------------------------------------
    def score_ids(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Scores of id tensors (broadcast together)."""
        E, R = self.entity_embedding, self.relation_embedding
        return self.score(E[h], R[r], E[t])

    def score_side(self, anchor: torch.Tensor, relation: torch.Tensor, candidate: torch.Tensor, side: str) -> torch.Tensor:
        """:meth:`score` with the candidate rows in the ``side`` slot: ``score(anchor, r, candidate)`` for 'tail',
        ``score(candidate, r, anchor)`` for 'head' (rows broadcast as in :meth:`score`)."""
        return self.score(anchor, relation, candidate) if side == "tail" else self.score(candidate, relation, anchor)

    def score_all(self, anchor: torch.Tensor, relation: torch.Tensor, side: str,
                  entities: torch.Tensor | None = None) -> torch.Tensor:
        """Scores ``(queries, candidates)`` of every query against all entities (or ``entities`` ids).

        ``side='tail'``: queries (anchor, r, ?); ``side='head'``: queries (?, r, anchor).  The default
        broadcasts the score function; bilinear models override it with a matrix product.
        """
        E = self.entity_embedding if entities is None else self.entity_embedding[entities]
        a = self.entity_embedding[anchor].unsqueeze(1)
        r = self.relation_embedding[relation].unsqueeze(1)
        return self.score_side(a, r, E.unsqueeze(0), side)

    def attach(self, kg) -> None:
        """Give the model the run's graph ``kg``; embedding models need none (NBFNet passes messages over it)."""

    def regularizer(self) -> torch.Tensor:
        """L3 norm cubed of both tables (the reference's ``-r``)."""
        return self.entity_embedding.abs().pow(3).sum() + self.relation_embedding.abs().pow(3).sum()

    def extra_repr(self) -> str:
        return f"entities={self.num_entities}, relations={self.num_relations}, entity_dim={self.entity_dim}, relation_dim={self.relation_dim}, gamma={float(self.gamma):g}"


def build_model(name: str, num_entities: int, num_relations: int, hidden_dim: int, gamma: float,
                double_entity_embedding: bool = False, double_relation_embedding: bool = False, **options) -> KGEModel:
    """The model ``name``; ``options``: its model-specific settings (``cls.options``, e.g. HAKE's ``modulus_weight``
    and ``phase_weight``; :func:`model_options` reads them from a Config).  ``None`` values mean the default."""
    cls = model_class(name)
    unknown = sorted(set(options) - set(cls.options))
    if unknown:
        raise ParamError(unknown[0], options[unknown[0]], f"is not a setting of {cls.__name__}; remove it.")
    given = {k: v for k, v in options.items() if v is not None}
    return cls(num_entities, num_relations, hidden_dim, gamma, double_entity_embedding, double_relation_embedding, **given)


def model_options(cfg) -> dict:
    """The model-specific settings of a Config (or any object with the attributes) for :func:`build_model`:
    ``{name: getattr(cfg, name)}`` for the model's ``options``, e.g. ``build_model(cfg.model, …, **model_options(cfg))``."""
    return {name: getattr(cfg, name, None) for name in model_class(cfg.model).options}
