"""Optimisers: the dense ones of PyTorch, and row-sparse ones for large entity tables.

:func:`make_optimizer` ``(name, params_or_model, lr, *, sparse=None)`` builds the optimiser of a training phase:
``'adagrad'`` or ``'adam'`` over the parameters (or a module's parameters).  Which implementation depends on
whether a parameter receives **row-sparse gradients** (``sparse``; None = look at the parameters' mark, see
:func:`mark_row_sparse`, which the trainer sets on the entity table in sparse mode, ``Config.sparse``):

* none does: ``torch.optim.Adam``, and for Adagrad :class:`RowSparseAdagrad` on the CPU (the same operations as
  ``torch.optim.Adagrad``'s single-tensor path, so the same bits, with its √sum + ε table reused between steps
  instead of allocated each step) and ``torch.optim.Adagrad`` on a GPU;
* some do: :class:`RowSparseAdagrad` / :class:`LazyAdam`, which take sparse COO gradients (the step's compact
  gradient table on the kernel path, :class:`emukg.scoring.step_rows.StepRows`; ``F.embedding(..., sparse=True)`` on the PyTorch
  path) for those and dense gradients for the others (relations, pRotatE's modulus).  Their state tables are
  allocated on transparent huge pages where the system allows (:mod:`emukg.memory`).

**Why.**  A dense step reads and writes every row of the entity table and of its optimiser state: at N = 2.5 M
entities and d = 100 that is 1 GB of parameters plus 1 GB of Adagrad sums (2 GB of Adam moments) per step,
whatever the batch touches.  A row-sparse step reads, updates and writes only the U rows the step touched (at
most B·(2n + 1) for an EMU step with fresh negatives), so its cost no longer grows with N.

**Adagrad is exact.**  A row whose gradient is zero is unchanged by a dense Adagrad step (``sum += 0``,
``param −= lr · 0 / (√sum + ε)``), so updating only the touched rows is the same maths.  :class:`RowSparseAdagrad`
applies the very operations of ``torch.optim.Adagrad``'s single-tensor path (the CPU default), in the same
order, to the gathered rows::

    sum_rows.addcmul_(g, g, value=1);  std = sum_rows.sqrt().add_(eps);  param_rows.addcdiv_(g, std, value=-lr)

and writes them back with ``index_copy_``: bit-identical to the dense optimiser for the same gradient
(tests/test_sparse.py checks it over several steps).  Its state (``step``, ``sum``) has the same names and
shapes as ``torch.optim.Adagrad``'s, so checkpoints load into either.

**Adam is lazy.**  A dense Adam step moves *every* row — the moments of an untouched row decay and its parameter
moves by m̂/(√v̂ + ε) even with a zero gradient — so no row-sparse Adam equals it.  :class:`LazyAdam` (the
semantics of ``torch.optim.SparseAdam``, with Adam's own ε placement) updates the moments and parameters of the
touched rows only, with the bias corrections of the global step count; untouched rows keep their parameters and
their moments until they are next touched.  For a row touched at every step it is Adam exactly (same operations
as ``torch.optim.Adam``'s single-tensor path); rows touched rarely take smaller steps than under dense Adam,
whose momentum keeps pushing them.  Dense parameters get ``torch.optim.Adam``'s exact update.  In the
reference schedule Adam only runs after the warm-up switch (lr/10), where this difference is small; tests
check both properties.  Keep ``Config.sparse`` off (or unset on small graphs: auto) for dense Adam.

**Which path runs.**  A row-sparse gradient with sorted distinct row ids (coalesced, as the trainer's sparse step
hands over) of a contiguous CPU float32 table goes in one call to the native kernels of ``kernels/sparse_optim.c``
(:func:`emukg.kernels.adagrad_rows` / :func:`~emukg.kernels.adam_rows`, see :func:`native_rows`): per touched
row one C pass updates the state and copies the new ``sum`` / ``exp_avg_sq`` row to a buffer, ``torch.sqrt_``
takes its root, and a second C pass updates the parameter row (pipelined over chunks of rows: one call finishes a
chunk's parameters while it starts the next chunk's state; zero roots whose step is ±0 anyway are handed to MKL as
1.0, which it takes in its fast path).  The square root stays PyTorch's because on x86
builds it is MKL's, which is not correctly rounded (1 ulp off on ~15 % of inputs), so only torch's own sqrt
keeps the step bit-identical to the PyTorch operations above (tests/test_sparse_optim_kernel.py checks it
against ``torch.optim.Adagrad``/``Adam`` and against the path below).  Memory: a buffer of
:data:`emukg.kernels.ROOT_CHUNK_BYTES` (16 MB, rows in chunks), nothing else.  Anything else — repeated or
unsorted row ids (duplicates are summed in :func:`row_chunks`' order), another dtype or device, or no kernel
(``EMUKG_NO_NATIVE=1``, no compiler) — takes the chunked PyTorch path: gather the rows of each
:data:`CHUNK_BYTES` chunk with ``index_select``, the operations above, ``index_copy_`` back.  Time for U = 465,000
rows of a 2.5 M × 100 table on 2 loaded cores (min of 7): Adagrad 214 ms (PyTorch) → 88 ms (kernels), lazy Adam
356 → 126 ms (before the pipelining and the zero roots; in a training step at 2.5 M entities the Adagrad step then
fell from ≈ 140 to ≈ 105 ms); the kernels' one-pass form with a correctly rounded sqrt (``exact=False``, not used here: parameters
then differ from torch's by up to 4 ulp of max(|param|, |step|) per step) takes 53 / 79 ms.
"""

