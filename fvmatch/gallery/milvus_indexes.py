"""A team gallery's search indexes in Milvus: one collection per (embedding space, modality), HNSW over inner
product, the item's media id as primary key. Caches, as a directory gallery's hnswlib files are: PostgreSQL holds
every vector, and any collection can be rebuilt from it (`fvmatch gallery reindex`).

Keeping step across clients: the database keeps a version per (space, modality) (schema.m004's tallies), and its
meta table records the version each collection was last known to hold (`milvus_sync:<space>:<modality>`). A writer
that commits a change moves that record on once the collection has it too. An open that finds the two versions
apart (a client died between its commit and Milvus, or a reader cannot record) compares ids under the writers'
transaction lock, so that no commit falls between the two listings, and mends the collection: missing items added,
removed ones deleted. A search re-reads its candidates from the database, so an id deleted meanwhile is never shown.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from fvmatch.gallery.index import EF_CONSTRUCTION, M, MIN_EF, IndexHealth
from fvmatch.gallery.postgres import TRANSACTION_KEY

BATCH = 5_000  # vectors a Milvus insert carries (256-D: 5 MB, well inside gRPC's message limit)
LISTING_BATCH = 10_000
ID_FIELD, VECTOR_FIELD = "id", "vector"


def collection_name(prefix: str, space: str, modality: str) -> str:
    """A Milvus collection name (letters, digits and underscores) for one (space, modality) of a gallery."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"{prefix}_{space}_{modality}")


