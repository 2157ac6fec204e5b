"""emukg: knowledge-graph link prediction with EMU (Embedding MUtation) hard negatives."""

from .version import __version__  # noqa: F401

from .errors import EmukgError  # noqa: F401


def __getattr__(name):  # the Python API, imported on first use so that 'emukg --help' starts without PyTorch
    if name in ("train", "load", "Run", "Prediction"):
        from . import api

        return getattr(api, name)
    if name == "hpo":
        from .search import hpo

        return hpo
    if name == "Config":
        from .config import Config

        return Config
    raise AttributeError(f"module 'emukg' has no attribute {name!r}")


__all__ = ["EmukgError", "Config", "train", "load", "Run", "Prediction", "hpo", "__version__"]
