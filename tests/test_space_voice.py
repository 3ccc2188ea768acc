"""The ge2e-voice space: Resemblyzer's GE2E vectors of the speech it reads (long silences trimmed as Resemblyzer trims
them), the torch computation's vectors computed in numpy, speakers told apart, a quiet load without torch."""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fvmatch.media.audio import load_audio
from fvmatch.media.vad import trimmed_speech
from fvmatch.spaces import ge2e_voice
from fvmatch.spaces.ge2e_voice import FRONT_END, Ge2eVoiceSpace, mel_power, partial_starts
from mediagen import speech_clip

ROOT = Path(__file__).resolve().parents[1]
REALMEDIA = ROOT.parent / "shared" / "realmedia"
# LibriSpeech clips of 4-7 s (3-5 s of speech); 367-130732-0001 is quiet (-32 dBFS), so its level gets raised
AGREEMENT_CLIPS = ("3080-5032-0000", "533-1066-0003", "367-130732-0001", "2033-164914-0001")
# (reference, other recording) of five speakers
RANKING_PAIRS = (("1688-142285-0004", "1688-142285-0008"), ("2609-156975-0000", "2609-156975-0001"),
                 ("3080-5032-0000", "3080-5032-0003"), ("367-130732-0001", "367-130732-0008"),
                 ("533-1066-0008", "533-1066-0009"))


def clip(name: str) -> Path:
    """A LibriSpeech clip of ../shared/realmedia/voices by its utterance id."""
    path = REALMEDIA / "voices" / f"librispeech_{name.split('-')[0]}" / f"{name}.flac"
    if not path.is_file():
        pytest.skip(f"../shared/realmedia is absent: no {path} (real recordings are not part of the repository)")
    return path


@pytest.fixture(scope="module")
def space() -> Ge2eVoiceSpace:
    return Ge2eVoiceSpace()


@pytest.fixture(scope="module")
def resemblyzer():
    """Resemblyzer's own encoder and preprocessing, the reference the space must reproduce."""
    pytest.importorskip("resemblyzer",
                        reason="the reference is Resemblyzer's own pipeline (pip install 'fvmatch[train]')")
    with warnings.catch_warnings():  # resemblyzer imports binary_dilation from a deprecated scipy namespace
        warnings.simplefilter("ignore", DeprecationWarning)
        from resemblyzer import VoiceEncoder, normalize_volume, preprocess_wav
    return VoiceEncoder("cpu", verbose=False), preprocess_wav, normalize_volume


@pytest.fixture(scope="module")
def kept_speech():
    """A clip's speech as the space reads it (its long silences trimmed, vad.trimmed_speech), found once per clip."""
    speech: dict[str, np.ndarray] = {}

    def of(name: str) -> np.ndarray:
        if name not in speech:
            speech[name] = trimmed_speech(load_audio(clip(name)))
        return speech[name]

    return of


@pytest.fixture(scope="module")
def embed_clip(space, kept_speech):
    """The space's vector of a clip's kept speech, each clip embedded once."""
    vectors: dict[str, np.ndarray] = {}

    def embed(name: str) -> np.ndarray:
        if name not in vectors:
            vectors[name] = space.embed_speech(kept_speech(name))
        return vectors[name]

    return embed


@pytest.mark.parametrize("name", AGREEMENT_CLIPS)
def test_vector_of_kept_speech_agrees_with_resemblyzers_own_pipeline(embed_clip, resemblyzer, name):
    # the same samples kept; only the level may differ, for a file under -30 dBFS: Resemblyzer raises the whole file
    # (silences included) to -30 dBFS, the space the speech it reads
    encoder, preprocess_wav, _ = resemblyzer
    with warnings.catch_warnings():  # librosa.load reads FLAC through soundfile; audioread's imports are deprecated
        warnings.simplefilter("ignore", DeprecationWarning)
        theirs = encoder.embed_utterance(preprocess_wav(clip(name)))
    quiet = name == "367-130732-0001"  # -32 dBFS: raised to -30 there over the whole file, here over its speech
    assert float(embed_clip(name) @ theirs) >= (0.995 if quiet else 0.9999)


