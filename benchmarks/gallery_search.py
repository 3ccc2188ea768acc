"""Gallery enrol rate, identify latency and recall against exact search, at 10k and 100k items (or 1M).

Run: .venv/bin/python benchmarks/gallery_search.py [--sizes 10000 100000 1000000] [--queries 500]
         [--efs 64 128 256] [--m M] [--ef-construction E]
     .venv/bin/python benchmarks/gallery_search.py --gallery DIR [--space joint] [--modality face] [--efs ...]

Vectors: 256-D unit vectors clustered like identities (PITFALLS.md): each identity's centre lies near a random
32-D subspace of the space, 4 items per identity scattered around it (same-identity cosine about 0.65).
Items are inserted through the library (Gallery.add in batches of 1,000, one transaction each, then flush),
so the enrol rate includes SQLite, the HNSW insertions and the index save. Queries are fresh items of enrolled
identities. Exact search (numpy over all stored vectors) runs on the same queries in the same run:
- item recall@10: share of the exact 10 nearest items that HNSW's top 10 also holds;
- identity recall@10: share of the exact top-10 identities (ranked by best item) that Gallery.search lists;
- identity hit@1 / hit@10: the query's own identity ranked first / in the top 10 (what an analyst sees).
A second table sweeps the search ef (`--efs`): the index asked for the 100 items a search fetches, those re-scored
exactly, item recall@10 of their top 10 and the p50/p99 of the index call alone. `--m` and `--ef-construction`
build with other HNSW settings than the gallery's (to compare them); the first table then uses the gallery's search
ef (index.MIN_EF). Also printed: the build's seconds and the index file's size. Each sweep runs twice in one
process: on the index's memory as loaded (4 KiB pages), then after moving it onto huge pages (what
Gallery.open(huge_pages=True) does; where the system cannot, the second run is left out), with the ratio.

`--gallery DIR` measures an existing gallery instead (one built by benchmarks/gallery_cold_query.py --keep, which
takes long at 1M, so that the latencies can be taken later on a quiet machine): the ef sweep on its index of
(`--space`, `--modality`), with the HNSW settings it was built with, and whole `Gallery.search` calls at the
gallery's own search ef. Queries are stored items moved by noise (cosine about 0.8 to the item, as a fresh item of
an enrolled identity), exact search over all its stored vectors.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fvmatch.gallery import Gallery, NewItem
from fvmatch.gallery import index as index_module
from fvmatch.gallery.huge_pages import anonymous_mappings, collapse_new_mappings

DIM = 256
SUBSPACE = 32
PER_IDENTITY = 4


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def noisy_queries(vectors: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """Stored vectors moved by noise to a cosine of about 0.8 to the item (as a fresh item of an enrolled identity)."""
    picked = rng.choice(len(vectors), size=count, replace=False)
    return unit(vectors[picked] + 0.047 * rng.normal(size=(count, vectors.shape[1])) * np.sqrt(256 / vectors.shape[1]))


def make_identities(count: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.linalg.qr(rng.normal(size=(DIM, SUBSPACE)))[0]  # DIM x SUBSPACE, orthonormal
    return unit(rng.normal(size=(count, SUBSPACE)) @ basis.T + 0.1 * rng.normal(size=(count, DIM)))


def items_of(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One noisy item per centre: cosine to the centre about 0.8, so two items of one identity about 0.65."""
    return unit(centres + 0.047 * rng.normal(size=centres.shape))


