"""fvmatch import voxceleb1 on a miniature release in VGG's exact layout (tests/voxceleb_tree.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from mediagen import run_cli_here
from voxceleb_tree import CELEBRITIES, UNLISTED, build_release

from fvmatch.corpus import media_files, read_meta
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES


@pytest.fixture(scope="module")
def release(tmp_path_factory):
    return build_release(tmp_path_factory.mktemp("voxceleb1"))


@pytest.fixture(scope="module")
def imported(release, tmp_path_factory):
    data = tmp_path_factory.mktemp("imported") / "corpus"
    result = run_cli_here("import", "voxceleb1", release, data, "--json")
    assert result.returncode == 0, result.stderr
    return data, json.loads(result.stdout), result.stderr


def test_import_links_the_release_and_writes_meta_with_splits_from_the_set_column(release, imported):
    data, summary, stderr = imported
    assert summary["identities"] == 6 and summary["splits"] == {"train": 3, "val": 0, "test": 3}
    assert (summary["voices"], summary["faces"], summary["links"]) == (12, 12, 18)
    assert summary["face_layout"] == "VoxCeleb1 face frames (<name>/1.6/<video>/[<utterance>/]<frame>)"
    assert summary["skipped"] == [{"identity": "id10273", "name": "Eddie_Izzard", "reason": "no faces"},
                                  {"identity": "id10274", "name": "Eddie_Kaye_Thomas", "reason": "no voices"}]
    assert summary["skipped_reasons"] == {"no faces": 1, "no voices": 1}
    assert summary["unlisted_speakers"] == [UNLISTED]
    assert "  1 no faces (e.g. id10273 (Eddie_Izzard))" in stderr.splitlines()
    assert f"fvmatch: 1 speaker folder(s) with voices are not in the meta file, ignored: {UNLISTED}" in stderr
    assert "age left empty" in summary["age"]
    rows = [(r["identity"], r["name"], r["gender"], r["nationality"], r["age"], r["split"]) for r in read_meta(data)]
    assert rows == [(i, n, g, c, None, "test" if s == "test" else "train") for i, n, g, c, s in CELEBRITIES[:6]]
    # the corpus reader sees the release's files through the links, under the corpus's own paths
    faces = [path.relative_to(data).as_posix() for path in media_files(data / "faces" / "id10270", IMAGE_SUFFIXES)]
    # the frames of the release's nested layout: <video>/<utterance>/<frame>
    assert faces == ["faces/id10270/Yt03vid_0Q-/1/0000375.jpg", "faces/id10270/Yt03vid_1Q-/2/0000750.jpg"]
    voices = [path.relative_to(data).as_posix() for path in media_files(data / "voices" / "id10001", AUDIO_SUFFIXES)]
    assert voices == ["voices/id10001/Yt00vid_0Q-/00001.wav", "voices/id10001/Yt00vid_1Q-/00002.wav"]


def test_import_writes_links_never_copies(release, imported):
    data = imported[0]
    assert os.readlink(data / "voices" / "id10001") == str(release.resolve() / "wav" / "id10001")
    assert os.readlink(data / "faces" / "id10001" / "Yt00vid_0Q-") == str(
        release.resolve() / "unzippedIntervalFaces" / "data" / "A.J._Buckley" / "1.6" / "Yt00vid_0Q-")
    written = sorted(os.path.relpath(os.path.join(root, name), data) for root, folders, files in os.walk(data)
                     for name in files + folders if not os.path.islink(os.path.join(root, name))
                     and not os.path.isdir(os.path.join(root, name)))
    assert written == ["import.json", "meta.csv"]


def test_val_fraction_moves_a_hashed_share_of_dev_to_val(release, tmp_path):
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--val-fraction", "0.3", "--json")
    assert result.returncode == 0, result.stderr
    assert {r["identity"]: r["split"] for r in read_meta(tmp_path / "c")}["id10002"] == "val"
    assert json.loads(result.stdout)["splits"] == {"train": 2, "val": 1, "test": 3}


def test_learnable_pins_identity_splits_decide_the_splits(release, tmp_path):
    splits = tmp_path / "identity_splits.txt"
    splits.write_text("A.J._Buckley 1 \nA.R._Rahman 2 \nEartha_Kitt 4 \nEd_Westwick 4 \nEddie_Griffin 1 \n")
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--splits", splits, "--json")
    assert result.returncode == 0, result.stderr
    assert {r["identity"]: r["split"] for r in read_meta(tmp_path / "c")} == {
        "id10001": "train", "id10002": "val", "id10270": "test", "id10271": "test", "id10272": "train"}
    assert {"identity": "id10003", "name": "Aamir_Khan", "reason": "not in the identity splits file"} in \
        json.loads(result.stdout)["skipped"]


def test_vggface1_photos_become_one_pseudo_video_per_identity(release, tmp_path):
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--faces", release / "VGG_ALL_FRONTAL",
                          "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["face_layout"] == "VGGFace1 photos (<name>/<photo>)" and summary["faces"] == 12
    faces = [p.relative_to(tmp_path / "c").as_posix() for p in media_files(tmp_path / "c/faces/id10271", IMAGE_SUFFIXES)]
    assert faces == ["faces/id10271/vggface1/0000375.jpg", "faces/id10271/vggface1/0000750.jpg"]


def test_text_output_says_the_counts_the_split_rule_and_the_missing_ages(release, tmp_path):
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c")
    assert result.returncode == 0
    assert result.stdout.splitlines() == [
        f"imported 6 identities (3 train, 0 val, 3 test): 12 voice clips, 12 faces (VoxCeleb1 face frames "
        f"(<name>/1.6/<video>/[<utterance>/]<frame>)) as 18 links in {tmp_path / 'c'}; 2 skipped",
        "splits from Set: test -> test; dev -> train, 10% of dev -> val (by a hash of the identity)",
        "age: VoxCeleb1 gives no ages: age left empty, so the A and GNA strata have no trials"]


def _error_lines(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("fvmatch: error:")]


@pytest.mark.parametrize("meta, problem", [
    (None, "vox1_meta.csv: no such file"),
    ("VoxCeleb1 ID,VGGFace1 ID,Gender,Nationality,Set\nid10001,A.J._Buckley,m,Ireland,dev\n",
     "vox1_meta.csv: line 1: not tab-separated"),
    ("VoxCeleb1 ID\tVGGFace1 ID\tGender\tSet\nid10001\tA.J._Buckley\tm\tdev\n",
     "vox1_meta.csv: line 1: missing column(s) Nationality"),
    ("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA.J._Buckley\tm\tIreland\tdev\n"
     "id10002\tA.R._Rahman\tm\tIndia\teval\n", "vox1_meta.csv: line 3: Set 'eval' is not one of dev, test"),
    ("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\nid10001\tA.J._Buckley\tm\n",
     "vox1_meta.csv: line 2: 3 tab-separated fields, the header has 5"),
])
def test_missing_or_garbled_meta_is_refused_in_one_line(release, tmp_path, meta, problem):
    src = tmp_path / "release"
    src.mkdir()
    os.symlink(release / "wav", src / "wav")
    os.symlink(release / "unzippedIntervalFaces", src / "unzippedIntervalFaces")
    if meta is not None:
        (src / "vox1_meta.csv").write_text(meta)
    result = run_cli_here("import", "voxceleb1", src, tmp_path / "c")
    assert result.returncode == 2
    assert len(_error_lines(result)) == 1 and problem in result.stderr
    assert not (tmp_path / "c").exists()


def test_a_non_empty_destination_is_refused_unless_force_replaces_a_previous_import(release, tmp_path):
    data = tmp_path / "c"
    data.mkdir()
    (data / "notes.txt").write_text("keep me")
    refused = run_cli_here("import", "voxceleb1", release, data)
    assert refused.returncode == 2 and "is not empty (1 entries)" in refused.stderr and "--force" in refused.stderr
    forced = run_cli_here("import", "voxceleb1", release, data, "--force")
    assert forced.returncode == 2 and "notes.txt: not written by fvmatch import" in forced.stderr
    assert (data / "notes.txt").read_text() == "keep me"
    (data / "notes.txt").unlink()
    assert run_cli_here("import", "voxceleb1", release, data).returncode == 0
    again = run_cli_here("import", "voxceleb1", release, data, "--force", "--val-fraction", "0.3", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["splits"]["val"] == 1
    (data / "faces" / "id10001" / "copy.jpg").write_bytes(b"a real file")
    refused = run_cli_here("import", "voxceleb1", release, data, "--force")
    assert refused.returncode == 2 and "copy.jpg: a file, not a link" in refused.stderr
    assert (release / "wav" / "id10001").is_dir()  # --force never reaches through a link


def test_a_seen_heard_set_in_the_splits_file_is_refused(release, tmp_path):
    splits = tmp_path / "identity_splits.txt"
    splits.write_text("A.J._Buckley 1\nA.R._Rahman 3\n")
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--splits", splits)
    assert result.returncode == 2 and "identity_splits.txt: line 2: set 3 (seen-heard test)" in result.stderr


def test_faces_in_neither_layout_are_refused(release, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--faces", tmp_path / "empty")
    assert result.returncode == 2 and "holds no face folder named by a VGGFace1 ID or VoxCeleb1 ID" in result.stderr


def test_import_help_does_not_load_torch():
    probe = ("import sys; sys.argv = ['fvmatch', 'import', 'voxceleb1', '--help']\n"
             "from fvmatch import cli\n"
             "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert "--faces" in result.stdout and result.stdout.strip().endswith("NO-TORCH 0")


def test_flat_face_frames_without_utterance_folders_are_read_too(tmp_path):
    release = build_release(tmp_path, nested=False)
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["faces"] == 12
    faces = [p.relative_to(tmp_path / "c").as_posix() for p in media_files(tmp_path / "c/faces/id10270", IMAGE_SUFFIXES)]
    assert faces == ["faces/id10270/Yt03vid_0Q-/0000375.jpg", "faces/id10270/Yt03vid_1Q-/0000750.jpg"]


def test_face_folders_without_any_image_are_named_in_the_error(release, tmp_path):
    faces = tmp_path / "faces" / "unzippedIntervalFaces" / "data"
    for _, name, *_ in CELEBRITIES:
        (faces / name / "1.6" / "Yt00vid_0Q-" / "1").mkdir(parents=True)  # the folders unzipped, the frames not
    result = run_cli_here("import", "voxceleb1", release, tmp_path / "c", "--faces", tmp_path / "faces")
    assert result.returncode == 2
    assert _error_lines(result) == [f"fvmatch: error: {faces}: no face images for any of the 7 identities with "
                                    "voices (read <name>/1.6/<video>/<utterance>/<frame>.jpg, "
                                    "<name>/1.6/<video>/<frame>.jpg or <name>/<photo>.jpg)"]


def test_a_partial_download_summarises_skips_in_a_few_lines(release, tmp_path):
    src = tmp_path / "release"
    src.mkdir()
    os.symlink(release / "wav", src / "wav")
    os.symlink(release / "unzippedIntervalFaces", src / "unzippedIntervalFaces")
    absent = [f"id{11000 + n}\tAbsent_{n}\tm\tUSA\tdev" for n in range(40)]
    (src / "vox1_meta.csv").write_text((release / "vox1_meta.csv").read_text() + "\n".join(absent) + "\n")
    result = run_cli_here("import", "voxceleb1", src, tmp_path / "c")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if line.startswith(("fvmatch:", "  "))]
    assert said == [
        f"fvmatch: skipped 42 of 48 identities (all of them in {tmp_path / 'c'}/import.json and --json):",
        "  40 no voices and no faces (e.g. id11000 (Absent_0), id11001 (Absent_1), id11002 (Absent_2), ...)",
        "  1 no faces (e.g. id10273 (Eddie_Izzard))", "  1 no voices (e.g. id10274 (Eddie_Kaye_Thomas))",
        f"fvmatch: 1 speaker folder(s) with voices are not in the meta file, ignored: {UNLISTED}"]
    assert len(json.loads((tmp_path / "c" / "import.json").read_text())["skipped"]) == 42


def test_a_published_list_naming_flat_frames_finds_them_in_the_nested_release(imported, tmp_path):
    """The published face-voice lists name <name>/1.6/<video>/<frame>.jpg (the flat release); the nested release keeps
    the same frame one folder down, per utterance: evaluate --trials must find it there, and say so."""
    from fvmatch.evaluation.trials import absent_items, locate_nested_frames, read_trials

    data = imported[0]
    listed = tmp_path / "veriflist_test_random_unseenunheard.txt"
    listed.write_text("id,voice-speaker-id,face-speaker-id,label,voice-path,face-path\n"
                      "0,1,1,1,A.J._Buckley/Yt00vid_0Q-_00001.wav,A.J._Buckley/1.6/Yt00vid_0Q-/0000375.jpg\n"
                      "1,1,1,1,A.J._Buckley/Yt00vid_1Q-_00002.wav,A.J._Buckley/1.6/Yt00vid_1Q-/0000751.jpg\n",
                      encoding="utf-8")
    trials = read_trials(listed, names={row["name"]: row["identity"] for row in read_meta(data)})
    assert absent_items(trials, data)[0] == 2  # as the list names them, neither frame is in the nested corpus
    found, moved = locate_nested_frames(trials, data)
    assert moved == 1 and found.trials[0].probe == "faces/id10001/Yt00vid_0Q-/1/0000375.jpg"
    assert found.trials[1].probe == "faces/id10001/Yt00vid_1Q-/0000751.jpg"  # no such frame anywhere: left absent
    assert absent_items(found, data) == (1, ["faces/id10001/Yt00vid_1Q-/0000751.jpg"])
