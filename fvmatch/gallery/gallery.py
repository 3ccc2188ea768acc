"""A gallery on disk: SQLite (the truth) plus one HNSW index per (embedding space, modality) (caches).

    gallery.db              identities, media (the evidence), vectors (one float32 embedding per item and space),
                            meta (format, pinned joint model, every space's model id and dimension); WAL mode
    face.hnsw, voice.hnsw   hnswlib indexes of the joint space, labels = media ids (+ .json sidecars)
    <space>-<modality>.hnsw the same for the other spaces (dlib-face-face.hnsw, ge2e-voice-voice.hnsw)
    write.lock              one writer at a time; readers never wait

This module is the item store: identities, media and their vectors in the database, searched and changed in
transactions. The indexes, and keeping them in step with the database, are indexes.py's GalleryIndexes.

A gallery this user cannot write (write-protected evidence), or one opened with `read_only=True`, is read without
writing a byte: SQLite read-only (database.connect_read_only), no migration applied to the file, index repairs kept
in memory, no lock file; any change is refused (`require_writable`).

A team gallery (team.py: `--gallery casework.toml` or a postgresql:// URL) is the same Gallery on two other stores:
its records in PostgreSQL (postgres.py, postgres_schema.py: the same tables and SQL), its indexes Milvus collections
(milvus_indexes.py), its write lock an advisory lock of the database; a role that may not write it opens it
read-only.
"""
from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlite_utils

from fvmatch.errors import BadArgument, FvmatchError, ModelMismatch
from fvmatch.gallery.database import DB_NAME, NotAGallery, Transaction, connect, connect_read_only, create_database
from fvmatch.gallery.files import GalleryUnwritable, make_private_directory, tighten, unwritable_reason, writing
from fvmatch.gallery.index import ModalityIndex
from fvmatch.gallery.indexes import GalleryIndexes
from fvmatch.gallery.lock import WriteLock, hold_off_writers
from fvmatch.gallery.milvus_indexes import MilvusIndexes
from fvmatch.gallery.postgres import PostgresTransaction, TeamWriteLock
from fvmatch.gallery.team import (TeamConfig, TeamName, is_team_gallery, open_team_stores, team_config,
                                  team_holds_gallery)
from fvmatch.gallery.schema import FORMAT_VERSION

MODALITIES = ("face", "voice")
SPACE = "joint"  # the space of the pinned checkpoint
MISSING_SHOWN = 5  # items named in a "missing vectors" message
OVER_FETCH = 10  # items fetched from HNSW per identity asked for: identities own several items each
MIN_FETCH = 100


class UnknownIdentity(FvmatchError):
    """No identity with that label in the gallery."""


class MissingVectors(FvmatchError):
    """Items of the gallery have no vector in the space a query needs (enrolled before the space was added)."""


@dataclass
class NewItem:
    """An embedded item ready to store: `vectors` maps space -> unit vector (a bare array is the joint space's)."""

    identity: str
    modality: str
    source_path: str
    sha256: str
    size: int
    quality: float
    vectors: dict[str, np.ndarray] | np.ndarray | None
    quality_details: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.vectors, np.ndarray):
            self.vectors = {SPACE: self.vectors}


@dataclass
class Candidate:
    """One identity in a ranked answer: its best-matching item, or its template of references, decides its score."""

    rank: int
    identity: str
    score: float
    modality: str
    media_id: int
    source_path: str
    items_compared: int
    space: str = SPACE
    # scored by the identity's template (fvmatch.analysis.templates): each of its references, the best first, with
    # its own cosine with the query; the media id and path above are the best one's. None: scored by its best item
    references: list[dict] | None = None

    def to_dict(self) -> dict:
        return {"rank": self.rank, "identity": self.identity, "score": round(self.score, 6),
                "matched_modality": self.modality, "media_id": self.media_id, "source_path": self.source_path,
                "items_compared": self.items_compared, "space": self.space,
                **({"references": self.references} if self.references is not None else {})}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _pinned(model_id: str, embedding_dim: int, model_path: str | None) -> dict[str, object]:
    """The metadata a new gallery starts with: its format and the model it is pinned to."""
    return {"format_version": FORMAT_VERSION, "model_id": model_id, "embedding_dim": embedding_dim,
            "model_path": model_path or "", "spaces": json.dumps({SPACE: {"model_id": model_id, "dim": embedding_dim}}),
            "created": _now()}


