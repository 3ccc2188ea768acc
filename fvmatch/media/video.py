"""Video files: MP4, MOV, MKV, WebM, AVI read with PyAV (FFmpeg's libraries, in its wheel) as a stream.

Two passes over the file, each in bounded memory whatever its length: `sampled_frames` decodes the picture and keeps
`fps` frames a second (by timestamp, so a variable frame rate samples evenly), upright (a phone's display matrix
applied) and no larger than MAX_ANALYSIS_SIDE; `soundtrack_blocks` decodes the first audio track to 16 kHz mono,
BLOCK_SECONDS at a time, for the voice path (`soundtrack_speech`: silero-vad's speech, its segments' times, windows).

The container is told by its content (the first bytes), never by the file's name, and FFmpeg is then held to that
one demuxer: a file that is not an MP4/MOV, Matroska/WebM or AVI container never reaches FFmpeg's other demuxers
(playlists, concat lists, image sequences). Declared sizes are checked before decoding (MAX_FRAME_PIXELS,
MAX_DURATION_SECONDS). A file damaged part-way is read up to the damage and the damage noted (`VideoInfo.damage`).
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, UnreadableMedia
from fvmatch.media.containers import DEMUXERS, ffmpeg_reason, sniff
from fvmatch.media.containers import is_video, media_kind  # noqa: F401 (still read from here by tests)

DEFAULT_FPS = 2.0  # frames sampled per second of video
MAX_FPS = 30.0
SAMPLE_RATE = 16000  # the soundtrack as the voice path takes it
BLOCK_SECONDS = 60.0  # soundtrack decoded and searched for speech this much at a time
MAX_ANALYSIS_SIDE = 1280  # larger frames are scaled down (720p is analysed as it is; 4K at a third)
MAX_FRAME_PIXELS = 7680 * 4320  # 8K UHD: a declared picture larger than this is refused before decoding
MAX_DURATION_SECONDS = 24 * 3600.0  # a declared duration longer than a day is refused
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
VFR_TOLERANCE = 0.2  # frame intervals varying more than this (relative) mark a variable frame rate
ROTATION_TOLERANCE = 0.5  # degrees off a quarter turn that are said (a display matrix is read to 0.1 degree)


@dataclass
class VideoInfo:
    """What a video declares and what reading it found: container, picture, soundtrack, damage."""

    path: str
    container: str  # "MP4/MOV", "Matroska/WebM", "AVI"
    duration_seconds: float
    width: int  # upright, as displayed
    height: int
    rotation: int  # degrees counter-clockwise the stored picture is turned to display it (0, 90, 180, 270)
    video_codec: str
    frame_rate: float  # declared average
    audio_codec: str | None  # None: no audio track
    audio_sample_rate: int = 0
    audio_channels: int = 0
    frames_declared: int = 0  # frames the video track's header counts (0: not said, as in Matroska)
    frames_decoded: int = 0
    frames_sampled: int = 0
    variable_frame_rate: bool = False  # measured while decoding
    damage: list[str] = field(default_factory=list)  # what reading stopped at, if anything
    still_picture: bool = False  # one picture, whole, held over the video's duration (a still, not damage)
    notes: list[str] = field(default_factory=list)  # what reading found that is not damage (a still picture)
    audio_track: int = 1  # the audio track read, numbered from 1 among the file's audio tracks
    audio_tracks: list = field(default_factory=list)  # every audio track (fvmatch.media.sound_tracks.AudioTrack)

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    def figures(self) -> dict:
        return {"container": self.container, "duration_seconds": round(self.duration_seconds, 2),
                "width": self.width, "height": self.height, "rotation": self.rotation,
                "video_codec": self.video_codec, "frame_rate": round(self.frame_rate, 3),
                "audio_codec": self.audio_codec, "audio_sample_rate": self.audio_sample_rate,
                "audio_channels": self.audio_channels, "frames_decoded": self.frames_decoded,
                "frames_sampled": self.frames_sampled, "variable_frame_rate": self.variable_frame_rate,
                "still_picture": self.still_picture, "damage": list(self.damage),
                "audio_track": self.audio_track if self.audio_tracks else None,
                "audio_tracks": [track.figures() for track in self.audio_tracks]}


@dataclass(frozen=True)
class SampledFrame:
    """One sampled frame: its time in the video (s), its number among the sampled frames, the upright RGB picture
    (H, W, 3 uint8, at most MAX_ANALYSIS_SIDE) and the scale from it back to the displayed size."""

    time: float
    number: int
    image: np.ndarray
    scale: float = 1.0


def probe_video(path: str | Path, max_pixels: int = MAX_FRAME_PIXELS,
                max_duration: float = MAX_DURATION_SECONDS, audio_track: int | None = None) -> VideoInfo:
    """Open a video, check what it declares, and describe it (its first frame is decoded for its rotation; where it
    holds several audio tracks, the start of each is searched for speech). `audio_track` (from 1): the track to
    read, else the one with the most speech (fvmatch.media.sound_tracks). UnreadableMedia, one line, for a
    missing or empty file, a file that is not a video (an image or an audio file is named as such), a damaged
    container, no picture, or a declared size or duration over the limits; BadArgument for a track it lacks."""
    with _open(path) as (container, kind):
        return _info(path, container, kind, max_pixels, max_duration, rotation=True, audio_track=audio_track,
                     list_tracks=True)


@dataclass
class PictureRead:
    """What one pass over the picture, or over a part of it, read beyond VideoInfo's counts: the time of its last
    frame and the intervals between its frames (for the notes made once the whole picture is read: `finish_picture`)."""

    last_time: float | None = None
    intervals: list[float] = field(default_factory=list)


def sampled_frames(path: str | Path, fps: float = DEFAULT_FPS, info: VideoInfo | None = None,
                   progress: Callable[[float], None] | None = None, max_pixels: int = MAX_FRAME_PIXELS,
                   max_duration: float = MAX_DURATION_SECONDS, part: tuple[float, float | None] | None = None,
                   read: PictureRead | None = None) -> Iterator[SampledFrame]:
    """The video's frames, `fps` a second, upright, in order. `info` (from `probe_video`) is filled in as decoding
    goes: frames decoded and sampled, variable frame rate, damage. `progress(seconds)` is told the video time
    reached. Damage part-way ends the frames (and is noted in `info.damage`); damage before any frame raises.

    `part` (start, end or None), `start` a multiple of 1 / `fps`: only the frames from `start` to `end` (the file is
    sought to the key frame before `start`), exactly those a whole pass samples there; the notes about the whole
    picture (variable frame rate, a still, a short track) are then left to `finish_picture`, given `read` from every
    part."""
    if not 0 < fps <= MAX_FPS:
        raise BadArgument("--fps", f"{fps:g} is outside 0-{MAX_FPS:g} frames per second")
    period = 1.0 / fps
    start, end = part if part is not None else (0.0, None)
    read = read if read is not None else PictureRead()
    with _open(path) as (container, kind):
        info = info if info is not None else _info(path, container, kind, max_pixels, max_duration)
        stream = container.streams.video[0]
        if part is None:
            stream.thread_type = "AUTO"
        else:
            # one decoding thread: a part's process has a core of its own, and a frame-threaded decoder freed while
            # it decodes ahead past the part's end (or into damage) hung in avcodec_free_context (PyAV 17.1.0)
            stream.thread_count = 1
        if start > 0 and not _sought_cleanly(container, stream, start):
            container.seek(0, stream=stream, backward=True)  # from the start: the frames before the part are skipped
        next_time, last_time = start, None
        damage_before = len(info.damage)
        for frame in _decoded(path, container, stream, info):
            time = frame.time if frame.time is not None else (
                (last_time + 1.0 / (info.frame_rate or 25.0)) if last_time is not None else start)
            if time + 1e-6 < start:
                continue  # decoded from the key frame before the part
            if end is not None and time + 1e-6 >= end:
                break  # the next part's
            if last_time is not None:
                if time <= last_time:
                    continue  # a repeated or backward timestamp (damaged or edited file): not a new picture
                read.intervals.append(time - last_time)
            last_time = read.last_time = time
            info.frames_decoded += 1
            if frame.width * frame.height > max_pixels:
                raise UnreadableMedia(path, f"a frame at {time:.2f} s is {frame.width}x{frame.height}, over the "
                                      f"{max_pixels:,}-pixel limit")
            if progress is not None:
                progress(time)
            if time + 1e-6 < next_time:
                continue
            next_time = (np.floor(time / period + 1e-6) + 1) * period
            image, scale = _upright(frame, _rotation(frame, info))
            yield SampledFrame(float(time), info.frames_sampled, image, scale)
            info.frames_sampled += 1
        if part is None:
            finish_picture(info, read, damage_before)


def _sought_cleanly(container, stream, start: float) -> bool:
    """Seek to the key frame before `start` and say whether decoding starts there cleanly: a key frame at or before
    `start` that the decoder does not flag corrupt. Some files decode garbage after a seek (measured: a news clip
    whose parameter sets come only at its start; an index that calls every frame a key frame); they are then read
    from their start instead. The decoder is left at that key frame again."""
    import av

    target = int(start / stream.time_base)
    container.seek(target, stream=stream, backward=True)
    clean = False
    try:
        for packet in container.demux(stream):
            frames = packet.decode()
            if frames:
                frame = frames[0]
                clean = bool(frame.key_frame) and not getattr(frame, "is_corrupt", False) and (
                    frame.time is not None and frame.time <= start + 1e-6)
                break
    except av.FFmpegError:
        return False
    container.seek(target, stream=stream, backward=True)
    return clean


def finish_picture(info: VideoInfo, read: PictureRead, damage_before: int = 0) -> None:
    """The notes about the whole picture once it is read (by one pass, or by parts whose `read`s are merged):
    variable frame rate, a still picture, a track that ends early or reads far fewer frames than it declares."""
    info.variable_frame_rate = _variable(read.intervals)
    if info.frames_decoded == 1 and len(info.damage) == damage_before and info.frames_declared <= 1:
        _note_still(info, read.last_time)
    else:
        _note_short(info, "picture", read.last_time, 3.0 / (info.frame_rate or 25.0))
        _note_unread_frames(info, damage_before)


def soundtrack_blocks(path: str | Path, info: VideoInfo) -> Iterator[np.ndarray]:
    """The first audio track as 16 kHz mono float32, in blocks of at most BLOCK_SECONDS (nothing without one).
    Damage part-way ends the blocks (noted in `info.damage`)."""
    import av

    if not info.has_audio:
        return
    block = int(BLOCK_SECONDS * SAMPLE_RATE)
    total = 0
    with _open(path) as (container, _):
        stream = container.streams.audio[info.audio_track - 1]
        resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        pending: list[np.ndarray] = []
        held = 0
        for frame in _decoded(path, container, stream, info, kind="audio"):
            for converted in resampler.resample(frame):
                pending.append(converted.to_ndarray().reshape(-1))
                held += pending[-1].size
            while held >= block:
                joined = np.concatenate(pending)
                total += block
                yield joined[:block]
                pending, held = [joined[block:]], len(joined) - block
        try:
            pending.extend(converted.to_ndarray().reshape(-1) for converted in resampler.resample(None))
        except av.FFmpegError:
            pass
        rest = np.concatenate(pending).astype(np.float32, copy=False) if pending else np.zeros(0, np.float32)
        total += len(rest)
        if len(rest):
            yield rest
    _note_short(info, "soundtrack", total / SAMPLE_RATE if total else None, 1.0)


def soundtrack_speech(path: str | Path, info: VideoInfo, summary, segments: list[tuple[float, float]]):
    """Windows of the soundtrack's speech for the voice spaces (fvmatch.media.audio.SpeechWindow), as
    `fvmatch.media.audio.speech_windows` gives a recording's: silero-vad's segments, joined, cut in windows.
    `summary` (a SpeechSummary) is filled in as the stream advances; the seconds (start, end) of each segment used
    are appended to `segments`."""
    from fvmatch.media.audio import _windows
    from fvmatch.media.vad import MIN_SAMPLES, VAD_SETTINGS, speech_probabilities, speech_segments

    try:  # the second speech stream a recording's windows carry where the voice front end has one (as speech_windows)
        from fvmatch.media.vad import trimmed_speech
    except ImportError:
        trimmed_speech = None

    summary.original_sample_rate = info.audio_sample_rate
    summary.channels = info.audio_channels
    summary.codec = f"{info.container} {info.audio_codec}"

    def pieces() -> Iterator[np.ndarray]:
        offset = 0
        for block in soundtrack_blocks(path, info):
            if not np.isfinite(block).all():
                raise UnreadableMedia(path, "soundtrack holds NaN or infinite samples")
            summary.meter.add(block[:, None], SAMPLE_RATE)
            summary.duration_seconds += len(block) / SAMPLE_RATE
            found = []
            if len(block) >= MIN_SAMPLES:
                probabilities = speech_probabilities(block)
                summary.meter.add_speech(block, probabilities)
                found = speech_segments(probabilities, len(block), **VAD_SETTINGS)
            segments.extend(((offset + s["start"]) / SAMPLE_RATE, (offset + s["end"]) / SAMPLE_RATE) for s in found)
            offset += len(block)
            speech = np.concatenate([block[s["start"] : s["end"]] for s in found]) if found else block[:0]
            yield speech if trimmed_speech is None else (speech, trimmed_speech(block))

    return _windows(pieces(), summary)


# ----- opening and checking ------------------------------------------------------------------------------------
class _open:
    """`with _open(path) as (container, kind)`: the file opened with the demuxer its content calls for."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.container = None

    def __enter__(self):
        import av

        from fvmatch.paths import input_file_problem

        path = self.path
        if (problem := input_file_problem(path)) is not None:
            raise UnreadableMedia(path, problem)
        if path.stat().st_size == 0:
            raise UnreadableMedia(path, "file is empty")
        try:
            kind = sniff(path)
        except OSError as error:
            raise UnreadableMedia(path, f"cannot open file ({error.strerror or error})") from None
        if kind == "image":
            raise UnreadableMedia(path, "an image file, not a video (give it with --face)")
        if kind == "audio":
            raise UnreadableMedia(path, "an audio file, not a video (give it with --voice)")
        if kind == "heif":
            raise UnreadableMedia(path, "a HEIC/HEIF still image, not a video (convert it to JPEG or PNG and give it "
                                  "with --face)")
        if kind is None:
            raise UnreadableMedia(path, "not a video file fvmatch reads (containers: MP4, MOV, MKV, WebM, AVI)")
        try:
            self.container = av.open(str(path), format=DEMUXERS[kind], metadata_errors="ignore")
        except av.FFmpegError as error:
            raise UnreadableMedia(path, f"{kind} container is truncated or damaged ({ffmpeg_reason(error)})") from None
        except (OSError, ValueError) as error:
            raise UnreadableMedia(path, f"cannot open video ({error})") from None
        return self.container, kind

    def __exit__(self, *exc) -> None:
        if self.container is not None:
            self.container.close()


