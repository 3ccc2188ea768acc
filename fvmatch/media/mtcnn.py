"""MTCNN face detection on torch (boxes, probabilities, five landmarks), without facenet-pytorch's package.

Importing `facenet_pytorch` runs its package `__init__`, which imports torchvision (its model zoo, ~1-2 s of a cold
start) for two small functions; detection needs neither. This module holds the three nets and `detect_face` of
facenet-pytorch 2.5.3 for one image, with its weights read from the installed wheel's `data/{p,r,o}net.pt` (located
with `importlib.util.find_spec`, which does not execute the package) and its torchvision NMS replaced by an equal
one in numpy. Every step keeps facenet-pytorch's arithmetic and order, so boxes, probabilities and landmarks are
those of `facenet_pytorch.MTCNN(...).detect(image, landmarks=True)` (tests/test_mtcnn.py compares them).

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

import importlib.util
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.functional import interpolate

MIN_FACE_SIZE = 20  # pixels: the smallest face the image pyramid looks for
THRESHOLDS = (0.6, 0.7, 0.7)  # face probability each stage (P-, R-, O-net) requires
FACTOR = 0.709  # scale step of the image pyramid
NET_BATCH = 512  # R- and O-net candidates per forward pass, as facenet-pytorch's fixed_batch_process


def weights_file(net: str) -> Path:
    """facenet-pytorch's shipped weights of `net` ("pnet", "rnet" or "onet"), found without importing the package."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("facenet-pytorch is not installed: its wheel ships the MTCNN weights")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{net}.pt"


def _load_weights(module: nn.Module, net: str) -> None:
    # the files are plain state dicts of float32 tensors: the safe (weights_only) unpickler reads them
    module.load_state_dict(torch.load(weights_file(net), map_location="cpu", weights_only=True))


class PNet(nn.Module):
    """Proposal net: fully convolutional over each pyramid level; a box offset and a face probability per 12x12 cell."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)
        self.softmax4_1 = nn.Softmax(dim=1)
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)
        _load_weights(self, "pnet")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prelu1(self.conv1(x))
        x = self.pool1(x)
        x = self.prelu2(self.conv2(x))
        x = self.prelu3(self.conv3(x))
        return self.conv4_2(x), self.softmax4_1(self.conv4_1(x))


class RNet(nn.Module):
    """Refinement net: 24x24 candidates -> box offset, face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(576, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)
        self.softmax5_1 = nn.Softmax(dim=1)
        self.dense5_2 = nn.Linear(128, 4)
        _load_weights(self, "rnet")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = x.permute(0, 3, 2, 1).contiguous()  # the weights were converted from a width-major (Caffe) layout
        x = self.prelu4(self.dense4(x.view(x.shape[0], -1)))
        return self.dense5_2(x), self.softmax5_1(self.dense5_1(x))


class ONet(nn.Module):
    """Output net: 48x48 candidates -> box offset, five landmarks (x then y, relative to the box), face probability."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(1152, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)
        self.softmax6_1 = nn.Softmax(dim=1)
        self.dense6_2 = nn.Linear(256, 4)
        self.dense6_3 = nn.Linear(256, 10)
        _load_weights(self, "onet")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = x.permute(0, 3, 2, 1).contiguous()
        x = self.prelu5(self.dense5(x.view(x.shape[0], -1)))
        return self.dense6_2(x), self.dense6_3(x), self.softmax6_1(self.dense6_1(x))


class MTCNN:
    """facenet-pytorch's MTCNN detector for one image; build once, reuse (construction loads the weights)."""

    def __init__(self, min_face_size: int = MIN_FACE_SIZE, thresholds: tuple[float, float, float] = THRESHOLDS,
                 factor: float = FACTOR, device: str = "cpu") -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        self.device = torch.device(device)
        self.pnet, self.rnet, self.onet = (net.to(self.device).eval() for net in (PNet(), RNet(), ONet()))

    def detect(self, image: Image.Image | np.ndarray, landmarks: bool = False):
        """Faces of an RGB image (PIL, or uint8 H x W x 3), largest box first, as facenet's `MTCNN.detect`:
        boxes (n, 4) x1 y1 x2 y2, probabilities (n,) and with `landmarks` the five points (n, 5, 2), float32;
        no face: (None, [None], None). An image smaller than the minimum face size has none."""
        with torch.inference_mode():
            found, points = detect_face(np.asarray(image, dtype=np.uint8), self.min_face_size, self.pnet, self.rnet,
                                        self.onet, self.thresholds, self.factor, self.device)
        if len(found) == 0:
            return (None, [None], None) if landmarks else (None, [None])
        order = np.argsort((found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1]))[::-1]  # facenet's select_largest
        found, points = found[order], points[order]
        return (found[:, :4], found[:, 4], points) if landmarks else (found[:, :4], found[:, 4])


