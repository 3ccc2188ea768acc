"""A team gallery's records on PostgreSQL: the connection (speaking the few calls the gallery makes on SQLite's, with
its `?` placeholders), its write transactions, the writers' lock, and what a role may do.

The gallery's SQL is written once, in the forms both databases read (`ON CONFLICT ... DO UPDATE`, `RETURNING id`,
`"user"` quoted); the two SQLite functions it calls, `instr` and `json_extract`, are defined in PostgreSQL by the
schema (postgres_schema.py). One gallery to a database.
"""
from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable, Sequence

from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.gallery.files import GalleryUnwritable
from fvmatch.gallery.lock import GalleryLocked

# advisory lock keys (one gallery to a database): every write transaction takes the first, so that two writers'
# transactions queue as SQLite's BEGIN IMMEDIATE makes them (the audit chain's head is read, then moved); a writer
# command holds the second for its whole run, as the directory gallery's write.lock
TRANSACTION_KEY = 0x66766D01
WRITER_KEY = 0x66766D02
CONNECT_TIMEOUT_SECONDS = 10
# tables a writer changes: a role that may not insert into all of them may only read the gallery
WRITTEN_TABLES = ("identities", "media", "vectors", "audit", "meta")
_QUOTED = re.compile(r"('(?:[^']|'')*')")


class TeamUnreachable(FvmatchError):
    """The team gallery's database or vector store cannot be reached, or refuses the connection."""


def postgres_sql(sql: str) -> str:
    """SQL written for SQLite in PostgreSQL's words for psycopg: `?` outside quotes becomes `%s`, every `%` is doubled
    (psycopg reads placeholders inside quoted literals too), and SQLite's CROSS JOIN ... ON (its join-order hint) is
    a plain JOIN."""
    parts = _QUOTED.split(sql)
    return "".join(part.replace("%", "%%") if number % 2 else
                   part.replace("%", "%%").replace("?", "%s").replace(" CROSS JOIN ", " JOIN ")
                   for number, part in enumerate(parts))


def _problem(error: BaseException) -> str:
    """psycopg's message, first line (the rest is PostgreSQL's context and hints)."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


class PostgresConnection:
    """A psycopg connection in autocommit mode (transactions are begun explicitly, as the gallery does on SQLite),
    answering `execute`, `executemany`, `in_transaction` and `close` as sqlite3's connection does."""

    def __init__(self, raw, name: str) -> None:
        self.raw = raw
        self.name = name  # what errors name: the team gallery's config file or URL (no password)

    def execute(self, sql: str, parameters: Sequence = ()):
        cursor = self.raw.cursor()
        self._run(lambda: cursor.execute(postgres_sql(sql), tuple(parameters)))
        return cursor

    def executemany(self, sql: str, rows) -> None:
        with self.raw.cursor() as cursor:
            self._run(lambda: cursor.executemany(postgres_sql(sql), [tuple(row) for row in rows]))

    def _run(self, call: Callable[[], object]) -> None:
        import psycopg

        try:
            call()
        except psycopg.errors.InsufficientPrivilege as error:
            raise GalleryUnwritable(self.name, f"the database refused role {self.raw.info.user}: {_problem(error)} "
                                    "(this role may only read the gallery)") from None
        except psycopg.OperationalError as error:
            raise TeamUnreachable(self.name, f"the gallery's database failed: {_problem(error)}") from None

    @property
    def in_transaction(self) -> bool:
        from psycopg.pq import TransactionStatus

        return self.raw.info.transaction_status != TransactionStatus.IDLE

    def close(self) -> None:
        self.raw.close()


class PostgresDatabase:
    """The gallery's records on PostgreSQL, with the calls the gallery makes on sqlite_utils.Database."""

    dialect = "postgresql"

    def __init__(self, connection: PostgresConnection) -> None:
        self.conn = connection

    def execute(self, sql: str, parameters: Sequence = ()):
        return self.conn.execute(sql, parameters)

    def columns(self, table: str) -> list[str]:
        """A table's columns in their order (SQLite's PRAGMA table_info)."""
        rows = self.execute("SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema()"
                            " AND table_name = ? ORDER BY ordinal_position", [table]).fetchall()
        return [row[0] for row in rows]

    def role(self) -> str:
        return self.execute("SELECT current_user").fetchone()[0]

    def may_write(self) -> bool:
        """Whether this role may insert into every table a writer changes (the database refuses it otherwise)."""
        checks = " AND ".join(f"has_table_privilege('{table}', 'INSERT')" for table in WRITTEN_TABLES)
        return bool(self.execute(f"SELECT {checks}").fetchone()[0])

    def advance_identities(self, tables: Sequence[str]) -> None:
        """After rows were inserted with their ids (an import), new rows of these tables are numbered after them."""
        for table in tables:
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                         f" (SELECT coalesce(max(id), 0) + 1 FROM {table}), false)")

    def grant(self, role: str, write: bool) -> None:
        """Let `role` read the gallery, or also change it (grant_statements), in one transaction; BadArgument, one
        line, for a role the server does not know."""
        import psycopg

        try:
            statements = grant_statements(role, write)
        except ValueError as error:
            raise BadArgument(role, str(error)) from None
        self.execute("BEGIN")
        try:
            for statement in statements:
                self.execute(statement)
            self.execute("COMMIT")
        except psycopg.errors.UndefinedObject:
            raise BadArgument(role, "no such database role (its administrator creates it: CREATE ROLE ... LOGIN)") \
                from None
        finally:
            if self.conn.in_transaction:
                self.execute("ROLLBACK")

    def size_bytes(self) -> int:
        return int(self.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def connect_postgres(url: str, name: str, application: str = "fvmatch") -> PostgresDatabase:
    """A connection to the team gallery's database (the password from libpq's PGPASSWORD or ~/.pgpass, never the
    config file); TeamUnreachable, one line, when it cannot be made."""
    import psycopg

    try:
        raw = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_SECONDS,
                              application_name=application[:63])
    except psycopg.Error as error:
        raise TeamUnreachable(name, f"cannot connect to the gallery's database: {_problem(error)}") from None
    return PostgresDatabase(PostgresConnection(raw, name))


