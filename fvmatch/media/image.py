"""Face images: load a JPEG, PNG, BMP, GIF, TIFF, WebP, AVIF or PPM file, detect faces with MTCNN, return 160x160 crops.

MTCNN (fvmatch.media.mtcnn: facenet-pytorch's detector and the weights shipped in its wheel, in numpy, without
importing torch or its package) gives boxes, probabilities and landmarks; each crop is the box resized to 160x160,
exactly as facenet-pytorch's own MTCNN(margin=0, post_process=False) does, so training and inference see identical
crops.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from fvmatch.errors import NoFaceFound, UnreadableMedia
from fvmatch.paths import input_file_problem
from fvmatch.quality.face import face_quality, jpeg_quality_estimate

FACE_SIZE = 160
SMALL_IMAGE_PX = 400  # an image this small (longest side) with no face found is searched again...
UPSAMPLE = 2  # ...this many times larger
# Pillow's own bomb limit is ~89 Mpx; a face photo never needs more than 50 Mpx, and refusing
# before decoding keeps a hostile PNG from taking gigabytes of memory.
MAX_IMAGE_PIXELS = 50_000_000
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".avif", ".ppm", ".pgm"}
# the decoders tried, whatever the file's name: the formats of IMAGE_SUFFIXES (JPEG covers cameras' MPO files).
# Pillow would otherwise also try EPS, which runs Ghostscript on the file, and a dozen rarely used decoders.
IMAGE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "TIFF", "WEBP", "AVIF", "PPM")
# single-channel modes wider than 8 bits (16-bit PNG/TIFF, 32-bit integer and float TIFF), scaled by their range
WIDE_MODES = {"I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
# EXIF orientation -> the transposition that makes the image upright, as ImageOps.exif_transpose does; that one
# also re-encodes the EXIF block (which we drop) and fails on a damaged one (python-pillow/Pillow#8965)
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


@dataclass(frozen=True)
class FaceCrop:
    """One detected face: the 160x160x3 uint8 RGB crop of the joint space, the detector's probability, its box
    (x1, y1, x2, y2) and MTCNN's five landmarks ((x, y) of left eye, right eye, nose, left and right mouth corner)."""

    pixels: np.ndarray
    probability: float
    box: tuple[float, float, float, float]
    landmarks: tuple[tuple[float, float], ...] = ()
    figures: dict = field(default_factory=dict)  # fvmatch.quality.face.face_quality, measured at detection

    def quality(self) -> dict:
        """The quality figures recorded with an embedding of this face."""
        return {"detection_probability": round(self.probability, 4), **self.figures,
                "box": [round(v, 1) for v in self.box]}

    def visible_area(self, width: int, height: int) -> float:
        """The area of the part of the box inside a `width` x `height` image. MTCNN draws the whole face where only
        part of it is in the frame (a head cut off by the border of a cropped photo), and that box can be larger
        than the face in the middle of the photo: what is seen of a face is what makes it the largest."""
        x1, y1, x2, y2 = self.box
        return max(0.0, min(x2, width) - max(x1, 0.0)) * max(0.0, min(y2, height) - max(y1, 0.0))


def load_image(path: str | Path) -> Image.Image:
    """Decode an image file fully, apply its EXIF orientation, and return it as RGB.

    Raises UnreadableMedia naming the file for a missing, empty, truncated, oversized or non-image file.
    """
    path = Path(path)
    if (problem := input_file_problem(path)) is not None:
        raise UnreadableMedia(path, problem)
    if path.stat().st_size == 0:
        raise UnreadableMedia(path, "file is empty")
    if _is_heif(path):
        raise UnreadableMedia(path, "a HEIC/HEIF still image, which fvmatch cannot decode: convert it to JPEG or PNG")
    try:
        # Pillow warns (on stderr) about damaged metadata it skips; the one-line error or the image is what counts
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is lower: said below
            Image.init()  # registers every decoder (once): Image.open(formats=...) only looks among registered ones
            with Image.open(path, formats=IMAGE_FORMATS) as image:
                if image.width * image.height > MAX_IMAGE_PIXELS:
                    raise UnreadableMedia(path, _too_large(image.size))
                image.load()
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
                method = UPRIGHT.get(orientation) if isinstance(orientation, int) else None
                upright = _to_rgb(image.transpose(method) if method is not None else image)
                upright.info["jpeg_quality"] = jpeg_quality_estimate(image)  # the tables are the file's, not kept
                return upright
    except UnreadableMedia:
        raise
    except UnidentifiedImageError:
        raise UnreadableMedia(path, f"not an image file Pillow can read (supported: {', '.join(IMAGE_FORMATS)})") from None
    except Image.DecompressionBombError:
        # raised by Image.open itself, before our check, for sizes over twice Pillow's own limit
        raise UnreadableMedia(path, _too_large(_declared_size(path))) from None
    except (OSError, SyntaxError, ValueError) as error:
        raise UnreadableMedia(path, f"cannot decode image ({error})") from None


