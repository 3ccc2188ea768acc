"""Quality figures read what was done to real media: telephone copies read narrowband, added noise lowers the SNR
estimate step by step, blur lowers sharpness, halving a photo halves the eye distance, the JPEG quality a file was
saved at is read back."""
from __future__ import annotations

import io
import json
import numpy as np
import pytest
from PIL import Image

from fvmatch.media import degrade
from fvmatch.media.audio import voice_quality_of_clip
from fvmatch.quality import VoiceQualityMeter, face_quality, jpeg_quality_estimate
from fvmatch.quality.face import sharpness
from mediagen import REALMEDIA, librispeech_clip

WIDEBAND_CLIP = "3080-5032-0000"  # 3.6 s of read speech
QUIET_BACKGROUND_CLIP = "2033-164914-0000"  # 6.9 s, its own noise about 55 dB under the speech: added noise dominates
REAL_PHOTOS = ["fr_kit_harington/john2.jpeg", "vox1_Freida_Pinto/vgg_00000061.jpg"]


@pytest.fixture(scope="module")
def detector():
    from fvmatch.media.image import FaceDetector

    return FaceDetector()


@pytest.fixture(scope="module")
def hopper(grace_hopper) -> Image.Image:
    return Image.open(grace_hopper).convert("RGB")