def run(size: int, queries: int, seed: int, efs: list[int]) -> tuple[dict, list[dict]]:
    rng = np.random.default_rng(seed)
    identities = size // PER_IDENTITY
    centres = make_identities(identities, rng)
    owner = np.repeat(np.arange(identities), PER_IDENTITY)
    vectors = items_of(centres[owner], rng)
    mapped_before = anonymous_mappings()  # the index's block is mapped after this (huge pages: sweep_ef)
    with tempfile.TemporaryDirectory() as directory:
        gallery = Gallery.open(Path(directory) / "g", create=True, model_id="benchmark", embedding_dim=DIM)
        start = time.perf_counter()
        with gallery.writer():
            for first in range(0, size, 1000):
                gallery.add([NewItem(f"id{owner[i]:07d}", "face", f"/bench/{i}", f"sha{i}", 0, 1.0, vectors[i])
                             for i in range(first, min(first + 1000, size))])
            gallery.flush()
        enrol_seconds = time.perf_counter() - start
        same = float(np.mean(np.sum(vectors[0::PER_IDENTITY] * vectors[1::PER_IDENTITY], axis=1)))

        media_ids = np.arange(1, size + 1)  # AUTOINCREMENT ids in insertion order
        query_owner = rng.integers(identities, size=queries)
        query_vectors = items_of(centres[query_owner], rng)
        gallery.search(query_vectors[0], ["face"], top=10)  # warm-up: loads the index
        index = gallery.index("face")
        file_bytes = index.path.stat().st_size
        latencies, item_recall, identity_recall, hit1, hit10, exact_ms, exact_items = [], [], [], [], [], [], []
        for query, true_owner in zip(query_vectors, query_owner):
            t0 = time.perf_counter()
            candidates = gallery.search(query, ["face"], top=10)
            latencies.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            scores = vectors @ query
            exact = set(media_ids[np.argpartition(-scores, 10)[:10]].tolist())
            best = np.full(identities, -np.inf, dtype=np.float32)
            np.maximum.at(best, owner, scores)
            exact_identities = set(np.argpartition(-best, 10)[:10].tolist())
            exact_ms.append((time.perf_counter() - t0) * 1000)
            exact_items.append(exact)
            hnsw_items = index.search(query, 10)
            item_recall.append(len(exact & set(hnsw_items.tolist())) / 10)
            found = [int(c.identity[2:]) for c in candidates]
            identity_recall.append(len(exact_identities & set(found)) / 10)
            hit1.append(found[0] == true_owner)
            hit10.append(true_owner in found)
        position = dict(zip(media_ids.tolist(), range(size)))  # media id -> row of `vectors`
        sweep = sweep_ef(index.index, query_vectors, exact_items, vectors, position, efs, mapped_before)
        gallery.close()
    return ({"items": size, "identities": identities, "same_identity_cosine": same,
             "enrol_items_per_s": size / enrol_seconds, "enrol_seconds": enrol_seconds, "index_mib": file_bytes / 2**20,
             "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
             "exact_p50_ms": float(np.percentile(exact_ms, 50)),
             "item_recall10": float(np.mean(item_recall)), "identity_recall10": float(np.mean(identity_recall)),
             "hit1": float(np.mean(hit1)), "hit10": float(np.mean(hit10))}, sweep)


