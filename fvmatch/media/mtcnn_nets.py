"""MTCNN's three nets (P-, R- and O-net) in numpy, float32, with facenet-pytorch 2.5.3's weights and arithmetic.

The layers run on activations laid out N x H x W x C; a convolution is one matrix product over the image's patches,
in bands that fit the cache. The detection cascade that drives them is mtcnn.py.

Adapted from facenet-pytorch (https://github.com/timesler/facenet-pytorch), models/mtcnn.py and
models/utils/detect_face.py, under its licence:

    MIT License

    Copyright (c) 2019 Timothy Esler

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
    SOFTWARE.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from fvmatch.models.checkpoint import WEIGHTS_DIR
from fvmatch.paths import shipped_bytes

# facenet-pytorch's data/{pnet,rnet,onet}.pt converted once (models/weights/convert_pretrained.py), MIT notice beside
WEIGHTS_FILE = WEIGHTS_DIR / "mtcnn.safetensors"
WEIGHTS_SHA256 = "32842a11a88b9a1215cb9ef6dbc49b0c96798aae4d90171206badc774bf00263"
PATCH_BAND_BYTES = 256 * 1024  # patches per matrix product: a band of them and its outputs fit a 1 MiB L2 cache


def load_weights(path: Path = WEIGHTS_FILE) -> dict[str, dict[str, np.ndarray]]:
    """The shipped weights of the three nets, by net ("pnet", "rnet", "onet") and tensor name ("conv1.weight"), as
    facenet-pytorch's state dicts name them; the file is checked against its sha256."""
    from safetensors.numpy import load

    data = shipped_bytes(path, WEIGHTS_SHA256, "MTCNN weights")
    nets: dict[str, dict[str, np.ndarray]] = {"pnet": {}, "rnet": {}, "onet": {}}
    for name, tensor in load(data).items():
        net, _, tensor_name = name.partition(".")
        nets[net][tensor_name] = tensor
    return nets


# ----- layers, on float32 activations laid out N x H x W x C ------------------------------------------------------
class _Conv:
    """A valid, stride-1 convolution, then PReLU when given its slopes: the activations' k x k patches times the
    weights, one band of output rows at a time, so that each band's patches and outputs stay in the CPU's cache."""

    def __init__(self, weights: dict[str, np.ndarray], name: str, prelu: str | None = None) -> None:
        kernel = weights[f"{name}.weight"]  # torch's (out, in, k, k)
        self.size = kernel.shape[2]
        # rows in the (row, column, channel) order in which `_patches` lays out each patch
        self.matrix = np.ascontiguousarray(kernel.transpose(2, 3, 1, 0).reshape(-1, kernel.shape[0]))
        self.bias = weights[f"{name}.bias"]
        self.slopes = weights[f"{prelu}.weight"] if prelu else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, H, W, C) -> (N, H - size + 1, W - size + 1, out channels)."""
        # the images stacked into one tall image: a band may then span images; the output rows that start less
        # than `size` rows above an image's end mix two images and are dropped at the end
        n, height, width, channels = x.shape
        tall = x.reshape(n * height, width, channels)
        out_w, out_c = width - self.size + 1, self.matrix.shape[1]
        out = np.empty((n * height, out_w * out_c), np.float32)
        # bias and slopes repeated along a row of outputs: numpy's loops then run the row's length, not out_c
        bias, slopes = np.tile(self.bias, out_w), None if self.slopes is None else np.tile(self.slopes, out_w)
        rows = _patch_rows(tall, self.size)
        starts = n * height - self.size + 1
        band_rows = max(1, PATCH_BAND_BYTES // (out_w * self.matrix.shape[0] * self.matrix.itemsize))
        for top in range(0, starts, band_rows):
            band = out[top:min(top + band_rows, starts)]
            np.matmul(_patches(rows[top:top + len(band) + self.size - 1], self.size), self.matrix,
                      out=band.reshape(-1, out_c))
            band += bias
            if slopes is not None:
                _prelu(band, slopes)
        return out.reshape(n, height, out_w, out_c)[:, :height - self.size + 1]


def _patch_rows(x: np.ndarray, size: int) -> np.ndarray:
    """(H, W', size * C): the rows of each patch of an H x W x C image, a view (a patch row is `size * C`
    consecutive values of an image row)."""
    height, width, channels = x.shape
    flat = x.reshape(height, width * channels)
    return np.lib.stride_tricks.sliding_window_view(flat, size * channels, axis=1)[:, ::channels]


def _patches(rows: np.ndarray, size: int) -> np.ndarray:
    """(H' * W', size * size * C): each patch whole, its `size` rows (`_patch_rows`) copied one after the other."""
    out_h = len(rows) - size + 1
    patches = np.empty((out_h, rows.shape[1], size, rows.shape[2]), np.float32)
    for dy in range(size):
        patches[:, :, dy] = rows[dy:dy + out_h]
    return patches.reshape(out_h * rows.shape[1], -1)


class _Dense:
    """A fully connected layer on flattened N x H x W x C activations, then PReLU when given its slopes."""

    def __init__(self, weights: dict[str, np.ndarray], name: str, prelu: str | None = None,
                 input_hwc: tuple[int, int, int] | None = None) -> None:
        matrix = weights[f"{name}.weight"]  # torch's (out, in)
        if input_hwc is not None:
            # the weights were converted from Caffe, whose flattening runs width-major (facenet permutes its
            # activations to N x W x H x C before flattening): reorder their columns once to read H x W x C
            height, width, channels = input_hwc
            matrix = matrix.reshape(-1, width, height, channels).transpose(0, 2, 1, 3).reshape(len(matrix), -1)
        self.matrix = np.ascontiguousarray(matrix.T)
        self.bias = weights[f"{name}.bias"]
        self.slopes = weights[f"{prelu}.weight"] if prelu else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = x.reshape(len(x), -1) @ self.matrix
        out += self.bias
        return out if self.slopes is None else _prelu(out, self.slopes)


def _stacked(weights: dict[str, np.ndarray], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The weights of output layers that read the same activations, stacked into those of one layer "heads" (one
    matrix product instead of several)."""
    return {f"heads.{part}": np.concatenate([weights[f"{name}.{part}"] for name in names])
            for part in ("weight", "bias")}


