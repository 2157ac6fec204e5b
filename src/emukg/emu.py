"""EMU (Embedding MUtation): mutated candidates, their masks, and candidate scoring for training steps.

For a positive (h, r, t⁺) corrupted on one side, the candidates are X = [x⁺, x₁, …, xₙ] (the positive's entity
first, then n negatives).  EMU scores the mutated candidates

    X' = M ⊙ X + (1 − M) ⊙ x⁺,      M ~ Bernoulli(p) per component, the positive's row all ones,

so every component of a negative is kept with probability p and otherwise replaced by the positive's component
(real and imaginary parts are separate components).  Gradients reach the negatives' rows through M and the
positive's row through 1 − M.  The Mixup ablation uses one ratio a ~ Beta(2, 1) per candidate instead:
X' = a·X + (1 − a)·x⁺ — the ratio weights the *negative*, like p does (E[a] = 2/3), drawn as a = √U.

**Mask RNG.**  The mask is a counter-based hash, not a stream: keep(b, j, i) depends only on a 64-bit step seed
(two 32-bit words s0, s1 drawn each step from the run's seeded ``torch.Generator`` on the training device, see
:func:`draw_seed`) and the position (b, j, i)::

    key(b, j) = h32(h32((b·C + j) ^ s0) + s1)        tab(i) = h32(h32(i ^ s1) + s0)
    keep      = (h32(key ^ tab(i)) >> 8) < round(p · 2²⁴)          (all arithmetic mod 2³²)

with h32 a 32-bit xorshift-multiply avalanche hash.  P(keep) = round(p·2²⁴)/2²⁴ (|error| < 3·10⁻⁸).  The native
kernel (``kernels/candidates.c``) evaluates it inside its loops, so the forward and backward passes regenerate the
identical mask without storing it; :func:`hash_mask` evaluates the same formula with torch integer ops on any
device, so the PyTorch path (GPU, other models, no compiler) draws the *same* mask for the same seed, and the
whole run stays determined by ``--seed``.  Nothing is drawn with NumPy or on the host.

**Memory per step** (B positives, C = n + 1 candidates, D floats per entity row, N entities, T CPU threads):

* fused kernel (CPU; TransE, DistMult, ComplEx, RotatE, pRotatE, TransD, HAKE): no B·C·D tensor at all — scores
  4·B·C bytes per pass, candidate ids 8·B·C, the query rows (and TransD's rₚ / HAKE's modulus factor, B·D/2 floats),
  and the step's entity-gradient table (:class:`StepRows`): 4·N·D bytes in dense training, 4·U·D for the U
  distinct rows a step reads in row-sparse training — the kernels add to it in place, threads owning rows by
  entity id, so there are no per-thread copies; per thread the backward keeps 2·B·⌈D/16⌉·16 floats of partial
  query sums (pRotatE/TransD/HAKE 5·B·⌈L/16⌉·16 plus 10 rows).  FB15k-237, B=1000, n=256, d=100: ≈1 MB scores +
  2 MB ids per pass, 5.8 MB gradient table, 0.9 MB partial sums per thread; 2.5 M entities, sparse: U ≈ 465,000
  rows, 186 MB.
* PyTorch path (:func:`_torch_scores`): the gathered candidates 4·B·C·D bytes, the mask B·C·D bytes (bool) plus
  bounded int64 hash temporaries (:data:`HASH_CHUNK` elements at a time), the mutated copy 4·B·C·D, and autograd
  keeps k × 4·B·C·D bytes for the backward, k measured with ``saved_tensors_hooks`` (EMU mask included): TransE
  1.3, DistMult 1.6, pRotatE 2.4, HAKE 2.6, ComplEx 2.9, RotatE 3.3, TransD 3.7 — for the configuration above
  ≈103 MB per B·C·D float tensor, ≈0.3–0.6 GB in all.  Beyond :data:`TORCH_PATH_BUDGET` bytes of one gathered
  tensor the batch goes in row chunks under ``torch.utils.checkpoint``: then the forward keeps only the chunks'
  inputs and scores, and about (k + 3) × budget bytes of one chunk are alive at a time, in the forward and again in
  the backward's recomputation.  Measured on the CPU (HAKE, B=512, n=256, d=250: 251 MiB per B·C·D tensor; peak
  RSS growth of one forward+backward with glibc's mmap threshold at 64 KiB, so that RSS follows frees): 940 MiB
  unchunked, 196 MiB with a 32 MiB budget, 105 MiB with 8 MiB.  (With glibc's default dynamic threshold freed
  chunks stay in the heap and RSS reads ≈ 2–3× higher; a GPU's caching allocator reuses them.)  HAKE's
  FB15k-237 setting (d=1000, B=1024) on a GPU: 2.1 GB per B·C·D tensor, ≈ 8 GB unchunked, ≈ 1.5 GB in chunks
  of 256 MiB (estimated from the CPU figures, not measured on a GPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

import emukg.kernels as kernels
from .memory import huge_empty

MASK_BITS = 24
HASH_CHUNK = 1 << 20  # elements of int64 hash temporaries at a time in hash_mask
TORCH_PATH_BUDGET = 256 << 20  # bytes of one gathered B×C×D candidate tensor on the PyTorch path; beyond: row chunks
_M32 = 0xFFFFFFFF


# --- the counter-based mask RNG ------------------------------------------------------------------
def keep_threshold(p: float) -> int:
    """Integer threshold T with P(keep) = T / 2²⁴ nearest to ``p``."""
    return int(min(max(round(float(p) * (1 << MASK_BITS)), 0), 1 << MASK_BITS))


def draw_seed(generator: torch.Generator) -> torch.Tensor:
    """Two 32-bit words (int64 tensor of shape (2,), on the generator's device) seeding one step's mask."""
    return torch.randint(0, 1 << 32, (2,), generator=generator, device=generator.device, dtype=torch.int64)


def _mul32_(x: torch.Tensor, c: int, tmp: torch.Tensor) -> torch.Tensor:
    """x ← x·c mod 2³² in place, for int64 tensors holding values in [0, 2³²), without int64 overflow."""
    torch.mul(x, c >> 16, out=tmp)
    tmp.bitwise_and_(0xFFFF).bitwise_left_shift_(16)
    return x.mul_(c & 0xFFFF).add_(tmp).bitwise_and_(_M32)


def _h32_(x: torch.Tensor) -> torch.Tensor:
    tmp = torch.empty_like(x)
    x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))
    _mul32_(x, 0x7FEB352D, tmp)
    x.bitwise_xor_(torch.bitwise_right_shift(x, 15, out=tmp))
    _mul32_(x, 0x846CA68B, tmp)
    return x.bitwise_xor_(torch.bitwise_right_shift(x, 16, out=tmp))


def h32(x: torch.Tensor) -> torch.Tensor:
    """The kernel's 32-bit avalanche hash on int64 tensors holding values in [0, 2³²)."""
    return _h32_(x.to(torch.int64, copy=True))


def hash_mask(seed: torch.Tensor, B: int, C: int, D: int, p: float, use_kernel: bool | None = None,
              row0: int = 0) -> torch.Tensor:
    """The EMU keep mask (B, C, D) bool on ``seed``'s device; column 0 (the positive) is all True.

    Bit-identical to the mask the fused kernel generates for the same seed (see the module docstring).  On the
    CPU the native library evaluates it when available (``use_kernel`` None/True); otherwise torch integer ops do,
    in cache-sized chunks.  ``row0``: the mask of batch rows ``row0 .. row0 + B − 1`` (one row chunk of a larger
    batch; the hash counts rows from the batch's first).
    """
    device = seed.device
    if use_kernel is not False and device.type == "cpu" and _lib() is not None:
        return kernel_mask(seed, B, C, D, p, row0=row0)
    s0, s1 = seed[0].to(torch.int64) & _M32, seed[1].to(torch.int64) & _M32
    T = keep_threshold(p)
    i = torch.arange(D, device=device, dtype=torch.int64)
    tab = h32(((h32(i ^ s1) + s0) & _M32))
    out = torch.empty(B, C, D, dtype=torch.bool, device=device)
    rows_per_chunk = max(1, HASH_CHUNK // max(1, C * D))
    j = torch.arange(C, device=device, dtype=torch.int64)
    for b0 in range(0, B, rows_per_chunk):
        b1 = min(B, b0 + rows_per_chunk)
        r = (torch.arange(row0 + b0, row0 + b1, device=device, dtype=torch.int64)[:, None] * C + j) & _M32
        key = h32((h32(r ^ s0) + s1) & _M32)
        u = _h32_(key[:, :, None] ^ tab)
        torch.lt(u.bitwise_right_shift_(8), T, out=out[b0:b1])
    out[:, 0] = True
    return out


def mutate(X: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """X' = M ⊙ X + (1 − M) ⊙ x⁺ for candidates X (B, C, D) whose column 0 is x⁺; differentiable in X."""
    return torch.where(mask, X, X[:, :1])


def mixup_ratios(B: int, C: int, generator: torch.Generator) -> torch.Tensor:
    """One ratio a ~ Beta(2, 1) per candidate (a = √U), shape (B, C); column 0 (the positive) is 1."""
    a = torch.rand(B, C, generator=generator, device=generator.device).sqrt_()
    a[:, 0] = 1.0
    return a


def mixup(X: torch.Tensor, ratio: torch.Tensor) -> torch.Tensor:
    """X' = a·X + (1 − a)·x⁺ with one ratio per candidate (``ratio`` (B, C)); column 0 of X is x⁺."""
    a = ratio.unsqueeze(-1).to(X.dtype)
    return a * X + (1 - a) * X[:, :1]


@dataclass
class Mutation:
    """How the candidates of one pass are changed before scoring: ``kind`` 'emu' (``seed``, ``p``) or 'mixup' (``ratio``)."""

    kind: str
    seed: torch.Tensor | None = None
    p: float = 1.0
    ratio: torch.Tensor | None = None
    row0: int = 0  # EMU: the candidates scored are batch rows row0, row0 + 1, … of the step (a data-parallel shard)

    @classmethod
    def emu(cls, p: float, generator: torch.Generator) -> "Mutation":
        return cls("emu", seed=draw_seed(generator), p=float(p))

    @classmethod
    def mix(cls, B: int, C: int, generator: torch.Generator) -> "Mutation":
        return cls("mixup", ratio=mixup_ratios(B, C, generator))

    def apply(self, X: torch.Tensor, row0: int = 0) -> torch.Tensor:
        """The mutated candidates X' of X (B, C, D); ``row0``: X holds the batch rows ``row0 .. row0 + B − 1``."""
        if self.kind == "emu":
            B, C, D = X.shape
            return mutate(X, hash_mask(self.seed, B, C, D, self.p, row0=self.row0 + row0))
        if self.kind == "mixup":
            return mixup(X, self.ratio[row0:row0 + X.shape[0]])
        raise ValueError(f"unknown mutation kind {self.kind!r}")


# --- candidate scoring ---------------------------------------------------------------------------
# The native kernel is reached only through the checked wrappers of emukg.kernels (cand_fwd, cand_bwd, emu_mask).
def _lib():
    return kernels.load("candidates")


def kernel_available() -> bool:
    """Whether the native candidate-scoring kernel compiled and loaded (CPU only)."""
    return _lib() is not None


def _uses_kernel(model, device: torch.device, use_kernel: bool | None) -> bool:
    if use_kernel is False or device.type != "cpu":
        return False
    if model.entity_embedding.dtype != torch.float32 or type(model).kernel_query is _base_kernel_query():
        return False
    ok = _lib() is not None
    if use_kernel and not ok:
        raise RuntimeError(f"use_kernel=True, but the native kernel is not available ({kernels.describe()}); "
                           "pass use_kernel=None to fall back to PyTorch.")
    return ok


def _base_kernel_query():
    from .models.base import KGEModel

    return KGEModel.kernel_query


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
    storage of :class:`StepRows`' gradient table, and :func:`compact_ids`' bitmap (N bytes) and slot index (8·N
    bytes).  The sparse gradient a step hands E shares the gradient storage, so it is valid until the next step
    (the trainer sets gradients to None before each step)."""

    def __init__(self):
        self._grad: torch.Tensor | None = None
        self._seen: torch.Tensor | None = None
        self._slot: torch.Tensor | None = None

    def grad_table(self, rows: int, width: int, dtype: torch.dtype) -> torch.Tensor:
        """A zeroed (rows, width) CPU tensor on the reused storage (grown by a quarter when too small)."""
        need = rows * width
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
            self.G = workspace.grad_table(self.uniq.numel(), width or D, E.dtype)
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


class CandidateScorer:
    """Scores candidates of one batch of positives; the anchor/relation rows (and the kernel's query vector) are
    gathered once and shared by every pass of a step (the CE pass, the EMU pass, the self-adversarial draw), so
    autograd backs them up once.

    ``side='tail'``: the candidates replace the tail (anchor = head); ``'head'``: they replace the head.
    ``use_kernel``: None = the fused native kernel where possible (CPU, float32, a model with a ``kernel_query``),
    False = the plain PyTorch path (gather, mutate, ``model.score``), True = require the kernel.
    ``candidates``: the candidate tensors the step will score (announced up front; required with ``sparse``);
    ``workspace``: the run's :class:`StepWorkspace` (row-sparse steps reuse its memory).

    Ids are checked once per call on either path (one min/max reduction each; on a GPU one host sync): the kept
    anchor and relation of ``positives`` and every candidate must be below the model's number of entities /
    relations, else ``IndexError`` (instead of a crash in C or a device-side assert).

    **Kernel path**: every read of the entity table goes through one :class:`StepRows` (its gradient table and
    sum order are described there): dense training adds the step's gradient to an N×D table, row-sparse training
    (``sparse=True``, :mod:`emukg.optim`) to a compact U×D table of the distinct rows read, handed to E as a
    coalesced sparse gradient.  **PyTorch path** with ``sparse=True``: the anchor rows are read with
    ``F.embedding(..., sparse=True)`` and each call scores against a compact table of its distinct candidates
    (``torch.unique``, also ``F.embedding(sparse=True)``), repeated rows summed as ``index_add_`` sums them.  On
    either path the sparse run equals the dense one bit for bit on small graphs (tests/test_sparse.py).
    """

    def __init__(self, model, positives: torch.Tensor, side: str, use_kernel: bool | None = None, sparse: bool = False,
                 candidates=(), workspace: StepWorkspace | None = None):
        if side == "tail":
            anchor = positives[:, 0]
        elif side == "head":
            anchor = positives[:, 2]
        else:
            raise ValueError(f"side must be 'head' or 'tail', not {side!r}")
        self.model, self.side = model, side
        E, R = model.entity_embedding, model.relation_embedding
        kernels.check_ids("CandidateScorer", f"positives[:, {0 if side == 'tail' else 2}] (entity ids)", anchor, E.shape[0])
        kernels.check_ids("CandidateScorer", "positives[:, 1] (relation ids)", positives[:, 1], R.shape[0])
        self.sparse = sparse
        self.rows = None
        kind = _kernel_kind(model, side) if _uses_kernel(model, positives.device, use_kernel) else None
        if kind is not None and torch.is_grad_enabled():
            if sparse and not candidates:
                raise ValueError("CandidateScorer(sparse=True) on the kernel path needs the step's candidates announced.")
            for c in candidates:
                kernels.check_ids("CandidateScorer", "candidates", c, E.shape[0])
            width = kernels.MIN_ROW_FLOATS if kind in ("l1", "dot") and E.shape[1] < kernels.MIN_ROW_FLOATS else None
            self.rows = StepRows(E, anchor, candidates, compact=sparse, width=width, workspace=workspace)
            self.a_emb = self.rows.anchors
        elif sparse and kind is None:  # through a compact table of the distinct anchors, so repeated anchors sum as index_add_ does
            uniq, inverse = torch.unique(anchor, return_inverse=True)
            self.a_emb = torch.nn.functional.embedding(uniq, E, sparse=True).index_select(0, inverse)
        else:
            self.a_emb = E.index_select(0, anchor)
        self.r_emb = R.index_select(0, positives[:, 1])
        self.hook = model.kernel_query(self.a_emb, self.r_emb, side) if kind is not None else None

    def __call__(self, candidates: torch.Tensor, mutation: Mutation | None = None) -> torch.Tensor:
        """Scores (B, C); column 0 of ``candidates`` must be the positive's own entity (x⁺ of the mutation)."""
        E = self.model.entity_embedding
        if self.rows is None or not any(c is candidates for c in self.rows.candidates):  # (announced: checked)
            kernels.check_ids("CandidateScorer", "candidates", candidates, E.shape[0])
        if self.hook is not None:
            return _kernel_scores(self.hook, E, candidates, mutation, self.rows)
        if self.sparse:  # a compact table of the U distinct candidates: a sparse gradient over U rows
            uniq, candidates = torch.unique(candidates, return_inverse=True)
            E = torch.nn.functional.embedding(uniq, E, sparse=True)
        return _torch_scores(self.model, self.side, self.a_emb, self.r_emb, E, candidates, mutation)


def _kernel_kind(model, side: str) -> str | None:
    """The kind of the model's ``kernel_query`` hook (probed on empty rows), or None when the kernel cannot serve
    it: no hook for these widths (TransD's -de without -dr) or RotatE's 'c2' on rows narrower than 32 floats."""
    E, R = model.entity_embedding, model.relation_embedding
    with torch.no_grad():
        hook = model.kernel_query(E[:0], R[:0], side)
    if hook is None or (hook[0] == "c2" and E.shape[1] < 2 * kernels.MIN_ROW_FLOATS):
        return None
    return hook[0]


def score_candidates(model, positives: torch.Tensor, side: str, candidates: torch.Tensor,
                     mutation: Mutation | None = None, use_kernel: bool | None = None) -> torch.Tensor:
    """Scores (B, C) of each positive's (anchor, relation) against its candidate entities (B, C).

    ``side='tail'``: the candidates replace the tail (anchor = head); ``'head'``: they replace the head.  Column 0
    of ``candidates`` must be the positive's own entity (x⁺ of the mutation).  ``mutation`` applies EMU or Mixup.
    ``use_kernel``: None = the fused native kernel where possible (CPU, a model with a kernel_query), False = the
    plain PyTorch path (gather, mutate, ``model.score``), True = require the kernel.  Both compute the same maths.
    """
    return CandidateScorer(model, positives, side, use_kernel)(candidates, mutation)


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
    return _FusedScores.apply(q.contiguous(), E_in.contiguous(), cand, ratio, metric, float(bias), mut, s0, s1, T, b0,
                              handle, rows, slot if slot is None else slot.contiguous())


class _FusedScores(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, E, cand, ratio, kind, bias, mut, s0, s1, T, b0, handle, rows, slot):
        out = kernels.cand_fwd(q, E, cand, kind, bias, mut, s0, s1, T, ratio, b0=b0)
        ctx.save_for_backward(q, E, cand, ratio, slot)
        ctx.args = (kind, mut, s0, s1, T, b0)
        ctx.rows = rows
        return out

    @staticmethod
    def backward(ctx, gout):
        q, E, cand, ratio, slot = ctx.saved_tensors
        kind, mut, s0, s1, T, b0 = ctx.args
        rows = ctx.rows
        gq, gE = kernels.cand_bwd(q, E, cand, gout.to(torch.float32).contiguous(), kind, mut, s0, s1, T, ratio,
                                  need_q=ctx.needs_input_grad[0], need_E=rows is not None or ctx.needs_input_grad[1],
                                  out_E=rows.G if rows is not None else None, slot=slot, b0=b0)
        if rows is not None:  # E's gradient was added to the step's table; the handle passes nothing
            return (gq, None) + (None,) * 9 + (gout.new_zeros(0), None, None)
        return (gq, gE) + (None,) * 12


def _mutation_args(mutation: Mutation | None):
    """(mut code, s0, s1, T, ratio, b0) of a mutation for the kernels (b0: the EMU mask's first batch row)."""
    if mutation is not None and mutation.kind == "emu":
        s0, s1 = (int(v) & _M32 for v in mutation.seed.tolist())
        return kernels.Mut.EMU, s0, s1, keep_threshold(mutation.p), None, int(mutation.row0)
    if mutation is not None and mutation.kind == "mixup":
        return kernels.Mut.MIXUP, 0, 0, 0, mutation.ratio.to(torch.float32).contiguous(), 0
    return kernels.Mut.NONE, 0, 0, 0, None, 0


def _kernel_scores(hook, E: torch.Tensor, candidates: torch.Tensor, mutation: Mutation | None,
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


# --- the PyTorch path ----------------------------------------------------------------------------
def torch_chunk_rows(B: int, C: int, D: int, element_size: int = 4, budget: int | None = None) -> int:
    """Batch rows per chunk of the PyTorch path: all B while 4·B·C·D bytes (one gathered candidate tensor) fit
    :data:`TORCH_PATH_BUDGET` (or ``budget``), else the most rows whose chunk fits (at least 1)."""
    budget = TORCH_PATH_BUDGET if budget is None else int(budget)
    return max(1, min(B, budget // max(1, element_size * C * D)))


def _torch_chunk(model, side: str, a_emb, r_emb, E, candidates, mutation, row0: int) -> torch.Tensor:
    """Scores of batch rows ``row0 .. row0 + b − 1``: gather the candidates, mutate them, ``model.score``."""
    B, C = candidates.shape
    X = E.index_select(0, candidates.reshape(-1)).view(B, C, E.shape[1])  # index_add_ backward: fastest on CPU
    if mutation is not None:
        X = mutation.apply(X, row0=row0)
    return model.score_side(a_emb.unsqueeze(1), r_emb.unsqueeze(1), X, side)


def _torch_scores(model, side: str, a_emb: torch.Tensor, r_emb: torch.Tensor, E: torch.Tensor,
                  candidates: torch.Tensor, mutation: Mutation | None = None, budget: int | None = None) -> torch.Tensor:
    """The plain PyTorch path (any device, any model): scores (B, C) of the candidates (ids into ``E``) against
    the gathered anchor/relation rows, mutated as ``mutation`` says, by ``model.score``.

    While one gathered B×C×D tensor fits :data:`TORCH_PATH_BUDGET` bytes (``budget``) the batch is scored at once.
    Otherwise it goes in chunks of :func:`torch_chunk_rows` rows, each under ``torch.utils.checkpoint``
    (non-reentrant): the forward keeps only the chunk's (b, C) scores, and the backward recomputes one chunk at a
    time, so the path holds the intermediates of ONE chunk (about (k + 3) × the chunk's gathered tensor, k from
    the module docstring's table) plus the (B, C) scores and the dense gradient of ``E`` being accumulated,
    instead of every chunk's.  Each row's scores are computed by the same operations
    as unchunked (values equal; the mask of a chunk is the batch's, the hash counting rows from the first), and
    gradients differ only in the order in which chunks' contributions to a shared row are summed.  The price is one
    extra forward pass when chunked.
    """
    B, C = candidates.shape
    rows = torch_chunk_rows(B, C, E.shape[1], E.element_size(), budget)
    if rows >= B:
        return _torch_chunk(model, side, a_emb, r_emb, E, candidates, mutation, 0)
    from torch.utils.checkpoint import checkpoint

    recompute = torch.is_grad_enabled()
    out = []
    for b0 in range(0, B, rows):
        b1 = min(B, b0 + rows)
        args = (model, side, a_emb[b0:b1], r_emb[b0:b1], E, candidates[b0:b1], mutation, b0)
        out.append(checkpoint(_torch_chunk, *args, use_reentrant=False, preserve_rng_state=False) if recompute
                   else _torch_chunk(*args))
    return torch.cat(out)


def kernel_mask(seed: torch.Tensor, B: int, C: int, D: int, p: float, row0: int = 0) -> torch.Tensor:
    """The mask the native kernel uses, as (B, C, D) bool, of batch rows ``row0 .. row0 + B − 1``; requires the kernel."""
    s0, s1 = (int(v) & _M32 for v in seed.tolist())
    return kernels.emu_mask(B, C, D, s0, s1, keep_threshold(p), row0=row0).view(torch.bool)


def expected_keep_fraction(p: float) -> float:
    """P(keep) actually realised by the 24-bit threshold (differs from p by < 3·10⁻⁸)."""
    return keep_threshold(p) / float(1 << MASK_BITS)


__all__ = ["CandidateScorer", "StepRows", "StepWorkspace", "compact_ids", "Mutation", "draw_seed", "hash_mask", "mutate", "mixup", "mixup_ratios", "keep_threshold",
           "score_candidates", "fused_scores", "fused_ext_scores",
           "torch_chunk_rows", "TORCH_PATH_BUDGET", "kernel_available", "kernel_mask", "expected_keep_fraction", "h32"]
