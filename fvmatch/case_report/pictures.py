"""The report's pictures, each a data: URI: candidates' faces and the query (face, voice or video); the score plots
are in score_plots.py.

A candidate is shown by the face item that matched; one matched by a voice, by its identity's best-detected face
(the page says which).

Evidence is shown only while it is what was used: a file is opened once, hashed, compared with the sha256 the
gallery (or the results) recorded, and decoded from that same open file. A file that is gone or changed is not
shown; the picture's note says which and why. Plots are drawn with matplotlib's Agg canvas (no pyplot, no GUI),
and carry numbers only: labels, which come from the data, stay in the HTML where they are escaped.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

from fvmatch.media.image import MAX_IMAGE_PIXELS

THUMBNAIL_PIXELS = 96  # candidates' faces
FACE_MARGIN = 0.3  # thumbnail crop: the detected box grown by this share of its size on each side
QUERY_PIXELS = 720  # the query image shown at most this long on its longest side
QUERY_MIN_PIXELS = 360  # a smaller one is enlarged a whole number of times, its pixels repeated (no detail invented)
VOICE_SECONDS = 20.0  # the part of a query recording drawn
KEYFRAMES = 4  # frames of a video's face track drawn, spread over the track
SOUNDTRACK_SECONDS = 60.0  # the part of a video's soundtrack drawn
WAVEFORM_COLUMNS = 1200  # the waveform is drawn as a min/max envelope over this many columns
PLOT_DPI = 100
BOX_COLOUR = (0, 229, 255)
SAME_COLOUR, DIFFERENT_COLOUR, CANDIDATE_COLOUR = "#2a9d8f", "#e76f51", "#1d3557"


@dataclass(frozen=True)
class Picture:
    """A picture for the page: its data: URI, or None with `note` saying why it is not shown."""

    uri: str | None
    note: str


class _NotShown(Exception):
    """Why a piece of evidence is not shown (the message is for the reader)."""


def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


@contextmanager
def _evidence(path: str | None, sha256: str | None, when: str) -> Iterator[BinaryIO]:
    """The file, open, positioned at its start, after checking it still has the recorded sha256."""
    if not path:
        raise _NotShown("no file recorded")
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        raise _NotShown(f"the file is gone: {path}") from None
    except OSError as error:
        raise _NotShown(f"cannot read {path} ({error.strerror or error})") from None
    with handle:
        try:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as error:
            raise _NotShown(f"cannot read {path} ({error.strerror or error})") from None
        if sha256 and digest != sha256:
            raise _NotShown(f"{path} no longer matches the sha256 recorded {when} (the file changed since)")
        handle.seek(0)
        yield handle


def _decode_image(handle: BinaryIO) -> Image.Image:
    """An open image file decoded as fvmatch.media.image.load_image does: size-checked, EXIF-oriented, RGB."""
    try:
        with Image.open(handle) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise _NotShown(f"image is {width}x{height} pixels, over the {MAX_IMAGE_PIXELS:,}-pixel limit")
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image.load()
            return ImageOps.exif_transpose(image).convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning) as error:
        raise _NotShown(f"cannot decode the image ({error})") from None


def _jpeg(image: Image.Image, quality: int, full_colour: bool = False) -> str:
    """A JPEG data: URI; `full_colour`: no chroma subsampling (4:4:4), so thin coloured lines stay sharp."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, subsampling=0 if full_colour else -1)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _box(value: object) -> tuple[float, float, float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        x1, y1, x2, y2 = (float(v) for v in value)
        if x2 > x1 and y2 > y1:
            return x1, y1, x2, y2
    return None


# ----- candidates' faces ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnrolledFace:
    """A face item of the gallery as the report shows it: its thumbnail (or why not) and whose it is."""

    media_id: int
    label: str | None  # None: the item is no longer in the gallery
    source_path: str | None
    picture: Picture


def best_faces(gallery, labels: Iterable[str]) -> dict[str, int | None]:
    """Each identity's best-detected enrolled face (its media id), None where it has none."""
    labels = sorted(set(labels))
    best: dict[str, int | None] = dict.fromkeys(labels)
    for start in range(0, len(labels), 900):  # SQLite's bound-parameter limit
        chunk = labels[start : start + 900]
        rows = gallery.db.execute(
            "SELECT identities.label, media.id FROM media JOIN identities ON identities.id = media.identity_id"
            f" WHERE media.modality = 'face' AND identities.label IN ({','.join('?' * len(chunk))})"
            " ORDER BY media.quality DESC, media.id", chunk).fetchall()
        for label, media_id in rows:
            if best[label] is None:
                best[label] = media_id
    return best