def _prelu(x: np.ndarray, slopes: np.ndarray) -> np.ndarray:
    """PReLU in place: max(x, 0) + slope * min(x, 0), which is torch's x or slope * x exactly (one term is 0)."""
    negative = np.minimum(x, 0)
    negative *= slopes
    np.maximum(x, 0, out=x)
    x += negative
    return x


def _max_pool(x: np.ndarray, size: int, stride: int) -> np.ndarray:
    """torch's MaxPool2d(size, stride, ceil_mode=True): a last window that starts inside the input may run past its
    edge, and takes the maximum of the pixels it holds."""
    out_h, out_w = _pooled_size(x.shape[1], size, stride), _pooled_size(x.shape[2], size, stride)
    out = x[:, :stride * out_h:stride, :stride * out_w:stride].copy()  # every window's first pixel
    for dy in range(size):
        for dx in range(size):
            if dy or dx:
                pixels = x[:, dy::stride, dx::stride][:, :out_h, :out_w]  # windows past the edge: fewer of them
                window_h, window_w = pixels.shape[1:3]
                np.maximum(out[:, :window_h, :window_w], pixels, out=out[:, :window_h, :window_w])
    return out


def _pooled_size(length: int, size: int, stride: int) -> int:
    out = -(-(length - size) // stride) + 1
    return out - 1 if (out - 1) * stride >= length else out


def _softmax(x: np.ndarray) -> np.ndarray:
    exp = np.exp(x - x.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


# ----- the three nets -------------------------------------------------------------------------------------------
class PNet:
    """Proposal net: fully convolutional over each pyramid level; a box offset and a face probability per 12x12 cell
    (every second pixel)."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.conv1, self.conv2, self.conv3 = (_Conv(weights, f"conv{k}", f"prelu{k}") for k in (1, 2, 3))
        self.heads = _Conv(_stacked(weights, ("conv4_2", "conv4_1")), "heads")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(1, H, W, 3) -> box offsets (1, H', W', 4), probabilities of no face and face (1, H', W', 2)."""
        x = self.conv3(self.conv2(_max_pool(self.conv1(x), 2, 2)))
        offsets, scores = np.split(self.heads(x), [4], axis=-1)
        return offsets, _softmax(scores)


class RNet:
    """Refinement net: 24x24 candidates -> box offset, face probability."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.conv1, self.conv2, self.conv3 = (_Conv(weights, f"conv{k}", f"prelu{k}") for k in (1, 2, 3))
        self.dense4 = _Dense(weights, "dense4", "prelu4", input_hwc=(3, 3, 64))
        self.heads = _Dense(_stacked(weights, ("dense5_2", "dense5_1")), "heads")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(N, 24, 24, 3) -> box offsets (N, 4), probabilities of no face and face (N, 2)."""
        x = self.conv3(_max_pool(self.conv2(_max_pool(self.conv1(x), 3, 2)), 3, 2))
        offsets, scores = np.split(self.heads(self.dense4(x)), [4], axis=-1)
        return offsets, _softmax(scores)


class ONet:
    """Output net: 48x48 candidates -> box offset, five landmarks (x then y, relative to the box), face probability."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.conv1, self.conv2, self.conv3, self.conv4 = (_Conv(weights, f"conv{k}", f"prelu{k}")
                                                          for k in (1, 2, 3, 4))
        self.dense5 = _Dense(weights, "dense5", "prelu5", input_hwc=(3, 3, 128))
        self.heads = _Dense(_stacked(weights, ("dense6_2", "dense6_3", "dense6_1")), "heads")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(N, 48, 48, 3) -> box offsets (N, 4), landmarks (N, 10), probabilities of no face and face (N, 2)."""
        x = _max_pool(self.conv2(_max_pool(self.conv1(x), 3, 2)), 3, 2)
        x = self.conv4(_max_pool(self.conv3(x), 2, 2))
        offsets, landmarks, scores = np.split(self.heads(self.dense5(x)), [4, 14], axis=-1)
        return offsets, landmarks, _softmax(scores)
