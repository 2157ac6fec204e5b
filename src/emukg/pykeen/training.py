"""EMU as a PyKEEN training loop: :class:`EMUTrainingLoop` (registered in PyKEEN's ``training_loop_resolver`` as "emu").

EMU mutates the negatives' *representations*, so it cannot be a PyKEEN negative sampler (indices only) or loss
(scores only); it is an sLCWA training loop whose batch processing does what PyKEEN's does up to the scores, and
then EMU's.  For a batch of B positives and the n negatives per positive of *any* PyKEEN negative sampler::

    X      = [positive, negative_1 … negative_n]          (B, C = 1 + n, 3) index triples
    h, r, t = model._get_representations(X)               every slot's representations, (B, C, …) each
    s       = interaction(h, r, t)                        (B, C), column 0 the positive
    X'      = M ⊙ X + (1 − M) ⊙ x⁺  per slot              EMU's mask (emukg.emu.hash_mask, the same bits as emukg)
    s'      = interaction(h', r', t')
    L       = L_EMU(s') / n + ce_coef · L_CE(s) + model.collect_regularization_term()
    L_EMU   = mean_b −Σⱼ yⱼ log softmax(s'_b)ⱼ,  y = [1, λ, …, λ]        L_CE = mean_b −log softmax(s_b)₀

exactly emukg's loss (:mod:`emukg.objectives.emu_term`, :func:`emukg.objectives.cross_entropy.soft_label_ce`).

**The mask.**  One 64-bit seed per batch from the loop's own ``torch.Generator`` (seeded by ``seed``, by default
drawn once from torch's global RNG, which ``pipeline(random_seed=…)`` seeds), and the counter-based hash of
:func:`emukg.emu.hash_mask`: keep(b, j, i) for batch row b, candidate j, feature i.  A slot's representation — a
tensor, or a tuple of them (TransD's (e, eₚ), PairRE's two relation vectors) — is flattened into one row of D real
features: its components in order, each flattened, a complex one as [real parts, imaginary parts] (emukg's layout),
and one (B, C, D) mask covers the whole row, so every component is mutated, with the bits emukg uses for the same
row layout (TransD's entity row [e, eₚ] is emukg's TransD row).  The head, relation and tail slots use the same seed;
a slot whose candidates all equal the positive (the head of a tail corruption) is left alone (mutating it would
change nothing).  ``mixup``: one ratio a ~ Beta(2, 1) per candidate for every slot (:func:`emukg.emu.mixup`);
``only_ls``: the soft labels without mutation (s' = s).

**Filtered negatives.**  With a PyKEEN filterer the batch carries a keep mask (B, n); a dropped negative gets the
score −∞ in both softmaxes and the label 0, and the EMU term is still divided by n.

**Base loss.**  ``base_loss="ce"`` (default) is emukg's CE above; ``base_loss="pykeen"`` uses the model's PyKEEN
loss on the unmutated scores instead (``loss.process_slcwa_scores``, with label smoothing and loss weights).

**Cost.**  Two interaction passes over (B, C) candidates instead of PyKEEN's one over B·(1 + n) triples, the mask
hashed in torch integer ops (or emukg's C kernel on a CPU), and autograd keeps both passes' representations:
≈ 2 · B · C · (D_h + D_r + D_t) floats plus the interaction's own temporaries.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pykeen.training import SLCWATrainingLoop, TrainingLoop, training_loop_resolver

from ..emu import Mutation
from ..errors import ParamError
from ..objectives.cross_entropy import soft_label_ce

BASE_LOSSES = ("ce", "pykeen")


@dataclass
class EMUSettings:
    """EMU's settings: keep probability ``emu`` = p, soft label ``neg_label`` = λ, ``ce_coef``, the ablations."""

    emu: float = 0.39  # the paper's runs: -if_EMU 0.39 -neg_label 0.53 -CE_coef 0.11
    neg_label: float = 0.53
    ce_coef: float = 0.11
    mixup: bool = False
    only_ls: bool = False
    base_loss: str = "ce"

    def checked(self) -> "EMUSettings":
        """Converted and checked (a :class:`~emukg.errors.ParamError` names the parameter)."""
        for name, low, high in (("emu", 0.0, 1.0), ("neg_label", 0.0, 1.0), ("ce_coef", 0.0, float("inf"))):
            value = getattr(self, name)
            try:
                value = float(value)
            except (TypeError, ValueError):
                raise ParamError(name, value, "must be a number.") from None
            if not low <= value <= high:
                where = f"in [{low:g}, {high:g}]" if high != float("inf") else f"≥ {low:g}"
                raise ParamError(name, value, f"must be {where}.")
            setattr(self, name, value)
        self.mixup, self.only_ls = bool(self.mixup), bool(self.only_ls)
        if self.mixup and self.only_ls:
            raise ParamError("only_ls", True, "and {mixup} are two different ablations; choose one.")
        if self.base_loss not in BASE_LOSSES:
            raise ParamError("base_loss", self.base_loss, f"must be one of {', '.join(BASE_LOSSES)}.")
        return self


