"""Moving a loaded index's memory onto transparent huge pages: it happens where Linux allows it, and changes no result.

Real memory (64 MiB blocks, a new hnswlib index) of fresh processes, and a real gallery with real hnswlib indexes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
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


def in_fresh_process(body: str) -> dict:
    """Run `body` (which sets `result`) in a new interpreter with this module's helpers, and return `result`.

    A fresh heap, because in a long process glibc may hand a large block back out of memory it already holds (a
    block freed earlier), where no new mapping appears: such a block is not found, and stays on 4 KiB pages (README).
    """
    code = (f"import ctypes, json, sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
            f"from test_huge_pages import *\n{textwrap.dedent(body)}\nprint(json.dumps(result))")
    finished = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.splitlines()[-1])


@pytest.mark.skipif(transparent_huge_pages_usable() is not None, reason=str(transparent_huge_pages_usable()))
def test_a_block_mapped_after_the_snapshot_is_moved_onto_huge_pages_and_keeps_its_bytes():
    result = in_fresh_process("""
        before = anonymous_mappings()
        block = ctypes.create_string_buffer(64 << 20)  # malloc'd as hnswlib's index is (numpy advises by itself)
        pattern = bytes(range(256)) * 4096
        ctypes.memmove(ctypes.addressof(block), pattern, len(pattern))
        inside = ctypes.addressof(block) + (8 << 20)  # the advice splits the mapping at its first huge page boundary
        result = {"huge_before": huge_pages_under(inside), "moved": collapse_new_mappings(before),
                  "huge_after": huge_pages_under(inside),
                  "kept": ctypes.string_at(ctypes.addressof(block), len(pattern)) == pattern}
    """)
    assert result["huge_before"] == 0 and result["kept"]
    assert result["moved"] >= 32 << 20 and result["huge_after"] >= 32 << 20


def test_mappings_that_were_there_before_are_left_alone():
    result = in_fresh_process("""
        block = ctypes.create_string_buffer(64 << 20)
        ctypes.memset(ctypes.addressof(block), 1, 64 << 20)
        result = {"moved": collapse_new_mappings(anonymous_mappings()),
                  "huge": huge_pages_under(ctypes.addressof(block) + (8 << 20))}
    """)
    assert result == {"moved": 0, "huge": 0}


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
def test_a_new_index_is_advised_huge_pages_before_it_is_filled():
    result = in_fresh_process("""
        import numpy as np
        before = anonymous_mappings()
        index = ModalityIndex(Path("unsaved.hnsw"), 256)._new(30_000)  # 30,000 x 1,292 bytes: 37 MiB, untouched
        flags = vm_flags_of_new_mappings(before)
        vectors = np.eye(256, dtype=np.float32)[:20]
        index.add_items(vectors, np.arange(20))
        result = {"flags": flags, "nearest": int(index.knn_query(vectors[3], k=1)[0][0][0])}
    """)
    assert result["flags"] and all("hg" in flags for flags in result["flags"])  # "hg": MADV_HUGEPAGE holds
    assert result["nearest"] == 3


def test_an_unadvised_block_carries_no_huge_page_flag():
    result = in_fresh_process("""
        before = anonymous_mappings()
        block = ctypes.create_string_buffer(64 << 20)
        result = vm_flags_of_new_mappings(before)
    """)
    assert result and not any("hg" in flags for flags in result)
