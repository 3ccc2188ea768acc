"""A joint space trained on real pairs fused with the sex evidence (fvmatch.evidence.sex_fusion): fitted by `calibrate` on
the same face-voice trials, stored under its own key naming both models, and used by `verify` and `identify`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from fvmatch.evidence.attributes import sex_heads
from fvmatch.calibration.fitting import calibrate
from fvmatch.evaluation import EmbeddedCorpus, ItemSet
from fvmatch.evidence.sex_fusion import JOINT_SEX, add_sex_fusion, fusion_of

PEOPLE, ITEMS = 40, 4


def people_of_known_sex(joint_noise: float, seed: int = 0) -> dict[str, EmbeddedCorpus]:
    """Handmade corpora of PEOPLE people (half women): joint vectors a random centre each plus noise; dlib-face and
    ge2e-voice vectors, of the models the sex heads read, pushed along each head's weights by the person's sex, so
    the heads read it right; the joint space knows nothing of sex."""
    rng = np.random.default_rng(seed)
    heads = sex_heads()
    female = np.arange(PEOPLE) % 2 == 0
    people = [{"identity": f"id{i:03d}", "gender": "f" if female[i] else "m", "nationality": "", "age": None}
              for i in range(PEOPLE)]
    owners = np.arange(PEOPLE).repeat(ITEMS)

    def unit(vectors: np.ndarray) -> np.ndarray:
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def paths(folder: str) -> list[str]:
        return [f"{folder}/id{i:03d}/v0/{k}" for i in range(PEOPLE) for k in range(ITEMS)]

    def sexed(head: dict) -> np.ndarray:
        weights = np.asarray(head["weights"])
        direction = weights / np.linalg.norm(weights)
        noise = unit(rng.normal(size=(len(owners), len(weights))))
        return unit(noise + np.where(female[owners], 1.0, -1.0)[:, None] * 3.0 * direction)

    centres = rng.normal(size=(PEOPLE, 16))
    joint = {m: unit(centres[owners] + joint_noise * rng.normal(size=(len(owners), 16))) for m in ("face", "voice")}
    empty = ItemSet([], np.zeros(0, np.int64), np.zeros((0, 8)))
    data = Path("/data/people")
    return {
        "joint": EmbeddedCorpus(data, "val", "a" * 64, people, ItemSet(paths("faces"), owners, joint["face"]),
                                ItemSet(paths("voices"), owners, joint["voice"]), space="joint"),
        "dlib-face": EmbeddedCorpus(data, "val", heads["face-sex"]["space_model_id"], people,
                                    ItemSet(paths("faces"), owners, sexed(heads["face-sex"])), empty, space="dlib-face"),
        "ge2e-voice": EmbeddedCorpus(data, "val", heads["voice-sex"]["space_model_id"], people, empty,
                                     ItemSet(paths("voices"), owners, sexed(heads["voice-sex"])), space="ge2e-voice")}


def test_calibrate_fits_the_fusion_on_the_same_trials_and_it_beats_the_joint_space_alone():
    corpora = people_of_known_sex(joint_noise=1.5)
    calibration = add_sex_fusion(calibrate(corpora, seed=1), corpora, seed=1)
    fused, joint = calibration[f"{JOINT_SEX} face-voice"], calibration["face-voice"]
    assert fused["space"] == JOINT_SEX and fused["space_model_id"] == "a" * 64 and fused["sex_weight"] > 0
    assert fused["trials"] == joint["trials"]  # the same pairs, each with its joint cosine and its sex LR
    assert "not a product of two LRs" in fused["fusion"] and fused["data"] == "/data/people"
    assert calibration["spaces"][JOINT_SEX] == "a" * 64
    # half the different-person pairs are of different sex, which the joint space cannot see: fused, they fall
    assert fused["cllr"] < joint["cllr"] - 0.05 and fused["eer"]["value"] < joint["eer"]["value"]
    assert fusion_of(calibration, "a" * 64) == fused and fusion_of(calibration, "b" * 64) is None
    assert json.loads(json.dumps(calibration)) == calibration


def test_without_the_spaces_the_heads_read_the_fusion_is_skipped_and_says_why():
    corpora = people_of_known_sex(joint_noise=1.5)
    calibration = add_sex_fusion(calibrate({"joint": corpora["joint"]}, seed=1), {"joint": corpora["joint"]}, seed=1)
    assert f"{JOINT_SEX} face-voice" not in calibration
    assert calibration[f"{JOINT_SEX} skipped"].startswith("needs the items embedded in dlib-face and ge2e-voice")


@pytest.fixture(scope="module")
def fused_checkpoint(tmp_path_factory) -> Path:
    """The shipped joint checkpoint with a joint+sex fusion calibrated for it (on handmade trials: the machinery,
    not its accuracy)."""
    from fvmatch.calibration.fitting import write_calibrated_checkpoint
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card

    model_id = read_card(DEFAULT_CHECKPOINT)["model_id"]
    corpora = people_of_known_sex(joint_noise=1.5)
    corpora["joint"].model_id = model_id
    out = tmp_path_factory.mktemp("fused") / "fused.safetensors"
    write_calibrated_checkpoint(DEFAULT_CHECKPOINT, out, add_sex_fusion(calibrate(corpora, seed=1), corpora, seed=1))
    return out


def test_verify_and_identify_score_a_face_and_a_voice_by_the_fused_score(fused_checkpoint, tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    from mediagen import REALMEDIA, run_cli_here

    face = REALMEDIA / "faces" / "fr_barack_obama" / "obama.jpg"
    voice = REALMEDIA / "voices" / "librispeech_2033" / "2033-164914-0000.flac"
    if not face.is_file() or not voice.is_file():
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings of ../shared/realmedia are needed")
    found = json.loads(run_cli_here("verify", "--face", face, "--voice", voice, "--space", "joint", "--model",
                                    fused_checkpoint, "--json").stdout)
    scoring = found["scoring"]
    assert scoring["score"] == "joint+sex" and found["space"] == JOINT_SEX
    assert (scoring["readings"]["face"]["sex"], scoring["readings"]["voice"]["sex"]) == ("male", "male")
    assert found["score"] == pytest.approx(scoring["cosine"] + _weight(fused_checkpoint) * scoring["sex_log10_lr"],
                                           abs=1e-4)
    gallery = tmp_path / "gallery"
    assert run_cli_here("enroll", "-g", gallery, "-i", "Obama", "--face", face, "--model", fused_checkpoint
                        ).returncode == 0
    answer = json.loads(run_cli_here("identify", "-g", gallery, "--voice", voice, "--space", "joint", "--json").stdout)
    (group,) = answer["trials"]
    assert group["scoring"]["score"] == "joint+sex" and group["scoring"]["question"]["sex"] == "male"
    # the one enrolled face re-ranked by the same fused score: the joint search's cosine, the same sex evidence
    assert group["scoring"]["sex_log10_lr"] == [pytest.approx(scoring["sex_log10_lr"], abs=1e-4)]
    assert group["candidates"][0]["score"] == pytest.approx(found["score"], abs=1e-3)


def _weight(checkpoint: Path) -> float:
    from fvmatch.models.checkpoint import read_card

    return read_card(checkpoint)["calibration"][f"{JOINT_SEX} face-voice"]["sex_weight"]
