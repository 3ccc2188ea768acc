"""The video path on real footage: seconds of processing per minute of video, per stage, the face tracks it finds,
and a peer loop (face_recognition: dlib's HOG detector and its ResNet encoder) on the same sampled frames.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/video_real.py [--clips-dir DIR] [--fps 2] [--only NAME ...]
         [--commit REV] [--peer-upsample 1] [--skip-peer] [--detector-probe [--skip-fvmatch]] [--json FILE]

Clips: a folder of real videos with a SOURCES.csv (columns file, people_visible, ...; ../refdata/video beside the checkout by default
or $FVMATCH_REAL_VIDEO; its README.md says where each clip comes from and under which licence). The clips are not in
the repository.

1. fvmatch, in one child process (models loaded once; an untimed warm-up on the first clip): for each clip
   fvmatch.analysis.video.embed_video(embedder, clip, fps) as `fvmatch embed --video CLIP` runs it, its stage timings
   (decode, detection, embedding, speech; fvmatch.analysis.video's `timings`), its wall time, its face tracks (times, boxes).
2. The peer, in another child process: the same sampled frames (fvmatch.media.video.sampled_frames: same times,
   frames over 1280 px scaled down as fvmatch does), face_recognition.face_locations(model="hog",
   number_of_times_to_upsample=--peer-upsample: 1 is the library's default, it finds faces down to about 40 px) and
   face_encodings on every sampled frame; decode, detection and encoding timed apart. The peer has no tracker and no
   soundtrack: its figures are the cost of "detect and embed every sampled frame".
--commit REV measures the fvmatch of that commit (`git archive` into the work folder, laid out as installed; git's
state is not touched) instead of the one installed: the working tree of a shared checkout changes under a run.
Both children inherit this process's environment: set OMP_NUM_THREADS=1 for the single-thread figures; the load
average (the cores are shared) is printed before and after.

Figures per clip: s/min = seconds of processing per minute of video. Face-seconds: sampled frames in which either
pipeline found a face, divided by the fps (the seconds a face is on screen, as far as the two detectors tell);
faces per face-second: faces found / face-seconds (one person always on screen: ideally the fps). Tracks per person:
fvmatch's tracks / people visible (SOURCES.csv, counted by eye; ideally 1; in the total row, over the one-person
clips only: a face in a picture inset or a one-frame false detection counts as a track). Face px: the width of fvmatch's boxes in
the analysed frame (median, smallest); pyramid levels: MTCNN's image pyramid at its 20 px minimum face size against
one whose smallest face is 0.8 x the smallest face found. Tracking: the largest move of a track's box centre between
consecutive samples (in box widths) and of its size (ratio), and the tracks born after the first sampled frame (a
new face: what a full-frame scan is needed for).
--detector-probe (a third child): MTCNN alone on the same sampled frames, ms per frame for today's full scan (20 px
smallest face), for a full scan whose smallest face is fitted to the clip (0.8 x the smallest face the full scan
found: an upper bound on what choosing the pyramid from the faces seen can save), and a search in a square twice the
size of each face of the previous sample (smallest face half its width): ms per search, and how often it finds again
a face the full scan finds (IoU >= 0.5) - the figures behind "detect in a margin around each live track".
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = Path(os.environ.get("FVMATCH_REAL_VIDEO", Path(__file__).resolve().parents[2] / "refdata" / "video"))
MTCNN_MIN_FACE_PX = 20  # fvmatch.media.mtcnn.MIN_FACE_SIZE at the time of writing
MTCNN_FACTOR = 0.709

CODE_PRELUDE = """
import os, sys
if os.environ.get("FVMATCH_BENCH_CODE"):  # an exported commit: before the installed (editable) fvmatch
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "").lower()]
    sys.path.insert(0, os.environ["FVMATCH_BENCH_CODE"])
"""

FVMATCH_CHILD = CODE_PRELUDE + """
import json, sys, time
import fvmatch
try:
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.analysis.video import embed_video
except ModuleNotFoundError:  # --commit of a tree from before the modules were grouped into packages (148e187)
    from fvmatch.embedder import Embedder
    from fvmatch.video import embed_video
