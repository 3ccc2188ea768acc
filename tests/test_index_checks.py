"""What opening an index checks, and when: a whole-file hash once, a fingerprint after; the database version it holds.

Real SQLite files and real hnswlib indexes, vectors made here. RACY_SECONDS is lowered to 50 ms (and the tests wait
100 ms where a fingerprint is to be trusted) so that they take milliseconds, not seconds.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import numpy as np
import pytest

from fvmatch.gallery import Gallery, NewItem
from fvmatch.gallery import index as index_module
from fvmatch.gallery.index import index_path

DIM = 16


def unit(vectors) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def items(identities: int, first: int = 0, seed: int = 0) -> list[NewItem]:
    rng = np.random.default_rng(seed)
    made = []
    for person in range(first, first + identities):
        for item, modality in enumerate(("face", "voice", "face")):
            made.append(NewItem(f"person{person:03d}", modality, f"/evidence/{person}/{item}", f"sha-{person}-{item}",
                                100, 0.99, unit(rng.normal(size=DIM))))
    return made


@pytest.fixture()
def racy_50ms(monkeypatch):
    monkeypatch.setattr(index_module, "RACY_SECONDS", 0.05)


@pytest.fixture()
def directory(tmp_path, racy_50ms):
    with Gallery.open(tmp_path / "g", create=True, model_id="model-a", embedding_dim=DIM) as gallery:
        with gallery.writer():
            gallery.add(items(20))
            gallery.flush()
    return tmp_path / "g"


def sidecar(directory, modality: str = "face") -> dict:
    return json.loads(index_path(directory, "joint", modality).with_suffix(".hnsw.json").read_text())


def open_index(directory, modality: str = "face"):
    gallery = Gallery.open(directory)
    return gallery, gallery.index(modality)


def verified(directory) -> None:
    """Let the file age past RACY_SECONDS, then open it once: the whole-file hash records its fingerprint."""
    time.sleep(0.1)
    gallery, index = open_index(directory)
    gallery.close()
    assert "fingerprint" in sidecar(directory)


def test_the_first_open_after_a_save_hashes_the_file_and_records_its_fingerprint(directory):
    assert "fingerprint" not in sidecar(directory)  # a save records none: the next open hashes the new file
    time.sleep(0.1)
    gallery, index = open_index(directory)
    assert index.health.state == "ok" and index.timings["check"] > 0
    gallery.close()
    recorded = sidecar(directory)
    status = os.stat(index_path(directory, "joint", "face"))
    assert recorded["fingerprint"] == {"device": status.st_dev, "inode": status.st_ino, "size": status.st_size,
                                       "mtime_ns": status.st_mtime_ns, "ctime_ns": status.st_ctime_ns}
    assert recorded["sha256"] == hashlib.sha256(index_path(directory, "joint", "face").read_bytes()).hexdigest()
    assert recorded["modality"] == "face" and isinstance(recorded["db_version"], int)


def test_a_verified_file_opens_on_its_fingerprint_alone(directory, monkeypatch):
    verified(directory)

    def refuse(*args, **kwargs):
        raise AssertionError("hashed or compared although the fingerprint and version vouch for the file")

    monkeypatch.setattr(index_module.hashlib, "file_digest", refuse)
    monkeypatch.setattr(Gallery, "_ids", refuse)
    gallery, index = open_index(directory)
    assert index.health.state == "ok" and index.live_count == 40
    query = items(20)[3]  # person001's first face
    assert gallery.search(query.vectors["joint"], ["face"], top=1)[0].source_path == query.source_path
    gallery.close()


def test_a_fingerprint_taken_right_after_a_write_is_not_trusted(tmp_path, monkeypatch):
    monkeypatch.setattr(index_module, "RACY_SECONDS", 30.0)  # every file here changed less than 30 s ago
    with Gallery.open(tmp_path / "g", create=True, model_id="model-a", embedding_dim=DIM) as gallery:
        with gallery.writer():
            gallery.add(items(5))
            gallery.flush()
    for _ in range(2):  # each open hashes again: a write in the same clock tick would not change the times
        gallery, index = open_index(tmp_path / "g")
        assert index.hashed is not None
        gallery.close()
        assert "fingerprint" not in sidecar(tmp_path / "g")


def rewrite_in_place(path) -> None:
    """Same size, same inode, modification time put back: only the change time tells."""
    before = os.stat(path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2: len(data) // 2 + 64] = b"\xff" * 64
    with open(path, "r+b") as handle:
        handle.write(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def replace_by_copy(path) -> None:
    """A byte-identical copy renamed over the file: new inode, so hashed again (and found sound)."""
    shutil.copyfile(path, path.with_name("copy"))
    os.replace(path.with_name("copy"), path)


@pytest.mark.parametrize("damage, state", [("rewritten in place", "rebuilt"), ("truncated", "rebuilt"),
                                           ("replaced by a copy", "ok")])
def test_a_file_changed_after_it_was_verified_is_hashed_again(directory, damage, state):
    verified(directory)
    path = index_path(directory, "joint", "face")
    if damage == "rewritten in place":
        rewrite_in_place(path)
    elif damage == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(path.stat().st_size - 100)
    else:
        replace_by_copy(path)
    gallery, index = open_index(directory)
    assert index.health.state == state and index.live_count == 40
    for item in items(20)[::3]:
        assert gallery.search(item.vectors["joint"], ["face"], top=1)[0].source_path == item.source_path
    gallery.close()


def test_indexes_swapped_between_modalities_are_not_taken_for_each_other(directory):
    verified(directory)
    face, voice = index_path(directory, "joint", "face"), index_path(directory, "joint", "voice")
    for suffix in ("", ".json"):  # both files and both sidecars: each pair vouches for itself
        a, b = face.with_name(face.name + suffix), voice.with_name(voice.name + suffix)
        os.replace(a, a.with_name("swap"))
        os.replace(b, a)
        os.replace(a.with_name("swap"), b)
    gallery = Gallery.open(directory)
    assert gallery.index("face").health.state == "repaired" and gallery.index("face").live_count == 40
    for item in items(20):
        found = gallery.search(item.vectors["joint"], [item.modality], top=1)[0]
        assert found.source_path == item.source_path and found.modality == item.modality
    gallery.close()


def test_an_older_index_file_put_back_is_compared_with_the_database_and_repaired(directory):
    path = index_path(directory, "joint", "face")
    old = {name: path.with_name(name).read_bytes() for name in (path.name, path.name + ".json")}
    with Gallery.open(directory) as gallery, gallery.writer():
        gallery.add(items(2, first=20))
        gallery.remove_identity("person000")
        gallery.flush()
    for name, data in old.items():  # a backup of the index restored beside the newer database
        path.with_name(name).write_bytes(data)
    gallery, index = open_index(directory)
    assert index.health.state == "repaired" and (index.health.added, index.health.removed) == (4, 2)
    assert index.live_count == gallery.counts()["face"] == 42
    gallery.close()


def test_a_writer_s_save_records_the_version_so_the_next_open_compares_nothing(directory, monkeypatch):
    with Gallery.open(directory) as gallery, gallery.writer():
        gallery.add(items(3, first=20))
        gallery.remove_identity("person005")
        gallery.flush()
    monkeypatch.setattr(Gallery, "_ids", lambda *a, **k: pytest.fail("compared although the version vouches"))
    gallery, index = open_index(directory)
    assert index.health.state == "ok" and index.live_count == gallery.counts()["face"] == 44
    gallery.close()


def test_a_readers_repair_is_saved_with_the_version_it_repaired_to(directory, monkeypatch):
    with Gallery.open(directory) as gallery:  # an item committed with no index update, as after a crash
        gallery.db.execute("INSERT INTO media (identity_id, modality, source_path, sha256, size, quality, added)"
                           " VALUES (1, 'face', '/late', 'late', 1, 1, 'now')")
        gallery.db.execute("INSERT INTO vectors (media_id, space, model_id, embedding) VALUES"
                           " (last_insert_rowid(), 'joint', 'model-a', ?)", [unit(np.ones(DIM)).tobytes()])
    gallery, index = open_index(directory)
    assert index.health.state == "repaired" and index.health.added == 1
    gallery.close()
    monkeypatch.setattr(Gallery, "_ids", lambda *a, **k: pytest.fail("compared although the version vouches"))
    gallery, index = open_index(directory)
    assert index.health.state == "ok" and index.live_count == 41
    gallery.close()


def scanned_counts(gallery: Gallery) -> dict:
    count = lambda sql, *args: gallery.db.execute(sql, args).fetchone()[0]  # noqa: E731
    return {"face": count("SELECT count(*) FROM media WHERE modality = 'face'"),
            "voice": count("SELECT count(*) FROM media WHERE modality = 'voice'"),
            **{f"missing {space} {modality}": len(gallery.missing_vectors(space, modality))
               for space in gallery.spaces for modality in ("face", "voice")}}


def tallied_counts(gallery: Gallery) -> dict:
    counts = gallery.counts()
    return {"face": counts["face"], "voice": counts["voice"],
            **{f"missing {space} {modality}": gallery.missing_count(space, modality)
               for space in gallery.spaces for modality in ("face", "voice")}}


def test_the_tallies_agree_with_counting_after_every_kind_of_change(tmp_path):
    with Gallery.open(tmp_path / "g", create=True, model_id="model-a", embedding_dim=DIM) as gallery:
        with gallery.writer():
            gallery.add(items(6))
            gallery.add_spaces({"other": {"model_id": "other-model", "dim": 4}})
            assert tallied_counts(gallery) == scanned_counts(gallery) and gallery.missing_count("other", "face") == 12
            rows = gallery.db.execute("SELECT id FROM media WHERE modality = 'face' ORDER BY id LIMIT 5").fetchall()
            gallery.fill_vectors([(row[0], {"other": unit(np.ones(4))}) for row in rows])
            assert tallied_counts(gallery) == scanned_counts(gallery) and gallery.missing_count("other", "face") == 7
            gallery.remove_identity("person000")
            gallery.remove_identity("person003")
            assert tallied_counts(gallery) == scanned_counts(gallery)
            gallery.flush()
        before = gallery._tally("joint", "voice")[1]
        with pytest.raises(Exception, match="modality cannot change"):
            gallery.db.execute("UPDATE media SET modality = 'voice' WHERE modality = 'face'")
        assert gallery._tally("joint", "voice")[1] == before


def test_an_older_gallery_gets_its_tallies_counted_once_when_opened(tmp_path):
    directory = tmp_path / "g"
    with Gallery.open(directory, create=True, model_id="model-a", embedding_dim=DIM) as gallery:
        with gallery.writer():
            gallery.add(items(4))
            gallery.flush()
        for trigger in [row[0] for row in gallery.db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")]:
            gallery.db.execute(f"DROP TRIGGER {trigger}")
        gallery.db.execute("DROP TABLE media_tallies")
        gallery.db.execute("DROP TABLE vector_tallies")
        gallery.db.execute("DELETE FROM _migrations WHERE name = 'm004_tallies'")
    with Gallery.open(directory) as gallery:
        assert gallery.counts() == {"identities": 4, "face": 8, "voice": 4}
        assert tallied_counts(gallery) == scanned_counts(gallery)
        assert gallery.index("face").health.state == "ok" and gallery.index("face").live_count == 8


def test_an_older_fvmatch_s_sidecar_is_completed_once_then_trusted(directory, monkeypatch):
    path = index_path(directory, "joint", "face").with_suffix(".hnsw.json")
    older = {key: value for key, value in json.loads(path.read_text()).items() if key not in ("modality", "db_version")}
    path.write_text(json.dumps(older))  # as an fvmatch before the tallies saved it
    verified(directory)  # compared with the database once; the sidecar gets the modality and the version
    assert sidecar(directory)["modality"] == "face" and isinstance(sidecar(directory)["db_version"], int)
    monkeypatch.setattr(Gallery, "_ids", lambda *a, **k: pytest.fail("compared although the version vouches"))
    gallery, index = open_index(directory)
    assert index.health.state == "ok" and index.live_count == 40
    gallery.close()


def test_a_search_loads_an_index_without_spare_room_and_a_writer_with_it(directory):
    with Gallery.open(directory) as gallery, gallery.writer():  # growing past its size leaves room to spare
        gallery.add(items(1, first=20))
        gallery.flush()
    saved = sidecar(directory)
    assert saved["capacity"] > saved["count"] == 42
    with Gallery.open(directory) as gallery:
        gallery.search(items(1)[0].vectors["joint"], ["face"], top=1)
        assert gallery.index("face").index.get_max_elements() == 42  # a reader: exactly its items
    with Gallery.open(directory) as gallery, gallery.writer():
        gallery.add(items(1, first=50))
        assert gallery.index("face").index.get_max_elements() == saved["capacity"]  # a writer: added without resize
        assert gallery.index("face").live_count == 44
