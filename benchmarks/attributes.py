"""Train and measure fvmatch's sex heads (fvmatch/reference/attributes.json) and the face-voice evidence they give.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attributes.py --faces REFDATA/faces --voices REFDATA/voices \
        [--voices REFDATA/voices_sex] --work WORK [--check-faces ../shared/realmedia/faces FACE_SEX.csv] \
        [--check-voices ../shared/realmedia/voices VOICE_SEX.csv]

FACES: `<person>/<photo>` with SEX.csv (person,sex F|M); VOICES: `<speaker>/<recording>` with SOURCES.csv (speaker,
sex, ...). Public real media kept out of the repository. The people are split, seeded, into a training part and a
held-out part (30%); a logistic head is trained on the training part's `dlib-face` (faces) or `ge2e-voice` (voices)
vectors, and its confusion P(read | true sex) measured on the held-out people's items is what the likelihood ratio
uses (fvmatch.evidence.attributes). Printed: each head's accuracy with a 95% Wilson interval on the held-out people and on the
--check sets, beside a peer (voices: a fundamental-frequency threshold fitted on the training part); the face-voice
evidence's V-F 1:2 on the held-out faces and voices, unstratified (U) and within one sex (G); its Cllr; the ELUB
bounds. Writes the heads with their cards into --out (default fvmatch/reference/attributes.json).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fvmatch.evidence.attributes import SEXES  # noqa: E402
from fvmatch.calibration.fitting import cllr  # noqa: E402
from fvmatch.evaluation.corpus import embed_spaces  # noqa: E402
from reference_calibration import held_out_people, linked_layout  # noqa: E402  (a benchmark beside this one)

SPACE = {"face": "dlib-face", "voice": "ge2e-voice"}
FOLDER = {"face": "faces", "voice": "voices"}
SEX_OF = {"F": "female", "M": "male", "female": "female", "male": "male"}


def wilson(successes: int, total: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% Wilson score interval of a proportion."""
    if total == 0:
        return (math.nan, math.nan)
    p = successes / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def labels_from(path: Path, key: str) -> dict[str, str]:
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {row[key]: SEX_OF[row["sex"]] for row in rows if row.get("sex") in SEX_OF}


def embedded(modality: str, source: Path, work: Path, embedder, tag: str) -> tuple[list[str], list[str], np.ndarray]:
    """(person of each item, its path, its vector) of a folder `<person>/<file>` in the head's space."""
    layout = linked_layout(source, FOLDER[modality], work, tag)
    corpus = embed_spaces(layout, embedder, [SPACE[modality]], cache_dir=work / "cache")[SPACE[modality]]
    items = corpus.items(modality)
    return ([corpus.identities[o]["identity"] for o in items.owners], [str(corpus.data / p) for p in items.paths],
            items.vectors)


def train_head(vectors: np.ndarray, female: np.ndarray) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(vectors, female.astype(int))
    return model.coef_[0], float(model.intercept_[0])


def confusion(read_female: np.ndarray, female: np.ndarray) -> dict:
    """P(read | true sex), each row summing to 1; add-one smoothed ((right + 1) / (n + 2)), so that no error seen
    among n items never becomes an error rate of 0 (an LR the data cannot support)."""
    table = {}
    for sex, truth in (("female", female), ("male", ~female)):
        read = read_female[truth] if sex == "female" else ~read_female[truth]
        right = (float(read.sum()) + 1.0) / (len(read) + 2.0)
        table[sex] = {sex: right, SEXES[1 - SEXES.index(sex)]: 1.0 - right}
    return table


def label_sources(modality: str, folders: list[Path]) -> dict[str, int]:
    """Where the sex labels come from, with the number of people each labelled."""
    from collections import Counter

    if modality == "face":
        with open(folders[0] / "SEX.csv", newline="", encoding="utf-8") as handle:
            return dict(Counter(row["source"].split(" (")[0].split(":")[0] for row in csv.DictReader(handle)))
    speakers = {}
    for folder in folders:
        with open(folder / "SOURCES.csv", newline="", encoding="utf-8") as handle:
            speakers.update({row["speaker"]: f"{row['corpus']} speaker documentation" for row in csv.DictReader(handle)
                             if row.get("sex") in SEX_OF})
    return dict(Counter(speakers.values()))


def write_voice_sources(folders: list[Path], labels: dict[str, str], held: set[str], path: Path) -> str:
    """Every recording the voice head saw or was measured on: its speaker, sex, part, repository, path and sha256."""
    import hashlib

    rows = []
    for folder in folders:
        with open(folder / "SOURCES.csv", newline="", encoding="utf-8") as handle:
            rows += [{"speaker": row["speaker"], "sex": labels[row["speaker"]],
                      "part": "held-out" if row["speaker"] in held else "training",
                      "repository": f"{row['repository']}@{row['commit'][:7]}", "path_in_repository":
                      row["path_in_repository"], "sha256": row["sha256"]}
                     for row in csv.DictReader(handle) if row["speaker"] in labels]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda row: (row["speaker"], row["path_in_repository"])))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def repositories_of(folders: list[Path]) -> list[str]:
    """The public repositories (owner/name@commit) the folders' SOURCES.csv name."""
    found = set()
    for folder in folders:
        with open(folder / "SOURCES.csv", newline="", encoding="utf-8") as handle:
            found |= {f"{row['repository']}@{row['commit'][:7]}" for row in csv.DictReader(handle)}
    return sorted(found)


