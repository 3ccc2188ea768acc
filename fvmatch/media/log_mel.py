"""The seed's voice features: log-mel of 16 kHz speech, in torch (training, the trainer's step) and in numpy (the
joint space's voices and the report's pictures, without torch).

The front end of Wang et al. 2020 (DIMNet-voice): 64 log-mel bands, 25 ms window, 10 ms hop, per-utterance
mean/variance normalisation, 16 kHz mono.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from fvmatch.media.audio import SAMPLE_RATE

N_MELS = 64
WIN_LENGTH = 400  # 25 ms at 16 kHz
HOP_LENGTH = 160  # 10 ms at 16 kHz
N_FFT = 512
LOG_FLOOR = 1e-6


def log_mel_batch(waveforms):
    """(batch, samples) 16 kHz float tensor -> (batch, 64, frames) log-mel, normalised per utterance and band.

    The one front end of training and inference; runs on the waveforms' device, in float32.
    """
    import torch

    with torch.autocast(waveforms.device.type, enabled=False):
        spectrogram = _mel_transform(str(waveforms.device))(waveforms.float())
        features = torch.log(spectrogram + LOG_FLOOR)
        mean = features.mean(dim=2, keepdim=True)
        std = features.std(dim=2, keepdim=True) if features.shape[2] > 1 else torch.ones_like(mean)
        return (features - mean) / (std + 1e-5)


def log_mel(waveform: np.ndarray) -> np.ndarray:
    """(64, frames) float32 log-mel of one 16 kHz mono clip, in numpy: `log_mel_batch`'s front end (torchaudio's
    MelSpectrogram: a periodic Hann window of 400 samples centred in 512, reflect-padded centred frames every 160,
    power 2, HTK mel filters without normalisation; log; per-band mean/variance normalisation over the utterance), so
    that the joint space's voices and the report's pictures need no torch (a test compares the two)."""
    waveform = np.asarray(waveform, dtype=np.float32)
    window = np.zeros(N_FFT, np.float32)
    offset = (N_FFT - WIN_LENGTH) // 2
    window[offset : offset + WIN_LENGTH] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(WIN_LENGTH) / WIN_LENGTH)
    padded = np.pad(waveform, N_FFT // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * window, axis=1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    mels = np.linspace(0.0, 2595.0 * np.log10(1.0 + SAMPLE_RATE / 2 / 700.0), N_MELS + 2)
    edges = 700.0 * (10.0 ** (mels / 2595.0) - 1.0)  # HTK mel scale
    slopes = edges[None, :] - np.linspace(0.0, SAMPLE_RATE // 2, N_FFT // 2 + 1)[:, None]
    filters = np.maximum(0.0, np.minimum(-slopes[:, :-2] / np.diff(edges)[:-1], slopes[:, 2:] / np.diff(edges)[1:]))
    features = np.log((power @ filters).T + LOG_FLOOR)
    mean = features.mean(axis=1, keepdims=True)
    std = features.std(axis=1, ddof=1, keepdims=True) if features.shape[1] > 1 else np.ones_like(mean)
    return ((features - mean) / (std + 1e-5)).astype(np.float32)


@lru_cache(maxsize=4)
def _mel_transform(device: str):
    import torchaudio

    return torchaudio.transforms.MelSpectrogram(
        sample_rate=SAMPLE_RATE, n_fft=N_FFT, win_length=WIN_LENGTH, hop_length=HOP_LENGTH, n_mels=N_MELS
    ).to(device)
