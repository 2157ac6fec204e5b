"""Candidate scoring for training steps: one :class:`CandidateScorer` per step and side, every pass through it.

A scorer gathers the anchor and relation rows of a batch once and scores candidate entities against them — the CE
pass, the EMU pass (a :class:`~emukg.emu.Mutation`), the self-adversarial draw — through the fused native kernel
(:mod:`emukg.scoring.fused`, CPU, float32, a model with a fast path in :mod:`emukg.scoring.fast_paths`) or the plain
PyTorch path (:mod:`emukg.scoring.torch_path`: gather, mutate, ``model.score``).  Both compute the model's own score
function; every fast path is tested against it.

**Memory per step** (B positives, C = n + 1 candidates, D floats per entity row, N entities, T CPU threads):

* fused kernel (CPU; TransE, DistMult, ComplEx, RotatE, pRotatE, TransD, HAKE): no B·C·D tensor at all — scores
  4·B·C bytes per pass, candidate ids 8·B·C, the query rows (and TransD's rₚ / HAKE's modulus factor, B·D/2 floats),
  and the step's entity-gradient table (:class:`~emukg.scoring.step_rows.StepRows`): 4·N·D bytes in dense training,
  4·U·D for the U distinct rows a step reads in row-sparse training — the kernels add to it in place, threads owning rows by
  entity id, so there are no per-thread copies; per thread the backward keeps 2·B·⌈D/16⌉·16 floats of partial
  query sums (pRotatE/TransD/HAKE 5·B·⌈L/16⌉·16 plus 10 rows); an EMU pass of the l1/dot/c2 kernels keeps its mask's
  bits from the forward to the backward, 2 bytes per 16 components (B·C·⌈D/16⌉·2 bytes; c2 twice ⌈D/32⌉).
  FB15k-237, B=1000, n=256, d=100: ≈1 MB scores + 2 MB ids per pass, 5.8 MB gradient table, 0.9 MB partial sums per
  thread, 3.6 MB of EMU mask bits; 2.5 M entities, sparse: U ≈ 465,000 rows, 186 MB.
* PyTorch path (:func:`~emukg.scoring.torch_path.torch_scores`): the gathered candidates 4·B·C·D bytes, the mask
  B·C·D bytes (bool) plus bounded int64 hash temporaries (:data:`emukg.emu.HASH_CHUNK` elements at a time), the mutated copy 4·B·C·D, and autograd
  keeps k × 4·B·C·D bytes for the backward, k measured with ``saved_tensors_hooks`` (EMU mask included): TransE
  1.3, DistMult 1.6, pRotatE 2.4, HAKE 2.6, ComplEx 2.9, RotatE 3.3, TransD 3.7 — for the configuration above
  ≈103 MB per B·C·D float tensor, ≈0.3–0.6 GB in all.  Beyond :data:`~emukg.scoring.torch_path.TORCH_PATH_BUDGET` bytes of one gathered
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

import torch

import emukg.kernels as kernels
from ..emu import Mutation, kernel_available
from .fast_paths import has_fast_path, query_kind, training_query
from .fused import kernel_scores
from .step_rows import StepRows, StepWorkspace, compact_ids  # noqa: F401  (compact_ids: also the optimisers')
from .torch_path import torch_scores


def _uses_kernel(model, device: torch.device, use_kernel: bool | None) -> bool:
    """Whether this model's step goes through the fused kernel (``use_kernel`` True: required, else an error)."""
    if use_kernel is False or device.type != "cpu":
        return False
    if model.entity_embedding.dtype != torch.float32 or not has_fast_path(model):
        return False
    ok = kernel_available()
    if use_kernel and not ok:
        raise RuntimeError(f"use_kernel=True, but the native kernel is not available ({kernels.describe()}); "
                           "pass use_kernel=None to fall back to PyTorch.")
    return ok


