"""The fused native kernel as autograd functions: scores of (mutated) candidates without a B×C×D tensor.

:func:`fused_scores` serves the kinds 'l1', 'dot', 'c2' (a query vector q per row), :func:`fused_ext_scores` the
extended kinds of :class:`~emukg.scoring.fast_paths.KernelQuery` ('sin_l1', 'transd_l1', 'hake').  Both pass the EMU
mask's seed to the kernel, which regenerates the mask in its loops (:mod:`emukg.emu`); with the step's
:class:`~emukg.scoring.step_rows.StepRows` the candidates' gradients are added to its table in place.
"""

from __future__ import annotations

import torch

import emukg.kernels as kernels
from ..emu import _M32, Mutation, keep_threshold
from .step_rows import StepRows


def fused_scores(q: torch.Tensor, E: torch.Tensor, candidates: torch.Tensor, kind: str, bias: float,
                 mutation: Mutation | None = None, rows: StepRows | None = None) -> torch.Tensor:
    """The native kernel: s[b, j] = bias − ‖q_b − x'_bj‖₁ (kind 'l1'), bias + q_b·x'_bj (kind 'dot'), or
    bias − Σₖ |q_bk − x'_bjk| over complex coordinates k (kind 'c2'; rows [real half, imaginary half], D ≥ 32).
    ``rows``: the step's :class:`StepRows` (E's gradient goes to its table), else autograd gives E a dense N×D
    gradient."""
    D = E.shape[1]
    metric = kernels.metric_code(kind)
    if metric == kernels.Metric.COMPLEX_L1 and D < 2 * kernels.MIN_ROW_FLOATS:
        raise ValueError("the 'c2' kernel needs at least 16 complex coordinates")
    E_in = E.detach() if rows is not None else E
    if D < kernels.MIN_ROW_FLOATS:  # the kernel works on 16-float chunks; zero columns add nothing to either score
        q = torch.nn.functional.pad(q, (0, kernels.MIN_ROW_FLOATS - D))
        E_in = torch.nn.functional.pad(E_in, (0, kernels.MIN_ROW_FLOATS - D))
    mut, s0, s1, T, ratio, b0 = _mutation_args(mutation)
    cand = candidates.to(torch.int64).contiguous()
    handle, slot = (rows.handle, rows.slot(candidates)) if rows is not None else (None, None)
    # the EMU mask's bits are kept for a backward only where there will be one (a Function's forward runs with grad
    # mode off, so this is decided here)
    keep = mut == kernels.Mut.EMU and torch.is_grad_enabled()
    return _FusedScores.apply(q.contiguous(), E_in.contiguous(), cand, ratio, metric, float(bias), mut, s0, s1, T, b0,
                              handle, rows, slot if slot is None else slot.contiguous(), keep)


class _FusedScores(torch.autograd.Function):
    """The kernel's scores; with EMU the forward keeps the mask's bits (:func:`emukg.kernels.keep_masks`: 2 bytes
    per 16 components, 3.6 MB for TransE at B=1000, n=256, d=100) so that the backward reads them instead of hashing
    every component again (the same bits: tests/test_kernels.py)."""

    @staticmethod
    def forward(ctx, q, E, cand, ratio, kind, bias, mut, s0, s1, T, b0, handle, rows, slot, keep):
        keep = torch.empty(*cand.shape, kernels.keep_masks(kind, E.shape[1]), dtype=torch.int16) if keep else None
        out = kernels.cand_fwd(q, E, cand, kind, bias, mut, s0, s1, T, ratio, b0=b0, keep_out=keep)
        ctx.keep = keep
        ctx.save_for_backward(q, E, cand, ratio, slot)
        ctx.args = (kind, mut, s0, s1, T, b0)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, gout):
        q, E, cand, ratio, slot = ctx.saved_tensors
        kind, mut, s0, s1, T, b0 = ctx.args
        rows = ctx.rows
        keep, ctx.keep = ctx.keep, None
        gq, gE = kernels.cand_bwd(q, E, cand, gout.to(torch.float32).contiguous(), kind, mut, s0, s1, T, ratio,
                                  need_q=ctx.needs_input_grad[0], need_E=rows is not None or ctx.needs_input_grad[1],
                                  out_E=rows.G if rows is not None else None, slot=slot, b0=b0, keep=keep)
        if rows is not None:  # E's gradient was added to the step's table; the handle passes nothing
            return (gq, None) + (None,) * 9 + (gout.new_zeros(0), None, None, None)
        return (gq, gE) + (None,) * 13