def _info(path, container, kind: str, max_pixels: int, max_duration: float, rotation: bool = False,
          audio_track: int | None = None, list_tracks: bool = False) -> VideoInfo:
    """The file's VideoInfo, its declared sizes checked; `rotation`: decode the first frame for its rotation (else
    the first sampled frame sets it); `list_tracks`: list the audio tracks and choose one (`audio_track`, or the
    one with the most speech), else the first is described."""
    if not container.streams.video:
        raise UnreadableMedia(path, f"{kind} file holds no video track" + (
            " (an audio file: give it with --voice)" if container.streams.audio else ""))
    video = container.streams.video[0]
    context = video.codec_context
    width, height = int(context.width or 0), int(context.height or 0)
    if width * height > max_pixels:
        raise UnreadableMedia(path, f"video declares {width}x{height} pixels a frame, over the {max_pixels:,}-pixel limit")
    if width <= 0 or height <= 0:
        raise UnreadableMedia(path, "video track declares no picture size (damaged)")
    duration = _declared_duration(container, video)
    if duration > max_duration:
        raise UnreadableMedia(path, f"video declares {duration / 3600:.1f} hours, over the "
                              f"{max_duration / 3600:g}-hour limit")
    angle = _first_rotation(container) if rotation else 0.0
    rotation = _quarter_turn(angle)
    if rotation in (90, 270):
        width, height = height, width
    tracks = []
    if list_tracks and container.streams.audio:
        from fvmatch.media.sound_tracks import audio_tracks, chosen_track

        tracks = audio_tracks(path, container, DEMUXERS[kind])
        audio_track = chosen_track(path, tracks, audio_track)
    elif audio_track is not None and audio_track != 1:
        raise BadArgument("--audio-track", f"{path} holds no audio track: there is no track {audio_track}")
    audio_track = audio_track or 1
    audio = container.streams.audio[audio_track - 1] if container.streams.audio else None
    info = VideoInfo(path=str(path), container=kind, duration_seconds=duration, width=width, height=height,
                     rotation=rotation, video_codec=context.name, frame_rate=float(video.average_rate or 0.0),
                     frames_declared=max(0, int(video.frames or 0)),
                     audio_codec=audio.codec_context.name if audio is not None else None,
                     audio_sample_rate=int(audio.codec_context.sample_rate or 0) if audio is not None else 0,
                     audio_channels=int(audio.codec_context.channels or 0) if audio is not None else 0,
                     audio_track=audio_track, audio_tracks=tracks)
    _note_odd_rotation(info, angle)
    return info


