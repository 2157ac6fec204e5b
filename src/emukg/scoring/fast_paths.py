"""The models' fast paths: each model's score restated as a query vector against candidate rows, for the kernels.

A model defines its maths once, in ``score(h, r, t)`` (:mod:`emukg.models`).  Where that score against a candidate
row x reduces to one query vector q per (anchor, relation) — a distance ``bias − ‖q − x‖₁`` (kind 'l1'), a dot
product ``bias + q·x`` ('dot'), a complex distance ``bias − Σₖ |qₖ − xₖ|`` ('c2'), or one of the native kernel's
extended metrics (a :class:`KernelQuery`: 'sin_l1', 'transd_l1', 'hake') — this module says how q is formed, so
that the fused kernels (:mod:`emukg.scoring.fused`, one-vs-all, evaluation) can score candidates without a
B×C×D tensor.  ``side`` says which side the candidates fill ('tail': (anchor, r, ?); 'head': (?, r, anchor)).
Every fast path is tested against the model's ``score`` (tests/test_models.py, tests/test_fast_models.py).

A new model with a fast path adds one function here, registered with ``@fast_path("ModelName")``; a model without
one is scored by the PyTorch path.  The evaluation-only kinds (RotatE's 'complex_l1' for the ranking kernel)
register with ``@fast_path("RotatE", evaluation=True)``.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import torch

from ..models import TransD, HAKE

_TRAINING: dict[str, Callable] = {}
_EVALUATION: dict[str, Callable] = {}


class KernelQuery(NamedTuple):
    """A fast path for the native kernel's extended metrics (:func:`emukg.kernels.cand_ext_fwd`).

    ``kind``: 'sin_l1' (pRotatE), 'transd_l1' (TransD) or 'hake' (HAKE); ``q``: the query vectors (B, ·);
    ``bias``: γ; ``aux``: the per-query vector the candidate's term needs (TransD: rₚ; HAKE: the factor of the
    candidate's modulus), (B, D/2) or None; ``scale``: the phase unit (range/π; HAKE: 2·range/π, which folds its
    ½ into the phase); ``wm``, ``wp``: HAKE's modulus and phase weights (SIN_L1 reads ``wp``); ``modulus``: a learned
    scalar tensor m that multiplies the distance outside the kernel (pRotatE), or None.
    Indexing ``[0]`` gives ``kind``, as for the plain ``(kind, q, bias)`` tuples.
    """

    kind: str
    q: torch.Tensor
    bias: float
    aux: torch.Tensor | None = None
    scale: float = 1.0
    wm: float = 1.0
    wp: float = 1.0
    modulus: torch.Tensor | None = None


def fast_path(model_name: str, evaluation: bool = False):
    """Register ``fn(model, anchor_rows, relation_rows, side)`` as the fast path of the model class ``model_name``."""
    def add(fn):
        (_EVALUATION if evaluation else _TRAINING)[model_name] = fn
        return fn
    return add


def _family(model, table: dict) -> Callable | None:
    for cls in type(model).__mro__:  # a subclass of a model shares its fast path
        if cls.__name__ in table:
            return table[cls.__name__]
    return None


def has_fast_path(model) -> bool:
    """Whether the model has a training fast path (it may still decline some widths: see :func:`query_kind`)."""
    return _family(model, _TRAINING) is not None


def training_query(model, anchor: torch.Tensor, relation: torch.Tensor, side: str):
    """The model's fast path for the training kernel — ``(kind, q, bias)`` or a :class:`KernelQuery` — or None."""
    fn = _family(model, _TRAINING)
    return None if fn is None else fn(model, anchor, relation, side)


def eval_query(model, anchor: torch.Tensor, relation: torch.Tensor, side: str):
    """The model's fast path for the ranking kernels: an evaluation-only kind where it has one, else its training one."""
    fn = _family(model, _EVALUATION)
    return fn(model, anchor, relation, side) if fn is not None else training_query(model, anchor, relation, side)


def query_kind(model, side: str) -> str | None:
    """The kind of the model's training fast path (probed on one zero row), or None when it has none here."""
    E, R = model.entity_embedding, model.relation_embedding
    with torch.no_grad():
        a = torch.zeros(1, E.shape[1], dtype=E.dtype, device=E.device)
        r = torch.zeros(1, R.shape[1], dtype=R.dtype, device=R.device)
        hook = training_query(model, a, r, side)
    return None if hook is None else hook[0]


