"""The models' fast-path hooks for evaluation, read in one place: :func:`fast_query`.

A model that scores every entity e as a distance ‖q − e‖ or a dot product q·e offers the query vector q through
``eval_kernel_query`` (evaluation-only kinds) or ``kernel_query`` (shared with the training kernel); the native
ranker (:mod:`emukg.evaluation.ranking`) scores such models in ``kernels/score_all.c``.  Nothing else in the
evaluation reads these hooks.
"""

from __future__ import annotations

import torch

import emukg.kernels as kernels


def fast_query(model, anchor_emb: torch.Tensor, rel_emb: torch.Tensor, side: str):
    """``(kind, q)`` when the model's score against every entity e is a distance ‖q − e‖ (kinds 'l1',
    'complex_l1': score = bias − distance) or a dot product q·e (kind 'dot': score = bias + q·e); else None.

    Uses the models' hooks: ``eval_kernel_query`` (evaluation-only kinds, e.g. RotatE's complex modulus) and
    ``kernel_query`` (shared with the training kernel).
    """
    for name in ("eval_kernel_query", "kernel_query"):
        hook = getattr(model, name, None)
        if hook is None:
            continue
        out = hook(anchor_emb, rel_emb, side)
        if out is not None and out[0] in kernels.METRIC_CODES:
            return out[0], out[1]
    return None
