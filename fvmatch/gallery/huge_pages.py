"""Back an index's memory with transparent huge pages (Linux): searches and insertions at a million items faster.

A search at a million items visits a few thousand vectors and links scattered over a gigabyte; with 4 KiB pages
most of those reads also miss the TLB. On 2 MiB pages the same searches measured 1.3-1.8x faster (README, "A
million items"), and inserting, which searches, gains too. hnswlib allocates the index itself (malloc, which maps
a block this large anew unless it holds enough freed memory already), so its mappings are found in /proc/self/maps,
as those that appeared since a snapshot (a block handed out of memory the process held is not found, and stays on
4 KiB pages):
- a block just allocated and not yet filled (a new or resized index) is advised (madvise MADV_HUGEPAGE): its pages
  then come as huge pages when first touched, at no extra cost;
- a block already filled (an index loaded from its file) must be collapsed in place (MADV_COLLAPSE, Linux 6.1+),
  which measured 0.3-3.6 s per GiB (the kernel copies into free 2 MiB pages): done only when asked
  (Gallery.open(huge_pages=True)), for a process that will search many times.
Anywhere this is not possible (another system, THP disabled, an older kernel) nothing happens: this changes speed
only, never a result.
"""
from __future__ import annotations

import ctypes
import sys

MADV_HUGEPAGE = 14
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20
MIN_BYTES = 32 << 20  # smaller mappings are not an index's block, and gain little


def anonymous_mappings() -> set[tuple[int, int]]:
    """(start, end) of the process's private anonymous writable mappings; empty where /proc is not readable."""
    mappings = set()
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                fields = line.split()
                if len(fields) == 5 and fields[1].startswith("rw") and fields[1].endswith("p"):
                    start, end = (int(address, 16) for address in fields[0].split("-"))
                    mappings.add((start, end))
    except OSError:
        pass
    return mappings


def advise_new_mappings(before: set[tuple[int, int]], collapse: bool = False) -> int:
    """Advise huge pages for the large anonymous mappings that are not in `before` (and, with `collapse`, move their
    pages already touched onto huge pages now); return how many more bytes of the process are on huge pages."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    already = huge_page_bytes() if collapse else 0
    for start, end in sorted(anonymous_mappings() - before):
        start = (start + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE  # whole huge pages inside the mapping
        end = end // HUGE_PAGE * HUGE_PAGE
        if end - start < MIN_BYTES:
            continue
        # MADV_HUGEPAGE lets the kernel use huge pages where THP is "madvise" only; either call fails harmlessly
        # (EINVAL) where it is not supported, and a collapse may succeed for part of a mapping only
        if madvise(start, end - start, MADV_HUGEPAGE) == 0 and collapse:
            madvise(start, end - start, MADV_COLLAPSE)
    return max(0, huge_page_bytes() - already) if collapse else 0


def collapse_new_mappings(before: set[tuple[int, int]]) -> int:
    """Move the large anonymous mappings that are not in `before` onto huge pages now; return the bytes moved."""
    return advise_new_mappings(before, collapse=True)


def huge_page_bytes() -> int:
    """The process's anonymous memory on huge pages now (AnonHugePages), 0 where it cannot be read."""
    try:
        with open("/proc/self/smaps_rollup") as rollup:
            for line in rollup:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