def detect_face(image: np.ndarray, min_face_size: float, pnet: PNet, rnet: RNet, onet: ONet,
                thresholds: tuple[float, float, float], factor: float,
                device: torch.device) -> tuple[np.ndarray, np.ndarray]:
    """The three MTCNN stages on one uint8 (H, W, 3) image: (n, 5) boxes with probability, (n, 5, 2) landmarks."""
    # (1, 3, H, W) over channels-last memory, as facenet lays it out: resampling follows the layout
    images = torch.as_tensor(image.copy(), device=device).unsqueeze(0).permute(0, 3, 1, 2).float()
    height, width = images.shape[2:4]
    scale = 12.0 / min_face_size
    shortest = min(height, width) * scale
    scales = []
    while shortest >= 12:
        scales.append(scale)
        scale *= factor
        shortest *= factor
    if not scales:  # no pyramid level holds a 12-pixel cell (facenet fails in torch.cat here)
        return np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)

    # first stage: P-net over the pyramid, NMS within each scale, then across scales
    boxes, picks, offset = [], [], 0
    for scale in scales:
        level = _resample(images, (int(height * scale + 1), int(width * scale + 1)))
        reg, probs = pnet(_standardise(level))
        boxes_scale = _generate_bounding_box(reg, probs[:, 1], scale, thresholds[0])
        boxes.append(boxes_scale)
        picks.append(_nms(boxes_scale[:, :4], boxes_scale[:, 4], 0.5) + offset)
        offset += boxes_scale.shape[0]
    boxes = torch.cat(boxes, dim=0)[torch.cat(picks, dim=0)]
    boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    boxes = torch.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                         boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh,
                         boxes[:, 4]]).permute(1, 0)
    boxes = _rerec(boxes)

    # second stage: R-net on 24x24 candidates
    if len(boxes) > 0:
        reg, probs = _in_batches(rnet, _candidates(images, boxes, width, height, 24))
        reg, score = reg.permute(1, 0), probs.permute(1, 0)[1, :]
        passed = score > thresholds[1]
        boxes = torch.cat((boxes[passed, :4], score[passed].unsqueeze(1)), dim=1)
        reg = reg[:, passed].permute(1, 0)
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
        boxes = _rerec(_bbreg(boxes[pick], reg[pick]))

    # third stage: O-net on 48x48 candidates, landmarks, NMS by overlap of the smaller box
    points = torch.zeros(0, 5, 2, device=device)
    if len(boxes) > 0:
        reg, marks, probs = _in_batches(onet, _candidates(images, boxes, width, height, 48))
        reg, marks, score = reg.permute(1, 0), marks.permute(1, 0), probs.permute(1, 0)[1, :]
        passed = score > thresholds[2]
        marks = marks[:, passed]
        boxes = torch.cat((boxes[passed, :4], score[passed].unsqueeze(1)), dim=1)
        reg = reg[:, passed].permute(1, 0)
        box_w = boxes[:, 2] - boxes[:, 0] + 1
        box_h = boxes[:, 3] - boxes[:, 1] + 1
        points_x = box_w.repeat(5, 1) * marks[:5, :] + boxes[:, 0].repeat(5, 1) - 1
        points_y = box_h.repeat(5, 1) * marks[5:10, :] + boxes[:, 1].repeat(5, 1) - 1
        points = torch.stack((points_x, points_y)).permute(2, 1, 0)
        boxes = _bbreg(boxes, reg)
        pick = _nms(boxes[:, :4], boxes[:, 4], 0.7, smaller_box=True)
        boxes, points = boxes[pick], points[pick]
    return boxes.cpu().numpy(), points.cpu().numpy()


