"""Image loading and face detection with the real MTCNN on real and generated photos."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from fvmatch.errors import NoFaceFound, UnreadableMedia
from fvmatch.media.image import FACE_SIZE, FaceDetector, load_image


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


def test_mtcnn_finds_the_face_in_a_real_photograph(detector, grace_hopper):
    crops = detector.faces_in_file(grace_hopper)
    assert len(crops) == 1
    crop = crops[0]
    assert crop.pixels.shape == (FACE_SIZE, FACE_SIZE, 3) and crop.pixels.dtype == np.uint8
    assert crop.probability > 0.99
    x1, y1, x2, y2 = crop.box
    width, height = Image.open(grace_hopper).size
    # the face is in the upper-middle of the portrait and a sizeable part of it
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height / 1.5
    assert (x2 - x1) > width / 5


def test_exif_orientation_is_applied(detector, grace_hopper, tmp_path):
    upright = load_image(grace_hopper)
    # stored rotated on its side, with the EXIF tag telling viewers to turn it back (orientation 6 = rotate 90 CW)
    sideways = upright.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    sideways.save(path, exif=exif, quality=95)
    loaded = load_image(path)
    assert loaded.size == upright.size
    assert detector.faces_in_file(path)[0].probability > 0.99


def test_several_faces_are_returned_largest_first(detector, grace_hopper, tmp_path):
    face = load_image(grace_hopper)
    small = face.resize((face.width // 2, face.height // 2))
    canvas = Image.new("RGB", (face.width + small.width, face.height), (90, 90, 90))
    canvas.paste(small, (0, 0))
    canvas.paste(face, (small.width, 0))
    path = tmp_path / "two.jpg"
    canvas.save(path)
    crops = detector.faces_in_file(path)
    assert len(crops) == 2
    assert crops[0].visible_area(*canvas.size) > 3 * crops[1].visible_area(*canvas.size)
    assert crops[0].box[0] > small.width - 1  # the largest is the full-size face on the right


def test_a_face_cut_off_by_the_border_counts_by_what_is_seen_of_it(detector, grace_hopper, tmp_path):
    # a cropped photo's edge cuts through a bystander's head: MTCNN's box runs past the border and is larger than
    # the whole face beside it, which is the face the photo shows
    face = load_image(grace_hopper)
    x1, y1, x2, y2 = detector.detect(face)[0].box
    whole = face.resize((int(face.width * 0.9), int(face.height * 0.9)))
    canvas = Image.new("RGB", (face.width + whole.width, face.height), (90, 90, 90))
    canvas.paste(face, (0, -int(y1 + 0.25 * (y2 - y1))))  # the top quarter of its face above the frame
    canvas.paste(whole, (face.width, face.height - whole.height))
    path = tmp_path / "cut.png"
    canvas.save(path)
    crops = detector.faces_in_file(path)
    assert len(crops) == 2
    cut = crops[1]
    assert cut.box[1] < 0 and cut.box[0] < face.width  # the cut face, its box above the image
    box_area = (cut.box[2] - cut.box[0]) * (cut.box[3] - cut.box[1])
    assert box_area > 1.5 * crops[0].visible_area(*canvas.size)  # by its box it would have come first
    assert crops[0].box[0] > face.width - 1  # the whole face comes first


def test_image_without_a_face_is_refused(detector, media_dir):
    with pytest.raises(NoFaceFound, match="noface.jpg: no face found"):
        detector.faces_in_file(media_dir / "noface.jpg")


@pytest.mark.parametrize("name, problem", [
    ("missing.jpg", "no such file"),
    ("text.jpg", "not an image file"),
])
def test_unreadable_images_are_named(media_dir, name, problem):
    with pytest.raises(UnreadableMedia, match=f"{name}: {problem}"):
        load_image(media_dir / name)


def test_truncated_and_empty_images_are_refused(grace_hopper, tmp_path):
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(grace_hopper.read_bytes()[:20000])
    with pytest.raises(UnreadableMedia, match="truncated.jpg: cannot decode image"):
        load_image(truncated)
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableMedia, match="empty.jpg: file is empty"):
        load_image(empty)


def test_huge_declared_size_is_refused_before_decoding(tmp_path):
    # 8000x8000 bilevel compresses to a few kB but would decode to 64 Mpx
    path = tmp_path / "bomb.png"
    Image.new("1", (8000, 8000)).save(path)
    assert path.stat().st_size < 100_000
    with pytest.raises(UnreadableMedia, match="8000x8000 pixels, over the"):
        load_image(path)


@pytest.mark.parametrize("face_px", [8, 16, 40])
def test_a_small_face_is_found_in_a_small_image_and_reported_in_its_coordinates(detector, grace_hopper, face_px):
    from fvmatch.media.degrade import shrink_face

    photo = load_image(grace_hopper)
    box = detector.detect(photo)[0].box
    small = shrink_face(photo, box, face_px)  # 8 px: MTCNN alone misses it; at twice the size it is found
    (face,) = detector.detect(small)
    scale = small.width / photo.width
    assert np.allclose(face.box, np.array(box) * scale, atol=0.25 * face_px)
    assert face.figures["eye_distance_px"] == pytest.approx(0.475 * face_px, rel=0.25)
    assert face.pixels.shape == (FACE_SIZE, FACE_SIZE, 3)
