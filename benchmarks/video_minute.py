"""A minute of 720p real footage through the video path: one pass against parts read side by side, and the peer.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_minute.py [--clips-dir DIR] [--work DIR] [--fps 2]
         [--rounds 2] [--skip-peer] [--json FILE]

The minute: the six landscape talking heads of the real clips (../refdata/video, or $FVMATCH_REAL_VIDEO; sources,
licences and sha256 in its README.md and SOURCES.csv; not in the repository) at 1280x720 or above, joined in a
fixed order into one 1280x720 25 frames/s H.264 file (1080p scaled down, 30 frames/s taken at 25), each clip's
soundtrack mono AAC (silence where a clip has none): 58.7 s, the length and kind of footage the issue names. It is
built once into --work (its sha256 printed) and reused.

In one child process (models loaded once, an untimed warm-up), in turn for --rounds rounds:
fvmatch.analysis.video.embed_video(workers=1) (one pass, as before parts) and embed_video() (parts side by side:
fvmatch.analysis.video_parts, as many as the cores), each timed (wall, and the stages summed over the processes)
and their tracks compared (frame times and boxes: they must be the same). Peak memory: this child's and its
workers' (their VmHWM, read while they run). The peer (face_recognition's HOG detector and encoder on the same sampled frames, as
benchmarks/video_real.py runs it) in another child, same run. Seconds per minute of video = wall / duration x 60.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured_child import WATCH_WORKERS  # noqa: E402

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = Path(os.environ.get("FVMATCH_REAL_VIDEO", REPOSITORY.parent / "refdata" / "video"))
MINUTE_CLIPS = ("news_ffpp004_720p.mp4", "home_dfdc_lynaeydofd_1080p.mp4", "selfie_lp_s18.mp4",
                "news_ffpp634_720p.mp4", "studio_kim_1080p.mp4", "selfie_lp_s32.mp4")
WIDTH, HEIGHT, RATE, AUDIO_RATE = 1280, 720, 25, 48000

CHILD = WATCH_WORKERS + """
import json, resource, sys, time
from fvmatch.analysis.embedder import Embedder
from fvmatch.analysis.video import embed_video
fps, rounds, path = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
embedder = Embedder.load()
embed_video(embedder, path, fps=fps, workers=1)  # warm-up: models loaded, caches filled
runs = []
for round_number in range(rounds):
    for workers in (1, None):
        started = time.perf_counter()
        evidence = embed_video(embedder, path, fps=fps, workers=workers)
        wall = time.perf_counter() - started
        runs.append({"workers": workers, "wall": wall, "timings": evidence.timings,
                     "duration": evidence.info.duration_seconds, "frames_sampled": evidence.info.frames_sampled,
                     "face_chips": evidence.face_chips,
                     "tracks": [{"times": list(t.times), "boxes": [[round(v, 1) for v in b] for b in t.boxes]}
                                for t in evidence.tracks], "voice": evidence.voice is not None})
        print(f"workers {workers}: {wall:.1f} s", file=sys.stderr, flush=True)