# --- representations as rows of real features --------------------------------------------------------------------
def _components(x) -> list[torch.Tensor]:
    return list(x) if isinstance(x, (tuple, list)) else [x]


def _flatten(x, lead: tuple[int, int]) -> tuple[torch.Tensor, list]:
    """A slot's representation (a tensor or a tuple) as one (B, C, D) real tensor, and the layout to undo it."""
    feats, layout = [], []
    for c in _components(x):
        if tuple(c.shape[:2]) != lead:
            raise ValueError(f"a representation of shape {tuple(c.shape)} does not start with the candidates' {lead}")
        parts = [c.real, c.imag] if c.is_complex() else [c]
        feats.extend(p.reshape(*lead, -1) for p in parts)
        layout.append((c.is_complex(), tuple(c.shape[2:]), parts[0][0, 0].numel()))
    return (feats[0] if len(feats) == 1 else torch.cat(feats, dim=-1)), layout


def _unflatten(X: torch.Tensor, layout: list, was_tuple: bool):
    out, at = [], 0
    lead = X.shape[:2]
    for is_complex, shape, size in layout:
        if is_complex:
            re, im = X[..., at:at + size], X[..., at + size:at + 2 * size]
            at += 2 * size
            out.append(torch.complex(re.reshape(*lead, *shape), im.reshape(*lead, *shape)))
        else:
            out.append(X[..., at:at + size].reshape(*lead, *shape))
            at += size
    return tuple(out) if was_tuple else out[0]


def mutate_slot(x, mutation: Mutation, row0: int = 0):
    """A slot's representation (B, C, …) mutated with ``mutation`` over its flattened feature row (see the module
    docstring); column 0 is the positive."""
    lead = tuple(_components(x)[0].shape[:2])
    X, layout = _flatten(x, lead)
    return _unflatten(mutation.apply(X, row0=row0), layout, isinstance(x, (tuple, list)))


def _cat(a, b):
    """Two slots' representations (tensors or tuples) joined along the candidate axis (dim 1)."""
    if isinstance(a, (tuple, list)):
        return tuple(torch.cat([x, y], dim=1) for x, y in zip(a, b))
    return torch.cat([a, b], dim=1)


def candidate_representations(model, positives: torch.Tensor, negatives: torch.Tensor, mode=None):
    """The candidates' index triples X (B, 1 + n, 3) — [positive, negatives] — and their (h, r, t) representations.

    Gathered as PyKEEN's sLCWA loop gathers them — the positives once, the negatives once — so a representation
    regulariser (e.g. DistMult's relation Lp term, a mean per gather) adds the same term as in PyKEEN's own loop."""
    X = torch.cat([positives.unsqueeze(1), negatives], dim=1)
    pos = model._get_representations(h=X[:, :1, 0], r=X[:, :1, 1], t=X[:, :1, 2], mode=mode)
    neg = model._get_representations(h=X[:, 1:, 0], r=X[:, 1:, 1], t=X[:, 1:, 2], mode=mode)
    return X, tuple(_cat(a, b) for a, b in zip(pos, neg))