def test_trimming_keeps_the_samples_resemblyzers_trimming_keeps():
    # clean, noisy (white and pink) and quiet copies of real clips: the same samples, in the same order
    pytest.importorskip("resemblyzer", reason="the reference is Resemblyzer's trimming (pip install 'fvmatch[train]')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from resemblyzer.audio import normalize_volume, trim_long_silences
    from fvmatch.media.degrade import add_noise

    for number, name in enumerate(AGREEMENT_CLIPS):
        audio = load_audio(clip(name))
        for version in (audio, add_noise(audio, 20, number), add_noise(audio, 10, number, kind="pink"), audio * 0.05):
            ours = trimmed_speech(version)
            level = normalize_volume(version, -30, increase_only=True)
            theirs = trim_long_silences(level)
            assert len(ours) == len(theirs) and 0.5 * len(version) < len(ours) < len(version)
            gain = float(level[np.flatnonzero(version)[0]] / version[np.flatnonzero(version)[0]])
            assert np.allclose(ours * gain, theirs, atol=1e-5)


@pytest.mark.parametrize("seconds", [0.5, 1.0, 1.9, 2.0, 3.3, None])
def test_same_samples_give_resemblyzers_vector(space, resemblyzer, kept_speech, seconds):
    # 1.9 s keeps one 1.6 s partial and 2.0 s two (the last must be 75% real audio): the slicing is Resemblyzer's
    encoder, _, normalize_volume = resemblyzer
    speech = kept_speech("367-130732-0001")  # quiet: the volume is raised on both sides
    speech = speech[: int(seconds * 16000)] if seconds else speech
    theirs = encoder.embed_utterance(normalize_volume(speech, -30, increase_only=True))
    assert float(space.embed_speech(speech) @ theirs) > 0.9999


def test_partial_utterances_start_where_resemblyzers_do(resemblyzer):
    encoder, _, _ = resemblyzer
    for n_samples in [*range(0, 40_000, 7), *range(40_000, 400_000, 997)]:
        _, mel_slices = encoder.compute_partial_slices(n_samples, rate=1.3, min_coverage=0.75)
        assert partial_starts(n_samples) == [piece.start for piece in mel_slices], n_samples


def test_same_speakers_other_recording_ranks_first(embed_clip):
    references = np.stack([embed_clip(reference) for reference, _ in RANKING_PAIRS])
    for speaker, (_, other) in enumerate(RANKING_PAIRS):
        scores = references @ embed_clip(other)
        assert int(np.argmax(scores)) == speaker, (other, np.round(scores, 3))


def test_vectors_are_256_d_float32_unit_length(space):
    short = speech_clip(3.0)
    for speech in (short, np.tile(short, 8), short[:4000]):  # 3 s, 24 s, and 0.25 s (under the 1 s asked for)
        vector = space.embed_speech(speech)
        assert vector.shape == (256,) and space.dim == 256
        assert vector.dtype == np.float32
        assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_digital_silence_gives_a_finite_unit_vector(space):
    # the embedder embeds every window before it judges the amount of speech: no NaN may reach the average
    vector = space.embed_speech(np.zeros(16000, np.float32))
    assert np.isfinite(vector).all() and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_model_id_names_resemblyzers_pretrained_weights_and_the_front_end(space):
    # vectors of another front end (silero-vad's speech, before) are another model's: a gallery holding them is
    # refused, a calibration made on them is not applied; the id stays the one Resemblyzer's file gives (checked
    # where the training extra brings the package; without it the recorded sha256 stands for the file)
    pytest.importorskip("resemblyzer",
                        reason="the reference is Resemblyzer's pretrained.pt (pip install 'fvmatch[train]')")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import resemblyzer
    weights = hashlib.sha256((Path(resemblyzer.__file__).parent / "pretrained.pt").read_bytes()).hexdigest()
    assert space.name == "ge2e-voice" and space.front_end == "trimmed"
    assert space.weights_sha256 == weights
    assert space.model_id == hashlib.sha256(f"{weights} {FRONT_END}".encode()).hexdigest() != weights


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory) -> dict:
    """Load the space and embed a clip in a new interpreter: its stdout, BLAS thread counts and imported modules."""
    report = tmp_path_factory.mktemp("ge2e") / "report.json"
    script = (
        "import json, sys, numpy as np\n"
        "from threadpoolctl import threadpool_info\n"
        "threads = [pool['num_threads'] for pool in threadpool_info()]\n"
        "from fvmatch.spaces.ge2e_voice import Ge2eVoiceSpace\n"
        "Ge2eVoiceSpace().embed_speech(np.random.default_rng(0).normal(0, 0.05, 32000).astype(np.float32))\n"
        "json.dump({'threads': [threads, [pool['num_threads'] for pool in threadpool_info()]],"
        " 'modules': sorted(sys.modules)}, open(sys.argv[1], 'w'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(report)], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    return {"stdout": result.stdout, **json.loads(report.read_text())}


def test_loading_and_embedding_print_nothing_on_stdout(fresh_process):
    # `--json` output goes to stdout (resemblyzer's VoiceEncoder prints there unless verbose=False)
    assert fresh_process["stdout"] == ""


def test_loading_and_embedding_keep_blas_thread_count(fresh_process):
    # the LSTM's steps run on one BLAS thread; the process's setting is restored afterwards
    before, after = fresh_process["threads"]
    assert after == before and len(before) >= 1


def test_space_imports_neither_torch_nor_librosa(fresh_process):
    # torch: the analyst's install has none; librosa's first spectrogram costs seconds (numba, scipy.signal)
    assert not {"torch", "torchaudio", "librosa", "numba", "webrtcvad", "resemblyzer"} & set(fresh_process["modules"])


# ----- the numpy computation against the torch computation it replaces ------------------------------------------
class TorchGe2e:
    """The space's vectors as they were computed in torch: pretrained.pt read by torch.load, torchaudio's mel,
    torch.nn.LSTM (the reference the numpy computation must give within 1e-4 cosine)."""

    def __init__(self) -> None:
        import torch
        import torchaudio

        spec = importlib.util.find_spec("resemblyzer")
        if spec is None:
            pytest.skip("resemblyzer is not installed: its pretrained.pt is the reference's weights")
        data = (Path(next(iter(spec.submodule_search_locations))) / "pretrained.pt").read_bytes()
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)["model_state"]
        self.lstm = torch.nn.LSTM(40, 256, 3, batch_first=True)
        self.linear = torch.nn.Linear(256, 256)
        for name, value in state.items():
            module, _, parameter = name.partition(".")
            if module in ("lstm", "linear"):
                getattr(getattr(self, module), parameter).data.copy_(value)
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=16000, n_fft=400, hop_length=160, n_mels=40,
                                                        pad_mode="constant", mel_scale="slaney", norm="slaney")
        self.torch = torch

    def mel_power(self, waveform: np.ndarray) -> np.ndarray:
        with self.torch.inference_mode():
            return self.mel(self.torch.from_numpy(waveform)).T.numpy()

    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        torch = self.torch
        waveform = ge2e_voice.normalize_volume(np.asarray(speech, dtype=np.float32))
        starts = partial_starts(len(waveform))
        end = (starts[-1] + 160) * 160
        waveform = np.pad(waveform, (0, max(0, end - len(waveform))))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # on 2 busy cores, torch's threads waiting on each other made this 10 times slower
        try:
            with torch.inference_mode():
                mel = self.mel(torch.from_numpy(waveform)).T
                _, (hidden, _) = self.lstm(torch.stack([mel[start : start + 160] for start in starts]))
                partials = torch.relu(self.linear(hidden[-1]))
                partials = partials / partials.norm(dim=1, keepdim=True)
                mean = partials.mean(dim=0)
                return (mean / mean.norm()).numpy()
        finally:
            torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def torch_ge2e() -> TorchGe2e:
    pytest.importorskip("torch", reason="the reference is the torch computation")
    pytest.importorskip("torchaudio", reason="the reference's mel is torchaudio's")
    return TorchGe2e()


