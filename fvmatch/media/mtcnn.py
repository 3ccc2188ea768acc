"""MTCNN face detection in numpy (boxes, probabilities, five landmarks), without torch or facenet-pytorch's package.

Importing torch costs 1.3-2.1 s of every cold start, and facenet-pytorch's package adds torchvision; detection needs
neither. This module holds `detect_face` of facenet-pytorch 2.5.3 for one image (its three nets: mtcnn_nets.py),
computed in float32 with numpy: the image pyramid and the candidates' crops resampled as torch's
`interpolate(mode="area")` does, torchvision's NMS written out. The weights are those shipped in facenet-pytorch's
wheel (`data/{p,r,o}net.pt`), converted once into models/weights/mtcnn.safetensors (MIT notice: mtcnn.LICENSE;
models/weights/convert_pretrained.py), so that neither the package nor torch is needed to detect. Every step keeps
facenet-pytorch's arithmetic and order, so boxes, probabilities and landmarks are those of `facenet_pytorch.MTCNN(...).detect(image, landmarks=True)` within float32
rounding (tests/test_mtcnn.py compares them).

Adapted from facenet-pytorch (https://github.com/timesler/facenet-pytorch), models/mtcnn.py and
models/utils/detect_face.py, Copyright (c) 2019 Timothy Esler, under the MIT License, whose full text is in
mtcnn_nets.py (the two modules ship together).
"""
from __future__ import annotations

import numpy as np
from PIL import Image
from threadpoolctl import ThreadpoolController

from fvmatch.media.mtcnn_nets import ONet, PNet, RNet, load_weights

MIN_FACE_SIZE = 20  # pixels: the smallest face the image pyramid looks for
THRESHOLDS = (0.6, 0.7, 0.7)  # face probability each stage (P-, R-, O-net) requires
FACTOR = 0.709  # scale step of the image pyramid
NET_BATCH = 64  # R- and O-net candidates per forward pass: bounds the patch matrices (O-net: 0.5 MB a candidate)


# ----- detection ------------------------------------------------------------------------------------------------
class MTCNN:
    """facenet-pytorch's MTCNN detector for one image; build once, reuse (construction loads the weights)."""

    def __init__(self, min_face_size: int = MIN_FACE_SIZE, thresholds: tuple[float, float, float] = THRESHOLDS,
                 factor: float = FACTOR) -> None:
        self.min_face_size = min_face_size
        self.thresholds = tuple(thresholds)
        self.factor = factor
        weights = load_weights()
        self.pnet, self.rnet, self.onet = PNet(weights["pnet"]), RNet(weights["rnet"]), ONet(weights["onet"])
        # the matrix products are small (a band of patches) and run on one BLAS thread: with two, each product waits
        # for both threads, and where the other core is busy OpenBLAS's waiting (it spins, as OpenMP does by
        # default: cli.py) made a cold face query 2-10x slower (1.9-3.8 s against 5-22 s, measured on 2 busy cores)
        self._blas = ThreadpoolController()

    def detect(self, image: Image.Image | np.ndarray, landmarks: bool = False, min_face_size: float | None = None):
        """Faces of an RGB image (PIL, or uint8 H x W x 3), largest box first, as facenet's `MTCNN.detect`:
        boxes (n, 4) x1 y1 x2 y2, probabilities (n,) and with `landmarks` the five points (n, 5, 2), float32;
        no face: (None, [None], None). An image smaller than the minimum face size has none. `min_face_size`: the
        smallest face looked for this once (the pyramid starts there), at least the detector's own."""
        smallest = max(self.min_face_size, min_face_size or 0.0)
        with self._blas.limit(limits=1, user_api="blas"):
            found, points = detect_face(np.asarray(image, dtype=np.uint8), smallest, self.pnet, self.rnet,
                                        self.onet, self.thresholds, self.factor)
        if len(found) == 0:
            return (None, [None], None) if landmarks else (None, [None])
        order = np.argsort((found[:, 2] - found[:, 0]) * (found[:, 3] - found[:, 1]))[::-1]  # facenet's select_largest
        found, points = found[order], points[order]
        return (found[:, :4], found[:, 4], points) if landmarks else (found[:, :4], found[:, 4])