def candidate_scores(model, X: torch.Tensor, reps, mutation: Mutation | None = None, row0: int = 0) -> torch.Tensor:
    """Scores (B, 1 + n) of the candidates X with representations ``reps`` through the model's interaction, mutated by
    ``mutation`` first (None: as they are); a slot whose candidates all equal the positive is left alone."""
    h, r, t = reps
    if mutation is not None:
        slots = []
        for k, rep in enumerate((h, r, t)):
            varies = bool((X[..., k] != X[:, :1, k]).any())
            slots.append(mutate_slot(rep, mutation, row0) if varies else rep)
        h, r, t = slots
    return model.interaction(h=h, r=r, t=t)


def emu_loss(model, positives: torch.Tensor, negatives: torch.Tensor, *, generator: torch.Generator,
             settings: EMUSettings, valid: torch.Tensor | None = None, mode=None, row0: int = 0,
             label_smoothing: float = 0.0, pos_weights=None, neg_weights=None) -> torch.Tensor:
    """L_EMU / n + ce_coef · L_base for one (sub-)batch (the module docstring), without the regularisation term.

    ``generator`` draws the mask seed (EMU) or the ratios (Mixup) exactly as :class:`emukg.objectives.emu_term.EmuTerm`
    does; ``valid`` (B, n) bool: the filterer's keep mask (None: all kept); ``row0``: the first row's index in the
    batch (sub-batches), so a sub-batch's mask is its rows' part of the batch's mask.
    """
    s = settings
    B, n = negatives.shape[0], negatives.shape[1]
    if s.only_ls:
        mutation = None
    elif s.mixup:
        mutation = Mutation.mix(B, 1 + n, generator)
    else:
        mutation = Mutation.emu(s.emu, generator)
        mutation.row0 = row0  # the hash counts rows from the batch's first (Mixup's ratios are this sub-batch's own)
    X, reps = candidate_representations(model, positives, negatives, mode)
    scores = candidate_scores(model, X, reps)
    mutated = scores if mutation is None else candidate_scores(model, X, reps, mutation)
    if valid is None:
        target = torch.zeros(B, dtype=torch.int64, device=scores.device)
        emu_term = soft_label_ce(mutated, s.neg_label)
        base = F.cross_entropy(scores, target) if s.base_loss == "ce" else None
    else:
        keep = torch.cat([torch.ones(B, 1, dtype=torch.bool, device=valid.device), valid.to(torch.bool)], dim=1)
        logp = torch.log_softmax(mutated.masked_fill(~keep, float("-inf")), dim=1).masked_fill(~keep, 0.0)
        emu_term = -(logp[:, 0] + s.neg_label * logp[:, 1:].sum(1)).mean()
        base = (-torch.log_softmax(scores.masked_fill(~keep, float("-inf")), dim=1)[:, 0]).mean() if s.base_loss == "ce" else None
    if base is None:  # the model's own PyKEEN loss on the unmutated scores
        negative_scores = scores[:, 1:] if valid is None else scores[:, 1:][valid.to(torch.bool)]
        base = model.loss.process_slcwa_scores(
            positive_scores=scores[:, :1], negative_scores=negative_scores, label_smoothing=label_smoothing,
            batch_filter=valid, num_entities=model._get_entity_len(mode=mode), pos_weights=pos_weights,
            neg_weights=neg_weights)
    return emu_term / n + s.ce_coef * base


