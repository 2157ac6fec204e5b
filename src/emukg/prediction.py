"""Top-k link prediction by name: (head, relation, ?) → tails, or (?, relation, tail) → heads."""

from __future__ import annotations

import difflib

import torch

from .data.graph import KnowledgeGraph
from .errors import ParamError


def resolve_name(name, table: dict[str, int], what: str, param: str, dataset: str = "") -> int:
    """Id of ``name`` in ``table`` (an int is taken as an id); unknown names raise a :class:`ParamError` about the
    parameter ``param`` (``head``, ``relation``, ``tail``) that suggests the closest names; a NumPy integer or a
    0-d integer tensor is an id like an int."""
    name = _plain_int(name)
    if not isinstance(name, (int, str)) or isinstance(name, bool):
        raise ParamError(param, name, f"must be the {what}'s name (text) or its id (an integer).")
    if isinstance(name, int):
        if 0 <= name < len(table):
            return name
        raise ParamError(param, name, f"{what} id out of range; ids run from 0 to {len(table) - 1}.")
    if name in table:
        return table[name]
    where = f" of {dataset}" if dataset else ""
    folded = {k.casefold(): k for k in table}
    close = [folded[name.casefold()]] if name.casefold() in folded else []
    close += [c for c in difflib.get_close_matches(name, list(table), n=3, cutoff=0.6) if c not in close]
    if close:
        hint = "did you mean " + ", ".join(repr(c) for c in close[:3]) + "?"
    else:
        hint = f"no similar name; the {what} names are listed in the dataset's {'entities' if what == 'entity' else 'relations'}.dict."
    raise ParamError(param, name, f"not a known {what}{where}; {hint}")


def _plain_int(value):
    """``value`` as a Python int when it is a NumPy integer or a 0-d integer tensor; anything else unchanged."""
    import numbers

    if isinstance(value, (bool, int, str)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return int(value.item()) if value.ndim == 0 and not value.is_floating_point() and value.dtype != torch.bool else value
    if isinstance(value, numbers.Integral) and not isinstance(value, bool) and type(value).__name__ != "bool_":
        return int(value)
    return value


def check_query(head, relation, tail, top_k: int) -> None:
    """The query's shape: a relation, exactly one of head/tail, a positive top_k (a :class:`ParamError` otherwise)."""
    if relation is None:
        raise ParamError("relation", "", "is required: give the relation name of the query.")
    if (head is None) == (tail is None):
        raise ParamError("head" if head is None else "tail", "",
                         "give exactly one of {head} (predict tails) or {tail} (predict heads) with {relation}.")
    top_k = _plain_int(top_k)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise ParamError("top_k", top_k, "must be a positive integer.")


def resolve_query(kg: KnowledgeGraph, head, relation, tail) -> tuple[str, int, int]:
    """``(side, relation id, anchor id)`` of a query: side 'tail' when ``head`` is given, else 'head'."""
    rel = resolve_name(relation, kg.relation_to_id, "relation", "relation", kg.name)
    if head is not None:
        return "tail", rel, resolve_name(head, kg.entity_to_id, "entity", "head", kg.name)
    return "head", rel, resolve_name(tail, kg.entity_to_id, "entity", "tail", kg.name)


def predict(model, kg: KnowledgeGraph, head=None, relation=None, tail=None, top_k: int = 10,
            filter_known: bool = False) -> list[tuple[str, float]]:
    """The ``top_k`` best-scoring entities for one query, best first, as ``(name, score)``.

    Give ``head`` and ``relation`` for tails of (head, relation, ?), or ``tail`` and ``relation`` for heads of
    (?, relation, tail) — names (or integer ids).  ``filter_known`` leaves out entities that form a known
    triple (train ∪ valid ∪ test) with the query.  NaN scores rank last.  Ties keep entity-id order.
    """
    check_query(head, relation, tail, top_k)
    top_k = _plain_int(top_k)
    side, rel, anchor = resolve_query(kg, head, relation, tail)
    device = model.entity_embedding.device
    a = torch.tensor([anchor], device=device)
    r = torch.tensor([rel], device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            scores = model.score_all(a, r, side)[0].float()
    finally:
        model.train(was_training)
    scores = torch.where(torch.isnan(scores), torch.full_like(scores, float("-inf")), scores).cpu()
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    if filter_known:
        _, known = kg.filter.answers(a.cpu(), r.cpu(), side)
        keep[known] = False
    ids = keep.nonzero().reshape(-1)
    order = torch.sort(scores[ids], descending=True, stable=True).indices[:top_k]
    best = ids[order]
    return [(kg.entities[i], s) for i, s in zip(best.tolist(), scores[best].tolist())]
