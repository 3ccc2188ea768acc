"""Calibration: what a cosine score means, per (embedding space, trial type) (ARCHITECTURE.md section 6).

Each trial type is calibrated in the space that scores it: face-voice in the joint space, face-face in dlib-face,
voice-voice in ge2e-voice by default (fvmatch.evaluation.scoring_spaces). From labelled trials (every same-person
pair of items in a split or a plain folder, and every different-person pair or a seeded sample of them) we fit,
per (space, trial type):

- a logistic-regression map from score to log-likelihood ratio (the forensic standard). Logistic regression
  learns the posterior log-odds under the trials' own prior, so the prior log-odds log(n_same / n_diff) is
  subtracted: ln LR = w * score + b - ln(n_same / n_diff). It is stored in log10 units:
  log10 LR = slope * score + intercept;
- bounds on log10 LR: no further than log10 of the number of trials of the other hypothesis (N different-
  person trials cannot show an LR above N), or tighter bounds `fit` is given (the shipped reference calibrations
  use ELUB, Vergeer et al.'s empirical lower and upper bounds, from NFI's lir), so a steep map on well-separated
  data does not claim more than the data can support;
- score thresholds at stated false-match rates (decision "same person" when score > threshold), where there
  are enough different-person trials: at least ERRORS_AT_THRESHOLD / FMR of them, i.e. ten false matches at
  the threshold (1,000 for 1%, 10,000 for 0.1%); and the EER point;
- its validation on the same trials: EER, Cllr of the map and Cllr_min (after the optimal monotone map, PAV).

Too few trials are refused (BadArgument saying which (space, trial type) and how many are needed): at least
MIN_SAME_TRIALS same-person and MIN_DIFFERENT_TRIALS different-person trials, from at least MIN_IDENTITIES people.

The result is JSON and lives in the joint checkpoint's model card as card["calibration"] (see `calibrate`), each
entry under calibration_key(space, trial type) and recording the model id of its space; writing it
into a checkpoint does not change the model id, which hashes the weights alone. fvmatch ships reference entries of
its pretrained spaces, fitted on named public real data (fvmatch.evidence.rules.reference_calibration); an LR is best
calibrated on trials like the case's, so an analyst's own entry (`calibrate --add`) supersedes a reference one.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, InvalidCheckpoint, ModelMismatch
from fvmatch.spaces import JOINT, TRIAL_TYPES

FORMAT = "fvmatch-calibration/2"
FUSED = "joint-fused"  # the score's name in results and in the calibration (joint vectors, the pair encoder's logit)
MIN_SAME_TRIALS = 100
MIN_DIFFERENT_TRIALS = 1_000
MIN_IDENTITIES = 10
FALSE_MATCH_RATES = (0.01, 0.001)
ERRORS_AT_THRESHOLD = 10  # an FMR operating point needs ERRORS_AT_THRESHOLD / FMR different-person trials
HISTOGRAM_BINS = 100  # stored score histogram: bins of width 0.02 over the cosine range [-1, 1]
MAX_TRIALS = 200_000  # per hypothesis and trial type; beyond it a seeded sample of the pairs is used
ENFSI_SCALE = ((6.0, "extremely strong"), (4.0, "very strong"), (3.0, "strong"), (2.0, "moderately strong"),
               (1.0, "moderate"), (0.0, "limited"))  # lower bound of |log10 LR| -> verbal equivalent


def calibration_key(space: str, kind: str, band: str | None = None) -> str:
    """Where a calibration keeps the entry of a (space, trial type), or of its faces of one size band
    ("dlib-face face-face @small": fvmatch.quality.face.face_band)."""
    key = kind if space == JOINT else f"{space} {kind}"
    return f"{key} @{band}" if band else key


def verbal_equivalent(log10_lr: float) -> str:
    """The ENFSI verbal scale for a log10 LR: support for the same-person proposition above 0, different-person below."""
    if log10_lr == 0:
        return "no support for either proposition (LR = 1)"
    proposition = "same-person" if log10_lr > 0 else "different-person"
    strength = next(words for bound, words in ENFSI_SCALE if abs(log10_lr) >= bound)
    return f"{strength} support for the {proposition} proposition"


def log10_lr(score: float | np.ndarray, entry: dict) -> float | np.ndarray:
    """The calibrated log10 LR of score(s) under one trial type's calibration entry, within its bounds."""
    mapping = entry["map"]
    low, high = mapping["bounds"]
    return np.clip(mapping["slope"] * np.asarray(score, dtype=np.float64) + mapping["intercept"], low, high)