class PostgresTransaction:
    """BEGIN ... COMMIT (ROLLBACK on any exception), the writers' transaction lock taken first: PostgreSQL's
    counterpart of SQLite's BEGIN IMMEDIATE."""

    def __init__(self, connection: PostgresConnection) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        self.connection.execute("BEGIN")
        try:
            self.connection.execute("SELECT pg_advisory_xact_lock(?)", [TRANSACTION_KEY])
        except BaseException:
            self.connection.execute("ROLLBACK")
            raise

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc is None:
            self.connection.execute("COMMIT")
            return
        if self.connection.in_transaction:
            try:
                self.connection.execute("ROLLBACK")
            except FvmatchError:
                pass  # the connection itself is gone: the server rolls back, and the first error says why


def writer_description(command: str) -> str:
    """What a writer's connection says it is (PostgreSQL's application_name), shown to those who wait for it."""
    return f"fvmatch {command} (pid {os.getpid()} on {socket.gethostname()})"


class TeamWriteLock:
    """One writer at a time across every client: a session advisory lock on a connection of its own, freed by the
    server when the client dies. Readers never take it."""

    def __init__(self, url: str, name: str, timeout_seconds: float = 60.0,
                 on_wait: Callable[[str], None] | None = None, description: str = "") -> None:
        self.url, self.name = url, name
        self.timeout_seconds = timeout_seconds
        self.on_wait = on_wait
        # seen by those who wait for it, from any machine: the host is added to what the command says it is
        self.description = f"{description or f'pid {os.getpid()}: fvmatch'} on {socket.gethostname()}"
        self._database: PostgresDatabase | None = None

    def holder(self) -> str:
        row = self._database.execute(
            "SELECT activity.application_name, activity.usename FROM pg_locks JOIN pg_stat_activity activity"
            " ON activity.pid = pg_locks.pid WHERE pg_locks.locktype = 'advisory' AND pg_locks.granted"
            " AND pg_locks.objid = ? AND activity.datname = current_database() LIMIT 1", [WRITER_KEY]).fetchone()
        return "another client" if row is None else f"{row[0] or 'a client'}, role {row[1]}"

    def acquire(self) -> None:
        self._database = connect_postgres(self.url, self.name, self.description)
        deadline = time.monotonic() + self.timeout_seconds
        told = False
        while not self._database.execute("SELECT pg_try_advisory_lock(?)", [WRITER_KEY]).fetchone()[0]:
            if not told and self.on_wait:
                self.on_wait(f"waiting for the gallery's write lock, held by {self.holder()}")
                told = True
            if time.monotonic() >= deadline:
                holder = self.holder()
                self.release()
                raise GalleryLocked(self.name, f"another writer ({holder}) still holds the write lock after "
                                    f"{self.timeout_seconds:g} s; try again later")
            time.sleep(0.1)

    def release(self) -> None:
        if self._database is not None:
            self._database.conn.close()  # the server frees the session's advisory lock with it
            self._database = None

    def __enter__(self) -> "TeamWriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def grant_statements(role: str, write: bool) -> list[str]:
    """The statements that let a database role read a team gallery (SELECT), or also change it, now and in the
    tables a later upgrade makes; run by the role that owns its tables (`fvmatch gallery grant`)."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,62}", role):
        raise ValueError(f"{role!r} is not a plain PostgreSQL role name (letters, digits, underscores)")
    writes = "INSERT, UPDATE, DELETE"
    statements = [f'GRANT USAGE ON SCHEMA public TO "{role}"',
                  f'GRANT SELECT ON ALL TABLES IN SCHEMA public TO "{role}"',
                  f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO "{role}"']
    if write:
        statements += [f'GRANT {writes} ON ALL TABLES IN SCHEMA public TO "{role}"',
                       f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
                       f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT {writes} ON TABLES TO "{role}"',
                       f'ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO "{role}"']
    else:  # a role that was a writer before loses a writer's grants
        statements += [f'REVOKE {writes}, TRUNCATE ON ALL TABLES IN SCHEMA public FROM "{role}"',
                       f'ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE {writes} ON TABLES FROM "{role}"']
    return statements
