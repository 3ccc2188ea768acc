"""An analyst's install (`pip install fvmatch`, no training extra): analysis runs without torch and the packages built
on it (the joint space too, from the shipped checkpoint's ONNX graphs); what needs them (training, the joint space of
a model without graphs) says so in one line, exit 2. The commands run in fresh processes
in which those packages cannot be found, as in a light install; the shipped weights equal their sources'."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from fvmatch import extras
from fvmatch.errors import EXIT_BAD_INPUT
from fvmatch.spaces import JOINT, reference_spaces, space_for, spaces_of
from light_process import JOINT_REFUSAL, run_light
from mediagen import speech_clip

@pytest.fixture(scope="module")
def light_gallery(tmp_path_factory, grace_hopper) -> dict[str, Path]:
    """A gallery enrolled without the training extra: one face (Grace Hopper) and one generated voice."""
    root = tmp_path_factory.mktemp("light")
    soundfile.write(root / "voice.wav", speech_clip(4.0, seed=31, female=True), 16000)
    result = run_light("enroll", "-g", root / "gallery", "-i", "Grace", "--face", grace_hopper,
                       "--voice", root / "voice.wav")
    return {"gallery": root / "gallery", "voice": root / "voice.wav", "face": grace_hopper, "enroll": result}


def test_enroll_without_the_extra_stores_the_joint_space_too_from_the_shipped_onnx_graphs(light_gallery):
    result = light_gallery["enroll"]
    assert result.returncode == 0, result.stderr
    assert "enrolled 2, already there 0, failed 0" in result.stdout
    assert "not in the joint space" not in result.stderr  # the shipped checkpoint runs on onnxruntime


def test_identify_without_the_extra_answers_in_the_pretrained_spaces_and_the_joint_one_on_onnx(light_gallery):
    voice = run_light("identify", "-g", light_gallery["gallery"], "--voice", light_gallery["voice"], "--against",
                      "voice", "--json")
    face = run_light("identify", "-g", light_gallery["gallery"], "--face", light_gallery["face"], "--against",
                     "face", "--json")
    for result, space in ((voice, "ge2e-voice"), (face, "dlib-face")):
        assert result.returncode == 0, result.stderr
        assert f'"space": "{space}"' in result.stdout and "Grace" in result.stdout
    joint = run_light("identify", "-g", light_gallery["gallery"], "--face", light_gallery["face"], "--space", "joint",
                      "--against", "voice", "--json")
    assert joint.returncode in (0, 1), joint.stderr  # 1: no decision reached
    assert '"space": "joint"' in joint.stdout and "SYNTHETIC-TRAINED" in joint.stdout


@pytest.fixture(scope="module")
def graphless_model(tmp_path_factory) -> Path:
    """The shipped checkpoint copied alone: no ONNX graphs beside it."""
    import shutil

    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT

    copy = tmp_path_factory.mktemp("graphless") / "model.safetensors"
    shutil.copyfile(DEFAULT_CHECKPOINT, copy)
    return copy


@pytest.mark.parametrize("command", [
    ("embed", "--space", "joint"),
    ("verify", "--space", "joint"),
])
def test_the_joint_space_of_a_model_without_graphs_is_one_line_exit_2(light_gallery, graphless_model, command):
    args = [*command, "--model", graphless_model, "--face", light_gallery["face"]]
    if command[0] == "verify":
        args += ["--voice", light_gallery["voice"]]
    result = run_light(*args)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == JOINT_REFUSAL


def test_an_audit_with_the_joint_space_of_a_model_without_graphs_is_refused_once(light_gallery, graphless_model,
                                                                                tmp_path):
    queries = tmp_path / "queries.csv"
    queries.write_text(f"query_id,modality,path\nq1,voice,{light_gallery['voice']}\nq2,face,{light_gallery['face']}\n")
    result = run_light("audit", "run", "-g", light_gallery["gallery"], "--queries", queries, "--out",
                       tmp_path / "results.jsonl", "--space", "joint", "--model", graphless_model)
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == JOINT_REFUSAL and not (tmp_path / "results.jsonl").exists()


def test_train_without_the_extra_is_one_line_exit_2(tmp_path):
    result = run_light("train", tmp_path, "--out", tmp_path / "model.safetensors")
    assert result.returncode == EXIT_BAD_INPUT
    assert result.stderr.strip() == ("fvmatch: error: fvmatch train needs the training extra: "
                                     "pip install 'fvmatch[train]'")


def test_items_are_stored_in_the_joint_space_only_where_it_can_run(monkeypatch, tmp_path):
    assert extras.joint_space_available()  # torch here, or the shipped checkpoint's ONNX graphs
    assert JOINT in spaces_of("face") and JOINT in reference_spaces("voice")
    monkeypatch.setattr(extras, "installed", lambda *packages: False)
    assert extras.joint_space_available()  # without torch: the shipped graphs
    assert not extras.joint_space_available(tmp_path / "model.safetensors")  # no graphs beside it
    monkeypatch.setattr(extras, "joint_space_available", lambda checkpoint=None: False)
    assert spaces_of("face") == ["dlib-face"] and spaces_of("voice") == ["ge2e-voice"]
    assert JOINT not in reference_spaces("voice") and len(reference_spaces("voice")) > 1  # the conditions stay


def test_space_joint_is_refused_where_neither_torch_nor_graphs_are(monkeypatch):
    monkeypatch.setattr(extras, "joint_space_available", lambda checkpoint=None: False)
    with pytest.raises(extras.MissingTrainingExtra) as refused:
        space_for("face", "voice", "joint")
    assert str(refused.value) == "--space joint needs the training extra: pip install 'fvmatch[train]'"
    assert space_for("face", "face", "dlib-face") == "dlib-face"


def test_the_numpy_log_mel_is_the_training_front_end():
    """fvmatch.media.log_mel.log_mel (numpy: the joint space's voices and the report's pictures, no torch) equals
    log_mel_batch (torchaudio: what the joint model was trained on)."""
    torch = pytest.importorskip("torch", reason="the reference is the joint model's torch front end (fvmatch[train])")
    from fvmatch.media.log_mel import log_mel, log_mel_batch

    for seconds, seed in ((0.1, 1), (2.5, 2)):
        speech = speech_clip(seconds, seed=seed) if seconds >= 1 else np.random.default_rng(seed).standard_normal(
            1600).astype(np.float32) * 0.1
        ours, theirs = log_mel(speech), log_mel_batch(torch.from_numpy(speech)[None])[0].numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, atol=1e-4)
