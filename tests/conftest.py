"""Shared fixtures: the reference datasets beside the checkout, and a tiny dataset written per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_datasets_path() -> Path:
    """``$EMUKG_DATA_DIR`` (its first folder) or ``<repo>/../shared/datasets``; may not exist."""
    env = os.environ.get("EMUKG_DATA_DIR", "").split(os.pathsep)[0]
    return (Path(env).expanduser() if env else REPO.parent / "shared" / "datasets").resolve()


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The read-only reference datasets folder; the test is skipped (with the reason) when it is absent."""
    path = shared_datasets_path()
    if not path.is_dir():
        pytest.skip(f"reference datasets not found at {path}; set EMUKG_DATA_DIR to the shared datasets folder to run this test")
    return path


TINY_ENTITIES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"]
TINY_RELATIONS = ["knows", "likes", "parent_of"]
TINY_SPLITS = {
    "train": [
        ("alice", "knows", "bob"), ("bob", "knows", "carol"), ("carol", "knows", "dave"), ("dave", "knows", "erin"),
        ("erin", "knows", "frank"), ("frank", "knows", "grace"), ("grace", "knows", "heidi"), ("heidi", "knows", "alice"),
        ("alice", "likes", "carol"), ("bob", "likes", "dave"), ("carol", "likes", "erin"), ("dave", "likes", "frank"),
        ("alice", "parent_of", "erin"), ("bob", "parent_of", "frank"), ("carol", "parent_of", "grace"),
        ("dave", "parent_of", "heidi"),
    ],
    "valid": [("erin", "likes", "grace"), ("frank", "likes", "heidi"), ("alice", "knows", "carol")],
    "test": [("grace", "likes", "alice"), ("heidi", "likes", "bob"), ("bob", "knows", "dave")],
}


def write_dataset(folder: Path, entities=TINY_ENTITIES, relations=TINY_RELATIONS, splits=TINY_SPLITS) -> Path:
    """Write a reference-layout dataset (entities.dict, relations.dict, train/valid/test.txt) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if entities is not None:
        (folder / "entities.dict").write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(entities)), encoding="utf-8")
    if relations is not None:
        (folder / "relations.dict").write_text("".join(f"{i}\t{n}\n" for i, n in enumerate(relations)), encoding="utf-8")
    for split, rows in splits.items():
        (folder / f"{split}.txt").write_text("".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return folder


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A small reference-layout dataset folder (8 entities, 3 relations, 16/3/3 triples; every entity in train)."""
    return write_dataset(tmp_path / "tiny")
