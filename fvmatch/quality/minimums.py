"""The least quality an item must have to be compared at all: below it, one clear refusal instead of a weak score.

An analyst sets them per command (`--min-face-px`, `--min-snr`, `--min-bandwidth`); none is set by default, since
a poor item still gets its quality figures shown beside every score. The check runs where an item is embedded, so
enroll, identify, verify, audit run and evaluate all refuse the same items the same way (an enroll or audit run
records the item as failed and carries on).
"""
from __future__ import annotations

from dataclasses import dataclass

from fvmatch.errors import PoorQuality


@dataclass(frozen=True)
class QualityMinimums:
    """Minimums on the measured figures (None: no minimum)."""

    eye_distance_px: float | None = None  # faces: pixels between the eyes (fvmatch.quality.face)
    snr_db: float | None = None  # voices: estimated signal-to-noise ratio (fvmatch.quality.voice)
    bandwidth_hz: float | None = None  # voices: effective upper frequency of the speech

    def check(self, item: object, quality: dict) -> None:
        """PoorQuality naming the item and every figure below its minimum (a figure not measured passes)."""
        problems = [f"{label} {quality[key]:g}{unit} is under the minimum {minimum:g}{unit} ({option})"
                    for key, minimum, label, unit, option in (
                        ("eye_distance_px", self.eye_distance_px, "eye distance", " px", "--min-face-px"),
                        ("snr_db", self.snr_db, "estimated SNR", " dB", "--min-snr"),
                        ("bandwidth_hz", self.bandwidth_hz, "bandwidth", " Hz", "--min-bandwidth"))
                    if minimum is not None and quality.get(key) is not None and quality[key] < minimum]
        if problems:
            raise PoorQuality(item, "too poor to compare: " + "; ".join(problems))
