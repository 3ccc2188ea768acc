"""The audio tracks of a container (MP4/MOV, Matroska/WebM, AVI, M4A), and which one holds the speech.

Players and FFmpeg take the first audio track; a recording whose first track is silent (a muted camera channel, a
second language, an interpreter's track) then reads as "too little speech", or worse, as the wrong voice. Where a
file holds several audio tracks, each is listed and the first SURVEY_SECONDS of each are searched for speech
(silero-vad): the track with the most is read, unless the analyst names one (`--audio-track N`, numbered from 1
among the file's audio tracks). A file with one audio track is read as before, with nothing decoded twice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, UnreadableMedia

SURVEY_SECONDS = 30.0  # of each track searched for speech when a file holds several
SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AudioTrack:
    """One audio track: its number among the file's audio tracks (from 1), codec, rate, channels, language tag,
    and the seconds of speech found in its first SURVEY_SECONDS (None where not searched: a file of one track)."""

    number: int
    codec: str
    sample_rate: int
    channels: int
    language: str | None = None
    speech_seconds: float | None = None

    def figures(self) -> dict:
        return {"track": self.number, "codec": self.codec, "sample_rate": self.sample_rate, "channels": self.channels,
                "language": self.language,
                "speech_seconds_in_first_30_s": None if self.speech_seconds is None else round(self.speech_seconds, 2)}


def audio_tracks(path: str | Path, container, demuxer: str) -> list[AudioTrack]:
    """The audio tracks of `container` (the file opened by PyAV with `demuxer`), each searched for speech when there
    are several (in a container of its own, so that `container` is left where it was)."""
    streams = list(container.streams.audio)
    tracks = []
    for number, stream in enumerate(streams, start=1):
        context = stream.codec_context
        speech = _survey(path, demuxer, number - 1) if len(streams) > 1 else None
        tracks.append(AudioTrack(number, context.name, int(context.sample_rate or 0), int(context.channels or 0),
                                 (stream.metadata or {}).get("language"), speech))
    return tracks


def chosen_track(path: str | Path, tracks: list[AudioTrack], asked: int | None) -> int:
    """The number of the track to read: `asked` (checked against the file), else the one with the most speech in its
    first SURVEY_SECONDS (the first of equals), else 1."""
    if asked is not None:
        if not 1 <= asked <= max(1, len(tracks)):
            held = "no audio track" if not tracks else (
                "one audio track" if len(tracks) == 1 else f"{len(tracks)} audio tracks (1-{len(tracks)})")
            raise BadArgument("--audio-track", f"{path} holds {held}: there is no track {asked}")
        return asked
    if len(tracks) <= 1:
        return 1
    return max(tracks, key=lambda track: (track.speech_seconds or 0.0, -track.number)).number


def _survey(path: str | Path, demuxer: str, index: int) -> float:
    """Seconds of speech silero-vad finds in the first SURVEY_SECONDS of the file's audio track `index` (from 0);
    0 where it cannot be decoded."""
    import av

    from fvmatch.media.vad import speech_only

    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    pieces, held = [], 0
    try:
        with av.open(str(path), format=demuxer, metadata_errors="ignore") as container:
            for packet in container.demux(container.streams.audio[index]):
                for frame in packet.decode():
                    for converted in resampler.resample(frame):
                        pieces.append(converted.to_ndarray().reshape(-1))
                        held += pieces[-1].size
                if held >= SURVEY_SECONDS * SAMPLE_RATE:
                    break
    except (av.FFmpegError, OSError):
        return 0.0  # damage is for the reading passes to report
    if not pieces:
        return 0.0
    samples = np.concatenate(pieces)[: int(SURVEY_SECONDS * SAMPLE_RATE)].astype(np.float32, copy=False)
    if not np.isfinite(samples).all():
        raise UnreadableMedia(path, "audio holds NaN or infinite samples")
    return len(speech_only(samples)) / SAMPLE_RATE
