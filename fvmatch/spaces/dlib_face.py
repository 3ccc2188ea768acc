"""The dlib-face space: dlib's ResNet face descriptor (128-D), with the weights `face-recognition-models` ships.

    prepare   MTCNN's box -> the box dlib's HOG detector would draw (HOG_STYLE_*) -> dlib's 5-point landmarks
              -> the 150x150 chip `dlib.get_face_chip` cuts (padding 0.25): the input the ResNet was trained on
    embed     the ResNet on chips (dlib batches them), each descriptor scaled to unit length (dlib's are ~1.5 long)
              so that cosine is the dot product
    model_id  sha256 of the bytes of shape_predictor_5_face_landmarks.dat followed by those of
              dlib_face_recognition_resnet_model_v1.dat

Only the 5-point predictor is used: the 68-point one was trained on data licensed for non-commercial use.

Why the box is mapped: the predictor and the ResNet were trained on HOG-detector boxes, which are square and sit
lower and tighter than MTCNN's. Measured on 250 real photos of 16 people (`.venv/bin/python
benchmarks/face_alignment.py`, ../shared/realmedia/faces; EER on the 245 photos every pipeline embeds, its
difference from the peer's with a 95% identity-bootstrap interval; landmarks: distance from those found from HOG's
own box, % of the eye distance, median / 90th percentile; CPU ms per photo on one thread, detection included):

    pipeline                                 failed  EER    vs peer         landmarks  ms/photo
    peer: face_recognition (HOG box)              5  1.33%                  0   / 0          168
    MTCNN box as it is                            0  1.07%  -0.39 .. +0.05  1.7 / 3.1        197
    MTCNN box mapped to HOG's (this module)       0  1.33%  -0.08 .. +0.10  0.5 / 1.2        201
    HOG on a crop around the face, else mapped    0  1.29%  -0.18 .. +0.08  0.5 / 1.1        211
    HOG on the whole image, else mapped           0  1.33%  +0.00 .. +0.00  0   / 0          245
    mapped, flip-averaged                         0  1.29%  -0.13 .. +0.19  0.5 / 1.2        328

On this set of mostly frontal photos every pipeline is within noise of the peer; on a harder set of web photos
raw MTCNN boxes cost 2.8 points of EER against HOG's (PITFALLS.md). The mapped box puts the landmarks as close to
HOG's as running HOG near the face does, costs nothing, and keeps every face MTCNN finds (HOG missed 5); flip
averaging doubles the ResNet's time for no measurable gain. Full table: benchmarks/face_alignment.py.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import numpy as np

from fvmatch.spaces import FACE_SPACE

CHIP_SIZE = 150
CHIP_PADDING = 0.25  # dlib's default, as in compute_face_descriptor(image, shape)
DESCRIPTOR_DIM = 128
SHAPE_PREDICTOR_FILE = "shape_predictor_5_face_landmarks.dat"
RESNET_FILE = "dlib_face_recognition_resnet_model_v1.dat"
# MTCNN box (x1, y1, x2, y2) -> HOG-style square box, in units of the MTCNN box's size sqrt(width * height):
# medians over the 245 real photos where both detectors found the face (benchmarks/face_alignment.py --fit;
# HOG: dlib.get_frontal_face_detector(), upsampled once). Spread (IQR) of the size ratio: 0.05.
HOG_STYLE_SIZE = 0.962
HOG_STYLE_SHIFT_X = -0.027
HOG_STYLE_SHIFT_Y = 0.095  # HOG's box is lower: it stops at the eyebrows and takes in the chin


def weight_files() -> tuple[Path, Path]:
    """The shape predictor's and the ResNet's files, in the order model_id hashes them."""
    # find_spec locates the package without running its __init__, which imports pkg_resources (gone from
    # recent setuptools) only to build these same paths
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("face-recognition-models is not installed (pip install face-recognition-models)")
    models = Path(next(iter(spec.submodule_search_locations))) / "models"
    return models / SHAPE_PREDICTOR_FILE, models / RESNET_FILE


def weights_sha256(paths: tuple[Path, ...]) -> str:
    """sha256 of the files' bytes, concatenated in the order given."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as file:
            while block := file.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def hog_style_box(box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
    """The (left, top, right, bottom) box dlib's HOG detector would draw around the face in MTCNN's `box`."""
    x1, y1, x2, y2 = box
    size = float(np.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0)))
    centre_x = (x1 + x2) / 2 + HOG_STYLE_SHIFT_X * size
    centre_y = (y1 + y2) / 2 + HOG_STYLE_SHIFT_Y * size
    half = HOG_STYLE_SIZE * size / 2
    return (round(centre_x - half), round(centre_y - half), round(centre_x + half), round(centre_y + half))


class DlibFaceSpace:
    """dlib's 5-point alignment and ResNet descriptor; build once (construction loads ~31 MB of weights)."""

    name = FACE_SPACE
    dim = DESCRIPTOR_DIM

    def __init__(self) -> None:
        import dlib

        shape_predictor_path, resnet_path = weight_files()
        self.model_id = weights_sha256((shape_predictor_path, resnet_path))
        self._dlib = dlib
        self._shape_predictor = dlib.shape_predictor(str(shape_predictor_path))
        self._resnet = dlib.face_recognition_model_v1(str(resnet_path))

    def prepare(self, image: np.ndarray, face) -> np.ndarray:
        """The aligned 150x150x3 uint8 chip of one MTCNN face (`face.box`) in an RGB uint8 (H, W, 3) image."""
        return self.chip(image, hog_style_box(face.box))

    def landmarks(self, image: np.ndarray, box: tuple[int, int, int, int]):
        """dlib's five landmarks (two corners of each eye, the base of the nose) for the face in a HOG-style
        (left, top, right, bottom) box, as a dlib.full_object_detection."""
        return self._shape_predictor(np.ascontiguousarray(image), self._dlib.rectangle(*(int(v) for v in box)))

    def chip(self, image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """The aligned chip for the face in a HOG-style (left, top, right, bottom) box."""
        image = np.ascontiguousarray(image)
        return self._dlib.get_face_chip(image, self.landmarks(image, box), size=CHIP_SIZE, padding=CHIP_PADDING)

    def embed(self, chips: np.ndarray) -> np.ndarray:
        """Chips (n, 150, 150, 3) uint8 -> unit vectors (n, 128) float32."""
        chips = np.asarray(chips)
        if chips.dtype != np.uint8 or chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected uint8 chips (n, {CHIP_SIZE}, {CHIP_SIZE}, 3), got {chips.dtype} {chips.shape}")
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        descriptors = self._resnet.compute_face_descriptor([np.ascontiguousarray(chip) for chip in chips])
        vectors = np.array(descriptors, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
