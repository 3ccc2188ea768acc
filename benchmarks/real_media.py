"""Same-modality matching on real people: fvmatch's spaces against the best offline peers, on the same files.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/real_media.py [DIR] [--only face-face|voice-voice]

DIR (default ../shared/realmedia) holds faces/<person>/<photo> and voices/<person>/<recording>. Every file is
embedded once by each pipeline; every pair of files that embedded is a trial (same person or not). For face-face and
voice-voice the table gives, side by side:
  - fvmatch dlib-face: MTCNN detection, dlib 5-point alignment, dlib ResNet (the face space, fvmatch.spaces)
  - fvmatch ge2e-voice: silero-vad speech, Resemblyzer's GE2E encoder (the voice space)
  - fvmatch joint: the shipped joint checkpoint (trained on synthetic people; shown for reference)
  - peer face_recognition: its own pipeline (HOG detector, 5-point landmarks, the same ResNet, 1 jitter)
  - peer Resemblyzer: its own pipeline (preprocess_wav: webrtcvad trimming, volume normalisation; embed_utterance)
AUC and EER over all pairs; leave-one-out rank-1 (each file's nearest other file is the same person's; files whose
person has one file are not probes); files that failed (no face, too little speech); wall and CPU ms per file
(one process, warm: the models loaded before the clock starts). Largest face per photo for every pipeline. A line
under each table gives every pipeline's figures on the files all of them embedded (like compared with like).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
AUDIO_SUFFIXES = {".flac", ".wav", ".mp3", ".ogg"}


def labelled_files(root: Path, suffixes: set[str]) -> list[tuple[str, Path]]:
    return [(person.name, path) for person in sorted(p for p in root.iterdir() if p.is_dir())
            for path in sorted(person.rglob("*")) if path.suffix.lower() in suffixes]


def run_pipeline(files: list[tuple[str, Path]], embed: Callable[[Path], np.ndarray | None]) -> dict:
    """Embed every file (None or an exception: failed), timing each; the figures of the table."""
    outcomes, wall, cpu = [], [], []
    for _, path in files:
        began, began_cpu = time.perf_counter(), time.process_time()
        try:
            outcomes.append((embed(path), "no face / no speech"))
        except Exception as error:  # a peer's own failure on a file counts as a failed file, named below
            outcomes.append((None, f"{type(error).__name__}: {error}"))
        wall.append(time.perf_counter() - began)
        cpu.append(time.process_time() - began_cpu)
    vectors, owners, failed, embedded = [], [], [], []
    for (person, path), (vector, reason) in zip(files, outcomes):
        if vector is None:
            failed.append(f"{path.parent.name}/{path.name} ({reason})")
            continue
        vectors.append(np.asarray(vector, np.float64) / np.linalg.norm(vector))
        owners.append(person)
        embedded.append(path)
    return {**figures(np.array(vectors), np.array(owners)), "failed": failed,
            "wall_ms": 1000 * float(np.mean(wall)), "cpu_ms": 1000 * float(np.mean(cpu)),
            "by_file": {path: (vector, owner) for path, vector, owner in zip(embedded, vectors, owners)}}


def on_common_files(results: dict[str, dict]) -> tuple[int, dict[str, dict]]:
    """Each pipeline's figures on the files every pipeline embedded: like compared with like."""
    common = set.intersection(*(set(row["by_file"]) for row in results.values()))
    ordered = sorted(common)
    return len(common), {name: figures(np.array([row["by_file"][p][0] for p in ordered]),
                                       np.array([row["by_file"][p][1] for p in ordered]))
                         for name, row in results.items()}


def figures(vectors: np.ndarray, owners: np.ndarray) -> dict:
    from fvmatch.evaluation.metrics import auc, equal_error_rate

    scores = vectors @ vectors.T
    rows, columns = np.triu_indices(len(owners), 1)
    same = owners[rows] == owners[columns]
    eer, _ = equal_error_rate(same, scores[rows, columns])
    np.fill_diagonal(scores, -np.inf)
    probes = [i for i in range(len(owners)) if (owners == owners[i]).sum() > 1]
    rank1 = float(np.mean([owners[int(np.argmax(scores[i]))] == owners[i] for i in probes]))
    return {"auc": auc(same, scores[rows, columns]), "eer": eer, "rank1": rank1, "probes": len(probes),
            "pairs": len(rows)}


