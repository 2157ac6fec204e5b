"""Filtered full ranking on the model's device (a GPU), in blocks, with no host round trip inside a block.

The dense ranker of :mod:`emukg.evaluation.ranking` works on any device, but on a GPU each block costs host
round trips (``nonzero`` to find the answers of an entity slice, a ``.sum()`` read back for the NaN count, the
filter's exclusion pairs looked up again for every chunk).  :class:`DeviceRanker` ranks the same blocks with the
same scores (``model.score_all``, the definition, in the blocks of the same :func:`~emukg.evaluation.plan.plan_memory`
plan), so its ranks equal the dense ranker's exactly; what changes is where the work happens:

* the filter: the CSR arrays of :class:`~emukg.data.graph.FilterIndex` on the device (``kg.filter.to(device)``,
  kept for the ranker's life), and each side's exclusion pairs ``(query, entity)`` of the whole split looked up
  once (:meth:`FilterIndex.answers`, one ``searchsorted`` and one ``repeat_interleave``) with its per-query offsets,
  read to the host once per side, so that a block's pairs are a slice;
* a block: the scores ``S`` (queries × entities of the slice), the answer's score ``thr`` gathered from the block that
  holds it with a ``where`` (no ``nonzero``), a boolean mask of the excluded pairs written with one ``index_put``
  (pairs outside the slice go to a spare column), and the counts ``#(S > thr)``, ``#(S ≥ thr)`` over the pairs not
  excluded; NaN scores rank as −inf and are counted on the device, read once at the end.

Memory per block: the scores (4 bytes per pair), the mask and two comparisons (1 byte each per pair), plus the
model's broadcast intermediates, as the dense ranker's plan counts them (``TORCH_PAIR_BYTES``).  It serves every
model: the ones with a matrix-product ``score_all`` (DistMult, ComplEx) and the broadcast ones alike.
"""

from __future__ import annotations

import torch


class DeviceRanker:
    """Counts, per query of a split's side, the candidates scored above / at or above its answer, on the device."""

    def __init__(self, model, index):
        self.model, self.index = model, index
        self.E = model.entity_embedding
        self.N = self.E.shape[0]
        self.nan = torch.zeros((), dtype=torch.int64, device=self.E.device)  # NaN scores seen (read at the end)
        self._pairs: dict = {}

    def begin_side(self, anchor_all, rel_all, answer_all, side: str) -> None:
        """Look up the side's exclusion pairs for the whole split once: flat ``(query, entity)`` sorted by query, and
        the offsets of each query's pairs (on the host: one transfer per side)."""
        if self.index is None:
            self._pairs = {}
            return
        count = self.index.counts(anchor_all, rel_all, side)
        qi, ent = self.index.answers(anchor_all, rel_all, side)
        offsets = torch.zeros(count.numel() + 1, dtype=torch.int64)
        offsets[1:] = torch.cumsum(count.to("cpu"), 0)
        self._pairs = {"q": qi, "e": ent, "offsets": offsets}

    def rank(self, anchor, relation, answer, side: str, q0: int, entity_slice: int):
        """(gt, ge) for the queries ``q0 .. q0 + len(anchor)`` of the side begun with :meth:`begin_side`."""
        device, nq, N = anchor.device, anchor.numel(), self.N
        rows = torch.arange(nq, device=device)
        if self._pairs:
            a, b = int(self._pairs["offsets"][q0]), int(self._pairs["offsets"][q0 + nq])
            ex_q, ex_e = self._pairs["q"][a:b] - q0, self._pairs["e"][a:b]
        else:
            ex_q = ex_e = torch.zeros(0, dtype=torch.int64, device=device)
        # each query's answer is excluded once, as in the dense ranker (the mask makes duplicates harmless)
        ex_q, ex_e = torch.cat([ex_q, rows]), torch.cat([ex_e, answer])
        neg_inf = torch.tensor(float("-inf"), device=device, dtype=self.E.dtype)
        slices = [(e0, min(e0 + entity_slice, N)) for e0 in range(0, N, entity_slice)]
        thr = None
        if len(slices) > 1:  # a first pass for the answer's own score, from the slice that holds it
            thr = torch.zeros(nq, device=device, dtype=self.E.dtype)
            for e0, e1 in slices:
                S = self._scores(anchor, relation, side, e0, e1)
                inside = (answer >= e0) & (answer < e1)
                col = torch.where(inside, answer - e0, torch.zeros_like(answer))
                thr = torch.where(inside, S[rows, col].to(thr.dtype), thr)
                del S
        gt = torch.zeros(nq, dtype=torch.int64, device=device)
        ge = torch.zeros(nq, dtype=torch.int64, device=device)
        for e0, e1 in slices:
            S = self._scores(anchor, relation, side, e0, e1)
            if thr is None:
                thr = S[rows, answer]
            nan = torch.isnan(S)
            self.nan += nan.sum()
            S = S.masked_fill(nan, float("-inf"))
            del nan
            t = torch.where(torch.isnan(thr), neg_inf, thr.to(S.dtype))
            width = e1 - e0
            inside = (ex_e >= e0) & (ex_e < e1)
            mask = torch.zeros(nq, width + 1, dtype=torch.bool, device=device)
            mask[ex_q, torch.where(inside, ex_e - e0, torch.full_like(ex_e, width))] = True
            keep = ~mask[:, :width]
            gt += ((S > t[:, None]) & keep).sum(1)
            ge += ((S >= t[:, None]) & keep).sum(1)
            del S, mask, keep
        return gt, ge

    def _scores(self, anchor, relation, side, e0, e1):
        entities = None if (e0 == 0 and e1 == self.N) else torch.arange(e0, e1, device=anchor.device)
        return self.model.score_all(anchor, relation, side, entities=entities)

    def nan_scores(self) -> int:
        return int(self.nan)
