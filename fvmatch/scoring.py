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

    def to_dict(self) -> dict:
        return {"score": round(self.score, 6), "trial_type": self.trial_type, "log10_lr": self.log10_lr,
                "decision": self.decision, "note": self.note}


def judge(score: float, kind: str, calibration: dict | None) -> Judgement:
    """Interpret a score under the model card's calibration (None: the model has none)."""
    if not calibration or kind not in calibration:
        return Judgement(score, kind, None, None,
                         f"uncalibrated: this model has no {kind} calibration, so the score carries no likelihood "
                         "ratio and no decision (calibrate the model on labelled trials first)")
    raise NotImplementedError("calibrated judgement lands with fvmatch calibrate")
