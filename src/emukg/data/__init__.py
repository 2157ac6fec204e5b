"""Datasets: file readers, the KnowledgeGraph with its filter index, and the registry of named datasets."""

from .graph import FilterIndex, KnowledgeGraph, load_folder  # noqa: F401
from .registry import dataset_record, load_dataset, resolve_dataset  # noqa: F401
