"""Gallery enrol rate, identify latency and recall against exact search, at 10k and 100k items.

Run: .venv/bin/python benchmarks/gallery_search.py [--sizes 10000 100000] [--queries 500]

Vectors: 256-D unit vectors clustered like identities (PITFALLS.md): each identity's centre lies near a random
32-D subspace of the space, 4 items per identity scattered around it (same-identity cosine about 0.65).
Items are inserted through the library (Gallery.add in batches of 1,000, one transaction each, then flush),
so the enrol rate includes SQLite, the HNSW insertions and the index save. Queries are fresh items of enrolled
identities. Exact search (numpy over all stored vectors) runs on the same queries in the same run:
- item recall@10: share of the exact 10 nearest items that HNSW's top 10 also holds;
- identity recall@10: share of the exact top-10 identities (ranked by best item) that Gallery.search lists;
- identity hit@1 / hit@10: the query's own identity ranked first / in the top 10 (what an analyst sees).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from fvmatch.gallery import Gallery, NewItem

DIM = 256
SUBSPACE = 32
PER_IDENTITY = 4


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def make_identities(count: int, rng: np.random.Generator) -> np.ndarray:
    basis = np.linalg.qr(rng.normal(size=(DIM, SUBSPACE)))[0]  # DIM x SUBSPACE, orthonormal
    return unit(rng.normal(size=(count, SUBSPACE)) @ basis.T + 0.1 * rng.normal(size=(count, DIM)))


def items_of(centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One noisy item per centre: cosine to the centre about 0.8, so two items of one identity about 0.65."""
    return unit(centres + 0.047 * rng.normal(size=centres.shape))


def run(size: int, queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    identities = size // PER_IDENTITY
    centres = make_identities(identities, rng)
    owner = np.repeat(np.arange(identities), PER_IDENTITY)
    vectors = items_of(centres[owner], rng)
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
        latencies, item_recall, identity_recall, hit1, hit10, exact_ms = [], [], [], [], [], []
        index = gallery.index("face")
        for query, true_owner in zip(query_vectors, query_owner):
            t0 = time.perf_counter()
            candidates = gallery.search(query, ["face"], top=10)
            latencies.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            scores = vectors @ query
            exact_items = np.argpartition(-scores, 10)[:10]
            best = np.full(identities, -np.inf, dtype=np.float32)
            np.maximum.at(best, owner, scores)
            exact_identities = set(np.argpartition(-best, 10)[:10].tolist())
            exact_ms.append((time.perf_counter() - t0) * 1000)
            hnsw_items = index.search(query, 10)
            item_recall.append(len(set(media_ids[exact_items].tolist()) & set(hnsw_items.tolist())) / 10)
            found = [int(c.identity[2:]) for c in candidates]
            identity_recall.append(len(exact_identities & set(found)) / 10)
            hit1.append(found[0] == true_owner)
            hit10.append(true_owner in found)
        gallery.close()
    return {"items": size, "identities": identities, "same_identity_cosine": same,
            "enrol_items_per_s": size / enrol_seconds, "enrol_seconds": enrol_seconds,
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "exact_p50_ms": float(np.percentile(exact_ms, 50)),
            "item_recall10": float(np.mean(item_recall)), "identity_recall10": float(np.mean(identity_recall)),
            "hit1": float(np.mean(hit1)), "hit10": float(np.mean(hit10))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [run(size, args.queries, args.seed) for size in args.sizes]
    columns = [("items", "{:,}"), ("same_identity_cosine", "{:.2f}"), ("enrol_items_per_s", "{:,.0f}"),
               ("p50_ms", "{:.2f}"), ("p99_ms", "{:.2f}"), ("exact_p50_ms", "{:.2f}"), ("item_recall10", "{:.3f}"),
               ("identity_recall10", "{:.3f}"), ("hit1", "{:.3f}"), ("hit10", "{:.3f}")]
    print(f"gallery search benchmark: {args.queries} queries per size, HNSW M=16 ef_construction=100 ef>=128, "
          "top 10 identities (over-fetch 100 items, exact re-score)")
    print(" | ".join(name for name, _ in columns))
    for row in rows:
        print(" | ".join(fmt.format(row[name]) for name, fmt in columns))


if __name__ == "__main__":
    main()
