"""What fvmatch answers by default: trial types whose evidence holds on real people, judged by a named calibration."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fvmatch.errors import BadArgument
from fvmatch.evidence.rules import (SYNTHETIC_JOINT_LABEL, answered_targets, effective_calibration, joint_holds,
                                    joint_label, reference_calibration, video_targets)

SYNTHETIC = {"model_id": "a" * 64, "training_data": "SYNTHETIC DATA ONLY: fvmatch synth corpus (seed 7)"}
BOTH = {"face": 3, "voice": 2}


@pytest.fixture()
def no_sex_heads(monkeypatch):
    """fvmatch as if it shipped no sex heads: the joint space alone could carry face-voice evidence."""
    from fvmatch.evidence import attributes

    monkeypatch.setattr(attributes, "sex_heads", lambda: {})


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


def test_a_query_is_weighed_against_its_own_modality_by_default_and_the_other_left_out_with_a_note(no_sex_heads):
    assert answered_targets("face", None, BOTH, SYNTHETIC) == (["face"], [
        "face-voice trials left out: no face-voice evidence that holds on real people: the joint model aaaaaaaaaaaaaaaa "
        "was trained on synthetic people only, so its face-voice scores are at chance on real people; to see its "
        "scores anyway, labelled, give --against voice --space joint"])
    assert answered_targets("voice", "all", BOTH, SYNTHETIC)[0] == ["voice"]
    assert answered_targets("voice", None, {"face": 0, "voice": 4}, SYNTHETIC) == (["voice"], [])


def test_a_joint_model_trained_and_calibrated_on_real_pairs_answers_both_same_modality_first(no_sex_heads):
    assert answered_targets("voice", None, BOTH, real_joint()) == (["voice", "face"], [])
    assert answered_targets("face", "voice", BOTH, real_joint()) == (["voice"], [])


def test_asking_for_the_other_modality_is_refused_unless_the_joint_space_is_named(no_sex_heads):
    with pytest.raises(BadArgument, match="give --against voice --space joint"):
        answered_targets("face", "voice", BOTH, SYNTHETIC)
    assert answered_targets("face", "voice", BOTH, SYNTHETIC, space="joint") == (["voice"], [])
    assert answered_targets("face", None, BOTH, SYNTHETIC, space="joint") == (["face", "voice"], [])
    assert answered_targets("face", None, BOTH, SYNTHETIC, space="dlib-face") == (["face"], [])


def test_a_video_leaves_out_the_part_whose_only_trial_has_no_evidence(no_sex_heads):
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
    from fvmatch.calibration.fitting import log10_lr

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


def fake_heads(face_right: float = 0.95, voice_right: float = 0.98) -> dict:
    def head(space, right):
        return {"space": space, "space_model_id": space[0] * 64, "weights": [1.0, -1.0], "bias": 0.0,
                "confusion": {"female": {"female": right, "male": 1 - right},
                              "male": {"male": right, "female": 1 - right}},
                "trained_on": f"{space} training people", "measured_on": f"{space} other people"}
    return {"face-sex": head("dlib-face", face_right), "voice-sex": head("ge2e-voice", voice_right),
            "bounds": [-2.0, 1.0], "bounds_method": "ELUB (test)"}


def test_with_sex_heads_a_face_is_weighed_against_voices_by_sex_and_the_joint_space_only_when_named(monkeypatch):
    from fvmatch.evidence import attributes
    from fvmatch.evidence.rules import cross_modal_scoring

    monkeypatch.setattr(attributes, "sex_heads", lambda: fake_heads())
    assert answered_targets("face", None, BOTH, SYNTHETIC) == (["face", "voice"], [])
    assert answered_targets("face", "voice", BOTH, SYNTHETIC) == (["voice"], [])
    assert cross_modal_scoring(SYNTHETIC) == "sex" and cross_modal_scoring(SYNTHETIC, "joint") == "joint"
    assert cross_modal_scoring(real_joint()) == "joint" and cross_modal_scoring(SYNTHETIC, "dlib-face") is None


def test_sex_evidence_is_the_ratio_of_the_readings_under_one_and_two_people(monkeypatch):
    import math

    from fvmatch.evidence import attributes

    monkeypatch.setattr(attributes, "sex_heads", lambda: fake_heads())
    woman = attributes.SexReading("face", "female", 0.97, "dlib-face", "d" * 64)
    man_voice = attributes.SexReading("voice", "male", 0.01, "ge2e-voice", "g" * 64)
    woman_voice = attributes.SexReading("voice", "female", 0.9, "ge2e-voice", "g" * 64)
    # same sex read: (0.5*0.95*0.98 + 0.5*0.05*0.02) / (0.5 * 0.5)
    assert attributes.log10_lr(woman, woman_voice) == pytest.approx(math.log10((0.5 * 0.95 * 0.98 + 0.5 * 0.05 * 0.02) / 0.25))
    # different sexes read: (0.5*0.95*0.02 + 0.5*0.05*0.98) / 0.25 = 0.234 -> log10 -0.63
    assert attributes.log10_lr(woman, man_voice) == pytest.approx(math.log10((0.5 * 0.95 * 0.02 + 0.5 * 0.05 * 0.98) / 0.25))
    # a population of 80% men makes two female readings rarer by chance, so stronger evidence
    assert attributes.log10_lr(woman, woman_voice, attributes.population_of("male=0.8")) > attributes.log10_lr(woman, woman_voice)
    # the ELUB bounds hold: confusions of 1.0 would claim more than the validation supports
    monkeypatch.setattr(attributes, "sex_heads", lambda: fake_heads(1.0, 1.0))
    assert attributes.log10_lr(woman, woman_voice) == pytest.approx(math.log10(2.0))
    monkeypatch.setattr(attributes, "sex_heads", lambda: fake_heads(0.999, 0.999))
    assert attributes.log10_lr(woman, man_voice) == -2.0


def test_sex_evidence_names_both_readings_the_population_and_what_it_cannot_show(monkeypatch):
    from fvmatch.evidence import attributes

    monkeypatch.setattr(attributes, "sex_heads", lambda: fake_heads())
    face = attributes.SexReading("face", "female", 0.97, "dlib-face", "d" * 64)
    voice = attributes.SexReading("voice", "male", 0.02, "ge2e-voice", "g" * 64)
    found = attributes.evidence(face, voice)
    assert (found["face"]["sex"], found["face"]["probability"], found["voice"]["sex"], found["voice"]["probability"]) == \
        ("female", 0.97, "male", 0.98)
    assert found["population"] == {"female": 0.5, "male": 0.5} and found["verbal"].endswith("different-person proposition")
    assert "measured on dlib-face other people" in found["rests_on"] and "not people alike in both" in found["limits"]
    with pytest.raises(ValueError):
        attributes.population_of("female=1.2")
    # age bands: the named ones as given, the others share the rest; never more than the whole
    case = attributes.population_of("male=0.7,50+=0.5")
    assert attributes.population_shares(case) == pytest.approx(
        {"female": 0.3, "male": 0.7, "under 30": 0.25, "30-49": 0.25, "50 and over": 0.5})
    assert attributes.population_shares(attributes.DEFAULT_POPULATION)["30-49"] == pytest.approx(1 / 3)
    for wrong in ("50+=0.5", "female=0.5,under-30=0.7,30-49=0.6", "female=0.5,male=0.5", "female=0.5,teens=0.2"):
        with pytest.raises(ValueError):
            attributes.population_of(wrong)


def test_reference_entries_cover_the_face_size_bands_and_the_voice_reference_conditions():
    reference = reference_calibration()
    if not reference:
        pytest.skip("this checkout ships no reference calibration (fvmatch/reference/calibration.json)")
    for key in ("dlib-face face-face @small", "dlib-face face-face @medium", "ge2e-voice@telephone voice-voice",
                "ge2e-voice@noisy voice-voice", "ge2e-voice@telephone-noisy voice-voice",
                "ge2e-voice@narrowband voice-voice"):
        entry = reference[key]
        assert entry["reference"] and entry["bounds_method"].startswith("ELUB") and entry["held_out"]["people"] >= 12
        assert "shrunk to the" in entry["data"] or "brought to the" in entry["data"]
    # identity templates (fvmatch.analysis.templates): a map per number of faces, of every size and per size band
    from fvmatch.analysis.templates import TEMPLATE_SIZE

    for size in range(2, TEMPLATE_SIZE + 1):
        for band in ("", " @small", " @medium"):
            entry = reference[f"dlib-face template{size} face-face{band}"]
            assert entry["bounds_method"].startswith("ELUB") and entry["held_out"]["people"] >= 12
            assert f"templates of each person's first {size} photos" in entry["data"]
            assert entry["space_model_id"] == reference["dlib-face face-face"]["space_model_id"]


def test_a_small_face_question_is_judged_by_the_small_face_map_and_says_so(tmp_path):
    from PIL import Image

    from mediagen import REALMEDIA, run_cli_here

    from fvmatch.media.degrade import shrink_face

    folder = REALMEDIA / "faces" / "fr_barack_obama"
    if not folder.is_dir():
        pytest.skip(f"{REALMEDIA} is absent: the real photos of ../shared/realmedia are needed (CI always has them)")
    reference, question = folder / "obama.jpg", folder / "obama2.jpg"
    box = json.loads(run_cli_here("embed", "--face", question, "--space", "dlib-face", "--json").stdout)["quality"]
    with Image.open(question) as image:
        shrink_face(image.convert("RGB"), box["box"], (box["box"][2] - box["box"][0]) * 10 / box["eye_distance_px"]
                    ).save(tmp_path / "small.png")
    answer = json.loads(run_cli_here("verify", "--face", tmp_path / "small.png", "--face", reference, "--json").stdout)
    assert answer["space"] == "dlib-face" and answer["log10_lr"] is not None
    assert "reference dlib-face face-face calibration for small faces" in answer["note"]


def test_embed_reads_the_sex_of_a_real_face_and_a_real_voice():
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    from mediagen import REALMEDIA, run_cli_here

    face = REALMEDIA / "faces" / "vox1_Freida_Pinto"
    voice = REALMEDIA / "voices" / "librispeech_2033" / "2033-164914-0001.flac"
    if not face.is_dir() or not voice.is_file():
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings of ../shared/realmedia are needed")
    read_face = json.loads(run_cli_here("embed", "--face", sorted(face.iterdir())[0], "--json").stdout)["sex"]
    read_voice = json.loads(run_cli_here("embed", "--voice", voice, "--json").stdout)["sex"]
    assert (read_face["sex"], read_face["estimator"], read_voice["sex"], read_voice["estimator"]) == \
        ("female", "dlib-face sex head", "male", "ge2e-voice sex head")
    assert read_face["probability"] > 0.5 and read_voice["probability"] > 0.5
    assert 130 < read_voice["f0_hz"] < 170  # speaker 2033's median F0, read by fvmatch.quality.pitch
    # her age band read off the face space's chip; the voice's from its ge2e-voice vector: each band's probability
    assert read_face["age"]["band"] in ("under 30", "30-49") and 18 < read_face["age"]["years"] < 45
    assert sum(read_face["age"]["bands"].values()) == pytest.approx(1.0, abs=1e-3)
    assert read_voice["age"]["estimator"] == "ge2e-voice age head" and "years" not in read_voice["age"]
    age = read_voice["age"]
    text = run_cli_here("embed", "--voice", voice, "--space", "ge2e-voice").stdout
    assert (f"voice: male {read_voice['probability']:.2f} (F0 {read_voice['f0_hz']:.0f} Hz), age {age['band']} "
            f"{age['probability']:.2f} (ge2e-voice sex head; age: ge2e-voice age head)" in text)
    joint_only = json.loads(run_cli_here("embed", "--voice", voice, "--space", "joint", "--json").stdout)
    assert joint_only["sex"] is None  # not embedded in the head's space: nothing read


def test_the_population_the_sex_evidence_assumes_is_an_option_and_named_in_the_result():
    from mediagen import REALMEDIA, run_cli_here

    face = REALMEDIA / "faces" / "vox1_Freida_Pinto"
    voice = REALMEDIA / "voices" / "librispeech_2033" / "2033-164914-0000.flac"
    if not face.is_dir() or not voice.is_file():
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings of ../shared/realmedia are needed")
    pair = ("verify", "--face", sorted(face.iterdir())[0], "--voice", voice, "--json")
    equal, mostly_women = (json.loads(run_cli_here(*pair, *extra).stdout) for extra in ((), ("--population", "female=0.8")))
    bands = {"under 30": 0.3333, "30-49": 0.3333, "50 and over": 0.3333}  # both sides' ages read: equal bands
    assert equal["readings"]["population"] == {"female": 0.5, "male": 0.5, **bands}
    assert mostly_women["readings"]["population"] == {"female": 0.8, "male": 0.2, **bands}
    # a woman's face with a man's voice: where men are rare, a voice read male by chance is rarer too
    assert mostly_women["log10_lr"] > equal["log10_lr"] and "population 80% female" in mostly_women["note"]
    refused = run_cli_here(*pair[:-1], "--population", "female=2")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("fvmatch: error: --population: 'female=2': give female=SHARE or male=SHARE, a share "
                                      "strictly between 0 and 1, and optionally age bands: under-30=SHARE, 30-49=SHARE, "
                                      "50+=SHARE")


def test_a_voice_is_weighed_by_sex_against_a_gallery_that_holds_faces_alone(tmp_path):
    """The question is embedded in the space its sex is read from even when no voice is enrolled to search."""
    from mediagen import REALMEDIA, run_cli_here

    face = REALMEDIA / "faces" / "fr_rose_leslie"
    voice = REALMEDIA / "voices" / "librispeech_2033" / "2033-164914-0000.flac"
    if not face.is_dir() or not voice.is_file():
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings of ../shared/realmedia are needed")
    gallery = tmp_path / "faces-only"
    assert run_cli_here("enroll", "-g", gallery, "-i", "Rose Leslie", "--face", sorted(face.iterdir())[0]
                        ).returncode == 0
    answer = json.loads(run_cli_here("identify", "-g", gallery, "--voice", voice, "--json").stdout)
    (group,) = answer["trials"]
    assert (group["space"], group["scoring"]["question"]["sex"]) == ("sex", "male")
    assert answer["candidates"][0]["identity"] == "Rose Leslie" and answer["candidates"][0]["log10_lr"] < -1


def test_age_bands_add_a_bounded_part_to_the_sex_evidence_and_are_left_out_where_a_side_has_none(monkeypatch):
    import math

    from fvmatch.evidence import attributes
    from fvmatch.evidence.age import AGE_BANDS, AgeReading

    def confusion(right: float) -> dict:  # the true band read with `right`, each other band with the rest
        return {sex: {true: {read: right if read == true else (1 - right) / 2 for read in AGE_BANDS}
                      for true in AGE_BANDS} for sex in attributes.SEXES}

    heads = {**fake_heads(), "face-age": {"confusion": confusion(0.7), "estimator": "face net", "measured_on": "F"},
             "voice-age": {"confusion": confusion(0.5), "trained_on": "V", "measured_on": "V'"},
             "age": {"bounds": [-0.3, 0.2], "bounds_method": "ELUB (test age)"}}
    monkeypatch.setattr(attributes, "sex_heads", lambda: heads)
    old, young = (AgeReading(band, (0.1, 0.1, 0.8) if band == "50 and over" else (0.8, 0.1, 0.1), "x")
                  for band in ("50 and over", "under 30"))
    face = attributes.SexReading("face", "male", 0.1, "dlib-face", "d" * 64, age=old)
    voice = attributes.SexReading("voice", "male", 0.1, "ge2e-voice", "g" * 64, age=young)
    sex_only = attributes.log10_lr_of("male", "male")
    # what the bands add: sum_b 1/3 P(face band | b) P(voice band | b) over the sides' band marginals (1/3 each)
    same_band = math.log10((0.7 * 0.5 + 2 * 0.15 * 0.25) / 3 * 9)
    assert attributes.log10_lr(face, replace_age(voice, old)) == pytest.approx(sex_only + min(same_band, 0.2), abs=1e-6)
    apart = math.log10((0.7 * 0.25 + 0.15 * 0.5 + 0.15 * 0.25) / 3 * 9)
    assert apart < 0 and attributes.log10_lr(face, voice) == pytest.approx(sex_only + max(apart, -0.3), abs=1e-6)
    found = attributes.evidence(face, voice)
    assert found["attributes"] == ["sex", "age"] and "age part to [-0.30, +0.20] by ELUB (test age)" in found["rests_on"]
    unread = attributes.SexReading("face", "male", 0.1, "dlib-face", "d" * 64)  # enrolled before age readings
    assert attributes.log10_lr(unread, voice) == sex_only
    assert "age_left_out" in attributes.evidence(unread, voice) and "face's age was not read" in \
        attributes.evidence(unread, voice)["age_left_out"]


def replace_age(reading, age):
    from dataclasses import replace

    return replace(reading, age=age)
