"""Fused candidate scoring in Triton for a GPU step: EMU's mask computed inside the kernel, forward and backward,
never materialising the B × C × d mutated candidates (issue 24, first part: the kinds ``l1`` and ``dot``).

For a batch of query vectors ``q`` (B, d) (the models' fast paths, :mod:`emukg.scoring.fast_paths`: TransE's
``l1``, DistMult's and ComplEx's ``dot``), the entity table ``E`` (N, d) and candidates ``cand`` (B, C) whose
column 0 is the positive's own entity, the score of candidate c of row b is

    l1:   s[b, c] = bias − Σᵢ |q[b, i] − x'[b, c, i]|        dot:   s[b, c] = bias + Σᵢ q[b, i] · x'[b, c, i]
    x'[b, c, i] = E[cand[b, c], i] if keep(b, c, i) else E[cand[b, 0], i]        (EMU; without EMU x' = E[cand])

with ``keep`` :mod:`emukg.emu`'s counter-based hash of (seed, row0 + b, c, i), evaluated in the kernel from the
step's seed *tensor* (read on the device: no host round trip) — the same bits as :func:`emukg.emu.hash_mask` and
``kernels/candidates.c``.  The backward kernel regenerates the mask and writes ∂/∂q (B, d) directly and ∂/∂E
(N, d) by atomic adds (each component's gradient goes to the candidate's row where kept, else to the positive's);
∂|u|/∂u at u = 0 is 0, as in PyTorch.  Memory: the scores (B × C) and the gradients; no (B, C, d) tensor.
Atomic adds make ∂/∂E's summation order vary between runs on a GPU (within float32 rounding).

Status: the kernels and :class:`FusedCandidates` (an autograd function) are tested against the PyTorch path on
the CPU under Triton's interpreter (``TRITON_INTERPRET=1``, tests/test_triton_kernels.py, skipped where Triton is
not installed), the kernels alone and two objective steps through :class:`emukg.scoring.CandidateScorer`.  The
scorer uses them only with ``EMUKG_TRITON=1`` (an opt-in, dense steps, EMU or no mutation): its CUDA path stays
the PyTorch one by default until a GPU window has timed and checked them (benchmarks/gpu_window.sh,
``triton.json``).  The other kinds (RotatE's ``c2``, pRotatE, TransD, HAKE) and Mixup are not written yet.
"""

from __future__ import annotations

import torch

try:  # Triton ships with PyTorch's CUDA builds; on a CPU build it may be absent
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - exercised where Triton is missing
    triton = None
    tl = None

from ..emu import MASK_BITS, keep_threshold

KINDS = {"l1": 0, "dot": 1}
BLOCK_C = 16
BLOCK_D = 32


def available() -> bool:
    """Whether Triton can be imported (its kernels then run on CUDA tensors, or anywhere under TRITON_INTERPRET=1)."""
    return triton is not None


