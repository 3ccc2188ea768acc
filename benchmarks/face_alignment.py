"""Which box the dlib-face space should give dlib's 5-point predictor for an MTCNN face, measured on real photos.

Run: .venv/bin/python benchmarks/face_alignment.py [DIR] [--fit]
DIR holds <identity>/<photo> folders (default: ../shared/realmedia/faces). The peer needs the face_recognition
package (pip install --no-deps face_recognition; it loads all its models at import, the 68-point predictor too,
which nothing here uses). It first prints the MTCNN -> HOG box map fitted on DIR (the constants
dlib_face.HOG_STYLE_* hold); --fit stops there.

Every pipeline takes one face per photo: the largest MTCNN face (fvmatch's FaceDetector), or for the peer the
largest HOG face. Pipelines:
    peer            face_recognition as it is: HOG detector (upsampled once), 5-point model "small", num_jitters=1
    mtcnn-box       MTCNN's box as the predictor's rectangle
    mapped-box      MTCNN's box mapped to HOG's geometry (dlib_face.hog_style_box: the space's `prepare`)
    hybrid-full     HOG's box (whole image, upsampled once) where it overlaps the MTCNN face, else the mapped box
    hybrid-crop     HOG on a crop around the mapped box, scaled so the face is ~90 px, else the mapped box
    ... +flip       the chip and its mirror image embedded, averaged, renormalised
then the predictor's landmarks -> dlib.get_face_chip(size=150, padding=0.25) -> ResNet -> unit vector.

Columns: failed (no face); AUC, EER over all pairs of the photos the pipeline embeds; leave-one-out rank-1
(every photo against all others); EER on the photos every pipeline embeds, and its difference from the peer's
with a 95% identity-bootstrap interval; landmarks: mean distance of the five landmarks from those found from
HOG's own box, in % of the eye-centre distance (median / 90th percentile, photos where HOG finds the face);
CPU ms per photo (process time, one thread, decoding excluded): detection (MTCNN or HOG), alignment (any
extra HOG, predictor, chip), ResNet, and the total (mean; median in brackets).

Measured with `.venv/bin/python benchmarks/face_alignment.py` on a 2-core CPU shared with other jobs (hence CPU
time, not wall time):

    MTCNN -> HOG box map, 245 faces found by both: HOG_STYLE_SIZE = 0.962 (IQR 0.050), HOG_STYLE_SHIFT_X = -0.027, HOG_STYLE_SHIFT_Y = 0.095

    250 photos of 16 people in ../shared/realmedia/faces

    pipeline             failed    AUC    EER rank-1 EER common vs peer [95% CI]  landmarks detect  align ResNet total (median)
    ---------------------------------------------------------------------------------------------------------------------------
    peer                      5 0.9992  1.33%  1.000      1.33%   +0.00 .. +0.00      0 / 0     42      0    126    168 (146)
    mtcnn-box                 0 0.9992  1.19%  1.000      1.07%   -0.39 .. +0.05  1.7 / 3.1     73      3    122    197 (172)
    mtcnn-box +flip           0 0.9991  1.36%  0.996      1.24%   -0.20 .. +0.12  1.7 / 3.1     73      3    243    319 (293)
    mapped-box                0 0.9990  1.44%  1.000      1.33%   -0.08 .. +0.10  0.5 / 1.2     73      2    127    201 (176)
    mapped-box +flip          0 0.9990  1.40%  1.000      1.29%   -0.13 .. +0.19  0.5 / 1.2     73      2    253    328 (303)
    hybrid-full               0 0.9990  1.44%  1.000      1.33%   +0.00 .. +0.00  0.0 / 0.0     73     44    128    245 (188)
    hybrid-full +flip         0 0.9990  1.40%  1.000      1.29%   -0.09 .. +0.25  0.0 / 0.0     73     44    256    373 (316)
    hybrid-crop               0 0.9991  1.38%  1.000      1.29%   -0.18 .. +0.08  0.5 / 1.1     73      6    132    211 (185)
    hybrid-crop +flip         0 0.9991  1.37%  1.000      1.28%   -0.15 .. +0.14  0.5 / 1.1     73      6    264    343 (317)

All within noise of the peer here (mostly frontal photos); the space uses mapped-box: HOG's landmarks as closely as
hybrid-crop, no extra cost (1.2x the peer's time per photo, MTCNN's detection being the difference), no HOG misses.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import dlib
import numpy as np
import torch
from PIL import Image

from fvmatch.evaluation.metrics import (auc, equal_error_rate, identity_resamples, pair_weights,
                                        weighted_eer)
from fvmatch.media.image import IMAGE_SUFFIXES, FaceDetector, load_image
from fvmatch.spaces.dlib_face import DlibFaceSpace, hog_style_box

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "realmedia" / "faces"
HOG_UPSAMPLE = 1  # face_recognition's default: finds faces down to ~40 px
SAME_FACE_IOU = 0.4  # HOG's and MTCNN's boxes of one face overlap by 0.53-0.82 here, of different faces by ~0
CROP_FACE_PX = 90  # hybrid-crop: the face's size in the crop HOG sees (HOG's window is 80 px, no upsampling)
CROP_CONTEXT = 1.0  # hybrid-crop: margin around the face on each side, in face sizes
REPLICATES = 1000
Box = tuple[float, float, float, float]


@dataclass
class Photo:
    identity: str
    path: Path
    mtcnn_box: Box | None = None
    hog_boxes: list[Box] = field(default_factory=list)
    boxes: dict[str, Box | None] = field(default_factory=dict)  # pipeline -> the box given to the predictor
    ms: dict[str, float] = field(default_factory=dict)  # stage -> CPU ms


def cpu_ms(function, *args):
    """(result, CPU milliseconds of the call)."""
    start = time.process_time()
    result = function(*args)
    return result, (time.process_time() - start) * 1000


def iou(a: Box, b: Box) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(width, 0) * max(height, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def box_of(rectangle) -> Box:
    return (rectangle.left(), rectangle.top(), rectangle.right(), rectangle.bottom())


def hog_box_overlapping(boxes: list[Box], mtcnn_box: Box) -> Box | None:
    """The HOG box of the MTCNN face, if HOG found it."""
    best = max(boxes, key=lambda box: iou(box, mtcnn_box), default=None)
    return best if best is not None and iou(best, mtcnn_box) >= SAME_FACE_IOU else None


def hog_box_in_crop(hog, image: np.ndarray, box: Box) -> Box | None:
    """HOG run on a crop around a HOG-style box only, scaled so the face is CROP_FACE_PX: the box it finds there,
    in image coordinates, or None."""
    size = box[2] - box[0]
    half = size * (0.5 + CROP_CONTEXT)
    centre_x, centre_y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    left, top = max(int(centre_x - half), 0), max(int(centre_y - half), 0)
    right, bottom = min(int(centre_x + half) + 1, image.shape[1]), min(int(centre_y + half) + 1, image.shape[0])
    scale = CROP_FACE_PX / size
    crop = Image.fromarray(image[top:bottom, left:right])
    crop = crop.resize((max(round(crop.width * scale), 1), max(round(crop.height * scale), 1)), Image.BILINEAR)
    found = [(x1 / scale + left, y1 / scale + top, x2 / scale + left, y2 / scale + top)
             for x1, y1, x2, y2 in map(box_of, hog(np.asarray(crop), 0))]
    best = max(found, key=lambda candidate: iou(candidate, box), default=None)
    return best if best is not None and iou(best, box) >= SAME_FACE_IOU else None


def list_photos(directory: Path) -> list[Photo]:
    return [Photo(path.parent.name, path) for path in sorted(directory.glob("*/*"))
            if path.suffix.lower() in IMAGE_SUFFIXES]


def detect(photos: list[Photo], detector: FaceDetector, hog) -> dict[Path, np.ndarray]:
    """Both detectors on every photo (timed); returns the decoded images."""
    images = {}
    for photo in photos:
        image = load_image(photo.path)
        images[photo.path] = array = np.ascontiguousarray(np.asarray(image))
        faces, photo.ms["mtcnn"] = cpu_ms(detector.detect, image)
        photo.mtcnn_box = faces[0].box if faces else None
        rectangles, photo.ms["hog"] = cpu_ms(hog, array, HOG_UPSAMPLE)
        photo.hog_boxes = [box_of(rectangle) for rectangle in rectangles]
    return images


def fit(photos: list[Photo]) -> None:
    """Print the MTCNN -> HOG box map: medians, in units of the MTCNN box's size, over faces both detectors find."""
    size, shift_x, shift_y = [], [], []
    for photo in photos:
        hog_box = hog_box_overlapping(photo.hog_boxes, photo.mtcnn_box) if photo.mtcnn_box else None
        if hog_box is None:
            continue
        (x1, y1, x2, y2), (h1, v1, h2, v2) = photo.mtcnn_box, hog_box
        mtcnn_size = np.sqrt((x2 - x1) * (y2 - y1))
        size.append((h2 - h1) / mtcnn_size)
        shift_x.append(((h1 + h2) - (x1 + x2)) / 2 / mtcnn_size)
        shift_y.append(((v1 + v2) - (y1 + y2)) / 2 / mtcnn_size)
    quartiles = np.percentile(size, [25, 75])
    print(f"MTCNN -> HOG box map, {len(size)} faces found by both: HOG_STYLE_SIZE = {np.median(size):.3f} "
          f"(IQR {quartiles[1] - quartiles[0]:.3f}), HOG_STYLE_SHIFT_X = {np.median(shift_x):.3f}, HOG_STYLE_SHIFT_Y = {np.median(shift_y):.3f}")


