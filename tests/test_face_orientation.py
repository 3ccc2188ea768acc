"""Faces stored on their side or upside down are turned upright before they are embedded, and say so (`turned`)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvmatch.media.image import FaceDetector, load_image
from fvmatch.media.orientation import DETECTOR_FILE, TURNS, turn_scores, upright_turn
from mediagen import REALMEDIA, run_cli_here

GRACE_BOX = (174, 120, 356, 340)  # the face of grace_hopper.jpg as it stands


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def turned_photos(tmp_path_factory, grace_hopper) -> dict[int, Path]:
    """grace_hopper.jpg as lossless PNGs turned by 0, 90, 180 and 270 degrees counter-clockwise."""
    root = tmp_path_factory.mktemp("turned")
    upright = Image.open(grace_hopper).convert("RGB")
    paths = {0: root / "turned-0.png"}
    upright.save(paths[0])
    for degrees, method in TURNS.items():
        paths[degrees] = root / f"turned-{degrees}.png"
        upright.transpose(method).save(paths[degrees])
    return paths


def test_the_shipped_detector_is_dlibs_own_frontal_detector(tmp_path):
    import dlib

    dlib.get_frontal_face_detector().save(str(tmp_path / "frontal.svm"))
    assert DETECTOR_FILE.read_bytes() == (tmp_path / "frontal.svm").read_bytes()


@pytest.mark.parametrize("degrees", [0, 90, 180, 270])
def test_a_turned_photo_is_found_upright_with_the_turn_said(detector, turned_photos, degrees):
    image, faces = detector.image_and_faces(turned_photos[degrees])
    assert image.shape == (600, 512, 3)  # stood upright again
    back = (360 - degrees) % 360
    assert faces[0].figures.get("turned") == (back or None)
    assert ("turned" in faces[0].quality()) == (degrees != 0)
    assert np.abs(np.array(faces[0].box) - GRACE_BOX).max() < 12
    if degrees:
        # the same pixels as the upright photo: the same face to the pixel
        _, upright = detector.image_and_faces(turned_photos[0])
        assert np.array_equal(faces[0].pixels, upright[0].pixels)


def test_mtcnn_alone_finds_the_upside_down_face_and_the_detector_score_tells(detector, turned_photos):
    upside_down = load_image(turned_photos[180])
    crops = detector.detect(upside_down)
    assert crops and crops[0].probability > 0.99  # what misled: a confident face, upside down
    scores = turn_scores(upside_down, crops[0].box)
    assert scores[180] > 0 > scores[0] and upright_turn(upside_down, crops[0].box) == 180


def test_a_wrong_exif_orientation_is_undone(tmp_path, detector, grace_hopper):
    """An upright photo whose EXIF says 8 (turn 90 degrees to show it): fvmatch follows the tag, finds the face on
    its side, and turns it back."""
    exif = Image.Exif()
    exif[0x0112] = 8
    path = tmp_path / "tagged.jpg"
    Image.open(grace_hopper).save(path, exif=exif, quality=95)
    assert load_image(path).size == (600, 512)  # the tag followed: the face now lies on its side
    image, faces = detector.image_and_faces(path)
    assert image.shape == (600, 512, 3) and faces[0].figures["turned"] == 270
    assert np.abs(np.array(faces[0].box) - GRACE_BOX).max() < 12


def test_embed_says_turned_on_screen_and_in_json(turned_photos):
    shown = run_cli_here("embed", "--face", turned_photos[180])
    assert shown.returncode == 0, shown.stderr
    assert "turned 180" in shown.stdout
    as_json = run_cli_here("embed", "--face", turned_photos[90], "--json")
    assert json.loads(as_json.stdout)["quality"]["turned"] == 270
    upright = run_cli_here("embed", "--face", turned_photos[0], "--json")
    assert "turned" not in json.loads(upright.stdout)["quality"]


def test_an_upside_down_query_scores_as_its_upright_photo(tmp_path, turned_photos):
    from fvmatch.synth.faces import render_face
    from fvmatch.synth.identity import uniform_face_traits

    gallery = tmp_path / "gallery"
    other = tmp_path / "other.png"
    render_face(uniform_face_traits(np.random.default_rng(5)), np.random.default_rng(5)).save(other)
    for label, photo in (("grace", turned_photos[0]), ("drawn", other)):
        enrolled = run_cli_here("enroll", "-g", gallery, "-i", label, "--face", photo)
        assert enrolled.returncode == 0, enrolled.stderr
    answers = {}
    for degrees in (0, 180):
        result = run_cli_here("identify", "-g", gallery, "--face", turned_photos[degrees], "--json")
        answers[degrees] = json.loads(result.stdout)
    first = [(c["identity"], c["score"]) for c in answers[0]["candidates"]]
    assert [(c["identity"], c["score"]) for c in answers[180]["candidates"]] == first
    assert first[0][0] == "grace" and first[0][1] > 0.99  # the very photo enrolled
    assert answers[180]["query"]["quality"]["turned"] == 180


@pytest.mark.parametrize("person", ["fr_barack_obama", "fr_joe_biden", "fr_kit_harington"])
def test_real_photos_are_turned_upright_from_every_side(tmp_path, detector, person):
    photos = sorted((REALMEDIA / "faces" / person).glob("*.jpg"))
    if not photos:
        pytest.skip(f"../shared/realmedia is absent: no photos of {person} (real photos are not part of the repository)")
    upright = load_image(photos[0])
    upright.thumbnail((480, 480))  # (the check is the same at any size: seconds, not tens)
    upright.save(tmp_path / "upright.png")
    _, faces = detector.image_and_faces(tmp_path / "upright.png")
    assert "turned" not in faces[0].figures
    for degrees, method in TURNS.items():
        path = tmp_path / f"{person}-{degrees}.png"
        upright.transpose(method).save(path)
        try:
            _, found = detector.image_and_faces(path)
        except Exception as error:  # MTCNN may miss a face on its side: refused, not misread
            assert type(error).__name__ == "NoFaceFound" and degrees in (90, 270)
            continue
        assert found[0].figures["turned"] == (360 - degrees) % 360
        assert np.abs(np.array(found[0].box) - faces[0].box).max() < 3


def test_enroll_identify_and_verify_say_on_screen_that_a_face_was_turned(tmp_path, turned_photos):
    """The figure is in --json and the stored quality; the commands an analyst reads say it too, naming the file."""
    upside_down = turned_photos[180]
    line = (f"{upside_down}: the face stood 180 degrees off upright: it was turned upright before it was read "
            "(quality figure 'turned')")
    enrolled = run_cli_here("enroll", "-g", tmp_path / "g", "-i", "Grace", "--face", upside_down)
    assert enrolled.returncode == 0 and f"fvmatch: {line}" in enrolled.stderr.splitlines()
    asked = run_cli_here("identify", "-g", tmp_path / "g", "--face", upside_down)
    assert f"note: {line}" in asked.stdout.splitlines()
    verified = run_cli_here("verify", "--face", upside_down, "--face", turned_photos[0])
    assert f"note: {line}" in verified.stdout.splitlines()
    assert not any(str(turned_photos[0]) in note for note in verified.stdout.splitlines() if note.startswith("note:"))


def test_each_odd_input_figure_has_its_line():
    from fvmatch.quality.notes import input_notes

    assert input_notes({"speech_seconds": 3.0, "snr_db": 20.0}) == []
    assert input_notes({"turned": 90}) == ["the face stood 90 degrees off upright: it was turned upright before it "
                                           "was read (quality figure 'turned')"]
    assert input_notes({"channels_read": "channel 1 alone: the channels cancel"}) == [
        "read channel 1 alone: the channels cancel"]
    assert input_notes({"audio_track": 2, "audio_tracks": [{}, {}]}) == [
        "audio track 2 of 2 read (--audio-track chooses another)"]
    assert input_notes({"audio_track": 1, "audio_tracks": [{}]}) == []
    assert input_notes({"damage": "audio ends at 5.0 s of the 10.0 s"}) == ["audio ends at 5.0 s of the 10.0 s"]