def _declared_duration(container, stream) -> float:
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    return 0.0


def _first_rotation(container) -> float:
    """The display rotation of the first frame in degrees (PyAV reads a stream's display matrix from its frames), or 0."""
    import av

    try:
        for frame in container.decode(video=0):
            return _display_angle(frame)
    except av.FFmpegError:
        pass  # damage is for the decoding passes to report
    return 0.0


def _display_angle(frame) -> float:
    """The angle (degrees counter-clockwise, to 0.1) a frame's display matrix turns it by, as FFmpeg's
    av_display_rotation_get reads it; PyAV's `frame.rotation` truncates it to whole degrees (a 100-degree matrix
    reads 99)."""
    import math

    side_data = getattr(frame, "side_data", None) or ()
    for entry in side_data:
        data = entry if hasattr(entry, "type") else side_data[entry]  # PyAV 18.1.1 iterates the types, as keys
        if getattr(data.type, "name", "") == "DISPLAYMATRIX" and len(bytes(data)) >= 36:
            matrix = np.frombuffer(bytes(data)[:36], dtype="<i4").astype(np.float64)
            scale_x, scale_y = math.hypot(matrix[0], matrix[3]), math.hypot(matrix[1], matrix[4])
            if scale_x > 0 and scale_y > 0:
                return round(-math.degrees(math.atan2(matrix[1] / scale_y, matrix[0] / scale_x)), 1) % 360.0
    return float(frame.rotation or 0)


