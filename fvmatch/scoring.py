"""What a score means: the trial type it belongs to and, where the model is calibrated, an LR and a decision.

Scores are cosines in the joint space. Each trial type (face-voice, face-face, voice-voice) has its own score
distributions, so calibration is per trial type (ARCHITECTURE.md section 6). A model without a calibration for
a trial type gets no decision: we say so rather than invent a threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

TRIAL_TYPES = ("face-voice", "face-face", "voice-voice")


def trial_type(first: str, second: str) -> str:
    """'face-voice' for a cross-modal pair (either order), else 'face-face' or 'voice-voice'."""
    if first == second:
        return f"{first}-{first}"
    return "face-voice"


@dataclass(frozen=True)
class Judgement:
    score: float
    trial_type: str
    log10_lr: float | None
    decision: str | None  # "same person" | "different person" | None when uncalibrated
    note: str
    verbal: str | None = None  # ENFSI verbal equivalent of the LR, None when uncalibrated

    def to_dict(self) -> dict:
        return {"score": round(self.score, 6), "trial_type": self.trial_type, "log10_lr": self.log10_lr,
                "verbal": self.verbal, "decision": self.decision, "note": self.note}


def judge(score: float, kind: str, calibration: dict | None, fmr: float = 0.01) -> Judgement:
    """Interpret a score under the model card's calibration (None: the model has none).

    Calibrated: the log10 LR of the trial type's map with its verbal equivalent, and the decision at the
    threshold for false-match rate `fmr` (1% by default; BadArgument lists the rates the calibration offers).
    """
    if not calibration or kind not in calibration:
        return Judgement(score, kind, None, None,
                         f"uncalibrated: this model has no {kind} calibration, so the score carries no likelihood "
                         "ratio and no decision (calibrate the model on labelled trials first)")
    from fvmatch.calibration import log10_lr, operating_point, verbal_equivalent

    entry = calibration[kind]
    point = operating_point(entry, fmr)
    value = round(float(log10_lr(score, entry)), 4)
    decision = "same person" if score > point["threshold"] else "different person"
    trials = entry["trials"]
    source = ", ".join(f"{label}{calibration[key]}" for key, label in (("data", ""), ("split", "split "), ("created", ""))
                       if calibration.get(key))
    note = (f"calibrated: {kind} map from {trials['same']:,} same-person and {trials['different']:,} different-person "
            f"trials{f' ({source})' if source else ''}; decision at the {point['fmr_target']:.1%} false-match-rate "
            f"operating point (same person when score > {point['threshold']:.4f}; {point['fnmr']:.1%} of the "
            "same-person trials scored at or below it)")
    return Judgement(score, kind, value, decision, note, verbal_equivalent(value))
