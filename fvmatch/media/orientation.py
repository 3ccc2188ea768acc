"""Which way up a detected face stands: dlib's frontal HOG detector scored on the face's surroundings in four turns.

MTCNN finds faces lying on their side or upside down (p about 0.999 for a photo turned 180 degrees) and lays its
landmarks out as if the face stood upright, so neither its probability nor its landmarks tell which way up a face
is. dlib's frontal HOG detector was trained on upright faces only: it scores the square around MTCNN's box
(REGION_MARGIN times the box, resized to REGION_SIDE pixels) turned by 0, 90, 180 and 270 degrees, and a face is
turned when one turn scores at least MIN_TURNED_SCORE (the detector fires) and beats the image as it is by
MIN_TURN_MARGIN. Measured on all 250 photos of ../shared/realmedia/faces, each as it is and turned by 90, 180 and
270 degrees (the largest MTCNN face of each; MTCNN alone found it in 250, 70, 119 and 121 of them):

    score margins   upright photos: a turn beats the image as it is by at most 0.25; turned photos the detector
                    fires on (297 of the 310 MTCNN finds): the upright turn wins by at least 0.85, and every one of
                    the 297 is turned the right way; the detector fires on no turn for 13 turned and 5 upright photos
    time            18 ms of CPU a face (a 1434x2333 photo), and 9 ms to load the detector once

With fvmatch.media.image's use of it (a face MTCNN misses is looked for in the image turned each way, and kept only
if it stands upright there), `benchmarks/face_orientation.py` reads the 250 photos as they are unchanged, and of
those turned 90 / 180 / 270 degrees stands 243 / 242 / 242 upright, turns none the wrong way, leaves 4 / 5 / 4 as
they lie (the detector fires on no turn) and finds no face in 3 / 3 / 4.

The detector is read from `frontal_face_detector.svm`, dlib's own `get_frontal_face_detector()` saved by dlib
(tests/test_face_orientation.py checks they are the same bytes): building it from the copy compiled into dlib takes
0.22 s, reading the file a few ms, in a face query that takes about 1.2 s cold.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

# counter-clockwise degrees -> the transposition that turns an image so
TURNS = {90: Image.Transpose.ROTATE_90, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_270}
REGION_MARGIN = 2.0  # the square scored: this many times the face box's size, about the box's centre...
REGION_SIDE = 200  # ...resized to this many pixels (the face then spans ~100: the detector's window is 80)
MIN_TURNED_SCORE = 0.0  # dlib's own detection threshold
MIN_TURN_MARGIN = 0.5  # midway between the largest upright margin (0.25) and the smallest turned one (0.85)
NO_SCORE = -10.0  # a turn where the detector finds nothing even at ADJUST_THRESHOLD
ADJUST_THRESHOLD = -3.0
DETECTOR_FILE = Path(__file__).with_name("frontal_face_detector.svm")


@lru_cache(maxsize=1)
def frontal_detector():
    """dlib's frontal face detector (HOG), read from the saved copy (built from dlib's own when it is missing)."""
    import dlib

    if DETECTOR_FILE.is_file():
        return dlib.fhog_object_detector(str(DETECTOR_FILE))
    return dlib.get_frontal_face_detector()


def turn_scores(image: Image.Image, box) -> dict[int, float]:
    """The frontal detector's best score on the square around `box` (x1, y1, x2, y2) turned by each of 0, 90, 180
    and 270 degrees counter-clockwise."""
    x1, y1, x2, y2 = box
    half = REGION_MARGIN * float(np.sqrt(max(x2 - x1, 0.0) * max(y2 - y1, 0.0))) / 2
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    region = image.crop((round(centre_x - half), round(centre_y - half), round(centre_x + half),
                         round(centre_y + half))).resize((REGION_SIDE, REGION_SIDE), Image.BILINEAR)
    detector = frontal_detector()
    scores = {}
    for degrees in (0, *TURNS):
        pixels = np.asarray(region if degrees == 0 else region.transpose(TURNS[degrees]))
        _, found, _ = detector.run(np.ascontiguousarray(pixels), 0, ADJUST_THRESHOLD)
        scores[degrees] = float(max(found)) if len(found) else NO_SCORE
    return scores


def upright_turn(image: Image.Image, box) -> int:
    """Degrees (0, 90, 180 or 270, counter-clockwise) to turn `image` by for the face in `box` to stand upright:
    0 unless a turn clearly scores better (see the module's measurements)."""
    scores = turn_scores(image, box)
    best = max(TURNS, key=scores.get)
    if scores[best] >= MIN_TURNED_SCORE and scores[best] - scores[0] >= MIN_TURN_MARGIN:
        return best
    return 0


def stands_upright(image: Image.Image, box) -> bool:
    """Whether the face in `box` stands upright as it is: the detector fires on it (MIN_TURNED_SCORE) and no turn
    clearly scores better. What a face found only in a turned image must show to count."""
    scores = turn_scores(image, box)
    return scores[0] >= MIN_TURNED_SCORE and max(scores[degrees] for degrees in TURNS) - scores[0] < MIN_TURN_MARGIN
