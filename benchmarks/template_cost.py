"""What identity templates cost a face search: `Gallery.search` alone against search + templates, side by side.

Run: .venv/bin/python benchmarks/template_cost.py [--sizes 10000 100000] [--queries 300]

Galleries of clustered 256-D unit vectors, 4 items per identity (benchmarks/gallery_search.py's), built through the
library. Per query, in turns: the search identify made before templates (`Gallery.search`, top 10) and the one it
makes now for faces (`Gallery.search` of fvmatch.analysis.matching.TEMPLATE_RERANK identities, then
fvmatch.analysis.templates.templated: each one's first TEMPLATE_SIZE items read from SQLite, the template scored).
p50 / p99 in milliseconds and their ratio.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gallery_search import DIM, PER_IDENTITY, items_of, make_identities  # noqa: E402  (benchmarks beside this one)


def measure(size: int, queries: int, seed: int) -> dict:
    from fvmatch.analysis.matching import TEMPLATE_RERANK
    from fvmatch.analysis.templates import templated
    from fvmatch.gallery import Gallery, NewItem

    rng = np.random.default_rng(seed)
    identities = size // PER_IDENTITY
    centres = make_identities(identities, rng)
    owner = np.repeat(np.arange(identities), PER_IDENTITY)
    vectors = items_of(centres[owner], rng)
    with tempfile.TemporaryDirectory() as directory:
        gallery = Gallery.open(Path(directory) / "g", create=True, model_id="benchmark", embedding_dim=DIM)
        with gallery.writer():
            for first in range(0, size, 1000):
                gallery.add([NewItem(f"id{owner[i]:07d}", "face", f"/bench/{i}", f"sha{i}", 0, 1.0, vectors[i])
                             for i in range(first, min(first + 1000, size))])
            gallery.flush()
        asked = items_of(centres[rng.integers(identities, size=queries)], rng)
        gallery.search(asked[0], ["face"], top=10)  # warm-up: loads the index
        before, now = [], []
        for query in asked:
            t0 = time.perf_counter()
            plain = gallery.search(query, ["face"], top=10)
            t1 = time.perf_counter()
            scored = templated(gallery, query, gallery.search(query, ["face"], top=max(10, TEMPLATE_RERANK)), "joint")
            t2 = time.perf_counter()
            assert plain and scored
            before.append((t1 - t0) * 1000)
            now.append((t2 - t1) * 1000)
        gallery.close()
    return {"items": size, "before": before, "now": now}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| items | search alone p50 / p99 ms | search + templates p50 / p99 ms | ratio of p50s |")
    print("|---|---|---|---|")
    for size in args.sizes:
        row = measure(size, args.queries, args.seed)
        b50, b99 = np.percentile(row["before"], [50, 99])
        n50, n99 = np.percentile(row["now"], [50, 99])
        print(f"| {size:,} | {b50:.2f} / {b99:.2f} | {n50:.2f} / {n99:.2f} | {n50 / b50:.2f} |", flush=True)


if __name__ == "__main__":
    main()
