"""The gallery database schema, as numbered migrations applied in order on open (so old galleries upgrade)."""
from __future__ import annotations

import json
from collections.abc import Callable

import sqlite_utils

FORMAT_VERSION = 2
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(function: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(function)
    return function


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    db.execute(
        "CREATE TABLE identities (id INTEGER PRIMARY KEY, label TEXT NOT NULL UNIQUE, metadata TEXT NOT NULL DEFAULT '{}',"
        " created TEXT NOT NULL)"
    )
    db.execute(
        "CREATE TABLE media ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,"
        " modality TEXT NOT NULL CHECK (modality IN ('face', 'voice')),"
        " space TEXT NOT NULL DEFAULT 'joint',"
        " source_path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL,"
        " quality REAL NOT NULL, quality_json TEXT NOT NULL DEFAULT '{}',"
        " embedding BLOB NOT NULL, model_id TEXT NOT NULL, added TEXT NOT NULL,"
        " UNIQUE (identity_id, modality, sha256))"
    )
    db.execute("CREATE INDEX media_by_sha256 ON media (sha256)")
    db.execute("CREATE INDEX media_by_identity ON media (identity_id)")
    db.execute("CREATE INDEX media_by_space_modality ON media (space, modality)")


@migration
def m002_audit(db: sqlite_utils.Database) -> None:
    # AUTOINCREMENT: ids are never reused, so a deleted row leaves a gap that verification can name
    db.execute(
        "CREATE TABLE audit ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " time TEXT NOT NULL, user TEXT NOT NULL, command TEXT NOT NULL,"
        " arguments TEXT NOT NULL, inputs TEXT NOT NULL, result TEXT NOT NULL, model_id TEXT NOT NULL,"
        " previous_hash TEXT NOT NULL, row_hash TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX audit_by_time ON audit (time)")


@migration
def m003_vectors_per_space(db: sqlite_utils.Database) -> None:
    """One vector per (item, embedding space): media rows keep the evidence, `vectors` the embeddings.

    The joint vectors move over as they are; the face and voice spaces' vectors of older items are filled in from
    their evidence files by `fvmatch gallery reindex`. meta "spaces" records each space's model id and dimension.
    """
    db.execute(
        "CREATE TABLE vectors ("
        " media_id INTEGER NOT NULL REFERENCES media(id) ON DELETE CASCADE,"
        " space TEXT NOT NULL, model_id TEXT NOT NULL, embedding BLOB NOT NULL,"
        " PRIMARY KEY (media_id, space))"
    )
    db.execute("INSERT INTO vectors (media_id, space, model_id, embedding) SELECT id, space, model_id, embedding FROM media")
    db.execute("CREATE INDEX vectors_by_space ON vectors (space, media_id)")
    db.execute("DROP INDEX media_by_space_modality")
    for column in ("space", "embedding", "model_id"):
        db.execute(f"ALTER TABLE media DROP COLUMN {column}")
    db.execute("CREATE INDEX media_by_modality ON media (modality, id)")
    pinned = dict(db.execute("SELECT key, value FROM meta WHERE key IN ('model_id', 'embedding_dim')").fetchall())
    if pinned:  # an existing gallery (a new one is given its spaces when it is created)
        spaces = {"joint": {"model_id": pinned.get("model_id", ""), "dim": int(pinned.get("embedding_dim") or 0)}}
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('spaces', ?)", [json.dumps(spaces)])
        db.execute("UPDATE meta SET value = '2' WHERE key = 'format_version'")


@migration
def m004_tallies(db: sqlite_utils.Database) -> None:
    """Counts kept by triggers, so that opening a gallery of a million items scans nothing.

    media_tallies: items per modality. vector_tallies: vectors per (space, modality) and a version, a random number
    drawn anew by every insertion or deletion of such a vector: an index whose sidecar records the version of its
    (space, modality) holds exactly those vectors, and is not compared with the database item by item. Random, not a
    counter, so that a database restored from a backup never meets an index saved at "the same" version.
    """
    db.execute("CREATE TABLE media_tallies (modality TEXT PRIMARY KEY, items INTEGER NOT NULL)")
    db.execute("CREATE TABLE vector_tallies (space TEXT NOT NULL, modality TEXT NOT NULL, items INTEGER NOT NULL,"
               " version INTEGER NOT NULL, PRIMARY KEY (space, modality))")
    db.execute("INSERT INTO media_tallies SELECT modality, count(*) FROM media GROUP BY modality")
    db.execute("INSERT INTO vector_tallies SELECT vectors.space, media.modality, count(*), random() FROM vectors"
               " JOIN media ON media.id = vectors.media_id GROUP BY vectors.space, media.modality")
    db.execute("CREATE TRIGGER media_tally_insert AFTER INSERT ON media BEGIN"
               " INSERT INTO media_tallies (modality, items) VALUES (NEW.modality, 1)"
               " ON CONFLICT (modality) DO UPDATE SET items = items + 1; END")
    # an item's vectors go first, while the item is still there to say their modality (a cascade runs too late)
    db.execute("CREATE TRIGGER media_vectors_first BEFORE DELETE ON media BEGIN"
               " DELETE FROM vectors WHERE media_id = OLD.id; END")
    db.execute("CREATE TRIGGER media_tally_delete AFTER DELETE ON media BEGIN"
               " UPDATE media_tallies SET items = items - 1 WHERE modality = OLD.modality; END")
    db.execute("CREATE TRIGGER media_modality_fixed BEFORE UPDATE OF modality ON media BEGIN"
               " SELECT RAISE(ABORT, 'an item''s modality cannot change'); END")
    db.execute("CREATE TRIGGER vector_tally_insert AFTER INSERT ON vectors BEGIN"
               " INSERT INTO vector_tallies (space, modality, items, version)"
               " SELECT NEW.space, modality, 1, random() FROM media WHERE id = NEW.media_id"
               " ON CONFLICT (space, modality) DO UPDATE SET items = items + 1, version = random(); END")
    db.execute("CREATE TRIGGER vector_tally_delete AFTER DELETE ON vectors BEGIN"
               " UPDATE vector_tallies SET items = items - 1, version = random()"
               " WHERE space = OLD.space AND modality = (SELECT modality FROM media WHERE id = OLD.media_id); END")
    db.execute("CREATE TRIGGER vector_tally_update AFTER UPDATE ON vectors BEGIN"
               " UPDATE vector_tallies SET version = random() WHERE space IN (OLD.space, NEW.space)"
               " AND modality IN (SELECT modality FROM media WHERE id IN (OLD.media_id, NEW.media_id)); END")


def _applied(db: sqlite_utils.Database) -> set[str]:
    if "_migrations" not in db.table_names():
        return set()
    return {row[0] for row in db.execute("SELECT name FROM _migrations").fetchall()}


def pending(db: sqlite_utils.Database) -> list[str]:
    """The names of the migrations this database has not seen, in the order they would be applied."""
    applied = _applied(db)
    return [function.__name__ for function in MIGRATIONS if function.__name__ not in applied]


def migrate(db: sqlite_utils.Database) -> None:
    """Apply the migrations this database has not seen, in one transaction; writes nothing when none are due."""
    if not pending(db):
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
        done = _applied(db)  # again, inside the transaction: another process may have just migrated
        for function in MIGRATIONS:
            if function.__name__ not in done:
                function(db)
                db.execute("INSERT INTO _migrations (name, applied) VALUES (?, datetime('now'))", [function.__name__])
        db.execute("COMMIT")
    except BaseException:  # not handled here: undo the half-applied migration (also on Ctrl-C), then re-raise
        if db.conn.in_transaction:  # SQLite may have rolled back already (disk full, I/O error)
            db.execute("ROLLBACK")
        raise
