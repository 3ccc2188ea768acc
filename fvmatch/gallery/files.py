"""The gallery's files: readable by their owner only, made durable, and one error for storage that refuses a write.

A gallery holds biometric data: its directory is 0700 and every file in it 0600, whatever the umask. Files are
created with that mode explicitly (SQLite gives gallery.db-wal and -shm the mode of gallery.db). A full disk, a
read-only file system or a missing permission becomes GalleryUnwritable: one line naming the file, exit 2. A gallery
this user cannot write at all (write-protected evidence) is opened read-only instead: `unwritable_reason`.
"""
from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fvmatch.errors import FvmatchError

DIRECTORY_MODE = 0o700
FILE_MODE = 0o600
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO})
STORAGE_SQLITE_ERRORS = ("SQLITE_FULL", "SQLITE_READONLY", "SQLITE_IOERR", "SQLITE_CANTOPEN", "SQLITE_PERM")
NEARLY_FULL_BYTES = 1 << 20  # less free space than this, and a vague SQLite I/O error is put down to a full disk


class GalleryUnwritable(FvmatchError):
    """The gallery's storage refused a write: disk full, read-only file system or no permission."""


def storage_failure(path: object, error: BaseException) -> GalleryUnwritable | None:
    """The user-facing error for a refused write, or None when `error` is something else."""
    if isinstance(error, OSError) and error.errno in STORAGE_ERRNOS:
        reason = error.strerror or os.strerror(error.errno)
    elif isinstance(error, sqlite3.Error) and str(getattr(error, "sqlite_errorname", "")).startswith(
            STORAGE_SQLITE_ERRORS):
        reason = str(error)
        if not error.sqlite_errorname.startswith(("SQLITE_FULL", "SQLITE_READONLY")):  # SQLite does not say why
            reason += _device_state(Path(str(path)).parent)
    else:
        return None
    return GalleryUnwritable(path, f"cannot write to the gallery: {reason}")


def unwritable_reason(directory: Path) -> str | None:
    """Why this user cannot change the gallery in `directory` (None when they can): its file system is mounted
    read-only, its folder cannot be written (no file can be made or replaced there), or gallery.db cannot be."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "its file system is read-only"
    except OSError:
        pass
    if not os.access(directory, os.W_OK):
        return "its folder cannot be written"
    database = directory / "gallery.db"
    if database.exists() and not os.access(database, os.W_OK):
        return "gallery.db cannot be written"
    return None


def _device_state(directory: Path) -> str:
    """' (disk full)' or ' (read-only file system)' when the file system holding `directory` is, else ''."""
    try:
        device = os.statvfs(directory)
    except OSError:
        return ""
    if device.f_flag & os.ST_RDONLY:
        return " (read-only file system)"
    if device.f_bavail * device.f_frsize < NEARLY_FULL_BYTES:
        return " (disk full)"
    return ""


@contextmanager
def writing(path: object) -> Iterator[None]:
    """Turn a refused write inside the block into GalleryUnwritable naming `path`; other errors pass unchanged."""
    try:
        yield
    except (OSError, sqlite3.Error) as error:
        failure = storage_failure(path, error)
        if failure is None:
            raise
        raise failure from None


def make_private_directory(directory: Path) -> None:
    """Create the gallery directory (and its parents) as 0700; GalleryUnwritable when the storage refuses."""
    with writing(directory):
        directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)


def tighten(path: Path) -> None:
    """Take group and other permissions off an existing file or directory, when we may (best effort: a gallery
    on read-only media, or someone else's, is still readable)."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            os.chmod(path, mode & ~0o077)
    except OSError:
        pass


def create_private_file(path: Path) -> int:
    """Open `path` for writing, created or truncated, mode 0600 whatever the umask; returns the descriptor."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
    os.fchmod(descriptor, FILE_MODE)  # a leftover file keeps its old mode through O_CREAT
    return descriptor


def fsync_path(path: Path) -> None:
    """Make a file's content durable, or, for a directory, the renames and new names in it."""
    descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def remove_leftovers(directory: Path, pattern: str) -> None:
    """Delete temporary files an interrupted writer left (callers hold the write lock)."""
    for leftover in directory.glob(pattern):
        leftover.unlink(missing_ok=True)