def _too_large(size: tuple[int, int] | None) -> str:
    """The one message for an image over MAX_IMAGE_PIXELS, whatever its size."""
    limit = f"over the {MAX_IMAGE_PIXELS:,}-pixel limit"
    if size is None:
        return f"image declares more pixels than fvmatch reads ({limit}): downscale it first"
    width, height = size
    return f"image is {width}x{height} pixels, {limit} ({width * height / 1e6:.1f} Mpx): downscale it first"


def _declared_size(path: Path) -> tuple[int, int] | None:
    """The size an image's header declares, read by the decoder that takes the file but without Image.open's
    bomb check (which refuses the largest sizes without saying them); nothing is decoded."""
    with open(path, "rb") as handle:
        prefix = handle.read(16)
    for name in IMAGE_FORMATS:
        factory, accept = Image.OPEN.get(name, (None, None))
        if factory is None or (accept is not None and not accept(prefix)):
            continue
        try:
            with open(path, "rb") as handle, factory(handle, str(path)) as image:
                return image.size
        except (OSError, SyntaxError, ValueError):
            continue
    return None


def _is_heif(path: Path) -> bool:
    from fvmatch.media.containers import sniff

    try:
        return sniff(path) == "heif"
    except OSError:
        return False  # Pillow's opening says what is wrong


def _to_rgb(image: Image.Image) -> Image.Image:
    """The image as 8-bit RGB. A 16- or 32-bit integer or a float image (a scientific camera's, a 16-bit PNG) is first
    scaled to 8 bits by the range of its values: Pillow's own conversion clips it at 255, and a 16-bit photo turns white.
    """
    if image.mode not in WIDE_MODES:
        return image.convert("RGB")
    values = np.asarray(image, dtype=np.float64)
    finite = np.isfinite(values)
    low, high = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    scaled = np.zeros(values.shape, np.uint8) if high <= low else np.round(
        (np.where(finite, values, low) - low) * (255.0 / (high - low))).astype(np.uint8)
    return Image.fromarray(scaled, "L").convert("RGB")


def face_crop(image: Image.Image, box) -> np.ndarray:
    """The joint space's input: the box, clipped to the image and cut at whole pixels, resized bilinearly to
    FACE_SIZE x FACE_SIZE (uint8 RGB): facenet-pytorch's extract_face(margin=0) to the pixel."""
    width, height = image.size
    # extract_face: clip in floating point, then int() (truncation toward zero)
    left, top = int(max(box[0], 0)), int(max(box[1], 0))
    right, bottom = int(min(box[2], width)), int(min(box[3], height))
    return np.array(image.crop((left, top, right, bottom)).resize((FACE_SIZE, FACE_SIZE), Image.BILINEAR))


