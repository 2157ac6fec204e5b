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
from typing import Iterator

import numpy as np

from ..errors import EmukgError
from ..io_utils import path_kind, quoted

_NEWLINE = re.compile(rb"\r\n|\r|\n")
_ID = re.compile(r"[0-9]+")


def _opened(path: Path):
    """``path`` opened for binary reading, or the one-sentence :class:`EmukgError` of every reader of data files."""
    kind = path_kind(path)
    if kind:
        raise EmukgError(f"{path}: is {kind}, not a text file; put a plain file there.")
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise EmukgError(f"{path}: file not found; check the dataset folder (it needs train.txt, valid.txt and test.txt).") from None
    except IsADirectoryError:
        raise EmukgError(f"{path}: is a folder, expected a text file; remove or rename that folder.") from None
    except PermissionError:
        raise EmukgError(f"{path}: permission denied; make the file readable.") from None


def _read_text(path: Path) -> str:
    with _opened(path) as f:
        raw = f.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    return _decode_block(raw, path, 1)


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


def _plain_dict(path: Path) -> tuple[list[str], str | None] | None:
    """The names of a dict file in id order when it is plain (ASCII, LF or CRLF line ends, every line
    ``digits<TAB>name`` with no blank line and no whitespace around a field) and valid (ids 0..N-1 once each, names
    distinct): the same list as the line-by-line reader, split in C; with the prefix of :func:`id_prefix` when the
    file is ``i<TAB>prefix i`` in id order (checked on the bytes).  None otherwise (the reader then decides)."""
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if not raw or raw.startswith(b"\xef\xbb\xbf"):
        return None
    if b"\r" in raw:
        if raw.count(b"\r") != raw.count(b"\r\n"):
            return None
        raw = raw.replace(b"\r\n", b"\n")
    if not raw.endswith(b"\n"):
        raw += b"\n"
    a = np.frombuffer(raw, dtype=np.uint8)
    if _ODD_WHITESPACE[a].any():
        return None
    nl = np.flatnonzero(a == 10)
    tab = np.flatnonzero(a == 9)
    if tab.size != nl.size:
        return None
    starts = np.empty_like(nl)
    starts[0] = 0
    starts[1:] = nl[:-1] + 1
    width = tab - starts
    if not ((width >= 1).all() and (width <= 18).all() and (tab + 1 < nl).all()):
        return None
    if (a[np.concatenate([tab + 1, nl - 1])] == 32).any():
        return None
    n = nl.size
    fields = raw[:-1].decode("ascii").replace("\n", "\t").split("\t")
    names = fields[1::2]
    # the common layout "i<TAB>p<i>" in id order, every name its id's text behind one prefix: checked on the bytes
    ids = _parse_names(a, starts, tab, b"", n)
    if (ids == np.arange(n)).all():
        p = names[0][:-1] if names[0].endswith("0") else None
        if p is not None and p.isascii() and not (p[-1:].isdigit() or p[-1:].isspace()):
            P = len(p)
            same = (nl - tab - 1 == P + width)
            for j, byte in enumerate(p.encode("ascii")):
                same &= a[np.minimum(tab + 1 + j, a.size - 1)] == byte
            for d in range(len(str(n - 1))):
                live = d < width
                same &= ~live | (a[np.minimum(tab + 1 + P + d, a.size - 1)] == a[np.minimum(starts + d, a.size - 1)])
            if same.all():
                return names, p
        if len(set(names)) != n:
            return None
        return names, None
    if not "".join(fields[0::2]).isdigit():  # (ASCII) a first field that is not all digits
        return None
    ids = np.fromiter(map(int, fields[0::2]), np.int64, n)
    if ids.max() >= n or (np.bincount(ids, minlength=n) != 1).any() or len(set(names)) != n:
        return None
    order = np.argsort(ids)
    names = [names[i] for i in order.tolist()]
    return names, id_prefix(names)


def read_dict(path: str | os.PathLike) -> list[str]:
    """Read an ``id<TAB>name`` file into a list indexed by id.  Ids must be 0..N-1, each exactly once."""
    return read_dict_prefix(path)[0]


