"""The report's score plots: each (space, trial type) of an answer's candidates against its calibration's same-person
and different-person score distributions, the candidates' scores numbered by rank (a close-up strip where they lie
close together). Drawn with matplotlib's Agg canvas (no pyplot, no GUI); numbers only, labels stay in the HTML."""
from __future__ import annotations

import numpy as np

from fvmatch.case_report.pictures import CANDIDATE_COLOUR, DIFFERENT_COLOUR, SAME_COLOUR, Picture, rendered
from fvmatch.spaces import JOINT

NUMBERED_RANKS = 10  # candidates numbered on a score plot; the others are drawn unnumbered (their scores are tabled)
CLOSE_UP_SPAN = 0.1  # numbered scores within this of each other get a close-up strip beneath their plot
LINE_TOP = 0.78  # candidates' lines end at this height of a plot; their rank numbers sit in the band above
LABEL_GAP = 0.045  # rank numbers at least this share of a plot's width apart


def score_plot(record: dict, calibration: dict | None) -> tuple[Picture, list[str]]:
    """The calibration's same/different score distributions of each (space, trial type) in the answer, with the
    candidates' scores marked (numbers are ranks); without a calibration, the scores alone. `calibration`: the one
    scores are judged by (fvmatch.evidence.rules.effective_calibration). Returns the plot and, per (space, trial type), a
    sentence saying what it shows."""
    from matplotlib.figure import Figure

    from fvmatch.calibration.scoring import calibration_key

    # sex evidence (space "sex") is a likelihood ratio of two readings, not a score with distributions: not plotted
    candidates = [c for c in record.get("candidates") or [] if isinstance(c.get("score"), (int, float))
                  and c.get("space") != "sex"]
    # one panel per (space, trial type): each has its own score distributions and calibration entry
    panels = sorted({(str(c.get("space", JOINT)), str(c.get("trial_type"))) for c in candidates})
    if not panels:
        return Picture(None, "no candidates to plot"), []
    calibration = calibration or {}
    fmr = (record.get("calibration") or {}).get("fmr", 0.01)
    scores = {panel: sorted(((c.get("rank"), float(c["score"])) for c in candidates
                             if (str(c.get("space", JOINT)), str(c.get("trial_type"))) == panel),
                            key=lambda item: (-item[1], _rank_order(item[0])))
              for panel in panels}
    close_ups = {panel: _needs_close_up(scores[panel]) for panel in panels}
    rows = [row for panel in panels for row in ((panel, "main"), (panel, "close-up"))[: 1 + close_ups[panel]]]
    figure = Figure(figsize=(7.5, sum(2.8 if part == "main" else 1.2 for _, part in rows) + 0.3),
                    layout="constrained")
    grid = figure.add_gridspec(len(rows), 1, height_ratios=[2.8 if part == "main" else 1.2 for _, part in rows])
    sentences = []
    for number, (panel, part) in enumerate(rows):
        if part == "close-up":
            continue
        key = calibration_key(*panel)
        entry = calibration.get(key) if isinstance(calibration.get(key), dict) else None
        close_up = figure.add_subplot(grid[number + 1, 0]) if close_ups[panel] else None
        sentences.append(_draw_panel(figure.add_subplot(grid[number, 0]), close_up, " ".join(panel), scores[panel],
                                     entry, fmr, calibration))
    return Picture(rendered(figure), " ".join(sentences)), sentences


def _rank_order(rank: object) -> float:
    return rank if isinstance(rank, (int, float)) else float("inf")


def _needs_close_up(scores: list[tuple]) -> bool:
    """Whether the numbered scores lie too close together to be told apart on the whole axis."""
    numbered = [score for _, score in scores[:NUMBERED_RANKS]]
    return len(numbered) > 1 and max(numbered) - min(numbered) < CLOSE_UP_SPAN


