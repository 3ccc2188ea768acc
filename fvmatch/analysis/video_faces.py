"""One pass over a video's picture, or over a part of it: each sampled frame's faces found (MTCNN, searched where
faces were and as small as they were: PyramidFloor) and embedded in the face spaces (a face that barely changed
reusing the vectors of the one before it: ChipReuse), in displayed-picture pixels, in order. fvmatch.analysis.video
links them into tracks; fvmatch.analysis.video_parts runs parts of one video side by side.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvmatch.analysis.embedder import Embedder, PreparedFace
from fvmatch.evidence.age import face_age_qualities
from fvmatch.media.tracks import FrameFace, iou
from fvmatch.media.video import PictureRead, VideoInfo, sampled_frames
from fvmatch.spaces import FACE_SPACE

FRAME_BATCH = 16  # sampled frames whose faces are embedded together
# every FRESH_EVERY slots of the sampling grid (16 s at the default 2 fps) the search starts afresh, as at the start
# of the video: a full scan and no vector reused from the sample before. A part of the video that starts there
# (fvmatch.analysis.video_parts) then finds and embeds exactly the faces one pass does.
FRESH_EVERY = 32


def sampling_slot(when: float, fps: float) -> int:
    """A sampled frame's place on the sampling grid: its time in sampling periods, floored (with the 1 us
    tolerance of fvmatch.media.video.sampled_frames)."""
    return int(np.floor((when + 1e-6) * fps))


def sampled_faces(embedder: Embedder, path: Path, info: VideoInfo, fps: float, spaces: Sequence[str],
                  timings: dict[str, float], progress: Callable[[float], None] | None, counts: dict[str, int],
                  part: tuple[float, float | None] | None = None,
                  read: PictureRead | None = None) -> Iterator[tuple[float, list[FrameFace]]]:
    """Each sampled frame's time and faces (in displayed-picture pixels, with their vectors), in order: the whole
    picture, or `part` of it (fvmatch.media.video.sampled_frames)."""
    from PIL import Image

    frames = sampled_frames(path, fps, info, progress, part=part, read=read)
    pending: list[tuple[float, list[tuple[PreparedFace, float, ChipSlot]]]] = []
    floor = PyramidFloor()
    reuse = ChipReuse() if FACE_SPACE in spaces else None
    while True:
        started = time.perf_counter()
        frame = next(frames, None)
        timings["decode"] += time.perf_counter() - started
        if frame is not None:
            started = time.perf_counter()
            slot = sampling_slot(frame.time, fps)
            smallest, picture = floor.next_smallest(slot), Image.fromarray(frame.image)
            crops = embedder.detector.detect(picture, smallest, floor.regions(*picture.size))
            floor.saw(crops)
            prepared = [PreparedFace(crop, {name: embedder.space(name).prepare(frame.image, crop) for name in spaces},
                                     len(crops)) for crop in crops]
            slots = reuse.slots(prepared, slot) if reuse is not None else [ChipSlot() for _ in prepared]
            pending.append((frame.time, [(face, frame.scale, slot) for face, slot in zip(prepared, slots)]))
            timings["detection"] += time.perf_counter() - started
        if pending and (frame is None or len(pending) >= FRAME_BATCH):
            started = time.perf_counter()
            _fill_slots([(face, slot) for _, found in pending for face, _, slot in found], spaces, embedder, counts)
            embedded = [(when, [_frame_face(when, face, scale, slot.vectors, slot.age) for face, scale, slot in found])
                        for when, found in pending]
            pending = []
            timings["embedding"] += time.perf_counter() - started
            yield from embedded
        if frame is None:
            return


def _fill_slots(faces: list[tuple[PreparedFace, ChipSlot]], spaces: Sequence[str], embedder: Embedder,
                counts: dict[str, int]) -> None:
    """Embed each face whose slot is still empty (once a slot, though several faces share it) and read its age off
    its dlib-face chip (about 2 ms a face: a track carries its best frame's reading)."""
    todo, seen = [], set()
    for face, slot in faces:
        if slot.vectors is None and id(slot) not in seen:
            seen.add(id(slot))
            todo.append((face, slot))
    counts["embedded"] += len(todo)
    counts["reused"] += len(faces) - len(todo)
    if not todo:
        return
    vectors = embedder.embed_prepared_faces([face for face, _ in todo], spaces)
    ages = (face_age_qualities(np.stack([face.inputs[FACE_SPACE] for face, _ in todo]))
            if FACE_SPACE in spaces else [None] * len(todo))
    for (_, slot), vector, age in zip(todo, vectors, ages):
        slot.vectors, slot.age = vector, age


@dataclass(eq=False)
class ChipSlot:
    """The vectors and age reading one embedded face chip gives; the faces that reuse it share the slot."""

    vectors: dict[str, np.ndarray] | None = None
    age: dict | None = None
    signature: np.ndarray | None = None  # chip_signature of the chip embedded


def chip_signature(chip: np.ndarray) -> np.ndarray:
    """A dlib-face chip (150x150x3 uint8, aligned on the eyes and nose) as a 30x30 grey picture of its centre (the
    face, not the margin around it), zero mean and unit length: the dot product of two is their correlation, blind
    to a change of brightness or contrast."""
    grey = chip[15:135, 15:135].astype(np.float32).mean(axis=2)
    small = grey.reshape(30, 4, 30, 4).mean(axis=(1, 3)).ravel()
    small -= small.mean()
    return small / (float(np.linalg.norm(small)) + 1e-6)


class ChipReuse:
    """A face whose aligned chip barely changed since the embedded face before it takes that face's vectors instead
    of running the descriptor again (the ResNet is about 80 ms a face on one core, most of a video's time once
    detection is cheap). "Barely changed": the face overlaps one of the sample before (IoU at least MIN_IOU) whose
    embedded chip it correlates with at MIN_CORRELATION or more (chip_signature). It is always compared with the chip
    that was embedded, never with a reused one, so small changes cannot add up along a track. On 30 real clips
    (benchmarks/video_reuse.py; docs/benchmarks.md, "Real video footage") 0.9 reuses 40% of the faces, the tracks
    are the same as with every face embedded, and each track's vector is within cosine 0.9955 of its own then.
    Nothing is reused across the start of a block of FRESH_EVERY sampling slots.
    """

    MIN_IOU = 0.5
    MIN_CORRELATION = 0.9

    def __init__(self) -> None:
        self._previous: list[tuple[tuple[float, ...], ChipSlot]] = []  # the last sample's faces: box and slot
        self._block: int | None = None  # the block of FRESH_EVERY sampling slots of the last sample

    def slots(self, faces: Sequence[PreparedFace], sampling_slot: int | None = None) -> list[ChipSlot]:
        """Each face's slot: the one of the face before it where its chip barely changed, else a new one (always
        a new one in the first sample of a block of FRESH_EVERY `sampling_slot`s)."""
        if sampling_slot is not None:
            block = sampling_slot // FRESH_EVERY
            if block != self._block:
                self._previous = []
            self._block = block
        chosen = []
        for face in faces:
            signature = chip_signature(face.inputs[FACE_SPACE])
            overlaps = [(iou(box, face.crop.box), slot) for box, slot in self._previous]
            overlap, slot = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
            if slot is None or overlap < self.MIN_IOU or float(signature @ slot.signature) < self.MIN_CORRELATION:
                slot = ChipSlot(signature=signature)
            chosen.append(slot)
        self._previous = [(face.crop.box, slot) for face, slot in zip(faces, chosen)]
        return chosen


class PyramidFloor:
    """Where and how small each sampled frame is searched for faces. The detector's image pyramid costs most at its
    finest levels, which only faces smaller than any on screen need, and over the whole frame, where only the faces
    already on screen are: between full scans (the first sample of every SCAN_EVERY slots of the sampling grid,
    whenever the sample before found no face, and after a region lost its face) a frame is searched around each face of the sample before (`regions`: a square
    REGION_SIDE times the face's size, centred on it) for faces at least FLOOR_SHARE of the smallest of them, and
    over the whole frame for faces at least NEW_FACE_SHARE of its shorter side (the pyramid's few coarse levels:
    cheap). A face that moves, grows or shrinks by up to that much between samples is still found, a large new one
    at once, a smaller new one at the next full scan (within SCAN_EVERY samples: 2 s at the default 2 fps)."""

    SCAN_EVERY = 4
    FLOOR_SHARE = 0.5
    REGION_SIDE = 2.0
    REGION_MAX_SHARE = 0.5  # regions covering more of the frame than this: the whole frame is searched (floored)
    NEW_FACE_SHARE = 0.2

    def __init__(self) -> None:
        self.sample = 0
        self.block: int | None = None  # the block of SCAN_EVERY sampling slots of the last sample
        self.smallest: float | None = None  # the width of the smallest face of the last sample (None: it had none)
        self.boxes: list[tuple[float, float, float, float]] = []  # the last sample's faces
        self.full = True  # whether the sample planned last is a full scan
        self.searched: list | None = None  # the regions the sample planned last searched (None: the frame)

    def next_smallest(self, sampling_slot: int | None = None) -> float | None:
        """The smallest face width to look for in the next sample (None: a full scan); `sampling_slot`: its place on
        the sampling grid (fvmatch.analysis.video_faces.sampling_slot; default: the samples planned so far)."""
        block = (self.sample if sampling_slot is None else sampling_slot) // self.SCAN_EVERY
        self.full = block != self.block or self.smallest is None
        self.block = block
        self.sample += 1
        self.searched = None
        return None if self.full else self.FLOOR_SHARE * self.smallest

    def regions(self, width: int, height: int) -> list[tuple[int, int, int, int, float]] | None:
        """The (left, top, right, bottom, smallest face) regions of a `width` x `height` frame to search in the
        sample just planned by next_smallest, or None: the whole frame at that floor (a full scan, or regions that
        would cover most of the frame)."""
        if self.full or not self.boxes:
            return None
        floor = self.FLOOR_SHARE * self.smallest
        regions = []
        for x1, y1, x2, y2 in self.boxes:
            half = self.REGION_SIDE * max(x2 - x1, y2 - y1) / 2
            centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
            regions.append((max(0, int(centre_x - half)), max(0, int(centre_y - half)),
                            min(width, int(centre_x + half) + 1), min(height, int(centre_y + half) + 1), floor))
        if sum((right - left) * (bottom - top) for left, top, right, bottom, _ in regions) > (
                self.REGION_MAX_SHARE * width * height):
            return None
        self.searched = [region[:4] for region in regions]
        return regions + [(0, 0, width, height, max(floor, self.NEW_FACE_SHARE * min(width, height)))]

    def saw(self, crops) -> None:
        widths = [crop.box[2] - crop.box[0] for crop in crops]
        centres = [((crop.box[0] + crop.box[2]) / 2, (crop.box[1] + crop.box[3]) / 2) for crop in crops]
        # a region where no face was found: its face is looked for everywhere next time
        lost = any(not any(left <= x <= right and top <= y <= bottom for x, y in centres)
                   for left, top, right, bottom in self.searched or [])
        self.smallest = min(widths) if widths and not lost else None
        self.boxes = [tuple(crop.box) for crop in crops]


def _frame_face(when: float, face: PreparedFace, scale: float, vectors: dict[str, np.ndarray],
                age: dict | None = None) -> FrameFace:
    """A detected face in displayed-picture pixels (frames larger than the analysis size were scaled down)."""
    box = tuple(v / scale for v in face.crop.box)
    quality = face.crop.quality() | ({"age": age} if age else {})
    if scale != 1.0:
        for key in ("eye_distance_px", "face_px"):
            if quality.get(key) is not None:
                quality[key] = round(quality[key] / scale, 1)
    quality["box"] = [round(v, 1) for v in box]
    return FrameFace(when, box, face.crop.probability, vectors, quality)
