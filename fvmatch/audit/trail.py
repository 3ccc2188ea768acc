"""The gallery's tamper-evident audit trail: one hash-chained row per command, in the gallery's own database.

Each row stores `previous_hash` (the row_hash of the row before it, 64 zeros for the first) and
`row_hash = sha256(previous_hash + canonical JSON of the row's content)`. The latest id and hash (the head)
are also kept in `meta` under "audit_head", written in the same transaction, so that removing the last
rows is detected too. Anyone who can rewrite the database can rewrite the whole chain and its head: the
trail makes edits evident, it does not make them impossible (export the head elsewhere to pin it).

A gallery opened read-only cannot take a row: the rows of the commands that read it go to an audit log file the
analyst names instead (`gallery.audit_log`; the CLI's --audit-log), and to that file as well as the trail on a
writable gallery. The file holds one JSON row per line, chained the same way (`previous_hash` of the line before,
64 zeros for the first; ids count lines from 1), each naming the gallery and its trail's head at the time, so the
query is pinned to the very trail it read. Verified with `verify_log`; a removed last line is not detectable there
(no head outside the file): keep the last row's hash elsewhere to pin it.
"""
from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.gallery import Gallery, GalleryUnwritable
from fvmatch.gallery.files import FILE_MODE, storage_failure

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit_head"
CONTENT_FIELDS = ("id", "time", "user", "command", "arguments", "inputs", "result", "model_id")
JSON_FIELDS = ("arguments", "inputs", "result")
COLUMNS = CONTENT_FIELDS + ("previous_hash", "row_hash")
SELECTED = ", ".join(f'"{column}"' for column in COLUMNS)  # quoted: "user" is a keyword of PostgreSQL
# a row of an audit log file also names the gallery read and the head of that gallery's trail when it was read
LOG_CONTENT_FIELDS = CONTENT_FIELDS + ("gallery", "gallery_audit_head")
LOG_COLUMNS = LOG_CONTENT_FIELDS + ("previous_hash", "row_hash")
TAIL_CHUNK_BYTES = 1 << 16  # read backwards in steps of this to find a log's last line


@dataclass
class ChainCheck:
    """The outcome of `verify_chain`: `problem` names the first row altered or removed ("" when ok)."""

    ok: bool
    rows: int
    first_bad_id: int | None
    problem: str


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def row_hash(previous_hash: str, row: dict, fields: tuple[str, ...] = CONTENT_FIELDS) -> str:
    """sha256 hex of the previous row's hash followed by the canonical JSON of this row's content (`fields`)."""
    content = {name: row[name] for name in fields}
    return hashlib.sha256((previous_hash + _canonical(content)).encode("utf-8")).hexdigest()


