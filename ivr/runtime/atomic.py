"""Atomic rewrites of the small files admins change (switches, the deployment TOML, console users, flows).

The new text goes to a temporary file in the same folder, is fsynced, takes the old file's
permission bits and is renamed over it (the folder fsynced too): a running server or a crash never sees half a file,
and a file holding PIN hashes keeps its mode.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")


class StatCached(Generic[T]):
    """A small admin file read for every call: parsed again only when its stat changed (one
    ``stat`` on the event loop per call, not an open, read and parse; writers rename a new
    file into place, so the inode changes too).  A missing file gives ``missing()``."""

    def __init__(self, read: Callable[[], T], path: Callable[[], Path], missing: Callable[[], T]) -> None:
        self._read, self._path, self._missing = read, path, missing
        self._stamp: tuple[int, int, int] | None = None
        self._value: T = missing()

    def get(self) -> T:
        try:
            st = os.stat(self._path())
        except FileNotFoundError:
            self._stamp = None
            return self._missing()
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp != self._stamp:
            self._value = self._read()  # raises for a damaged file: the stamp stays, it is read again
            self._stamp = stamp
        return self._value


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside ``path`` (``path.lock``) for a read-change-write of it, so two
    writers at once (two admins, the CLI and the console) both win."""
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_text_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) in one rename; the temporary file never outlives the call."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            shutil.copymode(path, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)
