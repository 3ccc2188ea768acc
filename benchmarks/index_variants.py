"""Other ways to index a gallery's vectors at 1M, side by side with the gallery's own: what buys recall per millisecond.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/index_variants.py --gallery DIR --space dlib-face --work WORK
         --variants hnsw:32:200 hnsw:32:500 rcm:32:200 faiss-sq8:32:200 --efs 100 128 160 192 224

Variants (each built once from the gallery's stored vectors and kept in WORK, so a later run only measures):
- `hnsw:M:EFC`: hnswlib, as the gallery builds its index (inner product, 2 threads), with those M / ef_construction;
- `rcm:M:EFC`: the same graph with its items renumbered in reverse Cuthill-McKee order of the level-0 graph (scipy),
  so that neighbours lie near each other in memory (graph reordering; the search visits the same items, only the
  memory it reads is less scattered). hnswlib 0.8's file layout is rewritten; the results must equal the source's;
- `faiss-sq8:M:EFC`: faiss HNSW over 8-bit scalar-quantised codes (128 bytes a 128-D vector instead of 512), and
  `faiss-flat:M:EFC`: faiss HNSW over the float32 vectors, only if faiss-cpu is installed (it is not a dependency);
- `usearch:M:EFC`: USearch's HNSW (float32, inner product; connectivity M, expansion_add EFC), only if usearch is
  installed (not a dependency either).
Queries and measures are `benchmarks/gallery_search.py --gallery`'s: 500 stored items moved by noise, the index
asked for the 100 items a search fetches, those re-scored exactly from the stored float32 vectors, item recall@10
against exact search, index-call p50 / p99. Every index is moved onto huge pages, and the variants are called in turn
on each query (the order reversed on a second pass), so that they share the machine's state.
"""
from __future__ import annotations

import argparse
import struct
import time
from pathlib import Path

import numpy as np

from fvmatch.gallery import Gallery
from fvmatch.gallery.huge_pages import anonymous_mappings, collapse_new_mappings
from gallery_search import noisy_queries

FETCH = 100
# hnswlib 0.8 saveIndex: offsetLevel0, max_elements, cur_element_count, size_data_per_element, label_offset,
# offsetData (size_t), maxlevel (int), enterpoint (uint32), maxM, maxM0, M (size_t), mult (double), ef_construction
HNSW_HEADER = struct.Struct("<QQQQQQiIQQQdQ")


def stored_vectors(gallery: Path, space: str, modality: str, work: Path) -> tuple[np.ndarray, np.ndarray]:
    """The gallery's media ids and vectors of (space, modality), kept in WORK as .npy after the first read."""
    ids_file, vectors_file = work / f"{space}-{modality}-ids.npy", work / f"{space}-{modality}-vectors.npy"
    if not vectors_file.exists():
        with Gallery.open(gallery) as opened:
            ids, vectors = opened._all_vectors(modality, space)
        np.save(ids_file, np.asarray(ids, dtype=np.int64))
        np.save(vectors_file, np.ascontiguousarray(vectors, dtype=np.float32))
    return np.load(ids_file), np.load(vectors_file)


def hnsw_index(ids: np.ndarray, vectors: np.ndarray, m: int, efc: int):
    """An hnswlib index over the vectors, as the gallery builds its own (inner product, 2 threads)."""
    import hnswlib

    index = hnswlib.Index(space="ip", dim=vectors.shape[1])
    index.init_index(max_elements=len(ids), M=m, ef_construction=efc)
    index.add_items(vectors, ids)
    return index


def build_hnsw(ids: np.ndarray, vectors: np.ndarray, m: int, efc: int, path: Path) -> float:
    started = time.perf_counter()
    index = hnsw_index(ids, vectors, m, efc)
    seconds = time.perf_counter() - started
    index.save_index(str(path))
    return seconds


def faiss_hnsw(vectors: np.ndarray, m: int, efc: int, codes: str):
    """A faiss HNSW over 8-bit codes (`sq8`) or the float32 vectors (`flat`), trained, not yet filled."""
    import faiss

    if codes == "sq8":
        index = faiss.IndexHNSWSQ(vectors.shape[1], faiss.ScalarQuantizer.QT_8bit, m, faiss.METRIC_INNER_PRODUCT)
    else:
        index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    index.train(vectors[:100_000])
    return index


