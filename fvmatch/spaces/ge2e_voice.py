"""The ge2e-voice space: Resemblyzer's GE2E speaker encoder (Wan et al. 2018), 256-D, weights from its wheel.

Resemblyzer's inference: raise the volume to -30 dBFS (never lower it), a 40-band mel power spectrogram (25 ms /
10 ms, not a log), partial utterances of 1.6 s taken 1.3 times a second through a 3-layer LSTM, and the mean of their
unit vectors, renormalised. Its speech is the recording with long silences trimmed as Resemblyzer trims them
(webrtcvad: fvmatch.media.vad.trimmed_speech, `front_end = "trimmed"`), the speech the encoder was trained on, rather
than silero-vad's segments, which the other spaces read. Under noise silero keeps more of the faint edges of speech
and pauses (6% more of the audio than webrtcvad at 20 dB white noise, 11% more in pink noise at 10 dB, mostly 15-10
dB under the speech, so mostly noise), and GE2E reads them: on 50 degraded questions against 50 clean references of 10
LibriSpeech speakers (benchmarks/degraded.py), EER with silero's speech -> trimmed speech: white noise at 20 dB 3.3%
-> 2.3%, pink noise at 10 dB 8.7% -> 6.3%, low-pass 5.5 kHz 1.1% -> 0.9%, Opus 8 kbit/s 1.9% -> 1.6%, clean 0.5% ->
0.5% (the same 50 x 50 with references and questions swapped, and with other noise: 3.2% -> 2.1% at 20 dB, 7.7% ->
6.4% pink). Where webrtcvad keeps under a second of a window that silero finds speech in, silero's speech is used
(fvmatch.media.audio.SpeechWindow.speech_for).

The network runs in numpy (float32; a 40-band mel and a 3-layer LSTM: fvmatch.media.numpy_lstm), so a voice query
imports no torch. Its weights are Resemblyzer 0.1.4's pretrained.pt (Apache-2.0, Copyright 2019 Resemble.AI:
models/weights/ge2e_voice.LICENSE) converted once to models/weights/ge2e_voice.safetensors
(models/weights/convert_pretrained.py: the same float32 values), checked against its sha256 when loaded; the model id
still rests on pretrained.pt's sha256, so galleries and calibrations made from it stay valid. The mel is librosa's
as Resemblyzer calls it (slaney scale and norm), computed here instead of calling resemblyzer's VoiceEncoder:
importing resemblyzer imports librosa, webrtcvad and torch, and librosa's first spectrogram in a process costs 3-4 s
loading numba and scipy.signal (about 30 s the first time after installation, while numba compiles its cache).
tests/test_space_voice.py checks that this module gives Resemblyzer's vectors, and the torch computation's.
"""
from __future__ import annotations

import copy
import hashlib
from functools import lru_cache

import numpy as np

from fvmatch.media.numpy_lstm import LstmLayer, LstmWeights
from fvmatch.models.checkpoint import WEIGHTS_DIR
from fvmatch.paths import shipped_bytes

# resemblyzer/hparams.py (not imported: importing any part of the package imports librosa)
SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP_LENGTH = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s of frames per partial utterance
PARTIAL_RATE = 1.3  # partial utterances per second (embed_utterance's default)
MIN_COVERAGE = 0.75  # a last partial needs this share of real audio, else it is dropped (unless it is the only one)
TARGET_DBFS = -30.0  # audio_norm_target_dBFS
HIDDEN_SIZE = 256
EMBEDDING_DIM = 256
LSTM_LAYERS = 3
WEIGHTS_FILE = WEIGHTS_DIR / "ge2e_voice.safetensors"
WEIGHTS_FILE_SHA256 = "65f0341c20ef2121757ccd6dc382fe02f991ca5463f1ee0ae64d903eb3ef9ca7"
# sha256 of resemblyzer/pretrained.pt, the file the shipped weights were converted from: the basis of the model id
RESEMBLYZER_WEIGHTS_SHA256 = "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"
# the speech the vectors are computed from, part of the model id (fvmatch.media.vad.trimmed_speech's settings)
SPEECH_NAME = "ge2e-voice/speech"  # fvmatch.spaces.SPEECH_VOICE_SPACE
FRONT_END = "front end: webrtcvad trimming of long silences (mode 3, 30 ms frames, average 8, widen 6), v2"


