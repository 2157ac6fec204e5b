"""KGE models, looked up by name in :data:`MODELS`."""

# importing the families registers the models, in this order (the order of the choices in messages)
from .bilinear import ComplEx, DistMult  # noqa: F401
from .translational import RotatE, TransD, TransE, pRotatE  # noqa: F401
from .hake import HAKE  # noqa: F401,I001  (registered after the RotatE family)
from ..nbfnet.model import NBFNet  # noqa: F401,I001  (a message-passing family: emukg.nbfnet)
from .base import MODELS, KGEModel, build_model, model_class, model_options  # noqa: F401
