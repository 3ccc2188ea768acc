"""What a score means: the trial type it belongs to and, where the model is calibrated, an LR and a decision.

Scores are cosines in one embedding space. Each (space, trial type) has its own score distributions, so
calibration is per space and trial type (ARCHITECTURE.md section 6): the joint space's entries are keyed by trial
type ("face-voice"), another space's by space and trial type ("dlib-face face-face"), each recording the model id
of the space it was made with. A score without a calibration gets no decision: we say so rather than invent a
threshold.
"""
from __future__ import annotations

from dataclasses import dataclass

from fvmatch.calibration.fitting import calibration_key, log10_lr, operating_point, verbal_equivalent
from fvmatch.spaces import JOINT, TRIAL_TYPES  # noqa: F401 (TRIAL_TYPES: case_report/page.py still reads it here)


@dataclass(frozen=True)
class Judgement:
    score: float
    trial_type: str
    log10_lr: float | None
    decision: str | None  # "same person" | "different person" | None when uncalibrated
    note: str
    verbal: str | None = None  # ENFSI verbal equivalent of the LR, None when uncalibrated
    space: str = JOINT
    model_id: str = ""  # of the space that scored it
    calibration: str | None = None  # which calibration gave the LR: "reference: <its data>" or "model card: <data>"
    readings: dict | None = None  # sex evidence (fvmatch.evidence.attributes): each side's reading

    def to_dict(self) -> dict:
        return {"score": round(self.score, 6), "trial_type": self.trial_type, "space": self.space,
                "space_model_id": self.model_id, "log10_lr": self.log10_lr, "verbal": self.verbal,
                "decision": self.decision, "calibration": self.calibration, "note": self.note,
                **({"readings": self.readings} if self.readings is not None else {})}


def judge(score: float, kind: str, calibration: dict | None, fmr: float = 0.01, space: str = JOINT,
          model_id: str = "", band: str | None = None) -> Judgement:
    """Interpret a score of `space` (whose model is `model_id`) under the model card's calibration (None: none).

    Calibrated: the log10 LR of the (space, trial type)'s map with its verbal equivalent, and the decision at the
    threshold for false-match rate `fmr` (1% by default; BadArgument lists the rates the calibration offers).
    An entry made with another model of the space is not used (and the note says so). `band`: the size band of the
    pair's smaller face: its own map where the calibration has one, else the map of all sizes, and the note says
    which (a map fitted on large faces overstates the evidence of small ones).
    """
    banded = (calibration or {}).get(calibration_key(space, kind, band)) if band else None
    entry = banded or (calibration or {}).get(calibration_key(space, kind))
    made_with = (entry or {}).get("space_model_id")
    if entry is None or (made_with and model_id and made_with != model_id):
        why = (f"its {space} {kind} calibration was made with model {made_with[:16]}, not {model_id[:16]}"
               if entry is not None else f"this model has no {space} {kind} calibration")
        return Judgement(score, kind, None, None,
                         f"uncalibrated: {why}, so the score carries no likelihood ratio and no decision (calibrate "
                         "on labelled trials first)", space=space, model_id=model_id)
    point = operating_point(entry, fmr)
    value = round(float(log10_lr(score, entry)), 4)
    decision = "same person" if score > point["threshold"] else "different person"
    trials = entry["trials"]
    sizes = (f" for {band} faces" if banded else
             f" (faces of every size: none for {band} faces like this pair's smaller one)" if band else "")
    low, high = entry["map"]["bounds"]
    if entry.get("reference"):
        named = f"reference: {entry['data']}"
        fitted = (f"fvmatch's reference {space} {kind} calibration{sizes}, fitted on {entry['data']}: "
                  f"{trials['same']:,} same-person and {trials['different']:,} different-person trials, log10 LR "
                  f"bounded to [{low:+.2f}, {high:+.2f}] by {entry.get('bounds_method', 'the number of trials')}; a "
                  "case-relevant calibration (fvmatch calibrate --add) supersedes it")
    else:
        source = ", ".join(f"{label}{entry.get(key, calibration.get(key))}"
                           for key, label in (("data", ""), ("split", "split "), ("created", ""))
                           if entry.get(key, calibration.get(key)))
        named = f"model card: {entry.get('data', calibration.get('data'))}"
        fitted = (f"{space} {kind} map{sizes} from {trials['same']:,} same-person and {trials['different']:,} "
                  f"different-person trials{f' ({source})' if source else ''}")
    note = (f"calibrated: {fitted}; decision at the {point['fmr_target']:.1%} false-match-rate operating point "
            f"(same person when score > {point['threshold']:.4f}; {point['fnmr']:.1%} of the same-person trials "
            "scored at or below it)")
    return Judgement(score, kind, value, decision, note, verbal_equivalent(value), space, model_id, named)
