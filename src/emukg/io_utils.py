"""Atomic file writes: write to a temporary file in the same folder, then rename over the target.

A crash or a full disk therefore never leaves a half-written output behind: readers see either the old file
or the complete new one.  The temporary file is named ``TEMP_PATTERN`` (``.NAME.<pid>-<random>.tmp``, beside
``NAME``); a process killed mid-write leaves one behind, which the next write of ``NAME`` removes when its pid is no
longer running on this machine (:func:`clean_stale_temps`), and :meth:`emukg.run_folder.RunFolder.clean_temp`
removes whatever its pid (the run folder has one writer at a time, :mod:`emukg.folder_lock`).

Fault injection (:func:`fault_point`): every writer passes named points — ``write.begin`` (temp file created),
``write.chunk`` (each chunk written into it), ``write.written`` (content written and synced, before the rename),
``write.renamed`` (after the rename) — and the trainer adds ``checkpoint.between`` (between the files of one
checkpoint save), ``train.step`` (inside a step, after the backward pass) and ``train.validation`` (after a
validation's evaluation, before its best_model).  ``EMUKG_FAULT=POINT[:N[:ACTION]][,...]`` makes the N-th pass
(default 1) of POINT in this process ``kill`` itself with SIGKILL (the default) or raise ``enospc`` (an OSError
"no space left on the device"); the tests use it to kill or fill a writer at the moment that matters and check
that every earlier file survives.  Unset, a point costs one environment lookup.  Temporary files are created with mode ``0o666`` filtered by
the process umask, exactly as ``open(path, "w")`` would, so the renamed file gets the same permissions as any
other file the user writes (``tempfile.mkstemp`` would force ``0o600``).

:func:`check_writable_file` and :func:`check_writable_dir` refuse an output path up front, before any long
computation, with one sentence naming the parameter (a :class:`~emukg.errors.ParamError`, which the CLI renders as
its flag); :func:`read_yaml` does the same for an input YAML file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import signal
import stat
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from .errors import EmukgError, ParamError

TEMP_PATTERN = ".{name}.*.tmp"
"""Glob (``str.format`` it with ``name``) of the temporary files :func:`atomic_path` creates beside ``name``."""

FAULT_ENV = "EMUKG_FAULT"
_fault_hits: Counter = Counter()


def fault_point(name: str) -> None:
    """A named point of a writer (see the module docstring) where ``$EMUKG_FAULT`` can kill the process or make the
    write fail; nothing happens when the variable is unset."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    for item in spec.split(","):
        point, _, rest = item.strip().partition(":")
        if point != name:
            continue
        count, _, action = rest.partition(":")
        _fault_hits[name] += 1
        if _fault_hits[name] != int(count or 1):
            continue
        if (action or "kill") == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise OSError(errno.ENOSPC, "No space left on device (injected by EMUKG_FAULT)")


class _FaultyFile:
    """A file whose every ``write`` passes ``write.chunk`` (used only while ``$EMUKG_FAULT`` is set)."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        fault_point("write.chunk")
        return self._f.write(data)

    def __getattr__(self, name):
        return getattr(self._f, name)


def user_cache_dir(*parts: str) -> Path:
    """emukg's cache folder — ``$EMUKG_CACHE_DIR``, else ``$XDG_CACHE_HOME/emukg``, else ``~/.cache/emukg`` —
    joined with ``parts`` (``datasets``, ``sans``, ``kernels``)."""
    base = os.environ.get("EMUKG_CACHE_DIR") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "emukg")
    return Path(base).expanduser().joinpath(*parts)


def temp_files(folder: str | os.PathLike, name: str) -> list[Path]:
    """Leftover temporary files of interrupted atomic writes of ``folder/name`` (see ``TEMP_PATTERN``)."""
    return sorted(Path(folder).glob(TEMP_PATTERN.format(name=name)))


def pid_running(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (one we may not signal counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return pid > 0
    return True


def clean_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temp files that killed writers of ``path`` left beside it: those whose pid (``.NAME.<pid>-...``)
    no longer runs here (a live writer's temp file is kept; temp files without a pid are left to their owner's
    cleaner, such as :meth:`emukg.run_folder.RunFolder.clean_temp`).  Returns the paths removed."""
    path = Path(path)
    removed = []
    for tmp in temp_files(path.parent, path.name):
        pid = tmp.name[len(path.name) + 2:].partition("-")[0]
        if pid.isdigit() and not pid_running(int(pid)):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def _create_temp(path: Path) -> Path:
    """Create (exclusively) an empty ``.NAME.<pid>-<random>.tmp`` beside ``path`` with mode 0o666 & ~umask."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(path.parent))


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on error delete it.

    The temporary file already exists (empty, mode ``0o666 & ~umask``) when yielded; write into it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # leftovers of killed writers (a cleaning failure is not this write's)
        clean_stale_temps(path)
    tmp_path = _create_temp(path)
    try:
        fault_point("write.begin")
        yield tmp_path
        fault_point("write.written")
        os.replace(tmp_path, path)
        fault_point("write.renamed")
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def atomic_write_with(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> None:
    """Atomically create ``path`` by calling ``write(file)`` on a temporary file beside it (then fsync, rename).

    The content streams to disk: a checkpoint of several GB is never held twice in memory."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(_FaultyFile(f) if os.environ.get(FAULT_ENV) else f)
            f.flush()
            os.fsync(f.fileno())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    atomic_write_with(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_save_npy(path: str | os.PathLike, array) -> None:
    import numpy as np

    atomic_write_with(path, lambda f: np.save(f, np.asarray(array)))


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    import torch

    atomic_write_with(path, lambda f: torch.save(obj, f))


# ------------------------------------------------------------------------------------------ error reporting

_REASONS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "the file system is read-only",
    errno.ENOSPC: "no space left on the device",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "a folder on the way does not exist",
    errno.ENAMETOOLONG: "a name in the path is too long",
    errno.ELOOP: "the path has a symbolic link loop",
}
if hasattr(errno, "EDQUOT"):
    _REASONS[errno.EDQUOT] = "the disk quota is exceeded"


