"""One writer at a time: an exclusive advisory lock on a file in the gallery directory.

Readers never take it (SQLite in WAL mode lets them read while a writer works). A second writer waits,
saying once who holds the lock, and gives up cleanly after a timeout.
"""
from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable
from pathlib import Path

from fvmatch.errors import FvmatchError

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
        self._handle = None

    def acquire(self) -> None:
        handle = open(self.path, "a+")
        deadline = time.monotonic() + self.timeout_seconds
        told = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not told and self.on_wait:
                    self.on_wait(f"waiting for the gallery's write lock, held by {self.holder()}")
                    told = True
                if time.monotonic() >= deadline:
                    handle.close()
                    raise GalleryLocked(self.path.parent, f"another writer ({self.holder()}) still holds the "
                                        f"write lock after {self.timeout_seconds:g} s; try again later") from None
                time.sleep(0.1)
        handle.seek(0)
        handle.truncate()
        handle.write(self.description)
        handle.flush()
        self._handle = handle

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "an unknown process"
        except OSError:
            return "an unknown process"

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def try_acquire(self) -> bool:
        """Take the lock only if it is free now (for opportunistic repairs by readers)."""
        handle = open(self.path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self._handle = handle
        return True

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
