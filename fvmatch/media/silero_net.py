"""silero-vad's 16 kHz network in numpy, float32, so that finding speech never imports torch (importing any part of
the silero_vad package does, and the package requires it).

The weights are those of silero-vad 6.2's JIT model, converted once (models/weights/convert_pretrained.py) into
models/weights/silero_vad_16k.safetensors (MIT licence, Copyright (c) 2020-present Silero Team:
models/weights/silero_vad_16k.LICENSE); the file is checked against its sha256 when loaded. Each 512-sample chunk,
with the 64 samples before it, goes through an STFT written as a convolution (256 taps, hop 128, 64 samples reflected
at the end: four frames of 129 magnitudes) and four convolutions with ReLU (strides 1, 2, 2, 1: down to one frame of
128 features); only then is the network recurrent: an LSTM cell over the chunks, ReLU, a 1x1 convolution and a
sigmoid give the chunk's probability of speech (silero-vad's layers, laid out as its tinygrad_model.py lays them out).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fvmatch.media.numpy_lstm import LstmLayer, LstmWeights
from fvmatch.models.checkpoint import WEIGHTS_DIR
from fvmatch.paths import shipped_bytes

WEIGHTS_FILE = WEIGHTS_DIR / "silero_vad_16k.safetensors"
WEIGHTS_SHA256 = "691fec2533b22821b0744dfd5c119c17532f6d20c75915e865ac78bb8a2e9dd5"

CHUNK = 512  # samples per probability at 16 kHz
CONTEXT = 64  # samples of the previous chunk the network sees before each chunk
STFT_TAPS = 256
STFT_HOP = 128
STFT_REFLECT = 64  # samples reflected after the chunk before the STFT
STFT_BINS = STFT_TAPS // 2 + 1
CONV_STRIDES = (1, 2, 2, 1)  # conv1..conv4, kernel 3, padding 1
ENCODER_BATCH = 2048  # chunks through the convolutions at a time (~65 s of audio, a few MB)


class SileroVad:
    """silero-vad's network: probabilities of speech of consecutive chunks, from a fresh state."""

    def __init__(self, path: Path = WEIGHTS_FILE) -> None:
        from safetensors.numpy import load

        data = shipped_bytes(path, WEIGHTS_SHA256, "silero-vad weights")
        weights = load(data)
        # the STFT's real and imaginary kernels as one matrix: a frame of 256 samples -> 129 real, 129 imaginary parts
        self.stft = np.ascontiguousarray(weights["stft_conv.weight"][:, 0, :].T)
        self.convolutions = [_Conv1d(weights[f"conv{number}.weight"], weights[f"conv{number}.bias"], stride)
                             for number, stride in enumerate(CONV_STRIDES, start=1)]
        self.cell = LstmLayer(LstmWeights(*(weights[f"lstm_cell.{name}"]
                                            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))))
        self.output_weight = weights["final_conv.weight"][0, :, 0]
        self.output_bias = weights["final_conv.bias"]

    def encode(self, windows: np.ndarray) -> np.ndarray:
        """(chunks, CONTEXT + CHUNK) samples -> (chunks, 128) features, each chunk on its own."""
        padded = np.concatenate([windows, windows[:, -2 : -STFT_REFLECT - 2 : -1]], axis=1)
        frames = np.lib.stride_tricks.sliding_window_view(padded, STFT_TAPS, axis=1)[:, ::STFT_HOP]
        parts = frames @ self.stft  # (chunks, 4 frames, 258)
        x = np.sqrt(np.square(parts[..., :STFT_BINS]) + np.square(parts[..., STFT_BINS:]))
        for convolution in self.convolutions:
            x = np.maximum(convolution(x), 0.0)
        return x[:, 0, :]  # the one frame left

    def __call__(self, windows: np.ndarray) -> np.ndarray:
        """(chunks, CONTEXT + CHUNK) consecutive samples -> (chunks,) probabilities of speech."""
        features = np.concatenate([self.encode(part) for part in
                                   np.array_split(windows, -(-len(windows) // ENCODER_BATCH))])
        states = self.cell(features[:, None, :])[:, 0, :]
        logits = np.maximum(states, 0.0) @ self.output_weight + self.output_bias
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


class _Conv1d:
    """A convolution over time, kernel 3, padding 1, on (batch, time, channels): three shifted products summed."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, stride: int) -> None:
        self.taps = [np.ascontiguousarray(weight[:, :, tap].T) for tap in range(weight.shape[2])]  # (in, out) each
        self.bias = bias
        self.stride = stride

    def __call__(self, x: np.ndarray) -> np.ndarray:
        padded = np.pad(x, ((0, 0), (1, 1), (0, 0)))
        steps = (x.shape[1] - 1) // self.stride + 1
        out = self.bias + padded[:, 0 : self.stride * steps : self.stride] @ self.taps[0]
        for tap in range(1, len(self.taps)):
            out += padded[:, tap : tap + self.stride * steps : self.stride] @ self.taps[tap]
        return out
