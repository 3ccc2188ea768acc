"""Speech found with silero-vad: the probability of speech every 32 ms, and the speech of a clip as one array.

silero's own loop (`get_speech_timestamps`) calls the whole model once per 32 ms chunk. Only the model's last stage is
recurrent: the STFT and convolutional encoder see each chunk (with the 64 samples before it) alone. So the encoder runs
on all chunks at once and the recurrent cell over them in one pass, in numpy (fvmatch.media.silero_net, silero-vad
6.2's weights): the same probabilities as silero's loop in torch (within 1e-5, float summation order; a test
compares), without importing torch. Its post-processing (`get_speech_timestamps_from_probs`, whose module imports
torch) is `speech_segments` here, the same segments (a test compares).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from fvmatch.media.silero_net import CHUNK, CONTEXT, SileroVad

SAMPLE_RATE = 16000
MIN_SAMPLES = SAMPLE_RATE // 10  # shorter audio holds no speech to find
# silero's segments widened: each keeps 100 ms on either side (its default 30 ms cuts into the edges of words), so
# pauses under 200 ms stay inside the speech. Speaker encoders read that rhythm: on 100 real LibriSpeech clips (10
# speakers) the GE2E space's EER is 1.27% with silero's defaults (pad 30 ms, min silence 100 ms), 0.49% at 100/100,
# 0.44% at 200/300 and 0.67% at 300/500 (Resemblyzer's own trimming: 0.42%); 100/100 also keeps the space's vectors
# within 0.98 of Resemblyzer's own pipeline on whole clips (200/300: down to 0.976)
SPEECH_PAD_MS = 100
MIN_SILENCE_MS = 100
VAD_SETTINGS = {"speech_pad_ms": SPEECH_PAD_MS, "min_silence_duration_ms": MIN_SILENCE_MS}
# silero's other defaults, which speech_segments keeps: a chunk is speech from 0.5, silence under 0.35, and a segment
# needs more than 250 ms of speech
THRESHOLD = 0.5
NEG_THRESHOLD = THRESHOLD - 0.15
MIN_SPEECH_MS = 250


@lru_cache(maxsize=1)
def vad_model() -> SileroVad:
    """silero-vad's 16 kHz network, loaded once per process."""
    return SileroVad()