def _standardise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _resample(pixels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return interpolate(pixels, size=size, mode="area")


def _in_batches(net: nn.Module, candidates: torch.Tensor) -> tuple[torch.Tensor, ...]:
    outputs = [net(candidates[start:start + NET_BATCH]) for start in range(0, len(candidates), NET_BATCH)]
    return tuple(torch.cat(parts, dim=0) for parts in zip(*outputs))


def _candidates(images: torch.Tensor, boxes: torch.Tensor, width: int, height: int, size: int) -> torch.Tensor:
    """Each box's pixels (clipped to the image) resampled to size x size and standardised."""
    y, ey, x, ex = _pad(boxes, width, height)
    # indexed then unsqueezed, as facenet does: the batch stride this leaves makes torch resample the crop in
    # contiguous (not channels-last) order, which sums the pixels in another order: the last bits of the result
    crops = [_resample(images[0, :, (y[k] - 1):ey[k], (x[k] - 1):ex[k]].unsqueeze(0), (size, size))
             for k in range(len(y)) if ey[k] > (y[k] - 1) and ex[k] > (x[k] - 1)]
    return _standardise(torch.cat(crops, dim=0))


def _generate_bounding_box(reg: torch.Tensor, probs: torch.Tensor, scale: float, threshold: float) -> torch.Tensor:
    """P-net cells at or above `threshold` -> (n, 9) boxes in image pixels: x1 y1 x2 y2, probability, 4 offsets."""
    stride, cell = 2, 12
    reg = reg.permute(1, 0, 2, 3)
    mask = probs >= threshold
    mask_inds = mask.nonzero()
    score = probs[mask]
    reg = reg[:, mask].permute(1, 0)
    bb = mask_inds[:, 1:].type(reg.dtype).flip(1)
    q1 = ((stride * bb + 1) / scale).floor()
    q2 = ((stride * bb + cell - 1 + 1) / scale).floor()
    return torch.cat([q1, q2, score.unsqueeze(1), reg], dim=1)


def _bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply a net's box offsets (fractions of the box's width and height) in place."""
    if reg.shape[1] == 1:
        reg = torch.reshape(reg, (reg.shape[2], reg.shape[3]))
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    b1 = boxes[:, 0] + reg[:, 0] * w
    b2 = boxes[:, 1] + reg[:, 1] * h
    b3 = boxes[:, 2] + reg[:, 2] * w
    b4 = boxes[:, 3] + reg[:, 3] * h
    boxes[:, :4] = torch.stack([b1, b2, b3, b4]).permute(1, 0)
    return boxes


def _pad(boxes: torch.Tensor, width: int, height: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Integer box corners clipped to the image (1-based starts, as MTCNN's Matlab origin)."""
    boxes = boxes.trunc().int().cpu().numpy()
    x, y, ex, ey = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    x[x < 1] = 1
    y[y < 1] = 1
    ex[ex > width] = width
    ey[ey > height] = height
    return y, ey, x, ex


def _rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Make boxes square (side: the longer one) about their centres, in place."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = torch.max(w, h)
    boxes[:, 0] = boxes[:, 0] + w * 0.5 - side * 0.5
    boxes[:, 1] = boxes[:, 1] + h * 0.5 - side * 0.5
    boxes[:, 2:4] = boxes[:, :2] + side.repeat(2, 1).permute(1, 0)
    return boxes


def _nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float, smaller_box: bool = False) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    By default torchvision.ops.nms (areas x2 - x1, suppress IoU > threshold, stable descending sort); with
    `smaller_box`, facenet's nms_numpy "Min" (areas + 1, overlap over the smaller box's area, ascending argsort
    taken from the end). float32 throughout, as both do.
    """
    corners = boxes.detach().cpu().numpy().astype(np.float32, copy=False)
    values = scores.detach().cpu().numpy().astype(np.float32, copy=False)
    x1, y1, x2, y2 = corners[:, 0], corners[:, 1], corners[:, 2], corners[:, 3]
    plus = np.float32(1.0 if smaller_box else 0.0)
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(values)[::-1] if smaller_box else np.argsort(-values, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        w = np.maximum(np.float32(0.0), np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + plus)
        h = np.maximum(np.float32(0.0), np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + plus)
        inter = w * h
        overlap = inter / (np.minimum(area[best], area[rest]) if smaller_box else area[best] + area[rest] - inter)
        keep.append(best)
        order = rest[overlap <= threshold]
    return torch.as_tensor(np.asarray(keep, dtype=np.int64), device=boxes.device)