def read_dict_prefix(path: str | os.PathLike) -> tuple[list[str], str | None]:
    """:func:`read_dict` and the names' common prefix when every name is that prefix followed by its own id
    (:func:`id_prefix`), else None."""
    path = Path(path)
    plain = _plain_dict(path) if path.is_file() else None
    if plain is not None:
        return plain
    names = read_dict_lines(path)
    return names, id_prefix(names)


def read_dict_lines(path: Path) -> list[str]:
    """:func:`read_dict` line by line: tolerant parsing and every error message (the plain case is faster)."""
    names: dict[int, str] = {}
    lines: dict[int, int] = {}
    seen_names: dict[str, int] = {}
    for number, line in read_lines(path):
        parts = _fields(line)
        _check_fields(path, number, parts, 2, "id, name")
        ident, name = parts
        if not _ID.fullmatch(ident):
            raise EmukgError(
                f"{path}, line {number}: id {quoted(ident)} is not a non-negative integer; the first column must be the numeric id 0..N-1."
            )
        i = int(ident)
        if i in names:
            raise EmukgError(
                f"{path}, line {number}: duplicate id {i} (line {lines[i]} already uses it for {quoted(names[i])}); give every entry its own id."
            )
        if name in seen_names:
            raise EmukgError(
                f"{path}, line {number}: duplicate name {quoted(name)} (already id {seen_names[name]}); list each name once."
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
    return _parse_triples(_read_text(path), path, 1)


def _parse_triples(text: str, path: Path, first: int) -> list[tuple[int, str, str, str]]:
    """The rows of ``text`` (line endings already ``\\n``), whose first line is line ``first`` of ``path``."""
    out = []
    append = out.append
    for number, line in enumerate(text.split("\n"), start=first):
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


# ---------------------------------------------------------------------------------------------------------
# Large files: blocks of lines parsed straight into int64 id arrays (bounded memory, the same rows and errors)

BLOCK_BYTES = 1 << 23  # bytes of text per block: the transient Python strings of one block stay near 50 MB
# ASCII bytes that str.strip() treats as whitespace besides space, tab and newline (\r, \v, \f, \x1c-\x1f): a block
# holding one is parsed by the line-by-line reader.
_ODD_WHITESPACE = np.zeros(256, dtype=bool)
_ODD_WHITESPACE[[11, 12, 13, 28, 29, 30, 31]] = True
_ODD_WHITESPACE[128:] = True  # non-ASCII text (Unicode whitespace, UTF-8 checks): the line-by-line reader too


def iter_blocks(path: Path, size: int | None = None) -> Iterator[tuple[bytes, int]]:
    """``(raw bytes, number of its first line)`` of consecutive blocks of whole lines (each ends after a ``\\n``,
    the last perhaps not), the UTF-8 byte-order mark removed.  The same file errors as :func:`_read_text`."""
    size = size or BLOCK_BYTES
    f = _opened(path)
    with f:
        rest, line, start = b"", 1, True
        while True:
            data = f.read(size)
            buf = rest + data if rest else data
            if start:
                if len(buf) < 3 and data:
                    rest = buf
                    continue
                if buf.startswith(b"\xef\xbb\xbf"):
                    buf = buf[3:]
                start = False
            if not data:
                if buf:
                    yield buf, line
                return
            cut = buf.rfind(b"\n") + 1
            if cut == 0:
                rest = buf
                continue
            block, rest = buf[:cut], buf[cut:]
            yield block, line
            line += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")


def _decode_block(raw: bytes, path: Path, first: int) -> str:
    """The text of a block whose first line is line ``first`` (CRLF and CR turned into LF), or a one-sentence error
    naming the line of the first byte that is not UTF-8.  Only \\n, \\r\\n and \\r end a line (str.splitlines would
    also split on \\x0b, \\x1c, \\x85, U+2028, ...)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = first - 1 + len(_NEWLINE.split(raw[: exc.start]))
        raise EmukgError(
            f"{path}, line {line}: bytes that are not valid UTF-8 (byte 0x{raw[exc.start]:02x}); re-encode the file as UTF-8."
        ) from None
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def id_prefix(names: list[str]) -> str | None:
    """``p`` when every name is ``p`` followed by its own id in decimal (``e0, e1, …``; ``p`` may be empty), else
    None: then a triple file's fields are parsed as integers (:func:`_parse_names`) instead of looked up."""
    if not names or not names[0].endswith("0"):
        return None
    p = names[0][:-1]
    if any(c.isdigit() or c.isspace() for c in p[-1:]) or not p.isascii():
        return None
    return p if all(map(str.__eq__, names, map((p + "{}").format, range(len(names))))) else None


def _parse_names(a: np.ndarray, start: np.ndarray, end: np.ndarray, prefix: bytes, n: int) -> np.ndarray:
    """Ids of the fields ``a[start:end]`` that are exactly a name ``prefix + str(id)`` with id < n, else −1:
    vectorised over the fields (no leading zeros, digits only, at most len(str(n − 1)) of them)."""
    P, D = len(prefix), len(str(n - 1))
    digits = end - start - P
    ok = (digits >= 1) & (digits <= D)
    for j, byte in enumerate(prefix):
        ok &= a[np.minimum(start + j, a.size - 1)] == byte
    first = start + P
    value = np.zeros(start.size, dtype=np.int64)
    for d in range(D):
        live = d < digits
        c = a[np.minimum(first + d, a.size - 1)].astype(np.int64) - 48
        ok &= ~live | ((c >= 0) & (c <= 9))
        value = np.where(live, value * 10 + c, value)
    ok &= (digits == 1) | (a[np.minimum(first, a.size - 1)] != 48)  # "07" is not the name of id 7
    ok &= value < n
    return np.where(ok, value, -1)


def _plain_fields(raw: bytes, positions: bool = False):
    """The 3·n fields of a block when every line is ``h<TAB>r<TAB>t`` with non-empty fields, ASCII, no blank line,
    no line end but LF or CRLF and no whitespace around a field (then the line-by-line reader gives exactly these fields); else None."""
    if not raw:
        return []
    if b"\r" in raw:  # CRLF line ends are plain too; a lone CR (a line end of its own) is not
        if raw.count(b"\r") != raw.count(b"\r\n"):
            return None
        raw = raw.replace(b"\r\n", b"\n")
    a = np.frombuffer(raw, dtype=np.uint8)
    if _ODD_WHITESPACE[a].any():
        return None
    if a[-1] != 10:
        raw += b"\n"
        a = np.frombuffer(raw, dtype=np.uint8)
    nl = np.flatnonzero(a == 10)
    tab = np.flatnonzero(a == 9)
    if tab.size != 2 * nl.size:
        return None
    starts = np.empty_like(nl)
    starts[0] = 0
    starts[1:] = nl[:-1] + 1
    t1, t2 = tab[0::2], tab[1::2]
    # each line holds exactly its two tabs, with a non-empty field before, between and after them
    if not ((starts < t1).all() and (t1 + 1 < t2).all() and (t2 + 1 < nl).all()):
        return None
    edges = np.concatenate([starts, t1 - 1, t1 + 1, t2 - 1, t2 + 1, nl - 1])
    if (a[edges] == 32).any():  # a space at the edge of a field: stripped by the line-by-line reader
        return None
    if positions:  # the bytes and the (start, end) of every field: head, relation, tail
        return a, ((starts, t1), (t1 + 1, t2), (t2 + 1, nl))
    return raw[:-1].decode("ascii").replace("\n", "\t").split("\t")


def _first_unknown(path: Path, numbers, heads, rels, tails, ent: dict, rel: dict):
    for number, h, r, t in zip(numbers, heads, rels, tails):
        for name in (h, t):
            if name not in ent:
                raise EmukgError(f"{path}, line {number}: entity {quoted(name)} is not in entities.dict; add it there or fix the name.")
        if r not in rel:
            raise EmukgError(f"{path}, line {number}: relation {quoted(r)} is not in relations.dict; add it there or fix the name.")


def encode_triples(path: str | os.PathLike, ent: dict | None, rel: dict | None, block_bytes: int | None = None,
                   prefixes: tuple[str | None, str | None] = (None, None), sizes: tuple[int, int] = (0, 0)):
    """Read ``path`` block by block into an int64 array (n, 3) of (head, relation, tail) ids through the name → id
    dicts ``ent`` and ``rel``: the rows :func:`read_triples` reads, encoded as ``load_folder`` encodes them, with
    the same message for the first bad line of a block.  Blocks of plain ``h<TAB>r<TAB>t`` ASCII lines are split
    in C and mapped with one dict lookup per field; other blocks go through the line-by-line reader.

    With ``ent=None`` only checks that the file parses (UTF-8 first, over the whole file, then the lines, as
    :func:`read_triples` does) and returns the number of rows.  Memory: 24 bytes per triple for the result plus
    about 50 MB per block in flight.

    ``prefixes`` (entity, relation; see :func:`id_prefix`) with ``sizes`` (number of entities, relations): the
    names are ``prefix + id``, so plain blocks are parsed as integers without any Python string (``ent``/``rel``
    are then only used for the error message of a block holding an unknown name).
    """
    path = Path(path)
    if ent is None:
        for raw, first in iter_blocks(path, block_bytes):
            _decode_block(raw, path, first)
        rows = 0
        for raw, first in iter_blocks(path, block_bytes):
            fields = _plain_fields(raw)
            if fields is not None:
                rows += len(fields) // 3
            else:
                rows += len(_parse_triples(_decode_block(raw, path, first), path, first))
        return rows
    parts = []
    numeric = prefixes[0] is not None and prefixes[1] is not None
    for raw, first in iter_blocks(path, block_bytes):
        if numeric:
            got = _plain_fields(raw, positions=True)
            if got is not None and got[1][0][0].size:
                a, cols = got
                ids = np.stack([_parse_names(a, s0, s1, prefixes[kind].encode("ascii"), sizes[kind])
                                for kind, (s0, s1) in zip((0, 1, 0), cols)], 1)  # entity, relation, entity
                if (ids >= 0).all():
                    parts.append(ids)
                    continue
            elif got is not None:
                continue
        fields = _plain_fields(raw)
        if fields is not None:
            n = len(fields) // 3
            if n == 0:
                continue
            heads, rels, tails = fields[0::3], fields[1::3], fields[2::3]
            del fields
            try:
                ids = np.empty((n, 3), dtype=np.int64)
                ids[:, 0] = np.fromiter(map(ent.__getitem__, heads), np.int64, n)
                ids[:, 1] = np.fromiter(map(rel.__getitem__, rels), np.int64, n)
                ids[:, 2] = np.fromiter(map(ent.__getitem__, tails), np.int64, n)
            except KeyError:
                _first_unknown(path, range(first, first + n), heads, rels, tails, ent, rel)
                raise
            parts.append(ids)
        else:
            rows = _parse_triples(_decode_block(raw, path, first), path, first)
            if rows:
                numbers, heads, rels, tails = zip(*rows)
                try:
                    ids = np.empty((len(rows), 3), dtype=np.int64)
                    ids[:, 0] = np.fromiter(map(ent.__getitem__, heads), np.int64, len(rows))
                    ids[:, 1] = np.fromiter(map(rel.__getitem__, rels), np.int64, len(rows))
                    ids[:, 2] = np.fromiter(map(ent.__getitem__, tails), np.int64, len(rows))
                except KeyError:
                    _first_unknown(path, numbers, heads, rels, tails, ent, rel)
                    raise
                parts.append(ids)
    if not parts:
        return np.zeros((0, 3), dtype=np.int64)
    if len(parts) == 1:
        return parts[0]
    return np.concatenate(parts)


class LazyIndex:
    """name → id of ``names``, built on first use (the integer-parsing path needs it only for error messages)."""

    def __init__(self, names: list[str]):
        self.names, self._index = names, None

    def _get(self) -> dict[str, int]:
        if self._index is None:
            self._index = {n: i for i, n in enumerate(self.names)}
        return self._index

    def __getitem__(self, name: str) -> int:
        return self._get()[name]

    def __contains__(self, name) -> bool:
        return name in self._get()
