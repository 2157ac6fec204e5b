"""Wrappers of ``candidates.c``: fused candidate scoring for training (forward and backward, the EMU and Mixup
mutations, the extended metrics of pRotatE, TransD and HAKE), the EMU keep mask and the vectorised sin/cos."""

from __future__ import annotations

import torch

from .build import _require
from .checks import _metric, _status, _tensor, _threads, _u32, check_ids, ptr
from .codes import EVAL_METRICS, EXT_METRICS, Metric, Mut


MIN_ROW_FLOATS = 16  # candidates.c works on 16-float chunks: D (COMPLEX_L1: D/2) must be at least this


def _check_mutation(fn, mut, ratio, cand, B: int, C: int, N: int, T) -> int:
    """The checks every candidate kernel shares: Mixup's ratio (B, C) iff mut=MIXUP, at least the positive's
    column, candidate ids below N, the EMU threshold T ≤ 2²⁴; returns T as an unsigned 32-bit int."""
    if mut == Mut.MIXUP:
        if ratio is None:
            raise ValueError(f"{fn}: mut=MIXUP needs ratio, a float32 (B, C) tensor of mixing ratios.")
        _tensor(fn, "ratio", ratio, torch.float32, (B, C))
    elif ratio is not None:
        raise ValueError(f"{fn}: ratio is only read with mut=MIXUP; pass ratio=None for mut={mut.name}.")
    if C < 1 and B > 0:
        raise ValueError(f"{fn}: cand must hold at least one column (the positive's entity).")
    check_ids(fn, "cand", cand, N)
    T = _u32(fn, "T", T)
    if T > 1 << 24:
        raise ValueError(f"{fn}: T must be at most 2**24 (keep_threshold(p)), not {T}.")
    return T


def _cand_args(fn, q, E, cand, metric, mut, s0, s1, T, ratio):
    metric = _metric(fn, metric)
    try:
        mut = Mut(int(mut))
    except ValueError:
        raise ValueError(f"{fn}: mut must be one of {[m.name for m in Mut]}, not {mut!r}.") from None
    if metric not in EVAL_METRICS:
        raise ValueError(f"{fn}: metric {metric.name} is served by cand_ext_fwd/cand_ext_bwd; call those instead.")
    _tensor(fn, "E", E, torch.float32, (None, None))
    N, D = E.shape
    _tensor(fn, "cand", cand, torch.int64, (None, None))
    B, C = cand.shape
    _tensor(fn, "q", q, torch.float32, (B, D))
    L = D // 2 if metric == Metric.COMPLEX_L1 else D
    if L < MIN_ROW_FLOATS or (metric == Metric.COMPLEX_L1 and D % 2):
        raise ValueError(f"{fn}: rows of {D} floats are too narrow for metric {metric.name}; the kernel needs "
                         f"{'an even D with D/2' if metric == Metric.COMPLEX_L1 else 'D'} >= {MIN_ROW_FLOATS} (pad with zeros).")
    T = _check_mutation(fn, mut, ratio, cand, B, C, N, T)
    return metric, mut, B, C, D, N, _u32(fn, "s0", s0), _u32(fn, "s1", s1), T


