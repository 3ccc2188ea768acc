"""How long the laboratory's path takes per item on this machine, and what that means for VoxCeleb1 and VoxCeleb2.

Run: .venv/bin/python benchmarks/voxceleb_path.py [DIR] [--faces N] [--voices N] [--workers 1,2]
     .venv/bin/python benchmarks/voxceleb_path.py --identities 1000 [--per-identity 4] [--clip-seconds 4]

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

With --identities N, the path itself is timed on a generated tree instead: the synthetic corpus (fvmatch.synth, N
people, --per-identity faces and clips each) laid out as the VoxCeleb1 release (vox1_meta.csv, wav/, unzippedFaces/,
identity_splits.txt: 80% train, 10% val, 10% test) and as the VoxCeleb2 release (vox2_meta.csv, dev|test/aac/ M4A,
faces by ID) by tests/voxceleb_tree.py, then, each through the `fvmatch` command as a laboratory runs it: `import`,
`train --recipe experts --dry-run` (its measured per-item rates: prepare and expert vectors), `prepare` (one worker
per core), and a short `train` (wang2020, small config, one epoch). Printed: a table of items, seconds and items/s
per stage, and the hours at VoxCeleb scale: import and prepare from their measured rate (prepare's wall time split
between faces and voices in the proportion of the dry run's one-process rates, voices scaled by seconds of audio),
expert vectors from the dry run's rates on one worker per core. Rendering the corpus and laying it out are timed
but not projected (a laboratory downloads its release).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
TESTS = Path(__file__).resolve().parents[1] / "tests"  # tests/voxceleb_tree.py: the generated release layouts
VOXCELEB = {  # published sizes (Nagrani et al. 2017; Chung et al. 2018)
    "VoxCeleb1": {"utterances": 153_516, "audio_hours": 352, "face_frames": 1_000_000},
    "VoxCeleb2": {"utterances": 1_128_246, "audio_hours": 2_442, "face_frames": None},
}
RELEASE_OF = {"voxceleb1": "VoxCeleb1", "voxceleb2": "VoxCeleb2"}


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


def fvmatch(*args) -> tuple[dict, float]:
    """`fvmatch ARGS --json` as its own process, as a laboratory runs it: (its JSON, wall seconds)."""
    command = [str(Path(sys.executable).parent / "fvmatch"), *map(str, args), "--json"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        sys.exit(f"{' '.join(command)}: exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout), seconds


def generated_path(identities: int, per_identity: int, clip_seconds: float, layouts: list[str]) -> None:
    """Time the path on generated VoxCeleb-shaped trees of `identities` people (see the module docstring)."""
    sys.path.insert(0, str(TESTS))
    from voxceleb_tree import build_generated_release, render_corpus

    cores = os.cpu_count() or 1
    val = max(10, identities // 10)
    splits = {"train": identities - 2 * val, "val": val, "test": val}
    work = Path(tempfile.mkdtemp(prefix="voxceleb-path-"))
    rows = []  # (layout, stage, items, seconds, projected hours or None)

    def row(layout, stage, items, seconds, hours=None):
        rows.append((layout, stage, items, seconds, hours))
        print(f"  {layout} {stage}: {items:,} in {seconds:.1f} s", flush=True)

    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} on {cores} cores; {identities:,} identities "
              f"({splits}), {per_identity} faces and {per_identity} clips of {clip_seconds:g} s each", flush=True)
        started = time.perf_counter()
        rendered = render_corpus(work / "rendered", identities, per_identity, per_identity, clip_seconds=clip_seconds,
                                 workers=cores)
        row("-", "render synthetic corpus", 2 * identities * per_identity, time.perf_counter() - started)
        for layout in layouts:
            size = VOXCELEB[RELEASE_OF[layout]]
            frames, utterances = size["face_frames"] or 0, size["utterances"]
            audio_ratio = size["audio_hours"] * 3600 / utterances / clip_seconds  # VoxCeleb clip / ours, in seconds
            started = time.perf_counter()
            tree = build_generated_release(work / "trees", layout, rendered, splits)
            row(layout, "lay out release", 2 * identities * per_identity, time.perf_counter() - started)
            data, cache = work / layout / "corpus", work / layout / "cache"
            summary, seconds = fvmatch("import", layout, tree["src"], data, *tree["import_args"])
            files = summary["faces"] + summary["voices"]
            row(layout, "import", files, seconds, (frames + utterances) / (files / seconds) / 3600)
            plan, seconds = fvmatch("train", data, "--out", work / layout / "experts.safetensors", "--recipe",
                                    "experts", "--dry-run")
            row(layout, "train --dry-run (experts)", plan["measured"]["tried"], seconds)
            rate = plan["measured"]["seconds_per_item"]
            prepared, seconds = fvmatch("prepare", data, cache)
            counts = prepared["counts"]
            reasons: dict[str, int] = {}
            for failure in prepared["failures"]:
                reasons[failure["error"]] = reasons.get(failure["error"], 0) + 1
            for reason, count in sorted(reasons.items(), key=lambda pair: -pair[1]):
                print(f"  {layout} prepare: {count:,} failed: {reason}")
            # prepare's wall time shared between faces and voices as the dry run's one-process rates share it
            one_process = counts["faces"] * rate["prepare_face"] + counts["voices"] * rate["prepare_voice"]
            scale = seconds / one_process
            hours = scale * (frames * rate["prepare_face"] + utterances * rate["prepare_voice"] * audio_ratio) / 3600
            row(layout, f"prepare ({cores} workers)", counts["faces"] + counts["voices"], seconds, hours)
            experts = (frames * rate["expert_face"] + utterances * rate["expert_voice"] * audio_ratio) / cores / 3600
            row(layout, f"expert vectors (dry-run rates: {rate['expert_face']:.3f} s a face, "
                        f"{rate['expert_voice']:.3f} s a clip; {cores} workers)", 0, 0.0, experts)
            trained, seconds = fvmatch("train", cache, "--out", work / layout / "wang2020.safetensors", "--config",
                                       "small", "--epochs", "1", "--batch-size", "32", "--crop-seconds", "2")
            # items: the face-voice pairs shown (steps x batch); process start-up and validation inside the seconds
            row(layout, "train wang2020 small, 1 epoch", trained["history"][-1]["step"] * 32, seconds)
            shutil.rmtree(work / layout)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        print("| layout | stage | items | seconds | items/s | projected hours at full size |")
        print("| --- | --- | --- | --- | --- | --- |")
        for layout, stage, items, seconds, hours in rows:
            measured = (f"{items:,} | {seconds:.1f} | {items / seconds:.1f}" if items and seconds else "- | - | -")
            full = f"{hours:.2f} ({RELEASE_OF[layout]})" if hours is not None else "-"
            print(f"| {layout} | {stage} | {measured} | {full} |")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--faces", type=int, default=110)
    parser.add_argument("--voices", type=int, default=60)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--identities", type=int, help="time the path on a generated tree of this many people")
    parser.add_argument("--per-identity", type=int, default=4, help="faces, and clips, per generated person")
    parser.add_argument("--clip-seconds", type=float, default=4.0)
    parser.add_argument("--layouts", default="voxceleb1,voxceleb2")
    args = parser.parse_args()
    if args.identities is not None:
        if args.identities < 30:
            sys.exit("--identities: at least 30 (10 val and 10 test people, the rest train)")
        generated_path(args.identities, args.per_identity, args.clip_seconds, args.layouts.split(","))
        return
    if not (args.source / "faces").is_dir():
        sys.exit(f"{args.source}: no faces/ folder of real media (give DIR)")
    from fvmatch.analysis.embedder import Embedder
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