fps, paths = float(sys.argv[1]), sys.argv[2:]
print(json.dumps({"fvmatch": fvmatch.__file__}), flush=True)
embedder = Embedder.load()
started = time.perf_counter()
embed_video(embedder, paths[0], fps=fps)
print(f"warm-up on {paths[0]}: {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
for path in paths:
    started = time.perf_counter()
    try:
        evidence = embed_video(embedder, path, fps=fps)
    except Exception as error:  # a clip with neither face nor speech: its cost is still measured
        print(json.dumps({"path": path, "error": f"{type(error).__name__}: {error}",
                          "wall": time.perf_counter() - started}), flush=True)
        continue
    wall = time.perf_counter() - started
    info = evidence.info
    print(json.dumps({"path": path, "wall": wall, "timings": evidence.timings, "duration": info.duration_seconds,
                      "frames_decoded": info.frames_decoded, "frames_sampled": info.frames_sampled,
                      "tracks": [{"times": list(t.times), "boxes": [list(b) for b in t.boxes]} for t in evidence.tracks],
                      "voice": evidence.voice is not None, "notes": evidence.notes}), flush=True)
    print(f"fvmatch {path}: {wall:.1f} s", file=sys.stderr, flush=True)
"""

PEER_CHILD = CODE_PRELUDE + """
import json, sys, time
import face_recognition
import numpy as np
from fvmatch.media.video import probe_video, sampled_frames
fps, upsample, paths = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
for path in paths:
    timings = {"decode": 0.0, "detection": 0.0, "embedding": 0.0}
    frames_out = []
    began = time.perf_counter()
    info = probe_video(path)
    frames = sampled_frames(path, fps, info)
    timings["decode"] += time.perf_counter() - began
    while True:
        started = time.perf_counter()
        frame = next(frames, None)
        image = None if frame is None else np.ascontiguousarray(frame.image)  # dlib takes contiguous arrays only
        timings["decode"] += time.perf_counter() - started
        if frame is None:
            break
        started = time.perf_counter()
        boxes = face_recognition.face_locations(image, number_of_times_to_upsample=upsample, model="hog")
        timings["detection"] += time.perf_counter() - started
        started = time.perf_counter()
        face_recognition.face_encodings(image, boxes)
        timings["embedding"] += time.perf_counter() - started
        # (top, right, bottom, left) in the analysed frame -> (x1, y1, x2, y2) in displayed pixels, as fvmatch's
        frames_out.append([frame.time, [[l / frame.scale, t / frame.scale, r / frame.scale, b / frame.scale]
                                        for t, r, b, l in boxes]])
    wall = time.perf_counter() - began
    print(json.dumps({"path": path, "wall": wall, "timings": timings, "frames": frames_out}), flush=True)
    print(f"peer {path}: {wall:.1f} s", file=sys.stderr, flush=True)
"""

PROBE_CHILD = CODE_PRELUDE + """
import json, sys, time
import numpy as np
from fvmatch.media.mtcnn import MTCNN
from fvmatch.media.video import probe_video, sampled_frames
fps, paths = float(sys.argv[1]), sys.argv[2:]
MIN_PROBABILITY = 0.8  # fvmatch.media.image.FaceDetector's default threshold
detectors = {}
def detector(min_face):
    min_face = int(round(min_face))
    if min_face not in detectors:
        detectors[min_face] = MTCNN(min_face_size=min_face)
    return detectors[min_face]
def faces(found):
    boxes, probabilities = found[0], found[1]
    if boxes is None:
        return []
    return [list(map(float, b)) for b, p in zip(boxes, probabilities) if p is not None and p >= MIN_PROBABILITY]
def iou(a, b):
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0])); h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
for path in paths:
    images = [np.ascontiguousarray(f.image) for f in sampled_frames(path, fps, probe_video(path))]
    full, seconds = [], {"full": 0.0, "fitted": 0.0, "margin": 0.0}
    for image in images:
        started = time.perf_counter()
        full.append(faces(detector(20).detect(image)))
        seconds["full"] += time.perf_counter() - started
    widths = [b[2] - b[0] for found in full for b in found]
    fitted_min = max(20.0, 0.8 * min(widths)) if widths else 20.0
    fitted = []
    for image in images:
        started = time.perf_counter()
        fitted.append(faces(detector(fitted_min).detect(image)))
        seconds["fitted"] += time.perf_counter() - started
    # margin search: each face of the previous sample, looked for again in a box twice its size around it,
    # at a smallest face half its width; kept = found again where the full scan finds it (IoU >= 0.5)
    kept = wanted = margin_runs = 0
    for previous, image, now in zip(full, images[1:], full[1:]):
        height, width = image.shape[:2]
        for box in previous:
            side = 2.0 * max(box[2] - box[0], box[3] - box[1])
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
            x2, y2 = int(min(width, cx + side / 2)), int(min(height, cy + side / 2))
            target = [b for b in now if iou(b, box) > 0.0]
            started = time.perf_counter()
            found = faces(detector(max(20.0, 0.5 * (box[2] - box[0]))).detect(image[y1:y2, x1:x2]))
            seconds["margin"] += time.perf_counter() - started
            margin_runs += 1
            found = [[b[0] + x1, b[1] + y1, b[2] + x1, b[3] + y1] for b in found]
            if target:
                wanted += 1
                kept += any(iou(a, b) >= 0.5 for a in found for b in target)
    print(json.dumps({"path": path, "frames": len(images), "fitted_min": fitted_min, "seconds": seconds,
                      "faces_full": sum(map(len, full)), "faces_fitted": sum(map(len, fitted)),
                      "margin_runs": margin_runs, "margin_wanted": wanted, "margin_kept": kept}), flush=True)
    print(f"probe {path}: {sum(seconds.values()):.1f} s", file=sys.stderr, flush=True)