def detect_face(image: np.ndarray, min_face_size: float, pnet: PNet, rnet: RNet, onet: ONet,
                thresholds: tuple[float, float, float], factor: float) -> tuple[np.ndarray, np.ndarray]:
    """The three MTCNN stages on one uint8 (H, W, 3) image: (n, 5) boxes with probability, (n, 5, 2) landmarks."""
    no_face = np.zeros((0, 5), np.float32), np.zeros((0, 5, 2), np.float32)
    height, width = image.shape[:2]
    scales = _pyramid_scales(height, width, min_face_size, factor)
    if not scales:  # no pyramid level holds a 12-pixel cell
        return no_face
    pixels = _AreaSampler(image)
    boxes = _with_pixels(_propose(pixels, scales, pnet, thresholds[0]), pixels)
    if len(boxes) > 0:
        boxes = _with_pixels(_refine(pixels, boxes, rnet, thresholds[1]), pixels)
    if len(boxes) == 0:
        return no_face
    return _finish(pixels, boxes, onet, thresholds[2])


def _pyramid_scales(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """The pyramid's scales: the first maps the minimum face size to P-net's 12-pixel cell, each next one `factor`
    smaller, down to the last at which the image's shorter side still holds a cell."""
    scale = 12.0 / min_face_size
    shortest = min(height, width) * scale
    scales = []
    while shortest >= 12:
        scales.append(scale)
        scale *= factor
        shortest *= factor
    return scales


def _propose(pixels: _AreaSampler, scales: list[float], pnet: PNet, threshold: float) -> np.ndarray:
    """First stage: P-net over the pyramid, NMS within each scale, then across scales; the boxes moved by their
    offsets and made square: (n, 5) x1 y1 x2 y2 probability."""
    per_scale = []
    for scale in scales:
        size = (int(pixels.height * scale + 1), int(pixels.width * scale + 1))
        offsets, probabilities = pnet(_standardise(pixels.level(size)))
        boxes = _cell_boxes(offsets[0], probabilities[0, :, :, 1], scale, threshold)
        per_scale.append(boxes[_nms(boxes[:, :4], boxes[:, 4], 0.5)])
    boxes = np.concatenate(per_scale)
    boxes = boxes[_nms(boxes[:, :4], boxes[:, 4], 0.7)]
    # P-net's offsets are fractions of the box's x2 - x1 (not + 1, unlike the later stages')
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    moved = np.stack([boxes[:, 0] + boxes[:, 5] * width, boxes[:, 1] + boxes[:, 6] * height,
                      boxes[:, 2] + boxes[:, 7] * width, boxes[:, 3] + boxes[:, 8] * height, boxes[:, 4]], axis=1)
    return _square(moved)


def _cell_boxes(offsets: np.ndarray, probabilities: np.ndarray, scale: float, threshold: float) -> np.ndarray:
    """P-net cells at or above `threshold` -> (n, 9) boxes in image pixels: x1 y1 x2 y2, probability, 4 offsets."""
    stride, cell = 2, 12
    rows, columns = np.nonzero(probabilities >= np.float32(threshold))  # row-major, as torch's nonzero
    corner = np.stack([columns, rows], axis=1).astype(np.float32)
    scale = np.float32(scale)  # torch divides float32 tensors by a Python float in float32
    top_left = np.floor((stride * corner + 1) / scale)
    bottom_right = np.floor((stride * corner + cell - 1 + 1) / scale)
    return np.concatenate([top_left, bottom_right, probabilities[rows, columns, None], offsets[rows, columns]], axis=1)


def _refine(pixels: _AreaSampler, boxes: np.ndarray, rnet: RNet, threshold: float) -> np.ndarray:
    """Second stage: R-net on 24x24 crops of the candidates; those above `threshold`, NMS, moved, made square."""
    offsets, probabilities = _in_batches(rnet, pixels, boxes, 24)
    score = probabilities[:, 1]
    passed = score > np.float32(threshold)
    boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
    offsets = offsets[passed]
    pick = _nms(boxes[:, :4], boxes[:, 4], 0.7)
    return _square(_move(boxes[pick], offsets[pick]))


def _finish(pixels: _AreaSampler, boxes: np.ndarray, onet: ONet, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Third stage: O-net on 48x48 crops; those above `threshold`, their landmarks, moved boxes, NMS by overlap of
    the smaller box."""
    offsets, marks, probabilities = _in_batches(onet, pixels, boxes, 48)
    score = probabilities[:, 1]
    passed = score > np.float32(threshold)
    boxes = np.concatenate([boxes[passed, :4], score[passed, None]], axis=1)
    offsets, marks = offsets[passed], marks[passed]
    # landmarks are fractions of the box's size (+ 1, 1-based as MTCNN's Matlab origin) from its corner
    box_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    box_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = np.stack([box_w * marks[:, :5] + boxes[:, 0:1] - 1, box_h * marks[:, 5:] + boxes[:, 1:2] - 1], axis=2)
    boxes = _move(boxes, offsets)
    pick = _nms(boxes[:, :4], boxes[:, 4], 0.7, smaller_box=True)
    return boxes[pick], points[pick]


def _in_batches(net: RNet | ONet, pixels: _AreaSampler, boxes: np.ndarray, size: int) -> tuple[np.ndarray, ...]:
    """`net`'s outputs for the boxes' crops, size x size, standardised, NET_BATCH at a time."""
    outputs = [net(_standardise(pixels.crops(_crop_bounds(boxes[start:start + NET_BATCH], pixels), size)))
               for start in range(0, len(boxes), NET_BATCH)]
    return tuple(np.concatenate(parts) for parts in zip(*outputs))


def _standardise(pixels: np.ndarray) -> np.ndarray:
    pixels -= np.float32(127.5)
    pixels *= np.float32(0.0078125)
    return pixels


def _crop_bounds(boxes: np.ndarray, pixels: _AreaSampler) -> np.ndarray:
    """(n, 4) integer bounds top, bottom, left, right (exclusive ends) of each box, truncated and clipped to the
    image as facenet's `pad` (1-based starts, as MTCNN's Matlab origin)."""
    corners = np.trunc(boxes[:, :4]).astype(np.int64)
    left, top = np.maximum(corners[:, 0], 1) - 1, np.maximum(corners[:, 1], 1) - 1
    right, bottom = np.minimum(corners[:, 2], pixels.width), np.minimum(corners[:, 3], pixels.height)
    return np.stack([top, bottom, left, right], axis=1)


def _with_pixels(boxes: np.ndarray, pixels: _AreaSampler) -> np.ndarray:
    """The boxes whose crop, clipped to the image, is not empty. facenet drops the others from the crops but not from
    the boxes, which then no longer line up with the net's outputs; such a box lies wholly outside the image."""
    top, bottom, left, right = _crop_bounds(boxes, pixels).T
    return boxes[(bottom > top) & (right > left)]


def _move(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Apply a net's box offsets (fractions of the box's width and height, + 1) in place."""
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    boxes[:, :4] = np.stack([boxes[:, 0] + offsets[:, 0] * width, boxes[:, 1] + offsets[:, 1] * height,
                             boxes[:, 2] + offsets[:, 2] * width, boxes[:, 3] + offsets[:, 3] * height], axis=1)
    return boxes


def _square(boxes: np.ndarray) -> np.ndarray:
    """Make boxes square (side: the longer one) about their centres, in place."""
    height = boxes[:, 3] - boxes[:, 1]
    width = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(width, height)
    boxes[:, 0] = boxes[:, 0] + width * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 1] = boxes[:, 1] + height * np.float32(0.5) - side * np.float32(0.5)
    boxes[:, 2:4] = boxes[:, :2] + side[:, None]
    return boxes


def _nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, smaller_box: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    By default torchvision.ops.nms (areas x2 - x1, suppress IoU > threshold, stable descending sort); with
    `smaller_box`, facenet's nms_numpy "Min" (areas + 1, overlap over the smaller box's area, ascending argsort
    taken from the end). float32 throughout, as both do.
    """
    x1, y1, x2, y2 = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    plus = np.float32(1.0 if smaller_box else 0.0)
    area = (x2 - x1 + plus) * (y2 - y1 + plus)
    order = np.argsort(scores)[::-1] if smaller_box else np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        w = np.maximum(np.float32(0.0), np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + plus)
        h = np.maximum(np.float32(0.0), np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + plus)
        inter = w * h
        overlap = inter / (np.minimum(area[best], area[rest]) if smaller_box else area[best] + area[rest] - inter)
        keep.append(best)
        order = rest[overlap <= threshold]
    return np.asarray(keep, dtype=np.int64)


class _AreaSampler:
    """Area resampling of regions of one image, as torch's `interpolate(mode="area")` computes it: adaptive average
    pooling (output pixel i of n over a length L averages inputs floor(i L / n) .. ceil((i + 1) L / n) - 1), each
    bin's sum divided by its height, then by its width, in float32. The sums come from the image's summed-area table
    in integers, exact, as torch's float32 sums are below 2**24: the results are then torch's bit for bit."""

    def __init__(self, image: np.ndarray) -> None:
        self.height, self.width, channels = image.shape
        total = self.height * self.width * 255
        self.table = np.zeros((self.height + 1, self.width + 1, channels), np.int32 if total < 2**31 else np.int64)
        # along rows first, then down the columns in place: twice as fast as the other order
        np.cumsum(image, axis=1, dtype=self.table.dtype, out=self.table[1:, 1:])
        np.cumsum(self.table, axis=0, out=self.table)

    def level(self, size: tuple[int, int]) -> np.ndarray:
        """The whole image resampled to size (h, w): (1, h, w, C) float32. Row bins, then column bins: two
        look-ups per output pixel, in contiguous rows of the table."""
        row_start, row_end = _bins(0, self.height, size[0])
        column_start, column_end = _bins(0, self.width, size[1])
        strips = self.table[row_end] - self.table[row_start]
        total = (strips[:, column_end] - strips[:, column_start]).astype(np.float32)
        total /= (row_end - row_start).astype(np.float32)[:, None, None]
        total /= (column_end - column_start).astype(np.float32)[None, :, None]
        return total[None]

    def crops(self, bounds: np.ndarray, size: int) -> np.ndarray:
        """Regions (n, 4) top, bottom, left, right (exclusive ends), each resampled to size x size: (n, size, size, C)
        float32."""
        top, bottom, left, right = (bounds[:, k, None] for k in range(4))
        row_start, row_end = _bins(top, bottom, size)
        column_start, column_end = _bins(left, right, size)
        rows_a, rows_b = row_start[:, :, None], row_end[:, :, None]
        columns_a, columns_b = column_start[:, None, :], column_end[:, None, :]
        table = self.table
        total = (table[rows_b, columns_b] - table[rows_a, columns_b] - table[rows_b, columns_a]
                 + table[rows_a, columns_a]).astype(np.float32)
        total /= (rows_b - rows_a).astype(np.float32)[..., None]
        total /= (columns_b - columns_a).astype(np.float32)[..., None]
        return total


def _bins(start: np.ndarray | int, end: np.ndarray | int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Adaptive pooling's `count` bins over start..end (numbers, or columns of (n, 1) arrays): first and
    past-the-end indices."""
    index = np.arange(count)
    length = end - start
    return start + (index * length) // count, start - (-(index + 1) * length // count)
