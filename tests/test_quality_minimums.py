"""Quality shown and enforced: every item's figures in the results, and the analyst's minimums refused in one line."""
from __future__ import annotations

import json

import numpy as np
import soundfile

from fvmatch.media.degrade import add_noise, telephone_band
from mediagen import run_cli_here, speech_clip


def test_embed_shows_a_photo_s_measured_quality(grace_hopper):
    result = run_cli_here("embed", "--face", grace_hopper, "--space", "dlib-face", "--json")
    assert result.returncode == 0, result.stderr
    quality = json.loads(result.stdout)["quality"]
    assert 60 < quality["eye_distance_px"] < 120 and quality["face_px"] > quality["eye_distance_px"]
    assert quality["jpeg_quality"] == 80  # matplotlib's sample was saved at IJG quality 80 (its tables say so)
    assert quality["detection_probability"] > 0.99 and quality["sharpness"] > 0


def test_a_face_under_the_minimum_eye_distance_is_refused_and_nothing_is_enrolled(grace_hopper, tmp_path):
    gallery = tmp_path / "gallery"
    refused = run_cli_here("enroll", "--identity", "grace", "--face", grace_hopper, "--min-face-px", "200",
                           "--gallery", gallery)
    assert refused.returncode == 2
    (line,) = [line for line in refused.stderr.splitlines() if "failed" in line]
    assert "grace_hopper.jpg" in line and "too poor to compare: eye distance" in line and "--min-face-px" in line
    info = json.loads(run_cli_here("gallery", "info", "--gallery", gallery, "--json").stdout)
    assert info["counts"]["face"] == 0
    accepted = run_cli_here("enroll", "--identity", "grace", "--face", grace_hopper, "--min-face-px", "40",
                            "--gallery", gallery)
    assert accepted.returncode == 0, accepted.stderr


def test_noisy_and_narrowband_questions_are_refused_under_the_analyst_s_minimums(tmp_path):
    clean = speech_clip(4.0, seed=21)
    noisy, call = tmp_path / "noisy.wav", tmp_path / "call.wav"
    soundfile.write(noisy, np.clip(add_noise(clean, 0.0, seed=2), -1, 1), 16000, subtype="PCM_16")
    soundfile.write(call, *telephone_band(clean, 16000), subtype="PCM_16")
    soundfile.write(tmp_path / "clean.wav", clean, 16000, subtype="PCM_16")

    result = run_cli_here("verify", "--voice", noisy, "--voice", tmp_path / "clean.wav", "--min-snr", "15")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.strip().count("\n") == 0  # one line
    assert "noisy.wav: too poor to compare: estimated SNR" in result.stderr and "(--min-snr)" in result.stderr

    result = run_cli_here("verify", "--voice", call, "--voice", tmp_path / "clean.wav", "--min-bandwidth", "6000")
    assert result.returncode == 2 and "call.wav: too poor to compare: bandwidth" in result.stderr

    shown = run_cli_here("verify", "--voice", call, "--voice", tmp_path / "clean.wav", "--json")
    assert shown.returncode in (0, 1), shown.stderr
    first, second = (item["quality"] for item in json.loads(shown.stdout)["items"])
    assert first["bandwidth_hz"] < 4500 < second["bandwidth_hz"] and first["sample_rate"] == 8000
    assert first["codec"] == "WAV PCM_16" and first["clipped_fraction"] == 0
