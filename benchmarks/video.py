"""The video path's cost on this machine: seconds of processing per minute of 720p video, per stage, and the peak
memory of a 1-hour file.

Run: .venv/bin/python benchmarks/video.py [--fps 2] [--hour-fps 0.1] [--workdir DIR] [--skip-hour]

1. Writes a 1-minute 1280x720 talking-head MP4 (H.264 + AAC, 25 frames/s: a synthetic person's face, a new photo
   each second, drifting; their synthetic voice; fvmatch.synth.video) and a 1-hour file made of it remuxed 60 times
   (packets copied with shifted timestamps: a real 1-hour H.264/AAC stream, no re-encoding).
2. In a fresh process for each file: loads the models and runs fvmatch.analysis.video.embed_video on a 4-second clip
   (untimed warm-up), then on the file: decode (every frame decoded, the sampled ones converted to RGB), detection
   (MTCNN on each sampled frame, and the face spaces' inputs cut), embedding (the face spaces, in batches, and the
   track linking), speech (soundtrack decoded to 16 kHz, silero-vad, the voice spaces), each in seconds; the
   process's peak RSS (getrusage; the process started by a small parent, benchmarks/measured_child.py, so that
   this one's memory does not count) and its RSS after the warm-up (models loaded); a file of 30 s or more is
   read in parts side by side (fvmatch.analysis.video_parts): the stages are then summed over the processes, and
   the largest worker's own peak (VmHWM, read while it runs) is given beside.
The 1-minute file is processed at --fps (2: the default of the commands); the 1-hour file at --hour-fps (0.1 by
default, so that the run takes minutes, not an hour: every frame is still decoded and the whole soundtrack searched
and embedded; the face tracks then hold 360 frames' numbers instead of 7,200).
Prints a markdown table and the load average (the 2 cores are shared: figures are of this run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from measured_child import WATCH_WORKERS, measure as measure_child  # noqa: E402

CHILD = WATCH_WORKERS + """
import json, resource, sys, time
from fvmatch.analysis.embedder import Embedder
from fvmatch.analysis.video import embed_video
path, warm, fps = sys.argv[1], sys.argv[2], float(sys.argv[3])
embedder = Embedder.load()
embed_video(embedder, warm, fps=2.0)
def rss_mib():
    with open('/proc/self/statm') as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20
loaded = rss_mib()
started = time.perf_counter()
evidence = embed_video(embedder, path, fps=fps)
wall = time.perf_counter() - started
print(json.dumps({"timings": evidence.timings, "wall": wall, "loaded_rss_mib": loaded,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "workers_peak_rss_mib": workers_peak[0], "processes": evidence.timings.get("processes", 1),
                  "duration": evidence.info.duration_seconds, "frames_decoded": evidence.info.frames_decoded,
                  "frames_sampled": evidence.info.frames_sampled, "tracks": [t.frames for t in evidence.tracks],
                  "speech_seconds": evidence.voice.quality["speech_seconds"] if evidence.voice else 0.0}))
"""


def write_minute(path: Path, seconds: float) -> None:
    import numpy as np

    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.video import OnScreen, write_talking_head

    person = draw_identity("benchmark", np.random.default_rng(7))
    write_talking_head(path, [OnScreen(person, (0.5, 0.5), 0.45)], seconds, width=1280, height=720, frame_rate=25,
                       seed=7)


def remux_repeated(source: Path, target: Path, times: int) -> None:
    """`source` played `times` times in a row, as one file: packets copied, timestamps shifted by its span."""
    import av

    with av.open(str(source)) as first:
        ends, starts = {}, {}
        for packet in first.demux():
            if packet.pts is None:
                continue
            index = packet.stream.index
            starts[index] = min(starts.get(index, packet.pts), packet.pts)
            ends[index] = max(ends.get(index, 0), packet.pts + (packet.duration or 0))
    spans = {index: ends[index] - starts[index] for index in ends}
    with av.open(str(source)) as source_file, av.open(str(target), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in source_file.streams}
        for round_number in range(times):
            source_file.seek(0)
            for packet in source_file.demux():
                if packet.dts is None:
                    continue
                shift = round_number * spans[packet.stream.index]
                packet.pts += shift
                packet.dts += shift
                packet.stream = streams[packet.stream.index]
                out.mux(packet)


def measure(path: Path, warm: Path, fps: float) -> dict:
    result = measure_child([sys.executable, "-c", CHILD, str(path), str(warm), str(fps)])
    if result.exit_code != 0:
        raise SystemExit(f"child failed on {path}: {result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--hour-fps", type=float, default=0.1)
    parser.add_argument("--minutes", type=int, default=60, help="length of the long file in minutes")
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--skip-hour", action="store_true")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="fvmatch-video-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    minute, warm, hour = workdir / "minute_720p.mp4", workdir / "warm.mp4", workdir / f"{args.minutes}min_720p.mp4"
    started = time.perf_counter()
    if not minute.exists():
        write_minute(minute, 60.0)
    if not warm.exists():
        write_minute(warm, 4.0)
    print(f"wrote {minute} ({minute.stat().st_size / 2**20:.1f} MiB) in {time.perf_counter() - started:.0f} s",
          file=sys.stderr)
    rows = [("1 min 720p25", args.fps, measure(minute, warm, args.fps))]
    if not args.skip_hour:
        if not hour.exists():
            started = time.perf_counter()
            remux_repeated(minute, hour, args.minutes)
            print(f"wrote {hour} ({hour.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
        rows.append((f"{args.minutes} min 720p25", args.hour_fps, measure(hour, warm, args.hour_fps)))
    print(f"video path, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end; "
          "seconds of processing per minute of video")
    print()
    print("| file | fps sampled | frames decoded / sampled | decode s/min | detection s/min | embedding s/min "
          "| speech s/min | total s/min | models loaded RSS MiB | peak RSS MiB | processes | a worker's peak RSS MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, fps, r in rows:
        minutes = r["duration"] / 60.0
        t = r["timings"]
        print(f"| {name} | {fps:g} | {r['frames_decoded']} / {r['frames_sampled']} | {t['decode'] / minutes:.2f} "
              f"| {t['detection'] / minutes:.2f} | {t['embedding'] / minutes:.2f} | {t['speech'] / minutes:.2f} "
              f"| {r['wall'] / minutes:.2f} | {r['loaded_rss_mib']:.0f} | {r['peak_rss_mib']:.0f} | {r['processes']} "
              f"| {r['workers_peak_rss_mib']:.0f} |")
    for name, fps, r in rows:
        print(f"{name}: tracks {r['tracks'][:5]}, speech {r['speech_seconds']:.0f} s of {r['duration']:.0f} s")


if __name__ == "__main__":
    main()
