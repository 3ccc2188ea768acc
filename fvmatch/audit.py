"""The gallery's tamper-evident audit trail: one hash-chained row per command, in the gallery's own database.

Each row stores `previous_hash` (the row_hash of the row before it, 64 zeros for the first) and
`row_hash = sha256(previous_hash + canonical JSON of the row's content)`. The latest id and hash (the head)
are also kept in `meta` under "audit_head", written in the same transaction, so that removing the last
rows is detected too. Anyone who can rewrite the database can rewrite the whole chain and its head: the
trail makes edits evident, it does not make them impossible (export the head elsewhere to pin it).
"""
from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone

from fvmatch.gallery import Gallery

GENESIS_HASH = "0" * 64
HEAD_KEY = "audit_head"
CONTENT_FIELDS = ("id", "time", "user", "command", "arguments", "inputs", "result", "model_id")
JSON_FIELDS = ("arguments", "inputs", "result")
COLUMNS = CONTENT_FIELDS + ("previous_hash", "row_hash")


@dataclass
class ChainCheck:
    """The outcome of `verify_chain`: `problem` names the first row altered or removed ("" when ok)."""

    ok: bool
    rows: int
    first_bad_id: int | None
    problem: str


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def row_hash(previous_hash: str, row: dict) -> str:
    """sha256 hex of the previous row's hash followed by the canonical JSON of this row's content."""
    content = {name: row[name] for name in CONTENT_FIELDS}
    return hashlib.sha256((previous_hash + _canonical(content)).encode("utf-8")).hexdigest()


def _current_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (e.g. a bare container uid)
        return str(os.getuid())


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
    """Append one chained row and move the head, atomically; returns the row as stored.

    Runs in its own BEGIN IMMEDIATE transaction, so concurrent writers queue instead of chaining onto the same
    row; called inside a transaction the caller already holds, it joins that one (the caller's must be IMMEDIATE).
    """
    if gallery.db.conn.in_transaction:
        return _append(gallery, command, arguments, inputs, result, model_id, user)
    with gallery.transaction():
        return _append(gallery, command, arguments, inputs, result, model_id, user)


def _append(gallery: Gallery, command: str, arguments: list[str], inputs: list[dict], result: dict,
            model_id: str, user: str | None) -> dict:
    head = _head(gallery)
    if head is not None:
        previous_hash = head[1]  # the head, not the last row: a removed last row then shows as a broken link
    else:
        last = gallery.db.execute("SELECT row_hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
        previous_hash = GENESIS_HASH if last is None else last[0]
    row = {"time": _now(), "user": user if user is not None else _current_user(), "command": command,
           "arguments": list(arguments), "inputs": list(inputs), "result": dict(result), "model_id": model_id,
           "previous_hash": previous_hash}
    # the id is part of the hashed content, so insert first, then hash and fill in
    cursor = gallery.db.execute(
        "INSERT INTO audit (time, user, command, arguments, inputs, result, model_id, previous_hash, row_hash)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, '')",
        [row["time"], row["user"], command, _canonical(row["arguments"]), _canonical(row["inputs"]),
         _canonical(row["result"]), model_id, previous_hash])
    row["id"] = int(cursor.lastrowid)
    row["row_hash"] = row_hash(previous_hash, row)
    gallery.db.execute("UPDATE audit SET row_hash = ? WHERE id = ?", [row["row_hash"], row["id"]])
    gallery.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                       [HEAD_KEY, _canonical({"id": row["id"], "hash": row["row_hash"]})])
    return {name: row[name] for name in COLUMNS}


def audit_rows(gallery: Gallery, since: str | None = None, until: str | None = None, command: str | None = None,
               identity: str | None = None, limit: int | None = None) -> list[dict]:
    """Audit rows, oldest first, filtered by `since <= time < until` (ISO 8601 UTC strings, compared as text,
    so "2024-05-01" works as a bound), exact command name, and identity; `limit` keeps the latest rows.

    `identity` matches rows whose arguments or result contain the label as a whole JSON string ("alice" as a
    list element or value, not "--identity=alice"); the match is exact and case-sensitive.
    """
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
    sql = f"SELECT {', '.join(COLUMNS)} FROM audit{where} ORDER BY id DESC"
    if limit is not None:
        sql += " LIMIT ?"
        parameters.append(int(limit))
    return [_decode(values) for values in reversed(gallery.db.execute(sql, parameters).fetchall())]


def verify_chain(gallery: Gallery) -> ChainCheck:
    """Recompute every row's hash in id order, check each link, the ids' continuity and the stored head."""
    previous_id, previous_hash, count = 0, GENESIS_HASH, 0

    def bad(row_id: int, problem: str) -> ChainCheck:
        return ChainCheck(False, count, row_id, problem)

    for values in gallery.db.execute(f"SELECT {', '.join(COLUMNS)} FROM audit ORDER BY id"):
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