def enrolled_faces(gallery, media_ids: Iterable[int]) -> dict[int, EnrolledFace]:
    """Thumbnails of these face items, each cropped around its face, keyed by media id."""
    media_ids = sorted(set(media_ids))
    rows = {}
    for start in range(0, len(media_ids), 900):
        chunk = media_ids[start : start + 900]
        rows.update((row[0], row[1:]) for row in gallery.db.execute(
            "SELECT media.id, identities.label, media.source_path, media.sha256, media.quality_json FROM media"
            " JOIN identities ON identities.id = media.identity_id WHERE media.modality = 'face'"
            f" AND media.id IN ({','.join('?' * len(chunk))})", chunk).fetchall())
    faces = {}
    for media_id in media_ids:
        if media_id not in rows:
            faces[media_id] = EnrolledFace(media_id, None, None,
                                           Picture(None, f"face #{media_id} is no longer in the gallery"))
            continue
        label, source_path, sha256, quality_json = rows[media_id]
        faces[media_id] = EnrolledFace(media_id, label, source_path,
                                       _thumbnail(media_id, source_path, sha256, quality_json))
    return faces


def _thumbnail(media_id: int, source_path: str, sha256: str, quality_json: str) -> Picture:
    try:
        try:
            quality = json.loads(quality_json)
            box = _box(quality.get("box"))
        except (ValueError, AttributeError):
            quality, box = {}, None
        with _evidence(source_path, sha256, "at enrolment") as handle:
            if isinstance(quality.get("video"), dict):  # a face track of a video: its first frame
                image, box = _track_frame(source_path, quality["video"])
            else:
                image = _decode_image(handle)
        if box is not None:
            x1, y1, x2, y2 = box
            grow_x, grow_y = FACE_MARGIN * (x2 - x1), FACE_MARGIN * (y2 - y1)
            image = image.crop((max(0, int(x1 - grow_x)), max(0, int(y1 - grow_y)),
                                min(image.width, int(x2 + grow_x)), min(image.height, int(y2 + grow_y))))
        image.thumbnail((THUMBNAIL_PIXELS, THUMBNAIL_PIXELS), Image.Resampling.LANCZOS)
        return Picture(_jpeg(image, 80), f"face #{media_id}: {source_path}")
    except _NotShown as reason:
        return Picture(None, f"enrolled face #{media_id} not shown: {reason}")


# ----- the query -------------------------------------------------------------------------------------------------
def query_picture(record: dict) -> Picture:
    """The query as the report shows it: the image with the detected face boxed, or the recording's waveform and
    log-mel spectrogram (its first VOICE_SECONDS)."""
    path, sha256 = record.get("resolved_path"), record.get("sha256")
    try:
        with _evidence(path, sha256, "when the query was answered") as handle:
            if record.get("modality") == "face":
                return _face_query(handle, record.get("quality"))
            if record.get("modality") == "video":
                return _video_query(path, record)
            return _voice_query(handle)
    except _NotShown as reason:
        return Picture(None, f"query not shown: {reason}")


def _track_frame(path: str, video: dict) -> tuple[Image.Image, tuple | None]:
    """The first frame of a video item's face track and its box (an enrolled face from a video)."""
    times, boxes = video.get("frame_times") or [], video.get("boxes") or []
    if not times:
        raise _NotShown("no frame times recorded")
    found = _frames_at(path, times[:1], float(video.get("fps") or 2.0))
    if times[0] not in found:
        raise _NotShown(f"the frame at {times[0]} s is not in the video")
    image, scale = found[times[0]]
    box = _box(boxes[0]) if boxes else None
    return Image.fromarray(image), None if box is None else tuple(v * scale for v in box)


def _frames_at(path: str, times: list[float], fps: float) -> dict[float, tuple[np.ndarray, float]]:
    """The sampled frames (upright RGB, and their scale from displayed pixels) at `times`, sampled as at `fps`."""
    from fvmatch.errors import UnreadableMedia
    from fvmatch.media.video import sampled_frames

    wanted, found = sorted(set(times)), {}
    frames = sampled_frames(path, fps)
    try:
        for frame in frames:
            for time in wanted:
                if abs(frame.time - time) < 1e-3:
                    found[time] = (frame.image, frame.scale)
            if frame.time > wanted[-1] + 1e-3:
                break
    except UnreadableMedia as error:
        raise _NotShown(error.problem) from None
    finally:
        frames.close()
    return found


