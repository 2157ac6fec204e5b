"""KGE models, looked up by name in :data:`MODELS`."""

from . import bilinear, translational  # noqa: F401  (registers the models)
from .base import MODELS, KGEModel, build_model, model_class  # noqa: F401
