"""Datasets by name.  (Minimal resolver; the full registry with downloads is being built.)"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EmukgError
from .graph import KnowledgeGraph, load_folder


def resolve_dataset(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_dir():
        return p
    data_dir = os.environ.get("EMUKG_DATA_DIR")
    if data_dir:
        for cand in Path(data_dir).iterdir():
            if cand.name.lower() == p.name.lower() and cand.is_dir():
                return cand
    raise EmukgError(f"--dataset {name_or_path}: no such folder or registered dataset; see 'emukg datasets list'.")


def load_dataset(name_or_path: str) -> KnowledgeGraph:
    path = resolve_dataset(name_or_path)
    return load_folder(path, name=path.name)
