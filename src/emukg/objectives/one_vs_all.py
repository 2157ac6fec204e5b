"""1-vs-all cross-entropy (the ``1vsall`` loss, the reference's ``-if_CE 3``) for every model, in entity blocks
under a memory budget (``Config.train_memory_mb``).

For queries b = (anchor, r, ?) (``side='tail'``) or (?, r, anchor) (``side='head'``) with answer e_b::

    loss_b = logsumexp_e s(b, e) − s(b, e_b)          over all N entities e

**How a block of candidates is scored** (:func:`plan_one_vs_all` picks the *path* from the model's
fast path (:mod:`emukg.scoring.fast_paths`); every path is tested against ``model.score``):

* ``matmul`` — kind ``dot`` (DistMult, ComplEx): s = q·x + bias, one matrix product per block.
* ``cdist`` — kind ``l1`` (TransE): s = bias − ‖q − x‖₁ by ``torch.cdist(p=1)`` on any device (about three times
  the fused kernel on this all-pairs layout); no Q×C×D tensor in the forward or the backward.
* ``kernel`` — the other distance kinds (RotatE's ``c2`` with rows ≥ 32 floats; TransD, pRotatE, HAKE through
  :class:`~emukg.scoring.fast_paths.KernelQuery`) on the CPU in float32 with the compiled kernel:
  :func:`emukg.scoring.fused.fused_scores` / :func:`~emukg.scoring.fused.fused_ext_scores` on the block's rows with the candidate ids
  arange(C) broadcast to (Q, C) — no Q×C×D tensor either.
* ``broadcast`` — everything else (a GPU, float64, no compiler, a model without a fast path): ``model.score``
  broadcast (Q, 1, D) against (1, C, D), differentiated by autograd.

**Direct path.**  When one block holds all N entities and every query, the loss is plain autograd of the path's
scores against the whole table + ``F.cross_entropy``: one forward, one backward, no recomputation (DistMult and
ComplEx on small graphs run the matrix product over all entities as before).

**Blocked path** (:class:`_BlockedCrossEntropy`).  The forward streams over blocks keeping a running max m and sum
S per query: m' = max(m, maxₑ s), S' = S·exp(m − m') + Σₑ exp(s − m'), so lse = m + log S; it keeps nothing of
size B×N (saved: lse and the ids).  The backward recomputes each block's scores with autograd on detached leaves
(the query chunk's rows or query vectors, the block's rows X = E[i:j] — a view — and extra parameters such as
pRotatE's modulus) and back-propagates g_b·softmax_be = g_b·exp(s_be − lse_b); the answer term −g_b goes through
the pair score ``model.score(a_b, r_b, x_{e_b})``.  Block gradients land in a dense entity gradient
(gE[i:j] += ∂X), the query rows' by ``index_add_`` (anchors and answers into gE, relations into gR), extras summed.
Exact up to float rounding: the tests compare it with autograd on the unblocked score.

**Memory of one step** (bytes; float32; N entities, D floats per entity row, B queries of the batch, Q ≤ B queries
per chunk, C ≤ N entities per block, T CPU threads):

* outside the budget, as in any 1-vs-all step: the dense entity gradient 4·N·D (every entity row receives one;
  it becomes ``E.grad``), next to the table itself (4·N·D) and the optimiser's state (Adagrad 4·N·D, Adam 8·N·D);
  O(B·D) per-query rows and vectors; the relation gradient.
* inside the budget, one block: **W = Q·C·p + C·e** with, per (query, candidate) pair p and per block entity e:

  ==========  ==================================================  ======================================
  path        p (bytes per pair)                                  e (bytes per block entity)
  ==========  ==================================================  ======================================
  matmul      16 (score, g·softmax, temporaries)                  8·D (the block's row gradient)
  cdist       40 (score, g·softmax, cdist's backward buffers)     8·D
  kernel      32 (score, int64 candidate id, g·softmax, temps)    4·D·T (block gradient, T − 1 thread sums)
  broadcast   4·D·(F + 3) + 16                                    4·D·4
  ==========  ==================================================  ======================================

  F = the entity rows per pair that autograd saves for the model's broadcast score, measured once per model and
  side by probing it (:func:`saved_floats_per_pair`; TransE 1, TransD 1.5, RotatE 1.5–2, pRotatE 2, HAKE 2), plus
  3 live Q×C×D temporaries of the backward.  C = min(N, budget // (Q·p + e)); Q = B unless even a block of
  :data:`MIN_BLOCK` entities would not fit, then Q is lowered (and below one query the budget is refused).  The
  direct path is taken when C = N and Q = B, so it fits the same W.

Example: N = 1,000,000, D = 100 (RotatE: rows of 200 floats), B = 100, the default 512 MiB, T = 2 threads — TransE
(cdist) C = 111,848, 9 blocks per pass; DistMult (matmul) C = 223,696, 5 blocks; RotatE (kernel) C = 111,848, 9
blocks; the dense gradient is 400 MB (RotatE 800 MB) either way.  Measured: docs/results.md, "1-vs-all at 1 M
entities" (:mod:`emukg.bench.onevsall`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import torch
import torch.nn.functional as F

from ..emu import kernel_available
from ..scoring.fast_paths import query_kind, training_query
from ..scoring.fused import fused_ext_scores, fused_scores
import emukg.kernels as kernels
from ..errors import ParamError

MIN_BLOCK = 256  # entities per block below which the query chunk is lowered instead
MATMUL_PAIR_BYTES = 16
CDIST_PAIR_BYTES = 40  # measured: torch.cdist(p=1)'s backward peaks at ≈ 20–35 bytes per pair beyond its output
KERNEL_PAIR_BYTES = 32
BACKWARD_TEMPORARIES = 3  # live Q×C×D float tensors of a broadcast backward besides the saved ones


@dataclass(frozen=True)
class OneVsAllPlan:
    """How one 1-vs-all step splits its work to stay inside ``budget_bytes`` (see the module docstring)."""

    path: str  # 'matmul', 'kernel' or 'broadcast'
    direct: bool  # plain autograd over all entities at once (one block, all queries, not the kernel)
    query_chunk: int  # Q
    entity_block: int  # C
    pair_bytes: int  # p
    entity_bytes: int  # e
    block_bytes: int  # W = Q·C·p + C·e
    budget_bytes: int

    def to_dict(self) -> dict:
        return asdict(self)


def choose_path(model, side: str = "tail", use_kernel: bool | None = None) -> str:
    """'matmul', 'cdist', 'kernel' or 'broadcast' for this model on its device (``use_kernel=False``: never the
    native kernel, True: the kernel or an error, for kinds other than 'dot' and 'l1')."""
    E = model.entity_embedding
    kind = query_kind(model, side)
    if kind == "dot":
        return "matmul"
    if kind == "l1":
        return "cdist"
    fused = kind == "c2" or kind in kernels.EXT_METRIC_CODES
    can = (fused and use_kernel is not False and E.device.type == "cpu" and E.dtype == torch.float32
           and (kind != "c2" or E.shape[1] >= 32) and kernel_available())
    if use_kernel and not can:
        raise RuntimeError(f"use_kernel=True, but the native kernel cannot score {type(model).__name__} here "
                           f"({kernels.describe()}); pass use_kernel=None.")
    return "kernel" if can else "broadcast"


class _Query:
    """A query chunk's differentiable part — ``tensors`` (the anchor and relation rows for 'broadcast'; the
    fast path's q, aux and modulus otherwise) — and how it scores a block of entity rows."""

    def __init__(self, model, side: str, path: str, hook, tensors: list[torch.Tensor], names: tuple[str, ...]):
        self.model, self.side, self.path, self.hook, self.tensors, self.names = model, side, path, hook, tensors, names

    @classmethod
    def of(cls, model, side: str, path: str, a: torch.Tensor, r: torch.Tensor) -> "_Query":
        if path == "broadcast":
            return cls(model, side, path, None, [a, r], ())
        hook = training_query(model, a, r, side)
        if hook[0] in kernels.EXT_METRIC_CODES:  # a KernelQuery: q, aux and the learned modulus are differentiable
            names = tuple(n for n in ("q", "aux", "modulus") if getattr(hook, n) is not None)
            return cls(model, side, path, hook, [getattr(hook, n) for n in names], names)
        return cls(model, side, path, hook, [hook[1]], ("q",))

    def detached(self) -> "_Query":
        """The same query on fresh leaf tensors (the backward differentiates each block with respect to them)."""
        leaves = [t.detach().requires_grad_() for t in self.tensors]
        hook = self.hook
        if hook is not None:
            hook = hook._replace(**dict(zip(self.names, leaves))) if hook[0] in kernels.EXT_METRIC_CODES else (hook[0], leaves[0], hook[2])
        return _Query(self.model, self.side, self.path, hook, leaves, self.names)

    def scores(self, X: torch.Tensor) -> torch.Tensor:
        """Scores (Q, C) of the chunk's queries against the entity rows X (C, D)."""
        if self.path == "broadcast":
            a, r = (t.unsqueeze(1) for t in self.tensors)
            return self.model.score_side(a, r, X.unsqueeze(0), self.side)
        q = self.tensors[0]
        if self.path == "matmul":
            bias = self.hook[2]
            s = q @ X.T
            return s if isinstance(bias, (int, float)) and bias == 0 else s + bias
        if self.path == "cdist":  # bias − ‖q − x‖₁ for every pair; no Q×C×D tensor in either direction
            return self.hook[2] - torch.cdist(q.unsqueeze(0), X.unsqueeze(0), p=1.0)[0]
        cand = torch.arange(X.shape[0], device=X.device).expand(q.shape[0], -1).contiguous()
        if self.hook[0] in kernels.EXT_METRIC_CODES:
            return fused_ext_scores(self.hook, X, cand)
        return fused_scores(q, X, cand, self.hook[0], self.hook[2])


