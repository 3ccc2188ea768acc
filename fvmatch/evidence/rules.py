"""What an answer rests on: which trial types carry evidence on real people, and the calibration a score is judged by.

Two rules (ARCHITECTURE.md section 6):

- **Never chance as a default answer.** Face-face (`dlib-face`) and voice-voice (`ge2e-voice`) scores hold on real
  people. A face-voice score of the joint space holds only when its checkpoint was trained on real pairs and
  calibrated for face-voice trials; the shipped one was trained on synthetic people, so its face-voice cosine is
  shown only when the analyst names the joint space (`--space joint`), and then labelled (`SYNTHETIC_JOINT_LABEL`).
  Without such a checkpoint, face-voice trials are weighed by the sex read from each side (fvmatch.evidence.attributes),
  where its heads ship; with neither, they are left out and the answer says so.
- **Likelihood ratios out of the box.** fvmatch ships reference calibrations of its pretrained spaces, fitted on
  named public real data (`reference/calibration.json`, built by `benchmarks/reference_calibration.py`); the
  model card's own calibration (`fvmatch calibrate`, case-relevant data) supersedes an entry of the same space and
  trial type.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.spaces import JOINT, SPACE_MODALITIES

REFERENCE_CALIBRATION = Path(__file__).parent.parent / "reference" / "calibration.json"
SYNTHETIC_MARK = "SYNTHETIC DATA ONLY"  # how training.data describes a corpus made by `fvmatch synth`
SYNTHETIC_JOINT_LABEL = ("SYNTHETIC-TRAINED joint space: these scores carry no weight on real people (shown "
                         "because the joint space was asked for)")


@lru_cache(maxsize=1)
def reference_calibration() -> dict:
    """The shipped reference calibration ({} where the package holds none): entries keyed as a card's are
    (fvmatch.calibration.fitting.calibration_key), each marked "reference" and naming its data."""
    if not REFERENCE_CALIBRATION.is_file():
        return {}
    return json.loads(REFERENCE_CALIBRATION.read_text(encoding="utf-8"))


def effective_calibration(card: dict) -> dict:
    """The calibration scores are judged by: the shipped reference entries, each replaced by the model card's own
    entry of the same (space, trial type) where the card has one."""
    own = card.get("calibration") or {}
    reference = {key: entry for key, entry in reference_calibration().items() if isinstance(entry, dict)
                 and entry.get("reference")}
    return {**reference, **own} if reference or own else {}


def joint_trained_on_synthetic(card: dict) -> bool:
    """Whether the joint checkpoint says it was trained on fvmatch's synthetic people."""
    return str(card.get("training_data") or "").startswith(SYNTHETIC_MARK)


def joint_label(card: dict) -> str | None:
    """The label every score of this joint checkpoint carries (None where it was trained on real pairs)."""
    return SYNTHETIC_JOINT_LABEL if joint_trained_on_synthetic(card) else None


def joint_holds(card: dict) -> str | None:
    """None when the joint space's face-voice scores hold on real people (trained on real pairs and calibrated for
    face-voice trials with this very model); else why they do not, as a phrase."""
    if joint_trained_on_synthetic(card):
        return (f"the joint model {card['model_id'][:16]} was trained on synthetic people only, so its face-voice "
                "scores are at chance on real people")
    entry = (card.get("calibration") or {}).get("face-voice")
    if not entry or entry.get("space_model_id", card["model_id"]) != card["model_id"]:
        return (f"the joint model {card['model_id'][:16]} has no face-voice calibration of its own "
                "(fvmatch calibrate on real pairs first)")
    return None


def cross_modal_scoring(card: dict, space: str | None = None) -> str | None:
    """What scores a face-voice trial: "joint" (asked for by name, or a joint model trained and calibrated on real
    pairs), "sex" (the sex read from each side, fvmatch.evidence.attributes, where its heads ship), or None (nothing that
    holds on real people: the trial is left out)."""
    from fvmatch.evidence.attributes import ATTRIBUTE_SPACE, sex_heads

    if space == JOINT or (space is None and joint_holds(card) is None):
        return JOINT
    if space is None and sex_heads():
        return ATTRIBUTE_SPACE
    return None


