"""The plain PyTorch path of candidate scoring (any device, any model): gather, mutate, ``model.score``."""

from __future__ import annotations

import torch

from ..emu import Mutation

TORCH_PATH_BUDGET = 256 << 20  # bytes of one gathered B×C×D candidate tensor on the PyTorch path; beyond: row chunks


def torch_chunk_rows(B: int, C: int, D: int, element_size: int = 4, budget: int | None = None) -> int:
    """Batch rows per chunk of the PyTorch path: all B while 4·B·C·D bytes (one gathered candidate tensor) fit
    :data:`TORCH_PATH_BUDGET` (or ``budget``), else the most rows whose chunk fits (at least 1)."""
    budget = TORCH_PATH_BUDGET if budget is None else int(budget)
    return max(1, min(B, budget // max(1, element_size * C * D)))


def _torch_chunk(model, side: str, a_emb, r_emb, E, candidates, mutation, row0: int) -> torch.Tensor:
    """Scores of batch rows ``row0 .. row0 + b − 1``: gather the candidates, mutate them, ``model.score``."""
    B, C = candidates.shape
    X = E.index_select(0, candidates.reshape(-1)).view(B, C, E.shape[1])  # index_add_ backward: fastest on CPU
    if mutation is not None:
        X = mutation.apply(X, row0=row0)
    return model.score_side(a_emb.unsqueeze(1), r_emb.unsqueeze(1), X, side)


def torch_scores(model, side: str, a_emb: torch.Tensor, r_emb: torch.Tensor, E: torch.Tensor,
                  candidates: torch.Tensor, mutation: Mutation | None = None, budget: int | None = None) -> torch.Tensor:
    """The plain PyTorch path (any device, any model): scores (B, C) of the candidates (ids into ``E``) against
    the gathered anchor/relation rows, mutated as ``mutation`` says, by ``model.score``.

    While one gathered B×C×D tensor fits :data:`TORCH_PATH_BUDGET` bytes (``budget``) the batch is scored at once.
    Otherwise it goes in chunks of :func:`torch_chunk_rows` rows, each under ``torch.utils.checkpoint``
    (non-reentrant): the forward keeps only the chunk's (b, C) scores, and the backward recomputes one chunk at a
    time, so the path holds the intermediates of ONE chunk (about (k + 3) × the chunk's gathered tensor, k from
    the module docstring's table) plus the (B, C) scores and the dense gradient of ``E`` being accumulated,
    instead of every chunk's.  Each row's scores are computed by the same operations
    as unchunked (values equal; the mask of a chunk is the batch's, the hash counting rows from the first), and
    gradients differ only in the order in which chunks' contributions to a shared row are summed.  The price is one
    extra forward pass when chunked.
    """
    B, C = candidates.shape
    rows = torch_chunk_rows(B, C, E.shape[1], E.element_size(), budget)
    if rows >= B:
        return _torch_chunk(model, side, a_emb, r_emb, E, candidates, mutation, 0)
    from torch.utils.checkpoint import checkpoint

    recompute = torch.is_grad_enabled()
    out = []
    for b0 in range(0, B, rows):
        b1 = min(B, b0 + rows)
        args = (model, side, a_emb[b0:b1], r_emb[b0:b1], E, candidates[b0:b1], mutation, b0)
        out.append(checkpoint(_torch_chunk, *args, use_reentrant=False, preserve_rng_state=False) if recompute
                   else _torch_chunk(*args))
    return torch.cat(out)
