"""What an evaluation shows: rows laid out like Wang et al. 2020 Table 2, and the validation plots (PNG).

The published figures sit beside ours only as a reference point: they were measured on VoxCeleb, another
dataset with another split, and are never comparable with figures on another corpus (least of all a
synthetic one). Every row says so, and names the embedding space its figure was measured in.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

PUBLISHED_SOURCE = "Wang et al. 2020, Table 2"
PUBLISHED_NOTE = "published, VoxCeleb, another dataset"
# (protocol label, key path into the results, published figure in %); None: the paper reports none
TABLE2 = (
    ("verification AUC", ("verification", "face-voice", "U", "auc"), "U", 85.03),
    ("verification AUC", ("verification", "face-voice", "G", "auc"), "G", 73.22),
    ("verification AUC", ("verification", "face-voice", "N", "auc"), "N", 84.44),
    ("verification AUC", ("verification", "face-voice", "A", "auc"), "A", 79.77),
    ("verification AUC", ("verification", "face-voice", "GNA", "auc"), "GNA", 65.07),
    ("F-V 1:2 accuracy", ("matching_1to2", "F-V", "U", "accuracy"), "U", 85.42),
    ("F-V 1:2 accuracy", ("matching_1to2", "F-V", "G", "accuracy"), "G", 73.52),
    ("F-V 1:2 accuracy", ("matching_1to2", "F-V", "N", "accuracy"), "N", None),
    ("F-V 1:2 accuracy", ("matching_1to2", "F-V", "GN", "accuracy"), "GN", None),
    ("V-F 1:2 accuracy", ("matching_1to2", "V-F", "U", "accuracy"), "U", 85.18),
    ("V-F 1:2 accuracy", ("matching_1to2", "V-F", "G", "accuracy"), "G", 74.29),
    ("V-F 1:2 accuracy", ("matching_1to2", "V-F", "N", "accuracy"), "N", None),
    ("V-F 1:2 accuracy", ("matching_1to2", "V-F", "GN", "accuracy"), "GN", None),
    ("F-V retrieval mAP", ("retrieval", "F-V", "map"), "-", 6.19),
    ("V-F retrieval mAP", ("retrieval", "V-F", "map"), "-", 6.75),
    # same-modality verification: not in the paper (scored in the pretrained face and voice spaces by default)
    ("F-F verification AUC", ("verification", "face-face", "U", "auc"), "U", None),
    ("F-F verification EER", ("verification", "face-face", "U", "eer"), "U", None),
    ("V-V verification AUC", ("verification", "voice-voice", "U", "auc"), "U", None),
    ("V-V verification EER", ("verification", "voice-voice", "U", "eer"), "U", None),
)
TRIAL_TYPES = ("face-voice", "face-face", "voice-voice")


def table2_rows(results: dict) -> list[dict]:
    """One row per Table 2 figure (and the same-modality verification figures) of the trial types evaluated: ours
    in % with its 95% interval, the space that scored it, the published VoxCeleb figure beside it.

    Row keys: protocol, stratum, space, model_id, ours (None when not measured), ours_ci, published,
    published_source (None for figures the paper does not report), why_not (why ours is None, else None). A plain
    folder's results (no metadata) have no stratified rows.
    """
    scored_in = {kind: (space, entry.get("model_id")) for space, entry in results.get("spaces", {}).items()
                 for kind in entry.get("trial_types", ())}
    rows = []
    for protocol, path, stratum, published in TABLE2:
        kind = path[1] if path[0] == "verification" else "face-voice"
        if "spaces" in results and kind not in scored_in:
            continue
        if results.get("layout") == "plain" and stratum not in ("U", "-"):
            continue
        found = results
        for key in path:
            found = found.get(key, {}) if isinstance(found, dict) else {}
        ours = found if isinstance(found, dict) and "value" in found else None
        space, model_id = scored_in.get(kind, (None, None))
        rows.append({
            "protocol": protocol, "stratum": stratum, "space": space, "model_id": model_id,
            "ours": None if ours is None else round(100 * ours["value"], 2),
            "ours_ci": None if ours is None else [round(100 * bound, 2) for bound in ours["ci"]],
            "published": published,
            "published_source": None if published is None else f"{PUBLISHED_SOURCE} ({PUBLISHED_NOTE})",
            "why_not": None if ours is not None else _why_not(results, path, stratum, found),
        })
    return rows


def _why_not(results: dict, path: tuple, stratum: str, found) -> str:
    """Why a Table 2 figure was not measured: the block's own note, the reason it could not be drawn, or its
    trials all skipped."""
    if isinstance(found, dict) and found.get("note"):
        return found["note"]
    protocol, direction = path[0], path[1]
    if protocol == "verification":
        direction = {"face-voice": "F-V", "face-face": "F-F", "voice-voice": "V-V"}[direction]
        block = f"verification {direction} {stratum}"
    elif protocol == "matching_1to2":
        block = f"1:2 {direction} {stratum}"
    else:
        block = f"retrieval {direction}"
    trials = results.get("trials", {})
    for shortfall in trials.get("shortfalls", []):
        if shortfall.startswith(block + " ") or shortfall.startswith(block + ":") or (
                direction in ("F-V", "V-F") and shortfall.startswith("face-voice ")):
            return shortfall.split(": ", 1)[1]
    if protocol == "retrieval" and isinstance(found, dict) and found.get("queries") == 0:
        return "no probe has a match in the other modality"
    counted = trials.get("counts", {}).get(block + " U" if protocol == "retrieval" else block)
    if counted == 0:
        return "every trial of this block was skipped (see the skipped trials)"
    return "no trials of this block (not in the trial list given)"


def write_plots(results: dict, directory: str | Path) -> list[Path]:
    """Write the validation plots of `evaluate(..., keep_scores=True)` results as PNGs; return their paths.

    Per trial type (in the space that scored it): ROC, DET, score histograms (same vs different person, with the
    calibration's log10 LR curve when calibrated) and, when calibrated, the Tippett plot; plus the 1:N accuracy
    curve.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if "scores" not in results:
        raise ValueError("results hold no scores: evaluate with keep_scores=True to plot")
    maps = results.get("calibration_maps", {})
    written = []
    for kind in TRIAL_TYPES:
        if kind not in results["scores"]:
            continue
        same = np.asarray(results["scores"][kind]["same"])
        different = np.asarray(results["scores"][kind]["different"])
        if not len(same) or not len(different):
            continue
        label = f"{kind} ({results['scores'][kind].get('space', 'joint')})"
        written.append(_save(_roc(label, same, different), directory / f"roc-{kind}.png"))
        written.append(_save(_det(label, same, different), directory / f"det-{kind}.png"))
        written.append(_save(_histogram(label, same, different, maps.get(kind)), directory / f"histogram-{kind}.png"))
        if kind in maps:
            written.append(_save(_tippett(label, same, different, maps[kind]), directory / f"tippett-{kind}.png"))
    if results.get("matching_1toN"):
        written.append(_save(_one_to_n(results["matching_1toN"]), directory / "matching-1toN.png"))
    return written


def _figure(title: str):
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global state; savefig renders with Agg

    figure = Figure(figsize=(5.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    return figure, axes


def _save(figure, path: Path) -> Path:
    temporary = path.with_name(path.stem + ".tmp.png")
    figure.savefig(temporary, dpi=120)
    temporary.replace(path)
    return path


def _labels(same: np.ndarray, different: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.r_[np.ones(len(same), bool), np.zeros(len(different), bool)], np.r_[same, different]


def _roc(kind: str, same: np.ndarray, different: np.ndarray):
    from sklearn.metrics import roc_auc_score, roc_curve

    labels, scores = _labels(same, different)
    fpr, tpr, _ = roc_curve(labels, scores)
    figure, axes = _figure(f"ROC, {kind} verification (unconstrained)")
    axes.plot(fpr, tpr, label=f"AUC {roc_auc_score(labels, scores):.4f}")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axes.set_xlabel("false-match rate")
    axes.set_ylabel("true-match rate")
    axes.legend(loc="lower right")
    return figure


def _det(kind: str, same: np.ndarray, different: np.ndarray):
    from scipy.stats import norm
    from sklearn.metrics import det_curve

    labels, scores = _labels(same, different)
    fmr, fnmr, _ = det_curve(labels, scores)
    clip = 1e-4  # normal-deviate axes cannot show 0 or 1
    figure, axes = _figure(f"DET, {kind} verification (unconstrained)")
    axes.plot(norm.ppf(np.clip(fmr, clip, 1 - clip)), norm.ppf(np.clip(fnmr, clip, 1 - clip)))
    ticks = np.array([0.001, 0.01, 0.05, 0.2, 0.5, 0.8, 0.95, 0.99])
    for set_ticks, set_labels, set_limits in ((axes.set_xticks, axes.set_xticklabels, axes.set_xlim),
                                              (axes.set_yticks, axes.set_yticklabels, axes.set_ylim)):
        set_ticks(norm.ppf(ticks))
        set_labels([f"{tick:.1%}".replace(".0%", "%") for tick in ticks])
        set_limits(norm.ppf(0.0005), norm.ppf(0.9995))
    axes.plot(norm.ppf([0.0005, 0.9995]), norm.ppf([0.0005, 0.9995]), linestyle=":", color="grey", label="EER line")
    axes.set_xlabel("false-match rate")
    axes.set_ylabel("false-non-match rate")
    axes.legend(loc="upper right")
    return figure


def _histogram(kind: str, same: np.ndarray, different: np.ndarray, entry: dict | None):
    figure, axes = _figure(f"Scores, {kind} verification (unconstrained)")
    bins = np.linspace(min(same.min(), different.min()), max(same.max(), different.max()), 50)
    axes.hist(different, bins=bins, density=True, alpha=0.55, label=f"different person ({len(different)})")
    axes.hist(same, bins=bins, density=True, alpha=0.55, label=f"same person ({len(same)})")
    axes.set_xlabel("score (cosine)")
    axes.set_ylabel("density")
    axes.legend(loc="upper left", fontsize=8)
    if entry is not None:
        from fvmatch.calibration.fitting import log10_lr

        curve = axes.twinx()
        curve.plot(bins, log10_lr(bins, entry), color="black", label="calibration")
        curve.axhline(0, color="black", linestyle=":", linewidth=0.8)
        curve.set_ylabel("log10 LR (calibration)")
    return figure


def _tippett(kind: str, same: np.ndarray, different: np.ndarray, entry: dict):
    """Cumulative LR distributions: the share of same-person (and different-person) trials with log10 LR >= x."""
    from fvmatch.calibration.fitting import log10_lr

    figure, axes = _figure(f"Tippett, {kind} (calibrated)")
    for values, label in ((log10_lr(same, entry), "same person"), (log10_lr(different, entry), "different person")):
        ordered = np.sort(values)
        axes.step(ordered, 1.0 - np.arange(len(ordered)) / len(ordered), where="post", label=f"{label} ({len(ordered)})")
    axes.axvline(0, color="grey", linestyle=":")
    axes.set_xlabel("log10 LR")
    axes.set_ylabel("proportion of trials with log10 LR >= x")
    axes.legend(loc="lower left", fontsize=8)
    return figure


def _one_to_n(matching: dict):
    spaces = sorted({by_size.get("space", "joint") for by_size in matching.values()})
    figure, axes = _figure(f"1:N matching accuracy ({', '.join(spaces)}; unconstrained, 95% CI)")
    for direction, by_size in sorted(matching.items()):
        sizes = sorted((size for size in by_size if size.isdigit()), key=int)
        values = np.array([by_size[size]["accuracy"]["value"] for size in sizes])
        bounds = np.array([by_size[size]["accuracy"]["ci"] for size in sizes])
        axes.errorbar([int(size) for size in sizes], values, yerr=np.abs(bounds.T - values), capsize=3,
                      marker="o", label=direction)
    sizes = np.arange(2, 11)
    axes.plot(sizes, 1.0 / sizes, linestyle=":", color="grey", label="chance (1/N)")
    axes.set_xlabel("N (candidates)")
    axes.set_ylabel("accuracy")
    axes.set_ylim(0, 1)
    axes.legend()
    return figure
