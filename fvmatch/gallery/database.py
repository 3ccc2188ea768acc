"""The gallery's SQLite file: creating it whole, connecting to it, and the write transactions on it."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import sqlite_utils

from fvmatch.errors import FvmatchError
from fvmatch.gallery.files import create_private_file, fsync_path, remove_leftovers, storage_failure, tighten, writing
from fvmatch.gallery.schema import migrate

DB_NAME = "gallery.db"


class NotAGallery(FvmatchError):
    """The directory is not an fvmatch gallery (or does not exist and creation was not asked for)."""


def connect(db_path: Path) -> sqlite_utils.Database:
    """The gallery database, WAL mode, foreign keys on, fully synchronous, migrated to the current schema;
    NotAGallery when it is not one, GalleryUnwritable when the storage refuses what opening needs."""
    for path in (db_path, db_path.with_name(DB_NAME + "-wal"), db_path.with_name(DB_NAME + "-shm")):
        if path.exists():
            tighten(path)  # a gallery made by an older fvmatch; SQLite gives new -wal/-shm files gallery.db's mode
    connection = None
    try:
        connection = sqlite3.connect(db_path, timeout=30.0, isolation_level=None)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA foreign_keys=ON")
        connection.execute("PRAGMA synchronous=FULL")
        db = sqlite_utils.Database(connection)
        migrate(db)
        return db
    except sqlite3.DatabaseError as error:
        if connection is not None:
            connection.close()
        # SQLite writes beside gallery.db (its -shm file) even to read, so a full or read-only disk shows here
        raise (storage_failure(db_path, error)
               or NotAGallery(db_path, f"not a readable gallery database ({error})")) from None


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT (or ROLLBACK on any exception): the write lock of SQLite taken up front.

    A write the storage refuses (disk full, read-only) rolls back and becomes GalleryUnwritable naming gallery.db.
    """

    def __init__(self, connection: sqlite3.Connection, db_path: Path) -> None:
        self.connection = connection
        self.db_path = db_path

    def __enter__(self) -> None:
        with writing(self.db_path):
            self.connection.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc is None:
            try:
                self.connection.execute("COMMIT")
                return
            except sqlite3.Error as error:
                exc = error
        if self.connection.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            self.connection.execute("ROLLBACK")
        failure = storage_failure(self.db_path, exc)
        if failure is not None:
            raise failure from None
        if exc_type is None:
            raise exc


def create_database(db_path: Path, meta: dict[str, object]) -> None:
    """Build a new gallery's database under a temporary name, then rename it into place.

    A gallery.db that exists is therefore complete (schema and pinned model): a creation cut short leaves only a
    temporary file, which the next creation removes. The file is 0600 from the start, whatever the umask.
    """
    directory = db_path.parent
    remove_leftovers(directory, DB_NAME + ".new-*")
    temporary = db_path.with_name(f"{DB_NAME}.new-{os.getpid()}")
    try:
        os.close(create_private_file(temporary))
        connection = sqlite3.connect(temporary, isolation_level=None)
        try:
            migrate(sqlite_utils.Database(connection))
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                                   [(key, str(value)) for key, value in meta.items()])
            connection.execute("COMMIT")
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
        fsync_path(temporary)
        os.replace(temporary, db_path)
        fsync_path(directory)
    except BaseException:
        for leftover in directory.glob(temporary.name + "*"):  # with its -journal, if any
            leftover.unlink(missing_ok=True)
        raise
