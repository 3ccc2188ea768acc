"""What fvmatch answers by default: trial types whose evidence holds on real people, judged by a named calibration."""
from __future__ import annotations

import numpy as np
import pytest

from fvmatch.errors import BadArgument
from fvmatch.evidence import (SYNTHETIC_JOINT_LABEL, answered_targets, effective_calibration, joint_holds, joint_label,
                              reference_calibration, video_targets)

SYNTHETIC = {"model_id": "a" * 64, "training_data": "SYNTHETIC DATA ONLY: fvmatch synth corpus (seed 7)"}
BOTH = {"face": 3, "voice": 2}


def real_joint(calibrated: bool = True) -> dict:
    card = {"model_id": "b" * 64, "training_data": "VoxCeleb1 dev (1,211 people)"}
    if calibrated:
        card["calibration"] = {"face-voice": {"space_model_id": "b" * 64, "map": {}}}
    return card


def test_the_synthetic_joint_model_holds_no_face_voice_evidence_and_says_why():
    assert "trained on synthetic people only" in joint_holds(SYNTHETIC)
    assert joint_label(SYNTHETIC) == SYNTHETIC_JOINT_LABEL
    assert "no face-voice calibration" in joint_holds(real_joint(calibrated=False))
    assert joint_holds(real_joint()) is None and joint_label(real_joint()) is None


def test_a_query_is_weighed_against_its_own_modality_by_default_and_the_other_left_out_with_a_note():
    assert answered_targets("face", None, BOTH, SYNTHETIC) == (["face"], [
        "face-voice trials left out: no face-voice evidence that holds on real people: the joint model aaaaaaaaaaaaaaaa "
        "was trained on synthetic people only, so its face-voice scores are at chance on real people; to see its "
        "scores anyway, labelled, give --against voice --space joint"])
    assert answered_targets("voice", "all", BOTH, SYNTHETIC)[0] == ["voice"]
    assert answered_targets("voice", None, {"face": 0, "voice": 4}, SYNTHETIC) == (["voice"], [])


def test_a_joint_model_trained_and_calibrated_on_real_pairs_answers_both_same_modality_first():
    assert answered_targets("voice", None, BOTH, real_joint()) == (["voice", "face"], [])
    assert answered_targets("face", "voice", BOTH, real_joint()) == (["voice"], [])


def test_asking_for_the_other_modality_is_refused_unless_the_joint_space_is_named():
    with pytest.raises(BadArgument, match="give --against voice --space joint"):
        answered_targets("face", "voice", BOTH, SYNTHETIC)
    assert answered_targets("face", "voice", BOTH, SYNTHETIC, space="joint") == (["voice"], [])
    assert answered_targets("face", None, BOTH, SYNTHETIC, space="joint") == (["face", "voice"], [])
    assert answered_targets("face", None, BOTH, SYNTHETIC, space="dlib-face") == (["face"], [])


def test_a_video_leaves_out_the_part_whose_only_trial_has_no_evidence():
    parts, notes = video_targets("face", BOTH, SYNTHETIC)
    assert parts == {"face": ["face"], "voice": []} and len(notes) == 1 and notes[0].startswith("face-voice trials left out")
    assert video_targets(None, BOTH, real_joint())[0] == {"face": ["face", "voice"], "voice": ["voice", "face"]}


def test_the_model_card_calibration_supersedes_the_reference_entry_of_the_same_space_and_trial_type():
    reference = reference_calibration()
    if not reference:
        pytest.skip("this checkout ships no reference calibration (fvmatch/reference/calibration.json)")
    key = "dlib-face face-face"
    assert reference[key]["reference"] is True and effective_calibration({})[key] == reference[key]
    own = {"space_model_id": reference[key]["space_model_id"], "data": "case photos"}
    merged = effective_calibration({"calibration": {key: own}})
    assert merged[key] is own and merged["ge2e-voice voice-voice"] == reference["ge2e-voice voice-voice"]


def test_every_reference_entry_names_its_data_is_bounded_by_elub_and_validated_on_held_out_people():
    reference = reference_calibration()
    if not reference:
        pytest.skip("this checkout ships no reference calibration (fvmatch/reference/calibration.json)")
    from fvmatch.calibration import log10_lr

    for key in ("dlib-face face-face", "ge2e-voice voice-voice"):
        entry = reference[key]
        assert entry["trials"]["identities"] >= 28 and "public" in entry["data"] and entry["sources"]
        assert entry["bounds_method"].startswith("ELUB")
        low, high = entry["map"]["bounds"]
        # ELUB never claims more than the trials could show: within log10 of the trial counts
        assert -np.log10(entry["trials"]["same"] + 1) <= low < 0 < high <= np.log10(entry["trials"]["different"] + 1)
        assert log10_lr(1.0, entry) == pytest.approx(high) and log10_lr(-1.0, entry) == pytest.approx(low)
        held = entry["held_out"]
        assert held["people"] >= 12 and 0 < held["cllr_min"] <= held["cllr"] < 1