class _Ge2eEncoder:
    """Resemblyzer's VoiceEncoder network: the last layer's final LSTM state, projected, ReLU, unit length."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.layers = [LstmLayer(LstmWeights(*(weights[f"lstm.{name}_l{layer}"]
                                               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))))
                       for layer in range(LSTM_LAYERS)]
        self.projection = np.ascontiguousarray(weights["linear.weight"].T)
        self.bias = weights["linear.bias"]

    def __call__(self, mels: np.ndarray) -> np.ndarray:
        """(partials, frames, N_MELS) mel power -> (partials, EMBEDDING_DIM) unit vectors."""
        states = np.ascontiguousarray(mels.transpose(1, 0, 2), dtype=np.float32)  # time first
        for layer in self.layers:
            states = layer(states)
        embeddings = np.maximum(states[-1] @ self.projection + self.bias, 0.0)
        return embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)


class Ge2eVoiceSpace:
    """GE2E speaker vectors of 16 kHz speech, as Resemblyzer's `VoiceEncoder.embed_utterance` computes them."""

    name = "ge2e-voice"
    family = "ge2e-voice"  # the encoder, whichever speech it reads (the name of the conditioned spaces built on it)
    dim = EMBEDDING_DIM
    front_end = "trimmed"  # the speech it reads (fvmatch.media.audio.SpeechWindow.speech_for)

    def __init__(self) -> None:
        from safetensors.numpy import load

        data = shipped_bytes(WEIGHTS_FILE, WEIGHTS_FILE_SHA256, "GE2E weights")
        # the id: the converted file's source and the speech front end, which moves the vectors as much as the
        # weights do: a gallery or calibration made with another front end is refused or set aside, as one made with
        # other weights
        self.weights_sha256 = RESEMBLYZER_WEIGHTS_SHA256
        self.model_id = hashlib.sha256(f"{self.weights_sha256} {FRONT_END}".encode()).hexdigest()
        self.encoder = _Ge2eEncoder(load(data))

    def reading_speech(self) -> "Ge2eVoiceSpace":
        """The same encoder reading silero-vad's speech (front end "speech", model id the weights' sha256, as the space
        was before its trimmed front end): the base of the reference conditions (fvmatch.spaces.conditions), whose
        references and questions it embeds; an internal space (SPEECH_VOICE_SPACE), never stored in a gallery."""
        other = copy.copy(self)
        other.name, other.front_end, other.model_id = SPEECH_NAME, "speech", self.weights_sha256
        return other

    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        """16 kHz mono float32 speech (at least a second) -> unit vector (256,) float32."""
        waveform = normalize_volume(np.asarray(speech, dtype=np.float32))
        starts = partial_starts(len(waveform))
        # like embed_utterance: zero-pad to the end of the last partial, never cut what lies beyond it
        end = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
        waveform = np.pad(waveform, (0, max(0, end - len(waveform))))
        mel = mel_power(waveform)  # (frames, N_MELS)
        partials = self.encoder(np.stack([mel[start : start + PARTIAL_FRAMES] for start in starts]))
        mean = partials.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def mel_power(waveform: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) mel power spectrogram of 16 kHz audio as librosa.feature.melspectrogram computes it with the
    defaults Resemblyzer calls it with: periodic Hann window, centred frames zero-padded at the ends, power 2, slaney
    mel scale and area normalisation (torchaudio's MelSpectrogram with those settings, within float32 rounding)."""
    padded = np.pad(np.asarray(waveform, dtype=np.float32), N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP_LENGTH]
    spectrum = np.fft.rfft(frames * _hann_window(), axis=1)
    power = np.square(spectrum.real) + np.square(spectrum.imag)
    return (power @ _mel_filters()).astype(np.float32)


@lru_cache(maxsize=1)
def _hann_window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)  # periodic


@lru_cache(maxsize=1)
def _mel_filters() -> np.ndarray:
    """(N_FFT // 2 + 1, N_MELS) triangular filters on the slaney mel scale, each of unit area (norm="slaney")."""
    frequencies = np.linspace(0.0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    slopes = edges[None, :] - frequencies[:, None]
    rising = -slopes[:, :-2] / np.diff(edges)[:-1]
    falling = slopes[:, 2:] / np.diff(edges)[1:]
    filters = np.maximum(0.0, np.minimum(rising, falling))
    return (filters * (2.0 / (edges[2:] - edges[:-2]))).astype(np.float32)


# the slaney mel scale: linear under 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)
_LINEAR_HZ_PER_MEL = 200.0 / 3
_LOG_START_HZ = 1000.0
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz):
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _LINEAR_HZ_PER_MEL
    start = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
    return np.where(hz >= _LOG_START_HZ, start + np.log(np.maximum(hz, 1e-10) / _LOG_START_HZ) / _LOG_STEP, linear)


def _mel_to_hz(mels):
    mels = np.asarray(mels, dtype=np.float64)
    start = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
    return np.where(mels >= start, _LOG_START_HZ * np.exp(_LOG_STEP * (mels - start)), mels * _LINEAR_HZ_PER_MEL)


def normalize_volume(speech: np.ndarray, target_dbfs: float = TARGET_DBFS) -> np.ndarray:
    """Raise the RMS level to `target_dbfs`, never lower it (resemblyzer's `normalize_volume(increase_only=True)`).

    The network reads mel power, not its log, so level matters; Resemblyzer measures it over the whole file,
    silences included, while here it is the level of the speech given (the trimmed speech: as loud or louder, so
    the two agree wherever the file is already at -30 dBFS or above).
    """
    rms = float(np.sqrt(np.mean(np.square(speech, dtype=np.float64)))) if len(speech) else 0.0
    if rms == 0.0:  # digital silence: no level to raise (resemblyzer would divide by zero)
        return speech
    gain_db = target_dbfs - 20.0 * np.log10(rms)
    return (speech * np.float32(10.0 ** (gain_db / 20.0))).astype(np.float32) if gain_db > 0 else speech


def partial_starts(n_samples: int) -> list[int]:
    """First mel frame of each 1.6 s partial utterance: resemblyzer's `compute_partial_slices` (rate 1.3 per second).

    The partials cover the whole clip; the last is dropped when less than MIN_COVERAGE of it is real audio,
    unless it is the only one.
    """
    n_frames = int(np.ceil((n_samples + 1) / HOP_LENGTH))
    frame_step = int(np.round(SAMPLE_RATE / PARTIAL_RATE / HOP_LENGTH))  # 77 frames
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + frame_step + 1), frame_step))
    coverage = (n_samples - starts[-1] * HOP_LENGTH) / (PARTIAL_FRAMES * HOP_LENGTH)
    if coverage < MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts
