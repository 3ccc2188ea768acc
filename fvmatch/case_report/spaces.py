"""What the scores a report shows rest on (ARCHITECTURE.md section 6): per (space, trial type) actually used, the
space's model id, what that model is, and the calibration that judged its scores, or that none did.

The report describes the records, not the model card: a face-face answer scored in dlib-face says dlib-face, even
though the gallery is pinned to a joint checkpoint; the joint checkpoint's training data (and the synthetic warning)
is said only where a joint score is shown.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from fvmatch.spaces import JOINT
from fvmatch.spaces.conditions import split

# what each pretrained space's model is; the joint space is described from its checkpoint's card
PRETRAINED = {
    "dlib-face": ("dlib's ResNet face descriptor (128-D, weights from face-recognition-models), pretrained on real "
                  "faces"),
    "ge2e-voice": "Resemblyzer's GE2E speaker encoder (256-D), pretrained on real speech",
    "sex": ("the sex read from the face (a logistic head on its dlib-face vector) and from the voice (a head on its "
            "ge2e-voice vector), both trained on labelled real people, and the age band read from each where it was "
            "(dlib's age network on the face's chip, a head on the voice's vector) (fvmatch.evidence.attributes): a "
            "likelihood ratio of the two sides' readings; it separates people read as of different sex (and, "
            "weakly, of distant age bands), not people alike in both"),
}


@dataclass
class SpaceUse:
    """The scores of one (space, trial type) that a report shows, and what judged them."""

    space: str
    trial_type: str
    model_ids: list[str] = field(default_factory=list)  # of the space, as the records name it (normally one)
    shown: int = 0  # scores shown
    uncalibrated: int = 0  # of them, judged by no calibration (no likelihood ratio, no decision)
    calibrations: list[str] = field(default_factory=list)  # those that judged the others ("reference: <data>", ...)
    warnings: list[str] = field(default_factory=list)  # what the trials say their scores cannot show

    @property
    def name(self) -> str:
        return f"{self.space} {self.trial_type}"


def shown_candidates(records: Sequence[dict], detailed: Sequence[dict]) -> list[tuple[dict, dict]]:
    """(record, candidate) of every score the page shows: all candidates of the detailed records, the top one of
    the other answered records (the summary's)."""
    full = {id(record) for record in detailed}
    shown = []
    for record in records:
        if record.get("status") != "ok":
            continue
        candidates = [c for c in record.get("candidates") or [] if isinstance(c, dict)]
        shown.extend((record, candidate) for candidate in (candidates if id(record) in full else candidates[:1]))
    return shown


def judged_by(candidate: dict, record: dict) -> str | None:
    """The calibration that gave a candidate its likelihood ratio, as the record names it; None: no calibration."""
    if candidate.get("log10_lr") is None:
        return None
    if candidate.get("calibration"):
        return str(candidate["calibration"])
    # results written before candidates named their calibration: only a model card's calibration existed then
    summary = record.get("calibration") if isinstance(record.get("calibration"), dict) else {}
    return f"model card: {summary.get('data') or 'data not stated'}"


def spaces_used(records: Sequence[dict], detailed: Sequence[dict]) -> list[SpaceUse]:
    """Each (space, trial type) a shown score came from, in the order first shown."""
    uses: dict[tuple[str, str], SpaceUse] = {}
    for record, candidate in shown_candidates(records, detailed):
        space, kind = str(candidate.get("space") or JOINT), str(candidate.get("trial_type"))
        use = uses.setdefault((space, kind), SpaceUse(space, kind))
        use.shown += 1
        _add(use.model_ids, candidate.get("space_model_id"))
        calibration = judged_by(candidate, record)
        if calibration is None:
            use.uncalibrated += 1
        else:
            _add(use.calibrations, calibration)
        for trial in record.get("trials") or []:
            if isinstance(trial, dict) and trial.get("space") == space and trial.get("trial_type") == kind:
                _add(use.model_ids, trial.get("model_id"))
                _add(use.warnings, trial.get("warning"))
    return list(uses.values())


def _add(values: list, value: object) -> None:
    if value and value not in values:
        values.append(str(value))


def describe_space(space: str, card: dict) -> str:
    """What a space's model is, in a phrase: a pretrained space's origin, or the joint checkpoint's training data."""
    from fvmatch.evidence.rules import joint_trained_on_synthetic

    base, condition = split(space)
    base, _, template = base.partition(" template")  # a template's score (fvmatch.analysis.templates)
    base = base.split("/")[0]  # an internal reading of a space ("ge2e-voice/speech") is that space's model
    if base == JOINT:
        trained = card.get("training_data") or "training data not stated in its card"
        warning = ": its scores carry no weight on real people" if joint_trained_on_synthetic(card) else ""
        return f"fvmatch's joint face-voice checkpoint, trained on {trained}{warning}"
    what = PRETRAINED.get(base, f"a space this fvmatch does not describe ({base})")
    if condition:
        what += f"; the enrolled voices brought to the {condition} condition of the questioned recording"
    if template:
        what += f"; each identity scored by the template of its first {template} references"
    return what
