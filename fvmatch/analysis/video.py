"""Video evidence: one file gives a face track and a voice, embedded in their spaces with where they came from.

    frames (fvmatch.media.video, `fps` a second) --MTCNN--> faces --each face space--> vectors
        --fvmatch.media.tracks--> tracks; the main track (longest on screen) is the video's face item
    soundtrack (16 kHz mono) --silero-vad--> speech segments --each voice space--> the video's voice item

Both items are ordinary `Embedding`s (modality face and voice, source the video file), so enrolment, search and
scoring treat them as they treat a photo and a recording. Their quality dicts carry the video's provenance under
"video": its sha256, the frame times and boxes of the track, the speech segments used; the gallery stores it with
the items and the audit trail with the command. A video with no audio track gives a face only, one with no face a
voice only (`notes` says which, plainly); with neither, NoFaceFound (exit 2).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvmatch.evidence.age import face_age_qualities
from fvmatch.analysis.embedder import Embedder, Embedding, PreparedFace
from fvmatch.errors import BadArgument, FvmatchError, NoFaceFound, PoorQuality, TooLittleSpeech
from fvmatch.media.audio import SpeechSummary
from fvmatch.media.tracks import MAX_GAP_SECONDS, FaceTrack, FrameFace, TrackLinker, iou
from fvmatch.media.video import DEFAULT_FPS, VideoInfo, probe_video, sampled_frames, soundtrack_speech
from fvmatch.paths import file_digest
from fvmatch.spaces import FACE_SPACE, spaces_of

FRAME_BATCH = 16  # sampled frames whose faces are embedded together


@dataclass
class VideoEvidence:
    """What a video gave: its description, face tracks (longest first), the main track's face and the soundtrack's
    voice as Embeddings (None where there is none), the speech segments used, notes said to the analyst, and the
    seconds spent per stage (decode, detection, embedding, speech)."""

    path: str
    sha256: str
    size: int
    fps: float
    info: VideoInfo
    tracks: list[FaceTrack]
    face: Embedding | None
    voice: Embedding | None
    speech_segments: list[tuple[float, float]]
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    track_faces: list[Embedding] = field(default_factory=list)  # every track's Embedding (with all_faces)
    face_chips: dict[str, int] = field(default_factory=dict)  # faces embedded, and faces that reused a vector

    def embeddings(self) -> list[Embedding]:
        """The face (main track) and the voice, those that exist."""
        return [e for e in (self.face, self.voice) if e is not None]

    def provenance(self) -> dict:
        """The video's record for the audit trail: its file, the main track's frames, the speech segments used."""
        main = self.tracks[0].summary(self.fps) if self.face is not None and self.tracks else None
        return {"video_sha256": self.sha256, "path": self.path, "fps": self.fps,
                "face_track": None if main is None else {k: main[k] for k in ("track", "frame_times", "boxes")},
                "speech_segments": [[round(a, 3), round(b, 3)] for a, b in self.speech_segments]
                if self.voice is not None else None, "notes": list(self.notes)}

    def to_dict(self, all_faces: bool = False) -> dict:
        return {"source": self.path, "sha256": self.sha256, "video": self.info.figures(), "fps": self.fps,
                "notes": self.notes, "tracks": [track.summary(self.fps) for track in self.tracks],
                "face_chips": self.face_chips,
                "face": None if self.face is None else self.face.to_dict(),
                "voice": None if self.voice is None else self.voice.to_dict(),
                **({"track_faces": [e.to_dict() for e in self.track_faces]} if all_faces else {})}


def embed_video(embedder: Embedder, path: str | Path, fps: float = DEFAULT_FPS,
                face_spaces: Sequence[str] | None = None, voice_spaces: Sequence[str] | None = None,
                all_faces: bool = False, progress: Callable[[float], None] | None = None,
                info: VideoInfo | None = None, voice_pick: Callable[[dict], Sequence[str]] | None = None,
                face_track: int | None = None) -> VideoEvidence:
    """Embed a video: its face tracks and main face in `face_spaces` (default every face space), its soundtrack's
    speech in `voice_spaces` (default every voice space; [] skips the soundtrack; `voice_pick` as
    Embedder.embed_voice's `pick`). `all_faces`: an Embedding per
    track too. `face_track`: the number of the track to take as the video's face (as `embed --video` lists them,
    longest first; default 1); BadArgument where there is no such track. `progress(seconds)`: the video time reached. UnreadableMedia for a bad file; NoFaceFound when
    neither a face nor enough speech is found (the message says both)."""
    path = Path(path)
    face_spaces = list(face_spaces) if face_spaces is not None else spaces_of("face")
    voice_spaces = list(voice_spaces) if voice_spaces is not None else spaces_of("voice")
    info = info if info is not None else probe_video(path)
    sha256, size = file_digest(path)
    timings = {"decode": 0.0, "detection": 0.0, "embedding": 0.0, "speech": 0.0}
    face_chips: dict[str, int] = {}
    tracks = chosen_first(path, face_tracks(embedder, path, info, fps, face_spaces, timings, progress, face_chips),
                          face_track)
    notes: list[str] = []  # filled once both passes are read: the soundtrack's damage is found as it is read
    evidence = VideoEvidence(str(path), sha256, size, fps, info, tracks, None, None, [], notes, timings,
                             face_chips=face_chips)

    face_problem = None
    if not tracks:
        face_problem = f"no face found in {info.frames_sampled} sampled frames ({fps:g} a second)"
    else:
        evidence.track_faces = [_track_embedding(embedder, evidence, track, face_spaces)
                                for track in (tracks if all_faces else tracks[:1])]
        try:
            embedder.minimums.check(path, evidence.track_faces[0].quality)
            evidence.face = evidence.track_faces[0]
        except PoorQuality as error:
            face_problem = f"main face track refused: {error.problem}"
    voice_problem = None
    picture_damage = len(info.damage)
    if not info.has_audio:
        voice_problem = "no audio track"
    elif voice_spaces:
        started = time.perf_counter()
        try:
            summary, segments = SpeechSummary(), []
            voice = embedder._voice_embedding(path, summary, soundtrack_speech(path, info, summary, segments),
                                              voice_spaces, voice_pick)
            evidence.speech_segments = segments
            voice.quality["video"] = _provenance(evidence, speech_segments=segments)
            evidence.voice = voice
        except (TooLittleSpeech, PoorQuality) as error:
            voice_problem = f"soundtrack: {error.problem}"
        timings["speech"] = time.perf_counter() - started
    notes.extend([*info.notes, *info.damage])
    if evidence.voice is not None and len(info.damage) > picture_damage:
        notes.append(f"voice from {evidence.voice.quality['speech_seconds']:.2f} s of speech, up to the damage")
    if face_problem and (voice_problem or not voice_spaces):
        raise NoFaceFound(path, f"nothing usable: {face_problem}; {voice_problem or 'soundtrack not read'}")
    if face_problem and voice_spaces:
        notes.append(f"{face_problem}: voice only")
    if voice_problem and voice_spaces:
        notes.append(f"{voice_problem}: face only")
    return evidence


def face_tracks(embedder: Embedder, path: Path, info: VideoInfo, fps: float, spaces: Sequence[str],
                timings: dict[str, float] | None = None, progress: Callable[[float], None] | None = None,
                counts: dict[str, int] | None = None) -> list[FaceTrack]:
    """The video's face tracks, longest on screen first: every sampled frame's faces (MTCNN, at or above the
    detector's threshold) embedded in `spaces` (or given the vectors of the face before them, ChipReuse) and linked
    (fvmatch.media.tracks). `counts`: filled with the faces embedded and those that reused a vector."""
    from PIL import Image

    timings = timings if timings is not None else {"decode": 0.0, "detection": 0.0, "embedding": 0.0}
    link_space = FACE_SPACE if FACE_SPACE in spaces else spaces[0]
    # a face may be missed in one sampled frame (or, at a low --fps, the samples are far apart) and its track go on
    linker = TrackLinker(link_space, max_gap_seconds=max(MAX_GAP_SECONDS, 2.0 / fps + 1e-6))
    frames = sampled_frames(path, fps, info, progress)
    pending: list[tuple[float, list[tuple[PreparedFace, float, ChipSlot]]]] = []
    floor = PyramidFloor()
    reuse = ChipReuse() if FACE_SPACE in spaces else None
    counts = counts if counts is not None else {}
    counts.setdefault("embedded", 0)
    counts.setdefault("reused", 0)
    while True:
        started = time.perf_counter()
        frame = next(frames, None)
        timings["decode"] += time.perf_counter() - started
        if frame is not None:
            started = time.perf_counter()
            smallest, picture = floor.next_smallest(), Image.fromarray(frame.image)
            crops = embedder.detector.detect(picture, smallest, floor.regions(*picture.size))
            floor.saw(crops)
            prepared = [PreparedFace(crop, {name: embedder.space(name).prepare(frame.image, crop) for name in spaces},
                                     len(crops)) for crop in crops]
            slots = reuse.slots(prepared) if reuse is not None else [ChipSlot() for _ in prepared]
            pending.append((frame.time, [(face, frame.scale, slot) for face, slot in zip(prepared, slots)]))
            timings["detection"] += time.perf_counter() - started
        if pending and (frame is None or len(pending) >= FRAME_BATCH):
            started = time.perf_counter()
            _fill_slots([(face, slot) for _, found in pending for face, _, slot in found], spaces, embedder, counts)
            for when, found in pending:
                linker.add_frame([_frame_face(when, face, scale, slot.vectors, slot.age) for face, scale, slot in found])
            pending = []
            timings["embedding"] += time.perf_counter() - started
        if frame is None:
            return linker.tracks()


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


def chosen_first(path: Path, tracks: list[FaceTrack], number: int | None) -> list[FaceTrack]:
    """The tracks with track `number` first (the face the video gives); as they are for None."""
    if number is None or number == 1 and tracks:
        return tracks
    chosen = [track for track in tracks if track.number == number]
    if not chosen:
        held = f"{len(tracks)} face track{'s' if len(tracks) != 1 else ''}" + (
            f" (1-{len(tracks)}, longest first: embed --video lists them)" if tracks else "")
        raise BadArgument("--track", f"{path} holds {held}: there is no track {number}")
    return chosen + [track for track in tracks if track.number != number]


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
    """

    MIN_IOU = 0.5
    MIN_CORRELATION = 0.9

    def __init__(self) -> None:
        self._previous: list[tuple[tuple[float, ...], ChipSlot]] = []  # the last sample's faces: box and slot

    def slots(self, faces: Sequence[PreparedFace]) -> list[ChipSlot]:
        """Each face's slot: the one of the face before it where its chip barely changed, else a new one."""
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
    already on screen are: between full scans (every SCAN_EVERY-th sample, whenever the sample before found no face,
    and after a region lost its face) a frame is searched around each face of the sample before (`regions`: a square
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
        self.smallest: float | None = None  # the width of the smallest face of the last sample (None: it had none)
        self.boxes: list[tuple[float, float, float, float]] = []  # the last sample's faces
        self.full = True  # whether the sample planned last is a full scan
        self.searched: list | None = None  # the regions the sample planned last searched (None: the frame)

    def next_smallest(self) -> float | None:
        """The smallest face width to look for in the next sample (None: a full scan)."""
        self.full = self.sample % self.SCAN_EVERY == 0 or self.smallest is None
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


def _track_embedding(embedder: Embedder, evidence: VideoEvidence, track: FaceTrack,
                     spaces: Sequence[str]) -> Embedding:
    quality = {**{k: v for k, v in track.best_quality.items() if k not in ("box", "jpeg_quality")},
               "detection_probability": round(track.mean_probability, 4), "frames": track.frames,
               "seconds_on_screen": round(track.seconds_on_screen(evidence.fps), 2), "track": track.number,
               "tracks_in_video": len(evidence.tracks),
               "video": _provenance(evidence, track=track)}
    return Embedding(vectors={name: track.vector(name) for name in spaces}, modality="face", source=evidence.path,
                     quality=quality, model_ids={name: embedder.space(name).model_id for name in spaces})


def _provenance(evidence: VideoEvidence, track: FaceTrack | None = None,
                speech_segments: list[tuple[float, float]] | None = None) -> dict:
    """What a video item records of where it came from (kept in its quality dict, so the gallery stores it)."""
    record = {"sha256": evidence.sha256, "fps": evidence.fps, **evidence.info.figures()}
    if track is not None:
        record["frame_times"] = [round(t, 3) for t in track.times]
        record["boxes"] = [list(b) for b in track.boxes]
    if speech_segments is not None:
        record["speech_segments"] = [[round(a, 3), round(b, 3)] for a, b in speech_segments]
    return record


def joint_pair(evidence: VideoEvidence, space: str = "joint") -> float:
    """Cosine in the joint space of the video's own face track and soundtrack (`verify --video` alone)."""
    if evidence.face is None or evidence.voice is None:
        missing = "face" if evidence.face is None else "speech"
        raise FvmatchError(evidence.path, f"the video gives no {missing} to compare with its "
                           f"{'soundtrack' if missing == 'face' else 'face'} ({'; '.join(evidence.notes)})")
    return float(evidence.face.vectors[space] @ evidence.voice.vectors[space])
