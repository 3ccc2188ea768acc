"""Voice recordings: read, mix to mono, resample to 16 kHz, and keep the speech (the seed's log-mel features of it:
fvmatch.media.log_mel).

Speech is found with silero-vad and long silences are dropped. libsndfile reads WAV, FLAC, OGG, MP3, AIFF and AU; FFmpeg (PyAV's wheel) reads the sound of
M4A/MP4 and Matroska/WebM containers and bare AAC streams. Recordings are streamed in blocks and cut into windows of speech, so an
hour-long file never sits in memory whole; the embedder averages the windows' embeddings.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, TooLittleSpeech, UnreadableMedia
from fvmatch.media.containers import audio_demuxer, ffmpeg_reason
from fvmatch.media.vad import speech_only, speech_probabilities, trimmed_speech
from fvmatch.paths import input_file_problem
from fvmatch.quality.voice import VoiceQualityMeter

SAMPLE_RATE = 16000

MIN_SPEECH_SECONDS = 1.0
WINDOW_SECONDS = 20.0  # speech per embedding window; longer speech is embedded window by window and averaged
BLOCK_SECONDS = 60.0  # audio decoded at a time...
MAX_BLOCK_SAMPLES = 6_000_000  # ...and at most this many samples over all channels (60 s of 48 kHz stereo fits)
# what a file's header may claim: outside these rates it is not a voice recording (1 Hz would make an hour of
# 16 kHz audio out of every 4 s of samples), and float samples far beyond [-1, 1] overflow the log-mel to NaN
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 768_000
MAX_SAMPLE_MAGNITUDE = 1000.0
MAX_RESAMPLE_KERNEL = 1_000_000  # orig x new of the ratio given to torchaudio's resample (see resampling_ratio)
MIN_TAIL_SECONDS = 1.0  # a last window shorter than this is merged away rather than embedded alone
MIN_TRIMMED_SECONDS = 1.0  # a window's trimmed speech shorter than this (and than silero's) is not used
# a multi-channel block whose mono mix holds less than this share of its channels' mean energy: the channels cancel
# (one is the other inverted, a wiring fault or a phase-inverted lavalier), and one channel is read alone
CANCELLING_MIX_RATIO = 0.01
SILENT_ENERGY = 1e-8  # mean square of a block with no sound in it (-80 dBFS): no decision about its channels
# a recording in which silero-vad found too little speech is read by it again raised to this level, where quieter
# (Resemblyzer raises its input to -30 dBFS, never lowers it), by at most MAX_LOUDER_DB (louder_for_speech); a
# recording under SILENT_ENERGY is silent, not quiet
QUIET_DBFS = -30.0
MAX_LOUDER_DB = 50.0
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".au", ".mp3", ".m4a", ".aac"}


@dataclass(frozen=True)
class SpeechWindow:
    """One window of speech: 16 kHz mono float32 samples (each embedding space computes its own features).

    `trimmed`: the same stretch of the recording with only its long silences trimmed, Resemblyzer's way
    (fvmatch.media.vad.trimmed_speech), for a space that reads its speech so (`speech_for`); None where the window
    was made without it."""

    samples: np.ndarray
    trimmed: np.ndarray | None = None

    @property
    def speech_seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def speech_for(self, space) -> np.ndarray:
        """The samples `space` embeds: the trimmed ones for a space whose `front_end` is "trimmed", unless the trimming
        kept less than MIN_TRIMMED_SECONDS and less than silero-vad did (webrtcvad lost the speech: silero's is used)."""
        if getattr(space, "front_end", "speech") != "trimmed" or self.trimmed is None:
            return self.samples
        if len(self.trimmed) < min(len(self.samples), int(MIN_TRIMMED_SECONDS * SAMPLE_RATE)):
            return self.samples
        return self.trimmed


@dataclass
class SpeechSummary:
    """What streaming a recording found: its duration, the seconds of speech kept, and its quality as measured."""

    duration_seconds: float = 0.0
    speech_seconds: float = 0.0
    original_sample_rate: int = 0
    channels: int = 0
    codec: str = ""  # as libsndfile reads it: container and encoding ("MP3 MPEG_LAYER_III", "WAV PCM_16")
    meter: VoiceQualityMeter = field(default_factory=VoiceQualityMeter)
    damage: list[str] = field(default_factory=list)  # what the file lacks of what it declares (a truncated WAV)
    channel_read: int | None = None  # None: channels mixed (or not yet decided); n: channel n (from 0) read alone
    mixed: bool = False  # the channels were found not to cancel: mixed to mono
    audio_track: int | None = None  # the audio track read, where the file holds several (from 1)
    audio_tracks: list = field(default_factory=list)  # then every one (fvmatch.media.sound_tracks.AudioTrack)
    energy: float = 0.0  # sum of squares of the 16 kHz mono samples read, and their number: the recording's level
    samples: int = 0
    louder_db: float = 0.0  # the gain silero-vad read the recording at (`louder_for_speech`), 0: as recorded

    @property
    def level_dbfs(self) -> float | None:
        """The recording's RMS level over all its samples, in dBFS (None: nothing read)."""
        return 10 * float(np.log10(self.energy / self.samples + 1e-20)) if self.samples else None

    def quality(self) -> dict:
        """The figures stored with the recording's embedding (fvmatch.quality.voice); and only where they apply:
        `damage` (one line) for a file that holds less than it declares, `channels_read` where the channels cancel
        in the mono mix, `audio_track` and `audio_tracks` for a file of several audio tracks."""
        return {"duration_seconds": round(self.duration_seconds, 2), "channels": self.channels,
                **self.meter.result(self.original_sample_rate, self.codec, self.speech_seconds),
                **({"damage": "; ".join(self.damage)} if self.damage else {}),
                **({"channels_read": f"channel {self.channel_read + 1} alone: the channels cancel in the mono mix "
                                     "(one is the other inverted)"} if self.channel_read is not None else {}),
                **({"audio_track": self.audio_track, "audio_tracks": [t.figures() for t in self.audio_tracks]}
                   if self.audio_track is not None else {}),
                **({"speech_found_louder_db": round(self.louder_db, 1)} if self.louder_db else {})}


def resampling_ratio(sample_rate: int) -> tuple[int, int]:
    """(orig, new) to give torchaudio's resample for `sample_rate` -> 16 kHz: the exact ratio when it is small.

    torchaudio builds a kernel of about orig x new taps once both are divided by their gcd: 441 x 160 for 44.1 kHz,
    but 44,101 x 16,000 (12 GB, a minute for a 4 s clip) for a header claiming 44,101 Hz. Such rates get the
    nearest ratio within MAX_RESAMPLE_KERNEL, a change of speed under 0.1% (4,000-768,000 Hz).
    """
    ratio = Fraction(sample_rate, SAMPLE_RATE)
    limit = ratio.denominator
    while ratio.numerator * ratio.denominator > MAX_RESAMPLE_KERNEL:
        limit //= 2
        ratio = Fraction(sample_rate, SAMPLE_RATE).limit_denominator(limit)
    return ratio.numerator, ratio.denominator


def _format_hint(path: Path) -> str:
    import soundfile

    suffix = path.suffix.lower()
    if suffix == ".mp3" and "MP3" not in soundfile.available_formats():
        return f" (MP3 needs libsndfile >= 1.1; this is {soundfile.__libsndfile_version__})"
    return ""


@contextmanager
def _open_audio(path: Path) -> Iterator:
    """The file as a soundfile.SoundFile, its format told by its content alone.

    Through a file object libsndfile never falls back on the file's extension: a text file named .mp3 would
    otherwise go to mpg123, which prints its resynchronisation notes on stderr.
    """
    import soundfile

    if (problem := input_file_problem(path)) is not None:
        raise UnreadableMedia(path, problem)
    if path.stat().st_size == 0:
        raise UnreadableMedia(path, "file is empty")
    try:
        handle = open(path, "rb")
    except OSError as error:
        raise UnreadableMedia(path, f"cannot open file ({error.strerror or error})") from None
    with handle:
        try:
            sound = soundfile.SoundFile(handle)
        except soundfile.LibsndfileError as error:
            raise UnreadableMedia(path, f"not an audio file soundfile can read: {error.error_string}"
                                  f"{_format_hint(path)}") from None
        except (RuntimeError, OSError) as error:
            raise UnreadableMedia(path, f"not an audio file soundfile can read ({error})") from None
        with sound:
            yield sound


def _resampled_blocks(path: Path, summary: SpeechSummary, audio_track: int | None = None) -> Iterator[np.ndarray]:
    """Blocks of 16 kHz mono float32 audio, decoded BLOCK_SECONDS (at most MAX_BLOCK_SAMPLES) at a time, from
    `audio_track` (from 1) of a container that holds several (default: the one with the most speech)."""
    from fvmatch.media.resample import resample

    demuxer = audio_demuxer(path) if input_file_problem(path) is None else None
    if demuxer is not None:
        blocks = _pyav_blocks(path, demuxer, summary, audio_track)
    else:
        blocks = _soundfile_blocks(path, summary, audio_track)
    orig = new = None
    for block in blocks:
        if orig is None:
            orig, new = resampling_ratio(summary.original_sample_rate)
        if not np.isfinite(block).all():
            raise UnreadableMedia(path, "audio holds NaN or infinite samples")
        peak = float(np.abs(block).max()) if block.size else 0.0
        if peak > MAX_SAMPLE_MAGNITUDE:
            raise UnreadableMedia(path, f"audio samples reach {peak:.3g}, far outside the [-1, 1] range of audio")
        summary.meter.add(block, summary.original_sample_rate)
        mono = _mono(block, summary)
        summary.duration_seconds += len(mono) / summary.original_sample_rate
        if orig != new:
            mono = resample(mono, orig, new)  # torchaudio's resampler in numpy (within 2e-7 of it)
        yield mono


def _mono(block: np.ndarray, summary: SpeechSummary) -> np.ndarray:
    """A (frames, channels) block as mono: the channels' mean, or one channel alone where they cancel in the mean
    (decided on the first block with sound, and kept for the whole recording: `summary.channel_read`)."""
    mono = block.mean(axis=1)
    if block.shape[1] < 2 or summary.mixed:
        return mono
    if summary.channel_read is None:
        energies = np.mean(np.square(block, dtype=np.float64), axis=0)
        if energies.max() < SILENT_ENERGY:
            return mono
        if float(np.mean(np.square(mono, dtype=np.float64))) >= CANCELLING_MIX_RATIO * float(energies.mean()):
            summary.mixed = True
            return mono
        # the first channel that is not much quieter than the loudest (right = -left: the first)
        summary.channel_read = int(np.flatnonzero(energies >= 0.5 * energies.max())[0])
    return np.ascontiguousarray(block[:, summary.channel_read])


def _check_rate(path: Path, sample_rate: int) -> None:
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise UnreadableMedia(path, f"sample rate of {sample_rate:,} Hz is outside the "
                              f"{MIN_SAMPLE_RATE:,}-{MAX_SAMPLE_RATE:,} Hz of a voice recording")


def _block_frames(sample_rate: int, channels: int) -> int:
    return max(1, min(int(BLOCK_SECONDS * sample_rate), MAX_BLOCK_SAMPLES // max(1, channels)))


def _soundfile_blocks(path: Path, summary: SpeechSummary, audio_track: int | None = None) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks at the file's own rate, read by libsndfile (WAV, FLAC, OGG, MP3, ...)."""
    import soundfile

    if audio_track not in (None, 1):
        raise BadArgument("--audio-track", f"{path} holds one audio track: there is no track {audio_track}")
    with _open_audio(path) as sound:
        summary.original_sample_rate = sound.samplerate
        summary.channels = sound.channels
        summary.codec = f"{sound.format} {sound.subtype}"
        _check_rate(path, sound.samplerate)
        if sound.format == "WAV" and (shortfall := wav_shortfall(path)) is not None:
            summary.damage.append(shortfall)
        block_frames = _block_frames(sound.samplerate, sound.channels)
        while True:
            try:
                block = sound.read(block_frames, dtype="float32", always_2d=True)
            except (soundfile.LibsndfileError, RuntimeError) as error:
                raise UnreadableMedia(path, f"audio data is truncated or corrupt ({error})") from None
            if len(block) == 0:
                return
            yield block


def wav_shortfall(path: Path) -> str | None:
    """What a WAV file lacks of the audio its header declares (its data chunk's size), in one line; None when it
    holds it all, or declares no size (0 or 0xFFFFFFFF: a recorder that never finished the header). libsndfile reads
    such a file up to its end without a word: a recording cut short would pass for a whole one."""
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        file_size = path.stat().st_size
        offset, bytes_per_second = 12, 0
        for _ in range(64):  # chunks before the data: fmt, and at most a few of LIST, fact, bext...
            handle.seek(offset)
            header = handle.read(8)
            if len(header) < 8:
                return None
            kind, size = header[:4], int.from_bytes(header[4:], "little")
            if kind == b"fmt ":
                fmt = handle.read(16)
                bytes_per_second = int.from_bytes(fmt[8:12], "little") if len(fmt) == 16 else 0
            elif kind == b"data":
                held = file_size - offset - 8
                if size in (0, 0xFFFFFFFF) or size <= held or bytes_per_second <= 0:
                    return None
                return (f"audio ends at {held / bytes_per_second:.1f} s of the {size / bytes_per_second:.1f} s its WAV "
                        "header declares (truncated or damaged)")
            offset += 8 + size + (size & 1)
    return None


def _pyav_blocks(path: Path, demuxer: str, summary: SpeechSummary,
                 audio_track: int | None = None) -> Iterator[np.ndarray]:
    """(frames, channels) float32 blocks at the stream's own rate of an audio track of an MP4/M4A or Matroska/WebM
    container or a bare AAC stream, decoded by FFmpeg (PyAV's wheel): what libsndfile cannot read. The track:
    `audio_track` (from 1), else the one with the most speech (fvmatch.media.sound_tracks)."""
    import av

    from fvmatch.media.sound_tracks import audio_tracks, chosen_track

    container_name = {"mov": "MP4", "matroska": "Matroska/WebM", "aac": "AAC"}[demuxer]
    if path.stat().st_size == 0:
        raise UnreadableMedia(path, "file is empty")
    try:
        container = av.open(str(path), format=demuxer, metadata_errors="ignore")
    except av.FFmpegError as error:
        raise UnreadableMedia(path, f"{container_name} file is truncated or damaged ({ffmpeg_reason(error)})") from None
    except (OSError, ValueError) as error:
        raise UnreadableMedia(path, f"cannot open audio ({error})") from None
    with container:
        if not container.streams.audio:
            raise UnreadableMedia(path, f"{container_name} file holds no audio track")
        tracks = audio_tracks(path, container, demuxer)
        number = chosen_track(path, tracks, audio_track)
        if len(tracks) > 1:
            summary.audio_track, summary.audio_tracks = number, tracks
        stream = container.streams.audio[number - 1]
        context = stream.codec_context
        summary.original_sample_rate = int(context.sample_rate or 0)
        summary.channels = int(context.channels or 0)
        summary.codec = f"{container_name} {context.name}"
        _check_rate(path, summary.original_sample_rate)
        resampler = av.AudioResampler(format="flt")  # packed float32, the stream's own layout and rate
        block_frames = _block_frames(summary.original_sample_rate, summary.channels)
        pending: list[np.ndarray] = []
        held = decoded = 0
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets, None)
                frames = packet.decode() if packet is not None else []
                converted = [c for frame in frames for c in resampler.resample(frame)]
            except av.FFmpegError as error:
                raise UnreadableMedia(path, f"audio data is truncated or corrupt ({ffmpeg_reason(error)})") from None
            for frame in converted:
                pending.append(frame.to_ndarray().reshape(-1, frame.layout.nb_channels))
                held += len(pending[-1])
            while held >= block_frames or (packet is None and held):
                joined = np.concatenate(pending)
                decoded += 1
                yield joined[:block_frames]
                pending = [joined[block_frames:]]
                held = len(pending[0])
            if packet is None:
                break
        if decoded == 0:
            raise UnreadableMedia(path, f"{container_name} file holds no decodable audio (truncated or damaged)")


def load_audio(path: str | Path, summary: SpeechSummary | None = None) -> np.ndarray:
    """A whole recording as 16 kHz mono float32 (for clips: long recordings go through `speech_windows`)."""
    summary = summary if summary is not None else SpeechSummary()
    blocks = list(_resampled_blocks(Path(path), summary))
    return np.concatenate(blocks) if blocks else np.zeros(0, dtype=np.float32)


def speech_windows(path: str | Path, summary: SpeechSummary | None = None,
                   audio_track: int | None = None) -> Iterator[SpeechWindow]:
    """Stream a recording and yield windows of its speech (at most WINDOW_SECONDS each).

    `summary` (if given) is filled in as the stream advances; `audio_track` (from 1) picks a container's track
    (default: the one with the most speech); a `summary.louder_db` set beforehand has silero-vad read the samples
    that much louder (`louder_for_speech`; the samples themselves are kept as they are). Raises UnreadableMedia for
    a bad file, BadArgument for a track it lacks; it does not judge the amount of speech (see `require_speech`).
    """
    summary = summary if summary is not None else SpeechSummary()
    gain = np.float32(10 ** (summary.louder_db / 20))

    def speech_of(block: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        summary.energy += float(np.dot(block, block))
        summary.samples += len(block)
        heard = block * gain if summary.louder_db else block
        probabilities = speech_probabilities(heard) if len(block) else np.zeros(0, np.float32)
        summary.meter.add_speech(block, probabilities)
        return speech_only(block, probabilities), trimmed_speech(block)

    yield from _windows((speech_of(block) for block in _resampled_blocks(Path(path), summary, audio_track)), summary)


def _windows(speech_pieces: Iterable, summary: SpeechSummary) -> Iterator[SpeechWindow]:
    """Cut consecutive pieces of speech into windows of WINDOW_SECONDS, counting the speech in `summary`.

    A piece is silero-vad's speech of a block, or (that speech, the block trimmed: vad.trimmed_speech). The trimmed
    stream is cut where the speech is, in proportion (the two come from the same blocks: a window's trimmed part
    may start or end a fraction of a second off its speech, which the average over windows does not feel); it is
    also cut when it alone holds a window, so that neither stream grows without bound."""
    window_samples = int(WINDOW_SECONDS * SAMPLE_RATE)
    limit = window_samples + int(MIN_TAIL_SECONDS * SAMPLE_RATE)
    pending = np.zeros(0, dtype=np.float32)
    trimmed: np.ndarray | None = None
    for piece in speech_pieces:
        speech, extra = piece if isinstance(piece, tuple) else (piece, None)
        summary.speech_seconds += len(speech) / SAMPLE_RATE
        pending = np.concatenate([pending, speech])
        if extra is not None:
            trimmed = extra if trimmed is None else np.concatenate([trimmed, extra])
        # keep one window plus a tail in hand so that a short last piece joins the window before it
        while len(pending) >= limit or (trimmed is not None and len(trimmed) >= limit):
            if len(pending) >= limit:
                cut = window_samples
                cut_trimmed = None if trimmed is None else round(len(trimmed) * cut / len(pending))
            else:
                cut_trimmed = window_samples
                cut = round(len(pending) * cut_trimmed / len(trimmed))
            window = SpeechWindow(pending[:cut], None if trimmed is None else trimmed[:cut_trimmed])
            pending = pending[cut:]
            trimmed = None if trimmed is None else trimmed[cut_trimmed:]
            yield window
    if len(pending) > 0 or (trimmed is not None and len(trimmed) > 0):
        yield SpeechWindow(pending, trimmed)


def voice_quality_of_clip(samples: np.ndarray, rate: int, codec: str = "") -> dict:
    """The quality figures of a whole clip held in memory (mono or (frames, channels) float32 at `rate`), measured by
    the pipeline that measures files (`speech_windows`), the clip written as a float WAV first;
    `codec` names the clip's codec in the figures (default: that WAV's)."""
    import tempfile

    import soundfile

    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/clip.wav"
        soundfile.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
        summary = SpeechSummary()
        for _ in speech_windows(path, summary):
            pass
    return summary.meter.result(rate, codec or summary.codec, summary.speech_seconds)


def louder_for_speech(summary: SpeechSummary) -> float | None:
    """The gain (dB) at which silero-vad should read again a recording in which it found too little speech: the
    recording's level raised to QUIET_DBFS where it is quieter (None: it is not). silero's probabilities fall with
    the level: a meeting turn at -51 dBFS through the telephone band with noise at 10 dB gave 5 chunks of 125 over
    0.5 as recorded and 48 at -30 dBFS; a Common Voice prompt at -40 dBFS through the telephone band 1 of 189 and 114
    (a listener hears speech in all of them); white noise gave none at any level from -60 to -10 dBFS."""
    level = summary.level_dbfs
    if level is None or level >= QUIET_DBFS or summary.louder_db or summary.energy <= SILENT_ENERGY * summary.samples:
        return None  # loud enough, read louder already, or silent (under -80 dBFS): nothing to hear
    return min(QUIET_DBFS - level, MAX_LOUDER_DB)


def require_speech(path: str | Path, summary: SpeechSummary, min_speech_seconds: float = MIN_SPEECH_SECONDS) -> None:
    """Raise TooLittleSpeech when a streamed recording held less speech than the minimum."""
    if summary.speech_seconds < min_speech_seconds:
        raise TooLittleSpeech(
            path,
            f"too little speech: {summary.speech_seconds:.1f} s detected in {summary.duration_seconds:.1f} s "
            f"of audio{f', heard {summary.louder_db:.0f} dB louder' if summary.louder_db else ''} (minimum "
            f"{min_speech_seconds:g} s)" + "".join(f"; {damage}" for damage in summary.damage),
        )
