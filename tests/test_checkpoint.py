"""Checkpoints: bit-exact round trip, validation of the card, refusal of anything that is not one."""
from __future__ import annotations

import json

import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch

from fvmatch.models.checkpoint import (CARD_FIELDS, DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, read_card,
                                       save_checkpoint, weights_sha256, write_checkpoint)
from fvmatch.models.config import get_config
from fvmatch.models.joint import JointModel


@pytest.fixture()
def saved(tmp_path):
    torch.manual_seed(7)
    model = JointModel(get_config("small"))
    # give BatchNorm non-trivial running statistics, as a trained model has
    model.train()
    model(torch.randint(0, 256, (4, 3, 160, 160), dtype=torch.uint8), torch.randn(4, 64, 100))
    path = tmp_path / "model.safetensors"
    card = save_checkpoint(model, path, training_data="unit test", metrics={"auc": 0.5})
    return model, path, card


def test_checkpoint_round_trips_bit_exactly(saved):
    model, path, card = saved
    loaded = load_checkpoint(path)
    original = model.state_dict()
    assert set(loaded.model.state_dict()) == set(original)
    for key, value in loaded.model.state_dict().items():
        assert torch.equal(value, original[key]), key
    assert loaded.model_id == card["model_id"] == weights_sha256(original)
    assert loaded.card == json.loads(json.dumps(card))
    assert not loaded.model.training


def test_card_holds_what_an_analyst_needs(saved):
    _, path, card = saved
    assert set(CARD_FIELDS) <= set(read_card(path))
    assert card["config"]["name"] == "small" and card["embedding_dim"] == 256
    assert card["calibration"] is None and card["metrics"] == {"auc": 0.5}


def test_model_id_ignores_the_card_but_not_the_weights(saved, tmp_path):
    model, path, card = saved
    state = {key: value.clone() for key, value in model.state_dict().items()}
    recalibrated = dict(card, calibration={"face-voice": {"slope": 1.0}})
    write_checkpoint(state, recalibrated, tmp_path / "recalibrated.safetensors")
    assert load_checkpoint(tmp_path / "recalibrated.safetensors").model_id == card["model_id"]
    state["shared.bias"][0] += 1e-3
    write_checkpoint(state, card, tmp_path / "altered.safetensors")
    with pytest.raises(CheckpointError, match="weights do not match the model card"):
        load_checkpoint(tmp_path / "altered.safetensors")


def test_corrupted_checkpoint_is_refused(saved):
    _, path, _ = saved
    data = bytearray(path.read_bytes())
    data[-100] ^= 0xFF  # a flipped byte in the last tensor
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(path)


def test_truncated_checkpoint_is_refused(saved):
    _, path, _ = saved
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="model.safetensors: "):
        load_checkpoint(path)


def test_files_that_are_not_checkpoints_are_refused(tmp_path):
    from safetensors.torch import save_file

    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="notes.safetensors: not a safetensors checkpoint"):
        load_checkpoint(text)
    bare = tmp_path / "bare.safetensors"
    save_file({"x": torch.zeros(2)}, bare)
    with pytest.raises(CheckpointError, match="bare.safetensors: safetensors file without an fvmatch model card"):
        load_checkpoint(bare)
    pickled = tmp_path / "model.pt"
    torch.save({"x": torch.zeros(2)}, pickled)
    with pytest.raises(CheckpointError, match="model.pt: not a safetensors checkpoint"):
        load_checkpoint(pickled)
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_card_for_other_weights_is_refused(saved, tmp_path):
    _, _, card = saved
    torch.manual_seed(99)
    other = {key: value.clone() for key, value in JointModel(get_config("small")).state_dict().items()}
    write_checkpoint(other, card, tmp_path / "swapped.safetensors")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(tmp_path / "swapped.safetensors")


def test_the_shipped_default_checkpoint_loads_and_says_what_it_is():
    checkpoint = load_checkpoint()
    assert DEFAULT_CHECKPOINT.is_file()
    assert checkpoint.card["config"]["name"] == "small"
    assert checkpoint.card["training_data"]


def test_opening_a_checkpoint_reads_its_card_without_torch_or_the_weights():
    import subprocess
    import sys

    probe = ("import sys\n"
             "from fvmatch.analysis.embedder import Embedder\n"
             "embedder = Embedder.load()\n"
             "print(embedder.model_id[:16], embedder.embedding_dim, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [read_card(DEFAULT_CHECKPOINT)["model_id"][:16], "256", "False"]


def test_weights_that_do_not_match_the_card_are_refused_at_first_use_or_when_asked_at_once(saved, tmp_path):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import InvalidCheckpoint

    _, _, card = saved
    torch.manual_seed(99)
    other = {key: value.clone() for key, value in JointModel(get_config("small")).state_dict().items()}
    swapped = tmp_path / "swapped.safetensors"
    write_checkpoint(other, card, swapped)
    embedder = Embedder.load(swapped)  # the card alone is sound
    assert embedder.model_id == card["model_id"]
    with pytest.raises(InvalidCheckpoint, match="swapped.safetensors: weights do not match"):
        embedder.space("joint")
    with pytest.raises(InvalidCheckpoint, match="swapped.safetensors: weights do not match"):
        Embedder.load(swapped, load_weights=True)


def test_a_card_that_describes_no_model_is_refused_when_opened(saved, tmp_path):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import InvalidCheckpoint

    model, _, card = saved
    altered = tmp_path / "altered.safetensors"
    write_checkpoint(model.state_dict(), dict(card, embedding_dim=128), altered)
    with pytest.raises(InvalidCheckpoint, match="altered.safetensors: model card's embedding_dim 128 differs"):
        Embedder.load(altered)


def test_a_checkpoint_replaced_after_it_was_opened_is_refused_at_first_use(saved, tmp_path):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import InvalidCheckpoint

    model, path, card = saved
    embedder = Embedder.load(path)
    write_checkpoint(model.state_dict(), dict(card, training_data="something else"), path)
    with pytest.raises(InvalidCheckpoint, match="model.safetensors: the checkpoint changed after it was opened"):
        embedder.space("joint")
