"""The joint model: shapes, the shared layer, voice-length behaviour, local face weights."""
from __future__ import annotations

import numpy as np
import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch

from fvmatch.models.config import CONFIGS, JointModelConfig, get_config
from fvmatch.models.face import load_face_weights
from fvmatch.models.joint import IdentityClassifier, JointModel


@pytest.mark.parametrize("name", sorted(name for name, config in CONFIGS.items() if not config.experts))
def test_both_modalities_map_to_unit_vectors_of_the_joint_space(name):
    torch.manual_seed(0)
    model = JointModel(get_config(name)).eval()
    faces = torch.randint(0, 256, (2, 3, 160, 160), dtype=torch.uint8)
    mel = torch.randn(2, 64, 300)
    with torch.inference_mode():
        face_vectors, voice_vectors = model(faces, mel)
    dim = get_config(name).embedding_dim
    assert face_vectors.shape == voice_vectors.shape == (2, dim)
    torch.testing.assert_close(face_vectors.norm(dim=1), torch.ones(2))
    torch.testing.assert_close(voice_vectors.norm(dim=1), torch.ones(2))


def test_the_paper_config_has_the_seed_shapes():
    config = get_config("wang2020")
    assert config.voice_channels == (64, 256, 384, 576, 864, 512)
    assert (config.subnet_dim, config.embedding_dim) == (512, 256)
    model = JointModel(config)
    convs = [layer for layer in model.voice.layers if isinstance(layer, torch.nn.Conv1d)]
    assert [(c.kernel_size, c.stride, c.padding) for c in convs] == [((3,), (2,), (1,))] * 5
    assert sum(isinstance(layer, torch.nn.BatchNorm1d) for layer in model.voice.layers) == 4
    assert type(model.face).__name__ == "InceptionResnetV1"


def test_one_shared_layer_maps_both_modalities():
    torch.manual_seed(0)
    model = JointModel(get_config("small")).eval()
    faces = torch.randint(0, 256, (1, 3, 160, 160), dtype=torch.uint8)
    mel = torch.randn(1, 64, 200)
    with torch.inference_mode():
        before = model(faces, mel)
        model.shared.weight.mul_(-1.0)
        after = model(faces, mel)
    # negating the shared weights (no bias change) moves both modalities' embeddings
    assert not torch.allclose(before[0], after[0]) and not torch.allclose(before[1], after[1])


def test_voice_subnet_output_depends_on_length_only_through_the_average():
    torch.manual_seed(0)
    voice = JointModel(get_config("small")).voice.eval()
    mel = torch.randn(1, 64, 320)
    with torch.inference_mode():
        frames = voice.frame_outputs(mel)
        once = voice(mel)
        tiled = voice(mel.repeat(1, 1, 4))
    torch.testing.assert_close(once, frames.mean(dim=2))
    # the same speech four times over averages to the same output, up to the conv border frames
    cosine = torch.nn.functional.cosine_similarity(once, tiled).item()
    assert cosine > 0.99


def test_voice_embedding_of_a_long_recording_is_the_average_of_its_windows(embedder, tmp_path, monkeypatch):
    import soundfile

    from fvmatch.media import audio, log_mel

    from mediagen import speech_clip

    monkeypatch.setattr(audio, "WINDOW_SECONDS", 3.0)
    path = tmp_path / "long.wav"
    soundfile.write(path, np.concatenate([speech_clip(4.0, seed=s) for s in range(3)]), 16000)
    windows = list(audio.speech_windows(path))
    assert len(windows) >= 3
    with torch.inference_mode():
        per_window = [embedder.model.embed_voices(torch.from_numpy(log_mel.log_mel(w.samples))[None])[0].numpy() for w in windows]
    expected = sum(w.speech_seconds * v for w, v in zip(windows, per_window))
    expected /= np.linalg.norm(expected)
    result = embedder.embed_voice(path, spaces=["joint"])
    np.testing.assert_allclose(result.vectors["joint"], expected, atol=1e-5)
    assert result.quality["windows"] == len(windows)


def test_identity_classifier_scores_every_identity():
    head = IdentityClassifier(256, 17)
    assert head(torch.randn(5, 256)).shape == (5, 17)


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_face_weights_load_into_the_face_subnet(tmp_path, suffix):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    source = JointModel(get_config("wang2020")).face
    state = {key: value.clone() for key, value in source.state_dict().items()}
    # facenet-pytorch's VGGFace2 file also carries its 8631-way classifier; it must be dropped
    state["logits.weight"] = torch.randn(8631, 512)
    state["logits.bias"] = torch.randn(8631)
    path = tmp_path / f"vggface2{suffix}"
    if suffix == ".pt":
        torch.save(state, path)
    else:
        save_file(state, path)
    torch.manual_seed(2)
    target = JointModel(get_config("wang2020")).face
    digest = load_face_weights(target, path)
    assert len(digest) == 64
    for key, value in target.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_face_weights_that_do_not_fit_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"conv.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(ValueError, match="do not fit the face subnet"):
        load_face_weights(JointModel(get_config("wang2020")).face, path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="not a readable weights file"):
        load_face_weights(JointModel(get_config("wang2020")).face, junk)


def test_config_round_trips_through_a_dict():
    config = get_config("small")
    assert JointModelConfig.from_dict(config.to_dict()) == config
    with pytest.raises(KeyError, match="known: experts, experts-fusion, small, wang2020"):
        get_config("nope")
