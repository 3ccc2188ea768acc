"""The joint space without torch (fvmatch.spaces.joint_onnx): the checkpoint's ONNX graphs give torch's vectors
within 1e-4 cosine on real photos and recordings; graphs of another model are refused; an experts model exports too."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import soundfile

from fvmatch.errors import ModelMismatch
from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, ONNX_MODEL_ID_KEY, onnx_graph_paths, read_card
from fvmatch.spaces.joint_onnx import OnnxJointSpace, area_resize, has_onnx_graphs
from mediagen import REALMEDIA

torch = pytest.importorskip("torch", reason="the reference is the torch model (the training extra)")


def test_the_shipped_checkpoint_ships_its_own_graphs():
    import onnxruntime

    assert has_onnx_graphs(DEFAULT_CHECKPOINT)
    for part, path in onnx_graph_paths(DEFAULT_CHECKPOINT).items():
        meta = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"]).get_modelmeta()
        assert meta.custom_metadata_map == {ONNX_MODEL_ID_KEY: read_card(DEFAULT_CHECKPOINT)["model_id"],
                                            "fvmatch_part": part}


def test_area_resize_is_torchs_area_interpolation():
    images = np.random.default_rng(3).standard_normal((2, 3, 160, 160)).astype(np.float32)
    theirs = torch.nn.functional.interpolate(torch.from_numpy(images), size=(64, 64), mode="area").numpy()
    np.testing.assert_allclose(area_resize(images, 64), theirs, atol=1e-5)


def test_onnx_vectors_equal_torchs_on_real_faces_and_voices():
    from fvmatch.analysis.embedder import Embedder

    faces = sorted((REALMEDIA / "faces").glob("*/*"))[:40:10]
    voices = sorted((REALMEDIA / "voices").glob("*/*.flac"))[:30:10]
    if not faces or not voices:
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings of ../shared/realmedia are needed")
    embedder = Embedder.load()
    with_torch = embedder.space("joint")
    without = OnnxJointSpace(embedder.card, DEFAULT_CHECKPOINT, embedder.space)
    crops = np.stack([embedder.prepare_face(path, ["joint"])[0].inputs["joint"] for path in faces])
    cosines = (with_torch.embed(crops) * without.embed(crops)).sum(axis=1)
    for path in voices:
        samples, rate = soundfile.read(path, dtype="float32")
        assert rate == 16000
        cosines = np.append(cosines, with_torch.embed_speech(samples[: 4 * rate]) @ without.embed_speech(samples[: 4 * rate]))
    assert len(cosines) == len(faces) + len(voices) and cosines.min() > 1 - 1e-4


def test_graphs_of_another_model_are_refused(tmp_path):
    import onnx

    from fvmatch.analysis.embedder import Embedder

    model = tmp_path / "model.safetensors"
    shutil.copyfile(DEFAULT_CHECKPOINT, model)
    for part, path in onnx_graph_paths(DEFAULT_CHECKPOINT).items():
        shutil.copyfile(path, onnx_graph_paths(model)[part])
    graph = onnx.load(onnx_graph_paths(model)["voice"])
    onnx.helper.set_model_props(graph, {ONNX_MODEL_ID_KEY: "0" * 64, "fvmatch_part": "voice"})
    onnx.save(graph, onnx_graph_paths(model)["voice"])
    with pytest.raises(ModelMismatch, match="its ONNX graph was exported from model 0000000000000000"):
        OnnxJointSpace(read_card(model), model, Embedder.load(model).space)


def test_an_experts_model_exports_and_reads_its_spaces_vectors(tmp_path):
    import onnxruntime

    from fvmatch.models import get_config
    from fvmatch.models.checkpoint import load_checkpoint, save_checkpoint
    from fvmatch.models.joint import build_model
    from fvmatch.models.onnx_export import export_onnx

    torch.manual_seed(5)
    model = build_model(get_config("experts")).eval()
    path = tmp_path / "experts.safetensors"
    save_checkpoint(model, path, training_data="test")
    export_onnx(load_checkpoint(path), path)
    faces, voices = torch.randn(3, 128), torch.randn(1, 256)
    for part, inputs, expected in (("face", faces, model.embed_faces(faces)), ("voice", voices, model.embed_voices(voices))):
        session = onnxruntime.InferenceSession(str(onnx_graph_paths(path)[part]), providers=["CPUExecutionProvider"])
        found = session.run(None, {"input": inputs.numpy()})[0]
        assert (found * expected.detach().numpy()).sum(axis=1).min() > 1 - 1e-5
