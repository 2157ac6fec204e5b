"""One writer per folder: an exclusive lock held for as long as a process writes a run folder or a study's folder.

The lock is the file ``writer.lock`` inside the folder, locked with ``flock(LOCK_EX | LOCK_NB)`` and holding one
line of JSON about its holder (pid, host, start time, command).  A second writer fails to take it and is refused
in one sentence naming the holder's pid and host (:class:`~emukg.errors.ParamError` about the folder's
parameter).  Staleness needs no guessing: the kernel drops a ``flock`` when its process ends, kill -9 included,
so a lock file left by a killed process is simply locked again by the next writer, which says whose lock it took
over.  On NFS (v4, or v3 with lockd) Linux maps ``flock`` to POSIX locks that the server holds for the client
machine: a writer on another machine is refused the same way, and a crashed machine's locks end with its lease
(about 90 s).  Where the file system refuses locks altogether (``ENOLCK``, some FUSE mounts) the lock falls back
to the holder line: a holder on this host whose pid no longer runs is stale and taken over; a holder on another
host is trusted until the user removes ``writer.lock`` (the message says so).

Releasing removes the file (after unlocking it would race with a new holder; so the holder removes it while
locked, and a taker re-checks after locking that the path still names the file it locked).  Two locks on one
folder inside one process also exclude each other (``flock`` locks belong to open files, and a registry of held
folders covers file systems where they are per process).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path

from .errors import ParamError
from .io_utils import braces, pid_running

LOCK_FILE = "writer.lock"
_held: dict[tuple[int, int], "FolderLock"] = {}
"""The folders this process holds, by (device, inode) of the folder."""


class FolderLock:
    """The exclusive writer's lock of ``folder`` (its ``writer.lock``), refused as a :class:`ParamError` about
    ``param`` (``save_path``, ``out``; ``flags`` as for ParamError) while another process holds it.

    Usage: ``lock = FolderLock(path).acquire()`` … ``lock.release()``, or ``with FolderLock(path): ...``.  The
    folder must exist.  ``took_over`` is the holder line of a stale lock this one replaced (else None).
    """

    def __init__(self, folder: str | os.PathLike, param: str = "save_path", what: str = "run folder",
                 flags: dict | None = None):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self.param, self.what, self.flags = param, what, flags
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None
        self.took_over: dict | None = None
        self.created: list[Path] = []  # folders made to hold this lock (removed again when the writer is refused)

    def __enter__(self) -> "FolderLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def _refuse(self, holder: dict, extra: str = "") -> ParamError:
        pid, host = holder.get("pid", "?"), holder.get("host", "?")
        since = holder.get("since")
        when = f" since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if isinstance(since, (int, float)) else ""
        return ParamError(self.param, str(self.folder), f"another process (pid {pid} on {braces(host)}{when}) is writing "
                          f"this {self.what}; wait for it to end{extra}, or pass another {{{self.param}}}.", flags=self.flags)

    @staticmethod
    def _read_holder(fd: int) -> dict:
        try:
            holder = json.loads(os.pread(fd, 4096, 0).decode("utf-8") or "{}")
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self, wait: bool = False) -> "FolderLock":
        """Take the lock or raise :class:`ParamError` naming its holder (``wait``: block until the holder is done,
        for short sections such as writing a study's results); idempotent for the holder."""
        if self._fd is not None:
            return self
        st = os.stat(self.folder)
        key = (st.st_dev, st.st_ino)
        if key in _held:
            raise ParamError(self.param, str(self.folder), f"this process is already writing this {self.what} (another "
                             f"Trainer or study in it); finish that one first, or pass another {{{self.param}}}.", flags=self.flags)
        for _ in range(20):  # a holder may remove the file between our open and our lock: then open again
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    holder = self._read_holder(fd)
                    os.close(fd)
                    raise self._refuse(holder) from None
                if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    os.close(fd)
                    raise
                locked = False  # no locks on this file system: the holder line decides
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            previous = self._read_holder(fd)
            if not locked and previous and not self._stale_without_locks(previous):
                os.close(fd)
                raise self._refuse(previous, f" (or, if it no longer runs, remove {braces(self.path)})")
            self.took_over = previous or None
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "command": " ".join(sys.argv)[:300]}
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(holder, sort_keys=True) + "\n").encode("utf-8"), 0)
            self._fd, self._key = fd, key
            _held[key] = self
            return self
        raise ParamError(self.param, str(self.folder), f"cannot take the lock of this {self.what}: its {LOCK_FILE} is "
                         "removed and created again constantly; check what else writes there.", flags=self.flags)

    @staticmethod
    def _stale_without_locks(holder: dict) -> bool:
        pid = holder.get("pid")
        return holder.get("host") == socket.gethostname() and isinstance(pid, int) and not pid_running(pid)

    def release(self) -> None:
        """Remove ``writer.lock`` and drop the lock (nothing happens when it is not held)."""
        if self._fd is None:
            return
        try:
            if os.fstat(self._fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        except OSError:
            pass  # gone already, or a read-only folder: the lock is dropped all the same
        finally:
            os.close(self._fd)
            self._fd = None
            _held.pop(self._key, None)
            self._key = None