if triton is not None:

    @triton.jit
    def _h32(x):
        x = x ^ (x >> 16)
        x = x * tl.full(x.shape, 0x7FEB352D, tl.uint32)
        x = x ^ (x >> 15)
        x = x * tl.full(x.shape, 0x846CA68B, tl.uint32)
        return x ^ (x >> 16)

    @triton.jit
    def _keep(seed_ptr, row, cols, dims, C, T):
        """keep (BLOCK_C, BLOCK_D) for batch row ``row``, candidates ``cols``, components ``dims`` (emu.hash_mask)."""
        s0 = (tl.load(seed_ptr) & 0xFFFFFFFF).to(tl.uint32)
        s1 = (tl.load(seed_ptr + 1) & 0xFFFFFFFF).to(tl.uint32)
        r = (row * C + cols).to(tl.uint32)
        key = _h32(_h32(r ^ s0) + s1)
        tab = _h32(_h32(dims.to(tl.uint32) ^ s1) + s0)
        u = _h32(key[:, None] ^ tab[None, :]) >> MASK_BITS_C
        return (u < T.to(tl.uint32)) | (cols[:, None] == 0)

    MASK_BITS_C = tl.constexpr(32 - MASK_BITS)

    @triton.jit
    def _forward(q_ptr, E_ptr, cand_ptr, seed_ptr, out_ptr, B, C, D, row0, T, bias,
                 KIND: tl.constexpr, EMU: tl.constexpr, BC: tl.constexpr, BD: tl.constexpr):
        b = tl.program_id(0)
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        cmask = cols < C
        ids = tl.load(cand_ptr + b * C + cols, mask=cmask, other=0).to(tl.int64)
        pos = tl.load(cand_ptr + b * C).to(tl.int64)
        acc = tl.zeros((BC,), dtype=tl.float32)
        for d0 in range(0, D, BD):
            dims = d0 + tl.arange(0, BD)
            dmask = dims < D
            q = tl.load(q_ptr + b * D + dims, mask=dmask, other=0.0)
            m2 = cmask[:, None] & dmask[None, :]
            x = tl.load(E_ptr + ids[:, None] * D + dims[None, :], mask=m2, other=0.0)
            if EMU:
                xp = tl.load(E_ptr + pos * D + dims, mask=dmask, other=0.0)
                keep = _keep(seed_ptr, row0 + b, cols, dims, C, T)
                x = tl.where(keep, x, xp[None, :])
            if KIND == 0:
                acc += tl.sum(tl.where(m2, tl.abs(q[None, :] - x), 0.0), axis=1)
            else:
                acc += tl.sum(tl.where(m2, q[None, :] * x, 0.0), axis=1)
        if KIND == 0:
            acc = bias - acc
        else:
            acc = bias + acc
        tl.store(out_ptr + b * C + cols, acc, mask=cmask)

    @triton.jit
    def _backward(q_ptr, E_ptr, cand_ptr, seed_ptr, gout_ptr, gq_ptr, gE_ptr, B, C, D, row0, T,
                  KIND: tl.constexpr, EMU: tl.constexpr, BC: tl.constexpr, BD: tl.constexpr):
        """One program per (batch row, block of components): loops over the candidates."""
        b = tl.program_id(0)
        dims = tl.program_id(1) * BD + tl.arange(0, BD)
        dmask = dims < D
        q = tl.load(q_ptr + b * D + dims, mask=dmask, other=0.0)
        pos = tl.load(cand_ptr + b * C).to(tl.int64)
        xp = tl.load(E_ptr + pos * D + dims, mask=dmask, other=0.0)
        gq = tl.zeros((BD,), dtype=tl.float32)
        for c0 in range(0, C, BC):
            cols = c0 + tl.arange(0, BC)
            cmask = cols < C
            m2 = cmask[:, None] & dmask[None, :]
            ids = tl.load(cand_ptr + b * C + cols, mask=cmask, other=0).to(tl.int64)
            g = tl.load(gout_ptr + b * C + cols, mask=cmask, other=0.0)
            x = tl.load(E_ptr + ids[:, None] * D + dims[None, :], mask=m2, other=0.0)
            if EMU:
                keep = _keep(seed_ptr, row0 + b, cols, dims, C, T)
                x = tl.where(keep, x, xp[None, :])
            else:
                keep = tl.full((BC, BD), 1, tl.int1)
            if KIND == 0:  # s = bias − Σ|q − x'|: ∂s/∂q = −sign(q − x'), ∂s/∂x' = sign(q − x')
                u = q[None, :] - x
                sgn = tl.where(u > 0, 1.0, tl.where(u < 0, -1.0, 0.0))
                gq += tl.sum(tl.where(m2, -sgn * g[:, None], 0.0), axis=0)
                gx = sgn * g[:, None]
            else:  # s = bias + Σ q·x': ∂s/∂q = x', ∂s/∂x' = q
                gq += tl.sum(tl.where(m2, x * g[:, None], 0.0), axis=0)
                gx = q[None, :] * g[:, None]
            rows = tl.where(keep, ids[:, None], pos)
            tl.atomic_add(gE_ptr + rows * D + dims[None, :], gx, mask=m2)
        tl.store(gq_ptr + b * D + dims, gq, mask=dmask)


def _check(q, E, cand):
    if triton is None:
        raise RuntimeError("Triton is not installed; the PyTorch path scores the candidates.")
    if q.dtype != torch.float32 or E.dtype != torch.float32:
        raise ValueError("the Triton kernels take float32 q and E")
    if cand.dim() != 2 or q.shape[0] != cand.shape[0] or q.shape[1] != E.shape[1]:
        raise ValueError(f"shapes: q {tuple(q.shape)}, E {tuple(E.shape)}, cand {tuple(cand.shape)} do not agree")


