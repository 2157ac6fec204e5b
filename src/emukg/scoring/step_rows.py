"""The entity rows one training step reads on the fused-kernel path, and the one table their gradients go to.

:class:`StepRows` (dense: an N×D table; row-sparse: a compact U×D table of the distinct rows read),
:class:`StepWorkspace` (the memory row-sparse steps reuse) and :func:`compact_ids` (distinct ids in linear time).
"""

from __future__ import annotations

import torch

import emukg.kernels as kernels
from ..memory import huge_empty


def compact_ids(ids: torch.Tensor, num_rows: int, workspace: "StepWorkspace | None" = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(unique ids ascending, inverse)`` of int64 ``ids`` below ``num_rows``, as ``torch.unique(ids, sorted=True,
    return_inverse=True)`` gives them.  On the CPU, while ``num_rows`` ≤ 64 × the ids, in linear time without a sort:
    the native :func:`emukg.kernels.compact_rows` (a bitmap of the rows and popcount ranks), else torch ops over a
    byte map and a slot index (one scatter, one scan, one gather; ``workspace`` keeps both between calls);
    otherwise by sorting."""
    if ids.device.type != "cpu" or num_rows > 64 * max(1, ids.numel()):
        return torch.unique(ids, sorted=True, return_inverse=True)
    if kernels.available("sparse_optim"):
        return kernels.compact_rows(ids.contiguous(), num_rows)
    seen, slot = (workspace or StepWorkspace()).index(num_rows)
    seen[ids] = True
    uniq = seen.nonzero().squeeze(1)
    seen[uniq] = False  # all False again for the next call
    slot[uniq] = torch.arange(uniq.numel())
    return uniq, slot[ids]


class StepWorkspace:
    """Memory that a run's row-sparse steps reuse instead of paging in fresh memory every step (at 2.5 M entities,
    allocating and zeroing the 186 MB gradient table costs several times as much as zeroing it in place): the
    storage of :class:`StepRows`' compact gradient table, and :func:`compact_ids`' bitmap (N bytes) and slot index
    (8·N bytes).  The sparse gradient a step hands E shares the gradient storage, so it is valid until the next step
    (the trainer sets gradients to None before each step); a step that finds E's gradient still holding it
    (gradients accumulated over several steps) takes a fresh table instead, so an accumulated gradient is never
    overwritten.  (Dense steps allocate their table afresh: reusing it as well measured slower on FB15k-237, with
    Adagrad's kept table, docs/results.md §K2.)"""

    def __init__(self):
        self._grad: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None
        self._slot: torch.Tensor | None = None

    def grad_table(self, rows: int, width: int, dtype: torch.dtype, in_use: torch.Tensor | None = None) -> torch.Tensor:
        """A zeroed (rows, width) CPU tensor on the reused storage (grown by a quarter when too small); a fresh one
        when ``in_use`` (E's current gradient) still lives on that storage."""
        need = rows * width
        held = in_use._values() if in_use is not None and in_use.is_sparse else in_use
        if (held is not None and self._grad is not None
                and held.untyped_storage().data_ptr() == self._grad.untyped_storage().data_ptr()):
            return torch.zeros(rows, width, dtype=dtype)
        if self._grad is None or self._grad.dtype != dtype or self._grad.numel() < need:
            self._grad = None  # free the old storage first
            self._grad = huge_empty(need + need // 4, dtype)
        return self._grad[:need].view(rows, width).zero_()

    def index(self, num_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The all-False bitmap and the slot index for ``num_rows`` rows."""
        if self._seen is None or self._seen.numel() != num_rows:
            self._seen = torch.zeros(num_rows, dtype=torch.bool)
            self._slot = torch.empty(num_rows, dtype=torch.int64)
        return self._seen, self._slot


class StepRows:
    """The entity rows one training step reads on the fused-kernel path, and the one table their gradients go to.

    Every read of the entity table E in a step is announced when the step's scorer is built: the anchors, then
    the candidates of every pass (CE, EMU, the self-adversarial draw).  The gradient table ``G`` has one row per
    entity (``compact=False``: N rows, dense training) or one per distinct row read (``compact=True``: U rows, with
    ``uniq`` the rows' ids ascending and a slot map per read; row-sparse training, :mod:`emukg.optim`).  The
    kernels' backward passes ADD their candidates' gradients to G at the candidates' slots (:func:`emukg.kernels.
    cand_bwd`), the anchors' gradients are added after them (``index_add_``), and one autograd node, ``handle``
    (an empty tensor every read depends on, so it runs after all of them), hands E its gradient: G itself (dense),
    or a coalesced sparse COO tensor over the U rows (compact).  No per-pass N×D (or U×D) gradient exists, autograd
    sums none, nothing is coalesced or sorted, and a step on millions of entities allocates U×D, not N×D.

    **Sum order** of a row's gradient: the passes in autograd's order (the last one scored first), within a pass
    the kernel's fixed order (threads own rows by entity id, see ``candidates.c``), then the anchors in batch
    order — the same in both layouts, so sparse and dense training agree bit for bit (tests/test_sparse.py).

    Memory: G, 4·rows·width bytes (width = D, or 16 when the kernel pads narrower rows); compact: the slot maps,
    8 bytes per id read, and for :func:`compact_ids` a bitmap of N bytes and an 8·N-byte slot index, freed at once.
    """

    def __init__(self, E: torch.Tensor, anchors: torch.Tensor, candidates=(), compact: bool = False,
                 width: int | None = None, workspace: StepWorkspace | None = None):
        N, D = E.shape
        self.E, self.compact, self.num_rows = E, compact, N
        self.candidates = list(candidates)
        if compact:
            ids = torch.cat([anchors.reshape(-1)] + [c.reshape(-1) for c in self.candidates])
            self.uniq, inverse = compact_ids(ids, N, workspace)
            parts = torch.split(inverse, [anchors.numel()] + [c.numel() for c in self.candidates])
            self.anchor_slots = parts[0]
            self.slots = [part.view(c.shape) for part, c in zip(parts[1:], self.candidates)]
        else:
            self.uniq, self.anchor_slots, self.slots = None, anchors, list(self.candidates)
        if compact and workspace is not None and E.device.type == "cpu":
            self.G = workspace.grad_table(self.uniq.numel(), width or D, E.dtype, in_use=E.grad)
        else:
            self.G = torch.zeros(self.uniq.numel() if compact else N, width or D, dtype=E.dtype, device=E.device)
        self.handle = _RowsRoot.apply(E, self)
        self.anchors = _RowsRead.apply(self.handle, E.detach(), anchors, self)

    def slot(self, candidates: torch.Tensor) -> torch.Tensor:
        """The rows of G of ``candidates`` (ids into E): an announced tensor's slot map, or (dense) the ids."""
        for c, s in zip(self.candidates, self.slots):
            if c is candidates:
                return s
        if self.compact:
            raise ValueError("StepRows(compact=True) scores only the candidate tensors announced when it was built.")
        return candidates

    def gradient(self) -> torch.Tensor:
        """E's gradient: G (dense) or a coalesced sparse COO tensor over the rows ``uniq`` (compact); G is released."""
        G, self.G = self.G, None
        D = self.E.shape[1]
        if G.shape[1] != D:  # the kernel's padded columns carry no gradient
            G = G[:, :D].contiguous()
        if not self.compact:
            return G
        return torch.sparse_coo_tensor(self.uniq.unsqueeze(0), G, (self.num_rows, D), is_coalesced=True,
                                       check_invariants=False)


class _RowsRoot(torch.autograd.Function):
    """E → an empty ``handle`` that every read of the step depends on; its backward returns E's whole gradient."""

    @staticmethod
    def forward(ctx, E, rows):
        ctx.rows = rows
        return E.new_empty(0)

    @staticmethod
    def backward(ctx, _):
        rows, ctx.rows = ctx.rows, None
        return rows.gradient(), None


class _RowsRead(torch.autograd.Function):
    """The anchors' rows of E; backward adds their gradients to G at the anchors' slots (after the kernels')."""

    @staticmethod
    def forward(ctx, handle, E, ids, rows):
        ctx.rows = rows
        return E.index_select(0, ids)

    @staticmethod
    def backward(ctx, grad):
        rows = ctx.rows
        G = rows.G if rows.G.shape[1] == grad.shape[1] else rows.G[:, :grad.shape[1]]
        G.index_add_(0, rows.anchor_slots, grad)
        return grad.new_zeros(0), None, None, None
