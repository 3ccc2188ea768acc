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

The weights are read here with `torch.load(weights_only=True)` and the mel computed with torchaudio (slaney scale
and norm, as librosa's: within 2e-6 of it) instead of calling resemblyzer's VoiceEncoder: importing resemblyzer
imports librosa and webrtcvad, and librosa's first spectrogram in a process costs 3-4 s loading numba and
scipy.signal (about 30 s the first time after installation, while numba compiles its cache).
tests/test_space_voice.py checks that this module gives Resemblyzer's vectors.
"""
from __future__ import annotations

import copy
import hashlib
import importlib.util
import io
from pathlib import Path

import numpy as np
import torch

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
LOSS_ONLY_KEYS = ("similarity_weight", "similarity_bias")  # GE2E's loss scale and bias, saved beside the network
# the speech the vectors are computed from, part of the model id (fvmatch.media.vad.trimmed_speech's settings)
SPEECH_NAME = "ge2e-voice/speech"  # fvmatch.spaces.SPEECH_VOICE_SPACE
FRONT_END = "front end: webrtcvad trimming of long silences (mode 3, 30 ms frames, average 8, widen 6), v2"


def resemblyzer_weights_path() -> Path:
    """`pretrained.pt` inside the installed resemblyzer package, found without importing the package."""
    spec = importlib.util.find_spec("resemblyzer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the ge2e-voice space needs the resemblyzer package (its wheel holds the weights): "
                                "pip install resemblyzer")
    return Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt"


class _Ge2eEncoder(torch.nn.Module):
    """Resemblyzer's VoiceEncoder network: the last layer's final LSTM state, projected, ReLU, unit length."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = torch.nn.LSTM(N_MELS, HIDDEN_SIZE, LSTM_LAYERS, batch_first=True)
        self.linear = torch.nn.Linear(HIDDEN_SIZE, EMBEDDING_DIM)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """(partials, frames, N_MELS) mel power -> (partials, EMBEDDING_DIM) unit vectors."""
        _, (hidden, _) = self.lstm(mels)
        embeddings = torch.relu(self.linear(hidden[-1]))
        return embeddings / embeddings.norm(dim=1, keepdim=True)


class Ge2eVoiceSpace:
    """GE2E speaker vectors of 16 kHz speech, as Resemblyzer's `VoiceEncoder.embed_utterance` computes them."""

    name = "ge2e-voice"
    family = "ge2e-voice"  # the encoder, whichever speech it reads (the name of the conditioned spaces built on it)
    dim = EMBEDDING_DIM
    front_end = "trimmed"  # the speech it reads (fvmatch.media.audio.SpeechWindow.speech_for)

    def __init__(self) -> None:
        import torchaudio

        data = resemblyzer_weights_path().read_bytes()
        # the id is made from the hash of the very bytes loaded, so it cannot describe a file changed in between,
        # and from the speech front end, which moves the vectors as much as the weights do: a gallery or calibration
        # made with another front end is refused or set aside, as one made with other weights
        self.weights_sha256 = hashlib.sha256(data).hexdigest()
        self.model_id = hashlib.sha256(f"{self.weights_sha256} {FRONT_END}".encode()).hexdigest()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["model_state"]
        self.encoder = _Ge2eEncoder().eval()
        self.encoder.load_state_dict({key: value for key, value in state.items() if key not in LOSS_ONLY_KEYS})
        # librosa.feature.melspectrogram's defaults as Resemblyzer calls it: periodic Hann window, centred frames
        # zero-padded at the ends, power 2, slaney mel scale and area normalisation
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP_LENGTH, n_mels=N_MELS,
            pad_mode="constant", mel_scale="slaney", norm="slaney",
        )

    def reading_speech(self) -> "Ge2eVoiceSpace":
        """The same encoder reading silero-vad's speech (front end "speech", model id the weights' sha256, as the space
        was before its trimmed front end): the base of the reference conditions (fvmatch.spaces.conditions), whose
        references and questions it embeds; an internal space (SPEECH_VOICE_SPACE), never stored in a gallery."""
        other = copy.copy(self)
        other.name, other.front_end, other.model_id = SPEECH_NAME, "speech", self.weights_sha256
        return other

    @torch.inference_mode()
    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        """16 kHz mono float32 speech (at least a second) -> unit vector (256,) float32."""
        waveform = normalize_volume(np.asarray(speech, dtype=np.float32))
        starts = partial_starts(len(waveform))
        # like embed_utterance: zero-pad to the end of the last partial, never cut what lies beyond it
        end = (starts[-1] + PARTIAL_FRAMES) * HOP_LENGTH
        waveform = np.pad(waveform, (0, max(0, end - len(waveform))))
        mel = self.mel(torch.from_numpy(waveform)).T  # (frames, N_MELS)
        partials = self.encoder(torch.stack([mel[start : start + PARTIAL_FRAMES] for start in starts]))
        mean = partials.mean(dim=0)
        return (mean / mean.norm()).numpy().astype(np.float32)


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
