"""Batch audit throughput: `fvmatch audit run` of 1,000 queries against a 10,000-identity gallery, batch sizes side by side.

Run: .venv/bin/python benchmarks/audit_run.py [--identities 10000] [--real 125] [--batch-sizes 1 32] [--compare 200]
     .venv/bin/python benchmarks/audit_run.py --sizes 10000 1000000   (the full query file against each size)
     .venv/bin/python benchmarks/audit_run.py --real-faces --sizes 10000 1000000 [--keep DIR]

Set-up (not timed): a synthetic corpus of `--real` identities with 5 faces and 5 clips each (4 s); the first face and
clip of each are enrolled for real (the shipped model, through the library), and the gallery is filled up to
`--identities` identities with one face and one voice vector each for the others. Those fillers are never media:
each is a random mix of three embeddings of its modality from another `--real` synthetic identities (never the
queried ones) plus noise, renormalised, so they sit where real embeddings sit rather than orthogonal to everything.
The queries are the other 4 faces and 4 clips of every real identity (1,000 with the defaults), answered
cross-modally (a face against voices, a voice against faces).

Timed: the full query file once with the last batch size, as one `fvmatch audit run` process: wall clock from start
to exit (so it includes Python and torch start-up and model loading) and the run's own rate (`queries_per_second`
of its JSON summary). Then the batch sizes side by side on the first `--compare` queries, in the order A B B A so
that a machine getting busier or quieter in between weighs on both alike. The tables also give the median
per-query embed and search times from the results, and top-1 / top-10 identification accuracy of the cross-modal
answers among all the gallery's identities (synthetic voices and faces, the shipped model: a sanity check of the
pipeline, not evidence about real people).

`--sizes A B ...` instead: one gallery per size (the same real identities and fillers drawn alike, in batches of
10,000), the full query file once against each with the last batch size, one table and the rates' ratio to the
first size. `--m` / `--ef-construction` build the indexes with other HNSW settings than the gallery's.

`--real-faces --sizes A B ...`: the batch an analyst runs on real people. One gallery per size of face items built
as benchmarks/gallery_cold_query.py builds its large one (clustered dlib-face and joint vectors, through the
library), holding one photo of each of the 16 people of ../shared/realmedia/faces enrolled for real; the queries are
their other photos, answered against faces (face-face trials in the dlib-face space), every size in the order
A B .. B A. `--keep DIR` keeps each size's gallery as DIR/<size> and reuses it (a gallery_cold_query.py --keep
gallery of that size can be given: its one real person is the same).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def build(workdir: Path, identities: int, real: int, seed: int, filler_batch: int = 1000) -> Path:
    """The corpus, the gallery and the query file; returns the query file."""
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.enrollment.enroll import EnrollItem, enroll
    from fvmatch.gallery import Gallery, NewItem
    from fvmatch.spaces import PRETRAINED_SPACES
    from fvmatch.synth import CorpusSpec, write_corpus

    corpus = workdir / "corpus"
    write_corpus(corpus, CorpusSpec(identities=real, seed=seed, faces_per_identity=5, clips_per_identity=5,
                                    clip_seconds=4.0))
    faces = {folder.name: sorted(folder.rglob("*.jpg")) for folder in (corpus / "faces").iterdir()}
    voices = {folder.name: sorted(folder.rglob("*.wav")) for folder in (corpus / "voices").iterdir()}
    embedder = Embedder.load()
    gallery = Gallery.open(workdir / "gallery", create=True, model_id=embedder.model_id,
                           embedding_dim=embedder.embedding_dim, model_path=str(embedder.checkpoint_path))
    with gallery.writer():
        gallery.add_spaces({name: embedder.space_info(name) for name in PRETRAINED_SPACES})
    items = [EnrollItem(label, "face", faces[label][0], str(faces[label][0])) for label in sorted(faces)]
    items += [EnrollItem(label, "voice", voices[label][0], str(voices[label][0])) for label in sorted(voices)]
    with gallery.writer():
        report = enroll(gallery, embedder, items)
    if report.failed:
        print(f"note: {len(report.failed)} enrolment items failed (e.g. a synthetic face MTCNN missed)", file=sys.stderr)
    rng = np.random.default_rng(seed)
    sources = workdir / "filler-sources"
    write_corpus(sources, CorpusSpec(identities=real, seed=seed + 1000, faces_per_identity=1, clips_per_identity=1,
                                     clip_seconds=4.0))
    source_vectors = {
        "face": embedder.space("joint").embed(np.stack([embedder.detector.faces_in_file(path)[0].pixels
                                                    for path in _detectable(embedder, sources.glob("faces/*/*/*.jpg"))])),
        "voice": np.stack([embedder.embed_voice(path, spaces=["joint"]).vectors["joint"] for path in sorted(sources.glob("voices/*/*/*.wav"))])}
    fillers = identities - len(faces)
    with gallery.writer():
        for modality in ("face", "voice"):
            real_vectors = source_vectors[modality]
            for first in range(0, fillers, filler_batch):
                count = min(filler_batch, fillers - first)
                mix = real_vectors[rng.integers(0, len(real_vectors), size=(count, 3))].sum(axis=1)
                mix += 0.5 * rng.normal(size=mix.shape) / np.sqrt(mix.shape[1])
                mix /= np.linalg.norm(mix, axis=1, keepdims=True)
                gallery.add([NewItem(f"filler{first + i:06d}", modality, f"/filler/{modality}/{first + i}",
                                     f"{modality}{first + i:064d}", 0, 1.0, mix[i].astype(np.float32))
                             for i in range(count)])
        gallery.flush()
        counts = gallery.counts()
    gallery.close()
    queries = workdir / "queries.csv"
    with open(queries, "w") as handle:
        handle.write("query_id,modality,path\n")
        for label in sorted(faces):
            for path in faces[label][1:]:
                handle.write(f"{label}/{path.name}/{path.parent.name},face,{path}\n")
            for path in voices[label][1:]:
                handle.write(f"{label}/{path.name}/{path.parent.name},voice,{path}\n")
    print(f"gallery: {counts['identities']:,} identities, {counts['face']:,} faces, {counts['voice']:,} voices",
          file=sys.stderr)
    return queries


def _detectable(embedder, paths) -> list[Path]:
    """The images in which MTCNN finds a face (a few synthetic faces are missed)."""
    from fvmatch.errors import NoFaceFound

    found = []
    for path in sorted(paths):
        try:
            embedder.detector.faces_in_file(path)
            found.append(path)
        except NoFaceFound:
            pass
    return found


def audit_run(queries: Path, gallery: Path, out: Path, batch_size: int, against: str | None = None) -> dict:
    """One `fvmatch audit run` process: its wall time, its summary and what its results say."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "fvmatch.cli", "audit", "run", "--queries", str(queries), "--out",
                           str(out), "--gallery", str(gallery), "--batch-size", str(batch_size), "--json",
                           *(["--against", against] if against else [])],
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode not in (0, 2):
        raise SystemExit(f"audit run failed: {done.stderr[-2000:]}")
    summary = json.loads(done.stdout)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    ok = [r for r in records if r["status"] == "ok"]
    ranks = [next((c["rank"] for c in r["candidates"] if c["identity"] == r["query_id"].split("/")[0]), None)
             for r in ok]
    return {"batch": batch_size, "queries": len(records), "failed": len(records) - len(ok), "wall_s": wall,
            "qps_wall": len(records) / wall, "qps_run": summary["queries_per_second"],
            "embed_ms": float(np.median([r["timing_ms"]["embed"] for r in ok])),
            "search_ms": float(np.median([r["timing_ms"]["search"] for r in ok])),
            "top1": float(np.mean([rank == 1 for rank in ranks])),
            "top10": float(np.mean([rank is not None for rank in ranks]))}


