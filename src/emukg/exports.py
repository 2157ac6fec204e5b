"""Embeddings out of a run, with their names: NumPy, TSV (the TensorBoard projector's format) or word2vec text.

* ``npy``: ``entity_embedding.npy``, ``relation_embedding.npy`` (float32, one row per id) and ``entities.tsv`` /
  ``relations.tsv`` (the names, one per row, in id order).
* ``tsv``: ``entity_vectors.tsv`` + ``entity_metadata.tsv`` and ``relation_vectors.tsv`` + ``relation_metadata.tsv``:
  load both files of a pair into https://projector.tensorflow.org (vectors tab-separated, one row per name).
* ``word2vec``: ``entities.w2v.txt`` and ``relations.w2v.txt`` in word2vec's text format (a ``count dim`` line, then
  ``name v1 v2 …``), readable by gensim's ``KeyedVectors.load_word2vec_format``; whitespace inside a name
  becomes ``_`` (the format separates fields by spaces).

Every file is written atomically.  Complex models export their tables as stored (real parts, then imaginary parts).
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np

from .errors import ParamError
from .io_utils import atomic_write_bytes, atomic_write_text, os_reason
from .resolver import choose

FORMATS = ("npy", "tsv", "word2vec")


def _vectors_tsv(array: np.ndarray) -> str:
    buf = io.StringIO()
    np.savetxt(buf, array, delimiter="\t", fmt="%.9g")
    return buf.getvalue()


def _names_tsv(names) -> str:
    return "".join(n.replace("\t", " ").replace("\n", " ") + "\n" for n in names)


def _word2vec(names, array: np.ndarray) -> str:
    lines = [f"{array.shape[0]} {array.shape[1]}"]
    for name, row in zip(names, array):
        lines.append(re.sub(r"\s", "_", name) + " " + " ".join(f"{v:.9g}" for v in row))
    return "\n".join(lines) + "\n"


def export_embeddings(embeddings: dict, out: str | os.PathLike, fmt: str = "tsv") -> list[Path]:
    """Write ``embeddings`` (:meth:`emukg.api.Run.embeddings`) to folder ``out`` in ``fmt`` (one of ``FORMATS``, any
    case); returns the files.  A bad ``fmt`` or an unwritable ``out`` is a :class:`ParamError` (``--format`` and
    ``--out`` on the command line)."""
    try:
        fmt = choose("fmt", fmt, FORMATS, "export format")
    except ParamError as exc:
        exc.flags["fmt"] = "--format"  # the command line's name for it
        raise
    out = Path(out)
    written = []
    for kind in ("entity", "relation"):
        array = np.asarray(embeddings[kind], dtype=np.float32)
        names = embeddings[f"{kind}_names"]
        plural = "entities" if kind == "entity" else "relations"
        if fmt == "npy":
            buf = io.BytesIO()
            np.save(buf, array)
            files = {f"{kind}_embedding.npy": buf.getvalue(), f"{plural}.tsv": _names_tsv(names)}
        elif fmt == "tsv":
            files = {f"{kind}_vectors.tsv": _vectors_tsv(array), f"{kind}_metadata.tsv": _names_tsv(names)}
        else:
            files = {f"{plural}.w2v.txt": _word2vec(names, array)}
        for name, data in files.items():
            path = out / name
            try:
                (atomic_write_bytes if isinstance(data, bytes) else atomic_write_text)(path, data)
            except OSError as exc:
                raise ParamError("out", str(path), f"cannot write the export ({os_reason(exc)}); pass a writable {{out}} folder.") from None
            written.append(path)
    return written