class FaceDetector:
    """MTCNN face detection and cropping; build once, reuse (construction loads the weights)."""

    def __init__(self, min_probability: float = 0.8) -> None:
        from fvmatch.media.mtcnn import MTCNN

        self.min_probability = min_probability
        self._mtcnn = MTCNN()

    def detect(self, image: Image.Image, min_face_px: float | None = None,
               regions: list[tuple[int, int, int, int, float]] | None = None) -> list[FaceCrop]:
        """All faces at or above `min_probability`, largest first (by the part of each inside the image);
        `min_face_px`: look only for faces at least this wide (the image pyramid then starts coarser: far less work
        where faces are known to be large); `regions`: instead, look only inside these (left, top, right, bottom)
        boxes of the image, each for faces at least its fifth number wide (a video's faces where they were a sample
        before), a face found in two of them once.

        A small image (CCTV still, phone screenshot) where none is found is searched again at twice its size: MTCNN
        misses faces under ~16 px (faces shrunk to 12 px in 125 real photos: 44 found, 124 at twice the size), and
        only small images without a face pay for the second pass, so large photos gain no false faces.
        """
        detections = (self._detections(image, 1, min_face_px) if regions is None
                      else self._region_detections(image, regions))
        if not detections and min_face_px is None and regions is None and max(image.size) <= SMALL_IMAGE_PX:
            larger = image.resize((image.width * UPSAMPLE, image.height * UPSAMPLE), Image.BILINEAR)
            detections = self._detections(larger, UPSAMPLE)
        pixels = np.asarray(image)
        crops = [FaceCrop(pixels=face_crop(image, box), probability=probability, box=box, landmarks=points,
                          figures=face_quality(pixels, box, points, probability, image.info.get("jpeg_quality")))
                 for box, probability, points in detections]
        return sorted(crops, key=lambda crop: crop.visible_area(*image.size), reverse=True)

    def _region_detections(self, image: Image.Image, regions: list[tuple[int, int, int, int, float]]) -> list[tuple]:
        """MTCNN's detections in each region, in the image's coordinates; of two that overlap (IoU 0.5, a face in
        two regions) the more probable."""
        from fvmatch.media.tracks import iou

        found = []
        for left, top, right, bottom, smallest in regions:
            whole = (left, top, right, bottom) == (0, 0, *image.size)
            region = image if whole else image.crop((left, top, right, bottom))
            for box, probability, points in self._detections(region, 1, smallest):
                found.append(((box[0] + left, box[1] + top, box[2] + left, box[3] + top), probability,
                              tuple((x + left, y + top) for x, y in points)))
        kept: list[tuple] = []
        for detection in sorted(found, key=lambda d: -d[1]):
            if all(iou(detection[0], other[0]) < 0.5 for other in kept):
                kept.append(detection)
        return kept

    def _detections(self, image: Image.Image, scale: int, min_face_px: float | None = None) -> list[tuple]:
        """MTCNN's (box, probability, landmarks) at or above `min_probability` in `image`, in the coordinates of an
        image `scale` times smaller."""
        if min(image.size) < max(self._mtcnn.min_face_size, min_face_px or 0):
            return []  # MTCNN's image pyramid is empty below its minimum face size
        boxes, probabilities, landmarks = self._mtcnn.detect(image, landmarks=True, min_face_size=min_face_px)
        if boxes is None:
            return []
        return [(tuple(float(v) / scale for v in box), float(probability),
                 tuple((float(x) / scale, float(y) / scale) for x, y in points))
                for box, probability, points in zip(boxes, probabilities, landmarks)
                if probability is not None and probability >= self.min_probability]

    def faces_in_file(self, path: str | Path) -> list[FaceCrop]:
        """Load `path` and detect its faces, largest first (callers take the first unless asked for all).

        Raises UnreadableMedia for a bad file and NoFaceFound when nothing is detected.
        """
        return self.image_and_faces(path)[1]

    def image_and_faces(self, path: str | Path) -> tuple[np.ndarray, list[FaceCrop]]:
        """The decoded image (RGB uint8, H x W x 3) and its faces, largest first: `faces_in_file` for callers that
        also prepare other spaces' inputs from the image."""
        image = load_image(path)
        smallest = self._mtcnn.min_face_size / UPSAMPLE
        if min(image.size) < smallest:
            raise NoFaceFound(path, f"no face found: the image is {image.width}x{image.height} pixels, below the "
                              f"detector's {smallest:g}-pixel minimum face size (searched at twice its size)")
        image, crops = self._upright_faces(path, image)
        return np.asarray(image), crops

    def _upright_faces(self, path: str | Path, image: Image.Image) -> tuple[Image.Image, list[FaceCrop]]:
        """The image turned so that its largest face stands upright, and its faces found there, each with the figure
        `turned` (degrees counter-clockwise) when it was turned. MTCNN finds faces lying on their side or upside down,
        whose vectors then match the wrong people, and misses others on their side: where it finds none, the image
        is searched again turned each way, and a face found so counts only if it stands upright there
        (fvmatch.media.orientation says how that is told)."""
        from fvmatch.media.orientation import TURNS, stands_upright, upright_turn

        crops = self.detect(image)
        if crops:
            degrees = upright_turn(image, crops[0].box)
            if degrees == 0:
                return image, crops
            turned, found = self._turned_faces(image, degrees)
            if not found:
                raise NoFaceFound(path, f"the face found lies turned (it stands upright turned {degrees} degrees "
                                  f"counter-clockwise), and no face is found in the image so turned")
            return turned, found
        for degrees in TURNS:
            turned, found = self._turned_faces(image, degrees)
            if found and stands_upright(turned, found[0].box):
                return turned, found
        raise NoFaceFound(path, f"no face found (detector threshold {self.min_probability})")

    def _turned_faces(self, image: Image.Image, degrees: int) -> tuple[Image.Image, list[FaceCrop]]:
        """`image` turned `degrees` counter-clockwise, and the faces found in it, each with the figure `turned`."""
        from fvmatch.media.orientation import TURNS

        turned = image.transpose(TURNS[degrees])
        turned.info["jpeg_quality"] = image.info.get("jpeg_quality")
        return turned, [replace(crop, figures={**crop.figures, "turned": degrees}) for crop in self.detect(turned)]
