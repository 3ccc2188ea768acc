"""fvmatch.synth.voices: reproducible clips that silero-vad calls speech and that carry the shared traits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
pytest.importorskip("silero_vad", reason="the reference is silero-vad (pip install 'fvmatch[train]')")
import torch
from scipy.signal import welch
from silero_vad import get_speech_timestamps, load_silero_vad

from fvmatch.synth.identity import uniform_voice_traits
from fvmatch.synth.voices import SAMPLE_RATE, VoiceTraits, render_voice

MALE = VoiceTraits(female=False, age_years=40.0, size=0.5, tone=0.5, pitch=0.5, rate=0.5, breathiness=0.5)
FEMALE = dataclasses.replace(MALE, female=True)


@pytest.fixture(scope="module")
def vad() -> torch.nn.Module:
    torch.set_num_threads(1)
    return load_silero_vad()


def render(traits: VoiceTraits, seed: int = 0, seconds: float = 4.0) -> np.ndarray:
    return render_voice(traits, np.random.default_rng(seed), seconds)


def estimated_f0_hz(clip: np.ndarray) -> float:
    """Median f0 over the loudest frames, from the autocorrelation peak between 60 and 400 Hz."""
    frame, hop = 640, 160
    frames = np.lib.stride_tricks.sliding_window_view(clip.astype(np.float64), frame)[::hop]
    energy = np.mean(frames**2, axis=1)
    voiced = frames[energy > 0.25 * np.percentile(energy, 90)]
    voiced = voiced - voiced.mean(axis=1, keepdims=True)
    autocorrelation = np.fft.irfft(np.abs(np.fft.rfft(voiced, 2 * frame)) ** 2)[:, :frame]
    shortest, longest = SAMPLE_RATE // 400, SAMPLE_RATE // 60
    lags = shortest + np.argmax(autocorrelation[:, shortest:longest], axis=1)
    return float(np.median(SAMPLE_RATE / lags))


def spectral_centroid_hz(clip: np.ndarray, low_hz: float = 0.0, high_hz: float = SAMPLE_RATE / 2) -> float:
    """Centroid of the long-term power spectrum between low_hz and high_hz."""
    freqs, power = welch(clip, SAMPLE_RATE, nperseg=512)
    band = (freqs >= low_hz) & (freqs <= high_hz)
    return float(np.sum(freqs[band] * power[band]) / np.sum(power[band]))


def test_same_traits_and_seed_give_identical_clip() -> None:
    assert np.array_equal(render(FEMALE, seed=3), render(FEMALE, seed=3))


def test_different_seeds_give_different_clips() -> None:
    first, second = render(MALE, seed=1), render(MALE, seed=2)
    assert not np.allclose(first, second)


@pytest.mark.parametrize("seconds", [4.0, 2.5])
def test_clip_is_float32_of_requested_length_and_peak_normalised(seconds: float) -> None:
    clip = render(MALE, seconds=seconds)
    assert clip.dtype == np.float32
    assert clip.shape == (int(seconds * SAMPLE_RATE),)
    assert 0.5 <= np.max(np.abs(clip)) <= 0.9


def test_silero_vad_finds_at_least_1_5_s_of_speech_in_random_clips(vad: torch.nn.Module) -> None:
    rng = np.random.default_rng(20240601)
    for _ in range(8):
        traits = uniform_voice_traits(rng)
        clip = render_voice(traits, rng)
        segments = get_speech_timestamps(torch.from_numpy(clip), vad)
        speech_seconds = sum(segment["end"] - segment["start"] for segment in segments) / SAMPLE_RATE
        assert speech_seconds >= 1.5, traits


# The trait tests below render every value with the same seed, so syllables,
# intonation and noise are shared and only the trait under test differs.


@pytest.mark.parametrize(("base", "low_hz", "high_hz"), [(MALE, 90.0, 150.0), (FEMALE, 160.0, 250.0)])
def test_estimated_f0_rises_with_pitch_within_the_gender_range(
    base: VoiceTraits, low_hz: float, high_hz: float
) -> None:
    pitches = [0.1, 0.5, 0.9]
    f0s = [estimated_f0_hz(render(dataclasses.replace(base, pitch=pitch))) for pitch in pitches]
    assert f0s == sorted(f0s) and f0s[0] < f0s[-1]
    for pitch, f0 in zip(pitches, f0s):
        assert f0 == pytest.approx(low_hz + pitch * (high_hz - low_hz), rel=0.12)


@pytest.mark.parametrize("base", [MALE, FEMALE])
def test_spectral_centroid_rises_with_tone(base: VoiceTraits) -> None:
    centroids = [spectral_centroid_hz(render(dataclasses.replace(base, tone=tone))) for tone in [0.1, 0.5, 0.9]]
    assert centroids[0] < centroids[1] < centroids[2]


@pytest.mark.parametrize("base", [MALE, FEMALE])
def test_formant_region_of_long_term_spectrum_falls_with_size(base: VoiceTraits) -> None:
    # 250-4000 Hz holds F1-F3 and little of f0, so this centroid follows the
    # formant scale, which drops from x1.12 at size 0.1 to x0.88 at size 0.9.
    centroids = [
        spectral_centroid_hz(render(dataclasses.replace(base, size=size)), 250.0, 4000.0) for size in [0.1, 0.5, 0.9]
    ]
    assert centroids[0] > centroids[1] > centroids[2]
    assert centroids[0] / centroids[2] > 1.1


def test_female_formants_sit_higher_than_male_at_equal_size() -> None:
    assert spectral_centroid_hz(render(FEMALE), 250.0, 4000.0) > spectral_centroid_hz(render(MALE), 250.0, 4000.0)


def test_one_identity_varies_less_across_clips_than_across_the_pitch_range() -> None:
    # Per-clip jitter (VOICE_JITTER) and intonation must leave a person recognisable.
    clip_f0s = [estimated_f0_hz(render(MALE, seed=seed)) for seed in range(6)]
    range_f0s = [estimated_f0_hz(render(dataclasses.replace(MALE, pitch=pitch))) for pitch in [0.1, 0.9]]
    assert max(clip_f0s) - min(clip_f0s) < 0.5 * (range_f0s[1] - range_f0s[0])
