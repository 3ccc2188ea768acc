"""Building an index with and without huge pages advised for its memory, side by side in one run.

Run: .venv/bin/python benchmarks/index_build.py [--items 200000] [--rounds 2]

What a rebuild does (a missing or damaged index file, `gallery reindex`, compaction): ModalityIndex.build of N
clustered 256-D vectors (benchmarks/gallery_search.py's generator), with the gallery's HNSW settings and all cores.
"advised" is the library as it is (the new block advised MADV_HUGEPAGE before it is filled: huge_pages.py); "4 KiB"
the same with the advice turned off. Rounds alternate (4 KiB first), each build in this one process; prints the
seconds of each, their medians and the ratio, and how much of the process was on huge pages after each build.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from gallery_search import PER_IDENTITY, items_of, make_identities

from fvmatch.gallery import index as index_module
from fvmatch.gallery.huge_pages import huge_page_bytes


def build_seconds(vectors: np.ndarray, directory: Path, advised: bool) -> tuple[float, int]:
    real_advice = index_module.advise_new_mappings
    if not advised:
        index_module.advise_new_mappings = lambda before: 0
    try:
        index = index_module.ModalityIndex(directory / "face.hnsw", vectors.shape[1])
        started = time.perf_counter()
        index.build(np.arange(1, len(vectors) + 1), vectors)
        seconds = time.perf_counter() - started
        on_huge = huge_page_bytes()
        del index
        return seconds, on_huge
    finally:
        index_module.advise_new_mappings = real_advice


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    centres = make_identities(args.items // PER_IDENTITY, rng)
    vectors = items_of(np.repeat(centres, PER_IDENTITY, axis=0), rng)
    print(f"building {len(vectors):,} clustered {vectors.shape[1]}-D items, HNSW M={index_module.M} "
          f"ef_construction={index_module.EF_CONSTRUCTION}, {args.rounds} rounds, alternating")
    print("| round | pages | build s | process on huge pages MiB |")
    print("|---|---|---|---|")
    seconds: dict[str, list[float]] = {"4 KiB": [], "advised": []}
    with tempfile.TemporaryDirectory() as directory:
        for round_number in range(1, args.rounds + 1):
            for pages in ("4 KiB", "advised"):
                took, on_huge = build_seconds(vectors, Path(directory), pages == "advised")
                seconds[pages].append(took)
                print(f"| {round_number} | {pages} | {took:.1f} | {on_huge / 2**20:,.0f} |", flush=True)
    plain, advised = (float(np.median(seconds[pages])) for pages in ("4 KiB", "advised"))
    print(f"\nmedian build: {plain:.1f} s on 4 KiB pages, {advised:.1f} s advised huge pages: {plain / advised:.2f}x")


if __name__ == "__main__":
    main()
