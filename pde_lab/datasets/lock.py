"""One writer per output directory: an advisory ``flock`` on a lock file beside it.

The lock file ``.<name>.lock`` sits next to the output directory ``<name>`` and records the holder's
pid and host. ``flock`` locks belong to the open file, so the operating system drops the lock when
the holder exits for any reason, ``kill -9`` included: a dead writer never leaves a stale lock. The
holder deletes the file on release; a waiter that opened the file just before it was deleted would
lock an orphaned inode, so after locking we check that the path still names the inode we hold and
start over if it does not.

``flock`` is local to a machine on most network file systems; shards that run on different
machines write to different directories (see ``--shard``), so they never need a shared lock.
"""
from __future__ import annotations

import fcntl
import json
import os
import socket
from pathlib import Path

from ..errors import UserError


def lock_path(out: str | Path) -> Path:
    """The lock file guarding output directory ``out``."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


class DirectoryLock:
    """Exclusive, non-blocking lock on an output directory; use as a context manager.

    Raises :class:`~pde_lab.errors.UserError` naming the holder when another live process has it.
    """

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.path = lock_path(out)
        self._fd: int | None = None

    def acquire(self) -> "DirectoryLock":
        """Take the lock or raise :class:`UserError` at once (never waits)."""
        if not self.path.parent.exists():  # a parent that is a file fails below, naming the path
            self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise UserError(f"{self.out} is being written by another process ({holder}); wait for it to "
                                f"finish or stop it (lock file {self.path})") from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the previous holder deleted the file between our open and flock: retry
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Delete the lock file and drop the lock (in that order, so no one locks a file being deleted)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return f"pid {info['pid']} on host {info['host']}"
    except (OSError, ValueError, KeyError, UnicodeDecodeError):
        return "holder unknown"