def cross_modal_refusal(card: dict, ask: str = "--space joint") -> str:
    """What to say when a face-voice answer was asked for and none holds; `ask`: the options that show it anyway."""
    return (f"no face-voice evidence that holds on real people: {joint_holds(card)}; to see its scores anyway, "
            f"labelled, give {ask}")


def answered_targets(modality: str, against: str | None, counts: dict, card: dict,
                     space: str | None = None) -> tuple[list[str], list[str]]:
    """The modalities a `modality` query is compared with, and notes on what was left out and why.

    No `against` (or "all"): every modality the gallery holds items of, the same modality first, less the other
    modality where no face-voice evidence holds (`cross_modal_scoring`: neither a joint model trained on real pairs
    nor the sex heads; a note says so). `against` the other modality: refused (BadArgument) where none holds. `space` joint: the analyst named the joint space itself, so its face-voice
    scores are answered (the caller labels them); another `space`: the modalities it embeds. A video query
    answers each of its parts in turn (`modality` face, then voice).
    """
    other = "voice" if modality == "face" else "face"
    cross_holds = cross_modal_scoring(card, space) is not None
    if against == other and not cross_holds:
        raise BadArgument(f"--against {other}", cross_modal_refusal(card, f"--against {other} --space joint"))
    if against in (modality, other):
        return [against], []
    embedded = SPACE_MODALITIES.get(space, ("face", "voice")) if space else ("face", "voice")
    targets = [target for target in (modality, other) if counts.get(target) and target in embedded]
    notes = []
    if other in targets and not cross_holds:
        targets.remove(other)
        notes.append(f"face-voice trials left out: {cross_modal_refusal(card, f'--against {other} --space joint')}")
    return targets, notes


VIDEO_PART = {"face": "face track", "voice": "soundtrack"}


def video_targets(against: str | None, counts: dict, card: dict,
                  space: str | None = None) -> tuple[dict[str, list[str]], list[str]]:
    """For a video's face track and soundtrack: the modalities each is compared with (`answered_targets`, a part
    whose only asked-for trial has no evidence left out rather than refused), and the notes on what was left out."""
    parts, notes = {}, []
    for part in ("face", "voice"):
        try:
            parts[part], left_out = answered_targets(part, against, counts, card, space)
        except BadArgument:
            parts[part], left_out = [], [f"face-voice trials left out: {cross_modal_refusal(card)}"]
        if space is not None:  # a named space scores the trials whose two modalities it embeds; the others go, said
            embedded = set(SPACE_MODALITIES.get(space, ()))
            parts[part] = [target for target in parts[part] if {part, target} <= embedded]
            try:
                unnamed = answered_targets(part, against, counts, card)[0]  # what the default spaces would answer
            except BadArgument:
                unnamed = []
            dropped = [target for target in unnamed if not {part, target} <= embedded]
            if dropped:  # the space is the reason, not the evidence: said so instead
                left_out = [note for note in left_out if not note.startswith("face-voice trials left out")]
            left_out += [f"{part}-{target} trials of the video's {VIDEO_PART[part]} left out: the {space} space "
                         f"embeds {' and '.join(sorted(embedded))} only" for target in dropped]
        notes.extend(note for note in left_out if note not in notes)
    return parts, notes


def require_targets(modality: str, targets: Sequence[str], notes: Sequence[str], directory) -> None:
    """BadArgument when nothing can be answered: the gallery holds no item the query can be weighed against."""
    if targets:
        return
    if notes:
        raise BadArgument(directory, f"the gallery holds no {modality} items; " + "; ".join(notes))
    raise BadArgument(directory, f"gallery holds no {modality} items to search")