def fvmatch_face(space: str):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError

    embedder = Embedder.load()
    embedder.space(space)

    def embed(path: Path):
        try:
            return embedder.embed_face(path, spaces=[space])[0].vectors[space]
        except FvmatchError:
            return None
    return embed


def fvmatch_voice(space: str):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError

    embedder = Embedder.load()
    embedder.space(space)

    def embed(path: Path):
        try:
            return embedder.embed_voice(path, spaces=[space]).vectors[space]
        except FvmatchError:
            return None
    return embed


def peer_face_recognition():
    import face_recognition

    def embed(path: Path):
        image = face_recognition.load_image_file(path)
        boxes = face_recognition.face_locations(image)  # HOG, upsampled once: the package's defaults
        if not boxes:
            return None
        largest = max(boxes, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
        return face_recognition.face_encodings(image, [largest])[0]
    return embed


def peer_resemblyzer():
    from resemblyzer import VoiceEncoder, preprocess_wav

    encoder = VoiceEncoder("cpu", verbose=False)

    def embed(path: Path):
        return encoder.embed_utterance(preprocess_wav(path))
    return embed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", choices=["face-face", "voice-voice"], help="One trial type's table.")
    args = parser.parse_args()
    if not (args.directory / "faces").is_dir() and not (args.directory / "voices").is_dir():
        sys.exit(f"real_media: {args.directory} has no faces/ or voices/ folder (the real media of ../shared/realmedia "
                 "are needed; give another folder of faces/<person>/* and voices/<person>/*)")
    pipelines = {
        "face-face": [("fvmatch dlib-face", lambda: fvmatch_face("dlib-face")),
                      ("fvmatch joint", lambda: fvmatch_face("joint")),
                      ("peer face_recognition (HOG + ResNet)", peer_face_recognition)],
        "voice-voice": [("fvmatch ge2e-voice", lambda: fvmatch_voice("ge2e-voice")),
                        ("fvmatch joint", lambda: fvmatch_voice("joint")),
                        ("peer Resemblyzer (embed_utterance)", peer_resemblyzer)],
    }
    folders = {"face-face": ("faces", IMAGE_SUFFIXES), "voice-voice": ("voices", AUDIO_SUFFIXES)}
    print(f"real media: {args.directory}")
    for trial_type, entries in pipelines.items():
        folder, suffixes = folders[trial_type]
        if not (args.directory / folder).is_dir() or args.only not in (None, trial_type):
            continue
        files = labelled_files(args.directory / folder, suffixes)
        people = len({person for person, _ in files})
        print(f"\n{trial_type}: {len(files)} files of {people} people")
        print("| pipeline | AUC | EER | rank-1 (probes) | failed | wall ms/file | CPU ms/file |")
        print("|---|---|---|---|---|---|---|")
        results = {}
        for name, build in entries:
            results[name] = row = run_pipeline(files, build())
            print(f"| {name} | {row['auc']:.4f} | {row['eer']:.2%} | {row['rank1']:.3f} ({row['probes']}) | "
                  f"{len(row['failed'])} | {row['wall_ms']:.0f} | {row['cpu_ms']:.0f} |", flush=True)
        count, common = on_common_files(results)
        print(f"on the {count} files every pipeline embedded: " + "; ".join(
            f"{name} AUC {row['auc']:.4f}, EER {row['eer']:.2%}, rank-1 {row['rank1']:.3f}" for name, row in common.items()))
        ours, peer = results[entries[0][0]], results[entries[-1][0]]
        print(f"time per file, {entries[0][0]} / {entries[-1][0]}: wall {ours['wall_ms'] / peer['wall_ms']:.2f}, "
              f"CPU {ours['cpu_ms'] / peer['cpu_ms']:.2f}")
        for name, row in results.items():
            if row["failed"]:
                print(f"  {name} failed on: {', '.join(row['failed'])}")


if __name__ == "__main__":
    main()