class Gallery:
    """Open with `Gallery.open(path)` (or `create=True` for a new one); use as a context manager. Its search
    indexes are `gallery.indexes` (indexes.py)."""

    def __init__(self, directory: Path, db: sqlite_utils.Database, read_only: str | None = None,
                 upgraded_in_memory: Sequence[str] = (), team: TeamConfig | None = None, vectors=None) -> None:
        self.directory = directory  # a team gallery's: its file or URL, as given
        self.db = db  # sqlite_utils.Database, or a team gallery's postgres.PostgresDatabase
        self.team = team  # where a team gallery lives (None: a directory gallery)
        self.read_only = read_only  # why nothing may be written (None: a writable gallery)
        self.upgraded_in_memory = list(upgraded_in_memory)  # migrations a read-only open applied to its copy in memory
        # where the audit rows of reads go besides (on a read-only gallery: instead of) its trail (fvmatch.audit.trail)
        self.audit_log: Path | None = None
        self._writers_held_off: int | None = None  # a read-only gallery's shared hold on the write lock
        # this fvmatch's model id of a space, where an embedder was chosen for the gallery (embedder_for_gallery):
        # a reference condition whose stored vectors came from another model is not searched (fvmatch.analysis.matching)
        self.space_models: Callable[[str], str] | None = None
        self.indexes = GalleryIndexes(self) if team is None else MilvusIndexes(self, vectors, team.prefix)

    # ----- opening, creating, pinning -------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: str | Path, create: bool = False, model_id: str | None = None,
             embedding_dim: int | None = None, model_path: str | None = None, huge_pages: bool = False,
             read_only: bool = False) -> "Gallery":
        """Open a gallery. With `create`, make it if absent, pinned to `model_id` (required then; hold the
        write lock while creating). With `huge_pages`, each index is moved onto huge pages once loaded (for a
        process that will search it many times: huge_pages.py). GalleryUnwritable when the storage refuses a write
        it needs. Read-only (`gallery.read_only` says why) with `read_only`, or when this user cannot write it."""
        if read_only and create:
            raise ValueError("a gallery opened read-only cannot be created")
        if is_team_gallery(directory):
            return cls._open_team(team_config(directory), create, model_id, embedding_dim, model_path, read_only)
        directory = Path(directory)
        db_path = directory / DB_NAME
        if not db_path.exists():
            if not create:
                raise NotAGallery(directory, "no gallery here (enroll something first, or check --gallery)")
            if model_id is None or embedding_dim is None:
                raise ValueError("creating a gallery needs the model id and embedding size to pin")
            if directory.exists() and not directory.is_dir():
                raise NotAGallery(directory, "exists and is not a directory")
            make_private_directory(directory)
            tighten(directory)  # owner-only, also when the directory was there before: a gallery holds biometric data
            with writing(db_path):
                create_database(db_path, _pinned(model_id, embedding_dim, model_path))
        reason = "opened read-only" if read_only else unwritable_reason(directory)
        if reason is None:
            gallery = cls(directory, connect(db_path))
        else:
            held = hold_off_writers(directory)
            try:
                db, upgraded = connect_read_only(db_path, writers_held_off=held is not None)
            except BaseException:
                if held is not None:
                    os.close(held)
                raise
            gallery = cls(directory, db, read_only=reason, upgraded_in_memory=upgraded)
            gallery._writers_held_off = held
        gallery.indexes.huge_pages = huge_pages
        gallery._check_pinned(model_id, embedding_dim, model_path)
        return gallery

    @staticmethod
    def exists(directory: str | Path) -> bool:
        """Whether a gallery is there: a folder's gallery.db, or a team database holding a pinned gallery."""
        if is_team_gallery(directory):
            return team_holds_gallery(team_config(directory))
        return (Path(directory) / DB_NAME).exists()

    @staticmethod
    def writer_of(directory: str | Path, timeout_seconds: float = 60.0, on_wait=None, description: str = ""):
        """The write lock of the gallery at `directory` (a folder, or a team gallery), which may not exist yet: to
        hold while it is created and written."""
        if is_team_gallery(directory):
            config = team_config(directory)
            return TeamWriteLock(config.records, config.name, timeout_seconds, on_wait, description)
        return WriteLock(Path(directory), timeout_seconds, on_wait, description)

    @classmethod
    def _open_team(cls, config: TeamConfig, create: bool, model_id: str | None, embedding_dim: int | None,
                   model_path: str | None, read_only: bool) -> "Gallery":
        """Open a team gallery (team.open_team_stores), then pin it or check its format as a folder's."""
        db, read_only_reason, vectors = open_team_stores(config, create, read_only)
        gallery = cls(TeamName(config.name), db, read_only=read_only_reason, team=config, vectors=vectors)
        gallery._check_pinned(model_id, embedding_dim, model_path)
        return gallery

    def _check_pinned(self, model_id: str | None, embedding_dim: int | None, model_path: str | None) -> None:
        """Pin a gallery that has no metadata yet (given a model), refuse one newer than this fvmatch."""
        try:
            if self.meta("format_version") is None:
                self._initialise(model_id, embedding_dim, model_path)
            elif int(self.meta("format_version")) > FORMAT_VERSION:
                raise NotAGallery(self.directory, f"gallery format {self.meta('format_version')} is newer than this "
                                  f"fvmatch understands ({FORMAT_VERSION}); upgrade fvmatch")
        except BaseException:
            self.close()
            raise

    def _initialise(self, model_id: str | None, embedding_dim: int | None, model_path: str | None) -> None:
        """Pin a database that has a schema but no metadata (a creation by an older fvmatch, cut short)."""
        if model_id is None or embedding_dim is None or self.read_only:
            raise NotAGallery(self.directory, "gallery database has no metadata")
        with self.transaction():
            for key, value in _pinned(model_id, embedding_dim, model_path).items():
                self.set_meta(key, str(value))

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        """Set one meta value (in the caller's transaction, if any)."""
        self.db.execute("INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET"
                        " value = excluded.value", [key, value])

    @property
    def model_id(self) -> str:
        return self.meta("model_id") or ""

    @property
    def embedding_dim(self) -> int:
        return int(self.meta("embedding_dim") or 0)

    @property
    def model_path(self) -> str:
        return self.meta("model_path") or ""

    def check_model(self, model_id: str) -> None:
        """Refuse a model other than the one the gallery was built with."""
        if model_id != self.model_id:
            raise ModelMismatch(self.directory, f"gallery is pinned to model {self.model_id[:16]}, but model "
                                f"{model_id[:16]} was given; use the gallery's model (or re-embed into a new gallery)")

    @property
    def spaces(self) -> dict[str, dict]:
        """{space: {"model_id", "dim"}} of every space the gallery holds vectors of."""
        return json.loads(self.meta("spaces") or "{}")

    def index_keys(self) -> list[tuple[str, str]]:
        """(space, modality) of every index the gallery keeps: each space's own modalities."""
        from fvmatch.spaces import SPACE_MODALITIES

        return [(space, modality) for space in self.spaces for modality in SPACE_MODALITIES.get(space, MODALITIES)]

    def dim(self, space: str) -> int:
        return int(self.spaces[space]["dim"]) if space in self.spaces else 0

    def check_space(self, space: str, model_id: str) -> None:
        """Refuse a space's model other than the one the gallery's vectors of that space came from (a space it holds
        no vector of compares nothing: add_spaces records the new model)."""
        recorded = self.spaces.get(space)
        if recorded is not None and recorded["model_id"] != model_id and self._holds_vectors(space):
            raise ModelMismatch(self.directory, f"gallery's {space} vectors come from model {recorded['model_id'][:16]}, "
                                f"but this fvmatch's {space} model is {model_id[:16]}; `fvmatch gallery reindex` embeds "
                                "them again with this one from the evidence files (or use the fvmatch that built it)")

    def replace_space_model(self, space: str, info: dict) -> int:
        """Record this fvmatch's model of `space` (an upgraded fvmatch's) where the gallery's vectors of it came from
        another, dropping those vectors, which nothing now computed can be compared with: they are embedded again
        from the evidence files (reembed.fill_missing_vectors). One transaction: a crash leaves either the old
        vectors or none, which the next reindex fills. The number of vectors dropped; hold the write lock."""
        recorded = self.spaces.get(space)
        if recorded is None or recorded["model_id"] == info["model_id"]:
            return 0
        with self.transaction():
            dropped = self.db.execute("DELETE FROM vectors WHERE space = ?", [space]).rowcount
            self.set_meta("spaces", json.dumps({**self.spaces, space: {"model_id": info["model_id"],
                                                                       "dim": int(info["dim"])}}))
        self.indexes.forget(space)
        return dropped

    def add_spaces(self, spaces: dict[str, dict]) -> None:
        """Record spaces ({space: {"model_id", "dim"}}) the gallery will hold; ModelMismatch for a known one with
        another model. Hold the write lock."""
        for space, info in spaces.items():
            if space in self.spaces and not self._holds_vectors(space):  # nothing of it to compare: take this model
                self.replace_space_model(space, info)
            self.check_space(space, info["model_id"])
        new = {space: {"model_id": info["model_id"], "dim": int(info["dim"])} for space, info in spaces.items()
               if space not in self.spaces}
        if new:
            with self.transaction():
                self.set_meta("spaces", json.dumps({**self.spaces, **new}))

    def missing_count(self, space: str, modality: str) -> int:
        """How many items of a modality have no vector in `space` (from the tallies: no scan)."""
        return self._media_tallies().get(modality, 0) - self._tally(space, modality)[0]

    def _media_tallies(self) -> dict[str, int]:
        """Items per modality, kept by the database's triggers (schema.m004)."""
        return {modality: int(items) for modality, items in self.db.execute("SELECT modality, items FROM media_tallies")}

    def _holds_vectors(self, space: str) -> bool:
        return any(self._tally(space, modality)[0] for modality in MODALITIES)

    def _versions(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The database version of each (space, modality): read inside a write transaction, before and after it, so
        that the indexes can tell whether they hold the change (indexes.py, milvus_indexes.py)."""
        return {(space, modality): self._tally(space, modality)[1] for space, modality in keys}

    def _tally(self, space: str, modality: str) -> tuple[int, int]:
        """(vectors of a space and modality, their version): kept by the database's triggers (schema.m004)."""
        row = self.db.execute("SELECT items, version FROM vector_tallies WHERE space = ? AND modality = ?",
                              [space, modality]).fetchone()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))

    def missing_vectors(self, space: str, modality: str) -> list[dict]:
        """Items of a modality with no vector in `space`: {"media_id", "identity", "source_path", "sha256"}."""
        rows = self.db.execute(
            "SELECT media.id, identities.label, media.source_path, media.sha256 FROM media"
            " JOIN identities ON identities.id = media.identity_id WHERE media.modality = ? AND NOT EXISTS"
            " (SELECT 1 FROM vectors WHERE vectors.media_id = media.id AND vectors.space = ?) ORDER BY media.id",
            [modality, space]).fetchall()
        return [{"media_id": row[0], "identity": row[1], "source_path": row[2], "sha256": row[3]} for row in rows]

    def require_vectors(self, space: str, modalities: Iterable[str]) -> None:
        """MissingVectors naming the items (the first few) that have no `space` vector, and how to fill them."""
        for modality in modalities:
            missing = self.missing_vectors(space, modality) if self.missing_count(space, modality) else []
            if missing:
                shown = ", ".join(f"{row['identity']} ({Path(row['source_path']).name})" for row in missing[:MISSING_SHOWN])
                more = f" and {len(missing) - MISSING_SHOWN} more" if len(missing) > MISSING_SHOWN else ""
                where = " on a writable copy of this read-only gallery" if self.read_only else ""
                raise MissingVectors(self.directory, f"{len(missing)} {modality} item(s) have no {space} vectors: "
                                     f"{shown}{more}; fill them from their evidence files with `fvmatch gallery "
                                     f"reindex`{where}")

    def require_writable(self) -> None:
        """GalleryUnwritable, before anything is done, when the gallery was opened read-only."""
        if self.read_only:
            raise GalleryUnwritable(self.directory, f"read-only gallery ({self.read_only}): this command changes it; "
                                    f"{self.way_to_write}")

    @property
    def way_to_write(self) -> str:
        """What an analyst does to change a gallery opened read-only."""
        return "connect as a role that may write it" if self.team is not None else "work on a writable copy"

    def writer(self, timeout_seconds: float = 60.0, on_wait=None, description: str = "") -> WriteLock:
        """The write lock, to hold around any change: `with gallery.writer(): gallery.add(...)`."""
        self.require_writable()
        if self.team is not None:
            return TeamWriteLock(self.team.records, self.team.name, timeout_seconds, on_wait, description)
        return WriteLock(self.directory, timeout_seconds, on_wait, description)

    def transaction(self):
        self.require_writable()
        if self.team is not None:
            return PostgresTransaction(self.db.conn)
        return Transaction(self.db.conn, self.directory / DB_NAME)

    def columns(self, table: str) -> list[str]:
        """A table's columns, in their order."""
        if self.team is not None:
            return self.db.columns(table)
        return [row[1] for row in self.db.execute(f"PRAGMA table_info({table})").fetchall()]

    def close(self) -> None:
        self.db.conn.close()
        if self.team is not None:
            self.indexes.client.close()
        if self._writers_held_off is not None:
            os.close(self._writers_held_off)
            self._writers_held_off = None

    def __enter__(self) -> "Gallery":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- reading ----------------------------------------------------------------------------------------------
    def media_by_sha256(self, sha256: str, modality: str) -> list[tuple[int, str]]:
        """(media id, identity label) of items with this file content."""
        rows = self.db.execute(
            "SELECT media.id, identities.label FROM media JOIN identities ON identities.id = media.identity_id "
            "WHERE media.sha256 = ? AND media.modality = ?", [sha256, modality]).fetchall()
        return [(int(row[0]), row[1]) for row in rows]

    def video_part_owners(self, sha256: str, modality: str, track: int | None) -> set[str]:
        """The identities holding a part of the video with this content: its face track `track` (modality face), or
        the soundtrack of its audio track `track` (modality voice; None: a video with one audio track or none). An
        item of this content stored without a track number (a file enrolled as a photo or recording) owns every
        part."""
        where = "$.track" if modality == "face" else "$.video.audio_track"
        rows = self.db.execute(
            "SELECT identities.label, json_extract(media.quality_json, ?) FROM media JOIN identities ON "
            "identities.id = media.identity_id WHERE media.sha256 = ? AND media.modality = ?",
            [where, sha256, modality]).fetchall()
        return {label for label, stored in rows if stored is None or track is None or int(stored) == track}

    def has_identity(self, label: str) -> bool:
        return self._find_identity(label) is not None

    def _find_identity(self, label: str) -> int | None:
        """The id of the identity with this label, typed in any Unicode normal form (labels are stored NFC)."""
        for form in dict.fromkeys([label, unicodedata.normalize("NFC", label)]):
            row = self.db.execute("SELECT id FROM identities WHERE label = ?", [form]).fetchone()
            if row is not None:
                return int(row[0])
        return None

    def counts(self) -> dict[str, int]:
        counts = {"identities": self.db.execute("SELECT count(*) FROM identities").fetchone()[0]}
        tallies = self._media_tallies()
        return {**counts, **{modality: tallies.get(modality, 0) for modality in MODALITIES}}

    def identities(self) -> list[dict]:
        rows = self.db.execute(
            "SELECT identities.label, identities.created,"
            " count(CASE WHEN media.modality = 'face' THEN 1 END), count(CASE WHEN media.modality = 'voice' THEN 1 END)"
            " FROM identities LEFT JOIN media ON media.identity_id = identities.id"
            " GROUP BY identities.id, identities.label, identities.created ORDER BY identities.label").fetchall()
        return [{"identity": label, "created": created, "faces": int(faces or 0), "voices": int(voices or 0)}
                for label, created, faces, voices in rows]

    # the stored vectors of one (space, modality), as the indexes are built, checked and sized from them
    _SPACE_ROWS = ("FROM vectors JOIN media ON media.id = vectors.media_id"
                   " WHERE vectors.space = ? AND media.modality = ? ORDER BY vectors.media_id")

    def _ids(self, modality: str, space: str = SPACE) -> np.ndarray:
        rows = self.db.execute(f"SELECT vectors.media_id {self._SPACE_ROWS}", [space, modality]).fetchall()
        return np.array([row[0] for row in rows], dtype=np.int64)

    def _vectors(self, ids: Sequence[int], space: str = SPACE) -> np.ndarray:
        vectors = np.zeros((len(ids), self.dim(space)), dtype=np.float32)
        position = {int(media_id): row for row, media_id in enumerate(ids)}
        for start in range(0, len(ids), 900):  # SQLite's bound-parameter limit
            chunk = [int(i) for i in ids[start : start + 900]]
            marks = ",".join("?" * len(chunk))
            for media_id, blob in self.db.execute(
                    f"SELECT media_id, embedding FROM vectors WHERE space = ? AND media_id IN ({marks})", [space, *chunk]):
                vectors[position[media_id]] = np.frombuffer(blob, dtype=np.float32)
        return vectors

    def _all_vectors(self, modality: str, space: str = SPACE) -> tuple[np.ndarray, np.ndarray]:
        rows = self.db.execute(f"SELECT vectors.media_id, vectors.embedding {self._SPACE_ROWS}", [space, modality]).fetchall()
        ids = np.array([row[0] for row in rows], dtype=np.int64)
        vectors = np.frombuffer(b"".join(row[1] for row in rows), dtype=np.float32).reshape(len(rows), self.dim(space))
        return ids, vectors

    def _count(self, modality: str, space: str = SPACE) -> int:
        """Items of a modality with a vector in `space`, counted in the vectors table."""
        return self.db.execute(f"SELECT count(*) {self._SPACE_ROWS}", [space, modality]).fetchone()[0]

    def index(self, modality: str, space: str = SPACE, room: bool = True) -> ModalityIndex:
        """The checked index of one (space, modality): loaded if its file is sound, repaired or rebuilt if not.
        `room=False` (a search) loads it without the spare capacity a writer adds into."""
        return self.indexes.open(modality, space, room)

    def _check_query(self, query: np.ndarray, space: str) -> np.ndarray:
        query = np.asarray(query, dtype=np.float32)
        if space not in self.spaces:
            raise BadArgument("query", f"the gallery holds no {space} vectors (its spaces: {', '.join(self.spaces)})")
        if query.shape != (self.dim(space),):
            raise BadArgument("query", f"embedding has {query.shape} values, gallery's {space} space is {self.dim(space)}-D")
        return query

    def search(self, query: np.ndarray, against: Iterable[str], top: int = 10, space: str = SPACE) -> list[Candidate]:
        """Rank identities by their best item in `space`: over-fetch from HNSW, re-score candidates exactly."""
        query = self._check_query(query, space)
        fetch = max(MIN_FETCH, top * OVER_FETCH)
        labels = np.concatenate([self.index(modality, space, room=False).search(query, fetch)
                                 for modality in against])
        if len(labels) == 0:
            return []
        # one query brings each candidate's stored embedding (for the exact re-score) and what the answer shows
        marks = ",".join("?" * len(labels))
        rows = self.db.execute(
            "SELECT media.id, identities.label, media.modality, media.source_path, vectors.embedding FROM media"
            " JOIN identities ON identities.id = media.identity_id"
            f" JOIN vectors ON vectors.media_id = media.id AND vectors.space = ? WHERE media.id IN ({marks})",
            [space, *(int(label) for label in labels)]).fetchall()  # an id removed since the index was read is absent
        if not rows:
            return []
        vectors = np.frombuffer(b"".join(row[4] for row in rows), dtype=np.float32).reshape(len(rows), -1)
        scores = vectors @ query  # exact cosine: both sides are unit vectors
        details = {row[0]: row[1:4] for row in rows}
        best: dict[str, tuple[float, int]] = {}
        compared: dict[str, int] = {}
        for row, score in zip(rows, scores.tolist()):
            label, identity = row[0], row[1]
            compared[identity] = compared.get(identity, 0) + 1
            if identity not in best or score > best[identity][0]:
                best[identity] = (score, label)
        ranked = sorted(best.items(), key=lambda entry: (-entry[1][0], entry[0]))[:top]
        return [Candidate(rank, identity, score, details[label][1], label, details[label][2], compared[identity], space)
                for rank, (identity, (score, label)) in enumerate(ranked, start=1)]

    def score_identity(self, query: np.ndarray, label: str, against: Iterable[str], space: str = SPACE) -> Candidate | None:
        """Score one claimed identity exactly: its best item of the `against` modalities (None: it has none).

        UnknownIdentity when no identity has that label. Used for verification against a claim, where the
        answer must not depend on the identity making it into an approximate top-k.
        """
        query = self._check_query(query, space)
        identity_id = self._find_identity(label)
        if identity_id is None:
            raise UnknownIdentity(label, "no such identity in the gallery")
        modalities = list(against)
        rows = self.db.execute(
            "SELECT media.id, media.modality, media.source_path, vectors.embedding FROM media"
            " JOIN vectors ON vectors.media_id = media.id AND vectors.space = ? WHERE media.identity_id = ?"
            f" AND media.modality IN ({','.join('?' * len(modalities))}) ORDER BY media.id",
            [space, identity_id, *modalities]).fetchall()
        if not rows:
            return None
        scores = np.frombuffer(b"".join(row[3] for row in rows), dtype=np.float32).reshape(len(rows), -1) @ query
        best = int(np.argmax(scores))
        stored = self.db.execute("SELECT label FROM identities WHERE id = ?", [identity_id]).fetchone()[0]
        return Candidate(1, stored, float(scores[best]), rows[best][1], rows[best][0], rows[best][2], len(rows), space)

    # ----- writing (hold `writer()`) ---------------------------------------------------------------------------
    def add(self, items: Sequence[NewItem], record: Callable[[list[int]], object] | None = None) -> list[int]:
        """Store embedded items in one transaction, then add them to the indexes; returns their media ids.

        `record(ids)` runs inside that transaction after the rows are inserted (e.g. to append an audit row), so the
        items and what it writes are committed together or not at all.
        """
        for item in items:
            if item.modality not in MODALITIES:
                raise BadArgument(item.source_path, f"unknown modality {item.modality!r}")
            self._check_vectors(item.source_path, item.vectors)
        keys = sorted({(space, item.modality) for item in items for space in item.vectors})
        for space, modality in keys:
            self.index(modality, space)  # checked before the change, so that a repair is not mistaken for it
        ids: list[int] = []
        with self.transaction():
            before = self._versions(keys)
            for item in items:
                identity_id = self._identity_id(item.identity, create=True)
                cursor = self.db.execute(
                    "INSERT INTO media (identity_id, modality, source_path, sha256, size, quality, quality_json, added)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [identity_id, item.modality, item.source_path, item.sha256, item.size, item.quality,
                     json.dumps(item.quality_details), _now()])
                ids.append(int(cursor.fetchone()[0]))
                self._insert_vectors(ids[-1], item.vectors)
            if record is not None:
                record(ids)
            after = self._versions(keys)
        self.indexes.add([(media_id, item.modality, item.vectors) for media_id, item in zip(ids, items)], before, after)
        return ids

    def _check_vectors(self, source: str, vectors: dict[str, np.ndarray]) -> None:
        for space, vector in vectors.items():
            if space not in self.spaces:
                raise BadArgument(source, f"the gallery holds no {space} space (record it with add_spaces first)")
            if vector.shape != (self.dim(space),):
                raise BadArgument(source, f"embedding has {vector.shape} values, gallery's {space} space is "
                                  f"{self.dim(space)}-D")

    def _insert_vectors(self, media_id: int, vectors: dict[str, np.ndarray]) -> None:
        for space, vector in vectors.items():
            self.db.execute("INSERT INTO vectors (media_id, space, model_id, embedding) VALUES (?, ?, ?, ?)",
                            [media_id, space, self.spaces[space]["model_id"],
                             np.ascontiguousarray(vector, np.float32).tobytes()])

    def fill_vectors(self, filled: Sequence[tuple[int, dict[str, np.ndarray]]]) -> None:
        """Store vectors of spaces that existing items lack ([(media id, {space: vector})]), in one transaction.

        Hold the write lock. An item removed meanwhile is skipped."""
        modality_of, source_of = {}, {}
        with self.transaction():
            for media_id, vectors in filled:
                row = self.db.execute("SELECT modality, source_path FROM media WHERE id = ?", [media_id]).fetchone()
                if row is not None:
                    modality_of[media_id], source_of[media_id] = row
            keys = {(space, modality_of[media_id]) for media_id, vectors in filled if media_id in modality_of
                    for space in vectors}
            before = self._versions(keys)
            for media_id, vectors in filled:
                if media_id in modality_of:
                    self._check_vectors(source_of[media_id], vectors)
                    self._insert_vectors(media_id, vectors)
            after = self._versions(keys)
        self.indexes.add([(media_id, modality_of[media_id], vectors) for media_id, vectors in filled
                          if media_id in modality_of], before, after)

    def _identity_id(self, label: str, create: bool = False) -> int:
        found = self._find_identity(label)
        if found is not None:
            return found
        if not create:
            raise UnknownIdentity(label, "no such identity in the gallery")
        return int(self.db.execute("INSERT INTO identities (label, created) VALUES (?, ?) RETURNING id",
                                   [label, _now()]).fetchone()[0])

    def remove_identity(self, label: str) -> dict[str, int]:
        """Delete an identity and all its media, from the database and the indexes."""
        identity_id = self._identity_id(label)
        removed = {}
        for space, modality in self.index_keys():  # checked before the change, so a repair is not mistaken for it
            self.index(modality, space)
        indexed: dict[tuple[str, str], list[int]] = {}  # the items' labels in each index (those with a vector)
        with self.transaction():
            before = self._versions(self.index_keys())
            for modality in MODALITIES:
                rows = self.db.execute("SELECT id FROM media WHERE identity_id = ? AND modality = ?",
                                       [identity_id, modality]).fetchall()
                removed[modality] = [int(row[0]) for row in rows]
            for space, media_id, modality in self.db.execute(
                    "SELECT vectors.space, media.id, media.modality FROM media JOIN vectors ON vectors.media_id = media.id"
                    " WHERE media.identity_id = ?", [identity_id]).fetchall():
                indexed.setdefault((space, modality), []).append(int(media_id))
            self.db.execute("DELETE FROM media WHERE identity_id = ?", [identity_id])  # and its vectors (cascade)
            self.db.execute("DELETE FROM identities WHERE id = ?", [identity_id])
            after = self._versions(self.index_keys())
        self.indexes.remove(indexed)
        for key in self.index_keys():
            self.indexes.track(key, before, after)
        return {modality: len(ids) for modality, ids in removed.items()}

    def flush(self) -> None:
        """Write changed indexes to disk (compacting one that is mostly deleted). Hold the write lock."""
        self.indexes.flush()

    def reindex(self) -> dict[str, int]:
        """Rebuild every index from the stored embeddings. Hold the write lock."""
        return self.indexes.reindex()

    def info(self) -> dict:
        counts = self.counts()
        health = self.indexes.health(counts)
        if self.team is None:
            db_bytes = sum(p.stat().st_size for p in self.directory.glob(DB_NAME + "*"))
        else:
            db_bytes = self.db.size_bytes()
        team = {} if self.team is None else {"team": {"records": self.team.name, "vectors": self.team.vectors,
                                                      "collection_prefix": self.team.prefix, "role": self.db.role()}}
        return {**team, "gallery": str(self.directory), "model_id": self.model_id, "model_path": self.model_path,
                "embedding_dim": self.embedding_dim, "format_version": int(self.meta("format_version") or 0),
                "created": self.meta("created"), "spaces": self.spaces, "counts": counts, "database_bytes": db_bytes,
                "indexes": health, "read_only": self.read_only, "upgraded_in_memory": self.upgraded_in_memory}
