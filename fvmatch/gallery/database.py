"""The gallery's SQLite file: creating it whole, connecting to it (read-write, or read-only without writing a byte),
and the write transactions on it."""
from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path


def _import_sqlite_utils_without_pandas() -> None:
    """sqlite_utils imports pandas whenever it is installed (the team extra's pymilvus brings it): 0.2 s and more of
    every command's start-up, for DataFrame conversions fvmatch never asks of it. It is imported with pandas hidden;
    pandas stays importable for whatever needs it later (pymilvus, on a team gallery)."""
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        return
    sys.modules["pandas"] = None  # `import pandas` now fails, as where it is not installed
    try:
        import sqlite_utils  # noqa: F401
    finally:
        del sys.modules["pandas"]


_import_sqlite_utils_without_pandas()
import sqlite_utils  # noqa: E402

from fvmatch.errors import FvmatchError
from fvmatch.gallery.files import (GalleryUnwritable, create_private_file, fsync_path, remove_leftovers, storage_failure,
                                   tighten, writing)
from fvmatch.gallery.schema import migrate, pending

DB_NAME = "gallery.db"
# a read-only gallery of an older format is upgraded in a private copy held in memory, up to this size on disk (the
# copy and its upgrade take a few times that); a larger one is refused, naming the way out (upgrade a copy on disk)
MAX_UPGRADE_IN_MEMORY_BYTES = 512 * 2**20


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


def connect_read_only(db_path: Path, writers_held_off: bool) -> tuple[sqlite_utils.Database, list[str]]:
    """The gallery database opened so that nothing is written: no file created, changed or re-moded beside it.

    SQLite opens it read-only: immutable (the file read as it stands, no -shm made) when no connection has it open
    and no writer can start (`writers_held_off`: the caller holds the write lock shared) or none could coordinate
    with us (a folder this user cannot write); through the WAL and its -shm, as any reader, otherwise. No
    migration is applied to the file: a database an older fvmatch wrote is upgraded in a private copy in memory,
    and the names of the migrations applied there are returned beside it. NotAGallery when it is not one;
    GalleryUnwritable when reading it would need a write (a WAL holding changes, with no -shm to read it by; an old
    database too large to upgrade in memory).
    """
    connection = None
    try:
        connection = _read_only_connection(db_path, writers_held_off)
        db = sqlite_utils.Database(connection)
        due = pending(db)
        if due:
            db = _upgraded_in_memory(connection, db_path, due)
        db.execute("PRAGMA foreign_keys=ON")
        return db, due
    except sqlite3.DatabaseError as error:
        if connection is not None:
            connection.close()
        raise NotAGallery(db_path, f"not a readable gallery database ({error})") from None
    except BaseException:
        if connection is not None:
            connection.close()
        raise


def _read_only_connection(db_path: Path, writers_held_off: bool) -> sqlite3.Connection:
    """A read-only SQLite connection that sees every committed change and writes nothing."""
    wal, shm = db_path.with_name(DB_NAME + "-wal"), db_path.with_name(DB_NAME + "-shm")
    uri = Path(os.path.abspath(db_path)).as_uri()
    pending_wal = wal.exists() and wal.stat().st_size > 0
    # SQLite keeps -wal and -shm while any connection has the database open (and a crash leaves them)
    in_use = pending_wal or shm.exists()
    if not in_use and (writers_held_off or not os.access(db_path.parent, os.W_OK)):
        return _open_uri(f"{uri}?mode=ro&immutable=1")
    try:
        return _open_uri(f"{uri}?mode=ro")  # SQLite makes -wal and -shm if there are none (a writable folder)
    except sqlite3.OperationalError:
        if pending_wal:  # immutable would not see the WAL's changes: wrong answers, not an error
            raise GalleryUnwritable(db_path, "read-only gallery whose gallery.db-wal holds changes not yet in "
                                    "gallery.db (a writer stopped before it could fold them in), with no gallery.db-shm "
                                    "to read them by: copy the gallery (its -wal too) and open the copy") from None
        return _open_uri(f"{uri}?mode=ro&immutable=1")  # a -shm left by a crash, in a folder we cannot write


def _open_uri(uri: str) -> sqlite3.Connection:
    connection = sqlite3.connect(uri, uri=True, timeout=30.0, isolation_level=None)
    try:
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # SQLite opens the file (and WAL) lazily
    except BaseException:
        connection.close()
        raise
    return connection


def _upgraded_in_memory(connection: sqlite3.Connection, db_path: Path, due: list[str]) -> sqlite_utils.Database:
    """A private in-memory copy of an older database with the migrations `due` applied (the file stays as it is)."""
    size = db_path.stat().st_size
    if size > MAX_UPGRADE_IN_MEMORY_BYTES:
        raise GalleryUnwritable(db_path, f"read-only gallery of an older format ({', '.join(due)} not applied) too "
                                f"large to upgrade in memory ({size / 2**20:,.0f} MiB): copy the gallery and open the "
                                "copy to upgrade it")
    memory = sqlite3.connect(":memory:", isolation_level=None)
    try:
        connection.backup(memory)
        connection.close()
        db = sqlite_utils.Database(memory)
        migrate(db)
    except BaseException:
        memory.close()
        raise
    return db


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