def build_faiss(ids: np.ndarray, vectors: np.ndarray, m: int, efc: int, path: Path, codes: str) -> float:
    import faiss

    started = time.perf_counter()
    index = faiss.IndexIDMap2(faiss_hnsw(vectors, m, efc, codes))
    index.add_with_ids(vectors, ids)
    seconds = time.perf_counter() - started
    faiss.write_index(index, str(path))
    return seconds


def build_usearch(ids: np.ndarray, vectors: np.ndarray, m: int, efc: int, path: Path) -> float:
    from usearch.index import Index

    index = Index(ndim=vectors.shape[1], metric="ip", dtype="f32", connectivity=m, expansion_add=efc)
    started = time.perf_counter()
    index.add(ids.astype(np.uint64), vectors, threads=2)
    seconds = time.perf_counter() - started
    index.save(str(path))
    return seconds


def reorder_rcm(source: Path, path: Path) -> float:
    """Rewrite an hnswlib 0.8 file with its items renumbered in reverse Cuthill-McKee order of the level-0 graph."""
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import reverse_cuthill_mckee

    started = time.perf_counter()
    raw = np.fromfile(source, dtype=np.uint8)
    header = list(HNSW_HEADER.unpack_from(raw, 0))
    count, per_item, max_m, max_m0 = header[2], header[3], header[8], header[9]
    level0 = raw[HNSW_HEADER.size:HNSW_HEADER.size + count * per_item].reshape(count, per_item)
    upper, offset = [], HNSW_HEADER.size + count * per_item  # each item's upper-level link lists: size, bytes
    for _ in range(count):
        (size,) = struct.unpack_from("<I", raw, offset)
        upper.append(raw[offset + 4:offset + 4 + size])
        offset += 4 + size
    if offset != len(raw):
        raise SystemExit(f"{source}: not an hnswlib 0.8 index file")

    def links(blocks: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Each link list (count in its first 2 bytes, then `width` ids) as an id array and a mask of live ids."""
        table = np.ascontiguousarray(blocks).view(np.uint32).reshape(len(blocks), width + 1)
        used = (table[:, 0] & 0xFFFF).astype(np.int64)
        return table, np.arange(width)[None, :] < used[:, None]

    table, live = links(level0[:, :4 * (max_m0 + 1)], max_m0)
    graph = csr_matrix((np.ones(int(live.sum()), dtype=np.int8),
                        (np.repeat(np.arange(count), live.sum(axis=1)), table[:, 1:][live].astype(np.int64))),
                       shape=(count, count))
    order = reverse_cuthill_mckee(graph, symmetric_mode=False)
    renumbered = np.empty(count, dtype=np.uint32)
    renumbered[order] = np.arange(count, dtype=np.uint32)
    moved = level0[order]
    table, live = links(moved[:, :4 * (max_m0 + 1)], max_m0)
    ids = table[:, 1:]
    ids[live] = renumbered[ids[live]]
    moved[:, :4 * (max_m0 + 1)] = table.view(np.uint8).reshape(count, -1)
    header[7] = int(renumbered[header[7]])  # the entry point
    with open(path, "wb") as handle:
        handle.write(HNSW_HEADER.pack(*header))
        handle.write(moved.tobytes())
        for old in order:
            handle.write(struct.pack("<I", len(upper[old])))
            if len(upper[old]):
                table, live = links(upper[old].reshape(-1, 4 * (max_m + 1)), max_m)
                ids = table[:, 1:]
                ids[live] = renumbered[ids[live]]
                handle.write(table.tobytes())
    return time.perf_counter() - started


def searcher(path: Path, dim: int):
    """Load an index file (onto huge pages) and return a function (vector, ef) -> up to FETCH labels."""
    before = anonymous_mappings()
    if path.suffix == ".faiss":
        import faiss

        faiss.omp_set_num_threads(1)
        index = faiss.read_index(str(path))

        def call(vector, ef):
            labels = index.search(vector[None, :], FETCH, params=faiss.SearchParametersHNSW(efSearch=ef))[1][0]
            return labels[labels >= 0]
    elif path.suffix == ".usearch":
        from usearch.index import Index

        index = Index.restore(str(path))

        def call(vector, ef):
            index.expansion_search = max(ef, FETCH)
            return index.search(vector, FETCH, threads=1).keys.astype(np.int64)
    else:
        import hnswlib

        index = hnswlib.Index(space="ip", dim=dim)
        index.load_index(str(path))

        def call(vector, ef):
            index.set_ef(max(ef, FETCH))
            return index.knn_query(vector[None, :], k=FETCH)[0][0].astype(np.int64)
    moved = collapse_new_mappings(before)
    print(f"{path.name}: {path.stat().st_size / 2**20:,.0f} MiB file, {moved / 2**20:,.0f} MiB moved onto huge pages",
          flush=True)
    return call


def variant_path(work: Path, space: str, variant: str) -> Path:
    kind, m, efc = variant.split(":")
    suffix = "faiss" if kind.startswith("faiss-") else "usearch" if kind == "usearch" else "hnsw"
    return work / f"{space}-{kind}-m{m}-efc{efc}.{suffix}"


def build_variant(variant: str, ids: np.ndarray, vectors: np.ndarray, work: Path, space: str) -> float:
    """Build `variant` (kind:M:EFC) over the vectors into its file in `work`; the seconds it took."""
    kind, m, efc = variant.split(":")
    path = variant_path(work, space, variant)
    if kind == "rcm":
        source = variant_path(work, space, f"hnsw:{m}:{efc}")
        if not source.exists():
            build_hnsw(ids, vectors, int(m), int(efc), source)
        return reorder_rcm(source, path)
    if kind.startswith("faiss-"):
        return build_faiss(ids, vectors, int(m), int(efc), path, kind.removeprefix("faiss-"))
    return (build_usearch if kind == "usearch" else build_hnsw)(ids, vectors, int(m), int(efc), path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gallery", type=Path, required=True)
    parser.add_argument("--space", default="dlib-face")
    parser.add_argument("--modality", default="face")
    parser.add_argument("--work", type=Path, required=True, help="where built variants and the vectors are kept")
    parser.add_argument("--variants", nargs="+", default=["hnsw:32:200", "rcm:32:200"])
    parser.add_argument("--efs", type=int, nargs="+", default=[100, 128, 160, 192, 224])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ids, vectors = stored_vectors(args.gallery, args.space, args.modality, args.work)
    files = []
    for variant in args.variants:
        path = variant_path(args.work, args.space, variant)
        if not path.exists():
            print(f"{variant}: built in {build_variant(variant, ids, vectors, args.work, args.space):,.0f} s",
                  flush=True)
        files.append(path)

    rng = np.random.default_rng(args.seed)
    queries = noisy_queries(vectors, args.queries, rng)
    truth = [set(ids[np.argpartition(-(vectors @ query), 10)[:10]].tolist()) for query in queries]
    row_of = np.full(int(ids.max()) + 1, -1)
    row_of[ids] = np.arange(len(ids))
    calls = [searcher(path, vectors.shape[1]) for path in files]
    print(f"\n{len(ids):,} {args.modality} items of {args.space}, {args.queries} queries; item recall@10 (of the "
          f"{FETCH} fetched, re-scored) and index-call p50 / p99 ms")
    print("| ef | " + " | ".join(args.variants) + " |")
    print("|---|" + "---|" * len(args.variants))
    # a reordered graph must find exactly what its source finds: checked where both are measured
    pairs = [(args.variants.index(f"hnsw:{variant[4:]}"), which) for which, variant in enumerate(args.variants)
             if variant.startswith("rcm:") and f"hnsw:{variant[4:]}" in args.variants]
    for ef in args.efs:
        milliseconds, recalls, same = [[] for _ in calls], [[] for _ in calls], 0
        for sweep in range(2):
            for query, exact in zip(queries, truth):
                found = {}
                for which in (range(len(calls)) if sweep == 0 else reversed(range(len(calls)))):
                    started = time.perf_counter()
                    labels = calls[which](query, ef)
                    milliseconds[which].append((time.perf_counter() - started) * 1000)
                    top = labels[np.argsort(-(vectors[row_of[labels]] @ query))[:10]]
                    recalls[which].append(len(exact & set(top.tolist())) / 10)
                    found[which] = labels.tolist()
                same += sum(found[source] == found[reordered] for source, reordered in pairs)
        cells = [f"{np.mean(r):.4f}, {np.percentile(t, 50):.2f} / {np.percentile(t, 99):.2f}"
                 for r, t in zip(recalls, milliseconds)]
        checked = f"   (reordered as their source: {same} of {2 * len(queries) * len(pairs)} calls)" if pairs else ""
        print(f"| {ef} | " + " | ".join(cells) + " |" + checked, flush=True)


if __name__ == "__main__":
    main()