def keep_masks(metric, D: int) -> int:
    """The 16-bit keep masks the forward stores per candidate for the backward (:func:`cand_fwd`'s ``keep_out``):
    one per 16-float chunk of a row, COMPLEX_L1 two (the real and the imaginary part of its D/2 coordinates)."""
    parts = 2 if Metric(int(metric)) == Metric.COMPLEX_L1 else 1
    return -(-(D // parts) // MIN_ROW_FLOATS) * parts


def _keep_arg(fn: str, keep, metric, mut, B: int, C: int, D: int):
    """``keep`` checked: None, or with mut=EMU an int16 (B, C, keep_masks) tensor (the masks' bits)."""
    if keep is None:
        return None
    if mut != Mut.EMU:
        raise ValueError(f"{fn}: keep masks exist only for mut=EMU; pass keep=None for mut={Mut(mut).name}.")
    _tensor(fn, "keep", keep, torch.int16, (B, C, keep_masks(metric, D)))
    return keep


def cand_fwd(q: torch.Tensor, E: torch.Tensor, cand: torch.Tensor, metric, bias: float = 0.0, mut=Mut.NONE,
             s0: int = 0, s1: int = 0, T: int = 0, ratio: torch.Tensor | None = None,
             threads: int | None = None, *, b0: int = 0, keep_out: torch.Tensor | None = None) -> torch.Tensor:
    """Scores (B, C) float32 of candidates ``cand`` (B, C) int64 (column 0 the positive) against queries ``q``
    (B, D) float32 over the entity table ``E`` (N, D) float32: ``bias − dist`` (L1, COMPLEX_L1) or ``bias + q·x``
    (DOT) of the mutated candidate x' (see candidates.c; ``mut`` EMU with seed words ``s0, s1`` and threshold
    ``T``, MIXUP with ``ratio`` (B, C); ``b0``: the EMU mask of batch rows ``b0 .. b0 + B − 1``, a shard of a larger
    batch).  ``keep_out`` (mut=EMU): an int16 (B, C, :func:`keep_masks`) tensor that receives the mask's bits, for
    :func:`cand_bwd` to read back instead of hashing them again (2 bytes per 16 components: TransE at B=1000, n=256,
    d=100, 3.6 MB).  Memory: the (B, C) output plus 4·D bytes in C."""
    fn = "emukg_cand_fwd"
    lib = _require("candidates")
    metric, mut, B, C, D, N, s0, s1, T = _cand_args(fn, q, E, cand, metric, mut, s0, s1, T, ratio)
    keep_out = _keep_arg(fn, keep_out, metric, mut, B, C, D)
    out = torch.empty(B, C, dtype=torch.float32)
    rc = lib.emukg_cand_fwd(B, C, D, q.data_ptr(), E.data_ptr(), cand.data_ptr(), int(metric), float(bias), int(mut),
                            s0, s1, T, _row0(fn, b0), ratio.data_ptr() if ratio is not None else None, out.data_ptr(),
                            ptr(keep_out), _threads(threads))
    _status(fn, rc, 4 * D, "the machine is out of memory; free memory or lower the batch size")
    return out


def _grad_target(fn: str, out_E, slot, cand: torch.Tensor, N: int, D: int, need_E: bool):
    """The gradient table a backward adds the candidates' rows to, and the row of each candidate in it: ``out_E``
    (checked: float32 (rows, D)) or a fresh zero (N, D) table; ``slot`` (B, C) int64 ids below its rows, or None
    for the entity ids themselves.  None when the entity gradient is not needed."""
    if not need_E:
        if out_E is not None or slot is not None:
            raise ValueError(f"{fn}: out_E and slot are only read with need_E=True.")
        return None
    if out_E is None:
        if slot is not None:
            raise ValueError(f"{fn}: slot maps candidates to the rows of out_E; pass out_E with it.")
        return torch.zeros(N, D, dtype=torch.float32)
    _tensor(fn, "out_E", out_E, torch.float32, (None, D))
    if slot is None:
        if out_E.shape[0] != N:
            raise ValueError(f"{fn}: out_E has {out_E.shape[0]} rows; without slot it must have one per entity ({N}).")
    else:
        _tensor(fn, "slot", slot, torch.int64, tuple(cand.shape))
        check_ids(fn, "slot", slot, out_E.shape[0])
    return out_E


def cand_bwd(q: torch.Tensor, E: torch.Tensor, cand: torch.Tensor, gout: torch.Tensor, metric, mut=Mut.NONE,
             s0: int = 0, s1: int = 0, T: int = 0, ratio: torch.Tensor | None = None, *, need_q: bool = True,
             need_E: bool = True, out_E: torch.Tensor | None = None, slot: torch.Tensor | None = None,
             threads: int | None = None, b0: int = 0, keep: torch.Tensor | None = None):
    """Gradients ``(gq (B, D) | None, gE | None)`` of :func:`cand_fwd` for the output gradient ``gout`` (B, C)
    float32.  The candidates' gradients are ADDED to ``out_E`` at rows ``slot`` (B, C) — a compact table of the
    rows a training step touches — or at their entity ids (``slot`` None); without ``out_E`` to a fresh zero (N, D)
    table.  gE is that table.  Threads own gradient rows by entity id (no private copies of the table; see
    candidates.c); C allocates 4·D bytes plus, per thread, 2·B·⌈D/16⌉·16 floats of partial sums and C ids.
    ``keep`` (mut=EMU): the masks :func:`cand_fwd` stored (``keep_out``) for the same arguments, read instead of
    hashing the mask again; the gradients are the same bits either way."""
    fn = "emukg_cand_bwd"
    lib = _require("candidates")
    metric, mut, B, C, D, N, s0, s1, T = _cand_args(fn, q, E, cand, metric, mut, s0, s1, T, ratio)
    keep = _keep_arg(fn, keep, metric, mut, B, C, D)
    _tensor(fn, "gout", gout, torch.float32, (B, C))
    gq = torch.empty(B, D, dtype=torch.float32) if need_q else None
    gE = _grad_target(fn, out_E, slot, cand, N, D, need_E)
    nt = _threads(threads)
    rc = lib.emukg_cand_bwd(B, C, D, gE.shape[0] if gE is not None else 0, q.data_ptr(), E.data_ptr(), cand.data_ptr(),
                            ptr(slot), int(metric), int(mut), s0, s1, T, _row0(fn, b0), ptr(ratio), ptr(keep),
                            gout.data_ptr(), ptr(gq), ptr(gE), nt)
    _status(fn, rc, 4 * D + nt * (2 * B * _pad_rows(D) * 4 + 8 * C), "the machine is out of memory; free memory or lower the batch size")
    return gq, gE


def emu_mask(B: int, C: int, D: int, s0: int, s1: int, T: int, threads: int | None = None, *, row0: int = 0) -> torch.Tensor:
    """The EMU keep mask (B, C, D) as uint8 (1 = keep; column 0 all ones) for seed words ``s0, s1`` and threshold
    ``T`` (emukg.emu.keep_threshold), of the batch rows ``row0 .. row0 + B − 1`` (a row chunk of a larger batch).
    Memory: B·C·D bytes out, 4·D in C."""
    fn = "emukg_emu_mask"
    lib = _require("candidates")
    B, C, D, row0 = int(B), int(C), int(D), int(row0)
    if B < 0 or C < 0 or D < 0 or row0 < 0:
        raise ValueError(f"{fn}: B, C, D and row0 must be non-negative, not {(B, C, D, row0)}.")
    T = _u32(fn, "T", T)
    if T > 1 << 24:
        raise ValueError(f"{fn}: T must be at most 2**24 (keep_threshold(p)), not {T}.")
    out = torch.empty(B, C, D, dtype=torch.uint8)
    rc = lib.emukg_emu_mask(B, C, D, row0, _u32(fn, "s0", s0), _u32(fn, "s1", s1), T, out.data_ptr(), _threads(threads))
    _status(fn, rc, 4 * D, "the machine is out of memory; free memory or lower the batch size")
    return out


def _ext_args(fn, q, aux, E, cand, metric, mut, s0, s1, T, ratio, scale, wm, wp):
    """Checks of the extended-metric kernels; returns (metric, mut, B, C, D, N, L, s0, s1, T, scale, wm, wp)."""
    metric = _metric(fn, metric)
    if metric not in EXT_METRICS:
        raise ValueError(f"{fn}: metric must be one of {[m.name for m in EXT_METRICS]}, not {metric.name}; "
                         "call cand_fwd/cand_bwd for the others.")
    try:
        mut = Mut(int(mut))
    except ValueError:
        raise ValueError(f"{fn}: mut must be one of {[m.name for m in Mut]}, not {mut!r}.") from None
    _tensor(fn, "E", E, torch.float32, (None, None))
    N, D = E.shape
    _tensor(fn, "cand", cand, torch.int64, (None, None))
    B, C = cand.shape
    P = 1 if metric == Metric.SIN_L1 else 2
    if D < P or D % P:
        raise ValueError(f"{fn}: metric {metric.name} needs {'rows of at least one float' if P == 1 else 'an even row width (two halves)'}, not {D}.")
    L = D // P
    _tensor(fn, "q", q, torch.float32, (B, L if metric == Metric.TRANSD_L1 else D))
    if metric == Metric.SIN_L1:
        if aux is not None:
            raise ValueError(f"{fn}: metric SIN_L1 reads no aux vector; pass aux=None.")
    else:
        if aux is None:
            raise ValueError(f"{fn}: metric {metric.name} needs aux, a float32 (B, {L}) tensor (one vector per query).")
        _tensor(fn, "aux", aux, torch.float32, (B, L))
    T = _check_mutation(fn, mut, ratio, cand, B, C, N, T)
    scale, wm, wp = float(scale), float(wm), float(wp)
    if metric != Metric.TRANSD_L1 and not (scale > 0 and scale < float("inf")):
        raise ValueError(f"{fn}: scale must be a finite number > 0 (the phase unit, range/π), not {scale}.")
    return metric, mut, B, C, D, N, L, _u32(fn, "s0", s0), _u32(fn, "s1", s1), T, scale, wm, wp


def _row0(fn: str, b0) -> int:
    """The first batch row of a call (the EMU mask's row counter starts there), checked: an integer in [0, 2**62)."""
    if isinstance(b0, bool) or not isinstance(b0, int) or not 0 <= b0 < 1 << 62:
        raise ValueError(f"{fn}: b0 must be an integer in [0, 2**62), not {b0!r}.")
    return b0


def _pad_rows(D: int) -> int:
    return -(-D // 16) * 16


def cand_ext_fwd(q: torch.Tensor, aux: torch.Tensor | None, E: torch.Tensor, cand: torch.Tensor, metric,
                 bias: float = 0.0, *, scale: float = 1.0, wm: float = 1.0, wp: float = 1.0, mut=Mut.NONE, s0: int = 0,
                 s1: int = 0, T: int = 0, ratio: torch.Tensor | None = None, threads: int | None = None,
                 b0: int = 0) -> torch.Tensor:
    """Scores (B, C) float32 of the extended training metrics (:data:`EXT_METRICS`, formulas in candidates.c):
    SIN_L1 ``bias − wp·Σ|sin(q − x'/scale)|`` (q (B, D), aux None); TRANSD_L1 ``bias − ‖q − normalize(e' +
    (e'·eₚ')·aux)‖₁`` for rows [e, eₚ] (q, aux (B, D/2)); HAKE ``bias − (wm·‖q_m − aux∘x'_m‖₂ + wp·Σ|sin(q_p −
    x'_p/scale)|)`` for rows [x_m, x_p] (q (B, D), aux (B, D/2)).  Any D ≥ 1 (per half).  Mutation as
    :func:`cand_fwd`.  Memory: the (B, C) output; C allocates 4·D + T·6·4·⌈L/16⌉·16 bytes (T threads)."""
    fn = "emukg_cand_ext_fwd"
    lib = _require("candidates")
    metric, mut, B, C, D, N, L, s0, s1, T, scale, wm, wp = _ext_args(fn, q, aux, E, cand, metric, mut, s0, s1, T,
                                                                     ratio, scale, wm, wp)
    out = torch.empty(B, C, dtype=torch.float32)
    nt = _threads(threads)
    if B == 0:
        return out
    rc = lib.emukg_cand_ext_fwd(B, C, D, q.data_ptr(), ptr(aux), E.data_ptr(), cand.data_ptr(), int(metric), float(bias),
                                scale, wm, wp, int(mut), s0, s1, T, _row0(fn, b0), ptr(ratio), out.data_ptr(), nt)
    _status(fn, rc, 4 * D + nt * 6 * 4 * _pad_rows(L), "the machine is out of memory; free memory or lower the batch size")
    return out


def cand_ext_bwd(q: torch.Tensor, aux: torch.Tensor | None, E: torch.Tensor, cand: torch.Tensor, gout: torch.Tensor,
                 metric, *, scale: float = 1.0, wm: float = 1.0, wp: float = 1.0, mut=Mut.NONE, s0: int = 0, s1: int = 0,
                 T: int = 0, ratio: torch.Tensor | None = None, need_q: bool = True, need_aux: bool = True,
                 need_E: bool = True, out_E: torch.Tensor | None = None, slot: torch.Tensor | None = None,
                 threads: int | None = None, b0: int = 0):
    """Gradients ``(gq | None, gaux | None, gE | None)`` of :func:`cand_ext_fwd` for the output gradient ``gout``
    (B, C) float32 (gaux is None without aux); the candidates' gradients are added to ``out_E`` / ``slot`` as in
    :func:`cand_bwd`.  C allocates 4·D bytes plus, per thread, 5·B·⌈L/16⌉·16 floats of partial sums, C ids and
    10 rows of ⌈L/16⌉·16 floats."""
    fn = "emukg_cand_ext_bwd"
    lib = _require("candidates")
    metric, mut, B, C, D, N, L, s0, s1, T, scale, wm, wp = _ext_args(fn, q, aux, E, cand, metric, mut, s0, s1, T,
                                                                     ratio, scale, wm, wp)
    _tensor(fn, "gout", gout, torch.float32, (B, C))
    gq = torch.zeros(q.shape, dtype=torch.float32) if need_q else None
    gaux = torch.zeros(B, L, dtype=torch.float32) if need_aux and aux is not None else None
    gE = _grad_target(fn, out_E, slot, cand, N, D, need_E)
    if B == 0:
        return gq, gaux, gE
    nt = _threads(threads)
    rc = lib.emukg_cand_ext_bwd(B, C, D, gE.shape[0] if gE is not None else 0, q.data_ptr(), ptr(aux), E.data_ptr(),
                                cand.data_ptr(), ptr(slot), int(metric), scale, wm, wp, int(mut), s0, s1, T, _row0(fn, b0),
                                ptr(ratio), gout.data_ptr(), ptr(gq), ptr(gaux), ptr(gE), nt)
    _status(fn, rc, 4 * D + nt * (5 * B + 10) * 4 * _pad_rows(L) + nt * 8 * C,
            "the machine is out of memory; free memory or lower the batch size")
    return gq, gaux, gE


def sincos(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sin z, cos z) of a float32 tensor by the kernels' vectorised sin/cos (the one SIN_L1 and HAKE use), for
    accuracy tests.  Memory: two outputs of z's size."""
    fn = "emukg_sincos"
    lib = _require("candidates")
    _tensor(fn, "z", z, torch.float32, tuple(None for _ in z.shape))
    s, c = torch.empty_like(z), torch.empty_like(z)
    if z.numel():
        lib.emukg_sincos(z.numel(), z.data_ptr(), s.data_ptr(), c.data_ptr())
    return s, c