from __future__ import annotations

import torch
from torch import nn

from .memory import huge_zeros_like

import emukg.kernels as kernels

ROW_SPARSE = "_emukg_row_sparse"  # attribute set on a parameter whose gradients are row-sparse (sparse COO)
CHUNK_BYTES = 16 << 20  # rows per chunk of a sparse update: temporaries of this size (below glibc's mmap threshold)


def mark_row_sparse(param: torch.Tensor, on: bool = True) -> torch.Tensor:
    """Mark ``param`` as receiving row-sparse gradients (an attribute on the tensor); returns it."""
    setattr(param, ROW_SPARSE, bool(on))
    return param


def is_row_sparse(param: torch.Tensor) -> bool:
    return bool(getattr(param, ROW_SPARSE, False))


def sparse_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(row ids (U,), row values (U, D)) of a sparse COO gradient over the first dimension, duplicates summed."""
    if grad.sparse_dim() != 1:  # element-sparse (e.g. Tensor.to_sparse()): regroup by rows
        grad = grad.to_dense().to_sparse(sparse_dim=1)
    g = grad.coalesce()
    return g.indices()[0], g.values()


def row_chunks(grad: torch.Tensor, chunk_bytes: int | None = None):
    """Yield ``(row ids, row gradients)`` of a sparse COO gradient, duplicates summed, in chunks of distinct rows of
    about ``chunk_bytes`` each (ascending row ids), so that an update's temporaries stay small whatever the number of
    touched rows.  Duplicates are summed one after the other in their order in the gradient (the first occurrence,
    then ``index_add_`` of the others), as autograd accumulates the dense gradient of the same reads
    (``coalesce()`` may associate differently).  ``chunk_bytes`` None: :data:`CHUNK_BYTES`.  Costs one stable sort
    of the row ids; rows that occur once are gathered, not added."""
    if grad.sparse_dim() != 1:  # element-sparse (e.g. Tensor.to_sparse()): regroup by rows
        grad = grad.to_dense().to_sparse(sparse_dim=1)
    idx, vals = grad._indices()[0], grad._values()
    rows = max(1, (chunk_bytes or CHUNK_BYTES) // max(1, vals[0].numel() * vals.element_size() if vals.shape[0] else 1))
    if grad.is_coalesced():
        for a in range(0, idx.numel(), rows):
            yield idx[a:a + rows], vals[a:a + rows]
        return
    sidx, perm = torch.sort(idx, stable=True)  # equal ids keep their order in the gradient
    first = torch.ones_like(sidx, dtype=torch.bool)
    first[1:] = sidx[1:] != sidx[:-1]
    uniq, first_pos = sidx[first], perm[first]
    later = ~first
    dup_row = (torch.cumsum(first, 0) - 1)[later]  # compact row of every later occurrence (ascending, stable)
    dup_pos = perm[later]
    for u0 in range(0, uniq.numel(), rows):
        u1 = min(u0 + rows, uniq.numel())
        g = vals.index_select(0, first_pos[u0:u1])
        a, b = torch.searchsorted(dup_row, torch.tensor([u0, u1], device=dup_row.device)).tolist()
        if b > a:
            g.index_add_(0, dup_row[a:b] - u0, vals.index_select(0, dup_pos[a:b]))
        yield uniq[u0:u1], g


def native_rows(param: torch.Tensor, grad: torch.Tensor, *states: torch.Tensor):
    """``(row ids, row values)`` of ``grad`` when the native kernels (emukg.kernels.adagrad_rows / adam_rows) can
    apply it to ``param`` and its ``states`` in one call, else None (then the chunked PyTorch path runs): ``grad``
    a row-sparse COO tensor (values (U, D)) whose row ids are sorted and distinct — coalesced, or in that order
    without the flag (autograd's gradient accumulation drops ``is_coalesced``; one comparison pass over the ids
    checks it) — every tensor a contiguous CPU float32 (N, D) table, and the ``sparse_optim`` kernel loaded (not
    with ``EMUKG_NO_NATIVE=1``).  A gradient with repeated or unsorted rows goes to :func:`row_chunks`, which sums
    duplicates in their order (``coalesce()`` may not)."""
    if not (grad.is_sparse and grad.sparse_dim() == 1 and grad.dense_dim() == 1):
        return None
    vals = grad._values()
    for t in (param, *states):
        if t.dim() != 2 or t.dtype != torch.float32 or t.device.type != "cpu" or not t.is_contiguous():
            return None
    if vals.dtype != torch.float32 or not vals.is_contiguous() or vals.shape[1] != param.shape[1]:
        return None
    if not kernels.available("sparse_optim"):
        return None
    idx = grad._indices()[0]
    if not grad.is_coalesced() and idx.numel() > 1 and not bool((idx[1:] > idx[:-1]).all()):
        return None
    return idx, vals


def make_optimizer(name: str, params_or_model, lr: float, *, sparse: bool | None = None) -> torch.optim.Optimizer:
    """The optimiser ``name`` ('adagrad' or 'adam') at learning rate ``lr`` over ``params_or_model`` (parameters, or a
    module whose parameters are used).  ``sparse``: None = row-sparse optimisers when a parameter is marked
    (:func:`mark_row_sparse`), True/False = force them on/off."""
    params = list(params_or_model.parameters() if isinstance(params_or_model, nn.Module) else params_or_model)
    if sparse is None:
        sparse = any(is_row_sparse(p) for p in params if isinstance(p, torch.Tensor))
    if name == "adam":
        return LazyAdam(params, lr=lr) if sparse else torch.optim.Adam(params, lr=lr)
    if name == "adagrad":
        # dense on the CPU too: torch.optim.Adagrad's single-tensor update, bit for bit, without its per-step temporary
        on_cpu = all(p.device.type == "cpu" for p in params if isinstance(p, torch.Tensor))
        return RowSparseAdagrad(params, lr=lr) if sparse or on_cpu else torch.optim.Adagrad(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; choose adagrad or adam")


class RowSparseAdagrad(torch.optim.Optimizer):
    """Adagrad taking dense or row-sparse gradients; bit-identical to ``torch.optim.Adagrad`` (lr_decay 0, no weight
    decay, initial accumulator 0) on the rows it touches, and rows with no gradient are unchanged as there.

    Memory: the state ``sum`` (as large as the parameter); per step, a buffer of 16 MB on the native path (sorted
    distinct rows, :func:`native_rows`), else a few temporaries of :data:`CHUNK_BYTES` (sparse gradients are
    applied in chunks of rows, :func:`row_chunks`).
    """

    def __init__(self, params, lr: float = 1e-2, eps: float = 1e-10):
        if not lr > 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, dict(lr=lr, eps=eps))
        for group in self.param_groups:  # eager state, like torch.optim.Adagrad (the same state_dict layout)
            for p in group["params"]:
                self.state[p] = {"step": torch.tensor(0.0), "sum": huge_zeros_like(p)}

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            clr, eps = group["lr"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                state["step"] += 1
                total = state["sum"]
                native = native_rows(p, p.grad, total) if p.grad.is_sparse else None
                if native is not None:
                    kernels.adagrad_rows(p, total, *native, clr, eps)
                elif p.grad.is_sparse:
                    for idx, g in row_chunks(p.grad):
                        s = total.index_select(0, idx)
                        s.addcmul_(g, g, value=1)
                        std = s.sqrt().add_(eps)
                        rows = p.index_select(0, idx)
                        rows.addcdiv_(g, std, value=-clr)
                        p.index_copy_(0, idx, rows)
                        total.index_copy_(0, idx, s)
                else:
                    g = p.grad
                    total.addcmul_(g, g, value=1)
                    std = torch.sqrt(total, out=self._root(p, total))  # torch.optim.Adagrad's ops, in reused memory
                    std.add_(eps)
                    p.addcdiv_(g, std, value=-clr)
        return loss

    def _root(self, p: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The dense step's buffer for √sum + ε, kept between steps: a fresh table each step is returned to the system
        when freed and faulted in again by the next (11.6 MB for ComplEx's FB15k-237 entities; docs/results.md §K2).
        Not part of the state (nothing of it survives a step); made on first use, so an optimiser restored from its
        pickled state (``Optimizer.__setstate__`` keeps only defaults, state and groups) makes it again."""
        roots = self.__dict__.setdefault("_roots", {})
        buf = roots.get(id(p))
        if buf is None or buf.shape != like.shape or buf.dtype != like.dtype or buf.device != like.device:
            buf = roots[id(p)] = torch.empty_like(like)
        return buf


