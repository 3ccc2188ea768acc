"""Whole-process wall time and peak memory of one cold face query, fvmatch's commands against the peer's pipeline.

Run: .venv/bin/python benchmarks/startup.py [--rounds 7] [--photos DIR]

Each command runs as a fresh process (cold interpreter and imports, warm disk: one untimed warm-up round first), the
commands interleaved round after round so that a busy machine slows them alike:
  - fvmatch embed --face PHOTO --space dlib-face        (MTCNN, dlib 5-point, dlib ResNet)
  - fvmatch identify --face PHOTO --against face -g G   (the same, then a search of a small gallery)
  - fvmatch --help                                      (the CLI's own floor)
  - peer face_recognition                               (python -c: load the photo, HOG detector, 5-point landmarks,
                                                         ResNet encoding; the same descriptor weights)
The gallery holds a handful of real photos of DIR (default ../shared/realmedia/faces; matplotlib's grace_hopper.jpg
when absent), enrolled once before timing. Prints a markdown table (median, min and max wall seconds; median peak
RSS, the process's own, from wait4) and the ratio of each fvmatch query to the peer, with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "realmedia" / "faces"
FVMATCH = str(Path(sys.executable).with_name("fvmatch"))
GALLERY_PEOPLE = 5
PEER = """
import sys
import face_recognition
image = face_recognition.load_image_file(sys.argv[1])
locations = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
encodings = face_recognition.face_encodings(image, locations, num_jitters=1, model="small")
print(len(encodings), "faces")
"""


def choose_photos(root: Path) -> tuple[Path, dict[str, list[Path]]]:
    """The query photo and the gallery's photos by person: one photo each of GALLERY_PEOPLE people (the query's
    person by another photo), or grace_hopper.jpg for both when `root` is absent."""
    if not root.is_dir():
        import matplotlib.cbook

        photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
        print(f"{root} is absent: query and gallery are matplotlib's grace_hopper.jpg", file=sys.stderr)
        return photo, {"grace_hopper": [photo]}
    people = sorted(person for person in root.iterdir()
                    if person.is_dir() and len([p for p in person.iterdir() if p.suffix.lower() == ".jpg"]) >= 2)
    photos = {person.name: sorted(p for p in person.iterdir() if p.suffix.lower() == ".jpg") for person in people}
    query_person = people[0].name
    query = photos[query_person][0]
    gallery = {name: [files[1] if name == query_person else files[0]] for name, files in photos.items()}
    return query, dict(list(gallery.items())[:GALLERY_PEOPLE])


def enroll(gallery_dir: Path, photos: dict[str, list[Path]]) -> None:
    for identity, files in photos.items():
        arguments = [FVMATCH, "enroll", "-g", str(gallery_dir), "--identity", identity]
        for path in files:
            arguments += ["--face", str(path)]
        result = subprocess.run(arguments, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"enrolling {identity} failed ({result.returncode}): {result.stderr.strip()}")


def run_once(arguments: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one process."""
    began = time.perf_counter()
    process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)  # this child's own rusage, not the running maximum of all children
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    process.stderr.close()
    return wall, usage.ru_maxrss / 1024, process.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of each command (interleaved)")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="DIR/<person>/<photo>.jpg")
    args = parser.parse_args()

    query, gallery_photos = choose_photos(args.photos)
    with tempfile.TemporaryDirectory(prefix="fvmatch-startup-") as scratch:
        gallery = Path(scratch) / "gallery"
        enroll(gallery, gallery_photos)
        commands = {
            "fvmatch embed --face --space dlib-face": [FVMATCH, "embed", "--face", str(query), "--space", "dlib-face"],
            "fvmatch identify --face --against face": [FVMATCH, "identify", "--face", str(query), "--against", "face",
                                                       "-g", str(gallery)],
            "fvmatch --help": [FVMATCH, "--help"],
            "peer face_recognition (HOG, 5-point, ResNet)": [sys.executable, "-c", PEER, str(query)],
        }
        ok_codes = {"fvmatch identify --face --against face": {0, 1}}  # 1: calibrated, nobody met the threshold
        load_before = os.getloadavg()
        runs: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for round_number in range(args.rounds + 1):
            for name, arguments in commands.items():
                wall, rss, code = run_once(arguments)
                if code not in ok_codes.get(name, {0}):
                    sys.exit(f"{name} exited {code}: {' '.join(arguments)}")
                if round_number > 0:  # round 0 warms the disk cache
                    runs[name].append((wall, rss))
        load_after = os.getloadavg()

    peer_median = statistics.median(wall for wall, _ in runs["peer face_recognition (HOG, 5-point, ResNet)"])
    print(f"query {query}; gallery of {sum(map(len, gallery_photos.values()))} photos; {args.rounds} cold runs each, "
          f"interleaved; {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    print("| command | wall median (s) | min | max | peak RSS median (MiB) | wall / peer |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, measured in runs.items():
        walls = [wall for wall, _ in measured]
        rss = statistics.median(peak for _, peak in measured)
        print(f"| {name} | {statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} | {rss:.0f} | "
              f"{statistics.median(walls) / peer_median:.2f} |")


if __name__ == "__main__":
    main()
