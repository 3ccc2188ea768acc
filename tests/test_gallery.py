"""The gallery library with real SQLite files and real hnswlib indexes (vectors made here, no models)."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from fvmatch.errors import ModelMismatch
from fvmatch.gallery import Gallery, NewItem, NotAGallery, UnknownIdentity
from fvmatch.gallery.index import index_path

DIM = 16


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def clustered_items(identities: int, per_identity: int, seed: int = 0) -> list[NewItem]:
    """Items of each identity near its own random centre, faces and voices alternating."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.normal(size=(identities, DIM)))
    items = []
    for person in range(identities):
        for item in range(per_identity):
            vector = unit(centres[person] + 0.15 * rng.normal(size=DIM))
            modality = "face" if item % 2 == 0 else "voice"
            items.append(NewItem(f"person{person:03d}", modality, f"/evidence/{person}/{item}", f"sha-{person}-{item}",
                                 100, 0.99, vector))
    return items


@pytest.fixture()
def gallery(tmp_path):
    g = Gallery.open(tmp_path / "g", create=True, model_id="model-a", embedding_dim=DIM)
    items = clustered_items(30, 4)
    with g.writer():
        g.add(items)
        g.flush()
    yield g
    g.close()


def test_enrolled_item_finds_its_own_identity_first(gallery):
    items = clustered_items(30, 4)
    for item in items[::7]:
        top = gallery.search(item.vectors["joint"], [item.modality], top=5)
        assert top[0].identity == item.identity and top[0].score == pytest.approx(1.0, abs=1e-5)
        assert top[0].source_path == item.source_path
        assert [c.rank for c in top] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in zip(top, top[1:]))


def test_identities_are_ranked_by_their_best_item_across_modalities(gallery):
    query = clustered_items(30, 4)[9].vectors["joint"]  # person002, a voice item
    top = gallery.search(query, ["face", "voice"], top=30)
    assert len({c.identity for c in top}) == len(top) == 30
    assert top[0].identity == "person002" and top[0].modality == "voice"
    assert top[0].items_compared == 4


def test_removed_identity_disappears_from_results_and_counts(gallery):
    item = clustered_items(30, 4)[8]  # person002's first face
    with gallery.writer():
        assert gallery.remove_identity("person002") == {"face": 2, "voice": 2}
        gallery.flush()
    assert "person002" not in [c.identity for c in gallery.search(item.vectors["joint"], ["face", "voice"], top=30)]
    assert gallery.counts() == {"identities": 29, "face": 58, "voice": 58}
    with pytest.raises(UnknownIdentity, match="nobody: no such identity"):
        gallery.remove_identity("nobody")


@pytest.mark.parametrize("damage", ["delete", "corrupt", "stale"])
def test_a_damaged_index_is_repaired_on_open_without_losing_media(gallery, damage):
    directory = gallery.directory
    path = index_path(directory, "joint", "face")
    gallery.close()
    if damage == "delete":
        path.unlink()
    elif damage == "corrupt":
        data = bytearray(path.read_bytes())
        data[len(data) // 2 : len(data) // 2 + 64] = b"\xff" * 64
        path.write_bytes(bytes(data))
    else:  # an item committed to SQLite after the index was last saved, as after a crash between the two
        connection = sqlite3.connect(directory / "gallery.db")
        vector = unit(np.ones(DIM)).tobytes()
        media_id = connection.execute("INSERT INTO media (identity_id, modality, source_path, sha256, size, quality,"
                                      " added) VALUES (1, 'face', '/late', 'late', 1, 1, 'now')").lastrowid
        connection.execute("INSERT INTO vectors (media_id, space, model_id, embedding) VALUES (?, 'joint', 'model-a', ?)",
                           [media_id, vector])
        connection.commit()
        connection.close()
    reopened = Gallery.open(directory)
    info = reopened.info()
    face = info["indexes"]["joint face"]
    assert face["state"] == ("repaired" if damage == "stale" else "rebuilt")
    assert face["agrees_with_database"]
    expected_faces = 61 if damage == "stale" else 60
    assert info["counts"]["face"] == face["live_items"] == expected_faces
    for item in clustered_items(30, 4)[::2]:
        assert reopened.search(item.vectors["joint"], ["face"], top=1)[0].source_path == item.source_path
    # the repair was written back: the next open finds a sound index
    reopened.close()
    assert Gallery.open(directory).info()["indexes"]["joint face"]["state"] == "ok"


def test_a_second_process_sees_the_first_ones_commits(gallery):
    extra = NewItem("latecomer", "voice", "/evidence/late.wav", "sha-late", 10, 3.5, unit(np.arange(DIM) + 1.0))
    with gallery.writer():
        gallery.add([extra])
        gallery.flush()
    probe = (
        "import json, sys, numpy as np\n"
        "from fvmatch.gallery import Gallery\n"
        f"g = Gallery.open({str(gallery.directory)!r})\n"
        "q = np.array(json.loads(sys.argv[1]), dtype=np.float32)\n"
        "print(json.dumps([g.counts(), g.search(q, ['voice'], top=1)[0].identity]))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, json.dumps(extra.vectors["joint"].tolist())],
                            capture_output=True, text=True, timeout=60)
    counts, identity = json.loads(result.stdout)
    assert counts == {"identities": 31, "face": 60, "voice": 61} and identity == "latecomer"


def test_model_pin_is_enforced(gallery):
    gallery.check_model("model-a")
    with pytest.raises(ModelMismatch, match="pinned to model model-a, but model model-b was given"):
        gallery.check_model("model-b")


def test_opening_a_directory_that_is_not_a_gallery_is_refused(tmp_path):
    with pytest.raises(NotAGallery, match="no gallery here"):
        Gallery.open(tmp_path / "nothing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "gallery.db").write_text("not sqlite " * 100)
    with pytest.raises(NotAGallery, match="not a readable gallery database"):
        Gallery.open(tmp_path / "junk")


def test_gallery_files_are_readable_by_the_owner_only(gallery):
    assert gallery.directory.stat().st_mode & 0o077 == 0
    assert (gallery.directory / "gallery.db").stat().st_mode & 0o077 == 0


def test_writers_take_turns_and_a_waiting_writer_times_out(gallery):
    from fvmatch.gallery import GalleryLocked

    messages = []
    with gallery.writer(description="first writer"):
        with pytest.raises(GalleryLocked, match=r"another writer \(first writer\) still holds the write lock after 0.3 s"):
            with gallery.writer(timeout_seconds=0.3, on_wait=messages.append):
                pass
    assert messages == ["waiting for the gallery's write lock, held by first writer"]
    with gallery.writer(timeout_seconds=0.3):
        pass
