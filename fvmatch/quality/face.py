"""Quality of a detected face: its size in pixels, sharpness, detection probability and the JPEG quality of its file.

Eye distance is the size figure of face-image standards (ISO/IEC 19794-5, ICAO): it does not depend on how tight the
detector's box is. Sharpness is read on the face alone, brought to a fixed size, so that a sharp face reads alike
whether it is 80 or 400 pixels wide; a face smaller than that size has less detail, and reads lower.
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

SHARPNESS_SIZE = 64  # the face box is resized to this square before its sharpness is read
# sharpness: the Laplacian's standard deviation over the face's own (grey-level) standard deviation, x 100: the share
# of the face's contrast in its finest detail, so that lighting and exposure do not change it
SHARPNESS_SCALE = 100.0
# the IJG (libjpeg) standard luminance quantisation table (ITU-T T.81 Annex K, table K.1), in natural order:
# every encoder built on libjpeg (Pillow, most cameras' and phones' software) scales it by its quality setting
IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
])
# older Pillow versions give the tables in the file's zigzag order
ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
    54, 47, 55, 62, 63,
])
# a table further than this from every scaled IJG table (mean relative difference per coefficient) is another
# encoder's own (some cameras, Photoshop): its quality is not on the IJG scale, and none is given
MAX_TABLE_DIFFERENCE = 0.15


def ijg_table(quality: int) -> np.ndarray:
    """The luminance quantisation table libjpeg writes at `quality` (1-100), in natural order."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((IJG_LUMINANCE * scale + 50) // 100, 1, 255)


IJG_TABLES = np.stack([ijg_table(quality) for quality in range(1, 101)])


def jpeg_quality_estimate(image: Image.Image) -> int | None:
    """The IJG quality (1-100) whose luminance table is closest to the JPEG's own; None for an image that is not
    a JPEG, or whose table is no scaled IJG table. Needs the image as opened (`Image.open`), before any convert."""
    tables = getattr(image, "quantization", None)
    if image.format != "JPEG" or not tables or 0 not in tables or len(tables[0]) != 64:
        return None
    table = np.asarray(tables[0], dtype=np.float64)
    best_difference, best_quality = math.inf, None
    for order in (table, table[np.argsort(ZIGZAG)]):
        differences = np.mean(np.abs(IJG_TABLES - order) / IJG_TABLES, axis=1)
        index = int(np.argmin(differences))
        if differences[index] < best_difference:
            best_difference, best_quality = float(differences[index]), index + 1
    return best_quality if best_difference <= MAX_TABLE_DIFFERENCE else None


def eye_distance_px(landmarks) -> float:
    """Pixels between the centres of the eyes (MTCNN's first two landmarks)."""
    (left_x, left_y), (right_x, right_y) = landmarks[0], landmarks[1]
    return math.hypot(right_x - left_x, right_y - left_y)


def sharpness(image: np.ndarray, box) -> float:
    """The face's sharpness: its box cut from the (H, W, 3) uint8 RGB image, made grey and resized to
    SHARPNESS_SIZE square, then the Laplacian's standard deviation over the grey levels' (x 100). Higher is sharper;
    0 for a flat or empty box."""
    height, width = image.shape[:2]
    left, top = max(0, int(box[0])), max(0, int(box[1]))
    right, bottom = min(width, int(math.ceil(box[2]))), min(height, int(math.ceil(box[3])))
    if right - left < 2 or bottom - top < 2:
        return 0.0
    face = Image.fromarray(np.ascontiguousarray(image[top:bottom, left:right])).convert("L")
    # area averaging when shrinking (no aliasing adds false detail), bilinear when enlarging (no detail is invented)
    method = Image.BOX if face.width >= SHARPNESS_SIZE else Image.BILINEAR
    grey = np.asarray(face.resize((SHARPNESS_SIZE, SHARPNESS_SIZE), method), dtype=np.float64)
    laplacian = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1])
    contrast = float(grey.std())
    return SHARPNESS_SCALE * float(laplacian.std()) / contrast if contrast > 0 else 0.0


def face_quality(image: np.ndarray, box, landmarks, probability: float, jpeg_quality: int | None) -> dict:
    """The figures stored with a face's embedding (plain JSON numbers): `eye_distance_px`, `face_px` (box width),
    `sharpness` (see `sharpness`: higher is sharper, it falls as blur grows), `detection_probability`, `jpeg_quality`
    (as given: `jpeg_quality_estimate` of the file, None where unknown)."""
    return {
        "eye_distance_px": round(eye_distance_px(landmarks), 1),
        "face_px": round(float(box[2] - box[0]), 1),
        "sharpness": round(sharpness(image, box), 1),
        "detection_probability": round(float(probability), 4),
        "jpeg_quality": None if jpeg_quality is None else int(jpeg_quality),
    }


# face size bands by eye distance (px), for calibration by condition. MTCNN's eyes sit 0.475 of its box width apart
# (median of 250 real photos), so "small" is a face under ~32 px wide (CCTV stills, faces in a crowd), "medium"
# 32-64 px (degraded questioned photos), "large" the rest (every reference-quality photo of realmedia but 4)
FACE_BANDS = (("small", 15.0), ("medium", 30.0), ("large", float("inf")))


def face_band(quality: dict) -> str | None:
    """The size band of a face of these figures ("small", "medium", "large"), or None without an eye distance."""
    distance = quality.get("eye_distance_px")
    if distance is None:
        return None
    return next(name for name, below in FACE_BANDS if distance < below)
