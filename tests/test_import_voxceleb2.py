"""fvmatch import voxceleb2 on a miniature release in VGG's layout (M4A audio), then prepare and train on it."""
from __future__ import annotations

import json
import os

import pytest
from mediagen import run_cli_here
from voxceleb_tree import FACES_ONLY2, SPEAKERS2, VOICES_ONLY2, build_voxceleb2_release

from fvmatch.corpus import media_files, read_meta
from fvmatch.importers.voxceleb2 import read_vox2_meta
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_voxceleb2_release(tmp_path_factory.mktemp("voxceleb2"))


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    src, faces = release
    data = tmp_path_factory.mktemp("imported2") / "corpus"
    result = run_cli_here("import", "voxceleb2", src, data, "--faces", faces, "--json")
    assert result.returncode == 0, result.stderr
    return data, json.loads(result.stdout), result.stderr


def test_the_padded_comma_separated_meta_reads_as_the_release_writes_it(release):
    speakers = read_vox2_meta(release[0] / "vox2_meta.csv")
    assert [(s.identity, s.vggface2, s.gender, s.voxceleb_set) for s in speakers] == list(SPEAKERS2)


def test_import_links_m4a_voices_and_both_face_layouts_with_splits_from_the_set(release, imported):
    src, faces = release
    data, summary, stderr = imported
    assert summary["identities"] == 5 and summary["splits"] == {"train": 3, "val": 0, "test": 2}
    assert (summary["voices"], summary["faces"]) == (10, 10)
    assert summary["skipped"] == [{"identity": VOICES_ONLY2, "name": "n000081", "reason": "no faces"},
                                  {"identity": FACES_ONLY2, "name": "n000154", "reason": "no voices"}]
    assert summary["unlisted_speakers"] == ["id09999"]
    assert "fvmatch: 1 speaker folder(s) with voices are not in the meta file, ignored: id09999" in stderr
    rows = {row["identity"]: (row["name"], row["gender"], row["nationality"], row["age"], row["split"])
            for row in read_meta(data)}
    assert rows["id00017"] == ("n000017", "m", "", None, "test") and rows["id00012"][4] == "train"
    voices = [p.relative_to(data).as_posix() for p in media_files(data / "voices" / "id00061", AUDIO_SUFFIXES)]
    assert voices == ["voices/id00061/Yt04vid_0Q-/00001.m4a", "voices/id00061/Yt04vid_1Q-/00002.m4a"]
    assert os.readlink(data / "voices" / "id00061") == str(src.resolve() / "test" / "aac" / "id00061")
    frames = [p.relative_to(data).as_posix() for p in media_files(data / "faces" / "id00012", IMAGE_SUFFIXES)]
    assert frames == ["faces/id00012/Yt00vid_0Q-/1/0000375.jpg", "faces/id00012/Yt00vid_1Q-/2/0000750.jpg"]
    photos = [p.relative_to(data).as_posix() for p in media_files(data / "faces" / "id00015", IMAGE_SUFFIXES)]
    assert photos == ["faces/id00015/photos/0001_01.jpg", "faces/id00015/photos/0002_01.jpg"]
    assert os.readlink(data / "faces" / "id00015" / "photos") == str(faces.resolve() / "n000015")


def test_prepare_reads_the_m4a_voices_and_train_runs_on_them(imported, tmp_path):
    pytest.importorskip("torch", reason="train needs the training extra (torch): pip install 'fvmatch[train]'")
    data = imported[0]
    cache = tmp_path / "cache"
    prepared = run_cli_here("prepare", data, cache, "--workers", "1", "--json")
    assert prepared.returncode == 0, prepared.stderr
    counts = json.loads(prepared.stdout)["counts"]
    assert counts["voices"] == 10 and counts["paired_identities"] == 5 and counts["voice_seconds"] > 5
    out = tmp_path / "model.safetensors"
    trained = run_cli_here("train", cache, "--out", out, "--config", "small", "--epochs", "1", "--batch-size", "2",
                           "--crop-seconds", "1", "--json")
    assert trained.returncode == 0, trained.stderr
    history = json.loads(trained.stdout)["history"]
    assert history[0]["val_note"].startswith("not measured: the val split has 0 usable identities")
    # measured on the people it was trained on: said in text and JSON
    evaluated = run_cli_here("evaluate", data, "--model", out, "--space", "joint", "--split", "train",
                             "--cache", tmp_path / "embeddings", "--json")
    assert evaluated.returncode == 0, evaluated.stderr
    trained_on = ("3 of the 3 identities evaluated were in the joint model's training split (e.g. id00012, id00015, "
                  "id00016): its figures on them are not held out and overstate its accuracy")
    assert trained_on in json.loads(evaluated.stdout)["warnings"]
    text = run_cli_here("evaluate", data, "--model", out, "--space", "joint", "--split", "train",
                        "--cache", tmp_path / "embeddings")
    assert f"warning: {trained_on}" in text.stdout.splitlines()


def test_faces_folder_without_any_identity_is_refused_naming_it(release, tmp_path):
    (tmp_path / "faces").mkdir()
    result = run_cli_here("import", "voxceleb2", release[0], tmp_path / "c", "--faces", tmp_path / "faces")
    assert result.returncode == 2
    assert f"{tmp_path / 'faces'}: holds no face folder named by a VoxCeleb2 ID or VGGFace2 ID" in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_release_without_aac_is_refused(release, tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "vox2_meta.csv").write_text((release[0] / "vox2_meta.csv").read_text())
    result = run_cli_here("import", "voxceleb2", tmp_path / "src", tmp_path / "c", "--faces", release[1])
    assert result.returncode == 2 and "no aac/ folder" in result.stderr