def speech_probabilities(waveform: np.ndarray) -> np.ndarray:
    """silero-vad's probability of speech for each 512-sample chunk of 16 kHz mono audio (the last one zero-padded),
    as `model.audio_forward` gives them from a fresh state."""
    count = -(-len(waveform) // CHUNK)
    padded = np.zeros(CONTEXT + count * CHUNK, np.float32)  # the first chunk's context is silence, as silero's
    padded[CONTEXT : CONTEXT + len(waveform)] = waveform
    windows = np.lib.stride_tricks.sliding_window_view(padded, CONTEXT + CHUNK)[::CHUNK]
    return vad_model()(windows)


def speech_segments(probabilities: np.ndarray, n_samples: int, speech_pad_ms: int = SPEECH_PAD_MS,
                    min_silence_duration_ms: int = MIN_SILENCE_MS) -> list[dict[str, int]]:
    """Speech segments ({"start", "end"} in samples) of `n_samples` of 16 kHz audio from its chunks' probabilities:
    silero-vad 6.2's `get_speech_timestamps_from_probs` with its defaults otherwise (no limit on a segment's length,
    so its cutting of over-long segments never applies)."""
    min_speech = SAMPLE_RATE * MIN_SPEECH_MS / 1000
    pad = SAMPLE_RATE * speech_pad_ms / 1000
    min_silence = SAMPLE_RATE * min_silence_duration_ms / 1000
    speeches: list[dict[str, int]] = []
    start = None  # the sample where the current segment began
    silence_start = 0  # where a silence inside the current segment began (0: none)
    for index, probability in enumerate(np.asarray(probabilities, dtype=np.float64).tolist()):
        sample = CHUNK * index
        if probability >= THRESHOLD:
            silence_start = 0
            if start is None:
                start = sample
                continue
        if probability < NEG_THRESHOLD and start is not None:
            silence_start = silence_start or sample
            if sample - silence_start >= min_silence:
                if silence_start - start > min_speech:
                    speeches.append({"start": start, "end": silence_start})
                start, silence_start = None, 0
    if start is not None and n_samples - start > min_speech:
        speeches.append({"start": start, "end": n_samples})
    for index, speech in enumerate(speeches):  # widen each by the pad, halving pauses shorter than two pads
        if index == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if index != len(speeches) - 1:
            following = speeches[index + 1]
            silence = following["start"] - speech["end"]
            if silence < 2 * pad:
                speech["end"] += int(silence // 2)
                following["start"] = int(max(0, following["start"] - silence // 2))
            else:
                speech["end"] = int(min(n_samples, speech["end"] + pad))
                following["start"] = int(max(0, following["start"] - pad))
        else:
            speech["end"] = int(min(n_samples, speech["end"] + pad))
    return speeches


def speech_only(waveform: np.ndarray, probabilities: np.ndarray | None = None) -> np.ndarray:
    """The speech of 16 kHz mono audio as one array: silero-vad's segments joined, the silences between dropped
    (`probabilities`: the waveform's `speech_probabilities`, when the caller has them already)."""
    if len(waveform) < MIN_SAMPLES:
        return waveform[:0]
    if probabilities is None:
        probabilities = speech_probabilities(waveform)
    segments = speech_segments(probabilities, len(waveform))
    if not segments:
        return waveform[:0]
    return np.concatenate([waveform[segment["start"] : segment["end"]] for segment in segments])


# Resemblyzer's trimming of long silences (resemblyzer/audio.py `trim_long_silences`, hparams.py), the speech its GE2E
# encoder was trained on: the audio raised to -30 dBFS (never lowered), webrtcvad at its most aggressive on 30 ms
# frames, a moving average over 8 frames rounded to a decision, and each kept frame widened by 3 frames either side
TRIM_FRAME = 480  # 30 ms at 16 kHz
TRIM_MODE = 3
TRIM_AVERAGE_FRAMES = 8
TRIM_MAX_SILENCE_FRAMES = 6
TRIM_LEVEL_DBFS = -30.0


def trimmed_speech(waveform: np.ndarray) -> np.ndarray:
    """16 kHz mono audio with its long silences trimmed as Resemblyzer's `preprocess_wav` trims them (webrtcvad), the
    samples themselves not rescaled (a space sets its own level); the last partial 30 ms frame is dropped."""
    # webrtcvad's C extension itself: the package's Python module only wraps it, and imports pkg_resources (0.1-0.2 s
    # of a cold query) for its version string
    import _webrtcvad

    frames = len(waveform) // TRIM_FRAME
    if frames == 0:
        return waveform[:0]
    audio = np.asarray(waveform[: frames * TRIM_FRAME], dtype=np.float64)
    rms = float(np.sqrt(np.mean(np.square(audio)))) if len(audio) else 0.0
    if 0.0 < rms < 10.0 ** (TRIM_LEVEL_DBFS / 20.0):  # webrtcvad hears the level Resemblyzer gives it
        audio = audio * (10.0 ** (TRIM_LEVEL_DBFS / 20.0) / rms)
    pcm = np.clip(np.round(audio * 32767), -32768, 32767).astype(np.int16).tobytes()
    detector = _webrtcvad.create()
    _webrtcvad.init(detector)
    _webrtcvad.set_mode(detector, TRIM_MODE)
    step = TRIM_FRAME * 2
    voiced = np.array([_webrtcvad.process(detector, SAMPLE_RATE, pcm[start : start + step], TRIM_FRAME)
                       for start in range(0, len(pcm), step)], dtype=np.float64)
    width = TRIM_AVERAGE_FRAMES
    padded = np.concatenate([np.zeros((width - 1) // 2), voiced, np.zeros(width // 2)])
    sums = np.cumsum(padded)
    sums[width:] = sums[width:] - sums[:-width]
    keep = np.round(sums[width - 1 :] / width).astype(bool)
    # scipy's binary_dilation by TRIM_MAX_SILENCE_FRAMES + 1 frames, centred, as Resemblyzer's (scipy.ndimage's import
    # costs 0.2-0.6 s of a cold query)
    reach = TRIM_MAX_SILENCE_FRAMES // 2
    keep = np.convolve(keep, np.ones(TRIM_MAX_SILENCE_FRAMES + 1))[reach : reach + len(keep)] > 0
    return waveform[: frames * TRIM_FRAME][np.repeat(keep, TRIM_FRAME)]