"""


def export_commit(revision: str, target: Path) -> Path:
    """fvmatch of `revision` laid out as installed (fvmatch/, fvmatch/models, fvmatch/training) under target."""
    archive = subprocess.run(["git", "-C", str(REPOSITORY), "archive", "--format=tar", revision, "fvmatch", "models",
                              "training"], check=True, capture_output=True).stdout
    target.mkdir(parents=True, exist_ok=True)
    archive_path = target / "code.tar"
    archive_path.write_bytes(archive)
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    for package in ("models", "training"):
        (target / package).rename(target / "fvmatch" / package)
    archive_path.unlink()
    return target


def run_child(code: str, arguments: list[str], env: dict) -> list[dict]:
    """Run a child script; its stdout lines are JSON records (progress goes to stderr, passed through)."""
    result = subprocess.run([sys.executable, "-c", code, *arguments], env=env, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"child failed (exit {result.returncode})")
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def pyramid_levels(height: int, width: int, min_face_px: float) -> int:
    """How many scales MTCNN's P-net runs over (fvmatch.media.mtcnn._pyramid_scales' rule)."""
    scale = 12.0 / min_face_px
    shortest = min(height, width) * scale
    levels = 0
    while shortest >= 12:
        levels += 1
        shortest *= MTCNN_FACTOR
    return levels


def analysed_size(resolution: str) -> tuple[int, int, float]:
    """(width, height, scale) of the frames fvmatch analyses: at most 1280 px on the longer side."""
    width, height = (int(v) for v in resolution.split("x"))
    scale = min(1.0, 1280 / max(width, height))
    return round(width * scale), round(height * scale), scale


def track_motion(track: dict, fps: float) -> tuple[float, float]:
    """Largest move of the box centre between consecutive samples (in box widths) and largest size ratio."""
    move, grow = 0.0, 1.0
    for (t0, a), (t1, b) in zip(zip(track["times"], track["boxes"]), zip(track["times"][1:], track["boxes"][1:])):
        if t1 - t0 > 1.5 / fps:
            continue  # a gap: the face was missed in between, not a move between consecutive samples
        width = max(1.0, a[2] - a[0])
        move = max(move, math.hypot((b[0] + b[2] - a[0] - a[2]) / 2, (b[1] + b[3] - a[1] - a[3]) / 2) / width)
        ratio = (b[2] - b[0]) / width
        grow = max(grow, ratio, 1 / max(ratio, 1e-6))
    return move, grow


def clip_figures(source: dict, mine: dict, peer: dict | None, fps: float) -> dict:
    minutes = mine["duration"] / 60.0 if "duration" in mine else float(source["duration_s"]) / 60.0
    tracks = mine.get("tracks", [])
    my_frames: dict[float, int] = {}
    widths = []
    _, _, scale = analysed_size(source["resolution"])
    for track in tracks:
        for when, box in zip(track["times"], track["boxes"]):
            key = round(when, 3)
            my_frames[key] = my_frames.get(key, 0) + 1
            widths.append((box[2] - box[0]) * scale)
    peer_frames = {round(t, 3): len(b) for t, b in peer["frames"] if b} if peer else {}
    face_seconds = len(set(my_frames) | set(peer_frames)) / fps
    people = int(source["people_visible"])
    first_time = min((t["times"][0] for t in tracks), default=None)
    sampled = mine.get("frames_sampled") or 1
    births_late = sum(1 for t in tracks if first_time is not None and t["times"][0] > first_time + 1e-6)
    motions = [track_motion(t, fps) for t in tracks if len(t["times"]) > 1]
    width, height, _ = analysed_size(source["resolution"])
    smallest = min(widths) if widths else None
    return {
        "clip": source["file"], "minutes": minutes, "resolution": source["resolution"], "people": people,
        "audio": source["has_audio"], "sampled": mine.get("frames_sampled"), "error": mine.get("error"),
        "mine": {k: v / minutes for k, v in mine.get("timings", {}).items()} | {"total": mine["wall"] / minutes},
        "peer": ({k: v / minutes for k, v in peer["timings"].items()} | {"total": peer["wall"] / minutes})
        if peer else None,
        "tracks": len(tracks), "tracks_1_frame": sum(1 for t in tracks if len(t["times"]) == 1),
        "tracks_per_person": len(tracks) / people if people else None,
        "face_seconds": face_seconds,
        "mine_faces": sum(my_frames.values()), "peer_faces": sum(peer_frames.values()),
        "mine_per_face_second": sum(my_frames.values()) / face_seconds if face_seconds else None,
        "peer_per_face_second": sum(peer_frames.values()) / face_seconds if face_seconds else None,
        "mine_frames_with_face": len(my_frames), "peer_frames_with_face": len(peer_frames),
        "face_px_median": sorted(widths)[len(widths) // 2] if widths else None, "face_px_min": smallest,
        "levels_now": pyramid_levels(height, width, MTCNN_MIN_FACE_PX),
        "levels_fitted": pyramid_levels(height, width, max(MTCNN_MIN_FACE_PX, 0.8 * smallest)) if smallest else None,
        "max_move": max((m for m, _ in motions), default=None), "max_grow": max((g for _, g in motions), default=None),
        "births_after_first": births_late, "births_per_min": births_late / minutes,
        "frames_with_birth": len({round(t["times"][0], 3) for t in tracks}) / sampled,
    }


def fmt(value, digits: int = 1) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def print_tables(rows: list[dict], totals: dict, fps: float, peer_upsample: int) -> None:
    print("| clip | min | res | people | tracks (1-frame) | tracks/person | face-s | faces/face-s fvmatch / peer "
          "| fvmatch decode / det / emb / speech s/min | fvmatch total s/min | peer decode / det / enc s/min "
          "| peer total s/min |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows + [totals]:
        m, p = r["mine"], r["peer"]
        print(f"| {r['clip']} | {r['minutes']:.2f} | {r['resolution']} | {r['people']} | {r['tracks']} "
              f"({r['tracks_1_frame']}) | {fmt(r['tracks_per_person'])} | {fmt(r['face_seconds'])} "
              f"| {fmt(r['mine_per_face_second'], 2)} / {fmt(r['peer_per_face_second'], 2)} "
              f"| {fmt(m.get('decode'))} / {fmt(m.get('detection'))} / {fmt(m.get('embedding'))} / "
              f"{fmt(m.get('speech'))} | **{fmt(m['total'])}** "
              f"| {fmt(p and p['decode'])} / {fmt(p and p['detection'])} / {fmt(p and p['embedding'])} "
              f"| {fmt(p and p['total'])} |" + (f" error: {r['error']}" if r.get("error") else ""))
    print()
    print(f"fps {fps:g}; peer: face_recognition HOG, upsample {peer_upsample}, + face_encodings, same sampled frames")
    print()
    print("| clip | analysed face px median / min | MTCNN pyramid levels now / fitted to the smallest face "
          "| largest centre move between samples (box widths) | largest size ratio | tracks born after the first "
          "frame (/min) | sampled frames where a track starts |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clip']} | {fmt(r['face_px_median'], 0)} / {fmt(r['face_px_min'], 0)} | {r['levels_now']} / "
              f"{fmt(r['levels_fitted'])} | {fmt(r['max_move'], 2)} | {fmt(r['max_grow'], 2)} "
              f"| {r['births_after_first']} ({r['births_per_min']:.1f}) | {r['frames_with_birth']:.1%} |")


def print_probe(sources: list[dict], probes: list[dict]) -> None:
    """MTCNN alone on the sampled frames: today's full scan, a full scan at a smallest face fitted to the clip,
    and a margin search around each face of the previous sample."""
    print("| clip | analysed | frames | full scan, 20 px: ms/frame | fitted smallest face px | fitted: ms/frame "
          "| faces full / fitted | margin search: ms each | margin searches a frame | margin finds the face again "
          "(kept / wanted) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    by_file = {Path(p["path"]).name: p for p in probes}
    for source in sources:
        p = by_file.get(source["file"])
        if not p:
            continue
        width, height, _ = analysed_size(source["resolution"])
        frames = max(1, p["frames"])
        runs = p["margin_runs"]
        print(f"| {source['file']} | {width}x{height} | {p['frames']} | {1000 * p['seconds']['full'] / frames:.0f} "
              f"| {p['fitted_min']:.0f} | {1000 * p['seconds']['fitted'] / frames:.0f} "
              f"| {p['faces_full']} / {p['faces_fitted']} "
              f"| {fmt(1000 * p['seconds']['margin'] / runs if runs else None, 0)} | {runs / frames:.2f} "
              f"| {p['margin_kept']} / {p['margin_wanted']} |")
    frames = sum(p["frames"] for p in probes)
    runs = sum(p["margin_runs"] for p in probes)
    full = sum(p["seconds"]["full"] for p in probes)
    fitted = sum(p["seconds"]["fitted"] for p in probes)
    margin = sum(p["seconds"]["margin"] for p in probes)
    print(f"| **all** | | {frames} | {1000 * full / max(1, frames):.0f} | | {1000 * fitted / max(1, frames):.0f} "
          f"| {sum(p['faces_full'] for p in probes)} / {sum(p['faces_fitted'] for p in probes)} "
          f"| {fmt(1000 * margin / runs if runs else None, 0)} | {runs / max(1, frames):.2f} "
          f"| {sum(p['margin_kept'] for p in probes)} / {sum(p['margin_wanted'] for p in probes)} |")


def total_row(rows: list[dict], mine: list[dict], peers: list[dict | None]) -> dict:
    minutes = sum(r["minutes"] for r in rows)
    single = [r for r in rows if r["people"] == 1]

    def per_minute(records: list[dict]) -> dict:
        out = {key: sum(rec["timings"].get(key, 0.0) for rec in records if "timings" in rec) / minutes
               for key in ("decode", "detection", "embedding", "speech")}
        out["total"] = sum(rec["wall"] for rec in records) / minutes
        return out

    face_seconds = sum(r["face_seconds"] for r in rows)
    return {"clip": f"**all {len(rows)} clips**", "minutes": minutes, "resolution": "", "people": "",
            "tracks": sum(r["tracks"] for r in rows), "tracks_1_frame": sum(r["tracks_1_frame"] for r in rows),
            "tracks_per_person": (sum(r["tracks"] for r in single) / len(single)) if single else None,
            "face_seconds": face_seconds,
            "mine_per_face_second": sum(r["mine_faces"] for r in rows) / face_seconds if face_seconds else None,
            "peer_per_face_second": sum(r["peer_faces"] for r in rows) / face_seconds if face_seconds else None,
            "mine": per_minute(mine), "peer": per_minute([p for p in peers if p]) if any(peers) else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips-dir", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--fps", type=float, default=2.0)
    parser.add_argument("--only", nargs="*", default=None, help="clip file names (default: every clip in SOURCES.csv)")
    parser.add_argument("--commit", default=None, help="measure the fvmatch of this commit (git archive)")
    parser.add_argument("--peer-upsample", type=int, default=1)
    parser.add_argument("--skip-peer", action="store_true")
    parser.add_argument("--skip-fvmatch", action="store_true", help="only the peer and/or the detector probe")
    parser.add_argument("--detector-probe", action="store_true",
                        help="also time MTCNN alone on the sampled frames: full frame at 20 px (today), full frame "
                        "at a smallest face fitted to the clip, and a search in a margin around each face found")
    parser.add_argument("--json", type=Path, default=None, help="write the raw records and figures here")
    args = parser.parse_args()
    sources_path = args.clips_dir / "SOURCES.csv"
    if not sources_path.is_file():
        raise SystemExit(f"{sources_path}: no SOURCES.csv (set --clips-dir or FVMATCH_REAL_VIDEO)")
    with open(sources_path, newline="") as handle:
        sources = [row for row in csv.DictReader(handle) if args.only is None or row["file"] in args.only]
    paths = [str(args.clips_dir / row["file"]) for row in sources]
    env = dict(os.environ)
    if args.commit:
        code = export_commit(args.commit, Path(tempfile.mkdtemp(prefix="fvmatch-code-")))
        env["FVMATCH_BENCH_CODE"] = str(code)
    load_before = os.getloadavg()
    started = time.perf_counter()
    if args.skip_fvmatch:
        probes = run_child(PROBE_CHILD, [str(args.fps), *paths], env)
        if args.commit:
            shutil.rmtree(code, ignore_errors=True)
        print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} {sys.executable} "
              f"{' '.join(sys.argv)}")
        print(f"load average (1 min) {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after; "
              f"{time.perf_counter() - started:.0f} s in all")
        print()
        print_probe(sources, probes)
        return
    mine = run_child(FVMATCH_CHILD, [str(args.fps), *paths], env)
    where = mine.pop(0)["fvmatch"]
    load_mid = os.getloadavg()
    peers = run_child(PEER_CHILD, [str(args.fps), str(args.peer_upsample), *paths], env) if not args.skip_peer \
        else [None] * len(paths)
    load_after = os.getloadavg()
    probes = run_child(PROBE_CHILD, [str(args.fps), *paths], env) if args.detector_probe else []
    if args.commit:
        shutil.rmtree(code, ignore_errors=True)
    by_path = {record["path"]: record for record in mine}
    peer_by_path = {record["path"]: record for record in peers if record}
    rows = [clip_figures(source, by_path[path], peer_by_path.get(path), args.fps)
            for source, path in zip(sources, paths)]
    totals = total_row(rows, [by_path[p] for p in paths], [peer_by_path.get(p) for p in paths])
    print(f"command: OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '(unset)')} {sys.executable} "
          f"{' '.join(sys.argv)}")
    print(f"fvmatch from {where}{f' (commit {args.commit})' if args.commit else ''}; {os.cpu_count()} cores; "
          f"load average (1 min) {load_before[0]:.2f} before, {load_mid[0]:.2f} after fvmatch, {load_after[0]:.2f} "
          f"after the peer; {time.perf_counter() - started:.0f} s in all")
    print()
    print_tables(rows, totals, args.fps, args.peer_upsample)
    if probes:
        print()
        print_probe(sources, probes)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "totals": totals, "fvmatch": mine, "peer": peers, "probe": probes,
                                         "load": [load_before, load_mid, load_after]}, indent=1))


if __name__ == "__main__":
    main()
