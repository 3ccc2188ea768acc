"""A voice's fundamental frequency (F0), read from the 32 ms chunks the quality meter already sees.

F0 is the label-free cue to a speaker's sex beside the `ge2e-voice` sex head (fvmatch.evidence.attributes): adult male
voices mostly speak at 85-155 Hz, female at 165-255 Hz, with an overlap an examiner should see. Each speech chunk
gets YIN's cumulative mean normalised difference (de Cheveigné and Kawahara 2002), computed for all chunks of a
block at once through one FFT each; a chunk is voiced where the difference dips under YIN_THRESHOLD, and its F0 is
the first such dip (the first dip, not the deepest, is what keeps YIN off the octave below). It reads the period
from the harmonics, so a telephone copy without its fundamental reads the same F0.
"""
from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
F0_RANGE_HZ = (60.0, 400.0)  # the lags searched: adult and child speaking voices, not singing
YIN_THRESHOLD = 0.25  # 0.1-0.15 in the paper; on 32 ms chunks of real speech that leaves half the voiced ones out: 0.25
# reads all 112 realmedia recordings within 0.31 semitones of librosa's YIN (median; 0.96 at the 90th percentile;
# benchmarks/f0_cost.py --against-librosa), none unread
MIN_VOICED_CHUNKS = 10  # about a third of a second of voiced speech before a recording's F0 is stated
# a recording's F0 is read from its first minute of speech (0.35-0.75 ms a second of speech, measured by
# benchmarks/f0_cost.py: a long recording would otherwise add a quarter of a second for nothing the median needs)
MAX_SPEECH_CHUNKS = 1875


def chunk_f0(chunks: np.ndarray) -> np.ndarray:
    """F0 (Hz) of each row of a (N, W) array of 16 kHz chunks; NaN where a chunk is not voiced."""
    chunks = np.asarray(chunks, dtype=np.float64)
    count, width = chunks.shape
    shortest, longest = int(SAMPLE_RATE / F0_RANGE_HZ[1]), int(SAMPLE_RATE / F0_RANGE_HZ[0])
    if count == 0 or width <= longest + 1:
        return np.full(count, np.nan)
    chunks = chunks - chunks.mean(axis=1, keepdims=True)
    size = 1 << int(np.ceil(np.log2(2 * width)))
    spectrum = np.fft.rfft(chunks, size, axis=1)
    lags = np.arange(longest + 1)
    correlation = np.fft.irfft(spectrum * np.conj(spectrum), size, axis=1)[:, : longest + 1]
    # the difference over the samples both shifted copies cover: sum x[t]^2 + sum x[t+lag]^2 - 2 r(lag)
    energy = np.concatenate([np.zeros((count, 1)), np.cumsum(chunks**2, axis=1)], axis=1)
    head = energy[:, width - lags]  # sum of x[t]^2, t < width - lag
    tail = energy[:, width:width + 1] - energy[:, lags]  # sum of x[t]^2, t >= lag
    # per sample covered: the longer the lag the fewer samples both copies cover, and a plain sum would favour long
    # lags (the octave below)
    difference = np.maximum(head + tail - 2 * correlation, 0.0) / (width - lags)
    difference[:, 0] = 0.0
    running = np.cumsum(difference[:, 1:], axis=1) / lags[1:]
    normalised = np.ones_like(difference)
    normalised[:, 1:] = difference[:, 1:] / np.maximum(running, 1e-12)
    window = normalised[:, shortest : longest + 1]
    below = window < YIN_THRESHOLD
    voiced = np.flatnonzero(below.any(axis=1))
    window, below = window[voiced], below[voiced]
    start = np.argmax(below, axis=1)
    # the bottom of the first dip: the first lag from its start where the difference stops falling
    rising = np.ones_like(below)
    rising[:, :-1] = window[:, 1:] >= window[:, :-1]
    rising &= np.arange(window.shape[1]) >= start[:, None]
    bottom = np.argmax(rising, axis=1)
    f0 = np.full(count, np.nan)
    f0[voiced] = SAMPLE_RATE / (shortest + bottom + _parabolic_offsets(window, bottom))
    return f0


def _parabolic_offsets(values: np.ndarray, index: np.ndarray) -> np.ndarray:
    """The fractional lag of each row's minimum at `index` from its neighbours (a parabola through three points)."""
    rows = np.arange(len(index))
    inside = (index > 0) & (index + 1 < values.shape[1])
    left = values[rows, np.clip(index - 1, 0, None)]
    middle = values[rows, index]
    right = values[rows, np.clip(index + 1, None, values.shape[1] - 1)]
    curvature = left - 2 * middle + right
    usable = inside & (curvature > 0)
    return np.where(usable, 0.5 * (left - right) / np.where(usable, curvature, 1.0), 0.0)


def median_f0(f0_values: list[np.ndarray]) -> tuple[float | None, int]:
    """A recording's F0 (Hz): the median over its voiced speech chunks, and how many chunks it rests on (None under
    MIN_VOICED_CHUNKS)."""
    voiced = np.concatenate(f0_values) if f0_values else np.zeros(0)
    voiced = voiced[np.isfinite(voiced)]
    if len(voiced) < MIN_VOICED_CHUNKS:
        return None, int(len(voiced))
    return float(np.median(voiced)), int(len(voiced))
