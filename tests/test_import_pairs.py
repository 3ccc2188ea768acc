"""fvmatch import pairs on a laboratory's own folders: photos, recordings and a video per session, then prepare."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import soundfile
from mediagen import run_cli_here
from voxceleb_tree import build_pairs

from fvmatch.corpus import media_files, read_meta
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return build_pairs(tmp_path_factory.mktemp("pairs"))


@pytest.fixture(scope="module")
def imported(pairs, tmp_path_factory):
    data = tmp_path_factory.mktemp("imported-pairs") / "corpus"
    result = run_cli_here("import", "pairs", pairs, data, "--video-frames", "2", "--json")
    assert result.returncode == 0, result.stderr
    return data, json.loads(result.stdout)


def relative(data, folder, suffixes):
    return [path.relative_to(data).as_posix() for path in media_files(folder, suffixes)]


def test_sessions_become_videos_and_a_video_gives_frames_and_its_soundtrack(pairs, imported):
    data, summary = imported
    assert summary["identities"] == 3 and summary["videos"] == 1
    assert summary["skipped"] == [{"identity": "dave", "name": "dave", "reason": "no voices"}]
    assert relative(data, data / "faces" / "carol", IMAGE_SUFFIXES) == [
        "faces/carol/2026-01-12/photo0.jpg", "faces/carol/2026-02-12/photo1.jpg",
        "faces/carol/interview~clip/clip-000.jpg", "faces/carol/interview~clip/clip-001.jpg"]
    assert relative(data, data / "voices" / "carol", AUDIO_SUFFIXES) == [
        "voices/carol/2026-01-12/call0.wav", "voices/carol/2026-02-12/call1.wav", "voices/carol/interview~clip/clip.wav"]
    soundtrack = soundfile.info(data / "voices" / "carol" / "interview~clip" / "clip.wav")
    assert soundtrack.samplerate == 16000 and soundtrack.channels == 1 and 2.9 < soundtrack.duration < 3.2
    # loose files in a person's folder are one session, linked file by file
    assert relative(data, data / "faces" / "bob", IMAGE_SUFFIXES)[-1] == "faces/bob/main/loose.jpg"
    assert os.readlink(data / "faces" / "bob" / "main" / "loose.jpg") == str(pairs / "bob" / "loose.jpg")
    assert os.readlink(data / "voices" / "alice" / "2026-01-10") == str(pairs / "alice" / "2026-01-10")
    assert (summary["faces"], summary["voices"]) == (2 + 3 + 4, 2 + 2 + 3)  # alice, bob, carol
    assert summary["written_files"] == ["faces/carol/interview~clip/clip-000.jpg",
                                        "faces/carol/interview~clip/clip-001.jpg", "voices/carol/interview~clip/clip.wav"]


def test_meta_gives_gender_and_split_and_the_rest_are_drawn_by_person(imported):
    rows = {row["identity"]: (row["gender"], row["split"]) for row in read_meta(imported[0])}
    assert rows["alice"] == ("f", "test") and rows["bob"] == ("m", "train")
    assert rows["carol"][0] == "" and rows["carol"][1] in ("train", "val", "test")


def test_force_replaces_a_previous_import_including_the_files_it_wrote(pairs, imported, tmp_path):
    data = tmp_path / "c"
    assert run_cli_here("import", "pairs", pairs, data, "--video-frames", "1").returncode == 0
    again = run_cli_here("import", "pairs", pairs, data, "--force", "--video-frames", "2", "--json")
    assert again.returncode == 0, again.stderr
    assert len(json.loads(again.stdout)["written_files"]) == 3
    (data / "faces" / "alice" / "2026-01-10-copy.jpg").write_bytes(b"someone's own file")
    refused = run_cli_here("import", "pairs", pairs, data, "--force")
    assert refused.returncode == 2 and "2026-01-10-copy.jpg: a file, not a link" in refused.stderr


def test_prepare_takes_the_imported_pairs(imported, tmp_path):
    result = run_cli_here("prepare", imported[0], tmp_path / "cache", "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["counts"]
    assert counts["paired_identities"] == 3 and counts["voices"] == 7 and counts["faces"] == 9


def test_a_bad_meta_is_refused_naming_its_line(pairs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for person in ("alice", "bob"):
        os.symlink(pairs / person, src / person, target_is_directory=True)
    (src / "meta.csv").write_text("identity,split\nalice,dev\n")
    result = run_cli_here("import", "pairs", src, tmp_path / "c")
    assert result.returncode == 2 and "meta.csv: line 2: split 'dev' is not one of train, val, test" in result.stderr


@pytest.mark.parametrize("command, option", [("voxceleb2", "--faces"), ("pairs", "--video-frames")])
def test_import_help_does_not_load_torch(command, option):
    probe = (f"import sys; sys.argv = ['fvmatch', 'import', {command!r}, '--help']\n"
             "from fvmatch import cli\n"
             "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert option in result.stdout and result.stdout.strip().endswith("NO-TORCH 0")