def _uses_triton(model, side: str, sparse: bool) -> str | None:
    """The kind the Triton kernels serve for this step (``l1``/``dot``), with ``EMUKG_TRITON=1`` only (an opt-in
    until a GPU window has timed and checked them: :mod:`emukg.scoring.triton_kernels`); else None."""
    import os

    if os.environ.get("EMUKG_TRITON") != "1" or sparse or model.entity_embedding.dtype != torch.float32:
        return None
    from . import triton_kernels

    kind = query_kind(model, side) if has_fast_path(model) else None
    return kind if triton_kernels.available() and kind in triton_kernels.KINDS else None


def _kernel_kind(model, side: str) -> str | None:
    """The kind of the model's fast path for the training kernel, or None when the kernel cannot serve it: no
    fast path for these widths (TransD's -de without -dr) or RotatE's 'c2' on rows narrower than 32 floats."""
    kind = query_kind(model, side)
    if kind == "c2" and model.entity_embedding.shape[1] < 2 * kernels.MIN_ROW_FLOATS:
        return None
    return kind


class CandidateScorer:
    """Scores candidates of one batch of positives; the anchor/relation rows (and the kernel's query vector) are
    gathered once and shared by every pass of a step (the CE pass, the EMU pass, the self-adversarial draw), so
    autograd backs them up once.

    ``side='tail'``: the candidates replace the tail (anchor = head); ``'head'``: they replace the head.
    ``use_kernel``: None = the fused native kernel where possible (CPU, float32, a model with a fast path in :mod:`emukg.scoring.fast_paths`),
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
        self.hook = training_query(model, self.a_emb, self.r_emb, side) if kind is not None else None
        # the opt-in Triton path (EMUKG_TRITON=1): the query of the fast path, scored by emukg.scoring.triton_kernels
        self.triton = (training_query(model, self.a_emb, self.r_emb, side)
                       if self.hook is None and _uses_triton(model, side, sparse) else None)

    def __call__(self, candidates: torch.Tensor, mutation: Mutation | None = None) -> torch.Tensor:
        """Scores (B, C); column 0 of ``candidates`` must be the positive's own entity (x⁺ of the mutation)."""
        E = self.model.entity_embedding
        if self.rows is None or not any(c is candidates for c in self.rows.candidates):  # (announced: checked)
            kernels.check_ids("CandidateScorer", "candidates", candidates, E.shape[0])
        if self.hook is not None:
            return kernel_scores(self.hook, E, candidates, mutation, self.rows)
        if self.triton is not None and (mutation is None or mutation.kind == "emu"):
            from .triton_kernels import FusedCandidates

            kind, q, bias = self.triton
            seed, p, row0 = (mutation.seed, mutation.p, mutation.row0) if mutation is not None else (None, 1.0, 0)
            return FusedCandidates.apply(q, E, candidates, kind, float(bias), seed, p, row0)
        if self.sparse:  # a compact table of the U distinct candidates: a sparse gradient over U rows
            uniq, candidates = torch.unique(candidates, return_inverse=True)
            E = torch.nn.functional.embedding(uniq, E, sparse=True)
        return torch_scores(self.model, self.side, self.a_emb, self.r_emb, E, candidates, mutation)


def score_candidates(model, positives: torch.Tensor, side: str, candidates: torch.Tensor,
                     mutation: Mutation | None = None, use_kernel: bool | None = None) -> torch.Tensor:
    """Scores (B, C) of each positive's (anchor, relation) against its candidate entities (B, C).

    ``side='tail'``: the candidates replace the tail (anchor = head); ``'head'``: they replace the head.  Column 0
    of ``candidates`` must be the positive's own entity (x⁺ of the mutation).  ``mutation`` applies EMU or Mixup.
    ``use_kernel``: None = the fused native kernel where possible (CPU, a model with a fast path), False = the
    plain PyTorch path (gather, mutate, ``model.score``), True = require the kernel.  Both compute the same maths.
    """
    return CandidateScorer(model, positives, side, use_kernel)(candidates, mutation)


__all__ = ["CandidateScorer", "score_candidates", "StepRows", "StepWorkspace", "compact_ids"]