def _quarter_turn(angle: float) -> int:
    """The quarter turn (0, 90, 180, 270 degrees counter-clockwise) nearest a display rotation of `angle` degrees."""
    return int(round(angle / 90.0)) * 90 % 360


def _note_odd_rotation(info: VideoInfo, angle: float) -> None:
    """Say (once) that a display matrix turns the picture by an angle that is no quarter turn: only quarter turns
    are applied, so faces in the frames stand that far off upright (a 45-degree tag is not ignored silently)."""
    off = (angle - _quarter_turn(angle) + 180.0) % 360.0 - 180.0
    if abs(off) < ROTATION_TOLERANCE or any(note.startswith("display matrix turns") for note in info.notes):
        return
    info.notes.append(f"display matrix turns the picture {angle:g} degrees, not a quarter turn: frames are read "
                      f"turned {_quarter_turn(angle)} degrees, so faces in them stand {abs(off):g} degrees off upright")


def _rotation(frame, info: VideoInfo) -> int:
    angle = _display_angle(frame)
    rotation = _quarter_turn(angle)
    if info.frames_sampled == 0:
        _note_odd_rotation(info, angle)
    if rotation != info.rotation and info.frames_sampled == 0:
        # the first frame tells the truth where the stream's header did not (PyAV reads it from the frame)
        if (rotation in (90, 270)) != (info.rotation in (90, 270)):
            info.width, info.height = info.height, info.width
        info.rotation = rotation
    return rotation


