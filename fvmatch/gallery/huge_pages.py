"""Back an index's memory with transparent huge pages (Linux), for a process that will search it many times.

A search at a million items visits a few thousand vectors and links scattered over a gigabyte; with 4 KiB pages
most of those reads also miss the TLB. On 2 MiB pages the same searches measured 1.2-1.6x faster (README, "A million
items"). hnswlib allocates the index itself (malloc, which maps a block this large anew), so the block cannot be
advised before it is filled: the mappings that appeared while the index was loaded or built are found in
/proc/self/maps and collapsed into huge pages in place (madvise MADV_HUGEPAGE, then MADV_COLLAPSE, Linux 6.1+),
which measured 0.3-3.6 s per GiB (the kernel copies into free 2 MiB pages). Anywhere this is not possible (another system, THP disabled, an older kernel)
nothing happens: this changes speed only, never a result.
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


def collapse_new_mappings(before: set[tuple[int, int]]) -> int:
    """Collapse into huge pages the large anonymous mappings that are not in `before`; return how many more bytes
    of the process are on huge pages (a collapse may succeed for part of a mapping only)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    already = huge_page_bytes()
    for start, end in sorted(anonymous_mappings() - before):
        start = (start + HUGE_PAGE - 1) // HUGE_PAGE * HUGE_PAGE  # whole huge pages inside the mapping
        end = end // HUGE_PAGE * HUGE_PAGE
        if end - start < MIN_BYTES:
            continue
        # MADV_HUGEPAGE lets the kernel keep them as huge pages where THP is "madvise" only; either call fails
        # harmlessly (EINVAL) where it is not supported
        if madvise(start, end - start, MADV_HUGEPAGE) == 0:
            madvise(start, end - start, MADV_COLLAPSE)
    return max(0, huge_page_bytes() - already)


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
