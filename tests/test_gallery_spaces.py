"""Galleries hold one vector per embedding space: same-modality trials in the pretrained spaces, face-voice in the
joint space; older galleries upgrade and get the new spaces' vectors from their evidence files."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mediagen import run_cli_here

REAL_MEDIA = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
needs_real_media = pytest.mark.skipif(not REAL_MEDIA.is_dir(), reason=f"{REAL_MEDIA} is absent: the real photos and "
                                      "recordings of ../shared/realmedia are needed (CI always has them)")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from fvmatch.synth import CorpusSpec, write_corpus

    root = tmp_path_factory.mktemp("spaces-corpus")
    write_corpus(root, CorpusSpec(identities=4, seed=5, faces_per_identity=2, clips_per_identity=2, clip_seconds=2.0),
                 workers=1)
    return root


def files_of(corpus: Path, folder: str, identity: str) -> list[Path]:
    return sorted((corpus / folder / identity).rglob("*.*"))


def version_1_gallery(directory: Path, corpus: Path, embedder) -> None:
    """A gallery as fvmatch wrote it before spaces (format 1: one joint vector in each media row)."""
    import sqlite_utils

    from fvmatch.gallery.schema import MIGRATIONS
    from fvmatch.enrollment.enroll import file_digest

    directory.mkdir()
    db = sqlite_utils.Database(directory / "gallery.db")
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied TEXT NOT NULL)")
    for migration in MIGRATIONS[:2]:
        migration(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", [migration.__name__])
    meta = {"format_version": 1, "model_id": embedder.model_id, "embedding_dim": 256, "model_path": "", "space": "joint",
            "created": "then"}
    db.conn.executemany("INSERT INTO meta VALUES (?, ?)", [(k, str(v)) for k, v in meta.items()])
    for number, identity in enumerate(["id00000", "id00001", "id00002"], start=1):
        db.execute("INSERT INTO identities (id, label, created) VALUES (?, ?, 'then')", [number, identity])
        for modality, folder in (("face", "faces"), ("voice", "voices")):
            path = files_of(corpus, folder, identity)[0]
            embedding = (embedder.embed_face(path, spaces=["joint"])[0] if modality == "face"
                         else embedder.embed_voice(path, spaces=["joint"]))
            sha256, size = file_digest(path)
            db.execute("INSERT INTO media (identity_id, modality, space, source_path, sha256, size, quality, embedding,"
                       " model_id, added) VALUES (?, ?, 'joint', ?, ?, ?, 1.0, ?, ?, 'then')",
                       [number, modality, str(path), sha256, size, embedding.vectors["joint"].tobytes(), embedder.model_id])
    db.conn.commit()
    db.conn.close()


def test_an_old_gallery_upgrades_and_reindex_fills_the_new_spaces_from_intact_evidence(corpus, embedder, tmp_path):
    pytest.importorskip("torch",
                        reason="joint vectors and indexes exist only with the training extra (torch): fvmatch[train]")
    evidence = tmp_path / "evidence"
    shutil.copytree(corpus, evidence)
    gallery = tmp_path / "old-gallery"
    version_1_gallery(gallery, evidence, embedder)
    query = files_of(evidence, "faces", "id00001")[1]

    # opening migrates: the joint vectors are kept, face-voice search (asked for by name) works as before
    cross = run_cli_here("identify", "--face", query, "--against", "voice", "--space", "joint", "--gallery", gallery,
                         "--json")
    assert cross.returncode == 0, cross.stderr
    assert json.loads(cross.stdout)["trials"][0]["space"] == "joint"
    info = json.loads(run_cli_here("gallery", "info", "--gallery", gallery, "--json").stdout)
    assert info["format_version"] == 2 and list(info["spaces"]) == ["joint"]

    # a face-face query (the default) needs the face space's vectors: refused, naming the items and how to fill them
    refused = run_cli_here("identify", "--face", query, "--gallery", gallery)
    assert refused.returncode == 2
    assert "3 face item(s) have no dlib-face vectors: id00000" in refused.stderr
    assert "fvmatch gallery reindex" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1

    # one evidence file gone, one changed: listed by name, kept as they are; the others filled
    files_of(evidence, "faces", "id00000")[0].unlink()
    changed = files_of(evidence, "voices", "id00002")[0]
    changed.write_bytes(changed.read_bytes()[:-100])
    filled = run_cli_here("gallery", "reindex", "--gallery", gallery, "--json")
    assert filled.returncode == 2
    report = json.loads(filled.stdout)
    assert report["filled"] == 4 and report["unavailable"] == 2
    problems = {(item["identity"], item["modality"]): item["problem"] for item in report["unavailable_items"]}
    assert problems == {("id00000", "face"): "the evidence file is gone",
                        ("id00002", "voice"): "the evidence file has changed since it was enrolled (sha256 differs)"}
    assert "not filled: id00000 face" in filled.stderr
    connection = sqlite3.connect(gallery / "gallery.db")
    counts = dict(connection.execute("SELECT space, count(*) FROM vectors GROUP BY space").fetchall())
    assert counts == {"joint": 6, "dlib-face": 2, "ge2e-voice": 2, "ge2e-voice@telephone": 2, "ge2e-voice@noisy": 2,
                      "ge2e-voice@telephone-noisy": 2, "ge2e-voice@narrowband": 2}  # and the reference conditions

    # the filled vectors are the ones enrolling the file gives today
    enrolled_face = files_of(evidence, "faces", "id00001")[0]
    stored = connection.execute(
        "SELECT vectors.embedding FROM vectors JOIN media ON media.id = vectors.media_id "
        "WHERE vectors.space = 'dlib-face' AND media.source_path = ?", [str(enrolled_face)]).fetchone()
    connection.close()
    fresh = embedder.embed_face(enrolled_face, spaces=["dlib-face"])[0].vectors["dlib-face"]
    np.testing.assert_allclose(np.frombuffer(stored[0], np.float32), fresh, atol=1e-6)


@pytest.fixture(scope="module")
def real_gallery(tmp_path_factory):
    """Four real people with one photo each and four real speakers with one recording each."""
    root = tmp_path_factory.mktemp("real-gallery")
    people = ["fr_barack_obama", "fr_joe_biden", "vox1_Freida_Pinto", "vox1_Gaspard_Ulliel"]
    speakers = ["librispeech_1688", "librispeech_2033", "librispeech_3005", "librispeech_533"]
    rows = [f"{p},face,{sorted((REAL_MEDIA / 'faces' / p).iterdir())[0]}" for p in people]
    rows += [f"{s},voice,{sorted((REAL_MEDIA / 'voices' / s).iterdir())[0]}" for s in speakers]
    manifest = root / "manifest.csv"
    manifest.write_text("identity,modality,path\n" + "\n".join(rows) + "\n")
    result = run_cli_here("enroll", "--manifest", manifest, "--gallery", root / "gallery", "--json")
    assert result.returncode == 0, result.stderr
    return root / "gallery", people, speakers


@needs_real_media
@pytest.mark.parametrize("modality, folder, space", [("face", "faces", "dlib-face"), ("voice", "voices", "ge2e-voice")])
def test_another_item_of_a_real_person_ranks_them_first_in_the_space_of_its_modality(real_gallery, modality, folder,
                                                                                       space):
    gallery, people, speakers = real_gallery
    for person in people if modality == "face" else speakers:
        query = sorted((REAL_MEDIA / folder / person).iterdir())[1]  # not the enrolled one
        result = run_cli_here("identify", f"--{modality}", query, "--against", modality, "--gallery", gallery, "--json")
        assert result.returncode == 0, result.stderr
        document = json.loads(result.stdout)
        trial = document["trials"][0]
        assert (trial["trial_type"], trial["space"], len(trial["model_id"])) == (f"{modality}-{modality}", space, 64)
        assert document["candidates"][0]["identity"] == person


@needs_real_media
@pytest.mark.parametrize("modality, folder", [("face", "faces"), ("voice", "voices")])
def test_identify_without_options_answers_the_same_modality_then_the_other_by_sex_never_by_the_joint_space(
        real_gallery, modality, folder):
    gallery, people, speakers = real_gallery
    person = (people if modality == "face" else speakers)[1]  # a man: Joe Biden, LibriSpeech speaker 2033
    query = sorted((REAL_MEDIA / folder / person).iterdir())[1]
    result = run_cli_here("identify", f"--{modality}", query, "--gallery", gallery, "--json")
    assert result.returncode in (0, 1), result.stderr  # 1: no candidate reached the decision threshold
    document = json.loads(result.stdout)
    assert [(t["trial_type"], t["space"]) for t in document["trials"]] == [
        (f"{modality}-{modality}", "dlib-face" if modality == "face" else "ge2e-voice"), ("face-voice", "sex")]
    assert document["candidates"][0]["identity"] == person and document["left_out"] == []
    by_sex = document["trials"][1]["candidates"]
    other = "voice" if modality == "face" else "face"
    # the query reads male: the items read male first, those read female after with evidence against (LibriSpeech
    # speaker 1688, a man, reads female: sex evidence is only as good as its readings); within one sex the age bands
    # move an item's LR by at most the age part's bounds, never across the sexes
    assert {c["readings"][modality]["sex"] for c in by_sex} == {"male"}
    read = [c["readings"][other]["sex"] for c in by_sex]
    assert read == sorted(read, key=lambda sex: sex != "male") and "female" in read
    male_lr = [c["log10_lr"] for c in by_sex if c["readings"][other]["sex"] == "male"]
    female_lr = [c["log10_lr"] for c in by_sex if c["readings"][other]["sex"] == "female"]
    assert min(male_lr) > max(female_lr) and max(female_lr) < 0
    assert all(c["readings"][side]["age"]["band"] for c in by_sex for side in ("face", "voice"))
    assert len({c["log10_lr"] for c in by_sex if c["readings"][other]["sex"] == "male"}) > 1  # the bands tell apart
    assert all(c["decision"] is None for c in by_sex)
    text = run_cli_here("identify", f"--{modality}", query, "--gallery", gallery)
    assert "trials in the joint space" not in " ".join(text.stdout.split())
    assert "weighed by the sex and age read from each side" in " ".join(text.stdout.split())


@needs_real_media
def test_a_face_against_voices_is_weighed_by_sex_and_by_the_joint_space_only_when_asked_for_then_labelled(
        real_gallery):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    gallery, people, speakers = real_gallery
    query = sorted((REAL_MEDIA / "faces" / people[2]).iterdir())[1]  # Freida Pinto
    weighed = run_cli_here("identify", "--face", query, "--against", "voice", "--gallery", gallery, "--json")
    assert weighed.returncode == 0, weighed.stderr
    (trial,) = json.loads(weighed.stdout)["trials"]
    assert (trial["trial_type"], trial["space"]) == ("face-voice", "sex")
    top = trial["candidates"][0]  # a voice read female first (533; or 1688, a man whose voice reads female)
    assert top["readings"]["voice"]["sex"] == "female" and top["log10_lr"] > 0
    asked = run_cli_here("identify", "--face", query, "--against", "voice", "--space", "joint", "--gallery", gallery,
                         "--json")
    assert asked.returncode == 0, asked.stderr
    (trial,) = json.loads(asked.stdout)["trials"]
    assert (trial["trial_type"], trial["space"]) == ("face-voice", "joint")
    assert trial["warning"].startswith("SYNTHETIC-TRAINED joint space")
    text = run_cli_here("identify", "--face", query, "--against", "voice", "--space", "joint", "--gallery", gallery)
    assert "WARNING: SYNTHETIC-TRAINED joint space: these scores carry no weight on real people" in text.stdout
    voice = sorted((REAL_MEDIA / "voices" / "librispeech_1998").iterdir())[0]  # a woman
    verify = run_cli_here("verify", "--face", query, "--voice", voice, "--json")
    assert verify.returncode == 0, verify.stderr
    answer = json.loads(verify.stdout)
    assert (answer["space"], answer["decision"], answer["readings"]["face"]["sex"], answer["readings"]["voice"]["sex"]) \
        == ("sex", None, "female", "female")
    assert 0 < answer["log10_lr"] < 0.5  # one sex: weak evidence, never a decision


@needs_real_media
def test_against_all_lists_each_trial_type_with_evidence_apart(real_gallery):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    gallery, people, _ = real_gallery
    query = sorted((REAL_MEDIA / "faces" / people[0]).iterdir())[1]
    result = run_cli_here("identify", "--face", query, "--against", "all", "--gallery", gallery, "--json")
    assert result.returncode in (0, 1), result.stderr
    document = json.loads(result.stdout)
    assert [(t["trial_type"], t["space"]) for t in document["trials"]] == [("face-face", "dlib-face"),
                                                                           ("face-voice", "sex")]
    joint = json.loads(run_cli_here("identify", "--face", query, "--against", "all", "--space", "joint", "--gallery",
                                    gallery, "--json").stdout)
    assert [(t["trial_type"], t["space"]) for t in joint["trials"]] == [("face-face", "joint"), ("face-voice", "joint")]


@needs_real_media
def test_verify_scores_two_faces_in_the_face_space_and_space_overrides(real_gallery):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    _, people, _ = real_gallery
    first, second = sorted((REAL_MEDIA / "faces" / people[1]).iterdir())[:2]
    same = json.loads(run_cli_here("verify", "--face", first, "--face", second, "--json").stdout)
    assert same["space"] == "dlib-face" and same["trial_type"] == "face-face"
    joint = json.loads(run_cli_here("verify", "--face", first, "--face", second, "--space", "joint", "--json").stdout)
    assert joint["space"] == "joint" and joint["score"] != same["score"]
    refused = run_cli_here("verify", "--face", first, "--voice", second, "--space", "dlib-face")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("fvmatch: error: --space: the dlib-face space embeds face only: it cannot score "
                                      "face-voice trials")


def test_a_gallery_refuses_another_model_of_a_space_naming_both(tmp_path):
    from fvmatch.errors import ModelMismatch
    from fvmatch.gallery import Gallery

    from fvmatch.gallery import NewItem

    with Gallery.open(tmp_path / "g", create=True, model_id="joint-a", embedding_dim=4) as gallery, gallery.writer():
        gallery.add_spaces({"dlib-face": {"model_id": "face-model-a", "dim": 128}})
        # no vector of the space yet: nothing to compare, so another model is simply recorded
        gallery.add_spaces({"dlib-face": {"model_id": "face-model-b", "dim": 128}})
        assert gallery.spaces["dlib-face"]["model_id"] == "face-model-b"
        vectors = {"joint": np.full(4, 0.5, np.float32), "dlib-face": np.full(128, 128 ** -0.5, np.float32)}
        gallery.add([NewItem("ann", "face", "/evidence/ann.jpg", "a" * 64, 1, 1.0, vectors)])
        with pytest.raises(ModelMismatch, match="dlib-face vectors come from model face-model-b.*is face-model-c"):
            gallery.add_spaces({"dlib-face": {"model_id": "face-model-c", "dim": 128}})
        assert gallery.spaces["dlib-face"]["model_id"] == "face-model-b"


@needs_real_media
def test_an_audit_claim_whose_identity_has_only_the_other_modality_is_answered_by_sex_not_failed(real_gallery,
                                                                                                 tmp_path):
    gallery, people, speakers = real_gallery
    face = sorted((REAL_MEDIA / "faces" / people[2]).iterdir())[1]  # Freida Pinto
    queries = tmp_path / "queries.csv"
    queries.write_text(f"query_id,modality,path,claimed_identity\nq1,face,{face},{speakers[3]}\n")  # voices only
    ran = run_cli_here("audit", "run", "--queries", queries, "--out", tmp_path / "out.jsonl", "--gallery", gallery,
                       "--json")
    assert ran.returncode == 0, ran.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (record["status"], record["task"], record["decision"]) == ("ok", "verify", None)
    (candidate,) = record["candidates"]
    assert (candidate["identity"], candidate["trial_type"], candidate["space"]) == (speakers[3], "face-voice", "sex")
    assert candidate["readings"]["face"]["sex"] == "female" and candidate["log10_lr"] is not None
