"""silero-vad in numpy (fvmatch.media.vad, fvmatch.media.silero_net): silero's own probabilities and speech segments,
as its torch model and loop give them, on generated audio and real recordings, without importing torch."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from fvmatch.media import vad
from fvmatch.media.audio import load_audio
from fvmatch.media.silero_net import WEIGHTS_FILE
from mediagen import speech_clip

ROOT = Path(__file__).resolve().parents[1]
REALMEDIA = ROOT.parent / "shared" / "realmedia" / "voices"
# LibriSpeech read speech (16 kHz FLAC) and an interview (44.1 kHz MP3, resampled on reading)
REAL_CLIPS = ("librispeech_1688/1688-142285-0004.flac", "librispeech_3331/3331-159605-0008.flac",
              "librispeech_367/367-130732-0001.flac", "donald_trump/4glfwiMXgwQ.mp3")
SAMPLE_RATE = vad.SAMPLE_RATE


def real_recording(name: str) -> Path:
    path = REALMEDIA / name
    if not path.is_file():
        pytest.skip(f"../shared/realmedia is absent: no {path} (real recordings are not part of the repository)")
    return path


def every_real_recording() -> list[Path]:
    paths = sorted(path for path in REALMEDIA.glob("*/*") if path.suffix in (".flac", ".mp3"))
    if not paths:
        pytest.skip(f"../shared/realmedia is absent: no recordings under {REALMEDIA}")
    return paths


@pytest.fixture(scope="module")
def silero():
    """silero-vad's own JIT model (torch), the reference."""
    pytest.importorskip("torch", reason="the reference is silero-vad's torch model")
    with warnings.catch_warnings():  # silero_vad's loader uses a deprecated importlib.resources call
        warnings.simplefilter("ignore", DeprecationWarning)
        silero_vad = pytest.importorskip("silero_vad")
        return silero_vad.load_silero_vad()


def silero_probabilities(model, clip: np.ndarray) -> np.ndarray:
    """silero's loop: the whole model once per chunk, its state carried from call to call."""
    import torch

    padded = np.zeros(-(-len(clip) // vad.CHUNK) * vad.CHUNK, np.float32)
    padded[: len(clip)] = clip
    with torch.no_grad():
        return model.audio_forward(torch.from_numpy(padded)[None], SAMPLE_RATE)[0].numpy()


def silero_segments(model, clip: np.ndarray) -> list[dict]:
    import torch
    from silero_vad import get_speech_timestamps

    return get_speech_timestamps(torch.from_numpy(clip), model, sampling_rate=SAMPLE_RATE, **vad.VAD_SETTINGS)


def assert_same_segments(found: list[dict], expected: list[dict], label: str) -> None:
    """The same segments, each boundary within one 512-sample chunk (a probability at the threshold may fall either
    side of it after float rounding)."""
    assert len(found) == len(expected), (label, found, expected)
    for ours, theirs in zip(found, expected):
        assert abs(ours["start"] - theirs["start"]) <= vad.CHUNK and abs(ours["end"] - theirs["end"]) <= vad.CHUNK, \
            (label, ours, theirs)


def test_shipped_weights_are_those_of_silero_vads_jit_model():
    pytest.importorskip("torch", reason="reading silero-vad's JIT model needs torch")
    pytest.importorskip("silero_vad")
    spec = importlib.util.spec_from_file_location("convert_pretrained", ROOT / "models/weights/convert_pretrained.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    expected, _ = convert.silero_tensors()
    shipped = load_file(WEIGHTS_FILE)
    assert sorted(shipped) == sorted(expected) and len(shipped) == 15
    for name, values in expected.items():
        assert np.array_equal(shipped[name], values), name


def test_probabilities_are_silero_s_own_on_real_recordings(silero):
    for name in REAL_CLIPS:
        clip = load_audio(real_recording(name))[: 60 * SAMPLE_RATE]
        found = vad.speech_probabilities(clip)
        expected = silero_probabilities(silero, clip)
        assert found.shape == expected.shape == (-(-len(clip) // vad.CHUNK),)
        np.testing.assert_allclose(found, expected, atol=1e-5, err_msg=name)
        assert 0.3 < float(np.mean(found > 0.5)) < 1.0, name  # speech and pauses told apart


def test_segments_are_silero_s_own_post_processing_of_the_same_probabilities():
    # random walks of probabilities crossing both thresholds, short and long pauses, speech at either end
    pytest.importorskip("torch", reason="silero-vad's post-processing lives in a module that imports torch")
    from silero_vad import get_speech_timestamps_from_probs

    rng = np.random.default_rng(35)
    compared = 0
    for trial in range(300):
        count = int(rng.integers(1, 400))
        walk = np.clip(np.cumsum(rng.normal(0, 0.2, count)) + rng.uniform(-0.5, 1.5), -1, 2)
        probabilities = np.clip(walk, 0, 1).astype(np.float32)
        n_samples = count * vad.CHUNK - int(rng.integers(0, vad.CHUNK))
        settings = {"speech_pad_ms": int(rng.choice([30, 100, 200])),
                    "min_silence_duration_ms": int(rng.choice([0, 100, 300]))}
        expected = get_speech_timestamps_from_probs(probabilities.tolist(), sampling_rate=SAMPLE_RATE,
                                                    audio_length_samples=n_samples, **settings)
        assert vad.speech_segments(probabilities, n_samples, **settings) == expected, (trial, settings)
        compared += len(expected)
    assert compared > 300  # the trials held segments to compare, not only silence


def test_speech_found_in_generated_audio_is_what_silero_finds(silero):
    pause = np.zeros(SAMPLE_RATE, np.float32)
    clips = [speech_clip(4.0, seed=1),
             np.concatenate([pause, speech_clip(2.0, seed=2), pause, speech_clip(1.5, seed=3)]),
             np.zeros(SAMPLE_RATE * 2, np.float32), speech_clip(9.7, seed=5)[:155_555]]
    for number, clip in enumerate(clips):
        assert_same_segments(vad.speech_segments(vad.speech_probabilities(clip), len(clip)),
                             silero_segments(silero, clip), f"clip {number}")
    assert len(vad.speech_only(clips[1])) > 3 * SAMPLE_RATE and len(vad.speech_only(clips[2])) == 0


def test_speech_found_in_real_recordings_is_what_silero_finds(silero):
    for name in REAL_CLIPS:
        clip = load_audio(real_recording(name))[: 60 * SAMPLE_RATE]
        segments = vad.speech_segments(vad.speech_probabilities(clip), len(clip))
        assert_same_segments(segments, silero_segments(silero, clip), name)
        assert len(segments) >= 1


@pytest.mark.long
def test_speech_found_in_every_real_recording_is_what_silero_finds(silero):
    for path in every_real_recording():
        clip = load_audio(path)
        assert_same_segments(vad.speech_segments(vad.speech_probabilities(clip), len(clip)),
                             silero_segments(silero, clip), path.name)


def test_finding_speech_imports_no_torch():
    script = (
        "import json, sys, numpy as np\n"
        "sys.path.insert(0, 'tests')\n"
        "from mediagen import speech_clip\n"
        "from fvmatch.media.vad import speech_only\n"
        "kept = len(speech_only(speech_clip(3.0, seed=4)))\n"
        "print(json.dumps([kept, sorted(m for m in ('torch', 'torchaudio', 'silero_vad') if m in sys.modules)]))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    kept, imported = json.loads(result.stdout)
    assert kept > 2 * SAMPLE_RATE and imported == []
