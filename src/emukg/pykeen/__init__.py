"""emukg for PyKEEN users (the optional extra ``emukg[pykeen]``, PyKEEN 1.11.x).

Importing this package registers three components in PyKEEN's resolvers, so PyKEEN finds them by name:

* ``training_loop="emu"`` — :class:`EMUTrainingLoop`: EMU (Embedding MUtation) for any PyKEEN model built on
  representations, with any PyKEEN negative sampler (:mod:`emukg.pykeen.training`);
* ``negative_sampler="sans"`` — :class:`SANSNegativeSampler`: emukg's SANS neighbourhoods (:mod:`emukg.pykeen.sampling`);
* ``evaluator="emukg"`` — :class:`EmukgEvaluator`: PyKEEN's rank-based evaluator ranked by emukg;

and offers :func:`evaluate` (PyKEEN's rank-based metrics through emukg's evaluator, :mod:`emukg.pykeen.evaluation`),
:func:`hpo_pipeline` (PyKEEN's, with EMU's search space and its negative sampler handled), :func:`to_emukg_model`
and :func:`import_model` (a trained PyKEEN model as an emukg run folder, also ``emukg import-pykeen``).

Without PyKEEN, ``import emukg.pykeen`` raises one sentence naming ``pip install "emukg[pykeen]"``.
"""

from __future__ import annotations

from ._require import MISSING, MissingExtraError, require_pykeen

PYKEEN_VERSION = require_pykeen()

from .convert import Conversion, to_emukg_model, why_not  # noqa: E402
from .evaluation import EmukgEvaluator, PyKEENScores, evaluate  # noqa: E402
from .evaluation import register as _register_evaluator  # noqa: E402
from .importer import import_model, import_saved  # noqa: E402
from .sampling import SANSNegativeSampler  # noqa: E402
from .sampling import register as _register_sampler  # noqa: E402
from .training import EMUSettings, EMUTrainingLoop, emu_loss, hpo_pipeline  # noqa: E402
from .training import register as _register_loop  # noqa: E402

_register_loop()
_register_sampler()
_register_evaluator()

__all__ = [
    "EMUTrainingLoop", "EMUSettings", "EmukgEvaluator", "emu_loss", "hpo_pipeline", "SANSNegativeSampler", "evaluate", "PyKEENScores",
    "to_emukg_model", "why_not", "Conversion", "import_model", "import_saved", "MissingExtraError", "MISSING",
    "PYKEEN_VERSION",
]
