"""The search indexes a gallery keeps, one per (embedding space, modality): opening each checked against the database
(loaded, repaired or rebuilt), carrying the database versions across a writer's changes, saving them.

The Gallery (gallery.py) owns one GalleryIndexes and reads its stored vectors through it; each index itself, its
file and its sidecar are index.py's ModalityIndex.
"""
from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from fvmatch.errors import FvmatchError
from fvmatch.gallery.files import remove_leftovers, writing
from fvmatch.gallery.huge_pages import anonymous_mappings, collapse_new_mappings
from fvmatch.gallery.index import IndexHealth, ModalityIndex, index_path
from fvmatch.gallery.lock import WriteLock

BYTES_PER_ITEM = 1_400  # memory to open an index, per item (1.3 GiB per million): benchmarks/gallery_memory.py


class OutOfMemory(FvmatchError):
    """An index of the gallery does not fit in the memory this process can have."""


class GalleryIndexes:
    """The indexes of one gallery opened so far, keyed by (space, modality): caches of its stored vectors."""

    def __init__(self, gallery) -> None:  # the Gallery (gallery.py) that owns them: it imports this module, not back
        self.gallery = gallery
        self.loaded: dict[tuple[str, str], ModalityIndex] = {}
        self.huge_pages = False  # Gallery.open(huge_pages=True)

    # ----- opening ----------------------------------------------------------------------------------------------
    def open(self, modality: str, space: str, room: bool = True) -> ModalityIndex:
        """The checked index of one (space, modality): loaded if its file is sound, repaired or rebuilt if not.
        `room=False` (a search) loads it without the spare capacity a writer adds into."""
        gallery = self.gallery
        key = (space, modality)
        if key not in self.loaded:
            index = ModalityIndex(index_path(gallery.directory, space, modality), gallery.dim(space))
            expected = self._identity(space)
            mapped_before = anonymous_mappings() if self.huge_pages else set()
            with self.memory(index, modality, space):
                problem = index.load_checked(expected, room)
                began = time.perf_counter()
                with self.snapshot():
                    index.synced = gallery._tally(space, modality)[1]
                    if problem is not None:
                        index.build(*gallery._all_vectors(modality, space))
                        index.health = IndexHealth("rebuilt", problem)
                    elif not index.holds(index.synced, modality):  # else it holds exactly the database's vectors
                        index.reconcile(gallery._ids(modality, space), lambda wanted: gallery._vectors(wanted, space))
                index.timings["compare"] = time.perf_counter() - began
            if self.huge_pages:
                began = time.perf_counter()
                collapse_new_mappings(mapped_before)
                index.timings["huge_pages"] = time.perf_counter() - began
            self.loaded[key] = index
            if index.dirty or index.refreshable(self._sidecar_fields(space, modality)):
                self._save_if_free(index, space, modality)
        return self.loaded[key]

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction, so that what is read inside it is one state of the database (WAL mode)."""
        db = self.gallery.db
        if db.conn.in_transaction:
            yield
            return
        db.execute("BEGIN")
        try:
            yield
        finally:
            db.execute("COMMIT")

    @contextmanager
    def memory(self, index: ModalityIndex, modality: str, space: str) -> Iterator[None]:
        """MemoryError inside becomes OutOfMemory: one line naming the index and its size (exit 2)."""
        try:
            yield
        except MemoryError:
            items = self.gallery._count(modality, space)
            needed = BYTES_PER_ITEM * items
            size = f"{needed / 2**30:.1f} GiB" if needed >= 2**30 else f"{needed / 2**20:.0f} MiB"
            raise OutOfMemory(index.path, f"not enough memory for this index of {items:,} items (it needs about "
                              f"{size}; see docs/gallery.md, Limits)") from None

    def _identity(self, space: str) -> dict[str, str]:
        return {"space": space, "model_id": self.gallery.spaces.get(space, {}).get("model_id", "")}

    def _sidecar_fields(self, space: str, modality: str) -> dict[str, str]:
        """What a save records: the index's identity and its modality (an older fvmatch's sidecars lack the
        modality: such an index is compared with the database on open, never taken as current)."""
        return {**self._identity(space), "modality": modality}

    def _save_if_free(self, index: ModalityIndex, space: str, modality: str) -> None:
        """A reader that repaired an index in memory writes it back only if no writer is at work; one that verified
        a file or found it current records that in the sidecar. A read-only gallery keeps both in memory (and takes
        no lock: its lock file is not written either)."""
        if self.gallery.read_only:
            return
        lock = WriteLock(self.gallery.directory)
        try:
            if lock.try_acquire():
                if index.dirty:
                    index.save(self._sidecar_fields(space, modality))
                else:
                    index.refresh_sidecar(self._sidecar_fields(space, modality))
        except OSError:
            pass  # a full or read-only disk: this reader still answers, from the in-memory repair
        finally:
            lock.release()

    # ----- following a writer's changes (hold the write lock) ---------------------------------------------------
    def track(self, key: tuple[str, str], before: dict, after: dict) -> None:
        """After a change that moved the database from `before` to `after`, applied to the loaded index `key`:
        it holds version `after` if it held `before` (or was loaded after the change); unknown otherwise."""
        index = self.loaded.get(key)
        if index is not None:
            index.synced = after.get(key) if index.synced in (before.get(key), after.get(key)) else None

    def add(self, stored: Sequence[tuple[int, str, dict[str, np.ndarray]]], before: dict, after: dict) -> None:
        """Add committed vectors to their indexes: [(media id, modality, {space: vector})]; the database versions
        `before` and `after` the commit."""
        for space, modality in sorted({(space, modality) for _, modality, vectors in stored for space in vectors}):
            chosen = [(media_id, vectors[space]) for media_id, m, vectors in stored if m == modality and space in vectors]
            index = self.open(modality, space)
            held, index.synced = index.synced, None  # unknown until the addition is complete
            with self.memory(index, modality, space):  # stored all the same: the next open repairs
                index.add(np.array([c[0] for c in chosen]), np.stack([c[1] for c in chosen]))
            index.synced = held
            self.track((space, modality), before, after)

    def remove(self, indexed: dict[tuple[str, str], list[int]]) -> None:
        """Mark deleted items' labels removed in the loaded indexes: {(space, modality): [media id]}."""
        for key, ids in indexed.items():
            if key in self.loaded:
                self.loaded[key].remove(ids)

    def forget(self, space: str) -> None:
        """Drop the loaded indexes of a space whose vectors were replaced."""
        for key in [key for key in self.loaded if key[0] == space]:  # their files are stale now: repaired on open
            del self.loaded[key]

    def flush(self) -> None:
        """Write changed indexes to disk (compacting one that is mostly deleted). Hold the write lock.

        Temporary files that a killed save of any index left are removed too, also those of an index this
        command did not open (each space has its own)."""
        gallery = self.gallery
        remove_leftovers(gallery.directory, "*.hnsw.tmp*")
        remove_leftovers(gallery.directory, "*.hnsw.json.tmp*")
        for (space, modality), index in self.loaded.items():
            if index.needs_compaction:
                with self.memory(index, modality, space), self.snapshot():
                    index.synced = gallery._tally(space, modality)[1]
                    index.build(*gallery._all_vectors(modality, space))
            if index.dirty:
                with writing(index.path):  # the database keeps the items; the next open repairs the index
                    index.save(self._sidecar_fields(space, modality))

    def reindex(self) -> dict[str, int]:
        """Rebuild every index from the stored embeddings. Hold the write lock."""
        gallery = self.gallery
        counts = {}
        for space, modality in gallery.index_keys():
            index = ModalityIndex(index_path(gallery.directory, space, modality), gallery.dim(space))
            with self.memory(index, modality, space), self.snapshot():
                index.synced = gallery._tally(space, modality)[1]
                ids, vectors = gallery._all_vectors(modality, space)
                index.build(ids, vectors)
            index.health = IndexHealth("rebuilt", "reindex asked for")
            with writing(index.path):
                index.save(self._sidecar_fields(space, modality))
            self.loaded[(space, modality)] = index
            counts[f"{space} {modality}"] = len(ids)
        return counts

    # ----- reporting ----------------------------------------------------------------------------------------------
    def health(self, counts: dict[str, int]) -> dict[str, dict]:
        """Each index's state as opening it found it, and whether it agrees with the database (`counts`: items per
        modality)."""
        gallery = self.gallery
        health = {}
        for space, modality in gallery.index_keys():
            index = self.open(modality, space)
            path = index.path
            stored = gallery._tally(space, modality)[0]
            health[f"{space} {modality}"] = {
                "space": space, "modality": modality, "state": index.health.state, "detail": index.health.reason,
                "live_items": index.live_count, "agrees_with_database": index.live_count == stored,
                "missing_vectors": counts[modality] - stored, "file_bytes": path.stat().st_size if path.exists() else 0}
        return health