def _video_query(path: str, record: dict) -> Picture:
    """Keyframes of the video's main face track with its boxes and times, and its soundtrack's waveform with the
    speech segments that were used shaded."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from fvmatch.errors import UnreadableMedia
    from fvmatch.media.video import SAMPLE_RATE, probe_video, soundtrack_blocks

    video = record.get("video") if isinstance(record.get("video"), dict) else {}
    track = video.get("face_track") if isinstance(video.get("face_track"), dict) else {}
    times, boxes = list(track.get("frame_times") or []), list(track.get("boxes") or [])
    fps = float(video.get("fps") or 2.0)
    picks = sorted({round(i * (len(times) - 1) / max(1, KEYFRAMES - 1)) for i in range(min(KEYFRAMES, len(times)))})
    frames = _frames_at(path, [times[i] for i in picks], fps) if picks else {}
    try:
        info = probe_video(path)
        sound = next(iter(soundtrack_blocks(path, info)), None)
    except UnreadableMedia as error:
        raise _NotShown(error.problem) from None
    if sound is not None:
        sound = sound[: int(SOUNDTRACK_SECONDS * SAMPLE_RATE)]
    columns = max(1, len(picks))
    figure = Figure(figsize=(7.5, 4.2 if frames and sound is not None else 2.4), layout="constrained")
    grid = figure.add_gridspec(2 if frames and sound is not None else 1, columns, height_ratios=[1.6, 1][
        : 2 if frames and sound is not None else 1])
    for column, index in enumerate(picks):
        axes = figure.add_subplot(grid[0, column])
        axes.set_axis_off()
        if times[index] not in frames:
            continue
        image, scale = frames[times[index]]
        axes.imshow(image)
        box = _box(boxes[index]) if index < len(boxes) else None
        if box is not None:
            x1, y1, x2, y2 = (v * scale for v in box)
            axes.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="#00e5ff", linewidth=1.5))
        axes.set_title(f"{times[index]:.1f} s", fontsize=9)
    if sound is not None and len(sound) >= 16:
        wave = figure.add_subplot(grid[-1, :])
        seconds = len(sound) / SAMPLE_RATE
        count = min(WAVEFORM_COLUMNS, len(sound))
        chunks = np.array_split(sound, count)
        wave.fill_between(np.linspace(0, seconds, count), [c.min() for c in chunks], [c.max() for c in chunks],
                          color=CANDIDATE_COLOUR, linewidth=0)
        for start, end in video.get("speech_segments") or []:
            if start < seconds:
                wave.axvspan(start, min(end, seconds), color=SAME_COLOUR, alpha=0.25, linewidth=0)
        wave.set_ylim(-1.05, 1.05)
        wave.set_xlabel("seconds")
        wave.set_ylabel("amplitude")
    if not frames and sound is None:
        raise _NotShown("the video gave neither a face track nor a soundtrack to draw")
    shown = (f"the first {SOUNDTRACK_SECONDS:g} s of the soundtrack" if info.duration_seconds > SOUNDTRACK_SECONDS
             else "the soundtrack")
    return Picture(rendered(figure, "jpeg"), f"the query video ({info.width}x{info.height}, "
                   f"{info.duration_seconds:.1f} s): {len(frames)} of the {len(times)} frames of its main face track, "
                   f"the face that was compared boxed, at their times; {shown} (16 kHz mono) with the speech "
                   "segments used shaded" if sound is not None else "; no audio track")


def _face_query(handle: BinaryIO, quality: object) -> Picture:
    image = _decode_image(handle)
    width, height = image.size
    longest = max(width, height)
    if longest < QUERY_MIN_PIXELS:
        scale = float(min(-(-QUERY_MIN_PIXELS // longest), QUERY_PIXELS // longest))
        image = image.resize((width * int(scale), height * int(scale)), Image.Resampling.NEAREST)
    else:
        scale = min(1.0, QUERY_PIXELS / longest)
        image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    shown = (f"shown {int(scale)}x enlarged, its pixels repeated" if scale > 1
             else f"shown at {image.width}x{image.height}" if scale < 1 else "shown at its size")
    box = _box(quality.get("box")) if isinstance(quality, dict) else None
    if box is None:
        return Picture(_jpeg(image, 90, True), f"the query image ({width}x{height}, {shown}); no face box recorded")
    line = max(2, round(max(image.size) / 240))
    ImageDraw.Draw(image).rectangle([v * scale for v in box], outline=BOX_COLOUR, width=line)
    faces = quality.get("faces_in_image")
    others = f"; {faces - 1} other face(s) in the image not boxed" if isinstance(faces, int) and faces > 1 else ""
    return Picture(_jpeg(image, 90, True),
                   f"the query image ({width}x{height}, {shown}) with the face that was compared boxed{others}")


def _voice_query(handle: BinaryIO) -> Picture:
    import soundfile

    from fvmatch.media.audio import (MAX_BLOCK_SAMPLES, MAX_SAMPLE_MAGNITUDE, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE,
                                     SAMPLE_RATE, resampling_ratio)
    from fvmatch.media.log_mel import HOP_LENGTH, log_mel

    # the same bounds as the embedder's reader (fvmatch.media.audio._resampled_blocks): a header cannot make
    # this read or the resampling kernel huge
    try:
        with soundfile.SoundFile(handle) as sound:
            rate, total_frames = sound.samplerate, sound.frames
            if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
                raise _NotShown(f"sample rate of {rate:,} Hz is outside the {MIN_SAMPLE_RATE:,}-{MAX_SAMPLE_RATE:,} Hz "
                                "of a voice recording")
            frames = max(1, min(int(VOICE_SECONDS * rate), MAX_BLOCK_SAMPLES // sound.channels))
            block = sound.read(frames, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as error:
        raise _NotShown(f"cannot decode the audio ({error})") from None
    limit = MAX_SAMPLE_MAGNITUDE
    mono = np.clip(np.nan_to_num(block.mean(axis=1), posinf=limit, neginf=-limit), -limit, limit)
    orig, new = resampling_ratio(rate)
    if orig != new and len(mono):
        from fvmatch.media.resample import resample  # torchaudio's resampler in numpy: no torch to draw a picture

        mono = resample(mono, orig, new)
    seconds = len(mono) / SAMPLE_RATE
    if seconds < 0.1:
        raise _NotShown("the recording is too short to draw")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.8), layout="constrained")
    wave, spectrum = figure.subplots(2, 1, sharex=True, height_ratios=[1, 1.6])
    columns = min(WAVEFORM_COLUMNS, len(mono))
    chunks = np.array_split(mono, columns)
    times = np.linspace(0, seconds, columns)
    wave.fill_between(times, [c.min() for c in chunks], [c.max() for c in chunks], color=CANDIDATE_COLOUR, linewidth=0)
    wave.set_ylabel("amplitude")
    wave.set_ylim(-1.05, 1.05)
    features = log_mel(mono)  # the model's own front end: 64 log-mel bands, 25 ms / 10 ms, normalised per band
    spectrum.imshow(features, origin="lower", aspect="auto", cmap="magma",
                    extent=(0, features.shape[1] * HOP_LENGTH / SAMPLE_RATE, 0, features.shape[0]))
    spectrum.set_ylabel("mel band")
    spectrum.set_xlabel("seconds")
    total = total_frames / rate if total_frames > 0 else None
    shown = (f"the first {seconds:.1f} s of {total:.1f} s" if total and total > seconds + 0.05
             else f"all {seconds:.1f} s")
    return Picture(rendered(figure, "jpeg"), f"the query recording, {shown} ({rate} Hz): waveform (16 kHz mono) "
                   "and log-mel features as the model computes them (64 bands, 25 ms / 10 ms, normalised per band)")


def rendered(figure, kind: str = "png") -> str:
    """A figure as a data: URI: PNG for line plots; JPEG for the spectrogram, a fifth of its PNG's size."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)  # Agg, whatever backend the environment names: no display is ever needed
    buffer = io.BytesIO()
    if kind == "jpeg":
        figure.savefig(buffer, format="jpeg", dpi=PLOT_DPI, pil_kwargs={"quality": 80})
    else:
        figure.savefig(buffer, format="png", dpi=PLOT_DPI, metadata={"Software": None})
    return data_uri(buffer.getvalue(), f"image/{kind}")


# ----- where the scores fall -------------------------------------------------------------------------------------
