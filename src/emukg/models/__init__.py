"""KGE models, looked up by name in :data:`MODELS`."""

from . import bilinear, translational  # noqa: F401  (registers the models)
from . import hake  # noqa: F401,I001  (registered after the RotatE family)
from .base import MODELS, KernelQuery, KGEModel, build_model, model_class, model_options  # noqa: F401
