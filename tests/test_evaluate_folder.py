"""evaluate and calibrate on a plain folder of labelled media (faces/<person>/<file>, voices/<person>/<file>, no
meta.csv), as an analyst runs them on casework: the synthetic corpus laid out so, and real photos and speech."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mediagen import run_cli_here

from fvmatch.corpus import corpus_layout, person_files, plain_identities
from fvmatch.errors import BadArgument
from fvmatch.media.image import IMAGE_SUFFIXES
from fvmatch.synth import CorpusSpec, write_corpus

REALMEDIA = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
PEOPLE = 6


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """The synthetic corpus as a plain folder: each person's files linked into faces/<person>/ and voices/<person>/
    (one person's faces a folder deeper), with a macOS companion file that is not a photo."""
    corpus = tmp_path_factory.mktemp("synthetic")
    write_corpus(corpus, CorpusSpec(identities=PEOPLE, seed=3, faces_per_identity=2, clips_per_identity=2,
                                    clip_seconds=2.0), workers=1)
    plain = tmp_path_factory.mktemp("casework")
    for path in sorted(corpus.glob("*/*/*/*")):
        modality, person, video = path.parts[-4:-1]
        nested = modality == "faces" and person == "id00000"
        link = plain / modality / person / (f"{video}/{path.name}" if nested else f"{video}-{path.name}")
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(path)
    (plain / "faces" / "id00001" / "._v0-00000.jpg").write_bytes(b"\x00\x05\x16\x07")
    return plain


@pytest.fixture(scope="module")
def cache(tmp_path_factory, folder, embedder) -> Path:
    """An embedding cache holding the folder in the joint and the voice space (each file decoded once for both),
    so that the commands below read their vectors from it."""
    pytest.importorskip("torch", reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    from fvmatch.evaluation import embed_spaces

    directory = tmp_path_factory.mktemp("embedding-cache")
    corpora = embed_spaces(folder, embedder, ["joint", "ge2e-voice"], cache_dir=directory)
    assert corpora["ge2e-voice"].embedded == 2 * PEOPLE and corpora["joint"].embedded == 4 * PEOPLE
    return directory


def test_a_plain_folder_lists_every_person_with_their_files_at_any_depth(folder):
    assert corpus_layout(folder) == "plain"
    people = plain_identities(folder)
    assert [person["identity"] for person in people] == [f"id{k:05d}" for k in range(PEOPLE)]
    assert people[0] == {"identity": "id00000", "name": "id00000", "gender": None, "nationality": None, "age": None,
                         "split": None}
    nested = person_files(folder / "faces" / "id00000", IMAGE_SUFFIXES)
    assert [path.relative_to(folder).as_posix() for path in nested] == ["faces/id00000/v0/00000.jpg",
                                                                        "faces/id00000/v1/00001.jpg"]
    assert [path.name for path in person_files(folder / "faces" / "id00001", IMAGE_SUFFIXES)] == [
        "v0-00000.jpg", "v1-00001.jpg"]  # the hidden companion file is not a photo


def test_evaluate_reads_a_plain_folder_with_the_unconstrained_protocols_only(folder, cache):
    outcome = run_cli_here("evaluate", folder, "--space", "joint", "--cache", cache, "--json")
    assert outcome.returncode == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert report["layout"] == "plain" and report["split"] is None and report["identities"] == PEOPLE
    assert report["items"] == {"faces": 2 * PEOPLE, "voices": 2 * PEOPLE} and report["failures"] == []
    assert "stratified ones (G, N, A, GNA; 1:2 G, N, GN) need meta.csv" in report["note"]
    blocks = report["trials"]["counts"]
    assert {name.split()[2] for name in blocks} == {"U"}
    assert {"verification F-V U", "verification F-F U", "verification V-V U", "1:2 F-V U", "retrieval V-F U"} <= set(blocks)
    # what is short is only what six people cannot give: 1:N with more than six candidates
    assert sorted(report["trials"]["shortfalls"]) == sorted(
        f"1:N {direction} U N={size}: no person has {size - 1} others who fit the stratum"
        for direction in ("F-V", "V-F") for size in range(PEOPLE + 1, 11))
    assert set(report["verification"]["face-voice"]) == {"space", "model_id", "U"}
    model_id = report["spaces"]["joint"]["model_id"]
    assert report["model_id"] == model_id and len(model_id) == 64
    for found in (report["verification"]["face-voice"], report["verification"]["voice-voice"],
                  report["matching_1to2"]["V-F"], report["matching_1toN"]["F-V"], report["retrieval"]["F-V"]):
        assert (found["space"], found["model_id"]) == ("joint", model_id)
    assert 0.5 < report["verification"]["face-voice"]["U"]["auc"]["value"] <= 1.0  # the synthetic association is learnt
    assert report["not_evaluated"] == []


def test_a_one_modality_space_skips_the_protocols_that_need_the_other(folder, cache):
    outcome = run_cli_here("evaluate", folder, "--space", "ge2e-voice", "--cache", cache, "--json")
    assert outcome.returncode == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    assert set(report["verification"]) == {"voice-voice"} and report["verification"]["voice-voice"]["space"] == "ge2e-voice"
    assert report["items"] == {"faces": 0, "voices": 2 * PEOPLE}  # faces are not even read
    assert [(entry["trial_type"], entry["reason"]) for entry in report["not_evaluated"]] == [
        ("face-voice", "no space given scores face-voice trials (ge2e-voice embeds voices only)"),
        ("face-face", "no space given scores face-face trials (ge2e-voice embeds voices only)")]
    assert report["spaces"]["ge2e-voice"]["dim"] == 256 and report["model_id"] is None
    assert list(report["trials"]["counts"]) == ["verification V-V U"]

    table = run_cli_here("evaluate", folder, "--space", "ge2e-voice", "--cache", cache)
    assert table.returncode == 0, table.stderr
    model_id = report["spaces"]["ge2e-voice"]["model_id"]
    assert f"space ge2e-voice: model {model_id[:16]}, 256-D; scored voice-voice; 0 faces, 12 voices" in table.stdout
    assert "not evaluated: verification F-V, 1:2, 1:N and retrieval (no space given scores face-voice" in table.stdout
    assert "(plain folder, every person)" in table.stdout and "need meta.csv" in table.stdout
    rows = [line.split() for line in table.stdout.splitlines() if line.startswith(("V-V", "F-V", "V-F", "F-F"))]
    assert [row[:5] for row in rows] == [["V-V", "verification", "AUC", "U", "ge2e-voice"],
                                         ["V-V", "verification", "EER", "U", "ge2e-voice"]]


@pytest.mark.parametrize("arguments, message", [
    (["--split", "test"], "has no meta.csv, so no split 'test': a plain folder of labelled media is used whole"),
    (["--space", "voices"], "'voices' is not a space; one of joint, dlib-face, ge2e-voice")])
def test_evaluate_refuses_a_split_of_a_plain_folder_and_an_unknown_space(folder, arguments, message):
    outcome = run_cli_here("evaluate", folder, *arguments)
    assert outcome.returncode == 2 and error_lines(outcome) == [error_lines(outcome)[0]]
    assert message in error_lines(outcome)[0]


def test_a_folder_with_neither_layout_is_refused_in_one_line(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "a.jpg").write_bytes(b"")
    for command in (["evaluate", tmp_path], ["calibrate", tmp_path, "--out", tmp_path / "out.safetensors"]):
        outcome = run_cli_here(*command)
        assert outcome.returncode == 2 and outcome.stderr.count("\n") == 1  # refused before anything loads
        assert ("neither a corpus with meta.csv nor a plain folder of labelled media "
                "(faces/<person>/<file>, voices/<person>/<file>)") in outcome.stderr
    with pytest.raises(BadArgument, match="no such folder"):
        corpus_layout(tmp_path / "absent")


def test_calibrate_on_a_plain_folder_names_each_space_and_trial_type_short_of_trials(folder, cache, tmp_path):
    outcome = run_cli_here("calibrate", folder, "--space", "joint", "--cache", cache, "--out", tmp_path / "out.safetensors")
    assert outcome.returncode == 2 and len(error_lines(outcome)) == 1
    assert "too few trials in the folder to calibrate: joint face-voice: 24 same-person trials (at least 100 needed)" \
        in outcome.stderr
    assert "joint face-face: 6 same-person trials (at least 100 needed)" in outcome.stderr
    assert not (tmp_path / "out.safetensors").exists()


def error_lines(outcome) -> list[str]:
    return [line for line in outcome.stderr.splitlines() if line.startswith("fvmatch: error:")]


def realmedia_subset(root: Path, people: int, photos: int, speakers: int, clips: int) -> Path:
    """A plain folder linking the first photos of the first VoxCeleb1 people and the shortest clips (2-4 s) of the
    first LibriSpeech speakers of the shared real media."""
    import soundfile

    if not REALMEDIA.is_dir():
        pytest.skip(f"no real media at {REALMEDIA} (a development copy, never shipped)")
    for person in sorted(REALMEDIA.glob("faces/vox1_*"))[:people]:
        (root / "faces" / person.name).mkdir(parents=True)
        for path in sorted(person.iterdir())[:photos]:
            (root / "faces" / person.name / path.name).symlink_to(path)
    for person in sorted(REALMEDIA.glob("voices/librispeech_*"))[:speakers]:
        (root / "voices" / person.name).mkdir(parents=True)
        for path in sorted(person.iterdir(), key=lambda clip: (soundfile.info(clip).duration, clip.name))[:clips]:
            (root / "voices" / person.name / path.name).symlink_to(path)
    return root


@pytest.mark.slow
def test_real_photos_and_speech_are_verified_in_the_pretrained_spaces(tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    folder = realmedia_subset(tmp_path / "real", people=4, photos=4, speakers=4, clips=3)
    outcome = run_cli_here("evaluate", folder, "--json")
    assert outcome.returncode == 0, outcome.stderr
    report = json.loads(outcome.stdout)
    faces, voices = report["verification"]["face-face"], report["verification"]["voice-voice"]
    assert faces["space"] == "dlib-face" and faces["model_id"] == report["spaces"]["dlib-face"]["model_id"]
    assert voices["space"] == "ge2e-voice" and voices["model_id"] == report["spaces"]["ge2e-voice"]["model_id"]
    assert report["spaces"]["dlib-face"]["dim"] == 128 and report["spaces"]["ge2e-voice"]["dim"] == 256
    assert faces["U"]["auc"]["value"] > 0.9 and voices["U"]["auc"]["value"] > 0.9
    # the photographed people are not the recorded speakers: no face-voice pair is of one person
    assert "verification F-V U: no person has both items and another person who fits the stratum" in \
        report["trials"]["shortfalls"]
    assert report["spaces"]["joint"]["trial_types"] == ["face-voice"] and report["identities"] == 8


@pytest.mark.slow
def test_calibrate_fits_a_voice_only_folder_in_the_voice_space_and_writes_it_under_its_key(tmp_path, embedder):
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card
    from fvmatch.calibration.scoring import judge

    corpus, folder = tmp_path / "synthetic", tmp_path / "recordings"
    # ten speakers with five clips each: 100 same-speaker and 1,125 different-speaker pairs, the least calibrate takes
    write_corpus(corpus, CorpusSpec(identities=10, seed=5, faces_per_identity=1, clips_per_identity=5,
                                    clip_seconds=1.5), workers=1)
    for path in sorted(corpus.glob("voices/*/*/*")):
        (folder / "voices" / path.parts[-3]).mkdir(parents=True, exist_ok=True)
        (folder / "voices" / path.parts[-3] / f"{path.parent.name}-{path.name}").symlink_to(path)
    out = tmp_path / "calibrated.safetensors"
    outcome = run_cli_here("calibrate", folder, "--space", "ge2e-voice", "--out", out)
    assert outcome.returncode == 0, outcome.stderr
    voice_model = embedder.space("ge2e-voice").model_id
    assert f"ge2e-voice voice-voice (model {voice_model[:16]}): 100 same / 1,125 different trials" in outcome.stdout
    assert "every person of the folder" in outcome.stdout
    card = read_card(out)
    assert card["model_id"] == read_card(DEFAULT_CHECKPOINT)["model_id"]
    calibration = card["calibration"]
    assert calibration["split"] is None and calibration["spaces"] == {"ge2e-voice": voice_model}
    entry = calibration["ge2e-voice voice-voice"]
    assert entry["space_model_id"] == voice_model and entry["trials"]["identities"] == 10
    assert "voice-voice" not in calibration and "model_id" not in calibration  # nothing in the joint space
    high = judge(0.99, "voice-voice", calibration, space="ge2e-voice", model_id=voice_model)
    assert high.decision == "same person" and high.log10_lr > 0 and "ge2e-voice voice-voice map" in high.note
