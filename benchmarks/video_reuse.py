"""What reusing a face's vectors costs and saves (fvmatch.analysis.video_faces.ChipReuse), on real clips.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_reuse.py [--clips-dir DIR] [--fps 2]
         [--min-correlation 0.9 0.95 0.97] [--only NAME ...]

Clips: as benchmarks/video_real.py (../refdata/video beside the checkout by default, or $FVMATCH_REAL_VIDEO).
For each clip, in one process (models loaded once), fvmatch.analysis.video.face_tracks runs with reuse off (the
descriptor on every face) and at each --min-correlation, in turn. Printed per setting, over all clips: faces reused
(share), seconds of detection and embedding per minute of video, and against reuse off: clips whose tracks differ
(number of tracks, or any track's frames), and the cosine between each track's vector with and without reuse in the
dlib-face space (the lowest over all tracks, and the median).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

DEFAULT_CLIPS = Path(os.environ.get("FVMATCH_REAL_VIDEO", Path(__file__).resolve().parents[2] / "refdata" / "video"))


def run(embedder, clip: Path, fps: float, min_correlation: float | None) -> dict:
    from fvmatch.analysis.video import face_tracks
    from fvmatch.analysis.video_faces import ChipReuse
    from fvmatch.media.video import probe_video
    from fvmatch.spaces import spaces_of

    ChipReuse.MIN_CORRELATION = 2.0 if min_correlation is None else min_correlation  # above 1: never reused
    info = probe_video(clip)
    timings = {"decode": 0.0, "detection": 0.0, "embedding": 0.0}
    counts: dict[str, int] = {}
    # one pass (workers=1): the setting patched here does not reach worker processes
    tracks = face_tracks(embedder, clip, info, fps, spaces_of("face"), timings, None, counts, workers=1)
    return {"minutes": info.duration_seconds / 60, "timings": timings, "counts": counts,
            "tracks": {tuple(track.times): track.vector("dlib-face") for track in tracks}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips-dir", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--min-correlation", type=float, nargs="+", default=[0.9, 0.95, 0.97])
    parser.add_argument("--only", nargs="*")
    args = parser.parse_args()
    clips = sorted(args.clips_dir.glob("*.mp4"))
    if args.only:
        clips = [clip for clip in clips if clip.name in args.only or clip.stem in args.only]
    if not clips:
        sys.exit(f"no .mp4 clips in {args.clips_dir} (set --clips-dir or FVMATCH_REAL_VIDEO)")
    from fvmatch.analysis.embedder import Embedder

    embedder = Embedder.load()
    run(embedder, clips[0], args.fps, None)  # warm-up: models loaded, caches filled
    settings = [None, *args.min_correlation]
    results = {setting: [] for setting in settings}
    for clip in clips:
        for setting in settings:
            results[setting].append(run(embedder, clip, args.fps, setting))
        print(f"{clip.name}: done", file=sys.stderr, flush=True)
    print(f"{len(clips)} clips, {sum(r['minutes'] for r in results[None]):.2f} min of video, {args.fps:g} fps; "
          f"load average {os.getloadavg()[0]:.2f}")
    print("\n| reuse | faces | reused | detection s/min | embedding s/min | clips whose tracks differ | "
          "track vector cos vs off: lowest / median |")
    print("|---|---|---|---|---|---|---|")
    minutes = sum(r["minutes"] for r in results[None])
    for setting in settings:
        rows = results[setting]
        faces = sum(r["counts"]["embedded"] + r["counts"]["reused"] for r in rows)
        reused = sum(r["counts"]["reused"] for r in rows)
        differ, cosines = 0, []
        for row, base in zip(rows, results[None]):
            if row["tracks"].keys() != base["tracks"].keys():
                differ += 1
            cosines += [float(vector @ base["tracks"][times]) for times, vector in row["tracks"].items()
                        if times in base["tracks"]]
        name = "off" if setting is None else f"correlation >= {setting:g}"
        print(f"| {name} | {faces} | {reused / max(faces, 1):.2f} | "
              f"{sum(r['timings']['detection'] for r in rows) / minutes:.1f} | "
              f"{sum(r['timings']['embedding'] for r in rows) / minutes:.1f} | {differ} | "
              f"{min(cosines):.4f} / {statistics.median(cosines):.4f} |")


if __name__ == "__main__":
    main()
