"""Whether fvmatch stands faces upright: every photo of DIR as it is and turned by 90, 180 and 270 degrees.

Run: .venv/bin/python benchmarks/face_orientation.py [DIR]
DIR holds <identity>/<photo> folders (default: ../shared/realmedia/faces). For each photo and turn, MTCNN alone
(what fvmatch did before it checked which way up a face stands) and fvmatch's FaceDetector.image_and_faces (the
check of fvmatch.media.orientation) are run; a turned photo is read rightly when the face is found and turned back
by the turn that undoes it. Prints one row per turn: photos, MTCNN alone finds a face, fvmatch finds it upright
(right turn), turned wrongly, left as it lies, refused (no face found); and the time of the check per photo.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from fvmatch.errors import NoFaceFound
from fvmatch.media.image import FaceDetector, load_image
from fvmatch.media.orientation import TURNS, turn_scores

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "realmedia" / "faces"


def main(directory: Path) -> None:
    detector = FaceDetector()
    photos = sorted(path for path in directory.glob("*/*") if path.suffix.lower() in {".jpg", ".jpeg", ".png"})
    counts = {degrees: dict.fromkeys(("photos", "mtcnn", "right", "wrong", "as_it_lies", "refused"), 0)
              for degrees in (0, *TURNS)}
    check_ms = []
    with tempfile.TemporaryDirectory() as scratch:
        for photo in photos:
            upright = load_image(photo)
            for degrees, row in counts.items():
                image = upright if degrees == 0 else upright.transpose(TURNS[degrees])
                path = Path(scratch) / "photo.png"
                image.save(path)
                row["photos"] += 1
                crops = detector.detect(image)
                row["mtcnn"] += bool(crops)
                if crops:
                    start = time.perf_counter()
                    turn_scores(image, crops[0].box)
                    check_ms.append((time.perf_counter() - start) * 1000)
                try:
                    _, faces = detector.image_and_faces(path)
                except NoFaceFound:
                    row["refused"] += 1
                    continue
                turned = faces[0].figures.get("turned", 0)
                wanted = (360 - degrees) % 360
                row["right" if turned == wanted else "as_it_lies" if turned == 0 else "wrong"] += 1
    print(f"{'turn':>5} {'photos':>6} {'MTCNN finds':>11} {'upright':>7} {'wrong':>5} {'as it lies':>10} {'refused':>7}")
    for degrees, row in counts.items():
        print(f"{degrees:>5} {row['photos']:>6} {row['mtcnn']:>11} {row['right']:>7} {row['wrong']:>5} "
              f"{row['as_it_lies']:>10} {row['refused']:>7}")
    check_ms.sort()
    print(f"orientation check: median {check_ms[len(check_ms) // 2]:.1f} ms, max {check_ms[-1]:.1f} ms a face "
          f"({len(check_ms)} faces)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR)
