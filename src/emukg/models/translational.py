"""Distance models: TransE, TransD, RotatE, pRotatE."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .base import KernelQuery, KGEModel, register


@register
class TransE(KGEModel):
    """score = γ − ‖h + r − t‖₁"""

    def score(self, h, r, t):
        return self.gamma - (h + r - t).abs().sum(-1)

    def kernel_query(self, anchor, relation, side):
        # tail-batch: γ − ‖(h + r) − t‖₁;  head-batch: ‖h + r − t‖₁ = ‖(t − r) − h‖₁
        return "l1", (anchor + relation if side == "tail" else anchor - relation), float(self.gamma)


@register
class TransD(KGEModel):
    """TransE on projected entities: e⊥ = normalize(e + (e·eₚ) rₚ), score = γ − ‖h⊥ + r − t⊥‖₁.

    Entity rows hold ``[e, eₚ]`` and relation rows ``[r, rₚ]`` (both ``2·hidden_dim`` wide), so EMU mutates
    projection vectors together with the embeddings.  The dot product ``e·eₚ`` is over the feature axis
    (the reference sums over the wrong axis).

    Fast path (:meth:`kernel_query`, kind 'transd_l1'): q = h⊥ + r (tail-batch) or t⊥ − r (head-batch, since
    ‖h⊥ + r − t⊥‖₁ = ‖(t⊥ − r) − h⊥‖₁), and the kernel projects each (mutated) candidate with the query's rₚ.
    Memory per step (B positives, C candidates, rows of D = 2·hidden_dim floats, N entities): kernel — no B·C·D
    tensor, the (B, C) scores, q and rₚ (B·D floats), the dense N·D entity gradient plus per-thread accumulators
    (see :mod:`emukg.emu`); PyTorch path — autograd keeps ≈ 3.7 × 4·B·C·D bytes of projection temporaries for the
    backward (measured, EMU mask included) plus the forward's transient ones, in row chunks beyond
    :data:`emukg.emu.TORCH_PATH_BUDGET`.
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

    def kernel_query(self, anchor, relation, side):
        a, a_p = anchor.chunk(2, dim=-1)
        r, r_p = relation.chunk(2, dim=-1)
        if r_p.shape[-1] != a.shape[-1]:
            return None  # -de without -dr: the halves do not line up (score cannot broadcast either)
        a_perp = self.project(a, a_p, r_p)
        q = a_perp + r if side == "tail" else a_perp - r
        return KernelQuery("transd_l1", q, float(self.gamma), aux=r_p)


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

    def kernel_query(self, anchor, relation, side):
        # tail-batch: |h·e^{iθ} − t|; head-batch: |h·e^{iθ} − t| = |h − t·e^{−iθ}| (a rotation keeps the modulus)
        re_a, im_a = anchor.chunk(2, dim=-1)
        phase = relation / (self.embedding_range / math.pi)
        re_r, im_r = torch.cos(phase), torch.sin(phase)
        if side == "tail":
            q = torch.cat([re_a * re_r - im_a * im_r, re_a * im_r + im_a * re_r], dim=-1)
        else:
            q = torch.cat([re_a * re_r + im_a * im_r, im_a * re_r - re_a * im_r], dim=-1)
        return "c2", q, float(self.gamma)

    def eval_kernel_query(self, anchor, relation, side):
        """Evaluation fast path (emukg.evaluation): ``("complex_l1", q, γ)`` with score = γ − Σᵢ |qᵢ − eᵢ| for
        every candidate e (complex modulus per coordinate): the query vector of :meth:`kernel_query`."""
        _, q, gamma = self.kernel_query(anchor, relation, side)
        return "complex_l1", q, gamma


@register
class pRotatE(KGEModel):
    """score = γ − modulus · Σᵢ |sin(θh + θr − θt)|; phases = embedding / (range/π); modulus learned (init 0.5·range).

    EMU mutates the candidate's embedding components before its phase is taken (as the PyTorch path's
    ``mutation.apply(X)`` then :meth:`score`).  Fast path (:meth:`kernel_query`, kind 'sin_l1'): q = θh + θr
    (tail-batch) or θt − θr (head-batch, |sin(z)| = |sin(−z)|); the kernel sums |sin(q − x'/(range/π))| with a
    vectorised sin (absolute error < 1e-7, see candidates.c) and the modulus multiplies the sum in torch, so it
    gets its gradient there.  Memory per step (rows of D = hidden_dim floats): kernel — as TransE's (no B·C·D
    tensor; scores, q, dense N·D entity gradient); PyTorch path — autograd keeps ≈ 2.4 × 4·B·C·D bytes for the
    backward (phases, their sum, sin; measured, EMU mask included) plus the forward's transient temporaries, in
    row chunks beyond :data:`emukg.emu.TORCH_PATH_BUDGET`.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.modulus = nn.Parameter(torch.tensor([[0.5 * self.embedding_range_value]]))

    def score(self, h, r, t):
        scale = self.embedding_range / math.pi
        s = torch.sin(h / scale + r / scale - t / scale).abs().sum(-1)
        return self.gamma - s * self.modulus.reshape(())

    def kernel_query(self, anchor, relation, side):
        scale = self.embedding_range / math.pi
        a, r = anchor / scale, relation / scale
        q = a + r if side == "tail" else a - r
        return KernelQuery("sin_l1", q, float(self.gamma), scale=float(scale), modulus=self.modulus.reshape(()))
