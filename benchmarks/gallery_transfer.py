"""Moving a gallery: `gallery export` and `gallery import` time and size at 10k and 100k items.

Run: .venv/bin/python benchmarks/gallery_transfer.py [--sizes 10000 100000]

Galleries of clustered 256-D unit vectors, 4 items per identity, one audit row per 1,000 items
(benchmarks/gallery_search.py's vectors), built through the library. Then, through the library
(fvmatch.gallery.transfer): the export (every file hashed into its manifest), the manifest check alone (every file
hashed again), and the import (the check, the rows, the indexes built from the vectors); seconds, items a second,
and the sizes of the gallery and of the export.
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


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def measure(size: int, seed: int) -> dict:
    from fvmatch.audit.trail import append_audit, verify_chain
    from fvmatch.gallery import Gallery, NewItem
    from fvmatch.gallery.transfer import export_gallery, import_gallery, read_manifest

    rng = np.random.default_rng(seed)
    identities = size // PER_IDENTITY
    owner = np.repeat(np.arange(identities), PER_IDENTITY)
    vectors = items_of(make_identities(identities, rng)[owner], rng)
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        with Gallery.open(root / "source", create=True, model_id="benchmark", embedding_dim=DIM) as gallery:
            with gallery.writer():
                for first in range(0, size, 1000):
                    ids = gallery.add([NewItem(f"id{owner[i]:07d}", "face", f"/bench/{i}", f"sha{i}", 0, 1.0,
                                               vectors[i]) for i in range(first, min(first + 1000, size))])
                    append_audit(gallery, "enroll", ["benchmark"], [], {"added": len(ids)}, "benchmark")
                gallery.flush()
            start = time.perf_counter()
            export_gallery(gallery, root / "export")
            exported = time.perf_counter() - start
        start = time.perf_counter()
        read_manifest(root / "export")
        checked = time.perf_counter() - start
        start = time.perf_counter()
        import_gallery(root / "export", root / "moved")
        imported = time.perf_counter() - start
        with Gallery.open(root / "moved") as moved:
            assert moved.counts()["face"] == size and verify_chain(moved).ok
        return {"items": size, "export_s": exported, "check_s": checked, "import_s": imported,
                "gallery_mib": folder_bytes(root / "source") / 2**20, "export_mib": folder_bytes(root / "export") / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("| items | gallery MiB | export MiB | export s (items/s) | manifest check s | import s (items/s) |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        row = measure(size, args.seed)
        print(f"| {size:,} | {row['gallery_mib']:.0f} | {row['export_mib']:.0f} | {row['export_s']:.1f} "
              f"({size / row['export_s']:,.0f}) | {row['check_s']:.2f} | {row['import_s']:.1f} "
              f"({size / row['import_s']:,.0f}) |", flush=True)


if __name__ == "__main__":
    main()