print(json.dumps({"runs": runs, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_peak_mib": workers_peak[0]}))
"""

PEER = """
import json, sys, time
import face_recognition, numpy as np
from fvmatch.media.video import probe_video, sampled_frames
fps, path = float(sys.argv[1]), sys.argv[2]
started = time.perf_counter()
faces = 0
for frame in sampled_frames(path, fps, probe_video(path)):
    image = np.ascontiguousarray(frame.image)
    boxes = face_recognition.face_locations(image, number_of_times_to_upsample=1, model="hog")
    face_recognition.face_encodings(image, boxes)
    faces += len(boxes)
print(json.dumps({"wall": time.perf_counter() - started, "faces": faces}))
"""


def build_minute(clips: Path, target: Path) -> Path:
    """The six clips joined into one 1280x720 25 frames/s H.264 + AAC file (built once)."""
    import av
    import numpy as np

    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".partial.mp4")
    with av.open(str(partial), "w") as output:
        video = output.add_stream("libx264", rate=RATE, options={"preset": "veryfast", "crf": "20"})
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        audio = output.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        frame_number, audio_samples = 0, 0
        for name in MINUTE_CLIPS:
            with av.open(str(clips / name)) as source:
                duration = source.duration / 1_000_000
                frames = source.decode(video=0)
                wanted = 0
                for frame in frames:
                    while frame.time is not None and frame.time + 1e-6 >= wanted / RATE and wanted / RATE < duration:
                        picture = frame.reformat(width=WIDTH, height=HEIGHT, format="yuv420p")
                        picture.pts, picture.time_base = frame_number, Fraction(1, RATE)
                        output.mux(video.encode(picture))
                        frame_number, wanted = frame_number + 1, wanted + 1
                sound = np.zeros(int(round(wanted / RATE * AUDIO_RATE)), np.float32)
                if source.streams.audio:
                    sound = _soundtrack(clips / name, len(sound))
                for begin in range(0, len(sound), 1024):
                    block = av.AudioFrame.from_ndarray(sound[None, begin:begin + 1024], format="flt", layout="mono")
                    block.sample_rate, block.pts = AUDIO_RATE, audio_samples
                    audio_samples += block.samples
                    output.mux(audio.encode(block))
        output.mux(video.encode(None))
        output.mux(audio.encode(None))
    partial.replace(target)
    return target


def _soundtrack(path: Path, samples: int):
    """A clip's first audio track, mono at AUDIO_RATE, cut or padded with silence to `samples` (a second reading of
    the file: decoding the picture consumed the first one's packets)."""
    import av
    import numpy as np

    sound = np.zeros(samples, np.float32)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    with av.open(str(path)) as source:
        pieces = [r.to_ndarray().reshape(-1) for f in source.decode(audio=0) for r in resampler.resample(f)]
    pieces += [r.to_ndarray().reshape(-1) for r in resampler.resample(None)]
    heard = np.concatenate(pieces)[:samples] if pieces else sound[:0]
    sound[:len(heard)] = heard
    return sound


def child(code: str, *arguments: str) -> dict:
    result = subprocess.run([sys.executable, "-c", code, *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"child failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-dir", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--work", type=Path, default=REPOSITORY.parent / "refwork" / "video_minute")
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--json", type=Path)
    options = parser.parse_args()
    missing = [name for name in MINUTE_CLIPS if not (options.clips_dir / name).is_file()]
    if missing:
        raise SystemExit(f"{options.clips_dir}: missing {', '.join(missing)} (see benchmarks/video_real.py)")
    minute = build_minute(options.clips_dir, options.work / "minute_720p.mp4")
    digest = hashlib.sha256(minute.read_bytes()).hexdigest()
    print(f"{minute}: {minute.stat().st_size / 2**20:.1f} MiB, sha256 {digest}")
    print(f"cores this process may use: {len(os.sched_getaffinity(0))}; load average {os.getloadavg()[0]:.2f} before")
    began = time.perf_counter()
    fvmatch = child(CHILD, str(options.fps), str(options.rounds), str(minute))
    peer = None if options.skip_peer else child(PEER, str(options.fps), str(minute))
    print(f"load average {os.getloadavg()[0]:.2f} after; {time.perf_counter() - began:.0f} s in all\n")

    runs = fvmatch["runs"]
    duration = runs[0]["duration"]
    reference = runs[0]["tracks"]
    print(f"| {options.fps:g} fps, {duration:.1f} s of 1280x720 | processes | decode / detection / embedding / speech "
          "(s per min, summed over processes) | wall s per min | tracks | same tracks as one pass |")
    print("|---|---|---|---|---|---|---|")
    for run in runs:
        per_minute = 60.0 / run["duration"]
        stages = " / ".join(f"{run['timings'].get(stage, 0.0) * per_minute:.1f}"
                            for stage in ("decode", "detection", "embedding", "speech"))
        label = "one pass (workers=1)" if run["workers"] == 1 else "parts side by side"
        print(f"| {label} | {int(run['timings'].get('processes', 1))} | {stages} | "
              f"**{run['wall'] * per_minute:.1f}** | {len(run['tracks'])} | {run['tracks'] == reference} |")
    if peer is not None:
        print(f"| peer: face_recognition HOG + encoder, every sampled frame | 1 | - | "
              f"**{peer['wall'] * 60.0 / duration:.1f}** | ({peer['faces']} faces) | - |")
    one = statistics.median(run["wall"] for run in runs if run["workers"] == 1)
    parts = statistics.median(run["wall"] for run in runs if run["workers"] is None)
    print(f"\nmedian wall: one pass {one * 60 / duration:.1f} s/min, parts {parts * 60 / duration:.1f} s/min (ratio "
          f"{parts / one:.2f}); peak RSS {fvmatch['peak_mib']:.0f} MiB here, {fvmatch['workers_peak_mib']:.0f} MiB "
          "the largest worker")
    if options.json:
        options.json.write_text(json.dumps({"minute": str(minute), "sha256": digest, "fvmatch": fvmatch,
                                            "peer": peer}, indent=1))


if __name__ == "__main__":
    main()
