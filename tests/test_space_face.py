"""The dlib-face space on real photos: aligned chips, unit vectors, its model id, and people told apart."""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from fvmatch.media.image import FaceDetector
from fvmatch.spaces.dlib_face import DlibFaceSpace, hog_style_box

REALMEDIA = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
# people with several frontal web photos each; the first two (by name) of each are the query and the reference
RANKING_PEOPLE = ("vox1_Freida_Pinto", "vox1_Garrett_Hedlund", "vox1_Golshifteh_Farahani", "vox1_Harry_Treadaway",
                  "vox1_Jasika_Nicole")


@pytest.fixture(scope="module")
def space() -> DlibFaceSpace:
    return DlibFaceSpace()


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def chip_of(space: DlibFaceSpace, detector: FaceDetector, path: Path) -> np.ndarray:
    image, faces = detector.image_and_faces(path)
    return space.prepare(image, faces[0])


@pytest.fixture(scope="module")
def hopper_chip(space, detector, grace_hopper) -> np.ndarray:
    return chip_of(space, detector, grace_hopper)


def test_chip_is_an_aligned_150x150_rgb_uint8_image(hopper_chip):
    assert hopper_chip.shape == (150, 150, 3)
    assert hopper_chip.dtype == np.uint8
    assert hopper_chip.std() > 20  # a face, not a blank or clipped patch


def test_vectors_are_128_d_float32_unit_length(space, hopper_chip):
    vectors = space.embed(np.stack([hopper_chip, hopper_chip[:, ::-1]]))
    assert vectors.shape == (2, 128) and space.dim == 128
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_empty_batch_gives_no_vectors(space):
    assert space.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_same_photo_embedded_twice_gives_the_same_vector(space, detector, grace_hopper, hopper_chip):
    again = chip_of(space, detector, grace_hopper)
    first, second = space.embed(np.stack([hopper_chip, again]))
    assert float(first @ second) > 0.999


def test_a_chip_gets_the_same_vector_alone_and_in_a_batch(space, hopper_chip):
    alone = space.embed(hopper_chip[None])[0]
    batch = space.embed(np.stack([hopper_chip[:, ::-1], hopper_chip, hopper_chip[::-1]]))
    assert float(alone @ batch[1]) > 0.999


def test_embed_rejects_chips_of_another_size(space):
    with pytest.raises(ValueError, match="150, 150, 3"):
        space.embed(np.zeros((1, 160, 160, 3), np.uint8))


def test_model_id_is_sha256_of_the_5_point_predictor_then_the_resnet(space):
    spec = importlib.util.find_spec("face_recognition_models")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    digest = hashlib.sha256()
    for name in ("shape_predictor_5_face_landmarks.dat", "dlib_face_recognition_resnet_model_v1.dat"):
        digest.update((models / name).read_bytes())
    assert space.model_id == digest.hexdigest()
    assert space.name == "dlib-face"


def test_space_never_loads_the_68_point_predictor(monkeypatch):
    import dlib

    loaded = []
    real_shape_predictor = dlib.shape_predictor
    monkeypatch.setattr(dlib, "shape_predictor", lambda path: loaded.append(path) or real_shape_predictor(path))
    DlibFaceSpace()
    assert [Path(path).name for path in loaded] == ["shape_predictor_5_face_landmarks.dat"]


def test_hog_style_box_is_square_and_sits_lower_than_mtcnn_box():
    left, top, right, bottom = hog_style_box((100.0, 100.0, 175.0, 200.0))  # MTCNN's boxes are taller than wide
    assert right - left == bottom - top
    assert (top + bottom) / 2 > 150.0  # HOG's box takes in the chin and stops at the eyebrows


def test_other_photo_of_same_person_ranks_first(space, detector):
    faces = REALMEDIA / "faces"
    if not faces.is_dir():
        pytest.skip(f"../shared/realmedia is absent: real photos of several people are needed ({faces})")
    photos = [sorted((faces / person).iterdir())[:2] for person in RANKING_PEOPLE]
    queries = space.embed(np.stack([chip_of(space, detector, query) for query, _ in photos]))
    references = space.embed(np.stack([chip_of(space, detector, reference) for _, reference in photos]))
    similarity = queries @ references.T
    assert list(similarity.argmax(axis=1)) == list(range(len(RANKING_PEOPLE)))
    # and by a margin: each query is closer to its own reference than to anyone else's
    others = np.where(np.eye(len(RANKING_PEOPLE), dtype=bool), -np.inf, similarity).max(axis=1)
    assert np.all(np.diag(similarity) - others > 0.02)
