"""enroll / identify / verify / gallery as an analyst runs them: real processes, a real gallery on disk."""
from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from mediagen import run_cli

from fvmatch.synth import CorpusSpec, write_corpus


def gallery_state(directory) -> dict:
    """What a failed command must leave alone: the database rows (not WAL bookkeeping) and the index files."""
    import sqlite3

    connection = sqlite3.connect(directory / "gallery.db")
    rows = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("identities", "media")}
    # the audit head moves with every command that succeeds; the rest of meta must not
    rows["meta"] = connection.execute("SELECT * FROM meta WHERE key != 'audit_head' ORDER BY 1").fetchall()
    connection.close()
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.hnsw*"))}
    return {"rows": rows, "index_files": files}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, CorpusSpec(identities=4, seed=2, faces_per_identity=2, clips_per_identity=2, clip_seconds=3.0),
                 workers=1)
    return out


@pytest.fixture(scope="module")
def enrolled(corpus, tmp_path_factory):
    """A gallery with every corpus file, enrolled through the manifest."""
    directory = tmp_path_factory.mktemp("galleries") / "case"
    result = run_cli("enroll", "--manifest", corpus / "manifest.csv", "--gallery", directory, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["enrolled"] == 16 and report["failed"] == 0
    assert report["gallery_counts"] == {"identities": 4, "face": 8, "voice": 8}
    return directory


@pytest.fixture()
def gallery(enrolled, tmp_path):
    """A private copy of the enrolled gallery that a test may change."""
    copy = tmp_path / "case"
    shutil.copytree(enrolled, copy)
    return copy


def test_identify_returns_the_enrolled_identity_first_for_its_own_items(enrolled, corpus):
    for modality, path in (("face", corpus / "faces/id00001/v1/00001.jpg"),
                           ("voice", corpus / "voices/id00003/v0/00000.wav")):
        result = run_cli("identify", f"--{modality}", path, "--against", modality, "--gallery", enrolled, "--json")
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        top = answer["candidates"][0]
        # a face's identity is scored by the template of its faces (fvmatch.analysis.templates), that item the best
        best = top["references"][0]["score"] if modality == "face" else top["score"]
        assert top["identity"] == path.parts[-3] and best == pytest.approx(1.0, abs=1e-4)
        assert top["matched_modality"] == modality and top["source_path"] == str(path.resolve())
        assert [c["rank"] for c in answer["candidates"]] == [1, 2, 3, 4]


def test_identify_weighs_the_same_modality_then_the_other_by_sex_and_prints_a_table_each(enrolled, corpus):
    result = run_cli("identify", "--voice", corpus / "voices/id00002/v1/00001.wav", "--top", "3", "--gallery", enrolled)
    assert result.returncode in (0, 1), result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(lines) == 6 and all(" voice " in line for line in lines[:3]) and all(" face " in line for line in lines[3:])
    assert all(" male " in line or " female " in line for line in lines[3:])  # each face's sex reading
    text = " ".join(result.stdout.split())
    assert "voice-voice trials in the ge2e-voice@noisy space" in text  # this voice reads 14.6 dB: noisy
    assert "face-voice trials weighed by the sex and age read from each side" in text


def test_enrolling_the_same_file_again_is_a_no_op(gallery, corpus):
    before = gallery_state(gallery)
    result = run_cli("enroll", "--identity", "id00000", "--face", corpus / "faces/id00000/v0/00000.jpg",
                     "--gallery", gallery, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["skipped"] == 1
    assert gallery_state(gallery)["rows"] == before["rows"]


def test_the_same_file_under_another_identity_needs_force(gallery, corpus):
    face = corpus / "faces/id00000/v0/00000.jpg"
    before = gallery_state(gallery)
    refused = run_cli("enroll", "--identity", "someone else", "--face", face, "--gallery", gallery)
    assert refused.returncode == 2
    assert "already enrolled as 'id00000'; use --force" in refused.stderr
    assert gallery_state(gallery) == before
    forced = run_cli("enroll", "--identity", "someone else", "--face", face, "--gallery", gallery, "--force", "--json")
    assert forced.returncode == 0 and json.loads(forced.stdout)["gallery_counts"]["identities"] == 5


def test_remove_takes_an_identity_out_of_results(gallery, corpus):
    result = run_cli("gallery", "remove", "--identity", "id00001", "--gallery", gallery)
    assert result.returncode == 0 and "removed id00001: 2 faces, 2 voices" in result.stdout
    answer = json.loads(run_cli("identify", "--face", corpus / "faces/id00001/v1/00001.jpg", "--against", "all",
                                "--gallery", gallery, "--json").stdout)
    assert "id00001" not in [c["identity"] for c in answer["candidates"]]
    listed = json.loads(run_cli("gallery", "list", "--gallery", gallery, "--json").stdout)
    assert [row["identity"] for row in listed] == ["id00000", "id00002", "id00003"]
    unknown = run_cli("gallery", "remove", "--identity", "nobody", "--gallery", gallery)
    assert unknown.returncode == 2 and unknown.stderr.strip() == "fvmatch: error: nobody: no such identity in the gallery"


def test_a_deleted_index_is_rebuilt_and_info_reports_it(gallery):
    pytest.importorskip("torch",
                        reason="joint vectors and indexes exist only with the training extra (torch): fvmatch[train]")
    (gallery / "voice.hnsw").unlink()
    info = json.loads(run_cli("gallery", "info", "--gallery", gallery, "--json").stdout)
    assert info["counts"] == {"identities": 4, "face": 8, "voice": 8}
    assert info["indexes"]["joint voice"]["state"] == "rebuilt" and info["indexes"]["joint voice"]["live_items"] == 8
    assert (gallery / "voice.hnsw").exists()
    again = json.loads(run_cli("gallery", "info", "--gallery", gallery, "--json").stdout)
    assert again["indexes"]["joint voice"]["state"] == "ok"


def test_another_model_is_refused_and_changes_nothing(gallery, corpus, tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    import torch

    from fvmatch.models.checkpoint import save_checkpoint
    from fvmatch.models.config import get_config
    from fvmatch.models.joint import JointModel

    torch.manual_seed(123)
    other = tmp_path / "other.safetensors"
    card = save_checkpoint(JointModel(get_config("small")), other, training_data="test")
    before = gallery_state(gallery)
    for command in (["identify", "--voice", corpus / "voices/id00000/v0/00000.wav"],
                    ["enroll", "--identity", "x", "--voice", corpus / "voices/id00000/v0/00000.wav"]):
        result = run_cli(*command, "--gallery", gallery, "--model", other)
        assert result.returncode == 2
        assert f"but model {card['model_id'][:16]} was given" in result.stderr and "pinned to model" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert gallery_state(gallery) == before


def test_bad_items_are_listed_the_rest_enrolled_and_nothing_half_done(gallery, corpus, media_dir):
    before = json.loads(run_cli("gallery", "info", "--gallery", gallery, "--json").stdout)["counts"]
    manifest = gallery.parent / "batch.csv"
    manifest.write_text(
        "identity,modality,path\n"
        f"newcomer,voice,{corpus / 'voices/id00000/v1/00001.wav'}\n"  # good, but id00000's: new identity, same file
        f"newcomer,face,{media_dir / 'missing.jpg'}\n"
        f"newcomer,face,{media_dir / 'text.jpg'}\n"
        f"newcomer,face,{media_dir / 'noface.jpg'}\n"
        f"newcomer,voice,{media_dir / 'silence.wav'}\n"
        f"newcomer,fingerprint,{media_dir / 'noface.jpg'}\n"
        "only-two-columns,face\n"
        f",face,{media_dir / 'noface.jpg'}\n"
        f"ghost,voice,{media_dir / 'short.wav'}\n"
    )
    result = run_cli("enroll", "--manifest", manifest, "--gallery", gallery, "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert (report["enrolled"], report["failed"]) == (0, 9)
    errors = [line for line in result.stderr.splitlines() if line.startswith("fvmatch: failed: ")]
    assert len(errors) == 9
    for fragment in ("already enrolled as 'id00000'", "no such file", "not an image file", "no face found",
                     "too little speech", "unknown modality 'fingerprint'", "expected 3 columns", "empty identity label"):
        assert any(fragment in line for line in errors), fragment
    assert all("batch.csv:" in line for line in errors)
    after = json.loads(run_cli("gallery", "info", "--gallery", gallery, "--json").stdout)["counts"]
    assert after == before  # no identity row for 'newcomer' or 'ghost', whose every item failed


def test_verify_of_a_face_and_a_voice_weighs_sex_and_the_joint_space_only_named_and_labelled_uncalibrated(corpus):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    pair = ("--face", corpus / "faces/id00000/v0/00000.jpg", "--voice", corpus / "voices/id00000/v0/00000.wav")
    by_sex = run_cli("verify", *pair, "--json")
    assert by_sex.returncode == 0, by_sex.stderr
    answer = json.loads(by_sex.stdout)
    assert (answer["space"], answer["decision"]) == ("sex", None) and answer["log10_lr"] is not None
    assert set(answer["readings"]) == {"face", "voice", "population"}
    result = run_cli("verify", *pair, "--space", "joint", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["trial_type"] == "face-voice" and -1.0 <= answer["score"] <= 1.0
    assert answer["decision"] is None and answer["log10_lr"] is None and "uncalibrated" in answer["note"]
    assert answer["warning"].startswith("SYNTHETIC-TRAINED joint space")
    same = json.loads(run_cli("verify", "--voice", corpus / "voices/id00000/v0/00000.wav",
                              "--voice", corpus / "voices/id00000/v0/00000.wav", "--json").stdout)
    assert same["trial_type"] == "voice-voice" and same["score"] == pytest.approx(1.0, abs=1e-5)
    wrong = run_cli("verify", "--face", corpus / "faces/id00000/v0/00000.jpg")
    assert wrong.returncode == 2 and "give exactly two items" in wrong.stderr


def test_identify_without_a_gallery_is_a_clear_error(tmp_path, corpus):
    result = run_cli("identify", "--voice", corpus / "voices/id00000/v0/00000.wav", "--gallery", tmp_path / "none")
    assert result.returncode == 2
    assert result.stderr.strip() == f"fvmatch: error: {tmp_path / 'none'}: no gallery here (enroll something first, or check --gallery)"


def test_enroll_from_a_directory_takes_labels_from_folders_and_modality_from_file_types(corpus, tmp_path):
    source = tmp_path / "case-files"
    for label, face, voice in (("Ann Smith", "faces/id00000/v0/00000.jpg", "voices/id00000/v0/00000.wav"),
                               ("Bob Jones", "faces/id00001/v0/00000.jpg", "voices/id00001/v1/00001.wav")):
        (source / label / "photos").mkdir(parents=True)
        shutil.copy(corpus / face, source / label / "photos" / "portrait.jpg")
        shutil.copy(corpus / voice, source / label / "interview.wav")
    (source / "Bob Jones" / "notes.txt").write_text("not evidence")
    result = run_cli("enroll", "--from-dir", source, "--gallery", tmp_path / "g", "--json")
    assert result.returncode == 2  # the .txt file is reported, the rest enrolled
    report = json.loads(result.stdout)
    assert report["enrolled"] == 4 and report["failed"] == 1
    assert "notes.txt: not an image, audio or video file type (.txt)" in result.stderr
    listed = json.loads(run_cli("gallery", "list", "--gallery", tmp_path / "g", "--json").stdout)
    assert [(row["identity"], row["faces"], row["voices"]) for row in listed] == [("Ann Smith", 1, 1), ("Bob Jones", 1, 1)]


def test_reindex_rebuilds_both_indexes_with_every_item(gallery):
    pytest.importorskip("torch",
                        reason="joint vectors and indexes exist only with the training extra (torch): fvmatch[train]")
    result = run_cli("gallery", "reindex", "--gallery", gallery, "--json")
    assert result.returncode == 0
    assert json.loads(result.stdout) == {
        "reindexed": {"joint face": 8, "joint voice": 8, "dlib-face face": 8, "ge2e-voice voice": 8,
                      "ge2e-voice@telephone voice": 8, "ge2e-voice@noisy voice": 8, "ge2e-voice@telephone-noisy voice": 8,
                      "ge2e-voice@narrowband voice": 8},
        "replaced_spaces": {}, "filled": 0, "unavailable": 0, "unavailable_items": []}
    info = json.loads(run_cli("gallery", "info", "--gallery", gallery, "--json").stdout)
    assert all(index["state"] == "ok" and index["agrees_with_database"] for index in info["indexes"].values())


def test_verify_with_a_calibrated_model_reports_the_lr_and_decides(corpus, tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    import numpy as np

    from fvmatch.calibration.fitting import fit, write_calibrated_checkpoint
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card

    rng = np.random.default_rng(0)
    entry = fit(rng.normal(0.97, 0.01, 500), rng.normal(0.3, 0.2, 5000), identities=50)
    model_id = read_card(DEFAULT_CHECKPOINT)["model_id"]
    calibrated = tmp_path / "calibrated.safetensors"
    write_calibrated_checkpoint(DEFAULT_CHECKPOINT, calibrated, {"model_id": model_id, "voice-voice": entry})
    voice = corpus / "voices/id00000/v0/00000.wav"
    # (the calibration is the joint space's: --space joint scores the voices there)
    same = run_cli("verify", "--voice", voice, "--voice", voice, "--model", calibrated, "--space", "joint", "--json")
    assert same.returncode == 0, same.stderr
    answer = json.loads(same.stdout)
    assert answer["decision"] == "same person" and answer["log10_lr"] > 1 and "support" in answer["verbal"]
    other = run_cli("verify", "--voice", voice, "--voice", corpus / "voices/id00003/v1/00001.wav",
                    "--model", calibrated, "--space", "joint")
    assert other.returncode == 1
    assert "decision: different person" in other.stdout and "1.0% false-match-rate" in other.stdout
    unknown = run_cli("verify", "--voice", voice, "--voice", voice, "--model", calibrated, "--space", "joint",
                      "--fmr", "0.05")
    assert unknown.returncode == 2 and "1.0%" in unknown.stderr


def test_every_gallery_command_is_in_the_audit_trail_and_tampering_is_named(gallery, corpus):
    import sqlite3

    earlier = json.loads(run_cli("audit", "log", "--gallery", gallery, "--json").stdout)  # the fixture's enroll, ...
    # its one batch, recorded in the transaction that stored it, then the run's summary
    assert [row["command"] for row in earlier[:2]] == ["enroll batch", "enroll"]
    assert earlier[0]["result"]["stored"] == 16 and len(earlier[0]["result"]["media_ids"]) == 16
    assert earlier[0]["inputs"] == earlier[1]["inputs"] and len(earlier[1]["inputs"]) == 16
    assert earlier[1]["result"]["enrolled"] == 16
    face = corpus / "faces/id00002/v0/00000.jpg"
    assert run_cli("identify", "--face", face, "--gallery", gallery).returncode in (0, 1)
    assert run_cli("gallery", "remove", "--identity", "id00003", "--gallery", gallery).returncode == 0
    rows = json.loads(run_cli("audit", "log", "--gallery", gallery, "--json").stdout)[len(earlier):]
    assert [row["command"] for row in rows] == ["identify", "gallery remove"]
    assert rows[0]["inputs"] == [{"path": str(face.resolve()), "sha256": hashlib.sha256(face.read_bytes()).hexdigest()}]
    trial = rows[0]["result"]["trials"][0]  # a face against faces, in the face space
    assert (trial["space"], trial["candidates"][0]["identity"]) == ("dlib-face", "id00002")
    assert all(len(row["row_hash"]) == 64 for row in rows)
    removals = json.loads(run_cli("audit", "log", "--command", "gallery remove", "--gallery", gallery, "--json").stdout)
    assert [row["result"]["identity"] for row in removals] == ["id00003"]
    naming = json.loads(run_cli("audit", "log", "--identity", "id00003", "--gallery", gallery, "--json").stdout)
    commands = [row["command"] for row in naming]  # (identify's candidates may name it too)
    assert commands[:2] == ["enroll batch", "enroll"] and commands[-1] == "gallery remove"
    intact = run_cli("audit", "log", "--verify", "--gallery", gallery)
    assert intact.returncode == 0 and f"{len(earlier) + 2} rows, hash chain verified" in intact.stdout

    connection = sqlite3.connect(gallery / "gallery.db")
    connection.execute("UPDATE audit SET result = '{\"candidates\": []}' WHERE id = ?", [rows[0]["id"]])
    connection.commit()
    connection.close()
    broken = run_cli("audit", "log", "--verify", "--gallery", gallery)
    assert broken.returncode == 2
    assert f"row {rows[0]['id']} was altered" in broken.stderr


def test_a_new_gallery_with_a_bad_model_is_not_created(corpus, media_dir, tmp_path):
    result = run_cli("enroll", "--identity", "x", "--voice", corpus / "voices/id00000/v0/00000.wav",
                     "--gallery", tmp_path / "new", "--model", media_dir / "text.jpg")
    assert result.returncode == 2 and "not a safetensors checkpoint" in result.stderr
    assert not (tmp_path / "new").exists()
