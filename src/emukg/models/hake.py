"""HAKE (Zhang et al., AAAI 2020, "Learning Hierarchy-Aware Knowledge Graph Embeddings for Link Prediction")."""

from __future__ import annotations

import math

import torch

from ..errors import ParamError
from .base import KGEModel, register

DEFAULT_MODULUS_WEIGHT = 1.0
DEFAULT_PHASE_WEIGHT = 0.5


@register
class HAKE(KGEModel):
    """Entities in polar coordinates: a modulus part (the level in a hierarchy) and a phase part (the position
    within a level).

    Rows: entity ``[e_m, e_p]`` (``2·hidden_dim`` wide), relation ``[r_m, r_p, r'_m]`` (``3·hidden_dim``: modulus,
    phase, mixture bias).  With |r_m| used as the relation's modulus and the bias clamped to −|r_m| ≤ r'_m ≤ 1
    (first ``min(r'_m, 1)``, then raised to −|r_m| where below, as the paper's implementation details describe):

        d_m = ‖h_m ∘ (|r_m| + r'_m) − t_m ∘ (1 − r'_m)‖₂
        d_p = Σᵢ |sin((θh + θr − θt)ᵢ / 2)|,     θ = phase part / (range/π)   (as pRotatE's phases)
        score = γ − (λ_m·d_m + λ_p·d_p)

    λ_m (``modulus_weight``, default 1.0) and λ_p (``phase_weight``, default 0.5) are hyper-parameters (Config
    fields of the same names; other models refuse them).  They are buffers, so a checkpoint records them.
    ``-de``/``-dr`` do not apply (the layout is fixed) and are refused.

    Initialisation (our reading of the paper's code line, written afresh): with range = (γ + 2)/hidden_dim, every
    entity component (modulus and phase alike) and every relation component ~ U(−range, range); then the relation
    modulus part is set to ones and the bias part to zeros, so a fresh relation maps moduli identically.  Entity
    moduli are not forced positive (only the relation's modulus enters through |·|).

    EMU mutates the whole entity row, modulus and phase components alike: the mutation is defined on embedding
    components, and a phase component is a component (the PyTorch path's ``mutation.apply(X)`` then
    :meth:`score` does the same, and the kernel agrees with it).

    Fast path (kind 'hake', :func:`emukg.scoring.fast_paths.hake`): a query q = [q_m, q_p] and a modulus factor
    per row.  Memory per step (B positives, C candidates, entity rows of D = 2·hidden_dim floats, N entities):
    kernel — no B·C·D tensor: the (B, C) scores, q (B·D) and a (B·D/2) floats, and the step's entity-gradient table
    (:class:`~emukg.scoring.step_rows.StepRows`: N·D floats dense, U·D for the U rows a row-sparse step reads; the
    threads add to it in place, no per-thread copies); PyTorch path — autograd keeps ≈ 2.6 × 4·B·C·D bytes (modulus residual,
    phases, sin; measured, EMU mask included) for the backward plus the forward's transient temporaries, in row
    chunks beyond :data:`emukg.scoring.torch_path.TORCH_PATH_BUDGET`.
    """

    options = {"modulus_weight": DEFAULT_MODULUS_WEIGHT, "phase_weight": DEFAULT_PHASE_WEIGHT}
    takes_double_flags = False

    def __init__(self, num_entities: int, num_relations: int, hidden_dim: int, gamma: float,
                 double_entity_embedding: bool = False, double_relation_embedding: bool = False,
                 modulus_weight: float = DEFAULT_MODULUS_WEIGHT, phase_weight: float = DEFAULT_PHASE_WEIGHT):
        if double_entity_embedding or double_relation_embedding:
            raise ParamError("double_entity_embedding" if double_entity_embedding else "double_relation_embedding", True,
                             "does not apply to HAKE, which has its own row layout ([modulus, phase] entities, "
                             "[modulus, phase, bias] relations); remove it.")
        super().__init__(num_entities, num_relations, hidden_dim, gamma)
        for name, value in (("modulus_weight", modulus_weight), ("phase_weight", phase_weight)):
            if not (math.isfinite(float(value)) and float(value) >= 0):
                raise ParamError(name, value, "must be a finite number ≥ 0.")
        self.register_buffer("modulus_weight", torch.tensor([float(modulus_weight)]))
        self.register_buffer("phase_weight", torch.tensor([float(phase_weight)]))
        with torch.no_grad():
            self.relation_embedding[:, :hidden_dim] = 1.0
            self.relation_embedding[:, 2 * hidden_dim:] = 0.0

    @classmethod
    def widths(cls, hidden_dim, double_entity, double_relation):
        return 2 * hidden_dim, 3 * hidden_dim

    @staticmethod
    def relation_parts(r: torch.Tensor):
        """(|r_m|, r_p, r'_m clamped to [−|r_m|, 1]) of relation rows ``[r_m, r_p, r'_m]``."""
        r_m, r_p, r_b = r.chunk(3, dim=-1)
        r_m = r_m.abs()
        r_b = r_b.clamp(max=1.0)
        r_b = torch.where(r_b < -r_m, -r_m, r_b)
        return r_m, r_p, r_b

    def score(self, h, r, t):
        h_m, h_p = h.chunk(2, dim=-1)
        t_m, t_p = t.chunk(2, dim=-1)
        r_m, r_p, r_b = self.relation_parts(r)
        scale = self.embedding_range / math.pi
        d_m = torch.linalg.vector_norm(h_m * (r_m + r_b) - t_m * (1 - r_b), dim=-1)
        d_p = torch.sin((h_p / scale + r_p / scale - t_p / scale) / 2).abs().sum(-1)
        return self.gamma - (self.modulus_weight * d_m + self.phase_weight * d_p)

    def extra_repr(self) -> str:
        return (super().extra_repr() + f", modulus_weight={float(self.modulus_weight):g}, "
                f"phase_weight={float(self.phase_weight):g}")
