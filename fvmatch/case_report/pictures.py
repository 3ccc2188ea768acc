"""The report's pictures, each a data: URI: candidates' enrolled faces, the query (face or voice), the score plots.

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

THUMBNAIL_PIXELS = 96  # candidates' enrolled faces
FACE_MARGIN = 0.3  # thumbnail crop: the detected box grown by this share of its size on each side
QUERY_PIXELS = 360  # the query image, longest side
VOICE_SECONDS = 20.0  # the part of a query recording drawn
KEYFRAMES = 4  # frames of a video's face track drawn, spread over the track
SOUNDTRACK_SECONDS = 60.0  # the part of a video's soundtrack drawn
WAVEFORM_COLUMNS = 1200  # the waveform is drawn as a min/max envelope over this many columns
PLOT_DPI = 80
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


def _jpeg(image: Image.Image, quality: int) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return data_uri(buffer.getvalue(), "image/jpeg")


def _box(value: object) -> tuple[float, float, float, float] | None:
    if isinstance(value, (list, tuple)) and len(value) == 4 and all(isinstance(v, (int, float)) for v in value):
        x1, y1, x2, y2 = (float(v) for v in value)
        if x2 > x1 and y2 > y1:
            return x1, y1, x2, y2
    return None


# ----- candidates' enrolled faces --------------------------------------------------------------------------------
def identity_faces(gallery, labels: Iterable[str]) -> dict[str, Picture]:
    """One enrolled face per identity (its best-detected one), as a thumbnail cropped around the face."""
    labels = sorted(set(labels))
    best: dict[str, tuple] = {}
    for start in range(0, len(labels), 900):  # SQLite's bound-parameter limit
        chunk = labels[start : start + 900]
        rows = gallery.db.execute(
            "SELECT identities.label, media.id, media.source_path, media.sha256, media.quality_json FROM media"
            " JOIN identities ON identities.id = media.identity_id WHERE media.modality = 'face'"
            f" AND identities.label IN ({','.join('?' * len(chunk))}) ORDER BY media.quality DESC, media.id",
            chunk).fetchall()
        for label, *rest in rows:
            best.setdefault(label, tuple(rest))
    faces = {}
    for label in labels:
        if label not in best:
            faces[label] = Picture(None, "no enrolled face" if gallery.has_identity(label)
                                   else "no longer in the gallery")
            continue
        media_id, source_path, sha256, quality_json = best[label]
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
            faces[label] = Picture(_jpeg(image, 80), f"enrolled face, media {media_id}: {source_path}")
        except _NotShown as reason:
            faces[label] = Picture(None, f"enrolled face not shown: {reason}")
    return faces


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
    return Picture(_rendered(figure, "jpeg"), f"the query video ({info.width}x{info.height}, "
                   f"{info.duration_seconds:.1f} s): {len(frames)} of the {len(times)} frames of its main face track, "
                   f"the face that was compared boxed, at their times; {shown} (16 kHz mono) with the speech "
                   "segments used shaded" if sound is not None else "; no audio track")


def _face_query(handle: BinaryIO, quality: object) -> Picture:
    image = _decode_image(handle)
    width, height = image.size
    scale = min(1.0, QUERY_PIXELS / max(width, height))
    image = image.resize((max(1, round(width * scale)), max(1, round(height * scale))), Image.Resampling.LANCZOS)
    box = _box(quality.get("box")) if isinstance(quality, dict) else None
    if box is None:
        return Picture(_jpeg(image, 85), f"the query image ({width}x{height}); no face box recorded")
    line = max(2, round(image.width / 120))
    ImageDraw.Draw(image).rectangle([v * scale for v in box], outline=BOX_COLOUR, width=line)
    faces = quality.get("faces_in_image")
    others = f"; {faces - 1} other face(s) in the image not boxed" if isinstance(faces, int) and faces > 1 else ""
    return Picture(_jpeg(image, 85), f"the query image ({width}x{height}) with the face that was compared "
                                     f"boxed{others}")


def _voice_query(handle: BinaryIO) -> Picture:
    import soundfile

    from fvmatch.media.audio import (HOP_LENGTH, MAX_BLOCK_SAMPLES, MAX_SAMPLE_MAGNITUDE, MAX_SAMPLE_RATE,
                                     MIN_SAMPLE_RATE, SAMPLE_RATE, log_mel, resampling_ratio)

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
        import torch
        import torchaudio.functional

        mono = torchaudio.functional.resample(torch.from_numpy(mono), orig, new).numpy()
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
    return Picture(_rendered(figure, "jpeg"), f"the query recording, {shown} ({rate} Hz): waveform (16 kHz mono) "
                   "and log-mel features as the model computes them (64 bands, 25 ms / 10 ms, normalised per band)")


def _rendered(figure, kind: str = "png") -> str:
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
def score_plot(record: dict, calibration: dict | None) -> tuple[Picture, list[str]]:
    """The calibration's same/different score distributions of each trial type in the answer, with the candidates'
    scores marked (numbers are ranks); without a calibration, the scores alone. Returns the plot and, per trial
    type, a sentence saying what it shows."""
    from matplotlib.figure import Figure

    candidates = [c for c in record.get("candidates") or [] if isinstance(c.get("score"), (int, float))]
    from fvmatch.scoring import calibration_key

    # one panel per (space, trial type): each has its own score distributions and calibration entry
    kinds = sorted({calibration_key(str(c.get("space", "joint")), str(c.get("trial_type"))) for c in candidates})
    if not kinds:
        return Picture(None, "no candidates to plot"), []
    calibration = calibration or {}
    fmr = (record.get("calibration") or {}).get("fmr", 0.01)
    figure = Figure(figsize=(7.5, 2.6 * len(kinds) + 0.4), layout="constrained")
    sentences = []
    for axes, kind in zip(np.atleast_1d(figure.subplots(len(kinds), 1)), kinds):
        scores = [(c.get("rank"), float(c["score"])) for c in candidates
                  if calibration_key(str(c.get("space", "joint")), str(c.get("trial_type"))) == kind]
        entry = calibration.get(kind) if isinstance(calibration.get(kind), dict) else None
        sentences.append(_draw_kind(axes, kind, scores, entry, fmr, calibration))
    return Picture(_rendered(figure), " ".join(sentences)), sentences


def _draw_kind(axes, kind: str, scores: list[tuple], entry: dict | None, fmr: float, calibration: dict) -> str:
    values = [score for _, score in scores]
    low, high = min(values), max(values)
    histogram = (entry or {}).get("score_histogram")
    axes.set_xlabel(f"{kind} score (cosine)")
    if entry is not None and histogram:
        edges = np.asarray(histogram["edges"], dtype=float)
        for key, colour, label in (("different", DIFFERENT_COLOUR, "different person"),
                                   ("same", SAME_COLOUR, "same person")):
            counts = np.asarray(histogram[key], dtype=float)
            if counts.sum() == 0:
                continue
            axes.stairs(counts / (counts.sum() * np.diff(edges)), edges, fill=True, alpha=0.45, color=colour,
                        label=f"{label} ({int(counts.sum()):,} trials)")
            used = np.nonzero(counts)[0]
            low, high = min(low, edges[used[0]]), max(high, edges[used[-1] + 1])
        axes.set_ylabel("density")
        threshold = _threshold(entry, fmr)
        if threshold is not None:
            axes.axvline(threshold, color="black", linestyle="--", linewidth=1.2,
                         label=f"threshold at {fmr:.1%} false-match rate")
        axes.set_title(f"{kind}: the candidates' scores among the calibration trials", fontsize=10)
        provenance = {key: (entry or {}).get(key, calibration.get(key)) for key in ("data", "split", "created")}
        source = ", ".join(str(value) for value in provenance.values() if value)
        sentence = (f"{kind}: the shaded areas are the calibration's score distributions for same-person and "
                    f"different-person trials{f' ({source})' if source else ''}; the vertical lines mark the "
                    "candidates' scores, numbered by rank.")
    elif entry is not None:
        axes.set_yticks([])
        axes.set_title(f"{kind}: the candidates' scores (calibration holds no score distributions)", fontsize=10)
        threshold = _threshold(entry, fmr)
        if threshold is not None:
            axes.axvline(threshold, color="black", linestyle="--", label=f"threshold at {fmr:.1%} false-match rate")
            low, high = min(low, threshold), max(high, threshold)
        sentence = (f"{kind}: this calibration predates stored score distributions, so only the candidates' scores "
                    "and the decision threshold are shown.")
    else:
        axes.set_yticks([])
        axes.set_title(f"{kind}: NO CALIBRATION, scores only", fontsize=10)
        low, high = min(low, -1.0), max(high, 1.0)  # the whole cosine range: a score alone has no scale
        sentence = (f"{kind}: this model has no {kind} calibration: there are no same-person and different-person "
                    "score distributions to compare with, no likelihood ratios and no decisions. The plot shows "
                    "the candidates' raw scores only, numbered by rank.")
    margin = max(0.02, 0.05 * (high - low))
    axes.set_xlim(low - margin, high + margin)
    for position, (rank, score) in enumerate(sorted(scores, key=lambda item: item[1], reverse=True)):
        top = rank == 1
        axes.axvline(score, color=CANDIDATE_COLOUR, linewidth=2.0 if top else 0.9, alpha=1.0 if top else 0.7,
                     label="candidates' scores" if position == 0 else None)
        axes.annotate(str(rank), (score, 0.96 - 0.09 * (position % 6)), xycoords=("data", "axes fraction"),
                      fontsize=8, ha="center", va="top", color=CANDIDATE_COLOUR,
                      bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize=7, frameon=False)
    return sentence


def _threshold(entry: dict, fmr: float) -> float | None:
    from fvmatch.calibration import operating_point
    from fvmatch.errors import BadArgument

    try:
        return float(operating_point(entry, float(fmr))["threshold"])
    except (BadArgument, KeyError, TypeError, ValueError):
        return None