def photo(name: str) -> Image.Image:
    from fvmatch.media.image import load_image

    if name == "grace_hopper":
        import matplotlib.cbook

        return load_image(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    path = REALMEDIA / "faces" / name
    if not path.is_file():
        pytest.skip(f"../shared/realmedia is absent: no {path} (real photos are not part of the repository)")
    return load_image(path)


# faces


@pytest.mark.parametrize("quality", range(20, 96))
def test_jpeg_quality_estimate_reads_back_the_quality_pillow_saved_at(hopper, quality):
    assert jpeg_quality_estimate(degrade.jpeg(hopper, quality)) == quality


def test_jpeg_quality_estimate_reads_real_files(grace_hopper):
    assert jpeg_quality_estimate(Image.open(grace_hopper)) == 80
    path = REALMEDIA / "faces" / REAL_PHOTOS[1]
    if not path.is_file():
        pytest.skip(f"../shared/realmedia is absent: no {path}")
    assert jpeg_quality_estimate(Image.open(path)) == 75


def test_jpeg_quality_estimate_is_none_without_a_standard_table(hopper):
    png = io.BytesIO()
    hopper.save(png, format="PNG")
    assert jpeg_quality_estimate(Image.open(png)) is None
    assert jpeg_quality_estimate(hopper) is None  # decoded and converted: the tables are gone
    foreign = io.BytesIO()
    hopper.save(foreign, format="JPEG", qtables=[[40] * 64])  # a flat table: no IJG quality makes it
    assert jpeg_quality_estimate(Image.open(foreign)) is None


def test_face_quality_gives_plain_numbers_from_the_detection(detector, hopper):
    face = detector.detect(hopper)[0]
    quality = face_quality(np.asarray(hopper), face.box, face.landmarks, face.probability, 75)
    assert json.loads(json.dumps(quality)) == quality
    assert set(quality) == {"eye_distance_px", "face_px", "sharpness", "detection_probability", "jpeg_quality"}
    (left_x, left_y), (right_x, right_y) = face.landmarks[:2]
    assert quality["eye_distance_px"] == round(float(np.hypot(right_x - left_x, right_y - left_y)), 1)
    assert quality["face_px"] == round(face.box[2] - face.box[0], 1)
    assert quality["detection_probability"] > 0.99 and quality["jpeg_quality"] == 75


@pytest.mark.parametrize("name", ["grace_hopper", *REAL_PHOTOS])
def test_eye_distance_halves_when_the_image_is_halved(detector, name):
    image = photo(name)
    half = image.resize((image.width // 2, image.height // 2), Image.BOX)
    full_face, half_face = detector.detect(image)[0], detector.detect(half)[0]
    ratio = (face_quality(np.asarray(half), half_face.box, half_face.landmarks, half_face.probability, None)
             ["eye_distance_px"] / face_quality(np.asarray(image), full_face.box, full_face.landmarks,
                                                full_face.probability, None)["eye_distance_px"])
    assert ratio == pytest.approx(0.5, rel=0.1)


@pytest.mark.parametrize("name", ["grace_hopper", *REAL_PHOTOS])
def test_sharpness_falls_as_blur_grows(detector, name):
    image = photo(name)
    x1, y1, x2, y2 = detector.detect(image)[0].box  # the sharp face's box: blur is the only change
    # blur the face and a margin of 4 sigma around it only (a whole photo takes seconds)
    left, top = max(0, int(x1) - 16), max(0, int(y1) - 16)
    around = image.crop((left, top, int(x2) + 16, int(y2) + 16))
    box = (x1 - left, y1 - top, x2 - left, y2 - top)
    readings = [sharpness(np.asarray(degrade.blur(around, sigma)), box) for sigma in (0, 1, 2, 4)]
    assert all(later < earlier for earlier, later in zip(readings, readings[1:])), readings


def test_sharpness_of_a_face_over_64_px_does_not_depend_on_its_size(detector, hopper):
    face = detector.detect(hopper)[0]
    assert face.box[2] - face.box[0] > 2 * 64
    half = hopper.resize((hopper.width // 2, hopper.height // 2), Image.BOX)
    full_reading = sharpness(np.asarray(hopper), face.box)
    half_reading = sharpness(np.asarray(half), [value / 2 for value in face.box])
    assert half_reading == pytest.approx(full_reading, rel=0.15)


@pytest.mark.parametrize("face_px", [28, 48])
def test_a_face_shrunk_to_cctv_size_reads_its_size(detector, hopper, face_px):
    face = detector.detect(hopper)[0]
    shrunk = degrade.shrink_face(hopper, face.box, face_px)
    found = detector.detect(shrunk)[0]
    quality = face_quality(np.asarray(shrunk), found.box, found.landmarks, found.probability, None)
    assert quality["face_px"] == pytest.approx(face_px, rel=0.15)
    assert quality["eye_distance_px"] == pytest.approx(0.475 * face_px, rel=0.2)  # the ratio on 250 real photos


# voices


def test_clean_recording_reads_wideband_and_its_telephone_copy_narrowband():
    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    clean = voice_quality_of_clip(samples, rate, codec="FLAC")
    assert 7000 <= clean["bandwidth_hz"] <= 8000
    phone, phone_rate = degrade.telephone_band(samples, rate)
    telephone = voice_quality_of_clip(phone, phone_rate)
    assert 3400 <= telephone["bandwidth_hz"] <= 4000
    assert telephone["sample_rate"] == 8000
    # the same call stored at 16 kHz (upsampled before it reached us) reads the same band
    from scipy.signal import resample_poly

    stored = voice_quality_of_clip(resample_poly(phone, 2, 1).astype(np.float32), 16000)
    assert 3400 <= stored["bandwidth_hz"] <= 4000


def test_the_telephone_channel_s_low_cut_is_read_and_a_codec_that_keeps_the_low_end_is_not_mistaken_for_it():
    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    clean = voice_quality_of_clip(samples, rate)["low_band_db"]
    call = voice_quality_of_clip(*degrade.telephone_band(samples, rate))["low_band_db"]
    low_passed = voice_quality_of_clip(degrade.band_limit(samples, rate, high_hz=3400), rate)["low_band_db"]
    assert call < clean - 10 and call < -3.5 < low_passed  # 300 Hz cut: the 100-250 Hz band falls away
    assert low_passed == pytest.approx(clean, abs=2.0)  # the low end kept: as recorded


def test_a_44khz_copy_reads_no_more_than_the_8khz_the_pipeline_sees():
    from scipy.signal import resample_poly

    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    high_rate = voice_quality_of_clip(resample_poly(samples, 441, 160).astype(np.float32), 44100)
    assert 7000 <= high_rate["bandwidth_hz"] <= 8000 and high_rate["sample_rate"] == 44100


def test_a_band_limited_copy_reads_its_band():
    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    midband = voice_quality_of_clip(degrade.band_limit(samples, rate, high_hz=5500), rate)
    assert midband["bandwidth_hz"] == pytest.approx(5500, rel=0.1)


def test_snr_estimate_rises_with_the_snr_and_reads_it_within_3_db_from_5_to_20_db():
    samples, rate = librispeech_clip(QUIET_BACKGROUND_CLIP)
    estimates = {snr: voice_quality_of_clip(degrade.add_noise(samples, snr, seed=3), rate)["snr_db"]
                 for snr in (0, 5, 10, 20, 30)}
    values = list(estimates.values())
    assert all(later > earlier for earlier, later in zip(values, values[1:])), estimates
    for snr in (5, 10, 20):
        assert estimates[snr] == pytest.approx(snr, abs=3.0), estimates


def test_clipping_is_counted_at_full_scale_and_in_flat_runs_below_it():
    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    assert voice_quality_of_clip(samples, rate)["clipped_fraction"] == 0.0
    loud = np.clip(samples * 20, -1.0, 1.0)
    expected = float(np.mean(np.abs(samples * 20) >= 1.0))
    assert voice_quality_of_clip(loud, rate)["clipped_fraction"] == pytest.approx(expected, abs=2e-4)
    # clipped at half scale (a recorder's limiter, or clipping then a level change): flat runs at the peak
    meter = VoiceQualityMeter()
    meter.add(np.clip(samples * 20, -0.5, 0.5)[:, None], rate)
    at_half_scale = float(np.mean(np.abs(samples * 20) >= 0.5))
    # all but the excursions of one or two samples, which a natural peak could make too
    assert 0.8 * at_half_scale <= meter.clipped_fraction() <= at_half_scale


def test_a_stream_of_blocks_measures_what_the_whole_clip_measures():
    from fvmatch.media.vad import speech_probabilities

    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    probabilities = speech_probabilities(samples)
    whole = VoiceQualityMeter()
    whole.add(samples[:, None], rate)
    whole.add_speech(samples, probabilities)
    streamed = VoiceQualityMeter()
    for start in range(0, len(samples), 40 * 512):  # blocks of whole 512-sample chunks, as the reader's are
        streamed.add(samples[start : start + 40 * 512, None], rate)
        streamed.add_speech(samples[start : start + 40 * 512], probabilities[start // 512 : start // 512 + 40])
    assert streamed.result(rate, "FLAC", 3.0) == whole.result(rate, "FLAC", 3.0)


def test_voice_result_is_plain_json_with_the_figures_named():
    samples, rate = librispeech_clip(WIDEBAND_CLIP)
    quality = voice_quality_of_clip(samples, rate, codec="FLAC")
    assert json.loads(json.dumps(quality)) == quality
    assert set(quality) == {"bandwidth_hz", "low_band_db", "snr_db", "f0_hz", "clipped_fraction", "speech_seconds",
                            "sample_rate", "codec"}
    assert quality["codec"] == "FLAC" and quality["sample_rate"] == 16000 and 2.0 < quality["speech_seconds"] <= 3.6


def test_silence_has_no_bandwidth_or_snr():
    meter = VoiceQualityMeter()
    meter.add(np.zeros((16000, 1), np.float32), 16000)
    meter.add_speech(np.zeros(16000, np.float32), np.zeros(32))
    quality = meter.result(16000, "WAV", 0.0)
    assert quality["bandwidth_hz"] is None and quality["snr_db"] is None and quality["clipped_fraction"] == 0.0
    assert quality["f0_hz"] is None