class LazyAdam(torch.optim.Optimizer):
    """Adam taking dense or row-sparse gradients: dense gradients get ``torch.optim.Adam``'s update exactly; a
    row-sparse gradient updates the touched rows' moments and parameters only (lazy Adam, see the module
    docstring), with the bias corrections of the global step count.  State: ``step``, ``exp_avg``,
    ``exp_avg_sq`` (``torch.optim.Adam``'s names).  Memory: two tensors as large as the parameter; per sparse step,
    as :class:`RowSparseAdagrad` (native kernels for sorted distinct rows, else chunks)."""

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        if not lr > 0:
            raise ValueError(f"invalid learning rate {lr}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state.update(step=torch.tensor(0.0), exp_avg=huge_zeros_like(p), exp_avg_sq=huge_zeros_like(p))
                state["step"] += 1
                step = float(state["step"])
                step_size = lr / (1 - beta1 ** step)
                bias_correction2_sqrt = (1 - beta2 ** step) ** 0.5
                native = native_rows(p, p.grad, state["exp_avg"], state["exp_avg_sq"]) if p.grad.is_sparse else None
                if native is not None:
                    kernels.adam_rows(p, state["exp_avg"], state["exp_avg_sq"], *native, beta1, beta2, step_size,
                                      bias_correction2_sqrt, eps)
                elif p.grad.is_sparse:
                    for idx, g in row_chunks(p.grad):
                        m = state["exp_avg"].index_select(0, idx)
                        v = state["exp_avg_sq"].index_select(0, idx)
                        rows = p.index_select(0, idx)
                        _adam_update(rows, g, m, v, beta1, beta2, step_size, bias_correction2_sqrt, eps)
                        p.index_copy_(0, idx, rows)
                        state["exp_avg"].index_copy_(0, idx, m)
                        state["exp_avg_sq"].index_copy_(0, idx, v)
                else:
                    _adam_update(p, p.grad, state["exp_avg"], state["exp_avg_sq"], beta1, beta2, step_size,
                                 bias_correction2_sqrt, eps)
        return loss


def _adam_update(param, grad, exp_avg, exp_avg_sq, beta1, beta2, step_size, bias_correction2_sqrt, eps) -> None:
    """torch.optim.Adam's single-tensor update (no weight decay, no amsgrad), in place, in its operation order."""
    exp_avg.lerp_(grad, 1 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
    param.addcdiv_(exp_avg, denom, value=-step_size)


def use_sparse(config, num_entities: int) -> bool:
    """Whether a run trains with row-sparse entity updates: ``config.sparse`` when set, else (auto) when the entity
    table has more rows than :func:`sparse_threshold` and the loss allows it (no 1-vs-all, no regularisation)."""
    if config.sparse is not None:
        return bool(config.sparse)
    if config.loss == "1vsall" or config.regularization:
        return False
    return num_entities > sparse_threshold(config)


def sparse_threshold(config) -> int:
    """Entity count above which ``sparse`` auto turns row-sparse updates on: the candidate rows one step may touch,
    B·(n + 1) per pass, times the passes (2 with EMU).  Below it a step touches most rows anyway and the dense path
    (no unique/coalesce) is as fast or faster."""
    passes = 2 if config.emu is not None else 1
    return config.batch_size * (config.negative_sample_size + 1) * passes


__all__ = ["make_optimizer", "RowSparseAdagrad", "LazyAdam", "mark_row_sparse", "is_row_sparse", "sparse_rows",
           "use_sparse", "sparse_threshold", "row_chunks", "native_rows"]