def os_reason(exc: OSError) -> str:
    """A short lower-case reason for ``exc`` ("permission denied", "the file system is read-only", ...)."""
    return _REASONS.get(exc.errno, (exc.strerror or type(exc).__name__).lower())


def write_error(path: str | os.PathLike, exc: OSError, fix: str = "make it writable or free some space") -> EmukgError:
    """The one-sentence :class:`EmukgError` for a failed write of ``path``."""
    return EmukgError(f"{path}: cannot write ({os_reason(exc)}); {fix}.")


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists (a file or a folder)."""
    for cand in (path, *path.parents):
        if os.path.lexists(cand):
            return cand
    return Path(path.anchor or ".")


def _writable_dir(folder: Path) -> bool:
    return os.access(folder, os.W_OK | os.X_OK)


_KERNEL_FS = {"proc", "sysfs", "devtmpfs", "devpts", "cgroup", "cgroup2", "debugfs", "securityfs", "tracefs",
              "configfs", "pstore", "bpf", "fusectl", "mqueue", "efivarfs", "binfmt_misc"}
"""File-system types that hold the kernel's views (no user files can be created there)."""


def _fs_type(path: Path) -> str | None:
    """The type of the file system ``path`` lies on (from /proc/self/mounts; None where that is not readable)."""
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return None
    real, best, kind = os.path.realpath(path), "", None
    for line in lines:
        parts = line.split()
        if len(parts) < 3:
            continue
        mount = parts[1].replace("\\040", " ")
        if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) >= len(best):
            best, kind = mount, parts[2]
    return kind


def path_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it is neither a plain file, nor a folder, nor missing: ``"a FIFO (named pipe)"``,
    ``"a character device"``, ``"a block device"``, ``"a socket"``, ``"a symbolic link loop"``, ``"a broken symbolic
    link"``, or ``"on the kernel's virtual file system (proc)"``; None otherwise.  For messages that say what a
    path is instead of calling a pipe "not found"."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if os.path.islink(path):
            return "a broken symbolic link"
        return None
    for test, what in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return what
    kind = _fs_type(path)
    if kind in _KERNEL_FS:
        return f"on the kernel's virtual file system ({kind})"
    return None


