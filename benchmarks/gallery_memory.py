"""Memory (RSS) and disk size of a gallery of N items, and what that makes per million items.

Run: .venv/bin/python benchmarks/gallery_memory.py [--sizes 10000 100000 300000] [--searches 100]

Each size is built and then searched in fresh processes, so that one measurement does not carry another's memory:
- build: N random unit 256-D float32 vectors (isotropic Gaussian, normalised: the memory of an HNSW index does not
  depend on how the vectors cluster), half faces and half voices, 4 items per identity, with realistic source
  paths, sha256 and quality figures, added through Gallery.add in batches of 1,000 (one transaction each, as
  enroll does), then flush; the writing process's peak RSS.
- open + search: a fresh process opens the gallery, loads both indexes (hash check, load, comparison with the
  database's ids) and runs `--searches` identifications against each modality; its peak RSS.
- add: a fresh process opens the gallery and enrols 1,000 more items (one batch, then the indexes are saved).
- rebuild: the index files deleted, a fresh process opens the gallery, which rebuilds both from the database.
- disk: gallery.db (with its -wal, if any) and the index files with their sidecars.
Per million items: the slope between the smallest and the largest size, times 1,000,000 (the fixed cost of the
interpreter and libraries cancels out). Prints a table. Each stage's process is started and measured (peak RSS from
wait4) by a small fresh parent (measured_child.py), so that no other process's memory counts as the stage's.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured_child import measure  # noqa: E402

DIM = 256
BATCH = 1000
PER_IDENTITY = 4
MODEL_ID = "f" * 64  # a gallery stores the model id on every row: use one as long as a real one


def rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def items(first: int, count: int, rng: np.random.Generator) -> list:
    from fvmatch.gallery import NewItem

    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    made = []
    for offset in range(count):
        i = first + offset
        modality = "face" if i % 2 == 0 else "voice"
        person = f"person{i // PER_IDENTITY:07d}"
        path = f"/evidence/case-2024-0117/{modality}s/{person}/{i:08d}." + ("jpg" if modality == "face" else "wav")
        made.append(NewItem(f"case-2024-0117/{person}", modality, path, f"{i:064x}", 180_000, 0.998, vectors[offset],
                            {"detection_probability": 0.9981, "box": [61.2, 48.9, 190.4, 214.7]}))
    return made


def build(size: int, directory: Path) -> dict:
    from fvmatch.gallery import Gallery

    rng = np.random.default_rng(size)
    gallery = Gallery.open(directory, create=True, model_id=MODEL_ID, embedding_dim=DIM,
                           model_path="/opt/fvmatch/models/weights/default.safetensors")
    started = time.perf_counter()
    with gallery.writer():
        for first in range(0, size, BATCH):
            gallery.add(items(first, min(BATCH, size - first), rng))
        gallery.flush()
    seconds = time.perf_counter() - started
    gallery.close()
    return {"seconds": seconds}


def add(size: int, directory: Path) -> dict:
    from fvmatch.gallery import Gallery

    started = time.perf_counter()
    with Gallery.open(directory) as gallery, gallery.writer():
        gallery.add(items(size, BATCH, np.random.default_rng(1)))
        gallery.flush()
    return {"seconds": time.perf_counter() - started}


def rebuild(size: int, directory: Path) -> dict:
    from fvmatch.gallery import Gallery

    for path in directory.glob("*.hnsw*"):
        path.unlink()
    started = time.perf_counter()
    with Gallery.open(directory) as gallery:
        healths = [gallery.index(modality).health.state for modality in ("face", "voice")]
    assert healths == ["rebuilt", "rebuilt"], healths
    return {"seconds": time.perf_counter() - started}


def search(size: int, directory: Path, searches: int) -> dict:
    from fvmatch.gallery import Gallery

    baseline = rss_bytes()
    started = time.perf_counter()
    gallery = Gallery.open(directory)
    healths = [gallery.index(modality).health.state for modality in ("face", "voice")]
    open_seconds = time.perf_counter() - started
    rng = np.random.default_rng(0)
    for _ in range(searches):
        query = rng.normal(size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        for against in (["face"], ["voice"]):
            assert len(gallery.search(query, against, top=10)) == 10
    gallery.close()
    assert healths == ["ok", "ok"], healths
    return {"baseline_rss": baseline, "seconds": open_seconds}


def disk(directory: Path) -> dict:
    database = sum(p.stat().st_size for p in directory.glob("gallery.db*"))
    indexes = sum(p.stat().st_size for p in directory.glob("*.hnsw*"))
    return {"database_bytes": database, "index_bytes": indexes}


def child(arguments: list[str], searches: int) -> dict:
    """Run one stage in a fresh process: what it measured, and its peak RSS (bytes) measured by its small parent."""
    run = measure([sys.executable, __file__, "--searches", str(searches), "--stage", *arguments])
    if run.exit_code != 0:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{run.stderr}")
    return json.loads(run.stdout) | {"peak_rss": run.peak_rss_mib * (1 << 20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000])
    parser.add_argument("--searches", type=int, default=100)
    parser.add_argument("--stage", nargs=3, help=argparse.SUPPRESS)  # STAGE SIZE DIRECTORY, in a child process
    options = parser.parse_args()
    if options.stage:
        stage, size, directory = options.stage[0], int(options.stage[1]), Path(options.stage[2])
        if stage == "search":
            measured = search(size, directory, options.searches)
        else:
            measured = {"build": build, "add": add, "rebuild": rebuild}[stage](size, directory)
        print(json.dumps(measured))
        return

    mib, gib = 1 << 20, 1 << 30
    stages = ("build", "search", "add", "rebuild")
    rows = []
    with tempfile.TemporaryDirectory() as root:
        for size in options.sizes:
            directory = Path(root) / f"g{size}"
            row = {"items": size}
            for stage in stages:
                row[stage] = child([stage, str(size), str(directory)], options.searches)
                if stage == "search":
                    row.update(disk(directory))
                    row["baseline"] = row[stage]["baseline_rss"]
            rows.append(row)
    print("peak RSS of a fresh process per stage (MiB); disk sizes after the build (MiB); seconds in brackets")
    print(f"{'items':>9} {'database':>9} {'indexes':>8} {'build':>14} {'open+search':>14} {'add 1,000':>14} "
          f"{'rebuild':>14}")
    for row in rows:
        cells = " ".join(f"{row[s]['peak_rss'] / mib:>7.0f} ({row[s]['seconds']:>4.1f})" for s in stages)
        print(f"{row['items']:>9,} {row['database_bytes'] / mib:>9.1f} {row['index_bytes'] / mib:>8.1f} {cells}")
    print(f"a fresh process with the gallery code imported holds {rows[0]['baseline'] / mib:.0f} MiB before opening")
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        scale = 1_000_000 / (large["items"] - small["items"]) / gib
        slope = {s: (large[s]["peak_rss"] - small[s]["peak_rss"]) * scale for s in stages}
        print(f"per million items (slope {small['items']:,} -> {large['items']:,}), GiB: "
              f"disk {(large['database_bytes'] - small['database_bytes']) * scale:.2f} database + "
              f"{(large['index_bytes'] - small['index_bytes']) * scale:.2f} indexes; "
              + ", ".join(f"{s} {slope[s]:.2f}" for s in stages) + " (peak RSS)")


if __name__ == "__main__":
    main()