def sweep_ef(hnsw, query_vectors: np.ndarray, exact: list[set], vectors: np.ndarray, position: dict[int, int],
             efs: list[int], mapped_before: set, whole_search=None) -> list[dict]:
    """The index call a search makes (over-fetch) and the exact re-score, at each search ef: first on the index's
    memory as loaded (4 KiB pages), then once more after moving it onto huge pages (huge_pages.py), in one process.
    `whole_search()` (optional) times whole Gallery.search calls at the gallery's own ef, in both."""
    fetch = gallery_fetch()
    rows = []
    for pages in ("4 KiB", "huge"):
        if pages == "huge":
            started = time.perf_counter()
            moved = collapse_new_mappings(mapped_before)
            print(f"moved {moved / 2**20:,.0f} MiB onto huge pages in {time.perf_counter() - started:.2f} s",
                  flush=True)
            if not moved:
                break
        for ef in efs:
            hnsw.set_ef(max(ef, fetch))
            recalls, call_ms = [], []
            for query, truth in zip(query_vectors, exact):
                t0 = time.perf_counter()
                labels, _ = hnsw.knn_query(query[None, :], k=fetch)
                call_ms.append((time.perf_counter() - t0) * 1000)
                labels = labels[0].astype(np.int64)
                stored = np.array([position[int(label)] for label in labels])
                rescored = labels[np.argsort(-(vectors[stored] @ query))[:10]]
                recalls.append(len(truth & set(rescored.tolist())) / 10)
            rows.append({"items": len(vectors), "pages": pages, "ef": max(ef, fetch),
                         "item_recall10": float(np.mean(recalls)), "p50_ms": float(np.percentile(call_ms, 50)),
                         "p99_ms": float(np.percentile(call_ms, 99))})
        if whole_search is not None:
            hnsw.set_ef(max(index_module.MIN_EF, fetch))
            latencies = whole_search()
            rows.append({"items": len(vectors), "pages": pages, "item_recall10": float("nan"),
                         "ef": f"Gallery.search at {max(index_module.MIN_EF, fetch)}",
                         "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99))})
    return rows


def search_latencies(gallery: Gallery, query_vectors: np.ndarray, modality: str, space: str) -> list[float]:
    """Milliseconds of whole Gallery.search calls (index call, candidates' fetch from SQLite, exact re-score)."""
    latencies = []
    for query in query_vectors:
        t0 = time.perf_counter()
        gallery.search(query, [modality], top=10, space=space)
        latencies.append((time.perf_counter() - t0) * 1000)
    return latencies


def print_sweep(rows: list[dict]) -> None:
    """The ef sweep as a table, each latency beside the same ef's on huge pages (their ratio: 4 KiB / huge)."""
    print(f"\nsearch ef sweep: the index asked for {gallery_fetch()} items, re-scored exactly; recall@10 of their top 10")
    print("| items | ef | item_recall10 | index call p50 / p99 ms, 4 KiB pages | on huge pages | p50 ratio |")
    print("|---|---|---|---|---|---|")
    huge = {row["ef"]: row for row in rows if row["pages"] == "huge"}
    for row in rows:
        if row["pages"] != "4 KiB":
            continue
        other = huge.get(row["ef"])
        recall = "" if np.isnan(row["item_recall10"]) else f"{row['item_recall10']:.4f}"
        on_huge = f"{other['p50_ms']:.2f} / {other['p99_ms']:.2f}" if other else "n/a"
        ratio = f"{row['p50_ms'] / other['p50_ms']:.2f}x" if other else ""
        print(f"| {row['items']:,} | {row['ef']} | {recall} | {row['p50_ms']:.2f} / {row['p99_ms']:.2f} | {on_huge} | "
              f"{ratio} |", flush=True)


def gallery_fetch() -> int:
    """How many items a search for the top 10 identities asks the index for."""
    from fvmatch.gallery.gallery import MIN_FETCH, OVER_FETCH

    return max(MIN_FETCH, 10 * OVER_FETCH)


def measure_gallery(directory: Path, space: str, modality: str, queries: int, seed: int, efs: list[int]) -> None:
    """The ef sweep and Gallery.search latency of an existing gallery's index (see the module's docstring)."""
    rng = np.random.default_rng(seed)
    with Gallery.open(directory) as gallery:
        started = time.perf_counter()
        ids, vectors = gallery._all_vectors(modality, space)
        read_seconds = time.perf_counter() - started
        started = time.perf_counter()
        mapped_before = anonymous_mappings()
        index = gallery.index(modality, space, room=False)
        load_seconds = time.perf_counter() - started
        hnsw = index.index
        query_vectors = noisy_queries(vectors, queries, rng)
        exact = [set(ids[np.argpartition(-(vectors @ query), 10)[:10]].tolist()) for query in query_vectors]
        position = {int(media_id): row for row, media_id in enumerate(ids)}
        print(f"gallery {directory}: {len(ids):,} {modality} items in {space} ({vectors.shape[1]}-D), HNSW M="
              f"{hnsw.M} ef_construction={hnsw.ef_construction}; {queries} queries; stored vectors read in "
              f"{read_seconds:.1f} s, index loaded in {load_seconds:.1f} s")
        print_sweep(sweep_ef(hnsw, query_vectors, exact, vectors, position, efs, mapped_before,
                             lambda: search_latencies(gallery, query_vectors, modality, space)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--efs", type=int, nargs="+", default=[100, 128, 192, 256])
    parser.add_argument("--m", type=int, help=f"HNSW M (the gallery's: {index_module.M})")
    parser.add_argument("--ef-construction", type=int,
                        help=f"HNSW ef_construction (the gallery's: {index_module.EF_CONSTRUCTION})")
    parser.add_argument("--gallery", type=Path, help="measure this existing gallery instead of building new ones")
    parser.add_argument("--space", default="joint", help="with --gallery: the space whose index is measured")
    parser.add_argument("--modality", default="face", help="with --gallery: the modality whose index is measured")
    args = parser.parse_args()
    if args.gallery:
        measure_gallery(args.gallery, args.space, args.modality, args.queries, args.seed, args.efs)
        return
    index_module.M = args.m or index_module.M
    index_module.EF_CONSTRUCTION = args.ef_construction or index_module.EF_CONSTRUCTION
    results = [run(size, args.queries, args.seed, args.efs) for size in args.sizes]
    columns = [("items", "{:,}"), ("same_identity_cosine", "{:.2f}"), ("enrol_seconds", "{:,.0f}"),
               ("enrol_items_per_s", "{:,.0f}"), ("index_mib", "{:,.0f}"), ("p50_ms", "{:.2f}"), ("p99_ms", "{:.2f}"),
               ("exact_p50_ms", "{:.2f}"), ("item_recall10", "{:.3f}"), ("identity_recall10", "{:.3f}"),
               ("hit1", "{:.3f}"), ("hit10", "{:.3f}")]
    print(f"gallery search benchmark: {args.queries} queries per size, HNSW M={index_module.M} "
          f"ef_construction={index_module.EF_CONSTRUCTION} search ef>={index_module.MIN_EF}, top 10 identities "
          f"(over-fetch {gallery_fetch()} items, exact re-score)")
    print("| " + " | ".join(name for name, _ in columns) + " |")
    print("|" + "---|" * len(columns))
    for row, _ in results:
        print("| " + " | ".join(fmt.format(row[name]) for name, fmt in columns) + " |")
    for _, sweep in results:
        print_sweep(sweep)


if __name__ == "__main__":
    main()
