"""One cold face query against a gallery of a million items, side by side with the same query on a one-item gallery.

Run: .venv/bin/python benchmarks/gallery_cold_query.py [--items 1000000] [--rounds 5] [--keep DIR] [--space joint]

Two galleries, each started by `fvmatch enroll` of one real photo (../shared/realmedia/faces; matplotlib's
grace_hopper.jpg when absent), so both are pinned to the shipped model and hold its spaces:
  - small: that one item;
  - large: the same item plus `--items - 1` face items added through the library (Gallery.add in batches of
    10,000, one transaction each, then flush), each with a joint (256-D) and a dlib-face (128-D) vector drawn like
    benchmarks/gallery_search.py's identities (4 items each, clustered), realistic paths, sha256 and quality.
`--keep DIR` keeps the large gallery in DIR and reuses it when it is there (building 1M takes minutes).
`--space joint` searches the joint space's faces instead of the face space's (the query then loads torch).

Then `fvmatch identify --face PHOTO --against face -g G` runs as a fresh process on each gallery, interleaved round
after round (one untimed warm-up round first: warm disk cache, and the first open of an index that this fvmatch has
not seen yet), and the table shows median wall seconds and peak RSS of each, and the large gallery's extra cost:
seconds and memory. Each query is started, timed and measured by a small fresh parent (startup.run_once ->
measured_child.py): started from this process, which may have built the large gallery, a child's peak RSS would
begin at this process's own (the one-item query read 2,838 MiB after a 1M build). In-process, the cost of opening
the large index is split into its stages (sidecar, file check, hnswlib load, comparison with the database).
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from startup import DEFAULT_PHOTOS, FVMATCH, choose_photos, run_once  # noqa: E402

BATCH = 10_000
PER_IDENTITY = 4
SUBSPACE = 32
SPACES = {"joint": 256, "dlib-face": 128}


def unit(vectors: np.ndarray) -> np.ndarray:
    return (vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)).astype(np.float32)


def enroll_one(gallery: Path, identity: str, photo: Path) -> None:
    result = subprocess.run([FVMATCH, "enroll", "-g", str(gallery), "--identity", identity, "--face", str(photo)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"enrolling {photo} failed ({result.returncode}): {result.stderr.strip()}")


def fill(gallery_dir: Path, items: int, seed: int) -> float:
    """Add `items` synthetic face items through the library; returns the seconds it took."""
    from fvmatch.gallery import Gallery, NewItem

    rng = np.random.default_rng(seed)
    identities = (items + PER_IDENTITY - 1) // PER_IDENTITY
    bases = {space: np.linalg.qr(rng.normal(size=(dim, SUBSPACE)))[0] for space, dim in SPACES.items()}
    began = time.perf_counter()
    with Gallery.open(gallery_dir) as gallery, gallery.writer():
        for first in range(0, items, BATCH):
            count = min(BATCH, items - first)
            people = np.arange(first, first + count) // PER_IDENTITY
            vectors = {}
            for space, dim in SPACES.items():  # a batch holds whole identities (BATCH is a multiple of 4)
                first_person = first // PER_IDENTITY
                persons = people[-1] - first_person + 1
                centres = rng.normal(size=(persons, SUBSPACE)) @ bases[space].T + 0.1 * rng.normal(size=(persons, dim))
                vectors[space] = unit(unit(centres)[people - first_person] + 0.047 * rng.normal(size=(count, dim)))
            batch = []
            for offset in range(count):
                i = first + offset
                person = f"case-2024-0117/person{people[offset]:07d}"
                batch.append(NewItem(person, "face", f"/evidence/case-2024-0117/faces/{people[offset]:07d}/{i:08d}.jpg",
                                     f"{i:064x}", 180_000, 0.998, {space: v[offset] for space, v in vectors.items()},
                                     {"detection_probability": 0.9981, "box": [61.2, 48.9, 190.4, 214.7],
                                      "eye_distance_px": 63.2}))
            gallery.add(batch)
            done = first + count
            if done % 100_000 == 0 or done == items:
                print(f"  {done:,} items, {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
        gallery.flush()
    return time.perf_counter() - began


def open_stages(gallery_dir: Path, space: str) -> dict[str, float]:
    """Seconds of each stage of opening the large gallery's face index of `space`, in this process (warm disk)."""
    from fvmatch.gallery import Gallery

    with Gallery.open(gallery_dir) as gallery:
        began = time.perf_counter()
        index = gallery.index("face", space)
        total = time.perf_counter() - began
        return {"open index (total)": total, **getattr(index, "timings", {}), "state": index.health.state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="keep the large gallery here; reuse it when present")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--space", help="the space to search (default: the face space, as identify chooses)")
    args = parser.parse_args()

    query, photos = choose_photos(args.photos)
    identity, (reference, *_) = next(iter(photos.items()))
    with tempfile.TemporaryDirectory(prefix="fvmatch-cold-") as scratch:
        small = Path(scratch) / "small"
        enroll_one(small, identity, reference)
        large = args.keep or Path(scratch) / "large"
        build_seconds = None
        if not (large / "gallery.db").exists():
            enroll_one(large, identity, reference)
            print(f"building {args.items:,} items in {large}", file=sys.stderr)
            build_seconds = fill(large, args.items - 1, args.seed)
        disk = sum(p.stat().st_size for p in large.iterdir() if p.is_file())

        space = ["--space", args.space] if args.space else []
        commands = {name: [FVMATCH, "identify", "--face", str(query), "--against", "face", "-g", str(path), *space]
                    for name, path in (("one-item gallery", small), (f"{args.items:,}-item gallery", large))}
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        load_before = os.getloadavg()
        for round_number in range(args.rounds + 1):
            for name, arguments in commands.items():
                wall, rss, code = run_once(arguments)
                if code not in (0, 1):
                    sys.exit(f"{name} exited {code}: {' '.join(arguments)}")
                if round_number > 0:
                    runs[name].append((wall, rss))
        load_after = os.getloadavg()
        stages = open_stages(large, args.space or "dlib-face")

    print(f"query {query}; {args.rounds} cold runs each, interleaved; {os.cpu_count()} CPUs; load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after; large gallery {disk / 2**30:.2f} GiB on disk"
          + (f", built in {build_seconds:.0f} s" if build_seconds is not None else "") + "\n")
    print("| gallery | wall median (s) | min | max | peak RSS median (MiB) |")
    print("|---|---:|---:|---:|---:|")
    medians = {}
    for name, measured in runs.items():
        walls = [wall for wall, _ in measured]
        medians[name] = (statistics.median(walls), statistics.median(rss for _, rss in measured))
        print(f"| {name} | {medians[name][0]:.2f} | {min(walls):.2f} | {max(walls):.2f} | {medians[name][1]:.0f} |")
    (small_wall, small_rss), (large_wall, large_rss) = medians.values()
    print(f"\nlarge gallery's extra cost: {large_wall - small_wall:+.2f} s, {large_rss - small_rss:+.0f} MiB "
          f"(peak {large_rss / 1024:.2f} GiB)")
    print(f"\nopening the large gallery's {args.space or 'dlib-face'} face index in one process: "
          + ", ".join(f"{k} {v:.2f} s" if isinstance(v, float) else f"{k} {v}" for k, v in stages.items()))


if __name__ == "__main__":
    main()
