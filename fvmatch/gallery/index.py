"""HNSW indexes over a gallery's embeddings, one per (embedding space, modality): caches of the database.

Each index file has a JSON sidecar with its sha256, size, dimension, the labels marked deleted (hnswlib cannot
list them itself) and the database version it holds (see schema.m004_tallies). A file is loaded only when it is
the one its sidecar vouches for, so a crafted or half-written file is never parsed:
- the first open after a save hashes the whole file (sha256) and, when it matches, records the file's fingerprint
  in the sidecar (device, inode, size, modification and change times, and when it was verified);
- later opens check the fingerprint only (one stat): any write to the file, a rename over it or a copy changes the
  inode or the change time, which nobody can set back; then the whole file is hashed again. A fingerprint taken
  within RACY_SECONDS of the file's last change is not trusted (a write in the same clock tick would not show).
Then, when the sidecar's database version is the current one, the index holds exactly the database's vectors;
otherwise its live labels are compared with the database's media ids and the difference is repaired in memory
(missing ones added, stale ones marked deleted). Missing or mismatched files are rebuilt from the stored
embeddings. Files are written to private temporary names, checked, fsynced and renamed into place.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvmatch.gallery.files import create_private_file, fsync_path, remove_leftovers
from fvmatch.gallery.huge_pages import MIN_BYTES, advise_new_mappings, anonymous_mappings

INDEX_FORMAT = "fvmatch-hnsw/1"
# At 1M clustered 256-D items (benchmarks/gallery_search.py) M=16, ef_construction=100 gave recall@10 0.965 at
# ef 256; M=32, ef_construction=200 gives 0.985 / 0.993 / 0.996 at ef 128 / 192 / 256 (README, "A million items")
M = 32
EF_CONSTRUCTION = 200
MIN_EF = 192  # PITFALLS: hnswlib's default ef=10 is far too low
COMPACT_FRACTION = 0.2  # rebuild when more than this share of the index is deleted
RACY_SECONDS = 2.0  # a fingerprint is trusted only when the file had not changed for this long before it was hashed


def index_path(directory: Path, space: str, modality: str) -> Path:
    """`face.hnsw` / `voice.hnsw` for the joint space; `<space>-<modality>.hnsw` for any other."""
    return directory / (f"{modality}.hnsw" if space == "joint" else f"{space}-{modality}.hnsw")


@contextmanager
def memory_errors() -> Iterator[None]:
    """hnswlib reports a failed allocation as RuntimeError("Not enough memory: ..."): raise MemoryError instead."""
    try:
        yield
    except RuntimeError as error:
        if str(error).startswith("Not enough memory"):
            raise MemoryError(str(error)) from None
        raise


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def fingerprint(status: os.stat_result) -> dict[str, int]:
    """What changes whenever a file's content may have: its identity, size and modification and change times."""
    return {"device": status.st_dev, "inode": status.st_ino, "size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "ctime_ns": status.st_ctime_ns}


def vouched(info: dict, status: os.stat_result) -> bool:
    """Whether the sidecar's fingerprint stands for this file, taken long enough after its last change to trust."""
    recorded = info.get("fingerprint")
    verified_ns = info.get("verified_ns")
    return (isinstance(recorded, dict) and isinstance(verified_ns, int) and recorded == fingerprint(status)
            and status.st_ctime_ns <= verified_ns - RACY_SECONDS * 1e9)


@dataclass
class IndexHealth:
    """What opening an index found: 'ok', 'repaired' (n added / n removed) or 'rebuilt' (and why)."""

    state: str = "ok"
    reason: str = ""
    added: int = 0
    removed: int = 0


@dataclass
class ModalityIndex:
    """An hnswlib index plus the set of labels marked deleted in it."""

    path: Path
    dim: int
    index: object = None
    deleted: set[int] = field(default_factory=set)
    health: IndexHealth = field(default_factory=IndexHealth)
    dirty: bool = False
    synced: int | None = None  # the database version (vector_tallies) whose vectors this index holds, if known
    sidecar_info: dict = field(default_factory=dict)  # the sidecar the loaded file was checked against
    hashed: os.stat_result | None = None  # the loaded file's status, when this open hashed it whole
    hash_began_ns: int = 0  # when that hash began (no write after this escapes a change time check)
    timings: dict[str, float] = field(default_factory=dict)  # seconds of each stage of opening

    def refreshable(self, fields: dict[str, str]) -> bool:
        """Whether the sidecar should be rewritten: the file newly verified whole, the database version it holds
        now known, or `fields` (what a save records: space, model id, modality) missing from an older sidecar."""
        if self.index is None or self.dirty:
            return False
        fresh_fingerprint = self.hashed is not None and vouched(
            {"fingerprint": fingerprint(self.hashed), "verified_ns": self.hash_began_ns}, self.hashed)
        new_version = self.synced is not None and self.synced != self.sidecar_info.get("db_version")
        return fresh_fingerprint or new_version or any(self.sidecar_info.get(k) != v for k, v in fields.items())

    @property
    def sidecar(self) -> Path:
        return self.path.with_name(self.path.name + ".json")

    @property
    def live_count(self) -> int:
        return 0 if self.index is None else self.index.get_current_count() - len(self.deleted)

    def _new(self, capacity: int):
        import hnswlib

        index = hnswlib.Index(space="ip", dim=self.dim)
        mapped_before = self._mappings_if_large(capacity)
        with memory_errors():
            index.init_index(max_elements=max(capacity, 16), ef_construction=EF_CONSTRUCTION, M=M)
        if mapped_before is not None:  # its pages, not yet touched, come as huge pages: faster inserts and searches
            advise_new_mappings(mapped_before)
        index.set_ef(MIN_EF)
        return index

    def _mappings_if_large(self, capacity: int) -> set | None:
        """The process's mappings before an index of this capacity is allocated, when its block is large enough
        for huge pages (huge_pages.MIN_BYTES); None for a small one (reading them costs about 2 ms)."""
        per_item = 4 * self.dim + 8 * M + 16  # vector, level-0 links (2M of 4 bytes), label and link count
        return anonymous_mappings() if capacity * per_item >= MIN_BYTES else None

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        self.index = self._new(int(len(ids) * 1.25) + 16)
        self.deleted = set()
        if len(ids):
            with memory_errors():
                self.index.add_items(vectors, ids)
        self.dirty = True

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if len(ids) == 0:
            return
        if self.index is None:
            self.index = self._new(len(ids) + 16)
        needed = self.index.get_current_count() + len(ids)
        with memory_errors():
            if needed > self.index.get_max_elements():
                capacity = max(needed, int(self.index.get_max_elements() * 1.5))
                mapped_before = self._mappings_if_large(capacity)
                self.index.resize_index(capacity)
                if mapped_before is not None:  # pages touched from now on come as huge pages
                    advise_new_mappings(mapped_before)
            self.index.add_items(vectors, ids)
        self.dirty = True

    def remove(self, ids) -> None:
        for label in ids:
            label = int(label)
            if self.index is not None and label not in self.deleted:
                self.index.mark_deleted(label)
                self.deleted.add(label)
                self.dirty = True

    def load_checked(self, expected: dict[str, str], room: bool = True) -> str | None:
        """Load the file if its sidecar vouches for it; return why not otherwise. With `room`, keep the spare
        capacity it was saved with (for a writer: no resize, which holds the index twice, to add a few items);
        without, exactly its items (for a reader: 20% less memory).

        A writer may rename a new index and sidecar into place while we read: what hnswlib loads must be the very
        file (same inode) that was hashed against the sidecar read before it, else both are read again.
        """
        for _ in range(3):
            problem, sidecar_text, hashed = self._load_once(expected, room)
            if problem is None or sidecar_text is None:
                return problem
            if self._current(sidecar_text, hashed):
                return problem
        return "index file kept changing while being read"

    def holds(self, version: int, modality: str) -> bool:
        """Whether the loaded file was saved holding the database's vectors of this version and modality."""
        return (self.index is not None and not self.dirty and self.sidecar_info.get("modality") == modality
                and self.sidecar_info.get("db_version") == version)

    def _load_once(self, expected: dict[str, str], room: bool) -> tuple[str | None, str | None, os.stat_result | None]:
        """(problem or None, the sidecar text read, the stat of the file hashed)."""
        import hnswlib

        try:
            sidecar_text = self.sidecar.read_text()
            info = json.loads(sidecar_text)
        except FileNotFoundError:
            return "index file missing", None, None
        except (OSError, json.JSONDecodeError):
            return "index sidecar unreadable", None, None
        if info.get("format") != INDEX_FORMAT or info.get("dim") != self.dim:
            return "index format or dimension differs", None, None
        for key, value in expected.items():
            if info.get(key) != value:
                return f"index {key} differs", None, None
        began, self.hash_began_ns = time.perf_counter(), time.time_ns()
        try:
            with open(self.path, "rb") as handle:
                status = os.fstat(handle.fileno())
                if status.st_size != info.get("size"):
                    return "index file does not match its recorded size", sidecar_text, status
                trusted = vouched(info, status)
                if not trusted:
                    digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except FileNotFoundError:
            return "index file missing", None, None
        if not trusted and digest != info.get("sha256"):
            return "index file does not match its recorded hash", sidecar_text, status
        self.timings["check"] = time.perf_counter() - began
        began = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=self.dim)
        try:
            with memory_errors():  # too little memory is no reason to rebuild (which needs more): MemoryError
                index.load_index(str(self.path), max_elements=int(info.get("capacity" if room else "count", 0)))
        except (RuntimeError, ValueError) as error:
            return f"index file unreadable ({error})", sidecar_text, status
        self.timings["load"] = time.perf_counter() - began
        if not self._current(sidecar_text, status):
            return "index file replaced while being read", sidecar_text, status
        index.set_ef(MIN_EF)
        self.index = index
        self.deleted = set(int(label) for label in info.get("deleted", []))
        self.sidecar_info = info
        self.hashed = None if trusted else status
        return None, sidecar_text, status

    def _current(self, sidecar_text: str, hashed: os.stat_result) -> bool:
        """Whether the sidecar and index file on disk are still the ones read (no save happened meanwhile)."""
        try:
            now = os.stat(self.path)
            same_file = (now.st_ino, now.st_dev) == (hashed.st_ino, hashed.st_dev)
            return same_file and self.sidecar.read_text() == sidecar_text
        except OSError:
            return False

    def reconcile(self, ids: np.ndarray, fetch_vectors) -> None:
        """Make the live labels equal the database's ids: add what is missing, delete what is stale."""
        live = set(int(label) for label in self.index.get_ids_list()) - self.deleted
        wanted = set(int(label) for label in ids)
        missing = sorted(wanted - live)
        stale = sorted(live - wanted)
        revived = [label for label in missing if label in self.deleted]
        for label in revived:  # an id deleted and then re-used by SQLite: unmark it, then re-add its vector
            self.index.unmark_deleted(label)
            self.deleted.discard(label)
        if missing:
            self.add(np.array(missing, dtype=np.int64), fetch_vectors(missing))
        self.remove(stale)
        if missing or stale:
            self.health = IndexHealth("repaired", f"{len(missing)} added, {len(stale)} removed", len(missing), len(stale))

    def save(self, expected: dict[str, str]) -> None:
        """Write index then sidecar, each to a private temporary file, checked and fsynced, then renamed into place.

        The sidecar records `self.synced`, the database version the index holds (None: unknown, the next open
        compares). No fingerprint: the next open hashes the new file once.

        Hold the write lock: temporary files that a killed writer left are removed here. Raises OSError (the
        temporary files removed, the files in place untouched) when the storage refuses the write.
        """
        if self.index is None:
            return
        directory = self.path.parent
        remove_leftovers(directory, self.path.name + ".tmp*")
        remove_leftovers(directory, self.sidecar.name + ".tmp*")
        temporary = self.path.with_name(self.path.name + f".tmp{os.getpid()}")
        sidecar_temporary = self.sidecar.with_name(self.sidecar.name + f".tmp{os.getpid()}")
        try:
            os.close(create_private_file(temporary))  # hnswlib rewrites it in place, keeping the 0600 mode
            self.index.save_index(str(temporary))
            size, wanted = temporary.stat().st_size, self.index.index_file_size()
            if size != wanted:  # hnswlib does not check its writes: a full disk leaves a short file and no error
                raise OSError(errno.ENOSPC, f"index written incompletely ({size} of {wanted} bytes; disk full?)")
            info = {"format": INDEX_FORMAT, "dim": self.dim, "size": size, "sha256": file_sha256(temporary),
                    "capacity": self.index.get_max_elements(), "count": self.index.get_current_count(),
                    "deleted": sorted(self.deleted), "db_version": self.synced, **expected}
            self._write_sidecar(sidecar_temporary, info)
            fsync_path(temporary)
            os.replace(temporary, self.path)
            os.replace(sidecar_temporary, self.sidecar)
            fsync_path(directory)
        except BaseException:
            temporary.unlink(missing_ok=True)
            sidecar_temporary.unlink(missing_ok=True)
            raise
        self.dirty = False
        self.sidecar_info, self.hashed = info, None

    @staticmethod
    def _write_sidecar(temporary: Path, info: dict) -> None:
        with open(create_private_file(temporary), "w") as handle:
            handle.write(json.dumps(info))
            handle.flush()
            os.fsync(handle.fileno())

    def refresh_sidecar(self, fields: dict[str, str]) -> None:
        """Record in the sidecar what this open verified: the fingerprint of the file it hashed whole, the database
        version it found the index to hold, and `fields`. Hold the write lock; nothing is written if the file or its
        sidecar changed since they were read (OSError when the storage refuses the write)."""
        if not self.refreshable(fields):
            return
        try:
            on_disk = json.loads(self.sidecar.read_text())
            status = os.stat(self.path)
        except (OSError, json.JSONDecodeError):
            return
        if on_disk != self.sidecar_info or (self.hashed is not None and fingerprint(status) != fingerprint(self.hashed)):
            return
        info = {**on_disk, **fields}
        if self.hashed is not None:
            info.update(fingerprint=fingerprint(self.hashed), verified_ns=self.hash_began_ns)
        if self.synced is not None:
            info["db_version"] = self.synced
        remove_leftovers(self.path.parent, self.sidecar.name + ".tmp*")
        temporary = self.sidecar.with_name(self.sidecar.name + f".tmp{os.getpid()}")
        try:
            self._write_sidecar(temporary, info)
            os.replace(temporary, self.sidecar)
            fsync_path(self.path.parent)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self.sidecar_info, self.hashed = info, None

    def search(self, vector: np.ndarray, k: int) -> np.ndarray:
        """Up to k labels nearest to `vector` (fewer when fewer are live)."""
        k = min(k, self.live_count)
        if k <= 0:
            return np.zeros(0, dtype=np.int64)
        self.index.set_ef(max(MIN_EF, k))
        labels, _ = self.index.knn_query(vector[None, :], k=k)
        return labels[0].astype(np.int64)

    @property
    def needs_compaction(self) -> bool:
        count = 0 if self.index is None else self.index.get_current_count()
        return count > 0 and len(self.deleted) > COMPACT_FRACTION * count
