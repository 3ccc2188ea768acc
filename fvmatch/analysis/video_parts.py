"""A long video's picture read in parts, one process a core, side by side: the cores a machine has, where one
process uses one (dlib's descriptor holds Python's lock, so threads would not share the work).

The timeline is cut into `video_parts` where one pass starts its search afresh (every FRESH_EVERY slots of the
sampling grid: a full scan, no vector reused); this process reads the first part and a spawned worker process each
other one (fvmatch.analysis.video_faces.sampled_faces on its part: the file sought to the key frame before it), so
every part samples the frames, finds the faces and embeds them as one pass does there. Their faces come back in
order and are linked as one pass's are (fvmatch.analysis.video.face_tracks): the tracks are one pass's
(tests/test_video_parts.py). The parts' own figures (frames decoded and sampled, seconds per stage) are summed.

Anything a worker cannot read (damage, an unreadable part, a worker that dies) gives None, and the caller reads the
video in one pass, as it always did: damage part-way ends a single pass's frames, and that rule stays one rule.
"""
from __future__ import annotations

import dataclasses
import os
import queue as queues
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fvmatch.analysis.embedder import Embedder
from fvmatch.analysis.video_faces import FRESH_EVERY, sampled_faces
from fvmatch.errors import FvmatchError
from fvmatch.media.tracks import FrameFace
from fvmatch.media.video import PictureRead, VideoInfo, finish_picture

# each part at least this long: a worker costs its start (a spawned interpreter loading the face models: 0.6-2.5 s
# measured, torch's import the most of it) before its first frame, paid back only over this much video
PART_MIN_SECONDS = 15.0
WORKERS_VARIABLE = "FVMATCH_VIDEO_WORKERS"  # the processes a video may use (1: one pass, as before parts)
WORKER_MIB = 1024  # a worker's peak memory with the face models (torch's joint space included), rounded up
POLL_SECONDS = 0.25  # how often waiting for the workers reports progress

Part = tuple[float, float | None]