def cllr(log10_lr_same: np.ndarray, log10_lr_different: np.ndarray) -> float:
    """Log-likelihood-ratio cost (bits): 0.5 * (mean log2(1 + 1/LR) over same-person + mean log2(1 + LR) over different)."""
    same = np.asarray(log10_lr_same, dtype=np.float64) * math.log(10)
    different = np.asarray(log10_lr_different, dtype=np.float64) * math.log(10)
    return float(0.5 * (np.logaddexp(0, -same).mean() + np.logaddexp(0, different).mean()) / math.log(2))


def cllr_min(same_scores: np.ndarray, different_scores: np.ndarray) -> float:
    """Cllr after the best monotone score-to-LR map: PAV (isotonic regression) posteriors, trial prior removed."""
    from sklearn.isotonic import IsotonicRegression

    same_scores, different_scores = np.asarray(same_scores), np.asarray(different_scores)
    scores = np.r_[same_scores, different_scores]
    labels = np.r_[np.ones(len(same_scores)), np.zeros(len(different_scores))]
    posterior = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit_transform(scores, labels)
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)  # +-inf where PAV is certain: those cost nothing
    log10_lrs = (log_odds - math.log(len(same_scores) / len(different_scores))) / math.log(10)
    return cllr(log10_lrs[: len(same_scores)], log10_lrs[len(same_scores) :])


def shortfall(same: int, different: int, identities: int | None = None) -> str | None:
    """Why these numbers of trials cannot be calibrated (None when they can)."""
    problems = []
    if same < MIN_SAME_TRIALS:
        problems.append(f"{same} same-person trials (at least {MIN_SAME_TRIALS:,} needed)")
    if different < MIN_DIFFERENT_TRIALS:
        problems.append(f"{different} different-person trials (at least {MIN_DIFFERENT_TRIALS:,} needed)")
    if identities is not None and identities < MIN_IDENTITIES:
        problems.append(f"{identities} people with same-person trials (at least {MIN_IDENTITIES} needed)")
    return "; ".join(problems) or None


def fit(same_scores: Sequence[float], different_scores: Sequence[float], identities: int | None = None,
        bound: Callable[[np.ndarray, np.ndarray], tuple[float, float]] | None = None) -> dict:
    """Calibrate one trial type from its same-person and different-person scores (module docstring).

    `bound`: (log10 LRs of the trials under the map, labels 1 same / 0 different) -> (lowest, highest) log10 LR the
    data support, e.g. ELUB (NFI's lir: `lir.algorithms.bayeserror.elub`); default: the numbers of trials."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from fvmatch.evaluation.metrics import equal_error_rate

    same, different = np.asarray(same_scores, np.float64), np.asarray(different_scores, np.float64)
    problem = shortfall(len(same), len(different), identities)
    if problem:
        raise BadArgument("calibration", f"too few trials: {problem}")
    scores = np.r_[same, different]
    labels = np.r_[np.ones(len(same)), np.zeros(len(different))]
    centre, spread = scores.mean(), scores.std() or 1.0  # standardised for the solver, mapped back below
    with warnings.catch_warnings():
        # separable scores (a strong model on easy data) make the slope run away; the bounds below cap the LR
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit(((scores - centre) / spread)[:, None], labels)
    weight = float(model.coef_[0, 0] / spread)
    bias = float(model.intercept_[0] - weight * centre) - math.log(len(same) / len(different))
    slope, intercept = weight / math.log(10), bias / math.log(10)
    bounds = ([-math.log10(len(same)), math.log10(len(different))] if bound is None
              else [float(value) for value in bound(slope * scores + intercept, labels)])
    entry = {"map": {"log10_lr": "slope * score + intercept, clipped to bounds",
                     "slope": slope, "intercept": intercept, "bounds": bounds},
             "trials": {"same": len(same), "different": len(different), "identities": identities}}
    rate, threshold = equal_error_rate(labels.astype(bool), scores)
    entry["operating_points"] = [_operating_point(entry, same, different, fmr) for fmr in FALSE_MATCH_RATES
                                 if len(different) >= ERRORS_AT_THRESHOLD / fmr]
    entry["eer"] = {"value": rate, "threshold": threshold}
    entry["cllr"] = cllr(log10_lr(same, entry), log10_lr(different, entry))
    entry["cllr_min"] = cllr_min(same, different)
    entry["separable"] = bool(same.min() > different.max())
    # the score distributions themselves, binned, so a report can show where a case's score falls among them
    edges = np.linspace(-1.0, 1.0, HISTOGRAM_BINS + 1)
    entry["score_histogram"] = {"edges": [round(float(edge), 6) for edge in edges],
                                "same": np.histogram(np.clip(same, -1, 1), edges)[0].tolist(),
                                "different": np.histogram(np.clip(different, -1, 1), edges)[0].tolist()}
    return entry


def _operating_point(entry: dict, same: np.ndarray, different: np.ndarray, fmr: float) -> dict:
    """The threshold with at most `fmr` of different-person scores above it, and the error rates there."""
    threshold = float(np.quantile(different, 1.0 - fmr, method="higher"))
    return {"fmr_target": fmr, "threshold": threshold, "fmr": float((different > threshold).mean()),
            "fnmr": float((same <= threshold).mean()), "log10_lr_at_threshold": float(log10_lr(threshold, entry))}


def operating_point(entry: dict, fmr: float) -> dict:
    """The entry's operating point at this false-match rate; BadArgument listing the available ones otherwise."""
    for point in entry["operating_points"]:
        if math.isclose(point["fmr_target"], fmr, rel_tol=1e-9):
            return point
    available = ", ".join(f"{point['fmr_target']:.1%}" for point in entry["operating_points"]) or "none"
    raise BadArgument(f"FMR {fmr:.2%}", f"no operating point at this false-match rate; available: {available} "
                                        f"(a rate needs at least {ERRORS_AT_THRESHOLD}/FMR different-person trials)")


