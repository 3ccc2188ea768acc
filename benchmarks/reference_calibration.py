"""Build fvmatch's shipped reference calibrations (fvmatch/reference/) from public real media, and print their validation.

    .venv/bin/python benchmarks/reference_calibration.py --faces REFDATA/faces --voices REFDATA/voices --work WORK \
        [--check ../shared/realmedia]

FACES and VOICES are plain folders `<person>/<file>` with a SOURCES.csv (file, identity or speaker, repository, commit,
path_in_repository, sha256, licence, ...): public real media assembled for this, kept out of the repository. Per
space (`dlib-face` face-face, `ge2e-voice` voice-voice): the people are split, seeded, into a fitting part and a
held-out part (--held-out, a fraction of the people); the logistic-regression map is fitted on the fitting part's
trials (fvmatch.calibration.fitting.fit) and its log10 LRs bounded by ELUB (NFI's lir, Vergeer et al. 2016); the held-out
part's trials (people the map never saw) give Cllr, Cllr_min and EER; --check gives the same on a second real set
(../shared/realmedia). Writes fvmatch/reference/calibration.json (the entries, each marked "reference" and naming its
data, its sources' repositories, commits and licences) and fvmatch/reference/sources-<modality>.csv (every file
used: its person, part, repository, path and sha256). Needs lir (the dev extra).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fvmatch.calibration.fitting import FORMAT, MAX_TRIALS, cllr, cllr_min, fit, log10_lr, pair_scores  # noqa: E402
from fvmatch.evaluation.corpus import ItemSet, embed_spaces  # noqa: E402
from fvmatch.evaluation.metrics import equal_error_rate  # noqa: E402
from fvmatch.calibration.scoring import calibration_key  # noqa: E402

OUT = ROOT / "fvmatch" / "reference"
SPACES = {"face": ("dlib-face", "face-face", "faces", "photos"), "voice": ("ge2e-voice", "voice-voice", "voices", "recordings")}
BOUNDS_METHOD = "ELUB (empirical lower and upper bounds, Vergeer et al. 2016; NFI lir {version}, one misleading LR added each side)"


def elub_bounds(log10_lrs: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    from lir.algorithms.bayeserror import elub

    return elub(np.array(log10_lrs, dtype=np.float64), np.asarray(labels, dtype=np.float64), add_misleading=1)


def linked_layout(source: Path, folder_name: str, work: Path, tag: str) -> Path:
    """A plain folder `<folder_name>/<person>` (faces or voices) linking to SOURCE's person folders, as embed_spaces
    reads one."""
    layout = work / f"layout-{tag}"
    folder = layout / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    for person in sorted(p for p in source.iterdir() if p.is_dir()):
        link = folder / person.name
        if not link.exists():
            link.symlink_to(person.resolve(), target_is_directory=True)
    return layout


def held_out_people(names: list[str], held_out: float, seed: int, salt: int = 0x5EF) -> set[str]:
    """The people whose trials validate a map and never fit it: a seeded share of them, the same for every entry
    (`salt`: another draw from the same seed, as benchmarks/attributes.py makes for its heads)."""
    ordered = sorted(set(names))
    rng = np.random.default_rng([seed, salt])
    return {ordered[i] for i in rng.permutation(len(ordered))[: round(held_out * len(ordered))]}


def subset(items: ItemSet, keep: np.ndarray) -> ItemSet:
    """The items of the owners in `keep`."""
    mask = np.isin(items.owners, keep)
    return ItemSet([p for p, m in zip(items.paths, mask) if m], items.owners[mask], items.vectors[mask])


def question_scores(questions: ItemSet, references: ItemSet, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """pair_scores between degraded questions and clean references of the same files: a question is never paired
    with the reference made from its own recording or photo (same `paths` entry)."""
    rng = np.random.default_rng([seed, 0xC0D])
    same, people = [], 0
    for owner in np.intersect1d(questions.owners, references.owners):
        mine, theirs = np.flatnonzero(questions.owners == owner), np.flatnonzero(references.owners == owner)
        block = questions.vectors[mine] @ references.vectors[theirs].T
        other_file = np.array([[questions.paths[i] != references.paths[j] for j in theirs] for i in mine])
        same.append(block[other_file])
        people += bool(other_file.any())
    rows, columns = rng.integers(len(questions), size=2 * MAX_TRIALS), rng.integers(len(references), size=2 * MAX_TRIALS)
    keep = questions.owners[rows] != references.owners[columns]
    rows, columns = rows[keep][:MAX_TRIALS], columns[keep][:MAX_TRIALS]
    different = np.einsum("ij,ij->i", questions.vectors[rows], references.vectors[columns]).astype(np.float64)
    return np.concatenate(same).astype(np.float64), different, people


def trial_scores(questions: ItemSet, references: ItemSet, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    return pair_scores(questions, questions, seed) if questions is references else question_scores(questions,
                                                                                                    references, seed)


def validation(entry: dict, items: ItemSet, seed: int, references: ItemSet | None = None) -> dict:
    """Cllr of the entry's map, Cllr_min and EER on the trials among `items` (people the map was not fitted on;
    `references`: questions against these references instead of among themselves)."""
    same, different, people = trial_scores(items, items if references is None else references, seed)
    return trial_figures(entry, same, different, people, len(items))


def trial_figures(entry: dict, same: np.ndarray, different: np.ndarray, people: int, items: int) -> dict:
    """Cllr of the entry's map, Cllr_min and EER on these same-person and different-person scores."""
    labels = np.r_[np.ones(len(same)), np.zeros(len(different))].astype(bool)
    rate, _ = equal_error_rate(labels, np.r_[same, different])
    return {"people": people, "items": items, "same": len(same), "different": len(different),
            "cllr": round(cllr(log10_lr(same, entry), log10_lr(different, entry)), 4),
            "cllr_min": round(cllr_min(same, different), 4), "eer": round(float(rate), 4),
            "log10_lr_range": [round(float(log10_lr(same, entry).min()), 2), round(float(log10_lr(different, entry).max()), 2)]}


