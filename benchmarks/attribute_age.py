"""Train and measure fvmatch's age readings (fvmatch/evidence/age.py) and the face-voice evidence sex and age give.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attribute_age.py --faces REFDATA/faces_age \
        --voices REFDATA/voices_age --work WORK

FACES: `<photo id>/<photo>` with SOURCES.csv (person, age in years, sex F|M): real photos never used in training (the
face age network is dlib's, trained elsewhere), so every photo measures it. VOICES: `<speaker>/<recording>` with
SOURCES.csv (speaker, age_low, age_high, sex): real speakers of known age band (Common Voice's self-reported decades,
TIMIT/EMO-DB/VCTK ages). Public real media kept out of the repository.

- Voice: a multinomial logistic head on `ge2e-voice` vectors over the three bands (fvmatch.evidence.age.AGE_BANDS),
  classes weighted equally; its confusion P(read band | true band, sex) measured out of fold (5 folds by speaker:
  every speaker read by a head that never heard them); the shipped head is then fitted on all speakers.
- Face: the shipped network read off the `dlib-face` chip, as `fvmatch embed` does; its confusion measured on FACES.
- Each confusion per sex, shrunk towards the pooled one by SHRINK pseudo-counts (cells of few people stay sane).
- The face-voice evidence over FACES x VOICES (a pair "of one person" is a face and a voice of one sex and band,
  since the readings depend on these alone; voices the sex head trained on are left out): ELUB bounds, Cllr, V-F 1:2
  unstratified (U) and within one sex (G), with and without age.

Printed: each estimator's band accuracy (95% Wilson interval) beside the commonest-band baseline, the face's mean
absolute error in years; the evidence figures. Writes "face-age", "voice-age" and "age" into --out (default
fvmatch/reference/attributes.json, whose sex heads stay as they are).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fvmatch.evidence.age import AGE_BANDS, FACE_AGE_ESTIMATOR, FACE_AGE_SHA256, band_of_age  # noqa: E402
from fvmatch.evidence.attributes import SEXES, _unbounded_log10_lr, log10_lr_of, p_female  # noqa: E402
from fvmatch.calibration.fitting import cllr  # noqa: E402
from fvmatch.paths import file_digest  # noqa: E402
from attributes import SEX_OF, embedded, wilson  # noqa: E402  (a benchmark beside this one)

SHRINK = 5.0  # pseudo-counts pulling a per-sex confusion row towards the pooled row
FOLDS = 5
C = 0.3  # the voice head's inverse regularisation (5-fold grouped CV on the speakers: 0.3-3 read alike)


def confusion(true_band: np.ndarray, read_band: np.ndarray, sex: np.ndarray) -> dict:
    """{sex: {true band: {read band: P}}}, each sex's rows shrunk towards the pooled rows."""
    def row(mask: np.ndarray) -> tuple[np.ndarray, int]:
        counts = np.bincount(read_band[mask], minlength=len(AGE_BANDS)).astype(float)
        return counts, int(mask.sum())

    table = {}
    for s in SEXES:
        table[s] = {}
        for t, band in enumerate(AGE_BANDS):
            pooled, n_pooled = row(true_band == t)
            pooled = (pooled + 0.5) / (n_pooled + 0.5 * len(AGE_BANDS))  # never a zero: no reading is impossible
            own, n_own = row((true_band == t) & (sex == s))
            values = (own + SHRINK * pooled) / (n_own + SHRINK)
            table[s][band] = {read: round(float(v), 4) for read, v in zip(AGE_BANDS, values)}
    return table


def accuracy_row(name: str, read: np.ndarray, truth: np.ndarray, people: int) -> str:
    right = int((read == truth).sum())
    low, high = wilson(right, len(truth))
    common = np.bincount(truth).max() / len(truth)
    return (f"| {name} | {people}, {len(truth)} | {right / len(truth):.3f} [{low:.3f}, {high:.3f}] | "
            f"{common:.3f} |")