def pair_scores(first, second, seed: int = 0, max_trials: int = MAX_TRIALS,
                score: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Scores of every same-person and every different-person pair between two ItemSets (distinct items when
    they are one set), each hypothesis sampled down to `max_trials` pairs from the seed; and the number of
    people with same-person pairs. `score`: of row i of two (N, D) arrays, for another score than the cosine
    (a pair encoder's, fvmatch.evidence.fused_scores)."""
    one_set = first is second
    rng = np.random.default_rng([seed, 0xCA1])
    same, people = [], 0
    for owner in np.intersect1d(first.owners, second.owners):
        mine, theirs = first.vectors[first.owners == owner], second.vectors[second.owners == owner]
        if score is None:
            block = mine @ theirs.T
        else:
            rows, columns = np.indices((len(mine), len(theirs))).reshape(2, -1)
            block = score(mine[rows], theirs[columns]).reshape(len(mine), len(theirs))
        block = block[np.triu_indices(len(block), 1)] if one_set else block.ravel()
        same.append(block)
        people += bool(len(block))
    same_scores = np.concatenate(same) if same else np.zeros(0)
    if len(same_scores) > max_trials:
        same_scores = rng.choice(same_scores, max_trials, replace=False)
    pairs = len(first) * (len(first) - 1) // 2 if one_set else len(first) * len(second)
    if pairs <= max_trials:
        rows, columns = np.triu_indices(len(first), 1) if one_set else np.indices((len(first), len(second))).reshape(2, -1)
    else:
        rows, columns = rng.integers(len(first), size=2 * max_trials), rng.integers(len(second), size=2 * max_trials)
    different = first.owners[rows] != second.owners[columns]
    rows, columns = rows[different][:max_trials], columns[different][:max_trials]
    different_scores = (np.einsum("ij,ij->i", first.vectors[rows], second.vectors[columns]) if score is None
                        else score(first.vectors[rows], second.vectors[columns])).astype(np.float64)
    return same_scores.astype(np.float64), different_scores, people


def calibrate(embedded, seed: int = 0, trial_types: Sequence[str] | None = None,
              max_trials: int = MAX_TRIALS, face_band: str | None = None, fused=None) -> dict:
    """Calibrate each trial type in the space that scores it, on an EmbeddedCorpus or {space: EmbeddedCorpus}
    (normally the validation split or an analyst's own labelled folder, not the test split).

    `trial_types`: those to calibrate (default: every type some given space scores). Returns card["calibration"]:
    {"format", "model_id" (the joint checkpoint's, when the joint space is among them), "data", "split", "seed",
    "created", "spaces": {space: model id}, calibration_key(space, kind): entry, ...}, an entry being `fit`'s dict
    plus "space" and "space_model_id". Refuses (BadArgument naming each (space, trial type) that falls short and
    the numbers needed) rather than calibrate part. `face_band`: the data are faces of that size band
    (fvmatch.quality.face.FACE_BANDS): the face-face entries are kept for questions of that band. `fused` (a
    fvmatch.evidence.fused_scores.FusedScorer): the joint space's face-voice trials are also calibrated by their fused
    score, in an entry of their own (space FUSED), the score `verify` and `identify` report for such a model.
    """
    from fvmatch.evaluation.corpus import as_corpora, scoring_spaces

    corpora = as_corpora(embedded)
    first = next(iter(corpora.values()))
    scored_in = scoring_spaces(corpora)
    scores = {}
    for kind in trial_types if trial_types is not None else list(scored_in):
        if kind not in TRIAL_TYPES:
            raise BadArgument(kind, f"not a trial type; one of {', '.join(TRIAL_TYPES)}")
        if kind not in scored_in:
            raise BadArgument(kind, f"none of the spaces {', '.join(corpora)} scores {kind} trials")
        corpus = corpora[scored_in[kind]]
        first_items, second_items = (corpus.items(modality) for modality in kind.split("-"))
        scores[scored_in[kind], kind] = pair_scores(first_items, second_items, seed, max_trials)
        if fused is not None and kind == "face-voice" and scored_in[kind] == JOINT:
            scores[FUSED, kind] = pair_scores(first_items, second_items, seed, max_trials, fused.scores)
    model_ids = {**{space: corpus.model_id for space, corpus in corpora.items()},
                 **({FUSED: corpora[JOINT].model_id} if (FUSED, "face-voice") in scores else {})}
    problems = [f"{space} {kind}: {problem}" for (space, kind), (same, different, people) in scores.items()
                if (problem := shortfall(len(same), len(different), people))]
    if problems:
        where = "in the folder" if first.split is None else f"in split {first.split!r}"
        raise BadArgument(first.data, f"too few trials {where} to calibrate: " + "; ".join(problems))
    calibration = {"format": FORMAT, **({"model_id": corpora[JOINT].model_id} if JOINT in corpora else {}),
                   "data": str(first.data), "split": first.split, "seed": seed,
                   "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                   "spaces": {space: model_ids[space] for space in dict.fromkeys(s for s, _ in scores)}}
    for (space, kind), (same, different, people) in scores.items():
        # each entry names its own data too: `calibrate --add` keeps entries of other runs beside it
        band = face_band if kind == "face-face" else None
        calibration[calibration_key(space, kind, band)] = {**fit(same, different, people), "space": space,
                                                     "space_model_id": model_ids[space],
                                                     **{key: calibration[key] for key in ("data", "split", "created")}}
    return calibration


def added_to(existing: dict | None, calibration: dict) -> dict:
    """`calibration`'s entries added to an `existing` one (replacing those of the same space and trial type): one
    card holding, e.g., the clean voice-voice calibration and a telephone condition's, each fitted on its own data."""
    if not existing:
        return calibration
    if existing.get("format") != calibration["format"]:
        raise BadArgument("--add", f"the model's calibration is of format {existing.get('format')}, not "
                          f"{calibration['format']}: calibrate it again whole")
    return {**existing, **calibration, "spaces": {**existing.get("spaces", {}), **calibration["spaces"]}}


def write_calibrated_checkpoint(source: str | Path, out: str | Path, calibration: dict) -> dict:
    """Copy the checkpoint at `source` to `out` with `calibration` in its model card; return the new card.

    The weights are copied tensor for tensor and checked against the card's model id first, so the model id
    stays the same. The card's calibration is replaced whole (one calibration run, one description of its data).
    ModelMismatch when the calibration's joint-space entries were made with another model.
    """
    from safetensors.numpy import load_file  # the tensors are copied, never run: no torch needed

    from fvmatch.models.checkpoint import CheckpointError, read_card, weights_sha256, write_checkpoint

    source = Path(source)
    try:
        card = read_card(source)
        state = load_file(source)
    except CheckpointError as error:
        raise InvalidCheckpoint(source, str(error).removeprefix(f"{source}: ")) from None
    if weights_sha256(state) != card["model_id"]:
        raise InvalidCheckpoint(source, "weights do not match the model card's model id (altered or corrupt)")
    joint_ids = {calibration.get("model_id")} | {entry.get("space_model_id") for entry in calibration.values()
                                                 if isinstance(entry, dict) and entry.get("space") == "joint"}
    foreign = sorted(joint_ids - {None, card["model_id"]})
    if foreign:
        raise ModelMismatch(source, f"the calibration was made with model {foreign[0][:16]}, "
                                    f"this checkpoint is {card['model_id'][:16]}")
    card = {**card, "calibration": calibration}
    write_checkpoint(state, card, Path(out))
    _copy_onnx_graphs(source, Path(out))
    return card


def _copy_onnx_graphs(source: Path, out: Path) -> None:
    """The source's ONNX graphs (same weights, same model id) beside the calibrated copy, so that it runs without
    torch as its source does; none where the source has none."""
    import shutil

    from fvmatch.models.checkpoint import onnx_graph_paths

    found, targets = onnx_graph_paths(source), onnx_graph_paths(out)
    if source.resolve() == out.resolve() or not all(path.is_file() for path in found.values()):
        return
    for part, path in found.items():
        temporary = targets[part].with_name(targets[part].name + ".tmp")
        shutil.copyfile(path, temporary)
        temporary.replace(targets[part])
