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

from fvmatch.analysis.embedder import Embedder, Embedding
from fvmatch.analysis.video_faces import sampled_faces
from fvmatch.analysis.video_parts import faces_by_parts, video_parts
from fvmatch.errors import BadArgument, FvmatchError, NoFaceFound, PoorQuality, TooLittleSpeech
from fvmatch.media.audio import SpeechSummary
from fvmatch.media.tracks import MAX_GAP_SECONDS, FaceTrack, TrackLinker
from fvmatch.media.video import DEFAULT_FPS, VideoInfo, probe_video, soundtrack_speech
from fvmatch.paths import file_digest
from fvmatch.spaces import FACE_SPACE, spaces_of


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
                face_track: int | None = None, workers: int | None = None) -> VideoEvidence:
    """Embed a video: its face tracks and main face in `face_spaces` (default every face space), its soundtrack's
    speech in `voice_spaces` (default every voice space; [] skips the soundtrack; `voice_pick` as
    Embedder.embed_voice's `pick`). `all_faces`: an Embedding per track too. `face_track`: the number of the track
    to take as the video's face (as `embed --video` lists them, longest first; default 1); BadArgument where there
    is no such track. `workers`: the processes that may read the picture (face_tracks). `progress(seconds)`: the
    video time reached. UnreadableMedia for a bad file; NoFaceFound when neither a face nor enough speech is found
    (the message says both)."""
    path = Path(path)
    face_spaces = list(face_spaces) if face_spaces is not None else spaces_of("face")
    voice_spaces = list(voice_spaces) if voice_spaces is not None else spaces_of("voice")
    info = info if info is not None else probe_video(path)
    sha256, size = file_digest(path)
    timings = {"decode": 0.0, "detection": 0.0, "embedding": 0.0, "speech": 0.0}
    face_chips: dict[str, int] = {}
    found = face_tracks(embedder, path, info, fps, face_spaces, timings, progress, face_chips, workers)
    tracks = chosen_first(path, found, face_track)
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
                counts: dict[str, int] | None = None, workers: int | None = None) -> list[FaceTrack]:
    """The video's face tracks, longest on screen first: every sampled frame's faces (MTCNN, at or above the
    detector's threshold) embedded in `spaces` (or given the vectors of the face before them, ChipReuse) and linked
    (fvmatch.media.tracks). `counts`: filled with the faces embedded and those that reused a vector. `workers`: the
    processes that may read the picture, a part each (fvmatch.analysis.video_parts; default the cores this process
    may use, or $FVMATCH_VIDEO_WORKERS); the tracks are those of one pass (tests/test_video_parts.py)."""
    timings = timings if timings is not None else {"decode": 0.0, "detection": 0.0, "embedding": 0.0}
    counts = counts if counts is not None else {}
    counts.setdefault("embedded", 0)
    counts.setdefault("reused", 0)
    link_space = FACE_SPACE if FACE_SPACE in spaces else spaces[0]
    # a face may be missed in one sampled frame (or, at a low --fps, the samples are far apart) and its track go on
    linker = TrackLinker(link_space, max_gap_seconds=max(MAX_GAP_SECONDS, 2.0 / fps + 1e-6))
    faces = None
    parts = video_parts(info.duration_seconds, fps, workers)
    if len(parts) > 1 and embedder.checkpoint_path is not None and embedder.device == "cpu":
        faces = faces_by_parts(embedder, path, info, fps, spaces, parts, timings, progress, counts)
    if faces is None:
        faces = sampled_faces(embedder, path, info, fps, spaces, timings, progress, counts)
    for _, found in faces:
        linker.add_frame(found)
    return linker.tracks()


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
