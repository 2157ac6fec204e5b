"""The codes shared with ``emukg_kernels.h``: metric, mutation and status numbers, and the model hooks' kind names
mapped to them.  tests/test_kernels.py checks that these equal the header's ``#define``s."""

from __future__ import annotations

import enum


class Metric(enum.IntEnum):
    """Distance/similarity codes of every kernel (``EMUKG_METRIC_*``): one numbering for training and evaluation.

    L1: Σᵢ |qᵢ − xᵢ| (TransE); DOT: Σᵢ qᵢ·xᵢ (DistMult, ComplEx); COMPLEX_L1: Σₖ |q_k − x_k| over complex
    coordinates k, rows [real half, imaginary half] (RotatE).  Training only (:func:`cand_ext_fwd`; the
    evaluation kernel refuses them): SIN_L1 Σᵢ |sin(qᵢ − xᵢ/scale)| (pRotatE); TRANSD_L1 Σᵢ |qᵢ − yᵢ| with
    y = normalize(e + (e·eₚ)·a) of a row [e, eₚ] (TransD); HAKE λ_m‖q_m − a∘x_m‖₂ + λ_p Σᵢ |sin(q_pᵢ − x_pᵢ/scale)|
    of a row [x_m, x_p] (HAKE).
    """

    L1 = 0
    DOT = 1
    COMPLEX_L1 = 2
    SIN_L1 = 3
    TRANSD_L1 = 4
    HAKE = 5


EVAL_METRICS = (Metric.L1, Metric.DOT, Metric.COMPLEX_L1)  # the metrics score_all.c and emukg_cand_fwd know
EXT_METRICS = (Metric.SIN_L1, Metric.TRANSD_L1, Metric.HAKE)  # emukg_cand_ext_fwd/bwd's


class Mut(enum.IntEnum):
    """Candidate mutation codes of the training kernel (``EMUKG_MUT_*``)."""

    NONE = 0
    EMU = 1
    MIXUP = 2


STATUS_OK = 0
STATUS_ENOMEM = -1

# The kind names of the model hooks (``kernel_query``: 'l1', 'dot', 'c2'; ``eval_kernel_query``: 'complex_l1')
# mapped to the one numbering.  'c2' and 'complex_l1' are the same metric.
METRIC_CODES: dict[str, Metric] = {"l1": Metric.L1, "dot": Metric.DOT, "c2": Metric.COMPLEX_L1,
                                   "complex_l1": Metric.COMPLEX_L1}


# Kinds of the training hook ``kernel_query`` served by emukg_cand_ext_*: deliberately NOT in METRIC_CODES, so the
# evaluation's fast path (which looks kinds up there) never hands them to score_all.c.
EXT_METRIC_CODES: dict[str, Metric] = {"sin_l1": Metric.SIN_L1, "transd_l1": Metric.TRANSD_L1, "hake": Metric.HAKE}


def metric_code(kind: str) -> Metric:
    """The :class:`Metric` of a model hook's kind name ('l1', 'dot', 'c2' / 'complex_l1')."""
    code = METRIC_CODES.get(kind)
    if code is None:
        raise ValueError(f"kind must be one of {sorted(METRIC_CODES)}, not {kind!r}.")
    return code


def ext_metric_code(kind: str) -> Metric:
    """The :class:`Metric` of an extended training kind ('sin_l1', 'transd_l1', 'hake')."""
    code = EXT_METRIC_CODES.get(kind)
    if code is None:
        raise ValueError(f"kind must be one of {sorted(EXT_METRIC_CODES)}, not {kind!r}.")
    return code
