"""Distance models: TransE, TransD, RotatE, pRotatE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import KGEModel, register


@register
class TransE(KGEModel):
    """score = γ − ‖h + r − t‖₁"""

    def score(self, h, r, t):
        return self.gamma - (h + r - t).abs().sum(-1)



@register
class TransD(KGEModel):
    """TransE on projected entities: e⊥ = normalize(e + (e·eₚ) rₚ), score = γ − ‖h⊥ + r − t⊥‖₁.

    Entity rows hold ``[e, eₚ]`` and relation rows ``[r, rₚ]`` (both ``2·hidden_dim`` wide), so EMU mutates
    projection vectors together with the embeddings.  The dot product ``e·eₚ`` is over the feature axis
    (the reference sums over the wrong axis).

    Fast path (kind 'transd_l1', :func:`emukg.scoring.fast_paths.transd`): q = h⊥ + r or t⊥ − r, the kernel
    projecting each (mutated) candidate with the query's rₚ.  Memory per step (B positives, C candidates, rows of
    D = 2·hidden_dim floats, N entities): kernel — no B·C·D tensor, the (B, C) scores, q and rₚ (B·D floats), and the
    step's entity-gradient table (:class:`~emukg.scoring.step_rows.StepRows`: N·D floats dense, U·D row-sparse; no
    per-thread copies); PyTorch path — autograd keeps ≈ 3.7 × 4·B·C·D bytes of projection temporaries for the
    backward (measured, EMU mask included) plus the forward's transient ones, in row chunks beyond
    :data:`emukg.scoring.torch_path.TORCH_PATH_BUDGET`.
    """

    @classmethod
    def widths(cls, hidden_dim, double_entity, double_relation):
        return 2 * hidden_dim * (2 if double_entity else 1), 2 * hidden_dim * (2 if double_relation else 1)

    @staticmethod
    def project(e, e_p, r_p):
        return F.normalize(e + (e * e_p).sum(-1, keepdim=True) * r_p, p=2, dim=-1)

    def score(self, h, r, t):
        h, h_p = h.chunk(2, dim=-1)
        t, t_p = t.chunk(2, dim=-1)
        r, r_p = r.chunk(2, dim=-1)
        return self.gamma - (self.project(h, h_p, r_p) + r - self.project(t, t_p, r_p)).abs().sum(-1)



@register
class RotatE(KGEModel):
    """score = γ − Σᵢ |hᵢ·e^{iθᵢ} − tᵢ| with phases θ = r / (range/π); entities complex (``-de``)."""

    requires_double_entity = True

    def score(self, h, r, t):
        re_h, im_h = h.chunk(2, dim=-1)
        re_t, im_t = t.chunk(2, dim=-1)
        phase = r / (self.embedding_range / math.pi)
        re_r, im_r = torch.cos(phase), torch.sin(phase)
        re = re_h * re_r - im_h * im_r - re_t
        im = re_h * im_r + im_h * re_r - im_t
        return self.gamma - torch.sqrt(re * re + im * im).sum(-1)



@register
class pRotatE(KGEModel):
    """score = γ − modulus · Σᵢ |sin(θh + θr − θt)|; phases = embedding / (range/π); modulus learned (init 0.5·range).

    EMU mutates the candidate's embedding components before its phase is taken (as the PyTorch path's
    ``mutation.apply(X)`` then :meth:`score`).  Fast path (kind 'sin_l1', :func:`emukg.scoring.fast_paths.protate`).
    Memory per step (rows of D = hidden_dim floats): kernel — as TransE's (no B·C·D tensor; scores, q, the step's
    entity-gradient table); PyTorch path — autograd keeps ≈ 2.4 × 4·B·C·D bytes for the
    backward (phases, their sum, sin; measured, EMU mask included) plus the forward's transient temporaries, in
    row chunks beyond :data:`emukg.scoring.torch_path.TORCH_PATH_BUDGET`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modulus = nn.Parameter(torch.tensor([[0.5 * self.embedding_range_value]]))

    def score(self, h, r, t):
        scale = self.embedding_range / math.pi
        s = torch.sin(h / scale + r / scale - t / scale).abs().sum(-1)
        return self.gamma - s * self.modulus.reshape(())