# --- one function per model ----------------------------------------------------------------------
@fast_path("TransE")
def transe(model, anchor, relation, side):
    """tail-batch: γ − ‖(h + r) − t‖₁;  head-batch: ‖h + r − t‖₁ = ‖(t − r) − h‖₁."""
    return "l1", (anchor + relation if side == "tail" else anchor - relation), float(model.gamma)


@fast_path("TransD")
def transd(model, anchor, relation, side):
    """Kind 'transd_l1': q = h⊥ + r (tail-batch) or t⊥ − r (head-batch, since ‖h⊥ + r − t⊥‖₁ = ‖(t⊥ − r) − h⊥‖₁);
    the kernel projects each (mutated) candidate with the query's rₚ (``aux``)."""
    a, a_p = anchor.chunk(2, dim=-1)
    r, r_p = relation.chunk(2, dim=-1)
    if r_p.shape[-1] != a.shape[-1]:
        return None  # -de without -dr: the halves do not line up (score cannot broadcast either)
    a_perp = TransD.project(a, a_p, r_p)
    q = a_perp + r if side == "tail" else a_perp - r
    return KernelQuery("transd_l1", q, float(model.gamma), aux=r_p)


def _rotation(model, anchor, relation, side):
    """RotatE's query: tail-batch |h·e^{iθ} − t| → q = h·e^{iθ}; head-batch |h·e^{iθ} − t| = |h − t·e^{−iθ}|."""
    re_a, im_a = anchor.chunk(2, dim=-1)
    phase = relation / (model.embedding_range / math.pi)
    re_r, im_r = torch.cos(phase), torch.sin(phase)
    if side == "tail":
        return torch.cat([re_a * re_r - im_a * im_r, re_a * im_r + im_a * re_r], dim=-1)
    return torch.cat([re_a * re_r + im_a * im_r, im_a * re_r - re_a * im_r], dim=-1)


@fast_path("RotatE")
def rotate(model, anchor, relation, side):
    """Kind 'c2': γ − Σᵢ |qᵢ − xᵢ| over complex coordinates (a rotation keeps the modulus)."""
    return "c2", _rotation(model, anchor, relation, side), float(model.gamma)


@fast_path("RotatE", evaluation=True)
def rotate_ranking(model, anchor, relation, side):
    """Kind 'complex_l1' of the ranking kernel: score = γ − Σᵢ |qᵢ − eᵢ| for every candidate e, q as :func:`rotate`."""
    return "complex_l1", _rotation(model, anchor, relation, side), float(model.gamma)


@fast_path("pRotatE")
def protate(model, anchor, relation, side):
    """Kind 'sin_l1': q = θh + θr (tail-batch) or θt − θr (head-batch, |sin(z)| = |sin(−z)|); the kernel sums
    |sin(q − x'/(range/π))| with a vectorised sin (absolute error < 1e-7) and the learned modulus multiplies the sum
    in torch, so it gets its gradient there."""
    scale = model.embedding_range / math.pi
    a, r = anchor / scale, relation / scale
    q = a + r if side == "tail" else a - r
    return KernelQuery("sin_l1", q, float(model.gamma), scale=float(scale), modulus=model.modulus.reshape(()))


@fast_path("HAKE")
def hake(model, anchor, relation, side):
    """Kind 'hake': tail-batch q_m = h_m∘(|r_m| + r'_m), q_p = (θh + θr)/2, candidate modulus factor a = 1 − r'_m;
    head-batch q_m = t_m∘(1 − r'_m), q_p = (θt − θr)/2, a = |r_m| + r'_m (‖·‖₂ and |sin| are even).  The kernel sums
    (q_m − a∘x'_m)² (square root per candidate at the end) and |sin(q_p − x'_p/(2·range/π))|."""
    a_m, a_p = anchor.chunk(2, dim=-1)
    r_m, r_p, r_b = HAKE.relation_parts(relation)
    scale = model.embedding_range / math.pi
    if side == "tail":
        q_m, factor, q_p = a_m * (r_m + r_b), 1 - r_b, (a_p / scale + r_p / scale) / 2
    else:
        q_m, factor, q_p = a_m * (1 - r_b), r_m + r_b, (a_p / scale - r_p / scale) / 2
    return KernelQuery("hake", torch.cat([q_m, q_p], dim=-1), float(model.gamma), aux=factor,
                       scale=float(2 * scale), wm=float(model.modulus_weight), wp=float(model.phase_weight))


@fast_path("DistMult")
@fast_path("ComplEx")
def bilinear(model, anchor, relation, side):
    """Kind 'dot': score = q·x with the model's own query vector (the contraction of anchor and relation)."""
    return "dot", model.query_vector(anchor, relation, side), 0.0
