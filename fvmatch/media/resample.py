"""torchaudio's resampler (`torchaudio.functional.resample`, its defaults: a Hann-windowed sinc, 6 zero crossings,
roll-off 0.99) in numpy, float32, the same arithmetic in the same order, so that reading audio at any rate never
imports torch: the samples equal torchaudio's within float32 rounding (a test compares).

Output sample j of each group of `new` is the input, from `orig` samples further on for each group, weighted by the
group's j-th filter: a strided convolution, here one matrix product over the input's windows.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

LOWPASS_FILTER_WIDTH = 6  # zero crossings of the sinc on either side
ROLLOFF = 0.99  # the filter's cut-off, as a fraction of the lower rate's Nyquist frequency
WINDOWS_PER_PRODUCT = 1 << 15  # input windows per matrix product (48 kHz -> 16 kHz: 41 taps, 5 MB at a time)


def resample(waveform: np.ndarray, orig: int, new: int) -> np.ndarray:
    """1-D float32 audio at `orig` Hz -> `new` Hz, as torchaudio.functional.resample(waveform, orig, new)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    if orig == new:
        return waveform
    divisor = math.gcd(int(orig), int(new))
    orig, new = int(orig) // divisor, int(new) // divisor
    kernels, width = _kernels(orig, new)
    length = len(waveform)
    padded = np.pad(waveform, (width, width + orig))
    windows = np.lib.stride_tricks.sliding_window_view(padded, kernels.shape[1])[::orig]
    resampled = np.concatenate([windows[start : start + WINDOWS_PER_PRODUCT] @ kernels.T
                                for start in range(0, len(windows), WINDOWS_PER_PRODUCT)]).reshape(-1)
    return resampled[: math.ceil(new * length / orig)]


@lru_cache(maxsize=8)
def _kernels(orig: int, new: int) -> tuple[np.ndarray, int]:
    """(new, 2 width + orig) filters and `width`, torchaudio's `_get_sinc_resample_kernel` for float32 audio."""
    base_freq = min(orig, new) * ROLLOFF
    width = math.ceil(LOWPASS_FILTER_WIDTH * orig / base_freq)
    index = np.arange(-width, width + orig, dtype=np.float32)[None, :] / np.float32(orig)
    t = np.arange(0, -new, -1, dtype=np.float32)[:, None] / np.float32(new) + index
    t *= np.float32(base_freq)
    t = np.clip(t, -LOWPASS_FILTER_WIDTH, LOWPASS_FILTER_WIDTH)
    window = np.cos(t * np.float32(math.pi) / np.float32(LOWPASS_FILTER_WIDTH) / np.float32(2)) ** 2
    t *= np.float32(math.pi)
    with np.errstate(invalid="ignore", divide="ignore"):  # sin(0) / 0 at the filter's centre, replaced by 1
        kernels = np.where(t == 0, np.float32(1.0), np.sin(t) / t)
    kernels *= window * np.float32(base_freq / orig)
    return np.ascontiguousarray(kernels, dtype=np.float32), width
