"""fvmatch.media.resample gives torchaudio's resampled samples, in numpy, without importing torch."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fvmatch.media.audio import resampling_ratio
from fvmatch.media.resample import resample

# rates of real files, and odd ones that audio.resampling_ratio brings to a near ratio
RATES = (8000, 11025, 22050, 32000, 44100, 48000, 96000, 44101, 12345)


@pytest.mark.parametrize("rate", RATES)
def test_samples_are_torchaudios(rate):
    torch = pytest.importorskip("torch", reason="the reference is torchaudio's resampler")
    functional = pytest.importorskip("torchaudio.functional")
    orig, new = resampling_ratio(rate)
    noise = np.random.default_rng(rate).normal(0, 0.2, 2 * rate + 17).astype(np.float32)
    for waveform in (noise, noise[:1]):
        found = resample(waveform, orig, new)
        expected = functional.resample(torch.from_numpy(waveform), orig, new).numpy()
        assert found.dtype == np.float32 and found.shape == expected.shape
        np.testing.assert_allclose(found, expected, atol=1e-6)


def test_resampling_keeps_a_tone_and_the_length():
    seconds = np.arange(32_000) / 16_000
    tone = (0.5 * np.sin(2 * np.pi * 440 * seconds) + 0.2 * np.sin(2 * np.pi * 3000 * seconds)).astype(np.float32)
    there = resample(tone, 160, 441)  # 16 kHz -> 44.1 kHz
    back = resample(there, 441, 160)
    assert len(there) == 88_200 and len(back) == len(tone)
    assert float(np.abs(back - tone)[400:-400].max()) < 0.01


def test_resampling_imports_no_torch():
    script = ("import sys, numpy as np\n"
              "from fvmatch.media.resample import resample\n"
              "print(len(resample(np.ones(44100, np.float32), 441, 160)), 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["16000", "False"]