def _mutation_args(mutation: Mutation | None):
    """(mut code, s0, s1, T, ratio, b0) of a mutation for the kernels (b0: the EMU mask's first batch row)."""
    if mutation is not None and mutation.kind == "emu":
        s0, s1 = (int(v) & _M32 for v in mutation.seed.tolist())
        return kernels.Mut.EMU, s0, s1, keep_threshold(mutation.p), None, int(mutation.row0)
    if mutation is not None and mutation.kind == "mixup":
        return kernels.Mut.MIXUP, 0, 0, 0, mutation.ratio.to(torch.float32).contiguous(), 0
    return kernels.Mut.NONE, 0, 0, 0, None, 0


def kernel_scores(hook, E: torch.Tensor, candidates: torch.Tensor, mutation: Mutation | None,
                   rows: StepRows | None = None) -> torch.Tensor:
    """Scores (B, C) through the native kernel for a model's ``kernel_query`` result: ``(kind, q, bias)`` for
    'l1'/'dot'/'c2' (:func:`fused_scores`) or a :class:`~emukg.models.base.KernelQuery` of an extended kind
    (:func:`fused_ext_scores`); ``rows``: the step's :class:`StepRows`."""
    if hook[0] in kernels.EXT_METRIC_CODES:
        return fused_ext_scores(hook, E, candidates, mutation, rows)
    kind, q, bias = hook
    return fused_scores(q, E, candidates, kind, bias, mutation, rows)


def fused_ext_scores(hook, E: torch.Tensor, candidates: torch.Tensor, mutation: Mutation | None = None,
                     rows: StepRows | None = None) -> torch.Tensor:
    """The native kernel's extended metrics (:func:`emukg.kernels.cand_ext_fwd`) for a
    :class:`~emukg.models.base.KernelQuery` ``hook`` (kinds 'sin_l1', 'transd_l1', 'hake').

    Without ``hook.modulus`` the kernel applies the bias: s = bias − distance.  With it (pRotatE's learned modulus
    m) the kernel returns −distance and s = bias + m·(−distance) is formed here, so autograd gives m its gradient.
    Gradients reach q, aux (and through them the anchor and relation rows), the candidate rows (the step's
    :class:`StepRows` table, or a dense N×D gradient of E without ``rows``) and m.
    """
    metric = kernels.ext_metric_code(hook.kind)
    mut, s0, s1, T, ratio, b0 = _mutation_args(mutation)
    aux = None if hook.aux is None else hook.aux.contiguous()
    kernel_bias = 0.0 if hook.modulus is not None else float(hook.bias)
    handle, slot = (rows.handle, rows.slot(candidates).contiguous()) if rows is not None else (None, None)
    out = _FusedExtScores.apply(hook.q.contiguous(), aux, (E.detach() if rows is not None else E).contiguous(),
                                candidates.to(torch.int64).contiguous(), ratio, metric, kernel_bias, float(hook.scale),
                                float(hook.wm), float(hook.wp), mut, s0, s1, T, b0, handle, rows, slot)
    if hook.modulus is not None:
        return hook.bias + hook.modulus * out
    return out


class _FusedExtScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, aux, E, cand, ratio, kind, bias, scale, wm, wp, mut, s0, s1, T, b0, handle, rows, slot):
        out = kernels.cand_ext_fwd(q, aux, E, cand, kind, bias, scale=scale, wm=wm, wp=wp, mut=mut, s0=s0, s1=s1, T=T,
                                   ratio=ratio, b0=b0)
        ctx.save_for_backward(q, aux, E, cand, ratio, slot)
        ctx.args = (kind, scale, wm, wp, mut, s0, s1, T, b0)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, gout):
        q, aux, E, cand, ratio, slot = ctx.saved_tensors
        kind, scale, wm, wp, mut, s0, s1, T, b0 = ctx.args
        rows = ctx.rows
        gq, gaux, gE = kernels.cand_ext_bwd(q, aux, E, cand, gout.to(torch.float32).contiguous(), kind, scale=scale, wm=wm,
                                            wp=wp, mut=mut, s0=s0, s1=s1, T=T, ratio=ratio,
                                            need_q=ctx.needs_input_grad[0], need_aux=ctx.needs_input_grad[1],
                                            need_E=rows is not None or ctx.needs_input_grad[2],
                                            out_E=rows.G if rows is not None else None, slot=slot, b0=b0)
        if rows is not None:
            return (gq, gaux, None) + (None,) * 12 + (gout.new_zeros(0), None, None)
        return (gq, gaux, gE) + (None,) * 15
