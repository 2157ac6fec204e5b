"""emukg: knowledge-graph link prediction with EMU (Embedding MUtation) hard negatives."""

__version__ = "0.1.0"

from .errors import EmukgError  # noqa: F401
