"""Face tracks: the faces detected in a video's sampled frames, linked across frames into one track per person.

A detection joins the track whose last box it overlaps (IoU at least MIN_IOU) and whose face it resembles (cosine
with the track's mean vector in the linking space at least MIN_SIMILARITY); a face that jumps (a cut, a turn of the
camera) joins a track seen within MAX_GAP_SECONDS only on resemblance alone (REJOIN_SIMILARITY). Pairs are taken
best first (similarity + overlap), one detection per track per frame; a detection no track takes starts one.

A track keeps, per frame, only numbers (time, box, probability, quality weight) and a running weighted sum of its
faces' vectors per space: an hour of video at 2 frames a second holds a few hundred kB per track, never pictures.
Its vector in a space is the quality-weighted mean of its frames' vectors, renormalised; the weight of a face is its
detection probability times its size up to FULL_WEIGHT_EYE_PX between the eyes (smaller faces count for less).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

MIN_IOU = 0.3
# dlib-face cosines run high between different people in video frames (27 one-person real clips: frames of different
# clips, mostly different people, median 0.84, 95th percentile 0.91; one person's consecutive samples, at most 2 s
# apart: lowest 0.92, 1st percentile 0.94). At 0.5 and 0.8 a cut from one talking head to another in the same place
# continued the track: one minute of six clips gave a track of five people. At 0.88 and 0.92 its tracks are its clips
# and the 27 clips keep one track each as before (benchmarks/video_minute.py; docs/benchmarks.md, "Face tracks
# across cuts").
MIN_SIMILARITY = 0.88
REJOIN_SIMILARITY = 0.92
MAX_GAP_SECONDS = 2.0
FULL_WEIGHT_EYE_PX = 30.0  # the "large" face band's lower edge (fvmatch.quality.face.FACE_BANDS)


@dataclass(frozen=True)
class FrameFace:
    """One face found in one sampled frame: its time, box (x1, y1, x2, y2, displayed pixels), detection probability,
    quality figures and unit vector per space."""

    time: float
    box: tuple[float, float, float, float]
    probability: float
    vectors: dict[str, np.ndarray]
    quality: dict = field(default_factory=dict)

    @property
    def weight(self) -> float:
        eyes = self.quality.get("eye_distance_px")
        size = 1.0 if eyes is None else min(1.0, float(eyes) / FULL_WEIGHT_EYE_PX)
        return max(1e-6, self.probability * size)


@dataclass
class FaceTrack:
    """One person's face across frames."""

    number: int
    times: list[float] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    best_quality: dict = field(default_factory=dict)  # the figures of its highest-weight face

    def add(self, face: FrameFace) -> None:
        if not self.weights or face.weight > max(self.weights):
            self.best_quality = dict(face.quality)
        self.times.append(face.time)
        self.boxes.append(tuple(round(float(v), 1) for v in face.box))
        self.probabilities.append(float(face.probability))
        self.weights.append(face.weight)
        for space, vector in face.vectors.items():
            self.sums[space] = self.sums.get(space, 0.0) + face.weight * np.asarray(vector, np.float64)

    @property
    def frames(self) -> int:
        return len(self.times)

    @property
    def mean_probability(self) -> float:
        return float(np.mean(self.probabilities)) if self.probabilities else 0.0

    @property
    def first_seen(self) -> float:
        return self.times[0]

    @property
    def last_seen(self) -> float:
        return self.times[-1]

    def vector(self, space: str) -> np.ndarray:
        """The track's vector in `space`: the quality-weighted mean of its faces' vectors, renormalised."""
        total = self.sums[space]
        norm = float(np.linalg.norm(total))
        return (total / norm if norm > 0 else total).astype(np.float32)

    def seconds_on_screen(self, fps: float) -> float:
        """Time on screen as the sampling sees it: one sampling period per frame the face is in."""
        return self.frames / fps

    def summary(self, fps: float) -> dict:
        """The figures stored with and shown for a track (frame times are its provenance)."""
        return {"track": self.number, "frames": self.frames, "seconds_on_screen": round(self.seconds_on_screen(fps), 2),
                "first_seen": round(self.first_seen, 3), "last_seen": round(self.last_seen, 3),
                "mean_detection_probability": round(self.mean_probability, 4),
                "frame_times": [round(t, 3) for t in self.times], "boxes": [list(b) for b in self.boxes]}


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class TrackLinker:
    """Feed it each sampled frame's faces in time order (`add_frame`); `tracks()` gives the tracks, longest first.

    `space`: the space whose vectors decide resemblance (a pretrained face space: same-person cosines there are
    high, different people's low)."""

    def __init__(self, space: str, min_iou: float = MIN_IOU, min_similarity: float = MIN_SIMILARITY,
                 rejoin_similarity: float = REJOIN_SIMILARITY, max_gap_seconds: float = MAX_GAP_SECONDS) -> None:
        self.space = space
        self.min_iou, self.min_similarity = min_iou, min_similarity
        self.rejoin_similarity, self.max_gap_seconds = rejoin_similarity, max_gap_seconds
        self._tracks: list[FaceTrack] = []

    def add_frame(self, faces: Sequence[FrameFace]) -> None:
        if not faces:
            return
        time = faces[0].time
        live = [track for track in self._tracks if time - track.last_seen <= self.max_gap_seconds + 1e-9]
        pairs = []
        for t, track in enumerate(live):
            mean = track.vector(self.space)
            for f, face in enumerate(faces):
                overlap = iou(track.boxes[-1], face.box)
                similarity = float(mean @ face.vectors[self.space])
                if (overlap >= self.min_iou and similarity >= self.min_similarity) or similarity >= self.rejoin_similarity:
                    pairs.append((similarity + overlap, t, f))
        taken_tracks, taken_faces = set(), set()
        for _, t, f in sorted(pairs, reverse=True):
            if t not in taken_tracks and f not in taken_faces:
                live[t].add(faces[f])
                taken_tracks.add(t)
                taken_faces.add(f)
        for f, face in enumerate(faces):
            if f not in taken_faces:
                track = FaceTrack(number=len(self._tracks) + 1)
                track.add(face)
                self._tracks.append(track)

    def tracks(self) -> list[FaceTrack]:
        """Every track, longest on screen first (ties: the earlier first), numbered in that order."""
        ordered = sorted(self._tracks, key=lambda track: (-track.frames, track.first_seen))
        for number, track in enumerate(ordered, start=1):
            track.number = number
        return ordered
