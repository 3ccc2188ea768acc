"""Moving a loaded index's memory onto transparent huge pages: it happens where Linux allows it, and changes no result.

Real memory of this process (a 64 MiB block mapped here) and a real gallery with real hnswlib indexes.
"""
from __future__ import annotations

import ctypes
import os
from pathlib import Path

import numpy as np
import pytest

from fvmatch.gallery import Gallery, NewItem
from fvmatch.gallery.huge_pages import anonymous_mappings, collapse_new_mappings
from fvmatch.gallery.index import ModalityIndex

THP_SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def transparent_huge_pages_usable() -> str | None:
    """Why this machine cannot collapse memory into huge pages, or None when it can."""
    if not THP_SETTING.exists():
        return "no transparent huge pages on this system"
    if "[never]" in THP_SETTING.read_text():
        return "transparent huge pages are disabled here ([never])"
    major, minor = (int(part) for part in os.uname().release.split(".")[:2])
    if (major, minor) < (6, 1):
        return f"kernel {os.uname().release} has no MADV_COLLAPSE (6.1+)"
    return None


def smaps() -> list[tuple[int, int, dict[str, list[str]]]]:
    """Each mapping of this process: (start, end, its /proc/self/smaps fields)."""
    mappings = []
    with open("/proc/self/smaps") as lines:
        for line in lines:
            fields = line.split()
            if "-" in fields[0] and not fields[0].endswith(":"):
                start, end = (int(part, 16) for part in fields[0].split("-"))
                mappings.append((start, end, {}))
            else:
                mappings[-1][2][fields[0].rstrip(":")] = fields[1:]
    return mappings


def huge_pages_under(address: int) -> int:
    """AnonHugePages of the mapping holding this address."""
    return next(int(fields["AnonHugePages"][0]) * 1024 for start, end, fields in smaps() if start <= address < end)


def vm_flags_of_new_mappings(before: set) -> list[list[str]]:
    """The VmFlags of each large anonymous mapping made since `before`."""
    new = {(start, end) for start, end in anonymous_mappings() - before if end - start >= 32 << 20}
    return [fields["VmFlags"] for start, end, fields in smaps() if (start, end) in new]


@pytest.mark.skipif(transparent_huge_pages_usable() is not None, reason=str(transparent_huge_pages_usable()))
def test_a_block_mapped_after_the_snapshot_is_moved_onto_huge_pages_and_keeps_its_bytes():
    before = anonymous_mappings()
    # malloc'd as hnswlib's index is (numpy would advise huge pages itself); over glibc's largest mmap threshold,
    # so a mapping of its own
    block = ctypes.create_string_buffer(64 << 20)
    pattern = bytes(range(256)) * 4096
    ctypes.memmove(ctypes.addressof(block), pattern, len(pattern))
    assert huge_pages_under(ctypes.addressof(block)) == 0
    moved = collapse_new_mappings(before)
    assert moved >= 32 << 20
    # the advice splits the mapping at the first huge page boundary: look inside
    assert huge_pages_under(ctypes.addressof(block) + (8 << 20)) >= 32 << 20
    assert ctypes.string_at(ctypes.addressof(block), len(pattern)) == pattern


def test_mappings_that_were_there_before_are_left_alone():
    block = ctypes.create_string_buffer(64 << 20)
    ctypes.memset(ctypes.addressof(block), 1, 64 << 20)
    assert collapse_new_mappings(anonymous_mappings()) == 0
    assert huge_pages_under(ctypes.addressof(block)) == 0


def test_a_gallery_opened_for_many_searches_answers_exactly_as_without(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(600, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Gallery.open(tmp_path / "g", create=True, model_id="model-a", embedding_dim=32) as gallery:
        with gallery.writer():
            gallery.add([NewItem(f"person{i // 3:03d}", "face", f"/evidence/{i}", f"sha-{i}", 100, 0.99, vector)
                         for i, vector in enumerate(vectors)])
            gallery.flush()
    queries = vectors[:20] + 0.3 * rng.normal(size=(20, 32)).astype(np.float32)
    answers = {}
    for huge_pages in (False, True):
        with Gallery.open(tmp_path / "g", huge_pages=huge_pages) as gallery:
            answers[huge_pages] = [[(c.identity, round(c.score, 6)) for c in gallery.search(q, ["face"], top=5)]
                                   for q in queries]
            assert ("huge_pages" in gallery.index("face", room=False).timings) == huge_pages
    assert answers[True] == answers[False]
    assert answers[True][0][0][0] == "person000"



@pytest.mark.skipif(transparent_huge_pages_usable() is not None, reason=str(transparent_huge_pages_usable()))
def test_a_new_index_is_advised_huge_pages_before_it_is_filled(tmp_path):
    before = anonymous_mappings()
    index = ModalityIndex(tmp_path / "face.hnsw", 256)._new(30_000)  # 30,000 x 1,292 bytes: 37 MiB, untouched
    flags = vm_flags_of_new_mappings(before)
    assert flags and all("hg" in mapping for mapping in flags)  # "hg": madvise(MADV_HUGEPAGE) holds for it
    vectors = np.eye(256, dtype=np.float32)[:20]
    index.add_items(vectors, np.arange(20))
    assert index.knn_query(vectors[3], k=1)[0][0][0] == 3


def test_an_unadvised_block_carries_no_huge_page_flag():
    before = anonymous_mappings()
    block = ctypes.create_string_buffer(64 << 20)
    assert vm_flags_of_new_mappings(before) and not any("hg" in f for f in vm_flags_of_new_mappings(before))
    del block
