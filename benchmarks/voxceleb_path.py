"""How long the laboratory's path takes per item on this machine, and what that means for VoxCeleb1 and VoxCeleb2.

Run: .venv/bin/python benchmarks/voxceleb_path.py [DIR] [--faces N] [--voices N] [--workers 1,2]

DIR (default ../shared/realmedia) holds faces/<person>/<photo> and voices/<person>/<recording> of real people. A
corpus of links is laid out from them (the k-th face folder paired with the k-th voice folder: the pairing is
meaningless, only the throughput is measured), prepared (MTCNN crops, silero-vad speech: `fvmatch prepare`'s work),
then the expert vectors of every item are computed (dlib-face for faces, ge2e-voice for voices: what the experts,
wen2021 and fuse-after-align recipes train on) with each number of worker processes, from an empty cache each
time. Worker start-up (each loads its models) is inside the timings.

Printed: items, seconds and items/s per stage and worker count; seconds of compute per second of audio for voices;
then the hours those rates project for VoxCeleb1 (153,516 utterances, 352 h of audio; about 1M face frames at 1
frame per 25, of which fvmatch prepares all) and VoxCeleb2 (1,128,246 utterances, 2,442 h; faces as given), on the
cores of this machine. The machine's load average is printed: other work on the cores slows every figure.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import soundfile

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
VOXCELEB = {  # published sizes (Nagrani et al. 2017; Chung et al. 2018)
    "VoxCeleb1": {"utterances": 153_516, "audio_hours": 352, "face_frames": 1_000_000},
    "VoxCeleb2": {"utterances": 1_128_246, "audio_hours": 2_442, "face_frames": None},
}


def lay_out(source: Path, data: Path, faces: int, voices: int) -> float:
    """A corpus of links (faces/<k>/v0/, voices/<k>/v0/, meta.csv, everyone train); the seconds of audio linked."""
    face_people = sorted(p for p in (source / "faces").iterdir() if p.is_dir() and p.name.startswith("vox1_"))
    voice_people = sorted(p for p in (source / "voices").iterdir() if p.is_dir() and p.name.startswith("librispeech"))
    face_files = [[f for f in sorted(p.iterdir()) if f.suffix.lower() in {".jpg", ".png"}] for p in face_people]
    voice_files = [sorted(f for f in p.iterdir() if f.suffix.lower() == ".flac") for p in voice_people]
    people = min(len(face_people), len(voice_people))
    per_face, per_voice = -(-faces // people), -(-voices // people)
    seconds = 0.0
    rows = ["identity,name,gender,nationality,age,split"]
    for k in range(people):
        label = f"p{k:03d}"
        for modality, files, count in (("faces", face_files[k], per_face), ("voices", voice_files[k], per_voice)):
            folder = data / modality / label / "v0"
            folder.mkdir(parents=True)
            for path in files[:count]:
                os.symlink(path, folder / path.name)
                if modality == "voices":
                    seconds += soundfile.info(path).duration
        rows.append(f"{label},{label},,,,train")
    (data / "meta.csv").write_text("\n".join(rows) + "\n")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--faces", type=int, default=110)
    parser.add_argument("--voices", type=int, default=60)
    parser.add_argument("--workers", default="1,2")
    args = parser.parse_args()
    if not (args.source / "faces").is_dir():
        sys.exit(f"{args.source}: no faces/ folder of real media (give DIR)")
    from fvmatch.embedder import Embedder
    from fvmatch.training.data import PreparedCorpus
    from fvmatch.training.dry_run import measure_items
    from fvmatch.training.expert_vectors import compute_expert_vectors
    from fvmatch.training.prepare import prepare_corpus

    work = Path(tempfile.mkdtemp(prefix="voxceleb-path-"))
    try:
        audio_seconds = lay_out(args.source, work / "corpus", args.faces, args.voices)
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
        started = time.perf_counter()
        summary = prepare_corpus(work / "corpus", work / "cache", workers=0)
        prepare_seconds = time.perf_counter() - started
        counts = summary["counts"]
        items = counts["faces"] + counts["voices"] + counts["failures"]
        print(f"prepare: {counts['faces']} faces + {counts['voices']} voices ({audio_seconds:.0f} s of audio, "
              f"{counts['failures']} failed) in {prepare_seconds:.1f} s on {os.cpu_count()} workers: "
              f"{items / prepare_seconds:.2f} items/s")
        sample = {modality: sorted((work / "corpus" / modality).glob("*/v0/*"))[::3][:12]
                  for modality in ("faces", "voices")}
        sample_audio = sum(soundfile.info(path).duration for path in sample["voices"][1:])
        measured = measure_items(sample, prepare=True)["seconds_per_item"]
        print(f"prepare per item, one process: face {measured['prepare_face']:.3f} s, voice "
              f"{measured['prepare_voice']:.3f} s ({sample_audio / (len(sample['voices']) - 1):.1f} s of audio per "
              f"clip: {measured['prepare_voice'] * (len(sample['voices']) - 1) / sample_audio:.4f} s per s of audio)")
        embedder = Embedder.load()
        rates = {}
        print(f"{'stage':<14}{'workers':>8}{'items':>7}{'seconds':>9}{'items/s':>9}{'s per s of audio':>18}")
        for workers in (int(w) for w in args.workers.split(",")):
            for modality, space in (("face", "dlib-face"), ("voice", "ge2e-voice")):
                shutil.rmtree(work / "cache" / "experts", ignore_errors=True)
                found = compute_expert_vectors(PreparedCorpus(work / "cache"), {modality: space}, embedder,
                                               workers=workers)
                per_audio = f"{found['seconds'] / audio_seconds:.4f}" if modality == "voice" else "-"
                print(f"{'experts ' + modality:<14}{workers:>8}{found['computed']:>7}{found['seconds']:>9.1f}"
                      f"{found['items_per_second']:>9.2f}{per_audio:>18}")
                rates[(modality, workers)] = found
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        best = max(int(w) for w in args.workers.split(","))
        face_rate = rates[("face", best)]["items_per_second"]
        voice_per_audio = rates[("voice", best)]["seconds"] / audio_seconds
        prepare_voice_per_audio = measured["prepare_voice"] * (len(sample["voices"]) - 1) / sample_audio
        for name, size in VOXCELEB.items():
            voice_hours = size["audio_hours"] * voice_per_audio
            face_hours = size["face_frames"] / face_rate / 3600 if size["face_frames"] else None
            prepare_hours = (size["audio_hours"] * prepare_voice_per_audio
                             + (size["face_frames"] or 0) * measured["prepare_face"] / 3600) / (os.cpu_count() or 1)
            faces = f"{face_hours:.1f} h for {size['face_frames']:,} face frames" if face_hours else "faces as given"
            print(f"{name} on {best} workers: expert voices {voice_hours:.1f} h ({size['audio_hours']:,} h of audio), "
                  f"expert {faces}; prepare {prepare_hours:.1f} h on {os.cpu_count()} workers (one-process rates / "
                  "workers)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
