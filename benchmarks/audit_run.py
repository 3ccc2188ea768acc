"""Batch audit throughput: `fvmatch audit run` of 1,000 queries against a 10,000-identity gallery, batch sizes side by side.

Run: .venv/bin/python benchmarks/audit_run.py [--identities 10000] [--real 125] [--batch-sizes 1 32]

Set-up (not timed): a synthetic corpus of `--real` identities with 5 faces and 5 clips each (4 s); the first face and
clip of each are enrolled for real (the shipped model, through the library), and the gallery is filled up to
`--identities` identities with one face and one voice vector each for the others. Those fillers are never media:
each is a random mix of three real embeddings of its modality plus noise, renormalised, so they sit where real
embeddings sit rather than orthogonal to everything. The queries are the other 4 faces and 4 clips of every real
identity (1,000 with the defaults), answered cross-modally (a face against voices, a voice against faces).

Timed: each batch size is one `fvmatch audit run` process, wall clock from start to exit (so it includes Python
and torch start-up and model loading), and its own in-process rate (`queries_per_second` of the JSON summary).
The table also gives the median per-query embed and search times from the results, and top-1 / top-10 accuracy
of the cross-modal answers (among 10,000 identities; the fillers are easy distractors, so read it as a sanity
check, not an accuracy figure).
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


def build(workdir: Path, identities: int, real: int, seed: int) -> Path:
    """The corpus, the gallery and the query file; returns the query file."""
    from fvmatch.embedder import Embedder
    from fvmatch.enrollment import EnrollItem, enroll
    from fvmatch.gallery import Gallery, NewItem
    from fvmatch.synth import CorpusSpec, write_corpus

    corpus = workdir / "corpus"
    write_corpus(corpus, CorpusSpec(identities=real, seed=seed, faces_per_identity=5, clips_per_identity=5,
                                    clip_seconds=4.0))
    faces = {folder.name: sorted(folder.rglob("*.jpg")) for folder in (corpus / "faces").iterdir()}
    voices = {folder.name: sorted(folder.rglob("*.wav")) for folder in (corpus / "voices").iterdir()}
    embedder = Embedder.load()
    gallery = Gallery.open(workdir / "gallery", create=True, model_id=embedder.model_id,
                           embedding_dim=embedder.embedding_dim, model_path=str(embedder.checkpoint_path))
    items = [EnrollItem(label, "face", faces[label][0], str(faces[label][0])) for label in sorted(faces)]
    items += [EnrollItem(label, "voice", voices[label][0], str(voices[label][0])) for label in sorted(voices)]
    with gallery.writer():
        report = enroll(gallery, embedder, items)
    if report.failed:
        print(f"note: {len(report.failed)} enrolment items failed (e.g. a synthetic face MTCNN missed)", file=sys.stderr)
    rng = np.random.default_rng(seed)
    fillers = identities - len(faces)
    with gallery.writer():
        for modality in ("face", "voice"):
            real_vectors = gallery._all_vectors(modality)[1]
            for first in range(0, fillers, 1000):
                count = min(1000, fillers - first)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=10_000)
    parser.add_argument("--real", type=int, default=125, help="identities with real media (8 queries each)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    import torch

    print(f"machine: {torch.get_num_threads()} torch threads", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        queries = build(workdir, args.identities, args.real, args.seed)
        for size in args.batch_sizes:
            out = workdir / f"results-{size}.jsonl"
            started = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "fvmatch.cli", "audit", "run", "--queries", str(queries),
                                   "--out", str(out), "--gallery", str(workdir / "gallery"), "--batch-size", str(size),
                                   "--json"], capture_output=True, text=True)
            wall = time.perf_counter() - started
            if done.returncode not in (0, 2):
                raise SystemExit(f"audit run failed: {done.stderr[-2000:]}")
            summary = json.loads(done.stdout)
            records = [json.loads(line) for line in out.read_text().splitlines()]
            ok = [r for r in records if r["status"] == "ok"]
            ranks = [next((c["rank"] for c in r["candidates"] if c["identity"] == r["query_id"].split("/")[0]), None)
                     for r in ok]
            rows.append({"batch": size, "queries": len(records), "failed": len(records) - len(ok), "wall_s": wall,
                         "qps_wall": len(records) / wall, "qps_run": summary["queries_per_second"],
                         "embed_ms": float(np.median([r["timing_ms"]["embed"] for r in ok])),
                         "search_ms": float(np.median([r["timing_ms"]["search"] for r in ok])),
                         "top1": np.mean([rank == 1 for rank in ranks]),
                         "top10": np.mean([rank is not None for rank in ranks])})
    print(f"\n| batch size | queries | failed | wall s | queries/s (wall) | queries/s (in run) | median embed ms "
          f"| median search ms | top-1 | top-10 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['batch']} | {row['queries']} | {row['failed']} | {row['wall_s']:.1f} | {row['qps_wall']:.1f} | "
              f"{row['qps_run']:.1f} | {row['embed_ms']:.1f} | {row['search_ms']:.2f} | {row['top1']:.3f} | "
              f"{row['top10']:.3f} |")
    if len(rows) > 1:
        print(f"\nratio of in-run rates, batch {rows[-1]['batch']} / batch {rows[0]['batch']}: "
              f"{rows[-1]['qps_run'] / rows[0]['qps_run']:.2f}")


if __name__ == "__main__":
    main()