def voice_head(vectors: np.ndarray, bands: np.ndarray, speakers: np.ndarray, seed: int):
    """(out-of-fold band probabilities of every item, the head fitted on all items)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    def fit(rows: np.ndarray):
        return LogisticRegression(C=C, max_iter=5000, class_weight="balanced").fit(vectors[rows], bands[rows])

    out_of_fold = np.zeros((len(bands), len(AGE_BANDS)))
    order = np.random.default_rng(seed).permutation(sorted(set(speakers)))
    fold_of = {speaker: i % FOLDS for i, speaker in enumerate(order)}
    for train, test in GroupKFold(FOLDS).split(vectors, bands, [fold_of[s] for s in speakers]):
        out_of_fold[test] = fit(train).predict_proba(vectors[test])
    return out_of_fold, fit(np.arange(len(bands)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--voices", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "fvmatch" / "reference" / "attributes.json")
    args = parser.parse_args()
    from fvmatch.analysis.embedder import Embedder

    heads = json.loads(args.out.read_text(encoding="utf-8"))
    embedder = Embedder.load()
    print("| age band reading, data | people, items | accuracy [95% interval] | commonest band |")
    print("|---|---|---|---|")

    # voices: the head, its out-of-fold confusion
    rows = list(csv.DictReader(open(args.voices / "SOURCES.csv", newline="", encoding="utf-8")))
    age_of = {r["speaker"]: (float(r["age_low"]) + float(r["age_high"])) / 2 for r in rows}
    sex_of = {r["speaker"]: SEX_OF.get(r["sex"]) for r in rows}
    speakers, _, voice_vectors = embedded("voice", args.voices, args.work, embedder, "voice-age")
    speakers = np.array(speakers)
    voice_true = np.array([band_of_age(age_of[s]) for s in speakers])
    voice_sex = np.array([sex_of[s] or "" for s in speakers])
    out_of_fold, head = voice_head(voice_vectors, voice_true, speakers, args.seed)
    voice_read = out_of_fold.argmax(1)
    print(accuracy_row("voice, ge2e-voice age head, out of fold (5 folds by speaker)", voice_read, voice_true,
                       len(set(speakers))))
    voice_space = embedder.space("ge2e-voice")
    heads["voice-age"] = {
        "space": "ge2e-voice", "space_model_id": voice_space.model_id, "bands": list(AGE_BANDS),
        "weights": [[round(float(w), 7) for w in column] for column in head.coef_.T],
        "bias": [round(float(b), 7) for b in head.intercept_],
        "output": "P(band) = softmax(vector . weights + bias) over bands; read as the most probable band",
        "trained_on": (f"{len(speakers)} public recordings of {len(set(speakers))} people of known age (Common Voice "
                       "self-reported decades, TIMIT, EMO-DB, VCTK)"),
        "measured_on": f"the same {len(set(speakers))} people, out of fold (5 folds by speaker)",
        "confusion": confusion(voice_true, voice_read, voice_sex),
        "accuracy": round(float((voice_read == voice_true).mean()), 4),
        "accuracy_interval": [round(v, 4) for v in wilson(int((voice_read == voice_true).sum()), len(voice_true))],
        "people": sorted(set(speakers.tolist())), "sources_csv_sha256": file_digest(args.voices / "SOURCES.csv")[0]}

    # faces: the shipped network, as fvmatch embed reads it
    rows = list(csv.DictReader(open(args.faces / "SOURCES.csv", newline="", encoding="utf-8")))
    years, face_true, face_sex, face_read, face_years, face_vectors = [], [], [], [], [], []
    for row in rows:
        try:
            found = embedder.embed_face(args.faces / row["file"], spaces=["dlib-face"])[0]
        except Exception:  # noqa: BLE001  (no face found: counted below)
            continue
        age = found.quality["age"]
        years.append(float(row["age"]))
        face_true.append(band_of_age(float(row["age"])))
        face_sex.append(SEX_OF[row["sex"]])
        face_read.append(int(np.argmax(age["bands"])))
        face_years.append(age["years"])
        face_vectors.append(found.vectors["dlib-face"])
    face_true, face_read, face_sex = np.array(face_true), np.array(face_read), np.array(face_sex)
    errors = np.abs(np.array(face_years) - np.array(years))
    print(accuracy_row(f"face, {FACE_AGE_ESTIMATOR} ({len(rows) - len(years)} of {len(rows)} without a face)",
                       face_read, face_true, len(years)))
    spread = np.percentile([errors[np.random.default_rng(i).integers(0, len(errors), len(errors))].mean()
                            for i in range(2000)], [2.5, 97.5])
    print(f"\nface age: mean absolute error {errors.mean():.1f} years [{spread[0]:.1f}, {spread[1]:.1f}] (bootstrap) on "
          f"{len(errors)} photos aged {min(years):.0f}-{max(years):.0f}")
    heads["face-age"] = {
        "estimator": FACE_AGE_ESTIMATOR, "model_sha256": FACE_AGE_SHA256, "bands": list(AGE_BANDS),
        "measured_on": f"{len(years)} public photos of people of known age and sex (UTKFace sample, ages "
                       f"{min(years):.0f}-{max(years):.0f})",
        "confusion": confusion(face_true, face_read, face_sex),
        "accuracy": round(float((face_read == face_true).mean()), 4),
        "accuracy_interval": [round(v, 4) for v in wilson(int((face_read == face_true).sum()), len(face_true))],
        "mean_absolute_error_years": round(float(errors.mean()), 2),
        "mean_absolute_error_interval": [round(float(v), 2) for v in spread],
        "sources_csv_sha256": file_digest(args.faces / "SOURCES.csv")[0]}

    # the evidence over faces x voices of known sex and band
    sex_trained = set(heads["voice-sex"]["people"]["trained_on"])
    keep = np.array([bool(s) and speaker not in sex_trained for s, speaker in zip(voice_sex, speakers)])
    voice_sex_read = np.where(p_female(heads["voice-sex"], voice_vectors[keep]) >= 0.5, "female", "male")
    face_sex_read = np.where(p_female(heads["face-sex"], np.array(face_vectors)) >= 0.5, "female", "male")
    evidence_figures(heads, (face_sex_read, face_read, face_sex, face_true),
                     (voice_sex_read, voice_read[keep], voice_sex[keep], voice_true[keep]), args.seed)
    args.out.write_text(json.dumps(heads, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


def evidence_figures(heads: dict, faces: tuple, voices: tuple, seed: int) -> None:
    """ELUB bounds, Cllr and V-F 1:2 (U, G) of the sex+age evidence over every face x voice, beside sex alone."""
    from lir.algorithms.bayeserror import elub

    population = {"female": 0.5, "male": 0.5}
    f_sex, f_band, f_true_sex, f_true_band = faces
    v_sex, v_band, v_true_sex, v_true_band = voices
    same_sex = f_true_sex[:, None] == v_true_sex[None, :]
    same = same_sex & (f_true_band[:, None] == v_true_band[None, :])
    raw = {}
    for fs in SEXES:
        for vs in SEXES:
            sex_part = _unbounded_log10_lr(fs, vs, population, None, heads)
            for fb in range(len(AGE_BANDS)):
                for vb in range(len(AGE_BANDS)):
                    ages = (AGE_BANDS[fb], AGE_BANDS[vb])
                    raw[fs, vs, fb, vb] = _unbounded_log10_lr(fs, vs, population, ages, heads) - sex_part
    age_part = np.array([[raw[fs, vs, fb, vb] for vs, vb in zip(v_sex, v_band)] for fs, fb in zip(f_sex, f_band)])
    sex_only = np.array([[log10_lr_of(fs, vs, population, None, heads) for vs in v_sex] for fs in f_sex])
    # the age part's bounds: what the bands support between people of one sex (same band or not)
    low, high = elub(np.r_[age_part[same], age_part[same_sex & ~same]].copy(),
                     np.r_[np.ones(same.sum()), np.zeros((same_sex & ~same).sum())], add_misleading=1)
    with_age = sex_only + np.clip(age_part, low, high)
    heads["age"] = {
        "bands": list(AGE_BANDS), "bounds": [round(float(low), 2), round(float(high), 2)],
        "bounds_method": (f"ELUB (Vergeer et al. 2016; NFI lir {version('lir')}) on the pairs of one sex among "
                          f"{len(f_sex)} faces x {len(v_sex)} voices of known sex and age band"),
        "cllr": round(cllr(with_age[same], with_age[~same]), 4),  # sex and band both count for "same"
        "cllr_sex_only": round(cllr(sex_only[same], sex_only[~same]), 4),
        "default_population": "equal sexes, equal age bands",
        "vf_1to2": {}, "vf_1to2_sex_only": {}}
    rng = np.random.default_rng([seed, 0xA6E])
    for name, scores in (("vf_1to2", with_age), ("vf_1to2_sex_only", sex_only)):
        results = {"U": [], "G": []}
        for v in range(len(v_sex)):
            rights = np.flatnonzero(same[:, v])
            if not len(rights):
                continue
            right = rng.choice(rights)
            for stratum, foils in (("U", np.flatnonzero(~same[:, v])),
                                   ("G", np.flatnonzero(~same[:, v] & (f_true_sex == v_true_sex[v])))):
                foil = rng.choice(foils)
                a, b = scores[right, v], scores[foil, v]
                results[stratum].append(1.0 if a > b else 0.5 if a == b else 0.0)
        heads["age"][name] = {stratum: round(float(np.mean(values)), 4) for stratum, values in results.items()}
    print(f"\nface-voice evidence on {len(f_sex)} faces x {len(v_sex)} voices (voices the sex head trained on left "
          f"out): age part ELUB [{low:+.2f}, {high:+.2f}] (sex part {heads['bounds'][0]:+.2f}, {heads['bounds'][1]:+.2f}), Cllr {heads['age']['cllr']:.3f} (sex alone "
          f"{heads['age']['cllr_sex_only']:.3f}); V-F 1:2 U {heads['age']['vf_1to2']['U']:.3f}, G "
          f"{heads['age']['vf_1to2']['G']:.3f} (sex alone U {heads['age']['vf_1to2_sex_only']['U']:.3f}, G "
          f"{heads['age']['vf_1to2_sex_only']['G']:.3f}; a tie counts half; a foil is another sex or band)")


if __name__ == "__main__":
    main()
