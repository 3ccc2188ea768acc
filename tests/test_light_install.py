"""An analyst's install (`pip install fvmatch`, no training extra): analysis runs without torch and the packages built
on it; what needs them (the joint space, training) says so in one line, exit 2. The commands run in fresh processes
in which those packages cannot be found, as in a light install; the shipped weights equal their sources'."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile

from fvmatch import extras
from fvmatch.errors import EXIT_BAD_INPUT
from fvmatch.spaces import JOINT, reference_spaces, space_for, spaces_of
from mediagen import speech_clip

ROOT = Path(__file__).resolve().parents[1]
TRAIN_ONLY = ("torch", "torchaudio", "torchvision", "facenet_pytorch", "resemblyzer", "silero_vad")
# the training extra's packages made unfindable (find_spec gives None, import fails, as where they are not
# installed), then the real entry point
WITHOUT_TRAIN_EXTRA = f"""
import sys
from importlib.machinery import PathFinder

class WithoutTrainExtra(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in {TRAIN_ONLY!r} else super().find_spec(name, path, target)

sys.meta_path = [WithoutTrainExtra if finder is PathFinder else finder for finder in sys.meta_path]
from fvmatch import cli
sys.argv = ["fvmatch", *sys.argv[1:]]
cli.main()
"""
JOINT_REFUSAL = "fvmatch: error: --space joint needs the training extra: pip install 'fvmatch[train]'"


def run_light(*args) -> subprocess.CompletedProcess:
    # run outside the repository, whose fvmatch/ would shadow a non-editable install
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA, *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=tempfile.gettempdir())


@pytest.fixture(scope="module")
def light_gallery(tmp_path_factory, grace_hopper) -> dict[str, Path]:
    """A gallery enrolled without the training extra: one face (Grace Hopper) and one generated voice."""
    root = tmp_path_factory.mktemp("light")
    soundfile.write(root / "voice.wav", speech_clip(4.0, seed=31, female=True), 16000)
    result = run_light("enroll", "-g", root / "gallery", "-i", "Grace", "--face", grace_hopper,
                       "--voice", root / "voice.wav")
    return {"gallery": root / "gallery", "voice": root / "voice.wav", "face": grace_hopper, "enroll": result}


def test_enroll_without_the_extra_stores_the_pretrained_spaces_and_says_so_once(light_gallery):
    result = light_gallery["enroll"]
    assert result.returncode == 0, result.stderr
    assert "enrolled 2, already there 0, failed 0" in result.stdout
    assert result.stderr.count("not in the joint space") == 1
    assert "pip install 'fvmatch[train]'" in result.stderr


def test_identify_without_the_extra_answers_in_the_pretrained_spaces(light_gallery):
    voice = run_light("identify", "-g", light_gallery["gallery"], "--voice", light_gallery["voice"], "--against",
                      "voice", "--json")
    face = run_light("identify", "-g", light_gallery["gallery"], "--face", light_gallery["face"], "--against",
                     "face", "--json")
    for result, space in ((voice, "ge2e-voice"), (face, "dlib-face")):
        assert result.returncode == 0, result.stderr
        assert f'"space": "{space}"' in result.stdout and "Grace" in result.stdout


@pytest.mark.parametrize("command", [
    ("identify", "--space", "joint", "--against", "voice"),
    ("verify", "--space", "joint"),
])
def test_the_joint_space_without_the_extra_is_one_line_exit_2(light_gallery, command):
    args = [*command, "-g", light_gallery["gallery"]]
    if command[0] == "identify":
        args += ["--face", light_gallery["face"]]
    else:
        args += ["--face", light_gallery["face"], "--voice", light_gallery["voice"]]
    result = run_light(*args)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == JOINT_REFUSAL


def test_an_audit_with_the_joint_space_without_the_extra_is_refused_once(light_gallery, tmp_path):
    queries = tmp_path / "queries.csv"
    queries.write_text(f"query_id,modality,path\nq1,voice,{light_gallery['voice']}\nq2,face,{light_gallery['face']}\n")
    result = run_light("audit", "run", "-g", light_gallery["gallery"], "--queries", queries, "--out",
                       tmp_path / "results.jsonl", "--space", "joint")
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == JOINT_REFUSAL and not (tmp_path / "results.jsonl").exists()


def test_train_without_the_extra_is_one_line_exit_2(tmp_path):
    result = run_light("train", tmp_path, "--out", tmp_path / "model.safetensors")
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == ("fvmatch: error: fvmatch train needs the training extra: "
                                     "pip install 'fvmatch[train]'")


def test_items_are_stored_in_the_joint_space_only_where_it_can_run(monkeypatch):
    with_extra = extras.joint_space_available()
    assert (JOINT in spaces_of("face")) == with_extra and (JOINT in reference_spaces("voice")) == with_extra
    monkeypatch.setattr(extras, "joint_space_available", lambda: False)
    assert spaces_of("face") == ["dlib-face"] and spaces_of("voice") == ["ge2e-voice"]
    assert JOINT not in reference_spaces("voice") and len(reference_spaces("voice")) > 1  # the conditions stay


def test_space_joint_is_refused_where_torch_is_absent(monkeypatch):
    monkeypatch.setattr(extras, "installed", lambda *packages: False)
    with pytest.raises(extras.MissingTrainingExtra) as refused:
        space_for("face", "voice", "joint")
    assert str(refused.value) == "--space joint needs the training extra: pip install 'fvmatch[train]'"
    assert space_for("face", "face", "dlib-face") == "dlib-face"


def test_report_voice_picture_features_are_the_models_log_mel():
    pytest.importorskip("torchaudio", reason="the reference is the joint model's torch front end (fvmatch[train])")
    from fvmatch.case_report.pictures import log_mel_picture
    from fvmatch.media.audio import log_mel

    for seconds, seed in ((0.1, 1), (2.5, 2)):
        speech = speech_clip(seconds, seed=seed) if seconds >= 1 else np.random.default_rng(seed).standard_normal(
            1600).astype(np.float32) * 0.1
        ours, theirs = log_mel_picture(speech), log_mel(speech)
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
