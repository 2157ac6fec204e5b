"""KGE models, looked up by name in :data:`MODELS`."""

from . import bilinear, translational  # noqa: F401  (registers the models)
from . import hake  # noqa: F401,I001  (registered after the RotatE family)
from .bilinear import ComplEx, DistMult  # noqa: F401
from .hake import HAKE  # noqa: F401
from .translational import RotatE, TransD, TransE, pRotatE  # noqa: F401
from .base import MODELS, KGEModel, build_model, model_class, model_options  # noqa: F401