def print_table(rows: list[dict]) -> None:
    print("| batch size | queries | failed | wall s | queries/s (wall) | queries/s (in run) | median embed ms "
          "| median search ms | top-1 | top-10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['batch']} | {row['queries']} | {row['failed']} | {row['wall_s']:.1f} | {row['qps_wall']:.1f} | "
              f"{row['qps_run']:.1f} | {row['embed_ms']:.1f} | {row['search_ms']:.2f} | {row['top1']:.3f} | "
              f"{row['top10']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=125, help="identities with real media (8 queries each)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--compare", type=int, default=200, help="queries in the side-by-side comparison")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", help="gallery sizes (identities) answered side by side")
    parser.add_argument("--m", type=int, help="HNSW M to build with (default: the gallery's)")
    parser.add_argument("--ef-construction", type=int, help="HNSW ef_construction to build with")
    parser.add_argument("--real-faces", action="store_true", help="with --sizes: real photos against face galleries")
    parser.add_argument("--keep", type=Path, help="with --real-faces: keep (and reuse) each size's gallery in DIR/<size>")
    args = parser.parse_args()
    import torch

    from fvmatch.gallery import index as index_module

    index_module.M = args.m or index_module.M
    index_module.EF_CONSTRUCTION = args.ef_construction or index_module.EF_CONSTRUCTION
    print(f"machine: {torch.get_num_threads()} torch threads; HNSW M={index_module.M} "
          f"ef_construction={index_module.EF_CONSTRUCTION}", file=sys.stderr)
    if args.sizes and args.real_faces:
        compare_real_faces(args)
        return
    if args.sizes:
        compare_sizes(args)
        return
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        queries = build(workdir, args.identities, args.real, args.seed)
        gallery = workdir / "gallery"
        full = audit_run(queries, gallery, workdir / "full.jsonl", args.batch_sizes[-1])
        print(f"\nall {full['queries']} queries against {args.identities:,} identities, batch size {full['batch']}:")
        print_table([full])
        lines = queries.read_text().splitlines(keepends=True)
        subset = workdir / "subset.csv"
        subset.write_text("".join(lines[: args.compare + 1]))
        order = list(args.batch_sizes) + list(reversed(args.batch_sizes))  # A B B A
        runs = [audit_run(subset, gallery, workdir / f"subset-{i}.jsonl", size) for i, size in enumerate(order)]
    rows = []
    for size in args.batch_sizes:
        mine = [run for run in runs if run["batch"] == size]
        rows.append({**mine[0], **{key: float(np.mean([run[key] for run in mine]))
                                   for key in ("wall_s", "qps_wall", "qps_run", "embed_ms", "search_ms")}})
    print(f"\nside by side on the first {args.compare} queries, order {' '.join(map(str, order))} (means of the two runs):")
    print_table(rows)
    print(f"\nratio of in-run rates, batch {rows[-1]['batch']} / batch {rows[0]['batch']}: "
          f"{rows[-1]['qps_run'] / rows[0]['qps_run']:.2f}")