def default_workers() -> int:
    """The processes a video may use: $FVMATCH_VIDEO_WORKERS where set, else the cores this process may run on, no
    more than the memory available holds (WORKER_MIB each beyond this process)."""
    if (setting := os.environ.get(WORKERS_VARIABLE, "").strip()):
        try:
            return max(1, int(setting))
        except ValueError:
            return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    available = _available_mib()
    return max(1, min(cores, cores if available is None else 1 + int(available // WORKER_MIB)))


def _available_mib() -> float | None:
    """The memory the system can give without swapping (Linux's MemAvailable), in MiB; None where not said."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return None


def video_parts(duration: float, fps: float, workers: int | None = None) -> list[Part]:
    """The video's timeline cut into at most `workers` (default default_workers()) parts of about PART_MIN_SECONDS or
    more, each starting where one pass starts afresh (a multiple of FRESH_EVERY sampling periods): [(0, end),
    (start, end), ..., (start, None)]; [(0, None)] for one."""
    workers = default_workers() if workers is None else max(1, workers)
    count = max(1, min(workers, int(duration // PART_MIN_SECONDS))) if duration > 0 else 1
    grid = FRESH_EVERY / fps
    bounds = [bound for bound in sorted({round(duration * k / count / grid) * grid for k in range(1, count)})
              if 0.0 < bound < duration]
    return list(zip([0.0, *bounds], [*bounds, None]))


@dataclass
class PartJob:
    """What a worker needs to read one part as this process would: the file, the faces' spaces and the joint
    checkpoint they come from."""

    path: str
    info: VideoInfo
    fps: float
    spaces: list[str]
    checkpoint_path: str


@dataclass
class PartFaces:
    """A part's sampled frames and faces, with its own figures."""

    faces: list[tuple[float, list[FrameFace]]]
    timings: dict[str, float]
    counts: dict[str, int]
    read: PictureRead
    damage: list[str]
    frames_decoded: int
    frames_sampled: int


def faces_by_parts(embedder: Embedder, path: Path, info: VideoInfo, fps: float, spaces: Sequence[str],
                   parts: list[Part], timings: dict[str, float], progress: Callable[[float], None] | None,
                   counts: dict[str, int]) -> list[tuple[float, list[FrameFace]]] | None:
    """Every part's sampled frames and faces, in order, read side by side (this process the first part), `info`,
    `timings` (summed over the processes, and "processes": how many read the picture) and `counts` filled in as one
    pass fills them; None where a part could not be read whole (why: a note in `info.notes`; the caller then reads
    the video in one pass)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")  # a fork would copy this process's threads' locks mid-use
    reached = context.Array("d", [start for start, _ in parts], lock=False)  # each part's video time reached
    results = context.Queue()
    job = PartJob(str(path), _copy(info), fps, list(spaces), str(embedder.checkpoint_path))
    workers = [context.Process(target=_read_part, args=(job, index, parts[index], results, reached), daemon=True)
               for index in range(1, len(parts))]

    def tell() -> None:
        if progress is not None:
            progress(sum(seconds - start for seconds, (start, _) in zip(reached, parts)))

    def told(seconds: float) -> None:
        reached[0] = seconds
        tell()

    here = _copy(info)  # the first part's reading, the video's once every part is read
    try:
        for worker in workers:
            worker.start()
        first = _faces_of(embedder, job, here, parts[0], told)
        if isinstance(first, str):
            return _one_pass(info, parts[0], first)
        read = {0: first}
        while len(read) < len(parts):
            tell()
            try:
                index, outcome = results.get(timeout=POLL_SECONDS)
            except queues.Empty:
                ended = [(index, worker.exitcode) for index, worker in enumerate(workers, start=1)
                         if worker.exitcode is not None and index not in read]
                if ended and results.empty():  # killed, out of memory: its part is missing
                    index, code = ended[0]
                    return _one_pass(info, parts[index], f"its worker process ended with exit code {code}")
                continue
            if isinstance(outcome, str):
                return _one_pass(info, parts[index], outcome)
            read[index] = outcome
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()
        results.close()
    ordered = [read[index] for index in range(len(parts))]
    damaged = next((index for index, part in enumerate(ordered) if part.damage), None)
    if damaged is not None:
        return _one_pass(info, parts[damaged], ordered[damaged].damage[0])
    _merge(info, ordered, timings, counts, here)
    return [face for part in ordered for face in part.faces]


def _copy(info: VideoInfo) -> VideoInfo:
    """A copy of the video's description that reading a part fills in without touching the original."""
    return dataclasses.replace(info, damage=list(info.damage), notes=list(info.notes))


def _one_pass(info: VideoInfo, part: Part, reason: str) -> None:
    """Say why the video is read in one pass after all (a note the analyst sees), and give None: the caller reads
    it so."""
    info.notes.append(f"read in one pass: the part from {part[0]:g} s could not be read apart ({reason})")
    return None


def _faces_of(embedder: Embedder, job: PartJob, info: VideoInfo, part: Part,
              progress: Callable[[float], None]) -> PartFaces | str:
    """One part's faces read on `info` (a copy of the video's description, filled in as it is read); where it could
    not be read, the reason (the error's message)."""
    timings = {"decode": 0.0, "detection": 0.0, "embedding": 0.0}
    counts = {"embedded": 0, "reused": 0}
    read, damage_before = PictureRead(), len(info.damage)
    decoded_before, sampled_before = info.frames_decoded, info.frames_sampled
    try:
        faces = list(sampled_faces(embedder, Path(job.path), info, job.fps, job.spaces, timings, progress, counts,
                                   part=part, read=read))
    except FvmatchError as error:
        return str(error)
    return PartFaces(faces, timings, counts, read, info.damage[damage_before:], info.frames_decoded - decoded_before,
                     info.frames_sampled - sampled_before)


def _read_part(job: PartJob, index: int, part: Part, results, reached) -> None:
    """A worker process: read one part with models of its own and put (index, PartFaces, or why it could not) on
    `results`."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it ends the workers
    try:
        embedder = Embedder.load(job.checkpoint_path)

        def told(seconds: float) -> None:
            reached[index] = seconds

        outcome = _faces_of(embedder, job, job.info, part, told)
    except Exception as error:  # noqa: BLE001 - named to the parent, which reads the video in one pass, and says so
        outcome = f"{type(error).__name__}: {error}"
    results.put((index, outcome))


def _merge(info: VideoInfo, parts: list[PartFaces], timings: dict[str, float], counts: dict[str, int],
           first: VideoInfo) -> None:
    """The parts' figures into the video's: frames counted, the first part's rotation and notes, every stage's
    seconds and faces summed, then the notes about the whole picture (fvmatch.media.video.finish_picture)."""
    info.rotation, info.width, info.height = first.rotation, first.width, first.height
    info.notes[:] = first.notes
    info.frames_decoded += sum(part.frames_decoded for part in parts)
    info.frames_sampled += sum(part.frames_sampled for part in parts)
    timings["processes"] = len(parts)
    for part in parts:
        for stage, seconds in part.timings.items():
            timings[stage] = timings.get(stage, 0.0) + seconds
        for kind, number in part.counts.items():
            counts[kind] = counts.get(kind, 0) + number
    last_time = next((part.read.last_time for part in reversed(parts) if part.read.last_time is not None), None)
    whole = PictureRead(last_time, [interval for part in parts for interval in part.read.intervals])
    finish_picture(info, whole, len(info.damage))