def _draw_panel(axes, close_up, name: str, scores: list[tuple], entry: dict | None, fmr: float,
                calibration: dict) -> str:
    """One (space, trial type): its distributions, threshold and the candidates' scores, numbered by rank (the
    first NUMBERED_RANKS; in a close-up strip beneath when they lie close together). The sentence says what it shows."""
    values = [score for _, score in scores]
    low, high = min(values), max(values)
    histogram = (entry or {}).get("score_histogram")
    threshold = _threshold(entry, fmr) if entry is not None else None
    axes.set_xlabel(f"{name} score (cosine)")
    if entry is not None and histogram:
        edges = np.asarray(histogram["edges"], dtype=float)
        peak = 0.0
        for key, colour, label in (("different", DIFFERENT_COLOUR, "different person"),
                                   ("same", SAME_COLOUR, "same person")):
            counts = np.asarray(histogram[key], dtype=float)
            if counts.sum() == 0:
                continue
            density = counts / (counts.sum() * np.diff(edges))
            peak = max(peak, float(density.max()))
            axes.stairs(density, edges, fill=True, alpha=0.45, color=colour,
                        label=f"{label} ({int(counts.sum()):,} trials)")
            used = np.nonzero(counts)[0]
            low, high = min(low, edges[used[0]]), max(high, edges[used[-1] + 1])
        axes.set_ylim(0, peak / LINE_TOP if peak > 0 else 1)  # the band above LINE_TOP holds the rank numbers
        axes.set_ylabel("density")
        axes.set_title(f"{name}: the candidates' scores among the calibration trials", fontsize=10)
        what = "fvmatch's reference calibration" if entry.get("reference") else "the model card's calibration"
        provenance = [entry.get(key, calibration.get(key)) for key in ("data", "split", "created")]
        source = ", ".join(str(value) for value in provenance if value)
        sentence = (f"{name}: the shaded areas are the score distributions of same-person and different-person trials "
                    f"of {what}{f' ({source})' if source else ''}; the vertical lines mark the candidates' scores")
    elif entry is not None:
        axes.set_yticks([])
        axes.set_title(f"{name}: the candidates' scores (calibration holds no score distributions)", fontsize=10)
        sentence = (f"{name}: this calibration predates stored score distributions, so only the candidates' scores "
                    "and the decision threshold are shown")
    else:
        axes.set_yticks([])
        axes.set_title(f"{name}: NO CALIBRATION, scores only", fontsize=10)
        low, high = min(low, -1.0), max(high, 1.0)  # the whole cosine range: a score alone has no scale
        sentence = (f"{name}: there is no {name} calibration (neither fvmatch's reference calibration nor the model "
                    "card's): no same-person and different-person score distributions to compare with, no likelihood "
                    "ratios and no decisions. The plot shows the candidates' raw scores only")
    if threshold is not None:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                     label=f"threshold at {fmr:.1%} false-match rate")
        low, high = min(low, threshold), max(high, threshold)
    margin = max(0.02, 0.05 * (high - low))
    axes.set_xlim(low - margin, high + margin)
    numbered = scores[:NUMBERED_RANKS]
    for position, (rank, score) in enumerate(scores):
        axes.axvline(score, ymax=LINE_TOP, color=CANDIDATE_COLOUR, linewidth=2.0 if position == 0 else 0.9,
                     alpha=1.0 if position == 0 else 0.7, label="candidates' scores" if position == 0 else None)
    if close_up is None:
        _number_lines(axes, numbered)
    else:
        first, last = min(s for _, s in numbered), max(s for _, s in numbered)
        axes.axvspan(first, last, ymax=LINE_TOP, color="#f4a261", alpha=0.35, linewidth=0)
        axes.annotate(f"{len(numbered)} scores within {last - first:.4f}: close-up below", (last, LINE_TOP),
                      xycoords=("data", "axes fraction"), xytext=(0, 4), textcoords="offset points", fontsize=7.5,
                      ha="right" if last > sum(axes.get_xlim()) / 2 else "left", va="bottom", color=CANDIDATE_COLOUR)
        _draw_close_up(close_up, name, scores, numbered, threshold, fmr)
        sentence += (f"; the {len(numbered)} best lie within {last - first:.4f} of each other, so the strip beneath "
                     "spreads them out")
    sentence += ", numbered by rank"
    if len(scores) > len(numbered):
        sentence += (f" (the first {len(numbered)}; the other {len(scores) - len(numbered)} are drawn unnumbered, "
                     "their scores are in the table)")
    below = close_up if close_up is not None else axes  # the legend under the close-up, which belongs to the plot
    below.legend(*axes.get_legend_handles_labels(), loc="upper center", bbox_to_anchor=(0.5, -0.45 if close_up
                 is not None else -0.3), ncol=4, fontsize=7, frameon=False)
    return sentence + "."


