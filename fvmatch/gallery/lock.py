"""One writer at a time: an exclusive advisory lock on a file in the gallery directory.

Readers never take it (SQLite in WAL mode lets them read while a writer works), except a gallery opened read-only,
which holds it shared when it can without waiting (`hold_off_writers`; the file is not written): it reads the
database file as it stands, so no writer may start under it. A second writer waits, saying once who holds the
lock, and gives up cleanly after a timeout.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from fvmatch.errors import FvmatchError
from fvmatch.gallery.files import FILE_MODE, tighten, writing

LOCK_NAME = "write.lock"


class GalleryLocked(FvmatchError):
    """Another process holds the gallery's write lock past the timeout."""


class WriteLock:
    def __init__(self, directory: Path, timeout_seconds: float = 60.0,
                 on_wait: Callable[[str], None] | None = None, description: str = "") -> None:
        self.path = Path(directory) / LOCK_NAME
        self.timeout_seconds = timeout_seconds
        self.on_wait = on_wait
        self.description = description or f"pid {os.getpid()}"
        self._descriptor: int | None = None

    def _open(self) -> int:
        """The lock file's descriptor, created 0600 (it names the holder); OSError when the storage refuses."""
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        tighten(self.path)  # a lock file made by an older fvmatch
        return descriptor

    def acquire(self) -> None:
        with writing(self.path):  # a read-only gallery: GalleryUnwritable, exit 2
            descriptor = self._open()
        deadline = time.monotonic() + self.timeout_seconds
        told = False
        while True:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and self.on_wait:
                    self.on_wait(f"waiting for the gallery's write lock, held by {self.holder()}")
                    told = True
                if time.monotonic() >= deadline:
                    os.close(descriptor)
                    raise GalleryLocked(self.path.parent, f"another writer ({self.holder()}) still holds the "
                                        f"write lock after {self.timeout_seconds:g} s; try again later") from None
                time.sleep(0.1)
        self._descriptor = descriptor
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, self.description.encode(), 0)
        except OSError:
            pass  # the note only tells waiting writers who holds the lock; a full disk must not stop the writer here

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "an unknown process"
        except OSError:
            return "an unknown process"

    def release(self) -> None:
        if self._descriptor is not None:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None

    def try_acquire(self) -> bool:
        """Take the lock only if it is free now (for opportunistic repairs by readers); False on read-only storage."""
        try:
            descriptor = self._open()
        except OSError:
            return False
        if not _locked_now(descriptor, fcntl.LOCK_EX):
            return False
        self._descriptor = descriptor
        return True

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def hold_off_writers(directory: Path) -> int | None:
    """The write lock held shared, for a read-only open (writers wait until it is let go: `os.close`): its
    descriptor, or None when there is no lock file to hold or a writer holds it now. Nothing is created or written."""
    try:
        descriptor = os.open(Path(directory) / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    return descriptor if _locked_now(descriptor, fcntl.LOCK_SH) else None


def _locked_now(descriptor: int, mode: int) -> bool:
    """flock `mode` without waiting; False, and the descriptor closed, when another process holds the lock."""
    try:
        fcntl.flock(descriptor, mode | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    return True