def too_long_name(path: str | os.PathLike) -> str | None:
    """The reason ``path`` cannot be created because a name in it, or the whole, is longer than the file system
    allows (``NAME_MAX``, usually 255 bytes; ``PATH_MAX``, 4096); None when it fits."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    existing = _nearest_existing(path)
    try:
        name_max = os.pathconf(existing if existing.is_dir() else existing.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        name_max = 255
    for part in path.parts[1:]:
        if len(os.fsencode(part)) > name_max:
            return f"the name {quoted(part, 40)} is too long ({len(os.fsencode(part))} bytes; the file system allows {name_max})"
    if len(os.fsencode(str(path))) >= 4096:
        return f"the path is too long ({len(os.fsencode(str(path)))} bytes; the system allows 4095)"
    return None


def quoted(value, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to ``limit`` characters with the full length said when longer (a name
    taken from a 20 MB line is not echoed whole)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(str(value)):,} characters)"


def braces(text) -> str:
    """``text`` (a path, a value, another library's message) inside a :class:`ParamError` reason: its braces
    doubled, so that they are not read as parameter names."""
    return str(text).replace("{", "{{").replace("}", "}}")


def _refuse(name: str, path: Path, reason: str, flags: dict | None) -> EmukgError:
    """The refusal of ``path``: a :class:`ParamError` about the parameter ``name`` (rendered per caller), or, when
    the caller names it by its flag (``--json``, ``-save``), a plain :class:`EmukgError` spelled as given.
    ``reason`` is a ParamError reason (paths in it quoted with :func:`braces`)."""
    if name.startswith("-"):
        return EmukgError(f"{name} {path}: {re.sub(r'{{|}}', lambda m: m.group(0)[0], reason)}")
    return ParamError(name, str(path), reason, flags=flags)


def check_writable_dir(path: str | os.PathLike, param: str, flags: dict | None = None) -> None:
    """Refuse ``path`` as an output folder, creating nothing: it is a file, lies under a file, or the folder (or
    its nearest existing ancestor, where it would be created) is not writable.  One sentence naming ``param`` (a
    library parameter such as ``save_path``, or a flag such as ``--out``; see :func:`_refuse`)."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    existing = _nearest_existing(path)
    long = too_long_name(path)
    if long:
        raise _refuse(param, path, f"cannot be created: {braces(long)}; pass a shorter folder path.", flags)
    kind = path_kind(existing)
    if kind:
        where = "is" if existing == path else f"lies under {braces(existing)}, which is"
        raise _refuse(param, path, f"{where} {kind}, not a folder on a disk; pass another folder path.", flags)
    if existing == path:
        if not path.is_dir():
            raise _refuse(param, path, "is a file, not a folder; pass a folder path.", flags)
        if not _writable_dir(path):
            raise _refuse(param, path, "the folder is not writable; make it writable or pass another folder.", flags)
        return
    if not existing.is_dir():
        raise _refuse(param, path, f"lies under the file {braces(existing)}, not a folder; pass another folder path.", flags)
    if not _writable_dir(existing):
        raise _refuse(param, path, f"cannot be created because {braces(existing)} is not writable; "
                      "make it writable or pass another folder.", flags)


def check_writable_file(path: str | os.PathLike, param: str, create_parents: bool = True, flags: dict | None = None) -> None:
    """Refuse ``path`` as an output file, creating nothing: it is a folder, it lies under a file, or its folder
    (or, when that is missing and ``create_parents``, the nearest existing ancestor where it would be created, as
    the atomic writers do) is not writable; without ``create_parents`` a missing folder is refused too.  One
    sentence naming ``param`` (a parameter, or a flag; see :func:`_refuse`)."""
    path = Path(os.path.abspath(Path(path).expanduser()))
    long = too_long_name(path)
    if long:
        raise _refuse(param, path, f"cannot be created: {braces(long)}; pass a shorter file path.", flags)
    if path.is_dir():
        raise _refuse(param, path, "is a folder; pass a file path.", flags)
    parent = path.parent
    existing = _nearest_existing(parent)
    kind = path_kind(path) if os.path.lexists(path) else path_kind(existing)
    if kind:
        where = "is" if os.path.lexists(path) else f"lies under {braces(existing)}, which is"
        raise _refuse(param, path, f"{where} {kind}, where a file cannot be written in place; pass another file path.", flags)
    if not existing.is_dir():
        raise _refuse(param, path, f"lies under the file {braces(existing)}, not a folder; pass another file path.", flags)
    if existing != parent and not create_parents:
        raise _refuse(param, path, f"the folder {braces(parent)} does not exist; create it or pass another file path.", flags)
    if not _writable_dir(existing):
        what = f"the folder {braces(parent)}" if existing == parent else f"{braces(parent)} cannot be created because {braces(existing)}"
        raise _refuse(param, path, f"{what} is not writable; make it writable or pass another file path.", flags)


def _unique_key_loader():
    """PyYAML's safe loader that refuses a key given twice in one mapping (plain PyYAML keeps the last silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice", key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeyLoader


def read_yaml(path: str | os.PathLike, param: str = "path", flags: dict | None = None) -> Any:
    """The parsed content of the YAML file ``path``, given as the parameter ``param`` (``flags`` maps it to a CLI
    flag that is not ``--param``, e.g. ``{"path": "--config"}``; a ``param`` starting with ``-`` is a flag, named
    as given); a missing file, a folder, unreadable or non-UTF-8 bytes are each one sentence (a
    :class:`~emukg.errors.ParamError`) about ``param``, invalid YAML an :class:`~emukg.errors.EmukgError` naming
    the file and line."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _refuse(param, path, "file not found; give the path of a YAML file.", flags) from None
    except IsADirectoryError:
        raise _refuse(param, path, "is a folder; give the path of a YAML file.", flags) from None
    except UnicodeDecodeError:
        raise _refuse(param, path, "not UTF-8 text; give a YAML file.", flags) from None
    except OSError as exc:
        raise _refuse(param, path, f"cannot be read ({braces(exc.strerror or exc)}).", flags) from None
    try:
        return yaml.load(text, Loader=_unique_key_loader())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f", line {mark.line + 1}" if mark is not None else ""
        if "is given twice" in str(getattr(exc, "problem", "")):
            raise EmukgError(f"{path}{where}: {exc.problem}; keep one of them.") from None
        raise EmukgError(f"{path}{where}: not valid YAML; fix the syntax there.") from None
