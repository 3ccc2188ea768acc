"""Whole-process wall time and peak memory of one cold face or voice query, fvmatch's commands against the peers'.

Run: .venv/bin/python benchmarks/startup.py [--rounds 7] [--photos DIR] [--voices DIR] [--compare OTHER_CHECKOUT]...

Each command runs as a fresh process (cold interpreter and imports, warm disk: one untimed warm-up round first), the
commands interleaved round after round so that a busy machine slows them alike:
  - fvmatch embed --face PHOTO --space dlib-face        (MTCNN, dlib 5-point, dlib ResNet)
  - fvmatch identify --face PHOTO --against face -g G   (the same, then a search of a small gallery)
  - fvmatch --help                                      (the CLI's own floor)
  - peer face_recognition                               (python -c: load the photo, HOG detector, 5-point landmarks,
                                                         ResNet encoding; the same descriptor weights)
  - fvmatch identify --voice Q --against voice -g G     (silero-vad, webrtcvad trimming, GE2E, a search)
  - peer Resemblyzer                                    (python -c: preprocess_wav, VoiceEncoder.embed_utterance; the
                                                         same GE2E weights)
  - with --compare DIR: both identify commands run by the fvmatch of another checkout DIR (its own gallery, enrolled
    by it), e.g. the tree before a change: `git worktree add ../old_tree HEAD`, then --compare ../old_tree
The voice gallery holds one LibriSpeech recording of each of GALLERY_PEOPLE speakers of DIR (default
../shared/realmedia/voices; the question's speaker by another recording); without DIR the voice commands are left out.
The gallery holds a handful of real photos of DIR (default ../shared/realmedia/faces; matplotlib's grace_hopper.jpg
when absent), enrolled once before timing. Prints a markdown table (median, min and max wall seconds; median peak
RSS, the process's own, measured by a small parent: benchmarks/measured_child.py) and the ratio of each fvmatch query
to the peer, with the load average.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured_child import measure  # noqa: E402

DEFAULT_PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "realmedia" / "faces"
FVMATCH = str(Path(sys.executable).with_name("fvmatch"))
GALLERY_PEOPLE = 5
DEFAULT_VOICES = Path(__file__).resolve().parents[2] / "shared" / "realmedia" / "voices"
PEER_VOICE = """
import sys
from resemblyzer import VoiceEncoder, preprocess_wav
speech = preprocess_wav(sys.argv[1])
print(VoiceEncoder("cpu", verbose=False).embed_utterance(speech).shape)
"""
# the fvmatch of another checkout, as the console script runs it: argv = [CHECKOUT, fvmatch's arguments...]
OTHER_CHECKOUT = """
import sys
checkout = sys.argv.pop(1)
sys.path.insert(0, checkout)
from fvmatch.cli import main
sys.argv[0] = "fvmatch"
sys.exit(main())
"""
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


def choose_voices(root: Path) -> tuple[Path, dict[str, list[Path]]] | None:
    """The question and the gallery's recordings by speaker, as choose_photos chooses photos; None without `root`."""
    speakers = sorted(speaker for speaker in root.glob("librispeech_*") if len(list(speaker.glob("*.flac"))) >= 2)
    if not speakers:
        print(f"{root} holds no LibriSpeech speakers: the voice commands are left out", file=sys.stderr)
        return None
    recordings = {speaker.name: sorted(speaker.glob("*.flac")) for speaker in speakers[:GALLERY_PEOPLE]}
    question_speaker = speakers[0].name
    gallery = {name: [files[1] if name == question_speaker else files[0]] for name, files in recordings.items()}
    return recordings[question_speaker][0], gallery


def fvmatch_command(checkout: Path | None) -> list[str]:
    """The command that runs fvmatch: this install's, or the fvmatch of another checkout."""
    return [FVMATCH] if checkout is None else [sys.executable, "-c", OTHER_CHECKOUT, str(checkout)]


def enroll(gallery_dir: Path, photos: dict[str, list[Path]], flag: str = "--face",
           fvmatch: list[str] | None = None) -> None:
    for identity, files in photos.items():
        arguments = [*(fvmatch or [FVMATCH]), "enroll", "-g", str(gallery_dir), "--identity", identity]
        for path in files:
            arguments += [flag, str(path)]
        result = subprocess.run(arguments, capture_output=True, text=True)
        if result.returncode != 0:
            sys.exit(f"enrolling {identity} failed ({result.returncode}): {result.stderr.strip()}")


def run_once(arguments: list[str]) -> tuple[float, float, int]:
    """Wall seconds, peak RSS (MiB) and exit code of one process, started and measured by a small parent (so that
    this process's memory does not count as the child's; measured_child.py); its output discarded."""
    run = measure(arguments, capture=False)
    return run.wall_seconds, run.peak_rss_mib, run.exit_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="timed runs of each command (interleaved)")
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="DIR/<person>/<photo>.jpg")
    parser.add_argument("--voices", type=Path, default=DEFAULT_VOICES, help="DIR/librispeech_<speaker>/<id>.flac")
    parser.add_argument("--compare", type=Path, action="append", default=[],
                        help="another checkout of fvmatch whose identify commands run beside this one's")
    args = parser.parse_args()

    query, gallery_photos = choose_photos(args.photos)
    voices = choose_voices(args.voices)
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
        for checkout in [None, *args.compare]:
            label = "" if checkout is None else f" ({checkout})"
            checkout_gallery = gallery if checkout is None else Path(scratch) / f"gallery-{len(commands)}"
            if checkout is not None:  # a gallery of its own: another version may keep its gallery otherwise
                enroll(checkout_gallery, gallery_photos, fvmatch=fvmatch_command(checkout))
                commands[f"fvmatch identify --face --against face{label}"] = [
                    *fvmatch_command(checkout), "identify", "--face", str(query), "--against", "face",
                    "-g", str(checkout_gallery)]
            if voices is not None:
                enroll(checkout_gallery, voices[1], flag="--voice", fvmatch=fvmatch_command(checkout))
                commands[f"fvmatch identify --voice --against voice{label}"] = [
                    *fvmatch_command(checkout), "identify", "--voice", str(voices[0]), "--against", "voice",
                    "-g", str(checkout_gallery)]
        if voices is not None:
            commands["peer Resemblyzer (preprocess_wav, GE2E)"] = [sys.executable, "-c", PEER_VOICE, str(voices[0])]
        ok_codes.update({name: {0, 1} for name in commands if " identify " in name})
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

    peer_medians = {modality: statistics.median(wall for wall, _ in runs[name])
                    for modality, name in (("face", "peer face_recognition (HOG, 5-point, ResNet)"),
                                           ("voice", "peer Resemblyzer (preprocess_wav, GE2E)")) if name in runs}
    print(f"query {query}; gallery of {sum(map(len, gallery_photos.values()))} photos; {args.rounds} cold runs each, "
          f"interleaved; {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after\n")
    if voices is not None:
        print(f"voice question {voices[0]}; gallery of {len(voices[1])} recordings\n")
    print("| command | wall median (s) | min | max | peak RSS median (MiB) | wall / peer |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, measured in runs.items():
        walls = [wall for wall, _ in measured]
        rss = statistics.median(peak for _, peak in measured)
        peer_median = peer_medians["voice" if "voice" in name or "Resemblyzer" in name else "face"]
        print(f"| {name} | {statistics.median(walls):.2f} | {min(walls):.2f} | {max(walls):.2f} | {rss:.0f} | "
              f"{statistics.median(walls) / peer_median:.2f} |")


if __name__ == "__main__":
    main()
