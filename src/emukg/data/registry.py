"""Datasets by name: the registry, the resolver and the verified downloader.

Where a dataset comes from
--------------------------
Every registered dataset lists its files with the SHA-256 of each (embedded here, taken from the checksums
of the reference copies).  ``wn18rr``, ``FB15k-237`` and ``countries_S1``/``S2``/``S3`` are fetched file by
file from the ``data/`` folder of github.com/DeepGraphLearning/KnowledgeGraphEmbedding.  ``nations``,
``kinships`` and ``umls`` are published only as archives of the three splits (in github.com/TimDettmers/ConvE);
our copies add dicts numbered from the sorted names, so they have no per-file public URL and download only
from a mirror (see below).  ``YAGO3-10``, ``FB15k`` and ``wn18`` are registered with their
KnowledgeGraphEmbedding URLs but **without checksums** (``sha256=None``, marked unverified): downloading them
is refused unless the caller passes ``verify=False`` (``--no-verify`` on the command line), and even then
only files that have a checksum are verified.

Resolution order (:func:`resolve_dataset`)
------------------------------------------
1. an existing folder given as a path;
2. ``$EMUKG_DATA_DIR/<name>`` (several folders may be given, separated by ``os.pathsep``; folder names are
   matched case-insensitively, aliases included);
3. the user cache: ``$EMUKG_CACHE_DIR`` or ``$XDG_CACHE_HOME/emukg`` or ``~/.cache/emukg``, then
   ``datasets/<name>``;
4. a download into that cache, only when the caller allows it (``download=True``).

Mirror: ``mirror=URL`` (``--mirror URL``) or ``$EMUKG_MIRROR`` replaces every source URL by
``<mirror>/<folder>/<file>``; a plain local folder works as a mirror too.  Downloads use ``urllib`` only.
Each file goes to a temporary file and is checked against its SHA-256; the dataset is assembled in a
temporary folder beside its final place and renamed into place only when every file verified, so the cache
never holds a partial or unverified dataset (unless ``verify=False`` was given for an unverified entry).
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..errors import EmukgError
from ..io_utils import path_kind, user_cache_dir
from .graph import KnowledgeGraph, load_folder

log = logging.getLogger("emukg")

SOURCE_FILE = ".emukg-source.json"  # provenance record written into every downloaded dataset folder
_KGE = "https://raw.githubusercontent.com/DeepGraphLearning/KnowledgeGraphEmbedding/master/data"
_CONVE = "https://github.com/TimDettmers/ConvE"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class DatasetFile:
    """One file of a registered dataset: its path inside the folder, its SHA-256 (None: unverified), its URL."""

    name: str
    sha256: str | None
    url: str | None = None


@dataclass(frozen=True)
class DatasetInfo:
    """A registered dataset: canonical name, folder name in mirrors and caches, files, published counts."""

    name: str
    folder: str
    files: tuple[DatasetFile, ...]
    entities: int | None = None
    relations: int | None = None
    triples: tuple[int, int, int] | None = None  # train, valid, test
    source: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """True when every file has a SHA-256 to check downloads against."""
        return all(f.sha256 is not None for f in self.files)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "folder": self.folder,
            "entities": self.entities,
            "relations": self.relations,
            "triples": dict(zip(("train", "valid", "test"), self.triples)) if self.triples else None,
            "source": self.source,
            "aliases": list(self.aliases),
            "verified": self.verified,
            "files": {f.name: {"sha256": f.sha256, "url": f.url} for f in self.files},
        }


_REGISTRY: dict[str, DatasetInfo] = {}  # canonical name -> info
_KEYS: dict[str, str] = {}  # normalized name or alias -> canonical name


def _key(name: str) -> str:
    """Normalized lookup key: case, '-', '_', '.' and spaces do not matter ('FB15K237' == 'fb15k-237')."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def register_dataset(
    name: str,
    files: Mapping[str, str | None],
    *,
    source_url: str | None = None,
    folder: str | None = None,
    entities: int | None = None,
    relations: int | None = None,
    triples: tuple[int, int, int] | None = None,
    source: str = "",
    aliases: tuple[str, ...] | list[str] = (),
    replace: bool = False,
) -> DatasetInfo:
    """Add a dataset to the registry and return its :class:`DatasetInfo`.

    ``files`` maps each file's path inside the dataset folder (``'train.txt'``) to its SHA-256 hex digest,
    or to ``None`` when no checksum is known (the entry is then *unverified*: :func:`download_dataset`
    refuses it unless ``verify=False``).  ``source_url``: the canonical base URL, files are fetched from
    ``<source_url>/<file>``; ``None`` means the dataset can only be fetched from a mirror
    (``<mirror>/<folder>/<file>``).  ``folder`` (default ``name``) names the folder in mirrors and caches.
    Names and aliases are matched case-insensitively, ignoring ``-``, ``_`` and ``.``; clashing with an
    existing entry raises ``ValueError`` unless ``replace=True``.
    """
    folder = folder or name
    if not name or not _key(name):
        raise ValueError(f"dataset name {name!r} needs at least one letter or digit")
    if not files:
        raise ValueError(f"dataset {name!r}: no files given")
    if "/" in folder or "\\" in folder or folder in (".", ".."):
        raise ValueError(f"dataset {name!r}: folder {folder!r} must be a single path component")
    entries = []
    for rel, digest in files.items():
        p = PurePosixPath(rel)
        if p.is_absolute() or not p.parts or any(part in ("", ".", "..") for part in p.parts) or "\\" in rel:
            raise ValueError(f"dataset {name!r}: file {rel!r} must be a relative path inside the dataset folder")
        if digest is not None:
            digest = digest.lower()
            if not _SHA256.fullmatch(digest):
                raise ValueError(f"dataset {name!r}: {rel}: {digest!r} is not a SHA-256 hex digest")
        url = f"{source_url.rstrip('/')}/{urllib.parse.quote(rel)}" if source_url else None
        entries.append(DatasetFile(rel, digest, url))
    info = DatasetInfo(name, folder, tuple(entries), entities, relations,
                       tuple(triples) if triples else None, source, tuple(aliases))
    keys = {_key(k) for k in (name, folder, *aliases)}
    clashes = sorted({_KEYS[k] for k in keys if k in _KEYS} | ({name} if name in _REGISTRY else set()))
    if clashes and not replace:
        raise ValueError(f"dataset {name!r} clashes with the registered dataset(s) {', '.join(clashes)}; pass replace=True")
    for other in clashes:
        unregister_dataset(other)
    _REGISTRY[name] = info
    for k in keys:
        _KEYS[k] = name
    return info


