"""Identity templates for faces: rank-1 with identities scored by their best reference, or from all their references.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_templates.py [--faces REFDATA/faces] [--work WORK]

FACES (default ../refdata/faces, the reference faces of benchmarks/reference_calibration.py; any `<person>/<photo>`
folder) and WORK (default ../refwork, that script's work folder): the vectors and the shrunk photos are
reference_calibration.py's own (`VectorCache` bands.json, `faces@<band>/`), embedded here where missing. Each
person's first PER_PERSON photos (sorted by name) are read; of those, the first K are the references and the photos
after the first max(KS) the questions (the same questions for every K), asked clean and shrunk to each size band;
every question is identified among all people. Rules, for one person's reference cosines s_i and unit vectors v_i:
  - best: max s_i (identify's rule before templates; the peers' nearest neighbour)
  - mean: the mean of s_i; best two: the mean of the two highest s_i
  - template: the query's cosine with the mean of the v_i, renormalised (fvmatch.analysis.templates, identify's rule)
  - template, weighted by eye distance: the same with each v_i weighted by its photo's eye distance in pixels
The map that judges each rule's score is beside the point here: rank-1 is the ranking alone.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attributes import wilson  # noqa: E402  (benchmarks beside this one)
from reference_calibration import FACE_BAND_EYES, VectorCache, _face, person_files  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
KS = (1, 2, 3, 5)


def rules() -> dict:
    from fvmatch.analysis.templates import template_vector

    return {
        "best": lambda s, v, w, q: s.max(),
        "mean": lambda s, v, w, q: s.mean(),
        "best two": lambda s, v, w, q: np.sort(s)[-2:].mean(),
        "template": lambda s, v, w, q: float(template_vector(v) @ q),
        "template, eye-distance weights": lambda s, v, w, q: float(template_vector(v * w[:, None]) @ q),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT / "refdata" / "faces")
    parser.add_argument("--work", type=Path, default=ROOT / "refwork")
    args = parser.parse_args()
    if not args.faces.is_dir():
        sys.exit(f"face_templates: {args.faces} is not a folder of <person>/<photo> (the reference faces: "
                 "benchmarks/reference_calibration.py's --faces)")
    from PIL import Image

    from fvmatch.analysis.embedder import Embedder
    from fvmatch.media.degrade import shrink_face
    from fvmatch.quality.face import face_band
    from fvmatch.spaces import FACE_SPACE

    embedder = Embedder.load()
    cache = VectorCache(args.work / "bands.json")
    photos: dict[str, list[tuple[Path, np.ndarray, dict]]] = {}
    for person, path in person_files(args.faces, "face"):
        found = cache.get(FACE_SPACE, path, lambda p: _face(embedder, p))
        if found is not None:
            photos.setdefault(person, []).append((path, *found))
    cache.save()
    people = {person: items for person, items in photos.items() if len(items) > max(KS)}
    conditions: dict[str, list[tuple[str, np.ndarray]]] = {name: [] for name in ("clean", *FACE_BAND_EYES)}
    for person, items in people.items():
        for path, vector, quality in items[max(KS):]:
            conditions["clean"].append((person, vector))
            for band, eyes in FACE_BAND_EYES.items():
                shrunk = args.work / f"faces@{band}" / person / f"{path.stem}.png"
                if not shrunk.exists() and quality.get("eye_distance_px") and quality.get("box"):
                    box = quality["box"]
                    shrunk.parent.mkdir(parents=True, exist_ok=True)
                    with Image.open(path) as image:
                        shrink_face(image.convert("RGB"), box, (box[2] - box[0]) * eyes / quality["eye_distance_px"]
                                    ).save(shrunk)
                asked = cache.get(FACE_SPACE, shrunk, lambda p: _face(embedder, p)) if shrunk.exists() else None
                if asked is not None and face_band(asked[1]) == band:
                    conditions[band].append((person, asked[0]))
    cache.save()
    scoring = rules()
    print(f"{len(people)} people, {sum(len(q) for q in conditions.values())} questions "
          f"({', '.join(f'{name} {len(q)}' for name, q in conditions.items())}); rank-1 [95% Wilson]")
    print("| questions | references a person | " + " | ".join(scoring) + " |")
    print("|---|---|" + "---|" * len(scoring))
    for condition, questions in conditions.items():
        for k in KS:
            references = {person: (np.stack([v for _, v, _ in items[:k]]),
                                   np.array([q.get("eye_distance_px") or 1.0 for _, _, q in items[:k]]))
                          for person, items in people.items()}
            cells = []
            for rule in scoring.values():
                hits = sum(max(references, key=lambda p: rule(references[p][0] @ q, *references[p], q)) == owner
                           for owner, q in questions)
                low, high = wilson(hits, len(questions))
                cells.append(f"{hits / len(questions):.3f} [{low:.2f}, {high:.2f}]")
            print(f"| {condition} | {k} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
