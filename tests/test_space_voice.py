"""The ge2e-voice space: Resemblyzer's GE2E vectors of the speech it reads (long silences trimmed as Resemblyzer trims
them), speakers told apart, a quiet load."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from fvmatch.media.audio import load_audio
from fvmatch.media.vad import trimmed_speech
from fvmatch.spaces.ge2e_voice import FRONT_END, Ge2eVoiceSpace, partial_starts
from mediagen import speech_clip

REALMEDIA = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
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
    # refused, a calibration made on them is not applied
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import resemblyzer
    weights = hashlib.sha256((Path(resemblyzer.__file__).parent / "pretrained.pt").read_bytes()).hexdigest()
    assert space.name == "ge2e-voice" and space.front_end == "trimmed"
    assert space.weights_sha256 == weights
    assert space.model_id == hashlib.sha256(f"{weights} {FRONT_END}".encode()).hexdigest() != weights


@pytest.fixture(scope="module")
def fresh_process(tmp_path_factory) -> dict:
    """Load the space and embed a clip in a new interpreter: its stdout, thread counts and imported modules."""
    report = tmp_path_factory.mktemp("ge2e") / "report.json"
    script = (
        "import json, sys, numpy as np, torch\n"
        "threads = torch.get_num_threads()\n"
        "from fvmatch.spaces.ge2e_voice import Ge2eVoiceSpace\n"
        "Ge2eVoiceSpace().embed_speech(np.random.default_rng(0).normal(0, 0.05, 32000).astype(np.float32))\n"
        "json.dump({'threads': [threads, torch.get_num_threads()], 'modules': sorted(sys.modules)},"
        " open(sys.argv[1], 'w'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(report)], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    return {"stdout": result.stdout, **json.loads(report.read_text())}


def test_loading_and_embedding_print_nothing_on_stdout(fresh_process):
    # `--json` output goes to stdout (resemblyzer's VoiceEncoder prints there unless verbose=False)
    assert fresh_process["stdout"] == ""


def test_loading_and_embedding_keep_torch_thread_count(fresh_process):
    before, after = fresh_process["threads"]
    assert after == before


def test_space_does_not_import_librosa(fresh_process):
    # librosa's first spectrogram in a process costs seconds (numba, scipy.signal): the space uses torchaudio
    assert not {"librosa", "numba", "webrtcvad", "resemblyzer"} & set(fresh_process["modules"])
