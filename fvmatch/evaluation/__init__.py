"""Evaluation of a model with the published protocols (ARCHITECTURE.md section 7), per embedding space.

    corpora = embed_spaces(DATA, embedder, split="test", cache_dir=...)     # corpus.py: {space: EmbeddedCorpus}
    results = evaluate(corpora, seed=0, calibration=embedder.card.get("calibration"))
    rows = table2_rows(results)                                             # report.py
    write_plots(results, "plots/")                                          # report.py

Each trial type is scored in one space (`scoring_spaces`): face-voice protocols (verification F-V, 1:2, 1:N,
retrieval) in the joint space, face-face verification in dlib-face, voice-voice in ge2e-voice, or, given one
space, whatever it can score; the others are reported as not evaluated. `evaluate` draws the trial lists from the
seed (or takes a list read with `read_trials`), scores every trial with the cosine of the stored unit vectors of
its space and reports every figure with its bootstrap 95% interval over identities (metrics.py), with what is
needed to reproduce and judge it: the space and model id of each block, data path, layout, split, seed, trial
counts, items that failed to embed. A plain folder of labelled media (no meta.csv) gets the unconstrained
protocols only.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument
from fvmatch.evaluation import metrics
from fvmatch.evaluation.corpus import (DEFAULT_SPACES, Corpora, EmbeddedCorpus, ItemSet, as_corpora, embed_corpus,
                                       embed_spaces, scoring_spaces)
from fvmatch.evaluation.metrics import CONFIDENCE, REPLICATES
from fvmatch.evaluation.trials import (TrialCounts, TrialList, make_trials, read_trials, trial_type_of,
                                       write_trials)
from fvmatch.evaluation.report import table2_rows, write_plots
from fvmatch.calibration.scoring import calibration_key
from fvmatch.spaces import JOINT, SPACE_MODALITIES, TRIAL_TYPES

__all__ = ["DEFAULT_SPACES", "EmbeddedCorpus", "ItemSet", "as_corpora", "embed_corpus", "embed_spaces", "evaluate",
           "scoring_spaces", "trials_for", "without_scores", "TrialCounts", "TrialList", "make_trials", "read_trials",
           "write_trials", "table2_rows", "write_plots"]

FORMAT = "fvmatch-evaluation/2"
RETRIEVAL_CHUNK = 512
PROTOCOLS_OF = {"face-voice": "verification F-V, 1:2, 1:N and retrieval", "face-face": "verification F-F",
                "voice-voice": "verification V-V"}
FEW_IDENTITIES = 10  # below this, a bootstrap over identities gives intervals that mean little
SKIP_REASONS = {"failed": "an item failed to embed", "absent": "an item is not in DATA",
                "elsewhere": "an item's person is outside the split evaluated"}
PLAIN_NOTE = ("Plain folder (no meta.csv): every person is evaluated, with the unconstrained protocols only; the "
              "stratified ones (G, N, A, GNA; 1:2 G, N, GN) need meta.csv with gender, nationality and age. ")


def trials_for(embedded: Corpora, seed: int, counts: TrialCounts = TrialCounts()) -> TrialList:
    """The trial lists of an embedded split, drawn from the seed: each trial type's blocks over the items that
    embedded in the space that scores it (stratified blocks only where the corpus has meta.csv)."""
    corpora = as_corpora(embedded)
    scored_in = scoring_spaces(corpora)
    trials, shortfalls, drawn_counts = [], [], None
    for space, corpus in corpora.items():
        kinds = [kind for kind in TRIAL_TYPES if scored_in.get(kind) == space]
        if not kinds:
            continue
        drawn = make_trials(corpus.identities, corpus.items_of("face"), corpus.items_of("voice"), seed, counts,
                            trial_types=kinds, stratified=corpus.layout == "meta")
        trials += drawn.trials
        shortfalls += drawn.shortfalls
        drawn_counts = drawn.counts
    return TrialList(trials, seed=seed, counts=drawn_counts, shortfalls=shortfalls)


def evaluate(embedded: Corpora, seed: int = 0, trials: TrialList | None = None, counts: TrialCounts = TrialCounts(),
             replicates: int = REPLICATES, confidence: float = CONFIDENCE, calibration: dict | None = None,
             keep_scores: bool = True, trained_identities: Sequence[str] | None = None) -> dict:
    """Every figure of every protocol on an embedded split, each {"value", "ci": [low, high]} (fractions, not %).

    `embedded`: one EmbeddedCorpus (its space scores every trial type it can) or {space: corpus} (each trial type
    in the space `scoring_spaces` picks); every block of results names its "space" and "model_id", and trial
    types no given space can score are listed under "not_evaluated". `trials`: a list to evaluate (else drawn
    from `seed` with `counts`); its trials whose items are not in the corpus (failed to embed, another split) are
    skipped and counted. `seed` also seeds the bootstrap. `calibration` (the model card's): also reports, per
    calibrated (space, trial type), Cllr, Cllr_min and the error rates at its thresholds on these trials
    (held-out validation of the calibration). `keep_scores`: include the unconstrained verification scores under
    "scores", which `write_plots` needs (see `without_scores`). `trained_identities` (the joint model card's
    training identities): those evaluated here are counted and warned of. Splits too small for the figures to mean
    anything (one person; fewer than FEW_IDENTITIES for the intervals) are warned of under "warnings"; skipped
    trials are counted by reason under trials.skipped_reasons.
    """
    corpora = as_corpora(embedded)
    first = next(iter(corpora.values()))
    if not any(corpus.identities for corpus in corpora.values()):
        failures = _failures(corpora)
        raise BadArgument(first.data, f"no item{'' if first.split is None else f' of split {first.split!r}'} could "
                                      f"be embedded; nothing to evaluate ({len(failures)} failures)")
    scored_in = scoring_spaces(corpora)
    trials = trials if trials is not None else trials_for(corpora, seed, counts)
    resamples: dict[str, np.ndarray] = {}

    def counts_drawn(space: str) -> np.ndarray:  # per space: its figures are resampled over its own identities
        if space not in resamples:
            resamples[space] = metrics.identity_resamples(len(corpora[space].identities), replicates, seed)
        return resamples[space]

    lookup = {space: {modality: {path: row for row, path in enumerate(corpus.items(modality).paths)}
                      for modality in ("face", "voice")} for space, corpus in corpora.items()}
    synthetic = (Path(first.data) / "synth.json").is_file()
    plain = first.layout == "plain"
    results: dict = {
        "format": FORMAT, "model_id": corpora[JOINT].model_id if JOINT in corpora else None,
        "data": str(first.data), "layout": first.layout, "split": first.split, "synthetic": synthetic, "seed": seed,
        "note": ("synthetic data: never evidence of accuracy on real people. " if synthetic else "")
                + (PLAIN_NOTE if plain else "")
                + "Published figures (VoxCeleb) come from another dataset and split: a reference, not a comparison.",
        "spaces": {space: {"model_id": corpus.model_id, "dim": int(corpus.faces.vectors.shape[1]),
                           "trial_types": [kind for kind in TRIAL_TYPES if scored_in.get(kind) == space],
                           "identities": len(corpus.identities),
                           "items": {"faces": len(corpus.faces), "voices": len(corpus.voices)},
                           "failures": len(corpus.failures), "embedded": corpus.embedded,
                           "from_cache": corpus.from_cache}
                   for space, corpus in corpora.items()},
        "identities": len({person["identity"] for corpus in corpora.values() for person in corpus.identities}),
        "items": {"faces": len({path for corpus in corpora.values() for path in corpus.faces.paths}),
                  "voices": len({path for corpus in corpora.values() for path in corpus.voices.paths})},
        "failures": _failures(corpora),
        "not_evaluated": [{"trial_type": kind, "protocols": PROTOCOLS_OF[kind], "trials": 0,
                           "reason": _unscorable(kind, corpora)} for kind in TRIAL_TYPES if kind not in scored_in],
        "trials": {"source": trials.source, "seed": trials.seed, "counts": {}, "skipped": 0,
                   "skipped_reasons": {}, "shortfalls": trials.shortfalls},
        "warnings": _split_warnings(corpora) + _trained_warnings(corpora, trained_identities),
        "bootstrap": {"unit": "identity", "replicates": replicates, "confidence": confidence, "seed": seed,
                      "method": "percentile, per space over its identities; pairs weighted by both people's draws, "
                                "matching trials and retrieval queries by the probe's (retrieval gallery fixed)"},
        "units": "fractions (0-1); table2_rows gives percentages",
        "verification": {}, "matching_1to2": {}, "matching_1toN": {}, "retrieval": {}, "scores": {},
    }
    not_evaluated = {entry["trial_type"]: entry for entry in results["not_evaluated"]}
    failed = {space: {failure["item"] for failure in corpus.failures} for space, corpus in corpora.items()}
    maps = {}
    for (protocol, direction, stratum, size), block in trials.blocks().items():
        kind = trial_type_of(protocol, direction)
        if kind not in scored_in:
            not_evaluated[kind]["trials"] += len(block)
            continue
        space = scored_in[kind]
        corpus = corpora[space]
        tag = {"space": space, "model_id": corpus.model_id}
        scored = _score_block(corpus, lookup[space], block)
        results["trials"]["skipped"] += len(scored["skipped"])
        for trial in scored["skipped"]:
            reason = SKIP_REASONS[_skip_reason(trial, corpus, failed[space])]
            results["trials"]["skipped_reasons"][reason] = results["trials"]["skipped_reasons"].get(reason, 0) + 1
        name = f"{protocol} {direction} {stratum}" + (f" N={size}" if protocol == "1:N" else "")
        results["trials"]["counts"][name] = int(len(scored["target"]))
        if not len(scored["target"]):
            continue
        if protocol == "verification":
            figures = _verification(scored, counts_drawn(space), confidence)
            results["verification"].setdefault(kind, dict(tag))[stratum] = figures
            if stratum == "U":
                same = scored["target"] == 1
                if keep_scores:
                    results["scores"][kind] = {**tag, "same": np.round(scored["scores"][same, 0], 6).tolist(),
                                               "different": np.round(scored["scores"][~same, 0], 6).tolist()}
                entry = (calibration or {}).get(calibration_key(space, kind))
                if entry is not None:
                    check = _calibration_check(entry, corpus.model_id, scored["scores"][same, 0],
                                               scored["scores"][~same, 0])
                    results.setdefault("calibration", {})[kind] = {**tag, **check}
                    if "cllr" in check:
                        maps[kind] = entry
        elif protocol in ("1:2", "1:N"):
            credit = metrics.matching_credit(scored["scores"], scored["target"])
            replicated = metrics.bootstrap(metrics.weighted_mean(credit),
                                           lambda c: metrics.probe_weights(c, scored["probe_owner"]), counts_drawn(space))
            entry = {"accuracy": metrics.figure(credit.mean(), replicated, confidence), "trials": int(len(credit)),
                     "chance": 1.0 / size}
            key = "matching_1to2" if protocol == "1:2" else "matching_1toN"
            results[key].setdefault(direction, dict(tag))[stratum if protocol == "1:2" else str(size)] = entry
        else:
            results["retrieval"][direction] = {**tag, **_retrieval(corpus, scored, direction, counts_drawn(space),
                                                                   confidence)}
    if not keep_scores:
        del results["scores"]
    elif calibration:
        results["calibration_maps"] = {kind: entry for kind, entry in maps.items() if kind in results["scores"]}
    return results


def without_scores(results: dict) -> dict:
    """The results without the per-trial scores kept for plotting (for --json output)."""
    return {key: value for key, value in results.items() if key not in ("scores", "calibration_maps")}


def _failures(corpora: Mapping[str, EmbeddedCorpus]) -> list[dict]:
    """The files that failed to embed, once each (a file that fails, fails alike in every space)."""
    seen, failures = set(), []
    for corpus in corpora.values():
        for failure in corpus.failures:
            if failure["item"] not in seen:
                seen.add(failure["item"])
                failures.append(failure)
    return failures


def _skip_reason(trial, corpus: EmbeddedCorpus, failed: set[str]) -> str:
    """Why a trial could not be scored: one of its items failed to embed, is absent, or is someone else's split."""
    items = (trial.probe, *trial.candidates)
    if any(item in failed for item in items):
        return "failed"
    if corpus.split is None or not all((Path(corpus.data) / item).is_file() for item in items):
        return "absent"
    return "elsewhere"


def _split_warnings(corpora: Mapping[str, EmbeddedCorpus]) -> list[str]:
    """What makes a split's figures meaningless or their intervals unreliable: one person, or very few."""
    counts = {len(corpus.identities) for corpus in corpora.values()}
    people = min(counts)
    first = next(iter(corpora.values()))
    where = f"split {first.split!r}" if first.split is not None else "the folder"
    if people == 1:
        return [f"{where} has 1 identity with embedded items: every trial is of one person, so verification and "
                "matching cannot be measured and retrieval mAP is 100% by construction; evaluate on more people"]
    if people < FEW_IDENTITIES:
        return [f"{where} has {people} identities with embedded items: the 95% intervals (a bootstrap over "
                f"identities) mean little below {FEW_IDENTITIES} and can collapse to a point (zero width) with 2"]
    return []


def _trained_warnings(corpora: Mapping[str, EmbeddedCorpus], trained: Sequence[str] | None) -> list[str]:
    """A warning when the joint model was trained on identities evaluated here (its figures are then not held out)."""
    if not trained or JOINT not in corpora:
        return []
    corpus = corpora[JOINT]
    seen = sorted({person["identity"] for person in corpus.identities} & set(trained))
    if not seen:
        return []
    return [f"{len(seen)} of the {len(corpus.identities)} identities evaluated were in the joint model's training "
            f"split (e.g. {', '.join(seen[:3])}): its figures on them are not held out and overstate its accuracy"]


def _unscorable(kind: str, corpora: Mapping[str, EmbeddedCorpus]) -> str:
    """Why no given space scores a trial type."""
    described = ", ".join(f"{space} embeds {' and '.join(m + 's' for m in SPACE_MODALITIES.get(space, ()))} only"
                          for space in corpora)
    return f"no space given scores {kind} trials ({described})"


def _score_block(embedded: EmbeddedCorpus, lookup: dict, block: list) -> dict:
    """Cosine scores of a block's trials (those whose items are all in the corpus), with the people involved."""
    probe_modality, candidate_modality = block[0].probe_modality, block[0].candidate_modality
    probes, candidates, targets, skipped = [], [], [], []
    for trial in block:
        probe = lookup[probe_modality].get(trial.probe)
        others = [lookup[candidate_modality].get(ref) for ref in trial.candidates]
        if probe is not None and None not in others:
            probes.append(probe)
            candidates.append(others)
            targets.append(trial.target)
        else:
            skipped.append(trial)
    first, second = embedded.items(probe_modality), embedded.items(candidate_modality)
    probes = np.array(probes, dtype=np.int64)
    candidates = np.array(candidates, dtype=np.int64).reshape(len(probes), -1)
    scores = np.einsum("nd,nkd->nk", first.vectors[probes], second.vectors[candidates]).astype(np.float64)
    return {"probe": probes, "probe_owner": first.owners[probes], "candidate_owner": second.owners[candidates],
            "scores": scores, "target": np.array(targets, dtype=np.int64), "skipped": skipped}


def _verification(scored: dict, counts: np.ndarray, confidence: float) -> dict:
    same, scores = scored["target"] == 1, scored["scores"][:, 0]
    figures = {"trials": int(len(same)), "same": int(same.sum()), "different": int((~same).sum())}
    if not same.any() or same.all():
        return {**figures, "note": "needs both same-person and different-person trials"}

    def weights(chunk: np.ndarray) -> np.ndarray:
        return metrics.pair_weights(chunk, scored["probe_owner"], scored["candidate_owner"][:, 0])

    rate, threshold = metrics.equal_error_rate(same, scores)
    figures["auc"] = metrics.figure(metrics.auc(same, scores),
                                    metrics.bootstrap(lambda w: metrics.weighted_auc(same, scores, w), weights, counts),
                                    confidence)
    figures["eer"] = metrics.figure(rate, metrics.bootstrap(lambda w: metrics.weighted_eer(same, scores, w), weights,
                                                            counts), confidence)
    figures["eer_threshold"] = round(threshold, 6)
    return figures


def _retrieval(embedded: EmbeddedCorpus, scored: dict, direction: str, counts: np.ndarray, confidence: float) -> dict:
    """mAP of the queries ranking the whole other-modality set of the split."""
    probe_modality = "face" if direction == "F-V" else "voice"
    gallery = embedded.items("voice" if direction == "F-V" else "face")
    queries = embedded.items(probe_modality).vectors[scored["probe"]]
    precisions = np.concatenate([  # in chunks of queries: the full score matrix can be gigabytes
        metrics.average_precisions(queries[start : start + RETRIEVAL_CHUNK] @ gallery.vectors.T,
                                   scored["probe_owner"][start : start + RETRIEVAL_CHUNK, None] == gallery.owners[None, :])
        for start in range(0, len(queries), RETRIEVAL_CHUNK)])
    answered = ~np.isnan(precisions)
    precisions, owners = precisions[answered], scored["probe_owner"][answered]
    entry = {"queries": int(answered.sum()), "gallery": len(gallery),
             "queries_without_match": int((~answered).sum())}
    if not len(precisions):
        return entry
    replicated = metrics.bootstrap(metrics.weighted_mean(precisions), lambda c: metrics.probe_weights(c, owners), counts)
    return {"map": metrics.figure(precisions.mean(), replicated, confidence), **entry}


def _calibration_check(entry: dict, model_id: str, same: np.ndarray, different: np.ndarray) -> dict:
    """How a stored calibration holds on these (held-out) trials: Cllr, Cllr_min, error rates at its thresholds.

    An entry made with another model of the space (`model_id` is this one's) is not checked: the note says so.
    """
    from fvmatch.calibration.fitting import cllr, cllr_min, log10_lr

    check = {"same": int(len(same)), "different": int(len(different))}
    made_with = entry.get("space_model_id")
    if made_with and made_with != model_id:
        return {**check, "note": f"not checked: the calibration was made with model {made_with[:16]}, "
                                 f"these scores come from {model_id[:16]}"}
    if not len(same) or not len(different):
        return check
    check["cllr"] = round(cllr(log10_lr(same, entry), log10_lr(different, entry)), 6)
    check["cllr_min"] = round(cllr_min(same, different), 6)
    check["operating_points"] = [
        {"fmr_target": point["fmr_target"], "threshold": point["threshold"],
         "fmr": round(float((different > point["threshold"]).mean()), 6),
         "fnmr": round(float((same <= point["threshold"]).mean()), 6)}
        for point in entry.get("operating_points", [])]
    return check

