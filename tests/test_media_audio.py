"""Audio loading, speech detection and log-mel features on real audio files."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from fvmatch.errors import TooLittleSpeech, UnreadableMedia
from fvmatch.media import audio, vad
from fvmatch.media.audio import SAMPLE_RATE, SpeechSummary, load_audio, speech_windows
from fvmatch.media.log_mel import N_MELS, log_mel

from mediagen import speech_clip

# (file name, sample rate, channels, soundfile subtype)
VARIANTS = [
    ("mono16k.wav", 16000, 1, "PCM_16"),
    ("mono8k.wav", 8000, 1, "PCM_16"),
    ("stereo44k.flac", 44100, 2, "PCM_24"),
    ("stereo48k.wav", 48000, 2, "FLOAT"),
    ("six96k.wav", 96000, 6, "PCM_16"),
    ("mono22k.ogg", 22050, 1, "VORBIS"),
]


@pytest.fixture(scope="module")
def variants(tmp_path_factory):
    """One 4 s utterance written at several rates, channel counts and formats."""
    root = tmp_path_factory.mktemp("variants")
    clip = speech_clip(4.0, seed=3)
    paths = {}
    for name, rate, channels, subtype in VARIANTS:
        resampled = resample_poly(clip, rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else clip
        data = np.repeat(resampled[:, None], channels, axis=1) * 0.9
        soundfile.write(root / name, data, rate, subtype=subtype)
        paths[name] = root / name
    return paths


def test_every_rate_channel_count_and_format_gives_the_same_feature_shape(variants):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    shapes = {}
    for name, path in variants.items():
        waveform = load_audio(path)
        assert waveform.dtype == np.float32
        assert abs(len(waveform) - 4 * SAMPLE_RATE) <= 1, name
        shapes[name] = log_mel(waveform[: 4 * SAMPLE_RATE - 1]).shape
    assert set(shapes.values()) == {(N_MELS, 400)}


def test_every_variant_yields_about_the_same_speech(variants):
    reference = None
    for name, path in variants.items():
        summary = SpeechSummary()
        windows = list(speech_windows(path, summary))
        assert len(windows) == 1 and windows[0].samples.ndim == 1
        assert summary.channels == dict((n, c) for n, _, c, _ in VARIANTS)[name]
        reference = reference or summary.speech_seconds
        assert summary.speech_seconds == pytest.approx(reference, abs=0.35), name


def test_log_mel_is_normalised_per_utterance():
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    features = log_mel(speech_clip(3.0))
    assert features.shape == (N_MELS, 301)
    np.testing.assert_allclose(features.mean(axis=1), 0.0, atol=1e-4)
    np.testing.assert_allclose(features.std(axis=1), 1.0, atol=1e-2)


def test_silences_are_dropped(tmp_path):
    clip = speech_clip(3.0, seed=5)
    padded = np.concatenate([np.zeros(SAMPLE_RATE * 4, np.float32), clip, np.zeros(SAMPLE_RATE * 4, np.float32)])
    path = tmp_path / "padded.wav"
    soundfile.write(path, padded, SAMPLE_RATE)
    summary = SpeechSummary()
    windows = list(speech_windows(path, summary))
    assert summary.duration_seconds == pytest.approx(11.0, abs=0.01)
    assert 2.0 < summary.speech_seconds < 3.5
    assert sum(window.speech_seconds for window in windows) == pytest.approx(summary.speech_seconds)


def test_long_recordings_are_cut_into_bounded_windows(tmp_path, monkeypatch):
    monkeypatch.setattr(audio, "WINDOW_SECONDS", 3.0)
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 5.0)
    path = tmp_path / "long.wav"
    soundfile.write(path, np.concatenate([speech_clip(4.0, seed=s) for s in range(4)]), SAMPLE_RATE)
    summary = SpeechSummary()
    windows = list(speech_windows(path, summary))
    assert len(windows) >= 4
    assert all(window.speech_seconds <= 3.0 + audio.MIN_TAIL_SECONDS for window in windows)
    assert all(window.speech_seconds <= 3.0 + audio.MIN_TAIL_SECONDS for window in windows)
    assert sum(window.speech_seconds for window in windows) == pytest.approx(summary.speech_seconds)
    assert summary.speech_seconds > 12.0


@pytest.mark.parametrize("name", ["silence.wav", "short.wav"])
def test_silent_and_very_short_recordings_are_refused(embedder, media_dir, name):
    with pytest.raises(TooLittleSpeech, match=f"{name}: too little speech: 0.[0-9] s detected"):
        embedder.embed_voice(media_dir / name)


def test_text_file_named_wav_is_refused(media_dir):
    with pytest.raises(UnreadableMedia, match="text.wav: not an audio file"):
        load_audio(media_dir / "text.wav")


def test_non_finite_samples_are_refused(tmp_path):
    clip = speech_clip(2.0)
    clip[1000] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, clip, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(UnreadableMedia, match="nan.wav: audio holds NaN"):
        load_audio(path)


def test_speech_detection_leaves_the_process_thread_count_alone():
    pytest.importorskip("torch", reason="the reference is silero-vad's torch model (pip install 'fvmatch[train]')")
    import torch

    threads = torch.get_num_threads()
    vad.speech_only(speech_clip(1.0, seed=9))
    assert torch.get_num_threads() == threads


def test_speech_probabilities_are_silero_s_own_chunk_by_chunk():
    pytest.importorskip("torch", reason="the reference is silero-vad's torch model (pip install 'fvmatch[train]')")
    import torch
    from silero_vad import load_silero_vad

    pause = np.zeros(SAMPLE_RATE, np.float32)
    clip = np.concatenate([pause, speech_clip(2.0, seed=2), pause, speech_clip(1.5, seed=3)])[:70_001]
    model = load_silero_vad()  # silero's own JIT model, in torch
    padded = np.zeros(-(-len(clip) // vad.CHUNK) * vad.CHUNK, np.float32)
    padded[: len(clip)] = clip
    with torch.no_grad():  # silero's loop: the whole model once per chunk, its state carried from call to call
        expected = model.audio_forward(torch.from_numpy(padded)[None], SAMPLE_RATE)[0].numpy()
    found = vad.speech_probabilities(clip)
    assert found.shape == expected.shape == (137,)
    np.testing.assert_allclose(found, expected, atol=1e-5)
    assert found.max() > 0.9 and found[:20].max() < 0.3  # speech found, the leading second of silence not


def test_speech_found_is_what_silero_finds():
    pytest.importorskip("torch", reason="the reference is silero-vad's torch model (pip install 'fvmatch[train]')")
    import torch
    from silero_vad import get_speech_timestamps, load_silero_vad

    model = load_silero_vad()  # silero's own JIT model and loop, in torch
    pause = np.zeros(SAMPLE_RATE, np.float32)
    clips = [speech_clip(4.0, seed=1), np.concatenate([pause, speech_clip(2.0, seed=2), pause, speech_clip(1.5, seed=3)]),
             speech_clip(1.0, seed=4)[:800], np.zeros(SAMPLE_RATE * 2, np.float32), speech_clip(9.7, seed=5)[:155_555]]
    for number, clip in enumerate(clips):
        segments = (get_speech_timestamps(torch.from_numpy(clip), model, sampling_rate=SAMPLE_RATE,
                                          **vad.VAD_SETTINGS)
                    if len(clip) >= vad.MIN_SAMPLES else [])
        expected = np.concatenate([clip[s["start"] : s["end"]] for s in segments]) if segments else clip[:0]
        assert np.array_equal(vad.speech_only(clip), expected), number
    assert len(vad.speech_only(clips[0])) > 3 * SAMPLE_RATE and len(vad.speech_only(clips[4])) > 8 * SAMPLE_RATE
    assert len(vad.speech_only(clips[2])) == len(vad.speech_only(clips[3])) == 0  # none invented


def test_embedding_voices_together_gives_each_its_own_embedding_and_error(embedder, media_dir, tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    other = tmp_path / "other.flac"
    soundfile.write(other, speech_clip(3.0, seed=11, female=True), SAMPLE_RATE)
    paths = [media_dir / "speech.wav", media_dir / "silence.wav", media_dir / "text.wav", other]
    results = embedder.embed_voices(paths)
    assert isinstance(results[1], TooLittleSpeech) and "silence.wav: too little speech" in str(results[1])
    assert isinstance(results[2], UnreadableMedia) and "text.wav: not an audio file" in str(results[2])
    for index in (0, 3):
        alone = embedder.embed_voice(paths[index])
        np.testing.assert_allclose(results[index].vectors["joint"], alone.vectors["joint"], atol=1e-6)
        assert results[index].quality == alone.quality


def test_windows_carry_the_trimmed_speech_of_the_same_stretch(tmp_path, monkeypatch):
    # each window holds silero's speech and the same stretch trimmed Resemblyzer's way (the ge2e-voice space's
    # speech); long recordings are cut in both streams together, neither growing past a window and its tail
    monkeypatch.setattr(audio, "WINDOW_SECONDS", 3.0)
    monkeypatch.setattr(audio, "BLOCK_SECONDS", 5.0)
    path = tmp_path / "long.wav"
    recording = np.concatenate([speech_clip(4.0, seed=s) for s in range(4)])
    soundfile.write(path, recording, SAMPLE_RATE, subtype="FLOAT")
    windows = list(speech_windows(path, SpeechSummary()))
    limit = (3.0 + audio.MIN_TAIL_SECONDS) * SAMPLE_RATE
    assert len(windows) >= 4 and all(window.trimmed is not None for window in windows)
    assert all(len(window.trimmed) <= limit and len(window.samples) <= limit for window in windows)
    blocks = [recording[start : start + 5 * SAMPLE_RATE] for start in range(0, len(recording), 5 * SAMPLE_RATE)]
    trimmed = np.concatenate([vad.trimmed_speech(block) for block in blocks])
    assert np.array_equal(np.concatenate([window.trimmed for window in windows]), trimmed)


def test_windows_from_speech_alone_have_no_trimmed_part():
    # pieces of speech without their trimmed part (as a caller that has only silero's segments gives them)
    windows = list(audio._windows([np.ones(SAMPLE_RATE * 2, np.float32)], SpeechSummary()))
    assert len(windows) == 1 and windows[0].trimmed is None


def test_a_space_reads_its_own_speech_of_a_window():
    class Trimmed:
        front_end = "trimmed"

    speech, trimmed = np.ones(3 * SAMPLE_RATE, np.float32), np.full(2 * SAMPLE_RATE, 2.0, np.float32)
    window = audio.SpeechWindow(speech, trimmed)
    assert window.speech_for(Trimmed()) is trimmed and window.speech_for(object()) is speech
    # webrtcvad lost the speech (under a second of it, and less than silero found): silero's is used
    assert audio.SpeechWindow(speech, trimmed[: SAMPLE_RATE // 2]).speech_for(Trimmed()) is speech
    assert audio.SpeechWindow(speech[: SAMPLE_RATE // 4], trimmed[: SAMPLE_RATE // 2]).speech_for(Trimmed()).mean() == 2.0
    assert audio.SpeechWindow(speech, None).speech_for(Trimmed()) is speech


def test_a_quiet_call_s_speech_is_looked_for_again_louder_and_hiss_stays_refused(embedder, tmp_path):
    from fvmatch.media.degrade import telephone_band
    from mediagen import librispeech_clip

    samples, rate = librispeech_clip("1688-142285-0000")
    quiet = samples * np.float32(10 ** (-75 / 20) / np.sqrt(np.mean(samples ** 2)))  # -75 dBFS
    narrow, narrow_rate = telephone_band(quiet, rate)
    soundfile.write(tmp_path / "quiet-call.wav", narrow, narrow_rate, subtype="FLOAT")
    as_recorded = SpeechSummary()
    for _ in speech_windows(tmp_path / "quiet-call.wav", as_recorded):
        pass
    assert as_recorded.speech_seconds < 1.0 and as_recorded.level_dbfs < -75  # silero hears too little at this level
    louder = audio.louder_for_speech(as_recorded)
    assert louder == pytest.approx(audio.QUIET_DBFS - as_recorded.level_dbfs)
    embedding = embedder.embed_voice(tmp_path / "quiet-call.wav", spaces=["ge2e-voice"])
    assert embedding.quality["speech_found_louder_db"] == round(louder, 1)
    assert embedding.quality["speech_seconds"] > 8
    again = embedder.embed_voice(tmp_path / "quiet-call.wav", spaces=["ge2e-voice"])  # the same: deterministic
    assert again.vectors["ge2e-voice"] == pytest.approx(embedding.vectors["ge2e-voice"])
    hiss = np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE).astype(np.float32) * np.float32(1e-3)  # -60
    soundfile.write(tmp_path / "hiss.wav", hiss, SAMPLE_RATE, subtype="FLOAT")
    with pytest.raises(TooLittleSpeech, match="0.0 s detected in 5.0 s of audio, heard 30 dB louder"):
        embedder.embed_voice(tmp_path / "hiss.wav", spaces=["ge2e-voice"])
    assert audio.louder_for_speech(SpeechSummary(energy=1.0, samples=10)) is None  # at 0 dBFS: nothing to raise
    assert audio.louder_for_speech(SpeechSummary(energy=1e-9, samples=10)) is None  # -100 dBFS: silent, not quiet