def build_real_faces(gallery: Path, items: int, seed: int, workdir: Path) -> Path:
    """A gallery of `items` face items (16 real people, the rest clustered vectors) and the query file of the real
    people's other photos; an existing gallery is reused (its missing real people enrolled)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from gallery_cold_query import enroll_one, fill
    from startup import DEFAULT_PHOTOS

    from fvmatch.gallery import Gallery

    photos = {person.name: sorted(p for p in person.iterdir() if p.suffix.lower() == ".jpg")
              for person in sorted(DEFAULT_PHOTOS.iterdir()) if person.is_dir()}
    first = next(iter(photos))
    references = {name: files[1] if name == first else files[0] for name, files in photos.items()}  # as startup.py
    if not (gallery / "gallery.db").exists():
        enroll_one(gallery, first, references[first])
        print(f"building {items:,} items in {gallery}", file=sys.stderr)
        fill(gallery, items - len(references), seed)
    with Gallery.open(gallery) as opened:
        missing = [name for name in references if not opened.has_identity(name)]
    if missing:
        manifest = workdir / f"manifest-{items}.csv"
        manifest.write_text("identity,modality,path\n" + "".join(f"{name},face,{references[name]}\n" for name in missing))
        done = subprocess.run([sys.executable, "-m", "fvmatch.cli", "enroll", "--manifest", str(manifest), "--gallery",
                               str(gallery)], capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"enrolling the real people failed: {done.stderr[-2000:]}")
    queries = workdir / f"queries-{items}.csv"
    queries.write_text("query_id,modality,path\n" + "".join(
        f"{name}/{path.name},face,{path}\n" for name, files in photos.items() for path in files if path != references[name]))
    return queries


def compare_real_faces(args) -> None:
    """The real people's photos against face galleries of each size, A B .. B A (see the module's docstring)."""
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        galleries, queries, built = {}, {}, {}
        for size in args.sizes:
            galleries[size] = (args.keep / str(size)) if args.keep else workdir / str(size)
            began = time.perf_counter()
            queries[size] = build_real_faces(galleries[size], size, args.seed, workdir)
            built[size] = time.perf_counter() - began
        order = list(args.sizes) + list(reversed(args.sizes))
        runs = [(size, audit_run(queries[size], galleries[size], workdir / f"run-{i}.jsonl", args.batch_sizes[-1],
                                 against="face")) for i, size in enumerate(order)]
    print(f"\nreal photos of 16 people against face galleries, batch size {args.batch_sizes[-1]}, order "
          f"{' '.join(f'{size:,}' for size in order)} (means of the two runs; build s: 0 = reused)")
    print("| face items | build s | queries | failed | wall s | queries/s (wall) | queries/s (in run) | median embed ms "
          "| median search ms | top-1 | top-10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for size in args.sizes:
        mine = [run for ran, run in runs if ran == size]
        rows.append({"size": size, **mine[0], **{key: float(np.mean([run[key] for run in mine]))
                                                 for key in ("wall_s", "qps_wall", "qps_run", "embed_ms", "search_ms")}})
        row = rows[-1]
        print(f"| {size:,} | {built[size]:.0f} | {row['queries']} | {row['failed']} | {row['wall_s']:.1f} | "
              f"{row['qps_wall']:.2f} | {row['qps_run']:.2f} | {row['embed_ms']:.1f} | {row['search_ms']:.2f} | "
              f"{row['top1']:.3f} | {row['top10']:.3f} |")
    for row in rows[1:]:
        print(f"in-run rate at {row['size']:,} / at {rows[0]['size']:,} items: {row['qps_run'] / rows[0]['qps_run']:.2f}; "
              f"median search {row['search_ms'] / rows[0]['search_ms']:.2f}x")


def compare_sizes(args) -> None:
    """The full query file against a gallery of each size (all built first, the same seed), answered in the order
    A B .. B A so that a machine getting busier or quieter weighs on each size alike; means of the two runs."""
    with tempfile.TemporaryDirectory() as directory:
        built, queries = {}, {}
        for identities in args.sizes:
            workdir = Path(directory) / str(identities)
            began = time.perf_counter()
            queries[identities] = build(workdir, identities, args.real, args.seed, filler_batch=10_000)
            built[identities] = time.perf_counter() - began
        order = list(args.sizes) + list(reversed(args.sizes))
        runs = [(size, audit_run(queries[size], Path(directory) / str(size) / "gallery",
                                 Path(directory) / f"run-{i}.jsonl", args.batch_sizes[-1]))
                for i, size in enumerate(order)]
    rows = []
    for size in args.sizes:
        mine = [run for ran, run in runs if ran == size]
        rows.append({"identities": size, "build_s": built[size], **mine[0],
                     **{key: float(np.mean([run[key] for run in mine]))
                        for key in ("wall_s", "qps_wall", "qps_run", "embed_ms", "search_ms")}})
    print(f"\nall queries, batch size {args.batch_sizes[-1]}, against each gallery size, order "
          f"{' '.join(f'{size:,}' for size in order)} (means of the two runs):")
    print("| identities | build s | queries | failed | wall s | queries/s (wall) | queries/s (in run) | median embed ms "
          "| median search ms | top-1 | top-10 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['identities']:,} | {row['build_s']:.0f} | {row['queries']} | {row['failed']} | {row['wall_s']:.1f} | "
              f"{row['qps_wall']:.1f} | {row['qps_run']:.1f} | {row['embed_ms']:.1f} | {row['search_ms']:.2f} | "
              f"{row['top1']:.3f} | {row['top10']:.3f} |")
    for row in rows[1:]:
        print(f"in-run rate at {row['identities']:,} / at {rows[0]['identities']:,} identities: "
              f"{row['qps_run'] / rows[0]['qps_run']:.2f}")


if __name__ == "__main__":
    main()