def _extras(model) -> list[torch.nn.Parameter]:
    E, R = model.entity_embedding, model.relation_embedding
    return [p for p in model.parameters() if p is not E and p is not R and p.requires_grad]


def saved_floats_per_pair(model, side: str = "tail") -> float:
    """F: entity rows (D floats) per (query, candidate) pair that autograd saves for the backward of the model's
    broadcast score, measured by scoring 2 queries against 4 and against 12 candidates under ``saved_tensors_hooks`` (distinct
    storages counted once) and dividing the difference by the 16 extra pairs.  Cached per model class, widths and side."""
    key = (type(model), model.entity_embedding.shape[1], model.relation_embedding.shape[1], side)
    if key not in _SAVED:
        _SAVED[key] = _measure_saved(model, side)
    return _SAVED[key]


_SAVED: dict = {}


def _measure_saved(model, side: str) -> float:
    E, R = model.entity_embedding, model.relation_embedding
    g = torch.Generator(device="cpu").manual_seed(0)

    def saved_bytes(C: int) -> int:
        seen: dict[int, int] = {}

        def pack(t):
            st = t.untyped_storage()
            seen[st.data_ptr()] = st.nbytes()
            return t

        a = torch.rand(2, E.shape[1], generator=g).to(E).requires_grad_()
        r = torch.rand(2, R.shape[1], generator=g).to(R).requires_grad_()
        X = torch.rand(C, E.shape[1], generator=g).to(E).requires_grad_()
        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            _Query.of(model, side, "broadcast", a, r).scores(X)
        return sum(seen.values())

    extra = saved_bytes(12) - saved_bytes(4)
    return max(0.0, extra / (2 * 8) / E.element_size() / E.shape[1])