@dataclass
class MilvusCollection:
    """One (space, modality) collection, as opened: its name and what opening found."""

    client: object
    name: str
    dim: int
    health: IndexHealth = field(default_factory=IndexHealth)
    live_count: int = 0
    synced: int | None = None  # the database version this collection holds, if known
    timings: dict[str, float] = field(default_factory=dict)

    def search(self, vector: np.ndarray, k: int) -> np.ndarray:
        """The media ids of up to `k` nearest items by inner product (approximate: the gallery re-scores them)."""
        if self.live_count == 0:
            return np.zeros(0, dtype=np.int64)
        hits = self.client.search(self.name, data=[np.asarray(vector, np.float32)], limit=k, anns_field=VECTOR_FIELD,
                                  output_fields=[ID_FIELD], search_params={"metric_type": "IP",
                                                                           "params": {"ef": max(MIN_EF, k)}})
        return np.array([hit["id"] for hit in hits[0]], dtype=np.int64)

    def ids(self) -> set[int]:
        iterator = self.client.query_iterator(self.name, batch_size=LISTING_BATCH, filter="", output_fields=[ID_FIELD])
        found: set[int] = set()
        try:
            while batch := iterator.next():
                found.update(int(row[ID_FIELD]) for row in batch)
        finally:
            iterator.close()
        return found

    def count(self) -> int:
        return int(self.client.query(self.name, filter="", output_fields=["count(*)"])[0]["count(*)"])

    def upsert(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        for start in range(0, len(ids), BATCH):
            self.client.upsert(self.name, [{ID_FIELD: int(media_id), VECTOR_FIELD: vector} for media_id, vector
                                           in zip(ids[start:start + BATCH], vectors[start:start + BATCH])])

    def delete(self, ids: Iterable[int]) -> None:
        ids = sorted(int(i) for i in ids)
        for start in range(0, len(ids), BATCH):
            self.client.delete(self.name, ids=ids[start:start + BATCH])


class MilvusIndexes:
    """The collections of one team gallery opened so far, keyed by (space, modality); indexes.py's GalleryIndexes
    for a team gallery (the same calls)."""

    def __init__(self, gallery, client, prefix: str) -> None:  # the Gallery that owns them: it imports this, not back
        self.gallery = gallery
        self.client = client
        self.prefix = prefix
        self.loaded: dict[tuple[str, str], MilvusCollection] = {}
        self.huge_pages = False  # a directory gallery's option: Milvus manages its own memory

    # ----- opening ----------------------------------------------------------------------------------------------
    def open(self, modality: str, space: str, room: bool = True) -> MilvusCollection:
        """The collection of one (space, modality), created from the database's vectors if absent, mended if it
        is not known to hold the database's current version."""
        key = (space, modality)
        if key not in self.loaded:
            began = time.perf_counter()
            collection = MilvusCollection(self.client, collection_name(self.prefix, space, modality),
                                          self.gallery.dim(space))
            if not self.client.has_collection(collection.name):
                self._create(collection)
                collection.health = IndexHealth("rebuilt", "no collection in Milvus")
            version, recorded = self.gallery._tally(space, modality)[1], self._recorded(space, modality)
            if recorded == version and collection.health.state != "rebuilt":
                collection.synced = version
                collection.live_count = collection.count()
            else:
                self._mend(collection, space, modality)
            collection.timings["compare"] = time.perf_counter() - began
            self.loaded[key] = collection
        return self.loaded[key]

    def _create(self, collection: MilvusCollection) -> None:
        from pymilvus import DataType

        schema = self.client.create_schema(auto_id=False, description="fvmatch gallery vectors (a cache of the "
                                           "gallery's database)")
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=collection.dim)
        index = self.client.prepare_index_params()
        index.add_index(VECTOR_FIELD, index_type="HNSW", metric_type="IP",
                        params={"M": M, "efConstruction": EF_CONSTRUCTION})
        # Strong: a search sees every write acknowledged before it, from any client
        self.client.create_collection(collection.name, schema=schema, index_params=index, consistency_level="Strong")

    def _mend(self, collection: MilvusCollection, space: str, modality: str) -> None:
        """Make the collection hold exactly the database's vectors, under the writers' transaction lock (no commit
        between the two listings); record the version it now holds where this role may."""
        gallery = self.gallery
        # read committed, the lock first: each listing sees every commit made before the lock was had
        with self._transaction("BEGIN", writers_held_off=True):
            version = gallery._tally(space, modality)[1]
            stored = gallery._ids(modality, space)
            held = collection.ids()
            missing = np.array(sorted(set(stored.tolist()) - held), dtype=np.int64)
            stale = held - set(stored.tolist())
            if len(missing):
                collection.upsert(missing, gallery._vectors(missing, space))
            if stale:
                collection.delete(stale)
            self._record(space, modality, version)
        collection.synced = version
        collection.live_count = len(stored)
        if collection.health.state != "rebuilt" and (len(missing) or stale):
            collection.health = IndexHealth("repaired", f"{len(missing)} added, {len(stale)} removed to match the "
                                            "database", added=len(missing), removed=len(stale))

    @contextmanager
    def _transaction(self, begin: str, writers_held_off: bool = False):
        """A transaction of this connection for what is read inside it (joined if one is open); with
        `writers_held_off`, under the writers' transaction lock: no commit falls inside it."""
        db = self.gallery.db
        if db.conn.in_transaction:
            yield
            return
        db.execute(begin)
        try:
            if writers_held_off:
                db.execute("SELECT pg_advisory_xact_lock(?)", [TRANSACTION_KEY])
            yield
        finally:
            if db.conn.in_transaction:
                db.execute("COMMIT")

    def _sync_key(self, space: str, modality: str) -> str:
        return f"milvus_sync:{self.prefix}:{space}:{modality}"

    def _recorded(self, space: str, modality: str) -> int | None:
        value = self.gallery.meta(self._sync_key(space, modality))
        return None if value is None else int(value)

    def _record(self, space: str, modality: str, version: int, was: int | None = None) -> None:
        """Record that the collection holds `version` (only over `was`, when given); nothing for a reader's role."""
        if self.gallery.read_only:
            return
        key = self._sync_key(space, modality)
        if was is None:
            self.gallery.set_meta(key, str(version))
        else:
            self.gallery.db.execute("UPDATE meta SET value = ? WHERE key = ? AND value = ?", [str(version), key, str(was)])

    def snapshot(self):
        """One read transaction, repeatable read: what is read inside it is one state of the database."""
        return self._transaction("BEGIN ISOLATION LEVEL REPEATABLE READ")

    # ----- following a writer's changes -------------------------------------------------------------------------
    def track(self, key: tuple[str, str], before: dict, after: dict) -> None:
        """After a committed change (database versions `before` -> `after`) applied to collection `key`: it holds
        `after` if it held `before`; the record in the database moves with it."""
        collection = self.loaded.get(key)
        if collection is None or key not in after:
            return
        if collection.synced in (before.get(key), after.get(key)):
            collection.synced = after[key]
            self._record(*key, after[key], was=before.get(key))
        else:
            collection.synced = None

    def add(self, stored: Sequence[tuple[int, str, dict[str, np.ndarray]]], before: dict, after: dict) -> None:
        """Add committed vectors to their collections: [(media id, modality, {space: vector})]."""
        for space, modality in sorted({(space, modality) for _, modality, vectors in stored for space in vectors}):
            chosen = [(media_id, vectors[space]) for media_id, m, vectors in stored if m == modality and space in vectors]
            collection = self.open(modality, space)
            collection.upsert(np.array([c[0] for c in chosen], dtype=np.int64),
                              np.stack([np.asarray(c[1], np.float32) for c in chosen]))
            collection.live_count += len(chosen)
            self.track((space, modality), before, after)

    def remove(self, indexed: dict[tuple[str, str], list[int]]) -> None:
        """Delete removed items from their collections: {(space, modality): [media id]}."""
        for (space, modality), ids in indexed.items():
            collection = self.open(modality, space)
            collection.delete(ids)
            collection.live_count -= len(ids)

    def forget(self, space: str) -> None:
        """Drop a space's collections whose vectors were replaced (rebuilt on the next open)."""
        for modality in ("face", "voice"):
            name = collection_name(self.prefix, space, modality)
            if self.client.has_collection(name):
                self.client.drop_collection(name)
            self.loaded.pop((space, modality), None)

    def flush(self) -> None:
        """Seal what this client wrote into Milvus's indexed segments (searches over sealed segments use HNSW)."""
        for collection in self.loaded.values():
            self.client.flush(collection.name)

    def reindex(self) -> dict[str, int]:
        """Rebuild every collection from the stored vectors."""
        counts = {}
        for space in dict.fromkeys(space for space, _ in self.gallery.index_keys()):
            self.forget(space)
        for space, modality in self.gallery.index_keys():
            collection = self.open(modality, space)
            collection.health = IndexHealth("rebuilt", "reindex asked for")
            self.client.flush(collection.name)
            counts[f"{space} {modality}"] = collection.live_count
        return counts

    # ----- reporting ----------------------------------------------------------------------------------------------
    def health(self, counts: dict[str, int]) -> dict[str, dict]:
        gallery = self.gallery
        health = {}
        for space, modality in gallery.index_keys():
            collection = self.open(modality, space)
            stored = gallery._tally(space, modality)[0]
            live = collection.count()
            health[f"{space} {modality}"] = {
                "space": space, "modality": modality, "state": collection.health.state,
                "detail": collection.health.reason, "live_items": live, "agrees_with_database": live == stored,
                "missing_vectors": counts[modality] - stored, "collection": collection.name}
        return health
