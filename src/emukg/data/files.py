"""Readers for the dataset files of the RotatE / SANS / EMU layout.

``entities.dict`` / ``relations.dict``: ``id<TAB>name`` per line, ids 0..N-1 in any order.
``train.txt`` / ``valid.txt`` / ``test.txt``: ``head<TAB>relation<TAB>tail`` by name.

Tolerated: CRLF or CR line endings, a UTF-8 byte-order mark, leading and trailing whitespace around fields,
blank lines, and whitespace instead of tabs when a line has no tab at all.  Everything else (a wrong column
count, an empty field, a non-numeric, negative, duplicate or missing id, bytes that are not UTF-8, a missing
file) raises :class:`EmukgError` with one sentence naming the file and line and saying how to fix it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import EmukgError

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_ID = re.compile(r"[0-9]+")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise EmukgError(f"{path}: file not found; check the dataset folder (it needs train.txt, valid.txt and test.txt).") from None
    except IsADirectoryError:
        raise EmukgError(f"{path}: is a folder, expected a text file; remove or rename that folder.") from None
    except PermissionError:
        raise EmukgError(f"{path}: permission denied; make the file readable.") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(_NEWLINE.split(raw[: exc.start]))
        raise EmukgError(
            f"{path}, line {line}: bytes that are not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-encode the file as UTF-8."
        ) from None
    # Only \n, \r\n and \r end a line (str.splitlines would also split on \x0b, \x1c, \x85, U+2028, ...).
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    """Return ``(line_number, text)`` for every non-blank line, line endings and surrounding whitespace removed."""
    text = _read_text(Path(path))
    out = []
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.strip()
        if line:
            out.append((number, line))
    return out


def _fields(line: str) -> list[str]:
    parts = line.split("\t")
    if len(parts) == 1:
        parts = line.split()
    return [p.strip() for p in parts]


def _check_fields(path: Path, number: int, parts: list[str], expected: int, what: str) -> None:
    if len(parts) != expected:
        raise EmukgError(
            f"{path}, line {number}: expected {expected} tab-separated columns ({what}), found {len(parts)}; fix that line."
        )
    for column, part in enumerate(parts, start=1):
        if not part:
            raise EmukgError(f"{path}, line {number}: column {column} is empty; every column ({what}) needs a value.")


def read_dict(path: str | os.PathLike) -> list[str]:
    """Read an ``id<TAB>name`` file into a list indexed by id.  Ids must be 0..N-1, each exactly once."""
    path = Path(path)
    names: dict[int, str] = {}
    lines: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    for number, line in read_lines(path):
        parts = _fields(line)
        _check_fields(path, number, parts, 2, "id, name")
        ident, name = parts
        if not _ID.fullmatch(ident):
            raise EmukgError(
                f"{path}, line {number}: id {ident!r} is not a non-negative integer; the first column must be the numeric id 0..N-1."
            )
        i = int(ident)
        if i in names:
            raise EmukgError(
                f"{path}, line {number}: duplicate id {i} (line {lines[i]} already uses it for {names[i]!r}); give every entry its own id."
            )
        if name in seen_names:
            raise EmukgError(
                f"{path}, line {number}: duplicate name {name!r} (already id {seen_names[name]}); list each name once."
            )
        names[i] = name
        lines[i] = number
        seen_names[name] = i
    if not names:
        raise EmukgError(f"{path}: the file is empty; it must list one 'id<TAB>name' per line.")
    n = len(names)
    too_big = [i for i in names if i >= n]
    if too_big:
        # n distinct non-negative ids, one of them >= n: some id below n is missing.
        missing = next(i for i in range(n) if i not in names)
        worst = min(too_big, key=lambda i: lines[i])
        raise EmukgError(
            f"{path}, line {lines[worst]}: id {worst} is out of range (the file has {n} entries, so ids must be 0..{n - 1} "
            f"and id {missing} is missing); renumber the file 0..N-1 without gaps."
        )
    return [names[i] for i in range(n)]


def read_triples(path: str | os.PathLike) -> list[tuple[int, str, str, str]]:
    """Read ``head<TAB>relation<TAB>tail`` lines; returns ``(line_number, head, relation, tail)``."""
    path = Path(path)
    text = _read_text(path)
    out = []
    append = out.append
    for number, line in enumerate(text.split("\n"), start=1):
        parts = line.split("\t")
        if len(parts) == 3:  # fast path: the usual well-formed line
            h, r, t = parts
            h, r, t = h.strip(), r.strip(), t.strip()
            if h and r and t:
                append((number, h, r, t))
                continue
        line = line.strip()
        if not line:
            continue
        parts = _fields(line)
        _check_fields(path, number, parts, 3, "head, relation, tail")
        append((number, parts[0], parts[1], parts[2]))
    return out
