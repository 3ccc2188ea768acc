"""Evaluation of a model with the published protocols (ARCHITECTURE.md section 7).

    embedded = embed_corpus(DATA, embedder, split="test", cache_dir=...)   # corpus.py
    results = evaluate(embedded, seed=0, calibration=embedder.card.get("calibration"))
    rows = table2_rows(results)                                            # report.py
    write_plots(results, "plots/")                                         # report.py

`evaluate` draws the trial lists from the seed (or takes a list read with `read_trials`), scores every trial
with the cosine of the stored unit vectors and reports every figure with its bootstrap 95% interval over
identities (metrics.py), with what is needed to reproduce and judge it: model id, data path, split, seed,
trial counts, items that failed to embed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument
from fvmatch.evaluation import metrics
from fvmatch.evaluation.corpus import EmbeddedCorpus, ItemSet, embed_corpus
from fvmatch.evaluation.metrics import CONFIDENCE, REPLICATES
from fvmatch.evaluation.trials import TrialCounts, TrialList, make_trials, read_trials, write_trials
from fvmatch.evaluation.report import table2_rows, write_plots

__all__ = ["EmbeddedCorpus", "ItemSet", "embed_corpus", "evaluate", "trials_for", "without_scores", "TrialCounts",
           "TrialList", "make_trials", "read_trials", "write_trials", "table2_rows", "write_plots"]

FORMAT = "fvmatch-evaluation/1"
RETRIEVAL_CHUNK = 512
VERIFICATION_TYPES = {"F-V": "face-voice", "F-F": "face-face", "V-V": "voice-voice"}


def trials_for(embedded: EmbeddedCorpus, seed: int, counts: TrialCounts = TrialCounts()) -> TrialList:
    """The trial lists of an embedded split, drawn from the seed over the items that embedded."""
    return make_trials(embedded.identities, embedded.items_of("face"), embedded.items_of("voice"), seed, counts)


def evaluate(embedded: EmbeddedCorpus, seed: int = 0, trials: TrialList | None = None,
             counts: TrialCounts = TrialCounts(), replicates: int = REPLICATES, confidence: float = CONFIDENCE,
             calibration: dict | None = None, keep_scores: bool = True) -> dict:
    """Every figure of every protocol on an embedded split, each {"value", "ci": [low, high]} (fractions, not %).

    `trials`: a list to evaluate (else drawn from `seed` with `counts`); its trials whose items are not in the
    corpus (failed to embed, another split) are skipped and counted. `seed` also seeds the bootstrap.
    `calibration` (the model card's): also reports, per calibrated trial type, Cllr, Cllr_min and the error rates
    at its thresholds on these trials (held-out validation of the calibration). `keep_scores`: include the
    unconstrained verification scores under "scores", which `write_plots` needs (see `without_scores`).
    """
    if not embedded.identities:
        raise BadArgument(embedded.data, f"no item of split {embedded.split!r} could be embedded; nothing to evaluate "
                                         f"({len(embedded.failures)} failures)")
    trials = trials if trials is not None else trials_for(embedded, seed, counts)
    counts_drawn = metrics.identity_resamples(len(embedded.identities), replicates, seed)
    lookup = {modality: {path: row for row, path in enumerate(embedded.items(modality).paths)}
              for modality in ("face", "voice")}
    synthetic = (Path(embedded.data) / "synth.json").is_file()
    results: dict = {
        "format": FORMAT, "model_id": embedded.model_id, "data": str(embedded.data), "split": embedded.split,
        "synthetic": synthetic, "seed": seed,
        "note": ("synthetic data: never evidence of accuracy on real people. " if synthetic else "")
                + "Published figures (VoxCeleb) come from another dataset and split: a reference, not a comparison.",
        "identities": len(embedded.identities), "items": {"faces": len(embedded.faces), "voices": len(embedded.voices)},
        "failures": embedded.failures,
        "trials": {"source": trials.source, "seed": trials.seed, "counts": {}, "skipped": 0,
                   "shortfalls": trials.shortfalls},
        "bootstrap": {"unit": "identity", "replicates": replicates, "confidence": confidence, "seed": seed,
                      "method": "percentile; pairs weighted by both people's draws, matching trials and retrieval "
                                "queries by the probe's (retrieval gallery fixed)"},
        "units": "fractions (0-1); table2_rows gives percentages",
        "verification": {}, "matching_1to2": {}, "matching_1toN": {}, "retrieval": {}, "scores": {},
    }
    for (protocol, direction, stratum, size), block in trials.blocks().items():
        scored = _score_block(embedded, lookup, block)
        results["trials"]["skipped"] += len(block) - len(scored["target"])
        name = f"{protocol} {direction} {stratum}" + (f" N={size}" if protocol == "1:N" else "")
        results["trials"]["counts"][name] = int(len(scored["target"]))
        if not len(scored["target"]):
            continue
        if protocol == "verification":
            kind = VERIFICATION_TYPES[direction]
            figures = _verification(scored, counts_drawn, confidence)
            results["verification"].setdefault(kind, {})[stratum] = figures
            if stratum == "U":
                same = scored["target"] == 1
                if keep_scores:
                    results["scores"][kind] = {"same": np.round(scored["scores"][same, 0], 6).tolist(),
                                               "different": np.round(scored["scores"][~same, 0], 6).tolist()}
                if calibration and kind in calibration:
                    results.setdefault("calibration", {})[kind] = _calibration_check(
                        calibration[kind], scored["scores"][same, 0], scored["scores"][~same, 0])
        elif protocol in ("1:2", "1:N"):
            credit = metrics.matching_credit(scored["scores"], scored["target"])
            replicated = metrics.bootstrap(metrics.weighted_mean(credit),
                                           lambda c: metrics.probe_weights(c, scored["probe_owner"]), counts_drawn)
            entry = {"accuracy": metrics.figure(credit.mean(), replicated, confidence), "trials": int(len(credit)),
                     "chance": 1.0 / size}
            key = "matching_1to2" if protocol == "1:2" else "matching_1toN"
            results[key].setdefault(direction, {})[stratum if protocol == "1:2" else str(size)] = entry
        else:
            results["retrieval"][direction] = _retrieval(embedded, scored, direction, counts_drawn, confidence)
    if not keep_scores:
        del results["scores"]
    elif calibration:
        results["calibration_maps"] = {kind: calibration[kind] for kind in results["scores"] if kind in calibration}
    return results


def without_scores(results: dict) -> dict:
    """The results without the per-trial scores kept for plotting (for --json output)."""
    return {key: value for key, value in results.items() if key not in ("scores", "calibration_maps")}


def _score_block(embedded: EmbeddedCorpus, lookup: dict, block: list) -> dict:
    """Cosine scores of a block's trials (those whose items are all in the corpus), with the people involved."""
    probe_modality, candidate_modality = block[0].probe_modality, block[0].candidate_modality
    probes, candidates, targets = [], [], []
    for trial in block:
        probe = lookup[probe_modality].get(trial.probe)
        others = [lookup[candidate_modality].get(ref) for ref in trial.candidates]
        if probe is not None and None not in others:
            probes.append(probe)
            candidates.append(others)
            targets.append(trial.target)
    first, second = embedded.items(probe_modality), embedded.items(candidate_modality)
    probes = np.array(probes, dtype=np.int64)
    candidates = np.array(candidates, dtype=np.int64).reshape(len(probes), -1)
    scores = np.einsum("nd,nkd->nk", first.vectors[probes], second.vectors[candidates]).astype(np.float64)
    return {"probe": probes, "probe_owner": first.owners[probes], "candidate_owner": second.owners[candidates],
            "scores": scores, "target": np.array(targets, dtype=np.int64)}


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


def _calibration_check(entry: dict, same: np.ndarray, different: np.ndarray) -> dict:
    """How a stored calibration holds on these (held-out) trials: Cllr, Cllr_min, error rates at its thresholds."""
    from fvmatch.calibration import cllr, cllr_min, log10_lr

    check = {"same": int(len(same)), "different": int(len(different))}
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