def _current_user(gallery: Gallery | None = None) -> str:
    """Who runs this: the login name; on a team gallery with the database role it acts as (its grants decide)."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (e.g. a bare container uid)
        login = str(os.getuid())
    if gallery is not None and gallery.team is not None:
        return f"{login} as database role {gallery.db.role()}"
    return login


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _head(gallery: Gallery) -> tuple[int, str] | None:
    value = gallery.meta(HEAD_KEY)
    if value is None:
        return None
    head = json.loads(value)
    return int(head["id"]), str(head["hash"])


def _decode(values: tuple) -> dict:
    row = dict(zip(COLUMNS, values))
    for name in JSON_FIELDS:
        row[name] = json.loads(row[name])
    return row


def append_audit(gallery: Gallery, command: str, arguments: list[str], inputs: list[dict], result: dict,
                 model_id: str, user: str | None = None) -> dict:
    """Append one chained row and move the head, atomically; returns the row as stored. With `gallery.audit_log`,
    the row goes to that file too, or, on a read-only gallery, to that file alone (the file's row is returned then).

    Runs in its own BEGIN IMMEDIATE transaction, so concurrent writers queue instead of chaining onto the same
    row; called inside a transaction the caller already holds, it joins that one (the caller's must be IMMEDIATE).
    GalleryUnwritable on a read-only gallery without an audit log: a row is never dropped.
    """
    user = user if user is not None else _current_user(gallery)
    if gallery.read_only:
        if gallery.audit_log is None:
            raise GalleryUnwritable(gallery.directory, f"read-only gallery ({gallery.read_only}): give --audit-log FILE "
                                    f"to record this command's audit row elsewhere (or {gallery.way_to_write})")
        return append_to_log(gallery.audit_log, gallery, command, arguments, inputs, result, model_id, user)
    if gallery.db.conn.in_transaction:
        row = _append(gallery, command, arguments, inputs, result, model_id, user)
    else:
        with gallery.transaction():
            row = _append(gallery, command, arguments, inputs, result, model_id, user)
    if gallery.audit_log is not None:
        append_to_log(gallery.audit_log, gallery, command, arguments, inputs, result, model_id, user)
    return row


def _append(gallery: Gallery, command: str, arguments: list[str], inputs: list[dict], result: dict,
            model_id: str, user: str | None) -> dict:
    head = _head(gallery)
    if head is not None:
        previous_hash = head[1]  # the head, not the last row: a removed last row then shows as a broken link
    else:
        last = gallery.db.execute("SELECT row_hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        previous_hash = GENESIS_HASH if last is None else last[0]
    row = {"time": _now(), "user": user, "command": command,
           "arguments": list(arguments), "inputs": list(inputs), "result": dict(result), "model_id": model_id,
           "previous_hash": previous_hash}
    # the id is part of the hashed content, so insert first, then hash and fill in. SQLite numbers the row
    # (AUTOINCREMENT); on PostgreSQL the writer does, after the head and the last row (postgres_schema.m002)
    given_id = None
    if gallery.team is not None:
        last_id = int(gallery.db.execute("SELECT coalesce(max(id), 0) FROM audit").fetchone()[0])
        given_id = max(last_id, head[0] if head is not None else 0) + 1
    cursor = gallery.db.execute(
        'INSERT INTO audit (id, time, "user", command, arguments, inputs, result, model_id, previous_hash, row_hash)'
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, '') RETURNING id",
        [given_id, row["time"], row["user"], command, _canonical(row["arguments"]), _canonical(row["inputs"]),
         _canonical(row["result"]), model_id, previous_hash])
    row["id"] = int(cursor.fetchone()[0])
    row["row_hash"] = row_hash(previous_hash, row)
    gallery.db.execute("UPDATE audit SET row_hash = ? WHERE id = ?", [row["row_hash"], row["id"]])
    gallery.set_meta(HEAD_KEY, _canonical({"id": row["id"], "hash": row["row_hash"]}))
    return {name: row[name] for name in COLUMNS}


def audit_rows(gallery: Gallery, since: str | None = None, until: str | None = None, command: str | None = None,
               identity: str | None = None, limit: int | None = None) -> list[dict]:
    """Audit rows, oldest first, filtered by `since <= time < until` (ISO 8601 UTC strings, compared as text,
    so "2024-05-01" works as a bound), exact command name, and identity; `limit` keeps the latest rows.

    `identity` matches rows whose arguments or result contain the label as a whole JSON string ("alice" as a
    list element or value, not "--identity=alice"); the match is exact and case-sensitive.

    On a read-only gallery with an audit log, the log's rows that name this gallery follow the trail's (they are
    where its reads were recorded), each with its `gallery` and `gallery_audit_head`.
    """
    rows = _trail_rows(gallery, since, until, command, identity, limit)
    if gallery.read_only and gallery.audit_log is not None and gallery.audit_log.exists():
        here = str(gallery.directory.resolve())
        quoted = json.dumps(identity)
        logged = [row for row in log_rows(gallery.audit_log) if row.get("gallery") == here
                  and (since is None or row["time"] >= since) and (until is None or row["time"] < until)
                  and (command is None or row["command"] == command)
                  and (identity is None or quoted in _canonical(row["arguments"]) + _canonical(row["result"]))]
        rows = (rows + logged)[-limit:] if limit is not None else rows + logged
    return rows


def _trail_rows(gallery: Gallery, since: str | None, until: str | None, command: str | None, identity: str | None,
                limit: int | None) -> list[dict]:
    conditions, parameters = [], []
    if since is not None:
        conditions.append("time >= ?")
        parameters.append(since)
    if until is not None:
        conditions.append("time < ?")
        parameters.append(until)
    if command is not None:
        conditions.append("command = ?")
        parameters.append(command)
    if identity is not None:
        quoted = json.dumps(identity)  # the label as it appears inside the stored JSON text
        conditions.append("(instr(arguments, ?) > 0 OR instr(result, ?) > 0)")
        parameters += [quoted, quoted]
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    sql = f"SELECT {SELECTED} FROM audit{where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        parameters.append(int(limit))
    return [_decode(values) for values in reversed(gallery.db.execute(sql, parameters).fetchall())]


def verify_chain(gallery: Gallery) -> ChainCheck:
    """Recompute every row's hash in id order, check each link, the ids' continuity and the stored head."""
    previous_id, previous_hash, count = 0, GENESIS_HASH, 0

    def bad(row_id: int, problem: str) -> ChainCheck:
        return ChainCheck(False, count, row_id, problem)

    for values in gallery.db.execute(f"SELECT {SELECTED} FROM audit ORDER BY id"):
        count += 1
        row_id = int(values[0])
        if row_id != previous_id + 1:
            missing = (f"row {previous_id + 1} was removed" if row_id == previous_id + 2
                       else f"rows {previous_id + 1} to {row_id - 1} were removed")
            return bad(previous_id + 1, f"{missing} (ids jump from {previous_id} to {row_id})")
        try:
            row = _decode(values)
        except json.JSONDecodeError:
            return bad(row_id, f"row {row_id} was altered (its arguments, inputs or result are not valid JSON)")
        if row_hash(row["previous_hash"], row) != row["row_hash"]:
            return bad(row_id, f"row {row_id} was altered (its content no longer matches its hash)")
        if row["previous_hash"] != previous_hash:
            # row_id's own content is intact, so the row before it was rewritten (hash recomputed to hide it)
            if previous_id == 0:
                return bad(row_id, f"row {row_id} was altered (the first row does not start the chain)")
            return bad(previous_id, f"row {previous_id} was altered (row {row_id} chains to a different hash)")
        previous_id, previous_hash = row_id, row["row_hash"]
    head = _head(gallery)
    if head is None:
        if count:
            return bad(previous_id, f"the audit head is missing from meta (the chain has {count} rows)")
        return ChainCheck(True, 0, None, "")
    head_id, head_hash = head
    if head_id > previous_id:
        after = "all rows were removed" if count == 0 else f"the last row(s) after row {previous_id} were removed"
        return bad(previous_id + 1, f"{after} (head says {head_id})")
    if head_id < previous_id:
        return bad(head_id + 1, f"rows after {head_id} were added outside the audit trail (head says {head_id})")
    if head_hash != previous_hash:
        return bad(head_id, f"row {head_id} was altered (its hash differs from the head's)")
    return ChainCheck(True, count, None, "")


# ----- the audit log file (--audit-log) ---------------------------------------------------------------------------
def check_audit_log(path: Path, gallery: Gallery) -> None:
    """Refuse, before any work, an audit log that could not take a row: one inside the gallery (it would change
    it), in a folder that is not there or cannot be written, that cannot be opened for appending, or whose last line
    is no whole row. Nothing is created or written."""
    path = Path(path)
    if path.resolve().parent == gallery.directory.resolve():
        raise BadArgument(path, "the audit log must be outside the gallery's folder (it would change the gallery)")
    if not path.exists():
        if not path.parent.is_dir():
            raise BadArgument(path, f"no folder {path.parent} for the audit log")
        if not os.access(path.parent, os.W_OK):
            raise BadArgument(path, f"cannot write the audit log: its folder {path.parent} cannot be written")
        return
    with _open_log(path, create=False) as handle:
        _last_row(handle, path)


def append_to_log(path: Path, gallery: Gallery, command: str, arguments: list[str], inputs: list[dict],
                  result: dict, model_id: str, user: str) -> dict:
    """Append one row to the audit log file at `path` (created 0600), chained to its last line; the row as written.

    Appenders queue on an exclusive lock of the file, so that two never chain onto the same line; the line is
    written in one call and fsynced before the lock is let go.
    """
    with _open_log(path) as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        last = _last_row(handle, path)
        row = {"id": 1 if last is None else int(last["id"]) + 1, "time": _now(), "user": user, "command": command,
               "arguments": list(arguments), "inputs": list(inputs), "result": dict(result), "model_id": model_id,
               "gallery": str(gallery.directory.resolve()), "gallery_audit_head": _head_dict(gallery),
               "previous_hash": GENESIS_HASH if last is None else last["row_hash"]}
        row["row_hash"] = row_hash(row["previous_hash"], row, LOG_CONTENT_FIELDS)
        try:
            os.write(handle.fileno(), (_canonical({name: row[name] for name in LOG_COLUMNS}) + "\n").encode("utf-8"))
            os.fsync(handle.fileno())
        except OSError as error:
            raise (storage_failure(path, error) or error) from None
    return row


def log_rows(path: Path) -> list[dict]:
    """Every row of an audit log file, in order (BadArgument naming the first line that is not a row)."""
    rows = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                rows.append(_log_row(line))
            except ValueError:
                raise BadArgument(path, f"line {number} is not an audit row") from None
    return rows


def verify_log(path: Path) -> ChainCheck:
    """Recompute every row's hash of an audit log file, check each link and the ids' continuity (1, 2, ...)."""
    previous_id, previous_hash, count = 0, GENESIS_HASH, 0
    with open(path, "rb") as handle:
        for line in handle:
            count += 1
            try:
                row = _log_row(line)
            except ValueError:
                return ChainCheck(False, count, previous_id + 1, f"line {count} is not an audit row (altered or cut)")
            row_id = row["id"]
            if row_id != previous_id + 1:
                problem = (f"row {previous_id + 1} was removed (ids jump from {previous_id} to {row_id})"
                           if row_id > previous_id + 1 else f"row {row_id} is out of place (after row {previous_id})")
                return ChainCheck(False, count, previous_id + 1, problem)
            if row_hash(row["previous_hash"], row, LOG_CONTENT_FIELDS) != row["row_hash"]:
                return ChainCheck(False, count, row_id, f"row {row_id} was altered (its content no longer matches "
                                  "its hash)")
            if row["previous_hash"] != previous_hash:
                # this row's own content is intact, so the one before it was rewritten (its hash recomputed)
                altered = previous_id or row_id
                return ChainCheck(False, count, altered, f"row {altered} was altered (row {row_id} chains to a "
                                  "different hash)")
            previous_id, previous_hash = row_id, row["row_hash"]
    return ChainCheck(True, count, None, "")


def _open_log(path: Path, create: bool = True):
    """The audit log opened for appending and reading, created owner-only (its rows name evidence files)."""
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CLOEXEC | (os.O_CREAT if create else 0), FILE_MODE)
    except OSError as error:
        raise BadArgument(path, f"cannot write the audit log: {error.strerror}") from None
    return open(descriptor, "rb+", buffering=0)


def _last_row(handle, path: Path) -> dict | None:
    """The last row of the open log (None when it is empty); BadArgument when its last line is not a whole row."""
    end = handle.seek(0, os.SEEK_END)
    if end == 0:
        return None
    tail, position = b"", end
    while position > 0 and b"\n" not in tail[:-1]:
        step = min(TAIL_CHUNK_BYTES, position)
        position -= step
        handle.seek(position)
        tail = handle.read(step) + tail
    try:
        if not tail.endswith(b"\n"):
            raise ValueError("no line end")
        return _log_row(tail[:-1].rsplit(b"\n", 1)[-1])
    except ValueError:
        raise BadArgument(path, "its last line is not a whole audit row (cut short, or not an audit log); check it "
                          "with `fvmatch --audit-log FILE audit log --verify`") from None


def _log_row(line: bytes) -> dict:
    """One line of an audit log as a row; ValueError when it is not one."""
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(str(error)) from None
    if not isinstance(row, dict) or any(name not in row for name in LOG_COLUMNS) or not isinstance(row["id"], int):
        raise ValueError("not an audit row")
    return row


def _head_dict(gallery: Gallery) -> dict | None:
    head = _head(gallery)
    return None if head is None else {"id": head[0], "hash": head[1]}