def unregister_dataset(name: str) -> None:
    """Remove a dataset (by name or alias) from the registry; unknown names are ignored."""
    canonical = _KEYS.get(_key(name))
    if canonical is None:
        return
    _REGISTRY.pop(canonical, None)
    for k in [k for k, v in _KEYS.items() if v == canonical]:
        del _KEYS[k]


def list_datasets() -> list[DatasetInfo]:
    """All registered datasets, in registration order."""
    return list(_REGISTRY.values())


def find_registered(name: str) -> DatasetInfo | None:
    """The registered dataset called ``name`` (or an alias of it), or None."""
    canonical = _KEYS.get(_key(name))
    return _REGISTRY.get(canonical) if canonical else None


def _suggest(name: str) -> str:
    choices = {}
    for k, canonical in _KEYS.items():
        choices.setdefault(k, canonical)
    for info in _REGISTRY.values():
        choices[info.name.lower()] = info.name
    close = difflib.get_close_matches(name.lower(), list(choices), n=5, cutoff=0.5)
    close += difflib.get_close_matches(_key(name), list(choices), n=5, cutoff=0.5)
    names = list(dict.fromkeys(choices[c] for c in close))[:3]
    if not names:
        return ""
    listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
    return f"did you mean {listed}; "


def get_dataset(name: str) -> DatasetInfo:
    """The registered dataset ``name``; an unknown name raises :class:`EmukgError` with close matches."""
    info = find_registered(name)
    if info is None:
        raise EmukgError(f"dataset {name!r} is not registered; {_suggest(name)}see 'emukg datasets list' for the names.")
    return info


# --------------------------------------------------------------------------------------------------- places


def data_dirs() -> list[Path]:
    """The folders named by ``$EMUKG_DATA_DIR`` (``os.pathsep``-separated), in order."""
    value = os.environ.get("EMUKG_DATA_DIR", "")
    return [Path(p).expanduser() for p in value.split(os.pathsep) if p.strip()]


