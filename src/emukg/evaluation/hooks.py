"""The models' fast paths as the ranking kernels read them, in one place: :func:`fast_query`.

A model that scores every entity e as a distance ‖q − e‖ or a dot product q·e offers the query vector q through its
fast path (:func:`emukg.scoring.fast_paths.eval_query`: an evaluation-only kind such as RotatE's complex modulus,
else the training kernel's); the native ranker (:mod:`emukg.evaluation.ranking`) scores such models in
``kernels/score_all.c``.  Nothing else in the evaluation reads the fast paths.
"""

from __future__ import annotations

import torch

import emukg.kernels as kernels
from ..scoring.fast_paths import eval_query


def fast_query(model, anchor_emb: torch.Tensor, rel_emb: torch.Tensor, side: str):
    """``(kind, q)`` when the model's score against every entity e is a distance ‖q − e‖ (kinds 'l1',
    'complex_l1': score = bias − distance) or a dot product q·e (kind 'dot': score = bias + q·e); else None."""
    out = eval_query(model, anchor_emb, rel_emb, side)
    if out is not None and out[0] in kernels.METRIC_CODES:
        return out[0], out[1]
    return None
