"""A team gallery (PostgreSQL + Milvus) against a directory gallery (SQLite + hnswlib), side by side in one run:
enrol throughput, identify throughput and search latency, at 100k items (or --sizes 100000 1000000).

Run: .venv/bin/python benchmarks/team_gallery.py [--sizes 100000] [--queries 300]
     .venv/bin/python benchmarks/team_gallery.py --records postgresql://... --vectors http://milvus:19530

Without --records/--vectors it starts a throwaway PostgreSQL cluster (the system's, durable: fsync on, as a
deployment runs it) and a Milvus Lite server on this machine (tests/team_servers.py), so the team gallery's figures
are those of Milvus Lite (pure Python over faiss, one process), not of a Milvus cluster: they show the cost of the
two network hops and of PostgreSQL, and bound what one small machine does; a cluster's own figures are Milvus's.

Vectors as benchmarks/gallery_search.py makes them (256-D, clustered like identities, 4 items an identity), stored
through the library in batches of 1,000 items (one transaction each, then flush: the enrol rate includes the
database, the index and its save or Milvus's flush). Identify: Gallery.search of a fresh item of an enrolled
identity, top 10, one query after another from one client; p50/p99 latency, and hit@1 (its identity first).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gallery_search import PER_IDENTITY, items_of, make_identities

from fvmatch.gallery import Gallery, NewItem

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
BATCH = 1000


def measure(gallery: Gallery, size: int, queries: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    identities = size // PER_IDENTITY
    centres = make_identities(identities, rng)
    owner = np.repeat(np.arange(identities), PER_IDENTITY)
    vectors = items_of(centres[owner], rng)
    start = time.perf_counter()
    with gallery.writer():
        for first in range(0, size, BATCH):
            gallery.add([NewItem(f"id{owner[i]:07d}", "face", f"/bench/{i}", f"sha{i}", 0, 1.0, vectors[i])
                         for i in range(first, min(first + BATCH, size))])
            if first and first % (BATCH * 50) == 0:
                print(f"  {first:,} items in {time.perf_counter() - start:.0f} s", flush=True)
        gallery.flush()
    enrol_seconds = time.perf_counter() - start
    query_owner = rng.integers(identities, size=queries)
    query_vectors = items_of(centres[query_owner], rng)
    gallery.search(query_vectors[0], ["face"], top=10)  # warm-up: the index loaded or the collection opened
    latencies, hits = [], []
    began = time.perf_counter()
    for query, true_owner in zip(query_vectors, query_owner):
        t0 = time.perf_counter()
        candidates = gallery.search(query, ["face"], top=10)
        latencies.append((time.perf_counter() - t0) * 1000)
        hits.append(int(candidates[0].identity[2:]) == true_owner)
    identify_seconds = time.perf_counter() - began
    return {"enrol_per_s": size / enrol_seconds, "enrol_s": enrol_seconds, "identify_per_s": queries / identify_seconds,
            "p50_ms": float(np.percentile(latencies, 50)), "p99_ms": float(np.percentile(latencies, 99)),
            "hit1": float(np.mean(hits))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--records", help="a PostgreSQL URL (an empty database for each size: its name gets -N)")
    parser.add_argument("--vectors", help="a Milvus URI")
    args = parser.parse_args()
    servers = []
    if args.records is None:
        from team_servers import MilvusServer, PostgresServer

        postgres = PostgresServer(durable=True)
        servers.append(postgres)
        milvus = MilvusServer()
        servers.append(milvus)
    rows = []
    try:
        for size in args.sizes:
            with tempfile.TemporaryDirectory() as folder:
                if args.records is None:
                    database = postgres.new_database()
                    records, vectors = postgres.url(database), milvus.uri
                else:
                    database, records, vectors = f"bench{size}", f"{args.records}-{size}", args.vectors
                team = Path(folder) / "team.toml"
                team.write_text(f'records = "{records}"\nvectors = "{vectors}"\nprefix = "{database}"\n')
                for kind, where in (("directory (SQLite + hnswlib)", Path(folder) / "gallery"),
                                    ("team (PostgreSQL + Milvus Lite)" if args.records is None
                                     else "team (PostgreSQL + Milvus)", team)):
                    print(f"{size:,} items, {kind} ...", flush=True)
                    with Gallery.open(where, create=True, model_id="benchmark", embedding_dim=256) as gallery:
                        rows.append({"items": size, "gallery": kind, **measure(gallery, size, args.queries, args.seed)})
    finally:
        for server in servers:
            server.stop()
    print("\n| items | gallery | enrol, items/s | identify, queries/s (one client) | search p50 / p99, ms | hit@1 |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['items']:,} | {row['gallery']} | {row['enrol_per_s']:,.0f} ({row['enrol_s']:.0f} s) | "
              f"{row['identify_per_s']:,.1f} | {row['p50_ms']:.1f} / {row['p99_ms']:.1f} | {row['hit1']:.3f} |")
    for size in args.sizes:
        directory, team = [row for row in rows if row["items"] == size]
        print(f"{size:,} items, team / directory: enrol {team['enrol_per_s'] / directory['enrol_per_s']:.2f}x, "
              f"search p50 {team['p50_ms'] / directory['p50_ms']:.1f}x")


if __name__ == "__main__":
    main()
