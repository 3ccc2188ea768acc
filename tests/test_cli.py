"""The command line as a user meets it: real processes, exit codes, one-line errors, JSON on stdout."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from mediagen import run_cli


@pytest.mark.parametrize("argv, expected", [([], ("synth", "embed")), (["report"], ("--results",)),
                                            (["audit", "run"], ("--queries",))])
def test_help_lists_the_commands_without_importing_torch(argv, expected):
    probe = (f"import sys; sys.argv = ['fvmatch', *{argv!r}, '--help']\n"
             "from fvmatch import cli\n"
             "try:\n    cli.main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert all(word in result.stdout for word in expected)
    assert result.stdout.strip().endswith("NO-TORCH 0")


def test_usage_error_exits_2_without_importing_torch():
    probe = ("import sys; sys.argv = ['fvmatch', 'embed']\n"
             "from fvmatch import cli\n"
             "try:\n    cli.main()\nexcept SystemExit as e:\n    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', e.code)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "NO-TORCH 2"
    assert result.stderr.strip() == "fvmatch: error: embed: give exactly one of --face IMG, --voice AUDIO or --video FILE"


def test_a_face_query_in_the_face_space_imports_no_torch_nor_a_team_gallery_s_libraries(grace_hopper, tmp_path):
    gallery = tmp_path / "gallery"
    enrolled = run_cli("enroll", "-g", gallery, "--identity", "grace", "--face", grace_hopper)
    assert enrolled.returncode == 0, enrolled.stderr
    commands = [["embed", "--face", str(grace_hopper), "--space", "dlib-face"],
                ["identify", "--face", str(grace_hopper), "--against", "face", "-g", str(gallery), "--json"]]
    # both commands in one process, through the real entry point; torch's presence noted after each
    probe = ("import contextlib, io, json, sys\n"
             "from fvmatch import cli\n"
             "outcomes = []\n"
             f"for argv in {commands!r}:\n"
             "    sys.argv = ['fvmatch', *argv]\n"
             "    with contextlib.redirect_stdout(io.StringIO()) as out:\n"
             "        try:\n            cli.main()\n            code = 0\n"
             "        except SystemExit as exit:\n            code = exit.code or 0\n"
             "    outcomes.append([code, 'torch' in sys.modules, out.getvalue(),\n"
             "                     [name for name in ('pandas', 'pymilvus', 'psycopg') if name in sys.modules]])\n"
             "print(json.dumps(outcomes))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (embed_code, embed_torch, embed_out, _), (identify_code, identify_torch, identify_out, team_libraries) = \
        json.loads(result.stdout)
    assert embed_code == 0 and "dlib-face" in embed_out and not embed_torch
    assert identify_code == 0 and "grace" in identify_out and not identify_torch
    # a directory gallery starts none of them (sqlite_utils would import pandas, which the team extra installs)
    assert team_libraries == []


def test_embed_face_json_gives_a_unit_vector_per_face_space_with_its_quality(grace_hopper):
    result = run_cli("embed", "--face", grace_hopper, "--json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["modality"] == "face" and document["quality"]["detection_probability"] > 0.99
    # the joint space only with the training extra (torch): an analyst's install embeds in the pretrained space
    joint = {"joint": 256} if importlib.util.find_spec("torch") else {}
    assert {name: space["dim"] for name, space in document["spaces"].items()} == {**joint, "dlib-face": 128}
    for space in document["spaces"].values():
        vector = np.array(space["embedding"])
        assert vector.shape == (space["dim"],) and np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
        assert len(space["model_id"]) == 64


def test_embed_voice_prints_the_embedding_and_speech_seconds(media_dir):
    pytest.importorskip("torch", reason="the joint space needs the training extra: pip install 'fvmatch[train]'")
    result = run_cli("embed", "--voice", media_dir / "speech.wav", "--space", "joint")
    assert result.returncode == 0, result.stderr
    assert "speech_seconds" in result.stdout and "joint space" in result.stdout and "256-D unit vector" in result.stdout
    numbers = [float(token) for token in result.stdout.split() if token[:1] in "+-" and token[1:2].isdigit()]
    assert len(numbers) == 256


@pytest.mark.parametrize("option, name, problem", [
    ("--face", "missing.jpg", "no such file"),
    ("--face", "text.jpg", "not an image file Pillow can read"),
    ("--face", "truncated.jpg", "cannot decode image"),
    ("--face", "noface.jpg", "no face found"),
    ("--voice", "text.wav", "not an audio file soundfile can read"),
    ("--voice", "silence.wav", "too little speech"),
    ("--voice", "missing.wav", "no such file"),
])
def test_bad_input_exits_2_with_one_line_naming_the_file(media_dir, grace_hopper, option, name, problem):
    truncated = media_dir / "truncated.jpg"
    if not truncated.exists():
        truncated.write_bytes(grace_hopper.read_bytes()[:20000])
    result = run_cli("embed", option, media_dir / name)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and name in lines[0] and problem in lines[0], result.stderr


def test_a_file_that_is_not_a_checkpoint_exits_2(media_dir, grace_hopper):
    result = run_cli("embed", "--face", grace_hopper, "--model", media_dir / "text.jpg")
    assert result.returncode == 2
    assert result.stderr.strip() == f"fvmatch: error: {media_dir / 'text.jpg'}: not a safetensors checkpoint (SafetensorError)"
