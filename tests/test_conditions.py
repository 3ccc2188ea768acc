"""Comparing like with like: a narrowband or noisy questioned voice is searched against the references brought to its
condition, on real recordings, with the condition named in every result."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import soundfile

from fvmatch.media.degrade import add_noise, telephone_band
from fvmatch.spaces.conditions import (CHANNEL_CUT_BELOW_DB, NARROWBAND_BELOW_HZ, NOISY_BELOW_DB,
                                       TELEPHONE_NOISY_BELOW_DB, VOICE_CONDITIONS, bring_to_condition,
                                       reference_condition)
from mediagen import run_cli_here

REAL_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
needs_real_media = pytest.mark.skipif(not REAL_MEDIA.is_dir(), reason=f"{REAL_MEDIA} is absent: the real recordings "
                                      "of ../shared/realmedia are needed (CI always has them)")
SPEAKERS = ("1688", "2609", "3080", "533")


def clips_of(speaker: str) -> list[Path]:
    return sorted((REAL_MEDIA / "voices" / f"librispeech_{speaker}").glob("*.flac"))


def test_the_reference_condition_follows_the_measured_quality():
    call = {"bandwidth_hz": NARROWBAND_BELOW_HZ - 500, "low_band_db": CHANNEL_CUT_BELOW_DB - 10, "snr_db": 30.0}
    assert reference_condition({**call, "bandwidth_hz": 8000.0, "low_band_db": 8.0}) is None
    assert reference_condition(call) == "telephone"
    assert reference_condition({**call, "snr_db": TELEPHONE_NOISY_BELOW_DB + 1}) == "telephone"
    # a call is noisy up to a higher SNR than wideband speech: its noisy references also hold the band-only ones
    assert reference_condition({**call, "snr_db": TELEPHONE_NOISY_BELOW_DB - 1}) == "telephone-noisy"
    assert reference_condition({**call, "snr_db": 5.0}) == "telephone-noisy"
    assert reference_condition({"bandwidth_hz": 8000.0, "low_band_db": 8.0, "snr_db": NOISY_BELOW_DB - 5}) == "noisy"
    assert reference_condition({"bandwidth_hz": 8000.0, "low_band_db": 8.0, "snr_db": NOISY_BELOW_DB + 1}) is None
    # narrowband that kept its low end (no telephone channel's 300 Hz cut): references through 8 kHz sampling alone;
    # with noise as well, the noisy references (there are no narrowband-noisy ones)
    assert reference_condition({**call, "low_band_db": CHANNEL_CUT_BELOW_DB + 5}) == "narrowband"
    assert reference_condition({**call, "low_band_db": CHANNEL_CUT_BELOW_DB + 5, "snr_db": 5.0}) == "noisy"
    assert reference_condition({**call, "bandwidth_hz": 8000.0}) is None  # a bass-less wideband microphone
    assert reference_condition({}) is None  # not measured (an older gallery's item): nothing assumed


def test_speech_brought_to_a_condition_keeps_its_length_and_loses_what_the_condition_loses():
    rng = np.random.default_rng(3)
    speech = (0.1 * rng.standard_normal(32_000)).astype(np.float32)  # flat spectrum up to 8 kHz
    narrow = bring_to_condition(speech, "telephone")
    assert narrow.shape == speech.shape and narrow.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(narrow)) ** 2
    frequencies = np.fft.rfftfreq(len(narrow), 1 / 16000)
    assert spectrum[frequencies > 4200].sum() < 1e-3 * spectrum[(frequencies > 500) & (frequencies < 3000)].sum()
    plain = bring_to_condition(speech, "narrowband")  # 8 kHz sampling alone: the telephone's low cut is not made
    plain_spectrum = np.abs(np.fft.rfft(plain)) ** 2
    assert plain.shape == speech.shape and plain.dtype == np.float32
    assert plain_spectrum[frequencies > 4200].sum() < 1e-2 * plain_spectrum[(frequencies > 500) & (frequencies < 3000)].sum()

    def low_to_voice(power):
        return power[(frequencies > 100) & (frequencies < 250)].sum() / power[(frequencies > 300) & (frequencies < 450)].sum()

    assert 0.8 < low_to_voice(plain_spectrum) < 1.25 and low_to_voice(spectrum) < 0.1
    noisy = bring_to_condition(speech, "noisy")
    added = noisy - speech
    assert 10 * np.log10(np.mean(speech**2) / np.mean(added**2)) == pytest.approx(VOICE_CONDITIONS["noisy"][1],
                                                                                   abs=0.01)
    np.testing.assert_array_equal(bring_to_condition(speech, "noisy"), noisy)  # the same evidence, the same vector


@pytest.fixture(scope="module")
def questioned(tmp_path_factory):
    """Degraded copies of another recording of the second speaker: an 8 kHz telephone call, and one with noise."""
    if not REAL_MEDIA.is_dir():
        pytest.skip(f"{REAL_MEDIA} is absent: the real recordings of ../shared/realmedia are needed (CI always has them)")
    root = tmp_path_factory.mktemp("questioned")
    samples, rate = soundfile.read(clips_of(SPEAKERS[1])[5], dtype="float32")
    narrow, narrow_rate = telephone_band(samples, rate)
    soundfile.write(root / "call.wav", narrow, narrow_rate, subtype="PCM_16")
    soundfile.write(root / "noisy-call.wav", add_noise(narrow, 5.0, seed=1), narrow_rate, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def gallery(tmp_path_factory):
    """Clean references of four speakers, two recordings each, enrolled as analysts do."""
    if not REAL_MEDIA.is_dir():
        pytest.skip(f"{REAL_MEDIA} is absent: the real recordings of ../shared/realmedia are needed (CI always has them)")
    directory = tmp_path_factory.mktemp("conditions") / "gallery"
    for speaker in SPEAKERS:
        enrolled = run_cli_here("enroll", "--identity", speaker, "--voice", clips_of(speaker)[0], "--voice",
                                clips_of(speaker)[1], "--gallery", directory)
        assert enrolled.returncode == 0, enrolled.stderr
    return directory


@needs_real_media
def test_a_telephone_call_is_searched_against_references_brought_to_the_telephone_band(gallery, questioned):
    result = run_cli_here("identify", "--voice", questioned / "call.wav", "--against", "voice", "--gallery", gallery,
                          "--json")
    assert result.returncode in (0, 1), result.stderr  # 1: below the telephone map's 1% FMR threshold
    answer = json.loads(result.stdout)
    assert answer["query"]["quality"]["bandwidth_hz"] < NARROWBAND_BELOW_HZ
    (trials,) = answer["trials"]
    assert trials["space"] == "ge2e-voice@telephone"
    assert trials["condition"] == {"questioned": "telephone", "references": "telephone",
                                   "chosen_by": "measured quality"}
    assert trials["candidates"][0]["identity"] == SPEAKERS[1]
    # judged by the telephone condition's own reference map, never by the clean one
    assert trials["candidates"][0]["calibration"].startswith("reference: fvmatch reference voices 1 brought to the "
                                                            "telephone condition")
    text = run_cli_here("identify", "--voice", questioned / "call.wav", "--against", "voice", "--gallery", gallery)
    assert "references brought to the telephone condition" in text.stdout


@needs_real_media
def test_a_clean_question_and_a_named_space_use_the_references_as_enrolled(gallery):
    clean = clips_of(SPEAKERS[2])[4]
    answer = json.loads(run_cli_here("identify", "--voice", clean, "--against", "voice", "--gallery", gallery,
                                     "--json").stdout)
    assert answer["trials"][0]["space"] == "ge2e-voice" and answer["trials"][0]["condition"] is None
    assert answer["trials"][0]["candidates"][0]["identity"] == SPEAKERS[2]
    forced = json.loads(run_cli_here("identify", "--voice", clean, "--against", "voice", "--space",
                                     "ge2e-voice@noisy", "--gallery", gallery, "--json").stdout)
    assert forced["trials"][0]["space"] == "ge2e-voice@noisy"
    assert forced["trials"][0]["condition"]["chosen_by"] == "--space"


@needs_real_media
def test_a_noisy_call_is_compared_with_noisy_telephone_references_in_verify(questioned):
    reference = clips_of(SPEAKERS[1])[0]
    result = run_cli_here("verify", "--voice", questioned / "noisy-call.wav", "--voice", reference, "--json")
    assert result.returncode in (0, 1), result.stderr  # 1: "different person" at the condition map's threshold
    answer = json.loads(result.stdout)
    assert answer["space"] == "ge2e-voice@telephone-noisy" and "telephone-noisy condition" in answer["calibration"]
    assert answer["condition"]["references"] == "telephone-noisy"
    assert answer["items"][0]["quality"]["snr_db"] < NOISY_BELOW_DB


@needs_real_media
def test_a_gallery_without_condition_vectors_says_so_and_reindex_fills_them(gallery, questioned, tmp_path):
    import shutil

    old = tmp_path / "old"
    shutil.copytree(gallery, old)
    with sqlite3.connect(old / "gallery.db") as db:  # as enrolled before reference conditions existed
        db.execute("DELETE FROM vectors WHERE space = 'ge2e-voice@telephone'")
    answer = json.loads(run_cli_here("identify", "--voice", questioned / "call.wav", "--against", "voice",
                                     "--gallery", old, "--json").stdout)
    (trials,) = answer["trials"]
    assert trials["space"] == "ge2e-voice" and trials["condition"]["references"] is None
    assert "gallery reindex" in trials["condition"]["note"]
    filled = run_cli_here("gallery", "reindex", "--gallery", old, "--json")
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout)["filled"] == 2 * len(SPEAKERS)
    again = json.loads(run_cli_here("identify", "--voice", questioned / "call.wav", "--against", "voice",
                                    "--gallery", old, "--json").stdout)
    assert again["trials"][0]["space"] == "ge2e-voice@telephone"


def test_condition_vectors_of_an_older_model_are_not_searched_until_reindex_embeds_them_again(gallery, questioned,
                                                                                                tmp_path):
    # a gallery enrolled before the telephone references were held beside the enrolled ones: its vectors of that
    # space came from another model (256-D then), which a question read as this fvmatch reads it cannot meet
    import shutil

    old = tmp_path / "older"
    shutil.copytree(gallery, old)
    with sqlite3.connect(old / "gallery.db") as db:
        spaces = json.loads(db.execute("SELECT value FROM meta WHERE key = 'spaces'").fetchone()[0])
        spaces["ge2e-voice@telephone"]["model_id"] = "0" * 64
        db.execute("UPDATE meta SET value = ? WHERE key = 'spaces'", [json.dumps(spaces)])
    answer = json.loads(run_cli_here("identify", "--voice", questioned / "call.wav", "--against", "voice",
                                     "--gallery", old, "--json").stdout)
    (trials,) = answer["trials"]
    assert trials["space"] == "ge2e-voice" and trials["condition"]["references"] is None
    assert "older model (0000000000000000" in trials["condition"]["note"]
    refused = run_cli_here("enroll", "--identity", "late", "--voice", clips_of(SPEAKERS[0])[2], "--gallery", old)
    assert refused.returncode == 2 and "gallery reindex" in refused.stderr  # no vectors of two models in one space
    reindexed = run_cli_here("gallery", "reindex", "--gallery", old, "--json")
    assert reindexed.returncode == 0, reindexed.stderr
    replaced = json.loads(reindexed.stdout)["replaced_spaces"]
    assert list(replaced) == ["ge2e-voice@telephone"] and replaced["ge2e-voice@telephone"]["vectors_dropped"] == 8
    again = json.loads(run_cli_here("identify", "--voice", questioned / "call.wav", "--against", "voice",
                                    "--gallery", old, "--json").stdout)
    assert again["trials"][0]["space"] == "ge2e-voice@telephone" and again["trials"][0]["candidates"][0]["identity"] == SPEAKERS[1]


def calibration_of(space: str, data: str, shift: float) -> dict:
    """A calibration entry of `space` voice-voice as `fvmatch calibrate` writes it, fitted on drawn scores."""
    from fvmatch.calibration.fitting import FORMAT, fit

    rng = np.random.default_rng(7)
    entry = fit(rng.normal(0.8 - shift, 0.05, 300), rng.normal(0.4 - shift, 0.1, 3000), identities=12)
    return {"format": FORMAT, "data": data, "split": None, "created": "then", "spaces": {space: "id-" + space},
            f"{space} voice-voice": {**entry, "space": space, "space_model_id": "id-" + space, "data": data,
                                     "split": None, "created": "then"}}


def test_a_condition_s_calibration_sits_beside_the_clean_one_and_names_its_own_data():
    from fvmatch.calibration.fitting import added_to
    from fvmatch.calibration.scoring import judge

    clean = calibration_of("ge2e-voice", "clean-interviews", 0.0)
    both = added_to(clean, calibration_of("ge2e-voice@telephone", "intercepted-calls", 0.2))
    assert set(both["spaces"]) == {"ge2e-voice", "ge2e-voice@telephone"}
    on_call = judge(0.6, "voice-voice", both, 0.01, "ge2e-voice@telephone", "id-ge2e-voice@telephone")
    on_clean = judge(0.6, "voice-voice", both, 0.01, "ge2e-voice", "id-ge2e-voice")
    assert "ge2e-voice@telephone voice-voice map" in on_call.note and "intercepted-calls" in on_call.note
    assert "clean-interviews" in on_clean.note and "intercepted-calls" not in on_clean.note
    # one score, two conditions: on the telephone condition's map it is strong evidence, on the clean one weak
    assert on_call.log10_lr > on_clean.log10_lr
    assert on_call.decision == "same person" and on_clean.decision == "different person"
    assert added_to(None, clean) is clean


def test_a_small_face_is_judged_by_the_small_faces_map_where_there_is_one():
    from fvmatch.calibration.fitting import FORMAT, added_to, fit
    from fvmatch.quality.face import face_band
    from fvmatch.calibration.scoring import judge

    rng = np.random.default_rng(5)
    general = fit(rng.normal(0.8, 0.05, 300), rng.normal(0.3, 0.1, 3000), identities=12)
    small = fit(rng.normal(0.6, 0.08, 300), rng.normal(0.3, 0.1, 3000), identities=12)
    entry = {"space": "dlib-face", "space_model_id": "id", "split": None, "created": "then"}
    calibration = added_to({"format": FORMAT, "spaces": {"dlib-face": "id"}, "data": "custody photos",
                            "dlib-face face-face": {**general, **entry, "data": "custody photos"}},
                           {"format": FORMAT, "spaces": {"dlib-face": "id"}, "data": "cctv stills",
                            "dlib-face face-face @small": {**small, **entry, "data": "cctv stills"}})
    assert [face_band({"eye_distance_px": px}) for px in (8.0, 20.0, 38.4)] == ["small", "medium", "large"]
    on_small = judge(0.62, "face-face", calibration, 0.01, "dlib-face", "id", band="small")
    on_large = judge(0.62, "face-face", calibration, 0.01, "dlib-face", "id", band="large")
    assert "map for small faces" in on_small.note and "cctv stills" in on_small.note
    assert "faces of every size: none for large faces" in on_large.note and "custody photos" in on_large.note
    # the same score is stronger evidence between small faces, whose same-person scores run lower
    assert on_small.log10_lr > on_large.log10_lr


def test_calibrate_takes_a_face_band_for_face_face_trials_only(tmp_path):
    out = tmp_path / "calibrated.safetensors"
    unknown = run_cli_here("calibrate", tmp_path, "--out", out, "--space", "dlib-face", "--face-band", "tiny")
    assert unknown.returncode == 2 and "--face-band: 'tiny' is not one of small, medium, large" in unknown.stderr
    voices = run_cli_here("calibrate", tmp_path, "--out", out, "--space", "ge2e-voice", "--face-band", "small")
    assert voices.returncode == 2 and "give it with --space dlib-face" in voices.stderr
    assert not out.exists()


def test_the_conditioned_spaces_read_silero_speech_and_keep_their_model_ids():
    # ge2e-voice reads its speech trimmed (Resemblyzer's way); its reference conditions read silero-vad's speech, as
    # before, through an internal space on the same encoder, whose vector is a question's own in those conditions;
    # the fused conditions hold that vector beside the enrolled one, and a question is read both ways for them
    import hashlib

    from fvmatch.analysis.embedder import Embedder
    from fvmatch.analysis.matching import query_spaces
    from fvmatch.spaces import (COMPOSITE_SPACES, CONDITIONED_SPACES, FUSED_QUERY_SPACE, SPEECH_VOICE_SPACE,
                                SPACE_MODALITIES, query_space)
    from fvmatch.spaces.conditions import FUSED_CONDITIONS, TEMPLATE_CONDITIONS, conditioned, split

    embedder = Embedder.load()
    base, speech = embedder.space("ge2e-voice"), embedder.space(SPEECH_VOICE_SPACE)
    assert (base.front_end, speech.front_end) == ("trimmed", "speech") and speech.encoder is base.encoder
    assert speech.model_id == base.weights_sha256 != base.model_id and SPEECH_VOICE_SPACE not in SPACE_MODALITIES
    assert FUSED_QUERY_SPACE not in SPACE_MODALITIES and set(FUSED_CONDITIONS) == {"telephone", "narrowband"}
    for name in CONDITIONED_SPACES:
        condition = split(name)[1]
        parted = condition in FUSED_CONDITIONS or condition in TEMPLATE_CONDITIONS
        own = embedder.space(conditioned(SPEECH_VOICE_SPACE, condition) if parted else name)
        assert own.front_end == "speech"
        recipe = f"{base.weights_sha256} {condition} {VOICE_CONDITIONS[condition]} v1"
        assert own.model_id == hashlib.sha256(recipe.encode()).hexdigest()  # as before the trimmed front end
        space = embedder.space(name)
        assert space.name == name
        if condition in FUSED_CONDITIONS:
            assert COMPOSITE_SPACES[name] == (own.name, "ge2e-voice") and space.dim == 512
            assert query_space(name) == FUSED_QUERY_SPACE
            parts = f"side by side v1 {own.model_id} {base.model_id}"
            assert space.model_id == hashlib.sha256(parts.encode()).hexdigest()
        elif condition in TEMPLATE_CONDITIONS:  # the mean of its conditions' vectors, renormalised
            named = [conditioned(SPEECH_VOICE_SPACE, part) if part in FUSED_CONDITIONS or part == condition
                     else conditioned("ge2e-voice", part) for part in TEMPLATE_CONDITIONS[condition]]
            assert COMPOSITE_SPACES[name] == tuple(named) and own.name in named
            assert space.dim == 256 and query_space(name) == SPEECH_VOICE_SPACE
            parts = "template v1 " + " ".join(embedder.space(part).model_id for part in named)
            assert space.model_id == hashlib.sha256(parts.encode()).hexdigest()
        else:
            assert space.dim == 256 and query_space(name) == SPEECH_VOICE_SPACE
    # a question's quality picks its condition after it is embedded: it is embedded for every reading by default
    assert query_spaces("voice", ["voice"]) == ["ge2e-voice", FUSED_QUERY_SPACE, SPEECH_VOICE_SPACE]
    assert query_spaces("voice", ["voice"], "ge2e-voice") == ["ge2e-voice"]
    assert query_spaces("voice", ["voice"], "ge2e-voice@telephone") == [FUSED_QUERY_SPACE]
    assert query_spaces("voice", ["voice"], "ge2e-voice@noisy") == [SPEECH_VOICE_SPACE]
    assert SPEECH_VOICE_SPACE not in query_spaces("face", ["voice"])


@needs_real_media
def test_a_fused_condition_scores_the_mean_of_its_two_cosines(questioned):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.spaces import FUSED_QUERY_SPACE, SPEECH_VOICE_SPACE

    embedder = Embedder.load()
    call = embedder.embed_voice(questioned / "call.wav", spaces=[FUSED_QUERY_SPACE, SPEECH_VOICE_SPACE, "ge2e-voice"])
    reference = embedder.embed_voice(clips_of(SPEAKERS[1])[0],
                                     spaces=["ge2e-voice@telephone", "ge2e-voice/speech@telephone", "ge2e-voice"])
    fused = call.vectors[FUSED_QUERY_SPACE]
    assert fused.shape == (512,) and abs(float(np.linalg.norm(fused)) - 1) < 1e-5
    np.testing.assert_allclose(fused[:256] * np.sqrt(2), call.vectors[SPEECH_VOICE_SPACE], atol=1e-6)
    np.testing.assert_allclose(fused[256:] * np.sqrt(2), call.vectors["ge2e-voice"], atol=1e-6)
    brought, enrolled = (float(call.vectors[SPEECH_VOICE_SPACE] @ reference.vectors["ge2e-voice/speech@telephone"]),
                         float(call.vectors["ge2e-voice"] @ reference.vectors["ge2e-voice"]))
    assert float(fused @ reference.vectors["ge2e-voice@telephone"]) == pytest.approx((brought + enrolled) / 2, abs=1e-5)
    assert abs(brought - enrolled) > 0.01  # two different readings: the mean is not either one


@needs_real_media
def test_a_call_in_verify_is_read_as_the_telephone_references_are(questioned):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.analysis.matching import score_pair
    from fvmatch.spaces import FUSED_QUERY_SPACE

    embedder, reference = Embedder.load(), clips_of(SPEAKERS[1])[0]
    pair = score_pair(embedder, [("voice", questioned / "call.wav"), ("voice", reference)])
    assert pair.space == "ge2e-voice@telephone"
    call = embedder.embed_voice(questioned / "call.wav", spaces=[FUSED_QUERY_SPACE]).vectors[FUSED_QUERY_SPACE]
    brought = embedder.embed_voice(reference, spaces=["ge2e-voice@telephone"]).vectors["ge2e-voice@telephone"]
    assert pair.score == pytest.approx(float(call @ brought), abs=1e-6)


@needs_real_media
def test_a_question_is_embedded_only_in_the_space_its_quality_picks(gallery, questioned, monkeypatch):
    # clean: ge2e-voice (trimmed speech); a call: the space its telephone references are searched from (silero's
    # speech beside the trimmed); the encoder runs for those alone, unless the recording is too long to wait for its
    # quality
    from fvmatch.analysis import embedder as embedder_module
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.gallery import Gallery
    from fvmatch.analysis.matching import query_spaces, question_spaces
    from fvmatch.spaces import FUSED_QUERY_SPACE, SPEECH_VOICE_SPACE

    embedder, calls = Embedder.load(), []
    voice_spaces = {name: embedder.space(name) for name in (SPEECH_VOICE_SPACE, "ge2e-voice")}  # (the copy first)
    for name, space in voice_spaces.items():
        monkeypatch.setattr(space, "embed_speech",
                            lambda speech, inner=space.embed_speech, name=name: calls.append(name) or inner(speech))
    spaces = query_spaces("voice", ["voice"])
    with Gallery.open(gallery) as opened:
        pick = question_spaces(opened, "voice", ["voice"])
        clean = embedder.embed_voice(clips_of(SPEAKERS[2])[4], spaces=spaces, pick=pick)
        assert set(clean.vectors) == set(calls) == {"ge2e-voice"}
        calls.clear()
        call = embedder.embed_voice(questioned / "call.wav", spaces=spaces, pick=pick)
        # the telephone references sit beside the enrolled ones: the call is read both ways, one vector of the two
        assert set(call.vectors) == {FUSED_QUERY_SPACE} and set(calls) == {SPEECH_VOICE_SPACE, "ge2e-voice"}
    monkeypatch.setattr(embedder_module, "DEFERRED_WINDOWS", 0)
    calls.clear()
    long = embedder.embed_voice(questioned / "call.wav", spaces=spaces, pick=pick)
    assert set(long.vectors) == set(spaces) and set(calls) == {SPEECH_VOICE_SPACE, "ge2e-voice"}
    np.testing.assert_allclose(long.vectors[FUSED_QUERY_SPACE], call.vectors[FUSED_QUERY_SPACE], atol=1e-6)
    alone = embedder.embed_voice(clips_of(SPEAKERS[2])[4], spaces=["ge2e-voice"])
    np.testing.assert_allclose(clean.vectors["ge2e-voice"], alone.vectors["ge2e-voice"], atol=1e-6)


@needs_real_media
def test_vectors_of_an_older_voice_model_are_refused_until_reindex_embeds_them_again(gallery, tmp_path):
    import shutil

    from fvmatch.analysis.embedder import Embedder

    old = tmp_path / "old"
    shutil.copytree(gallery, old)
    stale = np.full(256, 1 / 16, np.float32).tobytes()
    with sqlite3.connect(old / "gallery.db") as db:  # as an fvmatch with another ge2e-voice front end wrote it
        spaces = json.loads(db.execute("SELECT value FROM meta WHERE key = 'spaces'").fetchone()[0])
        spaces["ge2e-voice"]["model_id"] = "0" * 64
        db.execute("UPDATE meta SET value = ? WHERE key = 'spaces'", [json.dumps(spaces)])
        db.execute("UPDATE vectors SET embedding = ?, model_id = ? WHERE space = 'ge2e-voice'", [stale, "0" * 64])
    clean = clips_of(SPEAKERS[2])[4]
    refused = run_cli_here("identify", "--voice", clean, "--against", "voice", "--gallery", old)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert "ge2e-voice vectors come from model 0000000000000000" in refused.stderr
    assert "fvmatch gallery reindex" in refused.stderr

    reindexed = run_cli_here("gallery", "reindex", "--gallery", old, "--json")
    assert reindexed.returncode == 0, reindexed.stderr
    report = json.loads(reindexed.stdout)
    installed = Embedder.load().space("ge2e-voice").model_id
    assert report["replaced_spaces"] == {"ge2e-voice": {"from": "0" * 64, "to": installed,
                                                        "vectors_dropped": 2 * len(SPEAKERS)}}
    assert report["filled"] == 2 * len(SPEAKERS) and report["unavailable"] == 0
    with sqlite3.connect(old / "gallery.db") as db:
        rows = db.execute("SELECT media.source_path, vectors.embedding, vectors.model_id FROM vectors JOIN media "
                          "ON media.id = vectors.media_id WHERE vectors.space = 'ge2e-voice'").fetchall()
        conditioned = db.execute("SELECT count(*) FROM vectors WHERE space = 'ge2e-voice@telephone'").fetchone()[0]
    assert len(rows) == 2 * len(SPEAKERS) and {row[2] for row in rows} == {installed}
    assert conditioned == 2 * len(SPEAKERS)  # the other spaces' vectors are kept as they are
    fresh = Embedder.load().embed_voice(rows[0][0], spaces=["ge2e-voice"]).vectors["ge2e-voice"]
    np.testing.assert_allclose(np.frombuffer(rows[0][1], np.float32), fresh, atol=1e-6)
    answer = json.loads(run_cli_here("identify", "--voice", clean, "--against", "voice", "--gallery", old,
                                     "--json").stdout)
    assert answer["trials"][0]["space"] == "ge2e-voice"
    assert answer["trials"][0]["candidates"][0]["identity"] == SPEAKERS[2]


def test_a_gallery_without_voices_takes_this_fvmatch_s_voice_model_as_it_is(tmp_path):
    # no ge2e-voice vector to compare: a changed model is recorded on the next write, not refused
    import matplotlib.cbook

    from fvmatch.analysis.embedder import Embedder

    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    gallery = tmp_path / "faces-only"
    assert run_cli_here("enroll", "--identity", "grace", "--face", photo, "--gallery", gallery).returncode == 0
    with sqlite3.connect(gallery / "gallery.db") as db:  # as an fvmatch with another ge2e-voice front end wrote it
        spaces = json.loads(db.execute("SELECT value FROM meta WHERE key = 'spaces'").fetchone()[0])
        spaces["ge2e-voice"]["model_id"] = "0" * 64
        db.execute("UPDATE meta SET value = ? WHERE key = 'spaces'", [json.dumps(spaces)])
    again = run_cli_here("enroll", "--identity", "hopper", "--face", photo, "--force", "--gallery", gallery)
    assert again.returncode == 0, again.stderr
    with sqlite3.connect(gallery / "gallery.db") as db:
        recorded = json.loads(db.execute("SELECT value FROM meta WHERE key = 'spaces'").fetchone()[0])
    assert recorded["ge2e-voice"]["model_id"] == Embedder.load().space("ge2e-voice").model_id