def test_shipped_weights_are_resemblyzers_pretrained_weights():
    # read from pretrained.pt without torch (fvmatch.media.torch_weights), as convert_pretrained.py converted them
    if importlib.util.find_spec("resemblyzer") is None:
        pytest.skip("resemblyzer is not installed: its pretrained.pt is the source of the shipped weights")
    from safetensors import safe_open

    spec = importlib.util.spec_from_file_location("convert_pretrained", ROOT / "models/weights/convert_pretrained.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    expected, source_sha256 = convert.ge2e_tensors()
    with safe_open(ge2e_voice.WEIGHTS_FILE, "np") as shipped:
        assert sorted(shipped.keys()) == sorted(expected) and len(expected) == 14
        for name, values in expected.items():
            assert np.array_equal(shipped.get_tensor(name), values), name
        assert shipped.metadata()["source_sha256"] == source_sha256 == ge2e_voice.RESEMBLYZER_WEIGHTS_SHA256
        assert "Apache License, Version 2.0" in shipped.metadata()["licence"]


def test_changed_shipped_weights_are_refused(tmp_path, monkeypatch):
    changed = tmp_path / "ge2e_voice.safetensors"
    data = bytearray(ge2e_voice.WEIGHTS_FILE.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    changed.write_bytes(bytes(data))
    monkeypatch.setattr(ge2e_voice, "WEIGHTS_FILE", changed)
    with pytest.raises(ValueError, match="ge2e_voice.safetensors: not the GE2E weights fvmatch ships"):
        Ge2eVoiceSpace()


def test_mel_is_torchaudios(torch_ge2e):
    clip = speech_clip(2.0, seed=6)
    ours, theirs = mel_power(clip), torch_ge2e.mel_power(clip)
    assert ours.shape == theirs.shape == (201, 40) and ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-6 * float(theirs.max()))


def test_vectors_are_the_torch_computations(space, torch_ge2e, kept_speech):
    # real speech (one quiet clip), generated speech, and lengths that give one partial, two, or zero padding
    speeches = [kept_speech(name) for name in AGREEMENT_CLIPS]
    speeches += [speech_clip(3.0, seed=7), speech_clip(3.0, seed=7)[:30_400], speech_clip(3.0, seed=7)[:4000]]
    for number, speech in enumerate(speeches):
        assert float(space.embed_speech(speech) @ torch_ge2e.embed_speech(speech)) > 1 - 1e-4, number


@pytest.mark.long
def test_vectors_of_every_real_recording_are_the_torch_computations(space, torch_ge2e):
    paths = sorted(path for path in (REALMEDIA / "voices").glob("*/*") if path.suffix in (".flac", ".mp3"))
    if not paths:
        pytest.skip(f"../shared/realmedia is absent: no recordings under {REALMEDIA / 'voices'}")
    cosines = {}
    for path in paths:
        speech = trimmed_speech(load_audio(path))
        cosines[path.name] = float(space.embed_speech(speech) @ torch_ge2e.embed_speech(speech))
    worst = min(cosines, key=cosines.get)
    print(f"{len(cosines)} recordings; lowest cosine {cosines[worst]:.8f} ({worst})")
    assert cosines[worst] > 1 - 1e-4, worst