def accuracy_row(name: str, read_female: np.ndarray, female: np.ndarray, people: int) -> str:
    right = int((read_female == female).sum())
    low, high = wilson(right, len(female))
    return (f"| {name} | {people} people, {len(female)} items ({int(female.sum())} F) | {right / len(female):.3f} "
            f"[{low:.3f}, {high:.3f}] |")


def median_f0(path: str) -> float:
    """The median fundamental frequency (Hz) of a recording's louder half of frames (librosa's YIN), 20 s at most."""
    import librosa

    from fvmatch.media.audio import load_audio

    samples = load_audio(path)[: 16000 * 20]
    f0 = librosa.yin(samples, fmin=60, fmax=400, sr=16000, frame_length=1024, hop_length=256)
    energy = librosa.feature.rms(y=samples, frame_length=1024, hop_length=256)[0][: len(f0)]
    loud = f0[: len(energy)][energy >= np.median(energy)]
    return float(np.median(loud)) if len(loud) else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--voices", type=Path, action="append", required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--check-faces", nargs=2, type=Path)
    parser.add_argument("--check-voices", nargs=2, type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "fvmatch" / "reference" / "attributes.json")
    args = parser.parse_args()
    from fvmatch.analysis.embedder import Embedder

    embedder = Embedder.load()
    heads, held_items = {}, {}
    print("| head, data | people, items | accuracy [95% interval] |")
    print("|---|---|---|")
    sources = {"face": [(args.faces, labels_from(args.faces / "SEX.csv", "person"))],
               "voice": [(folder, labels_from(folder / "SOURCES.csv", "speaker")) for folder in args.voices]}
    for modality in ("face", "voice"):
        people, paths, vectors, labels = [], [], [], {}
        for number, (folder, known) in enumerate(sources[modality]):
            who, where, what = embedded(modality, folder, args.work, embedder, f"{modality}-{number}")
            keep = [i for i, person in enumerate(who) if person in known]
            people += [who[i] for i in keep]
            paths += [where[i] for i in keep]
            vectors.append(what[keep])
            labels.update(known)
        vectors = np.concatenate(vectors)
        female = np.array([labels[p] == "female" for p in people])
        held = held_out_people(people, 0.3, args.seed, salt=0x5E7)
        test = np.array([p in held for p in people])
        weights, bias = train_head(vectors[~test], female[~test])
        read_female = (vectors @ weights + bias) >= 0
        table = confusion(read_female[test], female[test])
        train_people, test_people = len(set(people) - held), len(held & set(people))
        print(accuracy_row(f"{modality} sex, {SPACE[modality]} head: held-out people", read_female[test], female[test],
                           test_people))
        head = {"space": SPACE[modality], "space_model_id": embedder.space(SPACE[modality]).model_id,
                "weights": [round(float(w), 7) for w in weights], "bias": round(bias, 7),
                "output": "P(female) = sigmoid(weights . vector + bias); read female when >= 0.5",
                "trained_on": (f"{int((~test).sum())} public {'photos' if modality == 'face' else 'recordings'} of "
                               f"{train_people} people of known sex"),
                "measured_on": f"{int(test.sum())} items of {test_people} other people",
                "confusion": table, "accuracy": round(float((read_female[test] == female[test]).mean()), 4),
                "accuracy_interval": [round(v, 4) for v in wilson(int((read_female[test] == female[test]).sum()),
                                                                   int(test.sum()))],
                "repositories": repositories_of([folder for folder, _ in sources[modality]]),
                "people": {"trained_on": sorted(set(people) - held), "measured_on": sorted(held & set(people))},
                "labels": label_sources(modality, [folder for folder, _ in sources[modality]])}
        heads[f"{modality}-sex"] = head
        if modality == "voice":  # the voices beyond the reference set's are listed nowhere else: every file here
            head["sources_csv_sha256"] = write_voice_sources([folder for folder, _ in sources["voice"]], labels, held,
                                                             args.out.parent / "sources-sex-voices.csv")
        held_items[modality] = (read_female[test], female[test])
        if modality == "voice":  # the peer: a fundamental-frequency threshold fitted on the training part
            f0 = np.array([median_f0(p) for p in paths])
            usable = ~np.isnan(f0)
            candidates = np.linspace(100, 250, 151)
            fit_part = usable & ~test
            threshold = float(max(candidates, key=lambda t: ((f0[fit_part] >= t) == female[fit_part]).mean()))
            peer = usable & test
            print(accuracy_row(f"voice sex, peer: median F0 >= {threshold:.0f} Hz (YIN): held-out people",
                               f0[peer] >= threshold, female[peer], test_people))
        check = args.check_faces if modality == "face" else args.check_voices
        if check:
            folder, label_file = check
            check_labels = labels_from(label_file, "person" if modality == "face" else "speaker_folder")
            who, where, what = embedded(modality, folder, args.work, embedder, f"{modality}-check")
            keep = np.array([person in check_labels for person in who])
            truth = np.array([check_labels.get(person) == "female" for person in who])[keep]
            read = (what[keep] @ weights + bias) >= 0
            print(accuracy_row(f"{modality} sex, {SPACE[modality]} head: {folder}", read, truth,
                               len({p for p, k in zip(who, keep) if k})))
            if modality == "voice":
                f0 = np.array([median_f0(p) for p, k in zip(where, keep) if k])
                print(accuracy_row(f"voice sex, peer: median F0 >= {threshold:.0f} Hz (YIN): {folder}", f0 >= threshold,
                                   truth, len({p for p, k in zip(who, keep) if k})))
            head["check"] = {"data": folder.name if folder.name not in ("faces", "voices") else
                             f"../shared/realmedia/{folder.name}", "items": int(keep.sum()),
                             "accuracy": round(float((read == truth).mean()), 4),
                             "accuracy_interval": [round(v, 4) for v in wilson(int((read == truth).sum()), len(truth))]}
    evidence_figures(heads, held_items, args.seed)
    args.out.write_text(json.dumps(heads, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def evidence_figures(heads: dict, held: dict, seed: int) -> None:
    """The face-voice evidence over every held-out face paired with every held-out voice (faces and voices of
    different people: a pair 'of one person' is a face and a voice of one sex, since the readings depend on sex
    alone): its Cllr and ELUB bounds, stored in `heads`, and V-F 1:2 unstratified (U) and within one sex (G)."""
    from lir.algorithms.bayeserror import elub

    face_read, face_female = held["face"]
    voice_read, voice_female = held["voice"]
    population = {"female": 0.5, "male": 0.5}
    llr = {}
    for f_read in (True, False):
        for v_read in (True, False):
            read = {"face": "female" if f_read else "male", "voice": "female" if v_read else "male"}
            same = sum(population[s] * heads["face-sex"]["confusion"][s][read["face"]]
                       * heads["voice-sex"]["confusion"][s][read["voice"]] for s in SEXES)
            different = (sum(population[s] * heads["face-sex"]["confusion"][s][read["face"]] for s in SEXES)
                         * sum(population[s] * heads["voice-sex"]["confusion"][s][read["voice"]] for s in SEXES))
            llr[f_read, v_read] = math.log10(same / different)
    pairs = np.array([[llr[f, v] for v in voice_read] for f in face_read])
    same_sex = face_female[:, None] == voice_female[None, :]
    low, high = elub(np.r_[pairs[same_sex], pairs[~same_sex]].copy(),
                     np.r_[np.ones(same_sex.sum()), np.zeros((~same_sex).sum())], add_misleading=1)
    heads["bounds"] = [round(float(low), 2), round(float(high), 2)]
    heads["bounds_method"] = f"ELUB (Vergeer et al. 2016; NFI lir {version('lir')}) on the held-out faces x voices"
    heads["format"] = "fvmatch-attributes/1"
    heads["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    clipped = np.clip(pairs, low, high)
    heads["cllr"] = round(cllr(clipped[same_sex], clipped[~same_sex]), 4)
    # V-F 1:2: a voice, its own-sex face and a foil face; the higher LR picks, a tie is half right
    rng = np.random.default_rng([seed, 0x12])
    results = {"U": [], "G": []}
    for v in range(len(voice_read)):
        right = rng.choice(np.flatnonzero(face_female == voice_female[v]))
        for stratum, foils in (("U", np.arange(len(face_read))), ("G", np.flatnonzero(face_female == voice_female[v]))):
            foil = rng.choice(foils[foils != right])
            a, b = clipped[right, v], clipped[foil, v]
            results[stratum].append(1.0 if a > b else 0.5 if a == b else 0.0)
    heads["vf_1to2"] = {stratum: round(float(np.mean(values)), 4) for stratum, values in results.items()}
    print(f"\nface-voice sex evidence on {len(face_read)} held-out faces x {len(voice_read)} held-out voices: log10 LR "
          f"same-sex readings {llr[True, True]:+.2f} (female) / {llr[False, False]:+.2f} (male), different "
          f"{llr[True, False]:+.2f} / {llr[False, True]:+.2f}; ELUB [{low:+.2f}, {high:+.2f}]; Cllr {heads['cllr']:.3f}; "
          f"V-F 1:2 U {heads['vf_1to2']['U']:.3f}, G {heads['vf_1to2']['G']:.3f} (a tie counts half)")


if __name__ == "__main__":
    main()