def dataset_cache_dir() -> Path:
    """Where downloaded datasets live: ``<$EMUKG_CACHE_DIR | $XDG_CACHE_HOME/emukg | ~/.cache/emukg>/datasets``."""
    return user_cache_dir("datasets")


def _find_in(directory: Path, keys: set[str], preferred: tuple[str, ...]) -> Path | None:
    for name in preferred:  # exact names first (cheap, and deterministic when several folders match)
        cand = directory / name
        if cand.is_dir():
            return cand
    try:
        entries = sorted(directory.iterdir())
    except OSError:
        return None
    for cand in entries:
        if not cand.name.startswith(".") and _key(cand.name) in keys and cand.is_dir():
            return cand
    return None


def find_local(name: str) -> Path | None:
    """Where dataset ``name`` already is (``$EMUKG_DATA_DIR``, then the cache), or None.  No download."""
    info = find_registered(name)
    if info is not None:
        keys = {_key(k) for k in (info.name, info.folder, *info.aliases)}
        preferred = tuple(dict.fromkeys((info.folder, info.name)))
    else:
        keys, preferred = {_key(name)}, (name,)
    for directory in data_dirs():
        found = _find_in(directory, keys, preferred)
        if found is not None:
            return found
    if info is not None:
        cached = dataset_cache_dir() / info.name
        if cached.is_dir():
            return cached
    return None


def _looks_like_path(text: str) -> bool:
    return "/" in text or os.sep in text or text.startswith((".", "~"))


