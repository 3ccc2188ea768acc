"""Synthetic talking-head videos: the corpus's faces and voices written into real video files with PyAV.

A person is a `fvmatch.synth.identity.SyntheticIdentity`: their face (`render_face`, a new photo of them every
second, drifting slowly across the frame) over a plain backdrop, and their voice (`render_voice`) as the soundtrack.
Containers and codecs are FFmpeg's, from PyAV's wheel: MP4 (H.264 + AAC) or WebM (VP9 + Opus). Used by the tests
and benchmarks/video.py; never evidence of accuracy on real people.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvmatch.synth.faces import render_face
from fvmatch.synth.voices import SAMPLE_RATE, render_voice

CODECS = {".mp4": ("libx264", "aac"), ".mov": ("libx264", "aac"), ".mkv": ("libx264", "aac"),
          ".webm": ("libvpx-vp9", "libopus"), ".avi": ("mpeg4", "pcm_s16le")}
FAST_OPTIONS = {"libx264": {"preset": "ultrafast"}, "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}
FACE_SECONDS = 1.0  # a new photo of the face this often


@dataclass(frozen=True)
class OnScreen:
    """One person in the picture: who, where (the face's centre as a fraction of the frame), its height as a fraction
    of the frame's, and the seconds it is visible (`until` None: to the end)."""

    person: object  # SyntheticIdentity
    centre: tuple[float, float] = (0.5, 0.5)
    height: float = 0.8
    since: float = 0.0
    until: float | None = None


def write_talking_head(path: str | Path, people: Sequence[OnScreen], seconds: float, voice=None,
                       width: int = 320, height: int = 240, frame_rate: int = 10, seed: int = 0,
                       rotation: int = 0, audio: bool = True, frame_times: Sequence[float] | None = None) -> Path:
    """Write a video of `people` on screen with `voice` (a SyntheticIdentity; default the first person's) speaking.

    Codecs by suffix (CODECS). `rotation` (0, 90, 180, 270) stores the picture turned clockwise by that much with a
    display matrix telling players to turn it back, as phones do. `audio=False` writes no audio track.
    `frame_times` (seconds) gives each frame's timestamp: a variable frame rate (default: every 1/frame_rate s).
    """
    import av

    path = Path(path)
    video_codec, audio_codec = CODECS[path.suffix.lower()]
    rng = np.random.default_rng(seed)
    times = list(frame_times) if frame_times is not None else list(np.arange(int(round(seconds * frame_rate))) / frame_rate)
    stored_w, stored_h = (height, width) if rotation in (90, 270) else (width, height)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(video_codec, rate=frame_rate, options=FAST_OPTIONS.get(video_codec, {}))
        stream.width, stream.height, stream.pix_fmt = stored_w, stored_h, "yuv420p"
        time_base = stream.codec_context.time_base = _time_base(frame_rate, frame_times is not None)
        if rotation:
            stream.set_display_rotation(rotation)  # counter-clockwise: undoes the clockwise turn below
        sound = None
        if audio and audio_codec is not None:
            sound = container.add_stream(audio_codec, rate=48000 if audio_codec == "libopus" else SAMPLE_RATE,
                                         layout="mono")
        faces = _FaceCache(people, rng, height)
        backdrop = np.full((height, width, 3), (90, 110, 120), np.uint8)
        for time in times:
            picture = backdrop.copy()
            for entry in people:
                if entry.since <= time and (entry.until is None or time < entry.until):
                    _paste(picture, faces.face(entry, time), entry, time, width, height)
            picture = np.rot90(picture, k=-rotation // 90) if rotation else picture  # turned clockwise
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")
            frame.pts, frame.time_base = int(round(time / time_base)), time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            speaker = voice if voice is not None else people[0].person
            samples = render_voice(speaker.voice, np.random.default_rng([seed, 2]), seconds=seconds)
            _write_audio(container, sound, samples)
    return path


def _time_base(frame_rate: int, variable: bool):
    from fractions import Fraction

    return Fraction(1, 1000) if variable else Fraction(1, frame_rate)


class _FaceCache:
    """Each person's photo of the current second, rendered once and resized to its on-screen height."""

    def __init__(self, people: Sequence[OnScreen], rng: np.random.Generator, frame_height: int) -> None:
        self.seeds = {id(entry): int(rng.integers(2**31)) for entry in people}
        self.frame_height = frame_height
        self.cache: dict[tuple[int, int], np.ndarray] = {}

    def face(self, entry: OnScreen, time: float) -> np.ndarray:
        from PIL import Image

        key = (id(entry), int(time // FACE_SECONDS))
        if key not in self.cache:
            self.cache.clear() if len(self.cache) > 8 else None
            side = max(16, int(entry.height * self.frame_height))
            image = render_face(entry.person.face, np.random.default_rng([self.seeds[id(entry)], key[1]]), size=256)
            self.cache[key] = np.asarray(image.resize((side, side), Image.BILINEAR))
        return self.cache[key]


def _paste(picture: np.ndarray, face: np.ndarray, entry: OnScreen, time: float, width: int, height: int) -> None:
    side = face.shape[0]
    drift = 0.02 * np.sin(time * 0.7)  # a slow sway, as a speaker's head moves
    left = int((entry.centre[0] + drift) * width - side / 2)
    top = int(entry.centre[1] * height - side / 2)
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(width, left + side), min(height, top + side)
    if x1 > x0 and y1 > y0:
        picture[y0:y1, x0:x1] = face[y0 - top : y1 - top, x0 - left : x1 - left]


def _write_audio(container, stream, samples: np.ndarray) -> None:
    import av

    frame = av.AudioFrame.from_ndarray(samples[None].astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = SAMPLE_RATE
    resampler = av.AudioResampler(format=stream.codec_context.format.name, layout="mono",
                                  rate=stream.codec_context.sample_rate,
                                  frame_size=stream.codec_context.frame_size or None)
    for converted in [*resampler.resample(frame), *resampler.resample(None)]:
        for packet in stream.encode(converted):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)
