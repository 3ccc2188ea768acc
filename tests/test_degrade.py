"""fvmatch.media.degrade makes the degraded copies that casework brings: each one does what it says, exactly and
repeatably, on real speech and a real photo."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fvmatch.media import degrade
from mediagen import librispeech_clip

CLIP = "3080-5032-0000"  # a LibriSpeech clip of 3.6 s


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int]:
    """Real read speech (LibriSpeech, 16 kHz)."""
    return librispeech_clip(CLIP)


@pytest.fixture(scope="module")
def photo(grace_hopper) -> Image.Image:
    return Image.open(grace_hopper).convert("RGB")


def band_power_db(samples: np.ndarray, rate: int, low_hz: float, high_hz: float) -> float:
    """The power (dB) of `samples` between low_hz and high_hz: the part of their mean square in that band."""
    spectrum = np.abs(np.fft.rfft(samples.astype(np.float64)) / len(samples)) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / rate)
    return 10 * np.log10(spectrum[(frequencies >= low_hz) & (frequencies < high_hz)].sum() + 1e-30)


def test_telephone_band_is_8khz_and_keeps_only_300_to_3400_hz(speech):
    samples, rate = speech
    phone, phone_rate = degrade.telephone_band(samples, rate)
    assert phone_rate == 8000 and phone.dtype == np.float32
    assert len(phone) == len(samples) // 2
    voice_band = band_power_db(phone, phone_rate, 500, 3000)
    assert band_power_db(phone, phone_rate, 0, 150) < voice_band - 40
    assert band_power_db(phone, phone_rate, 3800, 4000) < voice_band - 40
    # and the voice band itself is kept: within 1 dB of the original's
    assert abs(voice_band - band_power_db(samples, rate, 500, 3000)) < 1.0


def test_band_limit_keeps_the_rate_and_removes_what_is_above(speech):
    samples, rate = speech
    narrow = degrade.band_limit(samples, rate, high_hz=5000)
    assert len(narrow) == len(samples)
    assert band_power_db(narrow, rate, 6000, 8000) < band_power_db(samples, rate, 6000, 8000) - 40
    assert abs(band_power_db(narrow, rate, 500, 4000) - band_power_db(samples, rate, 500, 4000)) < 0.5


@pytest.mark.parametrize("kind", ["white", "pink"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_add_noise_sets_the_snr_exactly_and_repeatably(speech, kind, snr_db):
    samples, _ = speech
    noisy = degrade.add_noise(samples, snr_db, seed=7, kind=kind)
    noise = noisy.astype(np.float64) - samples
    measured = 10 * np.log10(np.sum(samples.astype(np.float64) ** 2) / np.sum(noise**2))
    assert measured == pytest.approx(snr_db, abs=0.01)
    assert np.array_equal(noisy, degrade.add_noise(samples, snr_db, seed=7, kind=kind))
    assert not np.array_equal(noisy, degrade.add_noise(samples, snr_db, seed=8, kind=kind))


def test_pink_noise_falls_with_frequency_and_white_does_not(speech):
    samples, rate = speech
    pink = degrade.add_noise(samples, 0.0, seed=1, kind="pink").astype(np.float64) - samples
    white = degrade.add_noise(samples, 0.0, seed=1, kind="white").astype(np.float64) - samples
    # pink noise holds the same power in every octave; white noise's power grows with the band's width
    pink_difference = band_power_db(pink, rate, 4000, 8000) - band_power_db(pink, rate, 500, 1000)
    white_difference = band_power_db(white, rate, 4000, 8000) - band_power_db(white, rate, 500, 1000)
    assert abs(pink_difference) < 0.5
    assert white_difference == pytest.approx(10 * np.log10(8), abs=0.5)


@pytest.mark.parametrize("codec, bitrate, codec_rate", [("libopus", 8000, 48000), ("aac", 16000, 16000),
                                                        ("libmp3lame", 16000, 16000), ("amr_nb", 12200, 8000),
                                                        ("pcm_mulaw", None, 8000)])
def test_codec_round_trip_returns_aligned_audio_of_the_same_length_and_rate(speech, codec, bitrate, codec_rate):
    pytest.importorskip("av", reason="PyAV (package av) is not installed: codecs need FFmpeg through it")
    samples, rate = speech
    data, _ = degrade.encode_with_codec(samples, rate, codec, bitrate)
    decoded, decoded_rate = degrade.decode_audio(data)
    assert decoded_rate == codec_rate  # Opus always decodes at 48 kHz; AMR-NB and G.711 are 8 kHz codecs
    assert abs(len(decoded) / decoded_rate - len(samples) / rate) < 0.15  # plus the codec's priming samples
    copy = degrade.codec_round_trip(samples, rate, codec, bitrate)
    assert copy.dtype == np.float32 and len(copy) == len(samples)
    # lined up sample for sample with the original (the codec's delay removed): strongly correlated
    assert np.corrcoef(copy, samples)[0, 1] > 0.6
    assert data.__len__() < samples.nbytes / 4  # compressed (even G.711 halves 16-bit samples at 8 kHz)


def test_encode_with_codec_refuses_an_unknown_codec(speech):
    samples, rate = speech
    with pytest.raises(ValueError, match="not one of"):
        degrade.encode_with_codec(samples, rate, "speex", 8000)


def test_shrink_face_makes_the_face_box_the_asked_width(photo):
    box = (150.0, 100.0, 350.0, 340.0)
    small = degrade.shrink_face(photo, box, 40)
    assert small.width == round(photo.width * 40 / 200) and small.height == round(photo.height * 40 / 200)


def test_jpeg_keeps_its_tables_and_loses_more_at_lower_quality(photo):
    errors = []
    for quality in (90, 50, 20):
        compressed = degrade.jpeg(photo, quality)
        assert compressed.format == "JPEG" and compressed.size == photo.size
        assert len(compressed.quantization) >= 1
        errors.append(np.mean(np.abs(np.asarray(compressed.convert("RGB"), np.float64) - np.asarray(photo))))
    assert errors[0] < errors[1] < errors[2]


def test_blur_removes_detail_as_sigma_grows(photo):
    def detail(image: Image.Image) -> float:
        grey = np.asarray(image.convert("L"), np.float64)
        return float(np.abs(np.diff(grey, axis=1)).mean())

    details = [detail(degrade.blur(photo, sigma)) for sigma in (0, 1, 2, 4)]
    assert details == sorted(details, reverse=True) and len(set(details)) == 4
    assert np.array_equal(np.asarray(degrade.blur(photo, 0)), np.asarray(photo))
