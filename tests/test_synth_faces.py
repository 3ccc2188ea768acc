"""Synthetic faces: deterministic, found by MTCNN, and showing the traits shared with the voice."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fvmatch.synth.faces import FaceTraits, render_face
from fvmatch.synth.identity import uniform_face_traits

# Age 30: no grey hair and no wrinkles, so hair colour is the pitch trait alone.
TRAITS = FaceTraits(female=False, age_years=30.0, size=0.5, tone=0.5, pitch=0.5, eye_hue=0.5, hair_style=0.5)
LUMA = np.array((0.299, 0.587, 0.114))
SEEDS = (0, 1, 2)
LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)


def render(traits: FaceTraits, seed: int) -> np.ndarray:
    return np.asarray(render_face(traits, np.random.default_rng(seed)), dtype=np.float64)


def changed_pixels(seed: int, trait: str, traits: FaceTraits = TRAITS) -> np.ndarray:
    """Mask of the pixels one trait moves: the seed rendered at both ends of its range.

    Equal seeds draw the same pose, lighting and jitter, so only pixels whose
    colour comes from that trait differ.
    """
    low = render(dataclasses.replace(traits, **{trait: 0.0}), seed)
    high = render(dataclasses.replace(traits, **{trait: 1.0}), seed)
    return np.any(low != high, axis=2)



@pytest.fixture(scope="module")
def mtcnn():
    pytest.importorskip("facenet_pytorch", reason="facenet-pytorch's MTCNN is the detector measured (fvmatch[train])")
    from facenet_pytorch import MTCNN

    return MTCNN(image_size=160, margin=0, keep_all=False, device="cpu")


def test_same_traits_and_seed_give_identical_image():
    first = render_face(TRAITS, np.random.default_rng(7))
    second = render_face(TRAITS, np.random.default_rng(7))
    assert first.mode == "RGB" and first.size == (256, 256)
    assert np.array_equal(np.asarray(first), np.asarray(second))


def test_different_seed_gives_different_image():
    assert not np.array_equal(render(TRAITS, 7), render(TRAITS, 8))


def test_image_size_follows_the_size_argument():
    assert render_face(TRAITS, np.random.default_rng(0), size=160).size == (160, 160)


def test_rng_use_does_not_depend_on_traits():
    other = FaceTraits(female=True, age_years=75.0, size=0.9, tone=0.1, pitch=0.9, eye_hue=0.1, hair_style=0.9)
    rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
    render_face(TRAITS, rng_a)
    render_face(other, rng_b)
    assert rng_a.random() == rng_b.random()


def test_mtcnn_finds_at_least_38_of_40_random_faces(mtcnn):
    rng = np.random.default_rng(2024)
    images = [render_face(uniform_face_traits(rng), rng) for _ in range(40)]
    # detect() answers None for a face-less image of a same-size batch.
    boxes, _ = mtcnn.detect(images)
    assert sum(b is not None for b in boxes) >= 38


@pytest.mark.parametrize("seed", SEEDS)
def test_skin_lightness_increases_with_tone(seed):
    skin = changed_pixels(seed, "tone")
    means = [(render(dataclasses.replace(TRAITS, tone=t), seed)[skin] @ LUMA).mean() for t in LEVELS]
    assert np.all(np.diff(means) > 5.0), means


@pytest.mark.parametrize("seed", SEEDS)
def test_hair_lightness_increases_with_pitch(seed):
    hair = changed_pixels(seed, "pitch")
    means = [(render(dataclasses.replace(TRAITS, pitch=p), seed)[hair] @ LUMA).mean() for p in LEVELS]
    assert np.all(np.diff(means) > 5.0), means


@pytest.mark.parametrize("seed", SEEDS)
def test_drawn_face_width_increases_with_size(seed):
    # The widest row of skin: cheeks and ears, which move out with the size trait.
    widths = [changed_pixels(seed, "tone", dataclasses.replace(TRAITS, size=s)).sum(axis=1).max() for s in LEVELS]
    assert np.all(np.diff(widths) > 0), widths


def test_detected_box_is_wider_for_wide_faces(mtcnn):
    def mean_aspect(size_trait: float) -> float:
        traits = dataclasses.replace(TRAITS, size=size_trait)
        boxes, _ = mtcnn.detect([render_face(traits, np.random.default_rng(seed)) for seed in range(6)])
        return float(np.mean([(b[0, 2] - b[0, 0]) / (b[0, 3] - b[0, 1]) for b in boxes]))

    assert mean_aspect(1.0) > mean_aspect(0.0) + 0.05
