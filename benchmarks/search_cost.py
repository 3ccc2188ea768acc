"""Where a search's time goes at 1M: vectors compared per query, and the time of each, against an index that fits
the processor's cache.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/search_cost.py --gallery DIR --space dlib-face --work WORK
         [--variants hnsw:32:200 faiss-flat:32:200] [--efs 100 160 224] [--small 20000]

For each variant of benchmarks/index_variants.py (its file in WORK, built there if missing), the same kind of index
is also built in memory over the first `--small` stored vectors (20,000 128-D items with their links take about
15 MiB: they stay in a 32 MiB L3 cache). Both are asked the same kind of question (a stored item moved by noise, the
100 items a search fetches) at each ef, in blocks of all queries (alternating which goes first), both on huge pages.
Printed per ef: p50 ms of the index call at 1M and in cache; for faiss variants also the vectors compared per query
(faiss's own counter, hnsw_stats.ndis) and the time per vector compared. hnswlib keeps no such counter; faiss-cpu is
not a dependency of fvmatch, so the counted columns need it installed (for example `pip install --target DIR
faiss-cpu` and PYTHONPATH=DIR).

A search's time at 1M over its time in cache, per vector compared, is what memory adds to the work of comparing
(the visited check, the distance, the candidate heaps): it says whether fewer bytes per vector or fewer vectors
compared would shorten a search.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from fvmatch.gallery.huge_pages import anonymous_mappings, collapse_new_mappings
from gallery_search import noisy_queries
from index_variants import FETCH, build_variant, faiss_hnsw, hnsw_index, searcher, stored_vectors, variant_path


def build_in_memory(kind: str, m: int, efc: int, vectors: np.ndarray):
    """An index of this kind over `vectors` in memory, moved onto huge pages as the large one is (else the smaller
    index would also pay for address translation), and a function (vector, ef) -> labels."""
    before = anonymous_mappings()
    call = _build_in_memory(kind, m, efc, vectors)
    collapse_new_mappings(before)
    return call


def _build_in_memory(kind: str, m: int, efc: int, vectors: np.ndarray):
    if kind.startswith("faiss-"):
        import faiss

        index = faiss_hnsw(vectors, m, efc, kind.removeprefix("faiss-"))
        index.add(vectors)
        return lambda vector, ef: index.search(vector[None, :], FETCH,
                                               params=faiss.SearchParametersHNSW(efSearch=ef))[1][0]
    index = hnsw_index(np.arange(len(vectors)), vectors, m, efc)

    def call(vector, ef):
        index.set_ef(max(ef, FETCH))
        return index.knn_query(vector[None, :], k=FETCH)[0][0]
    return call


def compared(kind: str):
    """A function that runs a call and returns the vectors it compared (faiss), or None where nothing counts."""
    if not kind.startswith("faiss-"):
        return None
    import faiss

    def count(call) -> int:
        faiss.cvar.hnsw_stats.reset()
        call()
        return int(faiss.cvar.hnsw_stats.ndis)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=Path, required=True)
    parser.add_argument("--space", default="dlib-face")
    parser.add_argument("--modality", default="face")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--variants", nargs="+", default=["hnsw:32:200", "faiss-flat:32:200"])
    parser.add_argument("--efs", type=int, nargs="+", default=[100, 160, 224])
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ids, vectors = stored_vectors(args.gallery, args.space, args.modality, args.work)
    rng = np.random.default_rng(args.seed)
    large_queries = noisy_queries(vectors, args.queries, rng)
    small_queries = noisy_queries(vectors[:args.small], args.queries, rng)
    print(f"{len(ids):,} {args.modality} vectors of {args.space} against the first {args.small:,}; {args.queries} "
          "queries; p50 ms of the index call, and where counted, vectors compared per query and ns per vector")
    for variant in args.variants:
        kind, m, efc = variant.split(":")
        path = variant_path(args.work, args.space, variant)
        if not path.exists():
            print(f"{variant}: built in {build_variant(variant, ids, vectors, args.work, args.space):,.0f} s",
                  flush=True)
        large = searcher(path, vectors.shape[1])
        small = build_in_memory(kind, int(m), int(efc), vectors[:args.small])
        count = compared(kind)
        everything, cached = f"{len(ids):,} items", f"{args.small:,} (in cache)"
        print(f"\n{variant}\n| ef | {everything}: p50 ms | {cached}: p50 ms | ratio |"
              + (f" {everything}: compared, ns each | {cached}: compared, ns each |" if count else ""))
        print("|---|---|---|---|" + ("---|---|" if count else ""))
        for ef in args.efs:
            times, counts = ([], []), ([], [])
            for sweep in range(2):  # each index a block of queries (interleaving would evict the small one)
                for which in ((0, 1) if sweep == 0 else (1, 0)):
                    call, queries = ((large, large_queries), (small, small_queries))[which]
                    for query in queries:
                        started = time.perf_counter()
                        call(query, ef)
                        times[which].append((time.perf_counter() - started) * 1000)
                    if count:
                        counts[which].extend(count(lambda: call(query, ef)) for query in queries)
            p50 = [float(np.percentile(t, 50)) for t in times]
            cells = [f"{p50[0]:.2f}", f"{p50[1]:.2f}", f"{p50[0] / p50[1]:.2f}x"]
            if count:
                cells += [f"{np.median(c):,.0f}, {p * 1e6 / np.median(c):.0f}" for c, p in zip(counts, p50)]
            print(f"| {ef} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
