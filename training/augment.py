"""Training-time augmentation of voices: telephone-band copies.

Phone intercepts reach an analyst at 8 kHz or through a telephone channel: nothing above 3.4-4 kHz survives, and
often little below 300 Hz. A model trained on full-band audio alone puts such a recording far from the same voice at
full band (the shipped default before this: median cosine 0.48 between a clip and its 8 kHz copy;
`benchmarks/telephone_voices.py`). Training on a share of voice crops narrowed to a telephone band teaches the
embedding to rely on what both versions carry. The band's edges are drawn per crop, so that the model learns no
one filter's roll-off (8 kHz files reach analysts through many resamplers and codecs).
"""
from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 16000
LOW_EDGE_HZ = (50.0, 300.0)  # range of the band's lower edge
HIGH_EDGE_HZ = (3200.0, 4000.0)  # range of its upper edge (an 8 kHz file: 4,000)
EDGE_SCALE_HZ = 40.0  # softness of the edges: 200 Hz past an edge the amplitude is down 43 dB
FULL_BAND = (0.0, SAMPLE_RATE / 2)


def draw_band(rng: np.random.Generator) -> tuple[float, float]:
    """(low, high) edges in Hz of one crop's telephone band."""
    return float(rng.uniform(*LOW_EDGE_HZ)), float(rng.uniform(*HIGH_EDGE_HZ))


def telephone_band(waveforms: torch.Tensor, bands: torch.Tensor) -> torch.Tensor:
    """(batch, samples) 16 kHz waveforms, each band-passed to its row of `bands` ((batch, 2): low and high edge in
    Hz); a row holding FULL_BAND is returned unchanged, bit for bit.

    Every row is filtered and the full-band ones are picked back on the device, so the step never waits on the host.
    """
    frequencies = torch.fft.rfftfreq(waveforms.shape[1], 1 / SAMPLE_RATE, device=waveforms.device)
    low, high = bands[:, :1].to(waveforms.dtype), bands[:, 1:].to(waveforms.dtype)
    gain = torch.sigmoid((frequencies - low) / EDGE_SCALE_HZ) * torch.sigmoid((high - frequencies) / EDGE_SCALE_HZ)
    narrow = torch.fft.irfft(torch.fft.rfft(waveforms) * gain, n=waveforms.shape[1])
    return torch.where(bands[:, 1:] < FULL_BAND[1], narrow, waveforms)