class EMUTrainingLoop(SLCWATrainingLoop):
    """PyKEEN's sLCWA training loop with EMU (see the module docstring); ``training_loop="emu"``.

    ``emu`` p ∈ [0, 1], ``neg_label`` λ ∈ [0, 1], ``ce_coef`` ≥ 0, ``mixup`` / ``only_ls`` (the ablations),
    ``base_loss`` ("ce" or "pykeen"), ``seed`` (the mask generator's; None: one draw from torch's global RNG) as
    ``training_loop_kwargs``; ``negative_sampler`` and the rest as for :class:`~pykeen.training.SLCWATrainingLoop`.
    The EMU settings are also accepted by :meth:`train` (so ``pipeline(training_kwargs=…)`` and ``hpo_pipeline``'s
    ``training_kwargs_ranges`` reach them) and have default search ranges in :data:`hpo_default`.
    """

    hpo_default: ClassVar[dict[str, Any]] = dict(
        **TrainingLoop.hpo_default,
        emu=dict(type=float, low=0.1, high=0.9),
        neg_label=dict(type=float, low=0.0, high=1.0),
        ce_coef=dict(type=float, low=0.0, high=1.0),
    )

    def __init__(self, *, emu: float = 0.39, neg_label: float = 0.53, ce_coef: float = 0.11, mixup: bool = False,
                 only_ls: bool = False, base_loss: str = "ce", seed: int | None = None, **kwargs) -> None:
        self.settings = EMUSettings(emu, neg_label, ce_coef, mixup, only_ls, base_loss).checked()
        super().__init__(**kwargs)
        self.seed = int(torch.randint(0, 2**62, (1,)).item()) if seed is None else int(seed)
        self._generator: torch.Generator | None = None

    @property
    def generator(self) -> torch.Generator:
        """The mask generator on the model's device (seeded with ``seed`` when first used there)."""
        device = torch.device(self.device)
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device)
            self._generator.manual_seed(self.seed)
        return self._generator

    def train(self, triples_factory, *args, emu: float | None = None, neg_label: float | None = None,
              ce_coef: float | None = None, mixup: bool | None = None, only_ls: bool | None = None, **kwargs):
        """PyKEEN's ``train``; EMU settings given here replace the loop's (for hpo_pipeline's training_kwargs)."""
        given = dict(emu=emu, neg_label=neg_label, ce_coef=ce_coef, mixup=mixup, only_ls=only_ls)
        fields = {**vars(self.settings), **{k: v for k, v in given.items() if v is not None}}
        self.settings = EMUSettings(**fields).checked()
        return super().train(triples_factory, *args, **kwargs)

    def _process_batch(self, batch, start: int, stop: int, label_smoothing: float = 0.0,
                       slice_size: int | None = None) -> torch.Tensor:
        if slice_size is not None:
            raise AttributeError("Slicing is not possible for sLCWA training loops.")
        device = self.model.device
        positives = batch["positives"][start:stop].to(device)
        negatives = batch["negatives"][start:stop].to(device)
        valid = batch.get("masks")
        valid = valid[start:stop].to(device) if valid is not None else None
        pos_w, neg_w = batch.get("pos_weights"), batch.get("neg_weights")
        pos_w = pos_w[start:stop].to(device) if pos_w is not None else None
        neg_w = neg_w[start:stop].to(device) if neg_w is not None else None
        loss = emu_loss(self.model, positives, negatives, generator=self.generator, settings=self.settings,
                        valid=valid, mode=self.mode, row0=start or 0, label_smoothing=label_smoothing,
                        pos_weights=pos_w, neg_weights=neg_w)
        return loss + self.model.collect_regularization_term()


def register() -> None:
    """Make "emu" a name of PyKEEN's ``training_loop_resolver`` (idempotent)."""
    if training_loop_resolver.lookup_dict.get("emu") is not EMUTrainingLoop:
        training_loop_resolver.register(EMUTrainingLoop, raise_on_conflict=False)


@contextlib.contextmanager
def hpo_treats_emu_as_slcwa():
    """Within the block, PyKEEN's hpo module sees :class:`EMUTrainingLoop` where it checks
    ``training_loop is SLCWATrainingLoop`` by identity, so an EMU study gets (and searches) its negative sampler."""
    import pykeen.hpo.hpo as hpo_module

    saved = hpo_module.SLCWATrainingLoop
    hpo_module.SLCWATrainingLoop = EMUTrainingLoop
    try:
        yield
    finally:
        hpo_module.SLCWATrainingLoop = saved


def hpo_pipeline(**kwargs):
    """:func:`pykeen.hpo.hpo_pipeline` with ``training_loop="emu"`` by default, its negative sampler handled (see
    :func:`hpo_treats_emu_as_slcwa`); EMU's settings are searched through ``training_kwargs_ranges`` (defaults:
    :attr:`EMUTrainingLoop.hpo_default`) or fixed through ``training_kwargs``."""
    from pykeen.hpo import hpo_pipeline as pykeen_hpo_pipeline

    kwargs.setdefault("training_loop", "emu")
    loop = training_loop_resolver.lookup(kwargs["training_loop"])
    if loop is not EMUTrainingLoop:
        return pykeen_hpo_pipeline(**kwargs)
    with hpo_treats_emu_as_slcwa():
        return pykeen_hpo_pipeline(**kwargs)