def _costs(model, path: str, side: str) -> tuple[int, int]:
    """(p, e): bytes per (query, candidate) pair and per block entity of one block (module docstring table)."""
    D = int(model.entity_embedding.shape[1])
    if path == "matmul":
        return MATMUL_PAIR_BYTES, 8 * D
    if path == "cdist":
        return CDIST_PAIR_BYTES, 8 * D
    if path == "kernel":
        return KERNEL_PAIR_BYTES, 4 * D * max(1, torch.get_num_threads())
    F_ = saved_floats_per_pair(model, side)
    return int(4 * D * (F_ + BACKWARD_TEMPORARIES)) + 16, 4 * D * 4


def plan_one_vs_all(model, batch: int, memory_mb: float, side: str = "tail", use_kernel: bool | None = None,
                    entity_block: int | None = None, query_chunk: int | None = None, path: str | None = None) -> OneVsAllPlan:
    """The path, query chunk Q and entity block C of a 1-vs-all step of ``batch`` queries within ``memory_mb`` MiB
    (``entity_block`` / ``query_chunk`` force the sizes and ``path='broadcast'`` the plain path, for tests)."""
    budget = int(memory_mb * 2**20)
    N = int(model.entity_embedding.shape[0])
    B = max(1, int(batch))
    path = path or choose_path(model, side, use_kernel)
    p, e = _costs(model, path, side)
    if query_chunk is not None or entity_block is not None:
        Q = max(1, min(B, query_chunk or B))
        C = max(1, min(N, entity_block or N))
    else:
        Q = B
        floor = min(N, MIN_BLOCK)
        if Q * floor * p + floor * e > budget:
            Q = (budget - floor * e) // (floor * p)
            if Q < 1:
                need = -(-(floor * (p + e)) // 2**20)
                raise ParamError("memory_mb", memory_mb, f"too small for a 1-vs-all block of {floor} entities of "
                                 f"{type(model).__name__} (width {model.entity_embedding.shape[1]}); give at least {need} MiB.",
                                 flags={"memory_mb": "--train-memory-mb"})  # a run's Config.train_memory_mb
        C = int(max(1, min(N, budget // (Q * p + e))))
    direct = C >= N and Q >= B
    return OneVsAllPlan(path, direct, int(Q), int(C), p, e, int(Q * C * p + C * e), budget)


def one_vs_all_loss(model, anchor: torch.Tensor, relation: torch.Tensor, answer: torch.Tensor, side: str,
                    memory_mb: float = 512, use_kernel: bool | None = None, plan: OneVsAllPlan | None = None) -> torch.Tensor:
    """Per-query 1-vs-all cross-entropy (B,) = logsumexp over all entities − the answer's score, differentiable in
    every parameter of ``model``; blocked under ``memory_mb`` MiB (see the module docstring)."""
    if side not in ("tail", "head"):
        raise ValueError(f"side must be 'head' or 'tail', not {side!r}")
    plan = plan or plan_one_vs_all(model, anchor.shape[0], memory_mb, side, use_kernel)
    if plan.direct:  # one block, every query: plain autograd, no recomputation
        E, R = model.entity_embedding, model.relation_embedding
        scores = _Query.of(model, side, plan.path, E[anchor], R[relation]).scores(E)
        return F.cross_entropy(scores, answer, reduction="none")
    E, R = model.entity_embedding, model.relation_embedding
    return _BlockedCrossEntropy.apply(model, side, plan, anchor, relation, answer, E, R, *_extras(model))


def _spans(n: int, size: int):
    return [(i, min(n, i + size)) for i in range(0, n, size)]


class _BlockedCrossEntropy(torch.autograd.Function):
    """loss_b = lse_b − s(b, e_b), streamed over entity blocks; the backward recomputes block by block."""

    @staticmethod
    def forward(ctx, model, side, plan, anchor, relation, answer, E, R, *extras):
        B, N = anchor.shape[0], E.shape[0]
        lse = torch.empty(B, dtype=E.dtype, device=E.device)
        with torch.no_grad():
            for q0, q1 in _spans(B, plan.query_chunk):
                query = _Query.of(model, side, plan.path, E[anchor[q0:q1]], R[relation[q0:q1]])
                m = torch.full((q1 - q0,), -torch.inf, dtype=E.dtype, device=E.device)
                S = torch.zeros_like(m)
                for i, j in _spans(N, plan.entity_block):
                    s = query.scores(E[i:j])
                    m_new = torch.maximum(m, s.max(1).values)
                    S = S * torch.exp(m - m_new) + s.sub_(m_new.unsqueeze(1)).exp_().sum(1)
                    m = m_new
                    del s
                lse[q0:q1] = m + torch.log(S)
            true = model.score_side(E[anchor], R[relation], E[answer], side)
        ctx.model, ctx.side, ctx.plan = model, side, plan
        ctx.save_for_backward(anchor, relation, answer, lse)
        return lse - true

    @staticmethod
    def backward(ctx, g):
        anchor, relation, answer, lse = ctx.saved_tensors
        model, side, plan = ctx.model, ctx.side, ctx.plan
        E, R = model.entity_embedding, model.relation_embedding
        extras = _extras(model)
        B, N = anchor.shape[0], E.shape[0]
        g = g.to(E.dtype)
        gE = torch.zeros_like(E)
        gX = [torch.zeros_like(p) for p in extras]
        with torch.enable_grad():
            a = E.detach()[anchor].requires_grad_()
            r = R.detach()[relation].requires_grad_()
            ga, gr = torch.zeros_like(a), torch.zeros_like(r)
            for q0, q1 in _spans(B, plan.query_chunk):
                ac, rc = a[q0:q1].detach().requires_grad_(), r[q0:q1].detach().requires_grad_()
                query = _Query.of(model, side, plan.path, ac, rc)
                leaf = query.detached()
                leaves = leaf.tensors
                gq = [torch.zeros_like(t) for t in leaves]
                w_row = g[q0:q1].unsqueeze(1)
                l_row = lse[q0:q1].unsqueeze(1)
                for i, j in _spans(N, plan.entity_block):
                    X = E.detach()[i:j].requires_grad_()
                    s = leaf.scores(X)
                    w = (s.detach() - l_row).exp_().mul_(w_row)  # g_b · softmax_be
                    grads = torch.autograd.grad(s, [*leaves, X, *extras], w, allow_unused=True)
                    del s, w
                    for acc, gi in zip(gq, grads[:len(leaves)]):
                        if gi is not None:
                            acc.add_(gi)
                    if grads[len(leaves)] is not None:
                        gE[i:j].add_(grads[len(leaves)])
                    for acc, gi in zip(gX, grads[len(leaves) + 1:]):
                        if gi is not None:
                            acc.add_(gi)
                # the query vectors' gradients back to the chunk's rows (and extras the query uses)
                if plan.path == "broadcast":  # the query is the rows themselves
                    grads = gq
                else:
                    live = [(t, gt) for t, gt in zip(query.tensors, gq) if t.requires_grad]
                    grads = torch.autograd.grad([t for t, _ in live], [ac, rc, *extras], [gt for _, gt in live],
                                                allow_unused=True) if live else [None] * (2 + len(extras))
                if grads[0] is not None:
                    ga[q0:q1].add_(grads[0])
                if grads[1] is not None:
                    gr[q0:q1].add_(grads[1])
                for acc, gi in zip(gX, grads[2:]):
                    if gi is not None:
                        acc.add_(gi)
            # the answer term −g_b · ∂s(b, e_b)
            x = E.detach()[answer].requires_grad_()
            true = model.score_side(a, r, x, side)
            grads = torch.autograd.grad(true, [a, r, x, *extras], -g, allow_unused=True)
        for acc, gi in zip((ga, gr), grads[:2]):
            if gi is not None:
                acc.add_(gi)
        if grads[2] is not None:
            gE.index_add_(0, answer, grads[2])
        for acc, gi in zip(gX, grads[3:]):
            if gi is not None:
                acc.add_(gi)
        gE.index_add_(0, anchor, ga)
        gR = torch.zeros_like(R).index_add_(0, relation, gr)
        return (None, None, None, None, None, None, gE, gR, *gX)


__all__ = ["OneVsAllPlan", "choose_path", "plan_one_vs_all", "one_vs_all_loss", "saved_floats_per_pair"]
