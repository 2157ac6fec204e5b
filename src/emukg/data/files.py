"""Readers for the dataset files of the RotatE / SANS / EMU layout.

``entities.dict`` / ``relations.dict``: ``id<TAB>name`` per line, ids 0..N-1 in any order.
``train.txt`` / ``valid.txt`` / ``test.txt``: ``head<TAB>relation<TAB>tail`` by name.

Tolerated: CRLF or CR line endings, a UTF-8 byte-order mark, trailing whitespace, blank lines, and
whitespace instead of tabs when a line has no tab at all.  Everything else raises :class:`EmukgError` with
one sentence naming the file and line.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import EmukgError


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Return ``(line_number, text)`` for every non-blank line, line endings and trailing whitespace removed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EmukgError(f"{path}: file not found; check the dataset folder (it needs train.txt, valid.txt and test.txt).") from None
    except IsADirectoryError:
        raise EmukgError(f"{path}: is a folder, expected a text file.") from None
    except PermissionError:
        raise EmukgError(f"{path}: permission denied; make the file readable.") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise EmukgError(
            f"{path}, line {line}: bytes that are not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-encode the file as UTF-8."
        ) from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.rstrip()
        if line:
            out.append((number, line))
    return out


def _fields(line: str) -> list[str]:
    parts = line.split("\t")
    if len(parts) == 1:
        parts = line.split()
    return [p.strip() for p in parts]


def read_dict(path: str | os.PathLike) -> list[str]:
    """Read an ``id<TAB>name`` file into a list indexed by id.  Ids must be 0..N-1, each exactly once."""
    path = Path(path)
    names: dict[int, str] = {}
    seen_names: dict[str, int] = {}
    for number, line in read_lines(path):
        parts = _fields(line)
        if len(parts) != 2:
            raise EmukgError(f"{path}, line {number}: expected 2 tab-separated columns (id, name), found {len(parts)}; fix that line.")
        ident, name = parts
        try:
            i = int(ident)
        except ValueError:
            raise EmukgError(f"{path}, line {number}: id {ident!r} is not an integer; the first column must be the numeric id.") from None
        if i in names:
            raise EmukgError(f"{path}, line {number}: duplicate id {i} (also used for {names[i]!r}); give every entry its own id.")
        if name in seen_names:
            raise EmukgError(f"{path}, line {number}: duplicate name {name!r} (already id {seen_names[name]}); list each name once.")
        names[i] = name
        seen_names[name] = i
    if not names:
        raise EmukgError(f"{path}: the file is empty; it must list one 'id<TAB>name' per line.")
    n = len(names)
    if min(names) != 0 or max(names) != n - 1:
        missing = sorted(set(range(max(max(names), n - 1) + 1)) - set(names))
        hint = f"id {missing[0]} is missing" if missing else "ids must start at 0"
        raise EmukgError(f"{path}: ids are not contiguous from 0 to {n - 1} ({hint}); renumber the file 0..N-1.")
    return [names[i] for i in range(n)]


def read_triples(path: str | os.PathLike) -> list[tuple[int, str, str, str]]:
    """Read ``head<TAB>relation<TAB>tail`` lines; returns ``(line_number, head, relation, tail)``."""
    path = Path(path)
    out = []
    for number, line in read_lines(path):
        parts = _fields(line)
        if len(parts) != 3:
            raise EmukgError(
                f"{path}, line {number}: expected 3 tab-separated columns (head, relation, tail), found {len(parts)}; fix that line."
            )
        out.append((number, parts[0], parts[1], parts[2]))
    return out
