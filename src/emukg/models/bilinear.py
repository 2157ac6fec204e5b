"""Bilinear models: DistMult, ComplEx.  Scoring against all entities is one matrix product."""

from __future__ import annotations

import torch

from .base import KGEModel, register


class BilinearModel(KGEModel):
    """A model whose score is linear in the candidate: score = q · x with q = ``query_vector(anchor, relation, side)``."""

    distance_based = False

    def query_vector(self, anchor_emb, rel_emb, side):
        raise NotImplementedError

    def score_all(self, anchor, relation, side, entities=None):
        E = self.entity_embedding if entities is None else self.entity_embedding[entities]
        q = self.query_vector(self.entity_embedding[anchor], self.relation_embedding[relation], side)
        return q @ E.T



@register
class DistMult(BilinearModel):
    """score = Σᵢ hᵢ rᵢ tᵢ"""

    distance_based = False

    def score(self, h, r, t):
        return (h * r * t).sum(-1)

    def query_vector(self, anchor_emb, rel_emb, side):
        # h·r·t is symmetric in h and t: both sides contract the anchor with the relation
        return anchor_emb * rel_emb


@register
class ComplEx(BilinearModel):
    """score = Re(⟨h, r, conj(t)⟩); the first half of a row is the real part (needs ``-de -dr``)."""

    distance_based = False
    requires_double_entity = True
    requires_double_relation = True

    def score(self, h, r, t):
        re_h, im_h = h.chunk(2, dim=-1)
        re_r, im_r = r.chunk(2, dim=-1)
        re_t, im_t = t.chunk(2, dim=-1)
        return (re_h * re_r * re_t + re_h * im_r * im_t + im_h * re_r * im_t - im_h * im_r * re_t).sum(-1)

    def query_vector(self, anchor_emb, rel_emb, side):
        re_a, im_a = anchor_emb.chunk(2, dim=-1)
        re_r, im_r = rel_emb.chunk(2, dim=-1)
        if side == "tail":  # score = Re t · (Re h Re r − Im h Im r) + Im t · (Re h Im r + Im h Re r)
            return torch.cat([re_a * re_r - im_a * im_r, re_a * im_r + im_a * re_r], dim=-1)
        # side == "head": score = Re h · (Re r Re t + Im r Im t) + Im h · (Re r Im t − Im r Re t)
        return torch.cat([re_r * re_a + im_r * im_a, re_r * im_a - im_r * re_a], dim=-1)