def scores_forward(q, E, cand, kind: str, bias: float = 0.0, seed: torch.Tensor | None = None, p: float = 1.0,
                   row0: int = 0) -> torch.Tensor:
    """The scores (B, C) (see the module docstring); ``seed`` (2,) int64 on the device turns EMU on."""
    _check(q, E, cand)
    B, C = cand.shape
    D = q.shape[1]
    out = torch.empty(B, C, dtype=torch.float32, device=q.device)
    emu = seed is not None
    s = seed if emu else torch.zeros(2, dtype=torch.int64, device=q.device)
    _forward[(B, triton.cdiv(C, BLOCK_C))](q.contiguous(), E.contiguous(), cand.contiguous(), s, out, B, C, D, row0,
                                           keep_threshold(p), float(bias), KIND=KINDS[kind], EMU=emu, BC=BLOCK_C, BD=BLOCK_D)
    return out


def scores_backward(q, E, cand, gout, kind: str, seed: torch.Tensor | None = None, p: float = 1.0,
                    row0: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(∂/∂q (B, d), ∂/∂E (N, d)) of Σ gout · scores."""
    _check(q, E, cand)
    B, C = cand.shape
    D = q.shape[1]
    gq = torch.empty_like(q, dtype=torch.float32)
    gE = torch.zeros_like(E, dtype=torch.float32)
    emu = seed is not None
    s = seed if emu else torch.zeros(2, dtype=torch.int64, device=q.device)
    _backward[(B, triton.cdiv(D, BLOCK_D))](q.contiguous(), E.contiguous(), cand.contiguous(), s,
                                            gout.to(torch.float32).contiguous(), gq, gE, B, C, D, row0,
                                            keep_threshold(p), KIND=KINDS[kind], EMU=emu, BC=BLOCK_C, BD=BLOCK_D)
    return gq, gE


class FusedCandidates(torch.autograd.Function):
    """``FusedCandidates.apply(q, E, cand, kind, bias, seed, p, row0)`` → scores (B, C), differentiable in q and E."""

    @staticmethod
    def forward(ctx, q, E, cand, kind, bias, seed, p, row0):
        ctx.save_for_backward(q, E, cand, seed if seed is not None else torch.empty(0))
        ctx.kind, ctx.p, ctx.row0, ctx.emu = kind, p, row0, seed is not None
        return scores_forward(q.detach(), E.detach(), cand, kind, bias, seed, p, row0)

    @staticmethod
    def backward(ctx, gout):
        q, E, cand, seed = ctx.saved_tensors
        gq, gE = scores_backward(q, E, cand, gout, ctx.kind, seed if ctx.emu else None, ctx.p, ctx.row0)
        return gq, gE, None, None, None, None, None, None


def mask_of(seed: torch.Tensor, B: int, C: int, D: int, p: float, row0: int = 0) -> torch.Tensor:
    """The kernel's mask, written out (B, C, D) bool (for tests: it must equal :func:`emukg.emu.hash_mask`)."""
    if triton is None:
        raise RuntimeError("Triton is not installed.")
    out = torch.empty(B, C, D, dtype=torch.int8, device=seed.device)
    _mask_kernel[(B, triton.cdiv(C, BLOCK_C), triton.cdiv(D, BLOCK_D))](seed, out, C, D, row0, keep_threshold(p),
                                                                          BC=BLOCK_C, BD=BLOCK_D)
    return out.bool()


if triton is not None:

    @triton.jit
    def _mask_kernel(seed_ptr, out_ptr, C, D, row0, T, BC: tl.constexpr, BD: tl.constexpr):
        b = tl.program_id(0)
        cols = tl.program_id(1) * BC + tl.arange(0, BC)
        dims = tl.program_id(2) * BD + tl.arange(0, BD)
        keep = _keep(seed_ptr, row0 + b, cols, dims, C, T)
        m2 = (cols < C)[:, None] & (dims < D)[None, :]
        tl.store(out_ptr + (b * C + cols[:, None]) * D + dims[None, :], keep.to(tl.int8), mask=m2)
