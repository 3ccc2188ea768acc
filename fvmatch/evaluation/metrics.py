"""The figures of the evaluation protocols, and their bootstrap confidence intervals over identities.

Point estimates come straight from scikit-learn (`roc_auc_score`, `roc_curve`, `average_precision_score`)
or from counting. The confidence interval resamples the split's identities with replacement (`replicates`
times, from a seed) and recomputes the figure with each trial weighted by how often its people were drawn:

    a verification pair of one person a          weight c_a
    a verification pair of two people a and b    weight c_a * c_b
    a matching trial or a retrieval query        weight c_probe (the probe's person)

so a replicate is the figure on a corpus of resampled people, without re-sampling trials. Retrieval keeps the
whole gallery (the ranked set) fixed and resamples the queries. The interval is the percentile interval.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

CONFIDENCE = 0.95
REPLICATES = 1000
_CHUNK = 100  # replicates weighted at once: bounds memory at 100 x trials floats


def auc(same: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of scores for same-person (True) against different-person (False) trials."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(same, scores))


def equal_error_rate(same: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(EER, score threshold there): where the false-match rate equals the false-non-match rate on the ROC curve.

    The ROC is piecewise linear between sklearn's `roc_curve` points; the EER is read where it crosses
    FNMR = FMR, the threshold is the score of the first point past the crossing.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, thresholds = roc_curve(same, scores)
    rate, index = _crossing(fpr[None, :], 1.0 - tpr[None, :])
    return float(rate[0]), float(thresholds[index[0]])


def matching_credit(scores: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per trial of a 1:N test, 1 when the right candidate scores highest, 0 when not; a tie at the top shares the credit.

    `scores` is (trials, N), `target` the column of the right candidate.
    """
    best = scores.max(axis=1, keepdims=True)
    at_top = scores == best
    right_on_top = at_top[np.arange(len(scores)), target]
    return right_on_top / at_top.sum(axis=1)


def average_precisions(scores: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Average precision of each query (row) ranking the gallery (columns); rows with nothing relevant are NaN."""
    from sklearn.metrics import average_precision_score

    return np.array([average_precision_score(wanted, row) if wanted.any() else np.nan
                     for row, wanted in zip(scores, relevant)])


def figure(value: float, replicates: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """A reported figure: the point estimate and the percentile interval of its bootstrap replicates."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.nanquantile(replicates, [tail, 1.0 - tail]) if np.isfinite(replicates).any() else (np.nan, np.nan)
    return {"value": round(float(value), 6), "ci": [round(float(low), 6), round(float(high), 6)]}


def identity_resamples(identities: int, replicates: int, seed: int) -> np.ndarray:
    """(replicates, identities) counts: how often each identity is drawn in each bootstrap corpus."""
    rng = np.random.default_rng([seed, 0xB007])
    return rng.multinomial(identities, np.full(identities, 1.0 / identities), size=replicates)


def pair_weights(counts: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Weights of pairs between people `first` and `second` (identity indices) under each row of counts."""
    weights = counts[:, first].astype(np.float64)
    different = first != second
    weights[:, different] *= counts[:, second[different]]
    return weights


def probe_weights(counts: np.ndarray, probe: np.ndarray) -> np.ndarray:
    return counts[:, probe].astype(np.float64)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], weights_of: Callable[[np.ndarray], np.ndarray],
              counts: np.ndarray) -> np.ndarray:
    """The statistic under every resample: `weights_of(counts chunk)` gives (chunk, trials) weights,
    `statistic(weights)` one value per row. NaN where a resample leaves a figure undefined."""
    values = [statistic(weights_of(counts[start : start + _CHUNK])) for start in range(0, len(counts), _CHUNK)]
    return np.concatenate(values) if values else np.zeros(0)


def weighted_mean(values: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A statistic: the weighted mean of per-trial values (accuracy credits, average precisions)."""
    def statistic(weights: np.ndarray) -> np.ndarray:
        total = weights.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (weights @ values) / total
    return statistic


def weighted_auc(same: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC under each row of trial weights (the weighted Mann-Whitney statistic; ties count half).

    Equals `roc_auc_score(same, scores, sample_weight=row)` row by row, all rows at once.
    """
    order = np.argsort(scores, kind="stable")
    sorted_scores, positive = scores[order], same[order].astype(bool)
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_scores)) + 1]  # first trial of each group of equal scores
    w = weights[:, order]
    negative_mass = np.add.reduceat(np.where(positive, 0.0, w), starts, axis=1)
    positive_mass = np.add.reduceat(np.where(positive, w, 0.0), starts, axis=1)
    below = np.cumsum(negative_mass, axis=1) - negative_mass
    wins = (positive_mass * (below + 0.5 * negative_mass)).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return wins / (positive_mass.sum(axis=1) * negative_mass.sum(axis=1))


def weighted_eer(same: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """EER under each row of trial weights, read off the weighted ROC curve as `equal_error_rate` does."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, positive = scores[order], same[order].astype(bool)
    ends = np.r_[np.flatnonzero(np.diff(sorted_scores)), len(scores) - 1]  # last trial of each group of equal scores
    w = weights[:, order]
    true_matches = np.cumsum(np.where(positive, w, 0.0), axis=1)[:, ends]
    false_matches = np.cumsum(np.where(positive, 0.0, w), axis=1)[:, ends]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = true_matches / true_matches[:, -1:]
        fpr = false_matches / false_matches[:, -1:]
    zeros = np.zeros((len(w), 1))
    rate, _ = _crossing(np.hstack([zeros, fpr]), 1.0 - np.hstack([zeros, tpr]))
    return rate


def _crossing(fpr: np.ndarray, fnr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ROC points (FMR rising from 0, FNMR falling from 1): the rate where FNMR = FMR, linearly
    interpolated between the two points around the crossing, and the index of the point past it."""
    gap = fnr - fpr
    past = np.argmax(gap <= 0, axis=1)
    rows = np.arange(len(gap))
    before = np.maximum(past - 1, 0)
    step = gap[rows, before] - gap[rows, past]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(step > 0, gap[rows, before] / step, 0.0)
    rate = fpr[rows, before] + share * (fpr[rows, past] - fpr[rows, before])
    rate[~np.isfinite(gap).all(axis=1)] = np.nan
    return rate, past