def reference_fields(data: str, space: str, space_model_id: str, held_out: dict) -> dict:
    """What every shipped entry says of itself beside its map: its data, space and model, bounds, time, validation."""
    return {"reference": True, "data": data, "space": space, "space_model_id": space_model_id,
            "bounds_method": BOUNDS_METHOD.format(version=version("lir")),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "held_out": held_out}


def read_sources(source: Path) -> list[dict]:
    with open(source / "SOURCES.csv", newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def summary_of_sources(rows: list[dict]) -> list[dict]:
    by_repository: dict[tuple, dict] = {}
    for row in rows:
        key = (row["repository"], row["commit"])
        entry = by_repository.setdefault(key, {"repository": row["repository"], "commit": row["commit"],
                                               "licence": row["licence"], "files": 0, "people": set()})
        entry["files"] += 1
        entry["people"].add(row.get("identity") or row.get("speaker"))
    return [{**entry, "people": len(entry["people"])} for entry in by_repository.values()]


def build(modality: str, source: Path, work: Path, embedder, held_out: float, seed: int, check: Path | None) -> tuple[dict, list[dict]]:
    space, kind, folder, unit = SPACES[modality]
    corpus = embed_spaces(linked_layout(source, folder, work, modality), embedder, [space], cache_dir=work / "cache")[space]
    items = corpus.items(modality)
    people = np.unique(items.owners)
    held_names = held_out_people([corpus.identities[owner]["identity"] for owner in people], held_out, seed)
    held = np.array([owner for owner in people if corpus.identities[owner]["identity"] in held_names], dtype=int)
    fitting = np.setdiff1d(people, held)
    fit_items = subset(items, fitting)
    same, different, count = pair_scores(fit_items, fit_items, seed)
    entry = fit(same, different, count, bound=elub_bounds)
    rows = read_sources(source)
    label = (f"fvmatch reference {folder} 1 ({len(fit_items):,} public {unit} of {len(fitting)} people, every file in "
             f"fvmatch/reference/sources-{folder}.csv)")
    entry.update({**reference_fields(label, space, corpus.model_id, validation(entry, subset(items, held), seed)),
                  "sources": summary_of_sources(rows), "failures": len(corpus.failures)})
    if check is not None:
        checked = embed_spaces(linked_layout(check / folder, folder, work, f"{modality}-check"), embedder, [space],
                               cache_dir=work / "cache")[space]
        entry["check"] = {"data": str(check), **validation(entry, checked.items(modality), seed)}
    part = {corpus.identities[owner]["identity"]: ("held-out" if owner in held else "fit") for owner in people}
    listed = [{**{k: row[k] for k in ("repository", "path_in_repository", "sha256")},
               "person": row.get("identity") or row.get("speaker"),
               "part": part.get(row.get("identity") or row.get("speaker"), "not embedded")} for row in rows]
    return entry, listed


VOICE_CONDITIONS = ("telephone", "noisy", "telephone-noisy", "narrowband")
FACE_BAND_EYES = {"small": 10.0, "medium": 21.0}  # eye distance (px) a photo is shrunk to, for its band's entry
PER_PERSON = {"face": 10, "voice": 8}  # files of each person a condition's or band's entry is fitted and checked on


class VectorCache:
    """Vectors (and a face's eye distance and box) of files already embedded in a space, kept in WORK between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = json.loads(path.read_text()) if path.is_file() else {}

    def get(self, space: str, path: Path, embed) -> tuple[np.ndarray, dict] | None:
        key = f"{space}|{path}"
        if key not in self.rows:
            try:
                vector, quality = embed(path)
                self.rows[key] = [vector.astype(float).round(7).tolist(),
                                  {name: quality.get(name) for name in ("eye_distance_px", "box")}]
            except Exception as error:  # a file that fails is left out of the entry, and counted
                from fvmatch.errors import FvmatchError

                if not isinstance(error, FvmatchError):
                    raise
                self.rows[key] = None
        row = self.rows[key]
        return None if row is None else (np.asarray(row[0], np.float32), row[1])

    def save(self) -> None:
        self.path.write_text(json.dumps(self.rows))


def person_files(source: Path, modality: str) -> list[tuple[str, Path]]:
    """(person, file) of the first PER_PERSON files of each person folder."""
    return [(person.name, path) for person in sorted(p for p in source.iterdir() if p.is_dir())
            for path in sorted(f for f in person.iterdir() if f.is_file())[: PER_PERSON[modality]]]


def item_set(entries: list[tuple[str, Path, np.ndarray]], names: list[str]) -> ItemSet:
    return ItemSet([str(path) for _, path, _ in entries], np.array([names.index(p) for p, _, _ in entries], dtype=int),
                   np.stack([vector for _, _, vector in entries]).astype(np.float32))


def degraded_entry(questions: ItemSet, references: ItemSet, held_names: set[str], names: list[str], seed: int,
                   data: str, space: str, space_model_id: str) -> dict:
    """An entry fitted on the fitting people's questions against their references, checked on the held-out ones'."""
    held = np.array([names.index(name) for name in held_names if name in names], dtype=int)
    fitting = np.setdiff1d(np.arange(len(names)), held)
    fit_q, fit_r = subset(questions, fitting), subset(references, fitting)
    same, different, count = question_scores(fit_q, fit_r, seed)
    entry = fit(same, different, count, bound=elub_bounds)
    entry.update(reference_fields(data, space, space_model_id,
                                  validation(entry, subset(questions, held), seed, subset(references, held))))
    return entry


def voice_condition_entries(source: Path, work: Path, embedder, held_out: float, seed: int) -> dict[str, dict]:
    """Per reference condition: questions of that condition (each file brought to it, as fvmatch.spaces.conditions
    brings a reference) embedded as such questions are read, against the clean files' references of the condition."""
    import soundfile

    from fvmatch.media.audio import SAMPLE_RATE, load_audio
    from fvmatch.spaces import VOICE_SPACE, query_space
    from fvmatch.spaces.conditions import bring_to_condition, conditioned

    files = person_files(source, "voice")
    names = sorted({person for person, _ in files})
    held_names = held_out_people(names, held_out, seed)
    cache = VectorCache(work / "conditions.json")
    entries = {}
    for condition in VOICE_CONDITIONS:
        space = conditioned(VOICE_SPACE, condition)
        question_space = query_space(space)
        references, questions = [], []
        for person, path in files:
            found = cache.get(space, path, lambda p: _voice(embedder, p, space))
            degraded = work / f"voices@{condition}" / person / f"{path.stem}.wav"
            if not degraded.exists():
                degraded.parent.mkdir(parents=True, exist_ok=True)
                soundfile.write(degraded, bring_to_condition(load_audio(path), condition), SAMPLE_RATE, subtype="PCM_16")
            asked = cache.get(question_space, degraded, lambda p: _voice(embedder, p, question_space))
            if found is not None and asked is not None:
                references.append((person, path, found[0]))
                questions.append((person, path, asked[0]))
        cache.save()
        data = (f"fvmatch reference voices 1 brought to the {condition} condition ({len(questions):,} recordings of "
                f"{len(names)} people, the first {PER_PERSON['voice']} of each; people split as for the clean entry)")
        entries[calibration_key(space, "voice-voice")] = degraded_entry(
            item_set(questions, names), item_set(references, names), held_names, names, seed, data, space,
            embedder.space(space).model_id)
    return entries


def _voice(embedder, path: Path, space: str) -> tuple[np.ndarray, dict]:
    embedding = embedder.embed_voice(path, spaces=[space])
    return embedding.vectors[space], embedding.quality


def face_band_entries(source: Path, work: Path, embedder, held_out: float, seed: int) -> dict[str, dict]:
    """Per size band: each photo shrunk so that its eyes are FACE_BAND_EYES apart (fvmatch.media.degrade.shrink_face),
    kept where its measured band is that band, against the clean photos as references."""
    from PIL import Image

    from fvmatch.media.degrade import shrink_face
    from fvmatch.quality.face import face_band
    from fvmatch.spaces import FACE_SPACE

    files = person_files(source, "face")
    names = sorted({person for person, _ in files})
    held_names = held_out_people(names, held_out, seed)
    cache = VectorCache(work / "bands.json")
    clean = {}
    for person, path in files:
        found = cache.get(FACE_SPACE, path, lambda p: _face(embedder, p))
        if found is not None:
            clean[path] = (person, found[0], found[1]["eye_distance_px"], found[1]["box"])
    entries = {}
    for band, eyes in FACE_BAND_EYES.items():
        references, questions = [], []
        for path, (person, vector, eye_distance, box) in clean.items():
            shrunk = work / f"faces@{band}" / person / f"{path.stem}.png"
            if not shrunk.exists() and eye_distance and box:
                shrunk.parent.mkdir(parents=True, exist_ok=True)
                with Image.open(path) as image:
                    shrink_face(image.convert("RGB"), box, (box[2] - box[0]) * eyes / eye_distance).save(shrunk)
            asked = cache.get(FACE_SPACE, shrunk, lambda p: _face(embedder, p)) if shrunk.exists() else None
            if asked is not None and face_band(asked[1]) == band:
                references.append((person, path, vector))
                questions.append((person, path, asked[0]))
        cache.save()
        data = (f"fvmatch reference faces 1 shrunk to the {band} band ({len(questions):,} photos of {len(names)} "
                f"people, eyes about {eyes:.0f} px apart; people split as for the clean entry)")
        entries[calibration_key(FACE_SPACE, "face-face", band)] = degraded_entry(
            item_set(questions, names), item_set(references, names), held_names, names, seed, data, FACE_SPACE,
            embedder.space(FACE_SPACE).model_id)
    return entries


def template_trials(references: dict[str, np.ndarray],
                    questions: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Same-person and different-person scores of every question against every person's template (each person's
    template from `references`, fvmatch.analysis.templates.template_vector)."""
    from fvmatch.analysis.templates import template_vector

    people = sorted(set(references) & set(questions))
    templates = np.stack([template_vector(references[person]) for person in people])
    same, different = [], []
    for row, person in enumerate(people):
        scores = questions[person] @ templates.T
        same.append(scores[:, row])
        different.append(np.delete(scores, row, axis=1).ravel())
    return np.concatenate(same).astype(np.float64), np.concatenate(different).astype(np.float64)


def face_template_entries(source: Path, work: Path, embedder, held_out: float, seed: int) -> dict[str, dict]:
    """Per template size n (2 up to fvmatch.analysis.templates.TEMPLATE_SIZE), of all sizes and per size band:
    each person's photos after their first n (clean, or shrunk to the band as face_band_entries shrinks them)
    against templates of every person's first n clean photos. Run after face_band_entries (its shrunk photos)."""
    from fvmatch.analysis.templates import TEMPLATE_SIZE
    from fvmatch.quality.face import face_band
    from fvmatch.spaces import FACE_SPACE

    files = person_files(source, "face")
    names = sorted({person for person, _ in files})
    held_names = held_out_people(names, held_out, seed)
    cache = VectorCache(work / "bands.json")
    photos: dict[str, list[tuple[Path, np.ndarray]]] = {}
    for person, path in files:
        found = cache.get(FACE_SPACE, path, lambda p: _face(embedder, p))
        if found is not None:
            photos.setdefault(person, []).append((path, found[0]))

    def asked(person: str, path: Path, vector: np.ndarray, band: str | None) -> np.ndarray | None:
        if band is None:
            return vector
        shrunk = work / f"faces@{band}" / person / f"{path.stem}.png"
        found = cache.get(FACE_SPACE, shrunk, lambda p: _face(embedder, p)) if shrunk.exists() else None
        return found[0] if found is not None and face_band(found[1]) == band else None

    entries = {}
    for size in range(2, TEMPLATE_SIZE + 1):
        references = {person: np.stack([v for _, v in items[:size]]) for person, items in photos.items()
                      if len(items) > size}
        for band in (None, *FACE_BAND_EYES):
            questions = {}
            for person in references:
                found = [asked(person, path, vector, band) for path, vector in photos[person][size:]]
                if any(vector is not None for vector in found):
                    questions[person] = np.stack([vector for vector in found if vector is not None])
            fitting = {person for person in questions if person not in held_names}
            same, different = template_trials({p: references[p] for p in fitting}, {p: questions[p] for p in fitting})
            entry = fit(same, different, len(fitting), bound=elub_bounds)
            held_people = [p for p in questions if p in held_names]
            held = template_trials({p: references[p] for p in held_people}, {p: questions[p] for p in held_people})
            sized = f"shrunk to the {band} band" if band else "clean"
            data = (f"fvmatch reference faces 1: templates of each person's first {size} photos against their other "
                    f"photos, {sized} ({sum(len(q) for q in questions.values()):,} questions of {len(questions)} "
                    "people; people split as for the clean entry)")
            entry.update(reference_fields(data, FACE_SPACE, embedder.space(FACE_SPACE).model_id, trial_figures(
                entry, *held, len(held_people), sum(len(questions[p]) for p in held_people))))
            entries[calibration_key(f"{FACE_SPACE} template{size}", "face-face", band)] = entry
        cache.save()
    return entries


def _face(embedder, path: Path) -> tuple[np.ndarray, dict]:
    embedding = embedder.embed_face(path, spaces=["dlib-face"])[0]
    return embedding.vectors["dlib-face"], embedding.quality


def write_sources(listed: list[dict], path: Path) -> str:
    columns = ["person", "part", "repository", "path_in_repository", "sha256"]  # commits, licences: in the entry
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(listed, key=lambda row: (row["person"], row["repository"], row["path_in_repository"])))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def print_row(key: str, entry: dict) -> None:
    held, check = entry["held_out"], entry.get("check")
    low, high = entry["map"]["bounds"]
    print(f"| {key} | {entry['trials']['identities']} people, {entry['trials']['same']:,} same / "
          f"{entry['trials']['different']:,} different | [{low:+.2f}, {high:+.2f}] | {held['people']} people, "
          f"{held['same']:,} / {held['different']:,} trials: {held['cllr']:.3f} / {held['cllr_min']:.3f} / "
          f"{held['eer']:.2%} | " + (f"{check['people']} people: {check['cllr']:.3f} / {check['cllr_min']:.3f} / "
                                     f"{check['eer']:.2%}" if check else "-") + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path)
    parser.add_argument("--voices", type=Path)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--check", type=Path, help="a second real set (faces/<person>, voices/<person>) to validate on")
    parser.add_argument("--held-out", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--degraded", action="store_true", help="also the entries of the voice reference conditions "
                        "and the face size bands (questions degraded from the same files)")
    args = parser.parse_args()
    from fvmatch.analysis.embedder import Embedder

    embedder = Embedder.load()
    args.out.mkdir(parents=True, exist_ok=True)
    existing = args.out / "calibration.json"
    calibration = json.loads(existing.read_text()) if existing.is_file() else {"format": FORMAT}
    print("| entry | fitted on | ELUB log10 LR bounds | held-out people: Cllr / Cllr_min / EER |"
          " --check: Cllr / Cllr_min / EER |")
    print("|---|---|---|---|---|")
    for modality, source in (("face", args.faces), ("voice", args.voices)):
        if source is None:
            continue
        entry, listed = build(modality, source, args.work, embedder, args.held_out, args.seed, args.check)
        folder = SPACES[modality][2]
        entry["sources_csv_sha256"] = write_sources(listed, args.out / f"sources-{folder}.csv")
        key = calibration_key(entry["space"], SPACES[modality][1])
        calibration[key] = entry
        print_row(key, entry)
        if args.degraded:
            makers = [face_band_entries, face_template_entries] if modality == "face" else [voice_condition_entries]
            for make in makers:
                for key, degraded in make(source, args.work, embedder, args.held_out, args.seed).items():
                    calibration[key] = {**degraded, **{name: entry[name] for name in ("sources", "sources_csv_sha256")}}
                    print_row(key, degraded)
    existing.write_text(json.dumps(calibration, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {existing}")


if __name__ == "__main__":
    main()