def _upright(frame, rotation: int) -> tuple[np.ndarray, float]:
    """The frame as displayed (turned counter-clockwise by `rotation`), scaled to at most MAX_ANALYSIS_SIDE."""
    longest = max(frame.width, frame.height)
    scale = 1.0
    if longest > MAX_ANALYSIS_SIDE:
        scale = MAX_ANALYSIS_SIDE / longest
        image = frame.to_ndarray(format="rgb24", width=max(2, int(frame.width * scale)),
                                 height=max(2, int(frame.height * scale)))
    else:
        image = frame.to_ndarray(format="rgb24")
    if rotation:
        image = np.ascontiguousarray(np.rot90(image, k=rotation // 90))
    return image, scale


def _decoded(path, container, stream, info: VideoInfo, kind: str = "video") -> Iterator:
    """Decoded frames of `stream`; damage part-way is noted in `info.damage` and ends the frames, damage before the
    first frame raises UnreadableMedia."""
    import av

    count = 0
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
            frames = packet.decode()
        except StopIteration:
            break
        except av.FFmpegError as error:
            if count == 0:
                raise UnreadableMedia(path, f"{info.container} file is damaged: no {kind} could be decoded "
                                      f"({ffmpeg_reason(error)})") from None
            info.damage.append(f"{kind} decoding stopped after {count} frames: {ffmpeg_reason(error)}")
            break
        for frame in frames:
            count += 1
            yield frame
    if count == 0 and kind == "video":
        raise UnreadableMedia(path, f"{info.container} file holds no decodable picture (truncated or damaged)")


def _note_still(info: VideoInfo, time: float | None) -> None:
    """One picture decoded whole, where the track declares no more: a still held over the sound (a podcast's or a
    voicemail's picture), not a truncated file; said as such where the video lasts longer than the picture."""
    info.still_picture = True
    if time is not None and info.duration_seconds > max(1.0, time + 1.0):
        held = f"{info.duration_seconds:.1f} s of sound" if info.has_audio else f"a video of {info.duration_seconds:.1f} s"
        info.notes.append(f"one picture (a still) over {held}")


def _note_short(info: VideoInfo, what: str, reached: float | None, slack: float) -> None:
    """Note a track that ends well before the duration the container declares (a truncated or damaged file)."""
    if reached is not None and info.duration_seconds > 0 and reached < info.duration_seconds - max(1.0, slack):
        info.damage.append(f"{what} ends at {reached:.1f} s of the {info.duration_seconds:.1f} s declared "
                           "(truncated or damaged)")


def _note_unread_frames(info: VideoInfo, damage_before: int) -> None:
    """Note a picture track that declares many more frames than decoding read, where no damage was found: a damaged
    or edited sample table puts frames hours apart in a short video, and FFmpeg then reads one frame in 80."""
    if info.frames_declared <= 1 or info.frames_decoded * 2 >= info.frames_declared or len(info.damage) > damage_before:
        return
    spanned = info.frames_declared / info.frame_rate if info.frame_rate > 0 else 0.0
    cause = (f": its timestamps span {spanned / 3600:.1f} hours in a video of {info.duration_seconds:.1f} s (a damaged "
             "or edited sample table)" if spanned > 2 * max(1.0, info.duration_seconds) else " (truncated or damaged)")
    info.damage.append(f"picture: {info.frames_decoded} of the {info.frames_declared} frames the track declares "
                       f"were read{cause}")


def _variable(intervals: list[float]) -> bool:
    if len(intervals) < 3:
        return False
    median = float(np.median(intervals))
    return median > 0 and (max(intervals) - min(intervals)) > VFR_TOLERANCE * median
