"""The audit trail on a real SQLite gallery: chaining, tamper detection, filters, upgrade, concurrent writers."""
from __future__ import annotations

import multiprocessing
import sqlite3

import pytest

from fvmatch.audit.trail import GENESIS_HASH, append_audit, audit_rows, row_hash, verify_chain
from fvmatch.gallery import Gallery


def open_gallery(path) -> Gallery:
    return Gallery.open(path, create=True, model_id="m", embedding_dim=4)


def record(gallery: Gallery, command: str, identity: str, score: float = 0.5, user: str = "examiner") -> dict:
    return append_audit(gallery, command, [command, identity, f"/evidence/{identity}.jpg"],
                        [{"path": f"/evidence/{identity}.jpg", "sha256": "ab" * 32}],
                        {"identity": identity, "score": score}, "m", user=user)


def tamper(gallery: Gallery, sql: str, parameters=()) -> None:
    """Change the database behind the library's back, as someone with the file would."""
    connection = sqlite3.connect(gallery.directory / "gallery.db")
    connection.execute(sql, parameters)
    connection.commit()
    connection.close()


@pytest.fixture()
def gallery(tmp_path):
    g = open_gallery(tmp_path / "g")
    yield g
    g.close()


@pytest.fixture()
def five_rows(gallery):
    for number, identity in enumerate(["alice", "bob", "alice", "carol", "bob"]):
        record(gallery, "enroll" if number < 3 else "identify", identity, score=number / 10)
    return gallery


def test_rows_chain_from_genesis_and_verify(five_rows):
    rows = audit_rows(five_rows)
    assert [row["id"] for row in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["previous_hash"] == GENESIS_HASH
    assert [row["previous_hash"] for row in rows[1:]] == [row["row_hash"] for row in rows[:-1]]
    assert rows[1]["arguments"] == ["enroll", "bob", "/evidence/bob.jpg"] and rows[1]["user"] == "examiner"
    assert rows[1]["inputs"] == [{"path": "/evidence/bob.jpg", "sha256": "ab" * 32}]
    assert rows[1]["result"] == {"identity": "bob", "score": 0.1} and rows[1]["model_id"] == "m"
    check = verify_chain(five_rows)
    assert (check.ok, check.rows, check.first_bad_id, check.problem) == (True, 5, None, "")


def test_empty_trail_verifies(gallery):
    check = verify_chain(gallery)
    assert (check.ok, check.rows, check.first_bad_id) == (True, 0, None)


def test_user_defaults_to_the_login_name(gallery):
    row = append_audit(gallery, "info", [], [], {}, "m")
    assert isinstance(row["user"], str) and row["user"] != ""


def test_reopened_gallery_keeps_chaining(tmp_path):
    with open_gallery(tmp_path / "g") as g:
        first = record(g, "enroll", "alice")
    with open_gallery(tmp_path / "g") as g:
        second = record(g, "identify", "alice")
        assert second["id"] == 2 and second["previous_hash"] == first["row_hash"]
        assert verify_chain(g).ok


def test_altered_row_is_named(five_rows):
    tamper(five_rows, "UPDATE audit SET result = ? WHERE id = 3", ['{"identity":"alice","score":0.99}'])
    check = verify_chain(five_rows)
    assert (check.ok, check.first_bad_id) == (False, 3)
    assert check.problem == "row 3 was altered (its content no longer matches its hash)"


def test_altered_row_with_recomputed_hash_is_named(five_rows):
    row = audit_rows(five_rows)[1]
    row["user"] = "someone else"
    tamper(five_rows, "UPDATE audit SET user = ?, row_hash = ? WHERE id = 2",
           [row["user"], row_hash(row["previous_hash"], row)])
    check = verify_chain(five_rows)
    assert (check.ok, check.first_bad_id) == (False, 2)
    assert check.problem == "row 2 was altered (row 3 chains to a different hash)"


def test_deleted_middle_row_is_named(five_rows):
    tamper(five_rows, "DELETE FROM audit WHERE id = 3")
    check = verify_chain(five_rows)
    assert (check.ok, check.first_bad_id) == (False, 3)
    assert check.problem == "row 3 was removed (ids jump from 2 to 4)"


def test_deleted_last_row_is_detected(five_rows):
    tamper(five_rows, "DELETE FROM audit WHERE id = 5")
    check = verify_chain(five_rows)
    assert (check.ok, check.first_bad_id) == (False, 5)
    assert check.problem == "the last row(s) after row 4 were removed (head says 5)"


def test_deleted_last_row_stays_detected_after_a_new_append(five_rows):
    tamper(five_rows, "DELETE FROM audit WHERE id = 5")
    record(five_rows, "identify", "dave")
    assert verify_chain(five_rows).problem == "row 5 was removed (ids jump from 4 to 6)"


def test_filters_by_command_time_identity_and_limit(five_rows):
    assert [row["id"] for row in audit_rows(five_rows, command="identify")] == [4, 5]
    assert [row["id"] for row in audit_rows(five_rows, identity="alice")] == [1, 3]
    assert [row["id"] for row in audit_rows(five_rows, identity="bob", command="identify")] == [5]
    assert audit_rows(five_rows, identity="ali") == []
    assert [row["id"] for row in audit_rows(five_rows, limit=2)] == [4, 5]
    tamper(five_rows, "UPDATE audit SET time = '2023-06-01T12:00:00.000+00:00' WHERE id IN (1, 2)")
    assert [row["id"] for row in audit_rows(five_rows, until="2024-01-01")] == [1, 2]
    assert [row["id"] for row in audit_rows(five_rows, since="2024-01-01")] == [3, 4, 5]
    assert audit_rows(five_rows, since="2023-06-01", until="2023-06-02", identity="bob")[0]["id"] == 2


def test_old_gallery_without_audit_upgrades_on_open(tmp_path):
    open_gallery(tmp_path / "g").close()
    connection = sqlite3.connect(tmp_path / "g" / "gallery.db")
    connection.execute("DROP TABLE audit")
    connection.execute("DELETE FROM _migrations WHERE name = 'm002_audit'")
    connection.commit()
    connection.close()
    with Gallery.open(tmp_path / "g") as g:
        assert "audit" in g.db.table_names()
        assert record(g, "enroll", "alice")["id"] == 1
        assert verify_chain(g).ok


def _append_many(path, worker: int, count: int, barrier) -> None:
    barrier.wait()
    with Gallery.open(path) as g:
        for number in range(count):
            record(g, "identify", f"worker{worker}-{number}")


def test_concurrent_writers_leave_one_valid_chain(tmp_path):
    open_gallery(tmp_path / "g").close()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    workers = [context.Process(target=_append_many, args=(tmp_path / "g", worker, 20, barrier)) for worker in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    with Gallery.open(tmp_path / "g") as g:
        check = verify_chain(g)
        assert (check.ok, check.rows) == (True, 40)
        assert len(audit_rows(g, identity="worker1-19")) == 1