def choose_boxes(photos: list[Photo], images: dict[Path, np.ndarray], hog) -> None:
    for photo in photos:
        largest_hog = max(photo.hog_boxes, key=lambda box: (box[2] - box[0]) * (box[3] - box[1]), default=None)
        photo.boxes["peer"] = largest_hog
        if photo.mtcnn_box is None:
            continue
        mapped = hog_style_box(photo.mtcnn_box)
        photo.boxes["mtcnn-box"] = photo.mtcnn_box
        photo.boxes["mapped-box"] = mapped
        photo.boxes["hybrid-full"] = hog_box_overlapping(photo.hog_boxes, photo.mtcnn_box) or mapped
        in_crop, photo.ms["hog-crop"] = cpu_ms(hog_box_in_crop, hog, images[photo.path], mapped)
        photo.boxes["hybrid-crop"] = in_crop or mapped


def peer_vectors(photos: list[Photo], images: dict[Path, np.ndarray]) -> np.ndarray:
    """face_recognition's own encodings of the largest HOG face (NaN rows where HOG found none)."""
    import face_recognition

    vectors = np.full((len(photos), 128), np.nan, np.float32)
    for row, photo in enumerate(photos):
        box = photo.boxes["peer"]
        if box is None:
            continue
        left, top, right, bottom = box
        encodings, photo.ms["peer-encode"] = cpu_ms(
            lambda: face_recognition.face_encodings(images[photo.path], [(top, right, bottom, left)],
                                                    num_jitters=1, model="small"))
        vectors[row] = encodings[0] / np.linalg.norm(encodings[0])
    return vectors


