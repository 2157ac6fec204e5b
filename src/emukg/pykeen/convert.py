"""PyKEEN models as emukg models, for the interactions emukg has: :func:`to_emukg_model`.

PyKEEN's scores (``pykeen.nn.modules``, 1.11) and emukg's (:mod:`emukg.models`) for the same parameters, with
emukg's γ = 0 (so no constant separates them):

=============  ===============================================  ===============================================
interaction    PyKEEN                                           emukg (γ = 0)
=============  ===============================================  ===============================================
TransE         −‖h + r − t‖_p                                   TransE: −‖h + r − t‖₁              (p = 1 only)
DistMult       Σ hᵢ rᵢ tᵢ                                       DistMult: the same
ComplEx        Re(Σ hᵢ rᵢ conj(tᵢ)), complex64 tensors          ComplEx: rows [Re; Im], the same sum
RotatE         −‖h ∘ r − t‖₂ over complex coordinates           RotatE: −Σᵢ |hᵢ e^{iθᵢ} − tᵢ| (a 1-norm of the
               (1.11.1 ignores its ``p`` and ``power_norm``:    moduli): a different score, so no conversion
               ``negative_norm(h − t, p=2)`` is hard-coded)
=============  ===============================================  ===============================================

``power_norm`` changes nothing at p = 1 (|x|¹ summed is the 1-norm).  The parameters are the representations as
the interaction sees them — each representation's forward over all ids in eval mode (normalisers applied, no
dropout) —, and a complex table becomes emukg's [real parts; imaginary parts] row.  Anything else — RotatE (see
above; checked: PyKEEN's RotatE with ``p=1`` scores as with p = 2), other interactions, TransE with p = 2, inverse
triples, ``predict_with_sigmoid`` (sigmoid ties), several representations per slot, float64 — returns None, and
callers score through PyKEEN (:mod:`emukg.pykeen.evaluation`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models import build_model


@dataclass
class Conversion:
    """An emukg model made from a PyKEEN one and the settings that rebuild it (``emukg.models.build_model``)."""

    model: torch.nn.Module
    name: str
    hidden_dim: int
    double_entity_embedding: bool = False
    double_relation_embedding: bool = False


def why_not(model) -> str | None:
    """Why ``model`` has no emukg equivalent (None: it has one, :func:`to_emukg_model` converts it)."""
    from pykeen.models import ERModel
    from pykeen.nn.modules import ComplExInteraction, DistMultInteraction, RotatEInteraction, TransEInteraction

    if not isinstance(model, ERModel):
        return f"{type(model).__name__} is not an ERModel"
    if getattr(model, "use_inverse_triples", False):
        return "the model scores heads through inverse relations"
    if getattr(model, "predict_with_sigmoid", False):
        return "the model predicts through a sigmoid"
    kind = type(model.interaction)
    if kind is RotatEInteraction:
        return "PyKEEN's RotatE is a 2-norm over complex coordinates (its p is ignored), emukg's a sum of moduli"
    if kind not in (TransEInteraction, DistMultInteraction, ComplExInteraction):
        return f"emukg has no {kind.__name__}"
    if kind is TransEInteraction and float(model.interaction.p) != 1.0:
        return f"{kind.__name__} with p={model.interaction.p} (emukg's is the 1-norm)"
    if len(model.entity_representations) != 1 or len(model.relation_representations) != 1:
        return "several representations per slot"
    if list(model.interaction.head_indices) != [0] or list(model.interaction.tail_indices) != [0]:
        return "head and tail read different representations"
    return None


def _table(representation) -> torch.Tensor:
    was = representation.training
    representation.eval()
    try:
        with torch.no_grad():
            x = representation(indices=None).detach()
    finally:
        representation.train(was)
    return x


def _rows(x: torch.Tensor) -> torch.Tensor:
    """A (n, d) table as emukg rows: complex → [Re; Im] (n, 2d)."""
    return torch.cat([x.real, x.imag], dim=-1).contiguous() if x.is_complex() else x.contiguous()


def to_emukg_model(model) -> Conversion | None:
    """The emukg model scoring exactly as ``model`` (see the module docstring), or None."""
    from pykeen.nn.modules import ComplExInteraction, DistMultInteraction, TransEInteraction

    if why_not(model) is not None:
        return None
    E, R = _table(model.entity_representations[0]), _table(model.relation_representations[0])
    if E.dim() != 2 or R.dim() != 2 or E.dtype not in (torch.float32, torch.complex64) or R.dtype != E.dtype:
        return None
    N, Rn = E.shape[0], R.shape[0]
    kind = type(model.interaction)
    if kind in (TransEInteraction, DistMultInteraction):
        if E.is_complex() or E.shape[1] != R.shape[1]:
            return None
        name, d, de, dr = ("TransE" if kind is TransEInteraction else "DistMult"), E.shape[1], False, False
        ent, rel = E, R
    elif kind is ComplExInteraction:
        if not E.is_complex() or E.shape[1] != R.shape[1]:
            return None
        name, d, de, dr = "ComplEx", E.shape[1], True, True
        ent, rel = _rows(E), _rows(R)
    out = build_model(name, N, Rn, d, 0.0, de, dr).to(E.device)
    with torch.no_grad():
        out.entity_embedding.copy_(ent)
        out.relation_embedding.copy_(rel)
    return Conversion(out.eval(), name, d, de, dr)
