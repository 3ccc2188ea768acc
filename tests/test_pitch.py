"""F0 read from the quality meter's speech chunks (fvmatch.quality.pitch): tones of known pitch, telephone copies
without their fundamental, noise, and real speakers."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from fvmatch.quality.pitch import MIN_VOICED_CHUNKS, chunk_f0, median_f0

RATE, CHUNK = 16000, 512


def voiced(f0_hz: float, seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A vowel-like sound: harmonics of f0_hz falling 6 dB an octave (a glottal source), its pitch wavering 1% at
    5 Hz as a voice does, through two formant resonances, with a little noise."""
    rng = np.random.default_rng(seed)
    time = np.arange(int(RATE * seconds)) / RATE
    phase = 2 * np.pi * np.cumsum(f0_hz * (1 + 0.01 * np.sin(2 * np.pi * 5 * time))) / RATE
    source = sum(np.sin(k * phase) / k for k in range(1, int(4000 / f0_hz)))
    samples = source + sum(sosfilt(butter(2, band, "bandpass", fs=RATE, output="sos"), source)
                           for band in ((500, 900), (1200, 1800)))
    return samples / np.abs(samples).max() + 0.01 * rng.standard_normal(len(samples))


def chunks_of(samples: np.ndarray) -> np.ndarray:
    whole = len(samples) // CHUNK
    return samples[: whole * CHUNK].reshape(whole, CHUNK)


@pytest.mark.parametrize("f0_hz", [75.0, 110.0, 160.0, 210.0, 300.0])
def test_the_pitch_of_a_voiced_sound_is_read_within_two_percent(f0_hz):
    reading, count = median_f0([chunk_f0(chunks_of(voiced(f0_hz)))])
    assert count >= 28 and reading == pytest.approx(f0_hz, rel=0.02)


def test_a_telephone_copy_without_its_fundamental_reads_the_same_pitch():
    band = butter(4, (300, 3400), "bandpass", fs=RATE, output="sos")
    for f0_hz in (100.0, 140.0):
        reading, _ = median_f0([chunk_f0(chunks_of(sosfilt(band, voiced(f0_hz))))])
        assert reading == pytest.approx(f0_hz, rel=0.03)


def test_noise_and_too_little_voicing_state_no_pitch():
    noise = np.random.default_rng(1).standard_normal(RATE)
    assert np.isnan(chunk_f0(chunks_of(noise))).mean() > 0.9
    assert median_f0([chunk_f0(chunks_of(noise))])[0] is None
    short = chunks_of(voiced(120.0, 0.2))  # 6 chunks: under MIN_VOICED_CHUNKS
    assert len(short) < MIN_VOICED_CHUNKS and median_f0([chunk_f0(short)])[0] is None
    assert chunk_f0(np.zeros((0, CHUNK))).shape == (0,)


def test_real_speakers_read_in_their_sex_s_range():
    from mediagen import REALMEDIA

    from fvmatch.media.audio import voice_quality_of_clip
    import soundfile

    speakers = {"librispeech_2609": (100, 140), "librispeech_533": (200, 300)}  # SPEAKERS.TXT: M, F
    for folder, (low, high) in speakers.items():
        files = sorted((REALMEDIA / "voices" / folder).glob("*.flac"))[:2]
        if not files:
            pytest.skip(f"{REALMEDIA} is absent: the real recordings of ../shared/realmedia are needed")
        for path in files:
            samples, rate = soundfile.read(path, dtype="float32")
            assert low < voice_quality_of_clip(samples, rate)["f0_hz"] < high, path