def _draw_close_up(axes, name: str, scores: list[tuple], numbered: list[tuple], threshold: float | None,
                   fmr: float) -> None:
    """The numbered scores spread across a strip of their own, the threshold too if it falls among them."""
    first, last = min(s for _, s in numbered), max(s for _, s in numbered)
    pad = max(0.001, 0.15 * (last - first))
    axes.set_xlim(first - pad, last + pad)
    axes.set_ylim(0, 1)
    axes.set_yticks([])
    axes.set_facecolor("#fdf3ea")
    axes.set_xlabel(f"{name} score (cosine), close-up of the numbered candidates", fontsize=8)
    axes.tick_params(axis="x", labelsize=7)
    for position, (_, score) in enumerate(scores):
        if first - pad <= score <= last + pad:
            axes.axvline(score, ymax=LINE_TOP, color=CANDIDATE_COLOUR, linewidth=2.0 if position == 0 else 0.9,
                         alpha=1.0 if position == 0 else 0.7)
    if threshold is not None and first - pad <= threshold <= last + pad:
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2)
    _number_lines(axes, numbered)


def _number_lines(axes, numbered: list[tuple]) -> None:
    """Each score's rank in the band above its line, spread apart so no two overlap, joined to its line."""
    low, high = axes.get_xlim()
    ascending = sorted(numbered, key=lambda item: (item[1], -_rank_order(item[0])))
    places = _spread([(score - low) / (high - low) for _, score in ascending], LABEL_GAP)
    for (rank, score), place in zip(ascending, places):
        axes.annotate(str(rank), (score, LINE_TOP), xycoords=("data", "axes fraction"),
                      xytext=(low + place * (high - low), (1 + LINE_TOP) / 2),
                      textcoords=("data", "axes fraction"), fontsize=8, ha="center", va="center",
                      color=CANDIDATE_COLOUR, bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none"},
                      arrowprops={"arrowstyle": "-", "color": CANDIDATE_COLOUR, "linewidth": 0.6, "shrinkA": 0,
                                  "shrinkB": 0})


def _spread(places: list[float], gap: float) -> list[float]:
    """Ascending positions in [0, 1] moved apart to at least `gap`, each crowded run centred where its members are
    and kept inside [gap / 2, 1 - gap / 2]: label positions that never overlap and keep their order."""
    runs = [[place] for place in places]

    def start(run: list[float]) -> float:
        width = gap * (len(run) - 1)
        return min(max(sum(run) / len(run) - width / 2, gap / 2), max(gap / 2, 1 - gap / 2 - width))

    merged = True
    while merged:
        merged = False
        for index in range(len(runs) - 1):
            if start(runs[index]) + gap * len(runs[index]) > start(runs[index + 1]) + 1e-9:
                runs[index : index + 2] = [runs[index] + runs[index + 1]]
                merged = True
                break
    return [start(run) + gap * offset for run in runs for offset in range(len(run))]


def _threshold(entry: dict, fmr: float) -> float | None:
    from fvmatch.calibration.fitting import operating_point
    from fvmatch.errors import BadArgument

    try:
        return float(operating_point(entry, float(fmr))["threshold"])
    except (BadArgument, KeyError, TypeError, ValueError):
        return None