def chips_and_vectors(space: DlibFaceSpace, photos: list[Photo], images: dict[Path, np.ndarray],
                      pipeline: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(vectors, flip-averaged vectors, ResNet CPU ms per chip) for one pipeline; NaN rows for failed photos."""
    chips, rows = [], []
    for row, photo in enumerate(photos):
        box = photo.boxes.get(pipeline)
        if box is None:
            continue
        chip, photo.ms[f"align {pipeline}"] = cpu_ms(space.chip, images[photo.path], tuple(round(v) for v in box))
        chips.append(chip)
        rows.append(row)
    chips = np.stack(chips)
    vectors, ms = cpu_ms(space.embed, chips)
    mirrored = space.embed(np.ascontiguousarray(chips[:, :, ::-1]))
    flipped = vectors + mirrored
    flipped /= np.linalg.norm(flipped, axis=1, keepdims=True)
    out, out_flipped = (np.full((len(photos), space.dim), np.nan, np.float32) for _ in range(2))
    out[rows], out_flipped[rows] = vectors, flipped
    return out, out_flipped, ms / len(chips)


def landmark_shift(space: DlibFaceSpace, photos: list[Photo], images: dict[Path, np.ndarray],
                   pipeline: str) -> np.ndarray:
    """Per photo where HOG finds the MTCNN face: the landmarks' mean distance from those of HOG's own box,
    in units of the eye-centre distance."""
    shifts = []
    for photo in photos:
        hog_box = hog_box_overlapping(photo.hog_boxes, photo.mtcnn_box) if photo.mtcnn_box else None
        box = photo.boxes.get(pipeline)
        if hog_box is None or box is None:
            continue
        image = images[photo.path]
        reference, points = (np.array([(p.x, p.y) for p in space.landmarks(image, tuple(round(v) for v in b)).parts()],
                                      float) for b in (hog_box, box))
        # dlib's five points: two corners of one eye, two of the other, the base of the nose
        eye_distance = np.linalg.norm(reference[:2].mean(axis=0) - reference[2:4].mean(axis=0))
        shifts.append(np.linalg.norm(points - reference, axis=1).mean() / eye_distance)
    return np.array(shifts)


def scores(vectors: np.ndarray, identities: np.ndarray) -> tuple[float, float, float]:
    """(AUC, EER) over all pairs and leave-one-out rank-1 of the rows without NaN."""
    kept = ~np.isnan(vectors[:, 0])
    vectors, identities = vectors[kept], identities[kept]
    similarity = vectors @ vectors.T
    upper = np.triu_indices(len(vectors), 1)
    same = (identities[:, None] == identities[None, :])[upper]
    np.fill_diagonal(similarity, -np.inf)
    rank1 = float(np.mean(identities[similarity.argmax(axis=1)] == identities))
    return auc(same, similarity[upper]), equal_error_rate(same, similarity[upper])[0], rank1


def common_eers(results: dict[str, np.ndarray], identities: np.ndarray) -> dict[str, tuple[float, float, float]]:
    """On the photos every pipeline embeds: each pipeline's EER and the 95% identity-bootstrap interval of its
    difference from the peer's (both scored on the same resampled people)."""
    common = np.all([~np.isnan(vectors[:, 0]) for vectors in results.values()], axis=0)
    names, index = np.unique(identities[common], return_inverse=True)
    upper = np.triu_indices(int(common.sum()), 1)
    same = index[upper[0]] == index[upper[1]]
    weights = pair_weights(identity_resamples(len(names), REPLICATES, seed=0), index[upper[0]], index[upper[1]])

    def eers(vectors: np.ndarray) -> tuple[float, np.ndarray]:
        pair_scores = (vectors[common] @ vectors[common].T)[upper]
        return equal_error_rate(same, pair_scores)[0], weighted_eer(same, pair_scores, weights)

    _, peer_replicates = eers(results["peer"])
    out = {}
    for name, vectors in results.items():
        eer, replicates = eers(vectors)
        low, high = np.nanquantile(replicates - peer_replicates, [0.025, 0.975])
        out[name] = (eer, low, high)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--fit", action="store_true", help="stop after the MTCNN -> HOG box map")
    args = parser.parse_args()
    if not args.directory.is_dir():
        sys.exit(f"{args.directory} is absent: give a folder of <identity>/<photo> folders")
    torch.set_num_threads(1)  # CPU ms of one core: comparable to single-threaded dlib, steady on a shared machine

    photos = list_photos(args.directory)
    hog = dlib.get_frontal_face_detector()
    images = detect(photos, FaceDetector(), hog)
    fit(photos)
    if args.fit:
        return
    choose_boxes(photos, images, hog)
    space = DlibFaceSpace()
    identities = np.array([photo.identity for photo in photos])

    results = {"peer": peer_vectors(photos, images)}
    resnet_ms, landmarks = {}, {}
    for pipeline in ("mtcnn-box", "mapped-box", "hybrid-full", "hybrid-crop"):
        results[pipeline], results[f"{pipeline} +flip"], resnet_ms[pipeline] = chips_and_vectors(
            space, photos, images, pipeline)
        landmarks[pipeline] = landmark_shift(space, photos, images, pipeline)
    common = common_eers(results, identities)

    def stage_ms(stages: list[str]) -> list[float]:
        """Per photo: CPU ms of the stages together."""
        return [sum(photo.ms.get(stage, 0.0) for stage in stages) for photo in photos]

    print(f"\n{len(photos)} photos of {len(set(identities))} people in {args.directory}\n")
    header = (f"{'pipeline':<20} {'failed':>6} {'AUC':>6} {'EER':>6} {'rank-1':>6} {'EER common':>10} "
              f"{'vs peer [95% CI]':>16} {'landmarks':>10} {'detect':>6} {'align':>6} {'ResNet':>6} "
              f"{'total (median)':>14}")
    print(header)
    print("-" * len(header))
    extra_hog = {"hybrid-full": ["hog"], "hybrid-crop": ["hog-crop"]}
    for name, vectors in results.items():
        pipeline = name.removesuffix(" +flip")
        failed = int(np.isnan(vectors[:, 0]).sum())
        area, eer, rank1 = scores(vectors, identities)
        eer_common, low, high = common[name]
        if pipeline == "peer":  # face_encodings aligns and embeds in one call: timed as ResNet
            detect_ms, align_ms, resnet = stage_ms(["hog"]), [0.0] * len(photos), stage_ms(["peer-encode"])
            shift = "0 / 0"
        else:
            detect_ms = stage_ms(["mtcnn"])
            align_ms = stage_ms(extra_hog.get(pipeline, []) + [f"align {pipeline}"])
            chip_ms = resnet_ms[pipeline] * (2 if name.endswith("+flip") else 1)
            resnet = [chip_ms if photo.boxes.get(pipeline) else 0.0 for photo in photos]
            shift = "{:.1f} / {:.1f}".format(*np.percentile(100 * landmarks[pipeline], [50, 90]))
        totals = [sum(stages) for stages in zip(detect_ms, align_ms, resnet)]
        print(f"{name:<20} {failed:>6} {area:>6.4f} {100 * eer:>5.2f}% {rank1:>6.3f} {100 * eer_common:>9.2f}% "
              f"{f'{100 * low:+.2f} .. {100 * high:+.2f}':>16} {shift:>10} {statistics.mean(detect_ms):>6.0f} "
              f"{statistics.mean(align_ms):>6.0f} {statistics.mean(resnet):>6.0f} "
              f"{statistics.mean(totals):>6.0f} ({statistics.median(totals):.0f})")
    print("\nEER common and vs peer: in points of EER, on the photos every pipeline embeds; landmarks: % of the eye "
          "distance, median / 90th percentile; ms: CPU time per photo, one thread, mean (median), decoding excluded; "
          "the peer's alignment is timed with its ResNet")

if __name__ == "__main__":
    main()