def resolve_dataset(name_or_path: str | os.PathLike, *, download: bool = False, mirror: str | None = None,
                    verify: bool = True) -> Path:
    """The folder of a dataset given by path or registered name.

    Order: an existing folder path; ``$EMUKG_DATA_DIR/<name>``; the user cache; a verified download into
    the cache when ``download=True`` (see :func:`download_dataset` for ``mirror`` and ``verify``).
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    kind = path_kind(path)
    if kind:
        raise EmukgError(f"{path}: is {kind}, not a dataset folder; pass the folder that holds train.txt, valid.txt and test.txt.")
    if path.is_dir():
        return path
    if path.exists():
        raise EmukgError(f"{path}: is a file, not a dataset folder; pass the folder that holds train.txt, valid.txt and test.txt.")
    if not text.strip() or _looks_like_path(text):
        raise EmukgError(f"{text}: dataset folder not found; pass an existing folder or a registered name (see 'emukg datasets list').")
    found = find_local(text)
    if found is not None:
        return found
    info = get_dataset(text)  # unknown name -> EmukgError with suggestions
    if download:
        return download_dataset(info.name, mirror=mirror, verify=verify)
    where = [f"EMUKG_DATA_DIR={os.pathsep.join(map(str, data_dirs()))}"] if data_dirs() else ["EMUKG_DATA_DIR (not set)"]
    where.append(str(dataset_cache_dir()))
    raise EmukgError(
        f"dataset {info.name!r} is not available locally (looked in {' and '.join(where)}); "
        f"run 'emukg datasets download {info.name}' or set EMUKG_DATA_DIR to a folder that holds it."
    )


def load_dataset(name_or_path: str | os.PathLike, *, download: bool = True, mirror: str | None = None,
                 verify: bool = True) -> KnowledgeGraph:
    """Resolve (see :func:`resolve_dataset`; downloads by default) and read a dataset."""
    path = resolve_dataset(name_or_path, download=download, mirror=mirror, verify=verify)
    info = None if Path(os.fspath(name_or_path)).expanduser().is_dir() else find_registered(os.fspath(name_or_path))
    return load_folder(path, name=info.name if info else path.name)


RECORD_FILES = ("train.txt", "valid.txt", "test.txt", "entities.dict", "relations.dict")
"""The files whose sha256 a :func:`dataset_record` holds (those that exist)."""


def file_digests(folder: str | os.PathLike, names=RECORD_FILES) -> dict[str, str]:
    """``{name: sha256 hex}`` of the files ``names`` that exist in ``folder`` (each read once, in 1 MiB blocks)."""
    out = {}
    for name in names:
        path = Path(folder) / name
        if not path.is_file():
            continue
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        except OSError as exc:
            raise EmukgError(f"{path}: cannot be read ({exc.strerror or exc}); make the dataset readable.") from None
        out[name] = digest.hexdigest()
    return out


def dataset_record(name_or_path: str | os.PathLike) -> dict:
    """Where a run's data came from, for config.json's ``"dataset_record"``.

    ``{"name": the registered name (or the folder's name), "given": the string as given, "path": the absolute
    resolved folder, "sha256": {file: hex digest}}`` for the split files and dicts that exist.  The folder is
    resolved as :func:`resolve_dataset` does (no download); each file is hashed once.
    """
    given = os.fspath(name_or_path)
    folder = resolve_dataset(given, download=False)
    info = None if Path(given).expanduser().is_dir() else find_registered(given)
    path = folder.expanduser().resolve()
    return {"name": info.name if info else path.name, "given": given, "path": str(path), "sha256": file_digests(path)}


# ------------------------------------------------------------------------------------------------- download


def _mirror_base(mirror: str | None) -> str | None:
    mirror = mirror or os.environ.get("EMUKG_MIRROR") or None
    if mirror is None:
        return None
    if "://" not in mirror:  # a local folder
        return Path(mirror).expanduser().resolve().as_uri()
    return mirror.rstrip("/")


def file_urls(name: str, mirror: str | None = None) -> dict[str, str | None]:
    """The URL each file of dataset ``name`` is downloaded from (None: no public per-file source)."""
    info = get_dataset(name)
    base = _mirror_base(mirror)
    if base is not None:
        folder = urllib.parse.quote(info.folder)
        return {f.name: f"{base}/{folder}/{urllib.parse.quote(f.name)}" for f in info.files}
    return {f.name: f.url for f in info.files}


def _network_hint(name: str) -> str:
    return f"check the connection, or pass --mirror URL (or set EMUKG_MIRROR), or set EMUKG_DATA_DIR to a folder that holds {name}"


def _fetch(url: str, dest: Path, name: str, timeout: float) -> str:
    """Stream ``url`` into ``dest``; return the SHA-256 hex digest of the bytes."""

    def cannot_write(exc: OSError) -> EmukgError:
        return EmukgError(f"{dest.parent}: cannot write the download ({exc.strerror or exc}); make the cache "
                          f"folder writable or set EMUKG_CACHE_DIR.")

    digest = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "emukg (dataset download)"})
    try:
        out = open(dest, "wb")
    except OSError as exc:
        raise cannot_write(exc) from None
    with out:
        try:
            response = urllib.request.urlopen(request, timeout=timeout)
        except urllib.error.HTTPError as exc:
            raise EmukgError(f"{url}: the server answered HTTP {exc.code} ({exc.reason}); {_network_hint(name)}.") from None
        except urllib.error.URLError as exc:
            raise EmukgError(f"{url}: cannot download ({exc.reason}); {_network_hint(name)}.") from None
        except ValueError as exc:
            raise EmukgError(f"{url}: not a usable URL ({exc}); pass --mirror as http(s)://host/path or a local folder.") from None
        except (OSError, http.client.HTTPException) as exc:
            raise EmukgError(f"{url}: download failed ({type(exc).__name__}: {exc}); {_network_hint(name)}.") from None
        with response:
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as exc:
                    raise EmukgError(f"{url}: download interrupted ({type(exc).__name__}: {exc}); {_network_hint(name)}.") from None
                if not chunk:
                    break
                digest.update(chunk)
                try:
                    out.write(chunk)
                except OSError as exc:
                    raise cannot_write(exc) from None
    return digest.hexdigest()


def _remove_stale(parent: Path, name: str, max_age_s: float = 24 * 3600) -> None:
    """Delete temporary folders left by interrupted downloads of ``name`` (older than a day)."""
    now = time.time()
    for cand in parent.glob(f".{name}.*.partial"):
        with contextlib.suppress(OSError):
            if now - cand.stat().st_mtime > max_age_s:
                shutil.rmtree(cand, ignore_errors=True)


def download_dataset(name: str, *, mirror: str | None = None, force: bool = False, verify: bool = True,
                     timeout: float = 60.0) -> Path:
    """Download registered dataset ``name`` into the cache and return its folder.

    Files come from ``<mirror>/<folder>/<file>`` when ``mirror`` (or ``$EMUKG_MIRROR``) is given, else from
    the registered source URLs.  Every file is streamed into a temporary folder and checked against its
    SHA-256; only when all files verified is the folder renamed to ``<cache>/datasets/<name>``, so a
    failure (network error, checksum mismatch) leaves nothing in the cache.  Entries without checksums
    (unverified, e.g. YAGO3-10) are refused unless ``verify=False``; files that have a checksum are verified
    even then.  An existing cached copy is returned as is unless ``force=True``.
    """
    info = get_dataset(name)
    parent = dataset_cache_dir()
    target = parent / info.name
    if target.is_dir() and not force:
        return target
    if verify and not info.verified:
        missing = ", ".join(f.name for f in info.files if f.sha256 is None)
        raise EmukgError(
            f"dataset {info.name!r} is unverified (no SHA-256 registered for {missing}); pass --no-verify to download "
            f"it anyway, or set EMUKG_DATA_DIR to a folder that holds a copy you trust."
        )
    urls = file_urls(info.name, mirror)
    no_source = [f for f, u in urls.items() if u is None]
    if no_source:
        raise EmukgError(
            f"dataset {info.name!r} has no per-file public source ({info.source or 'mirror only'}); pass --mirror URL "
            f"(or set EMUKG_MIRROR) to a copy laid out as <mirror>/{info.folder}/<file>, or set EMUKG_DATA_DIR to a folder that holds it."
        )
    created_parent = not parent.exists()
    try:
        parent.mkdir(parents=True, exist_ok=True)
        _remove_stale(parent, info.name)
        work = Path(tempfile.mkdtemp(prefix=f".{info.name}.", suffix=".partial", dir=parent))
    except OSError as exc:
        raise EmukgError(f"{parent}: cannot create the dataset cache ({exc.strerror or exc}); make it writable or set EMUKG_CACHE_DIR.") from None
    old = None
    try:
        record = {"name": info.name, "mirror": _mirror_base(mirror), "verified": True, "files": {}}
        for i, entry in enumerate(info.files, start=1):
            url = urls[entry.name]
            log.info("%s: downloading %s (%d/%d) from %s", info.name, entry.name, i, len(info.files), url)
            dest = work / entry.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.download")
            actual = _fetch(url, tmp, info.name, timeout)
            if entry.sha256 is None:
                log.warning("%s: %s has no registered SHA-256 (unverified); its SHA-256 is %s.", info.name, entry.name, actual)
                record["verified"] = False
            elif actual != entry.sha256:
                raise EmukgError(
                    f"{url}: SHA-256 mismatch for {info.folder}/{entry.name} (expected {entry.sha256}, got {actual}); "
                    f"the download is corrupt or the mirror holds a different file, so nothing was saved; retry or use another --mirror."
                )
            os.replace(tmp, dest)
            record["files"][entry.name] = {"sha256": actual, "url": url}
        os.chmod(work, 0o755)  # mkdtemp made it private; a dataset folder is ordinary readable data
        (work / SOURCE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        if target.exists() and force:
            old = parent / f".{info.name}.{os.getpid()}.{time.time_ns()}.old.partial"
            os.rename(target, old)
        try:
            os.rename(work, target)
        except OSError:
            if not target.is_dir():
                raise
            # Another process finished the same download first: keep its copy.
            shutil.rmtree(work, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if old is not None and old.is_dir() and not target.exists():
            with contextlib.suppress(OSError):
                os.rename(old, target)  # --force failed: put the previous copy back
        if created_parent:
            with contextlib.suppress(OSError):
                parent.rmdir()  # leave no trace when the cache was empty
        if isinstance(exc, OSError):
            raise EmukgError(f"{parent}: cannot store the download ({exc.strerror or exc}); make it writable or set EMUKG_CACHE_DIR.") from None
        raise
    log.info("%s: %d files verified and stored in %s", info.name, len(info.files), target)
    return target


def read_source_record(folder: str | os.PathLike) -> dict | None:
    """The provenance record that :func:`download_dataset` wrote into ``folder``, or None."""
    with contextlib.suppress(OSError, ValueError):
        return json.loads((Path(folder) / SOURCE_FILE).read_text(encoding="utf-8"))
    return None


# ------------------------------------------------------------------------------------------ built-in entries

_SPLIT_FILES = ("entities.dict", "relations.dict", "train.txt", "valid.txt", "test.txt")


def _files(*digests: str | None, extra: Mapping[str, str | None] | None = None) -> dict[str, str | None]:
    out = dict(zip(_SPLIT_FILES, digests))
    out.update(extra or {})
    return out


_KGE_SOURCE = "github.com/DeepGraphLearning/KnowledgeGraphEmbedding data/"
_CONVE_SOURCE = f"{_CONVE} {{}}.tar.gz holds the splits only; dicts numbered from sorted names"
_COUNTRIES_REGIONS = "0d81ea3e5c46224305813ab07bb3f0038c30ee903bec74fee668f976f5311663"
_COUNTRIES_RELATIONS = "dfaed2f46b0d485ed672c62e7a6629724ad72812d99db1ffc7fc4434be7b733e"
_COUNTRIES_VALID = "f4b27648148a44f87e627140ec3a02ca4c884c32d348591147ca72f1d6fff5b0"
_COUNTRIES_TEST = "262ca5ae5ed3aa1927026e0f258cc52b10830185b93465b93b9360727e719158"

_BUILTIN = [
    dict(
        name="wn18rr", entities=40943, relations=11, triples=(86835, 3034, 3134),
        source=_KGE_SOURCE, source_url=f"{_KGE}/wn18rr", aliases=("WN18-RR",),
        files=_files(
            "3dc41455a835d7523b68a2d449a8ae9429ba8cf8be7db7e29b4cbadf6fbc092f",
            "0cf033f5ea243c938d86e8e5e89b43676df040b9196ce495b92382e54ad59916",
            "038612e783c215ee5f3ca9fbfca27b8d0739be1028fe4ee7c174aecf0b83d5df",
            "453ce7202afa58094a04d2b1560ee2b02660f1c260b32ce6651c8ccedd1028ab",
            "0383bceaaa1096cf3c03ec021ed0048068e2355dbfc0239b292cefdac821cec5",
        ),
    ),
    dict(
        name="FB15k-237", entities=14541, relations=237, triples=(272115, 17535, 20466),
        source=_KGE_SOURCE, source_url=f"{_KGE}/FB15k-237", aliases=("FB237",),
        files=_files(
            "55666c4fb9c2990ef809e41d3a0023503b1f927fd00a1c947f21a805608f50ac",
            "e98ebcc621a217ca80d44992cdf0ef5f0eb355ff9aff0ba1a3e939f6ca8fb095",
            "6e4c2782169af21e9743f3b1d200886f5d595bf6bc504ec1351720949c5cdfae",
            "cf6309010852f6a8d47a45df830a426415d1ee6f7a3970a8376ff1fb81db4a5c",
            "5711cf41623ceb4eacc50eb6108a3ca6565c7492e3caaf82a3e355cc660d1574",
            extra={"README.txt": "28fd9f6bb6d6d99ecdcbe6b763ee1778d2d570589ee8eeec2e6c9856ecab33bf"},
        ),
    ),
    dict(
        name="nations", entities=14, relations=55, triples=(1592, 199, 201),
        source=_CONVE_SOURCE.format("nations"),
        files=_files(
            "dc9f52b8069fedd0102b4b60913075d668d5745d3e7de9477508438308689d68",
            "17ebd90ecc066aa79feef81ce002d15d7ff33b661a8f5c30067107b83db9434f",
            "0830fa9da8e5bba2ccdaa45b7bdc9130451ba66b09ff2708f35fccaf82473e57",
            "2b337a62e51a2f45c283eac98a70d21b7e0e102136be1539b2a52c652a7b0530",
            "3971085165b47b6aeaec68058c6d8d98b3005e929db81268410b95ae4db770ab",
            extra={"literals.txt": "1567d7f0a4165ed625810d610d55cfa1d730fa00796dc6d415db9013ceab95ce"},
        ),
    ),
    dict(
        name="kinships", entities=104, relations=25, triples=(8544, 1068, 1074),
        source=_CONVE_SOURCE.format("kinship"), aliases=("kinship",),
        files=_files(
            "c7b9c4e2964003b2d8b8bf66c0ae224b849b3ac592027df9bcbb5d9cda628710",
            "81277021eeb8074df0bc993261019f15c87937c196d2f7dc2abfee61740addeb",
            "738612111a6acf0e39662bde24c7e72a4d1edf20931beea077da367dda689731",
            "c56f8630a583178b1e569f11a64aa535ae1ce0b0912d8b1e24716be2b37f04da",
            "05e5733265761d55be9c05bfaff5a8d0808df46f9c1e9d66cc3f2fe114e43d88",
        ),
    ),
    dict(
        name="umls", entities=135, relations=46, triples=(5216, 652, 661),
        source=_CONVE_SOURCE.format("umls"),
        files=_files(
            "b70432d0f5ac748d173d34ae3c1f90fa664fd85a86a7463003ab5f37b86baca6",
            "f7424890a5d60407bc09896106ce79b600f037614cfd93b76d1d003d729dfcf7",
            "873ef4925516b83e7f6f8cc02b4be51d848828710a7f65a956f0ac4a9e452f35",
            "025c98f8a4891e2a6582ec5b40ee0d904031edad9c52554522f4b7904820c98e",
            "a7eb529a3d2810fcc96341ccc97c625a5e202f8389673aa6bd317eeebbb79014",
        ),
    ),
    dict(
        name="countries_S1", entities=271, relations=2, triples=(1111, 24, 24),
        source=_KGE_SOURCE, source_url=f"{_KGE}/countries_S1",
        files=_files(
            "885f763906da5592aa03d67243f6244ba5c4e54145c4312d06a6aec08af21fd4", _COUNTRIES_RELATIONS,
            "5256bf3fc4181d7e87d819571e3acfa5425fc5af365b9ebe5c113740534ca561", _COUNTRIES_VALID, _COUNTRIES_TEST,
            extra={"regions.list": _COUNTRIES_REGIONS},
        ),
    ),
    dict(
        name="countries_S2", entities=271, relations=2, triples=(1063, 24, 24),
        source=_KGE_SOURCE, source_url=f"{_KGE}/countries_S2",
        files=_files(
            "d62d8a54b7ee43fb2292add5dc0f450c296f1a9f642de1b6ad6e2cc9dec505c4", _COUNTRIES_RELATIONS,
            "84c8f310fa076f902760f0909716b13bc0853a105ab9e0145e4e5135d855f68a", _COUNTRIES_VALID, _COUNTRIES_TEST,
            extra={"regions.list": _COUNTRIES_REGIONS},
        ),
    ),
    dict(
        name="countries_S3", entities=271, relations=2, triples=(985, 24, 24),
        source=_KGE_SOURCE, source_url=f"{_KGE}/countries_S3",
        files=_files(
            "ffe66d57635b59d81597b29d3fd7a78e2191f4a3c1d1a1d40616c9703b98694e",
            "956e0b366f262cebb6759b9ecd5cabe1ee0884ae401f89bb3ad1c7781887ed74",
            "80a8e3a26aff58b78fd5a453ec2a37591466bad621df8d05185f26763b663a0c", _COUNTRIES_VALID, _COUNTRIES_TEST,
            extra={"regions.list": _COUNTRIES_REGIONS},
        ),
    ),
    # Unverified: public per-file URLs, but no checksums we could confirm (download needs --no-verify).
    dict(
        name="YAGO3-10", entities=123182, relations=37, triples=(1079040, 5000, 5000),
        source=_KGE_SOURCE + " (unverified: no checksums)", source_url=f"{_KGE}/YAGO3-10",
        files=_files(None, None, None, None, None),
    ),
    dict(
        name="FB15k", entities=14951, relations=1345, triples=(483142, 50000, 59071),
        source=_KGE_SOURCE + " (unverified: no checksums)", source_url=f"{_KGE}/FB15k",
        files=_files(None, None, None, None, None),
    ),
    dict(
        name="wn18", entities=40943, relations=18, triples=(141442, 5000, 5000),
        source=_KGE_SOURCE + " (unverified: no checksums)", source_url=f"{_KGE}/wn18",
        files=_files(None, None, None, None, None),
    ),
]

for _entry in _BUILTIN:
    register_dataset(**_entry)
del _entry

__all__ = [
    "DatasetFile", "DatasetInfo", "register_dataset", "unregister_dataset", "list_datasets", "find_registered",
    "get_dataset", "data_dirs", "dataset_cache_dir", "find_local", "resolve_dataset", "load_dataset", "file_urls",
    "download_dataset", "read_source_record", "SOURCE_FILE",
]
