"""Training recipes: --recipe picks one, the card names it, resume keeps to it; the experts recipe's head on frozen
dlib-face and ge2e-voice vectors learns, and its checkpoint embeds media as a joint space (CPU, tiny corpus)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
from mediagen import run_cli_here

from fvmatch.analysis.embedder import Embedder
from fvmatch.models.checkpoint import load_checkpoint, read_card
from fvmatch.models.config import get_config
from fvmatch.models.joint import build_model
from fvmatch.spaces import FACE_SPACE, JOINT, VOICE_SPACE
from fvmatch.synth import CorpusSpec, write_corpus
from fvmatch.training.data import PreparedCorpus
from fvmatch.training.prepare import prepare_corpus
from fvmatch.training.recipes import get_recipe
from fvmatch.training.trainer import TrainSettings, train

EXPERTS = TrainSettings(recipe="experts", config="experts", epochs=1, passes=2, batch_size=8, lr_start=0.05,
                        lr_end=0.005, seed=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    write_corpus(root / "corpus", CorpusSpec(identities=40, seed=11, faces_per_identity=2, clips_per_identity=2,
                                             clip_seconds=2.0), workers=1)
    prepare_corpus(root / "corpus", root / "cache", workers=1)
    return root / "cache"


def held_out(corpus: PreparedCorpus) -> list[int]:
    return corpus.split("val") + corpus.split("test")


def test_experts_checkpoint_card_names_the_recipe_and_the_frozen_spaces(prepared, tmp_path):
    out = tmp_path / "experts.safetensors"
    result = train(prepared, out, EXPERTS)
    card = read_card(out)
    assert card["training"]["settings"]["recipe"] == "experts"
    assert card["training"]["recipe"]["name"] == "experts"
    assert card["training"]["recipe"]["objective"]["margin_cross"] > 0  # the wang2020 objective's settings
    assert card["config"]["face_input"] == FACE_SPACE and card["config"]["voice_input"] == VOICE_SPACE
    assert set(card["experts"]) == {FACE_SPACE, VOICE_SPACE}
    assert result.steps == 2 * (len(PreparedCorpus(prepared).split("train")) // 8)
    assert list((prepared / "experts").iterdir())  # the spaces' vectors are cached beside the shards


def test_wang2020_stays_the_default_recipe_and_its_card_says_so(prepared, tmp_path):
    out = tmp_path / "wang.safetensors"
    train(prepared, out, TrainSettings(epochs=1, batch_size=4, crop_seconds=1.0, lr_start=0.01, lr_end=1e-3))
    card = read_card(out)
    assert card["training"]["settings"]["recipe"] == "wang2020" and card["training"]["recipe"]["name"] == "wang2020"
    assert card["config"]["name"] == "small" and "experts" not in card


def test_resume_with_another_recipe_is_refused_naming_both(prepared, tmp_path):
    out = tmp_path / "experts.safetensors"
    train(prepared, out, EXPERTS)
    other = TrainSettings(**{**EXPERTS.to_dict(), "recipe": "wang2020", "config": "small"})
    with pytest.raises(ValueError, match=r"trained with recipe 'experts', not 'wang2020'"):
        train(prepared, out, other, resume=True)


def test_a_recipe_refuses_a_config_it_cannot_train(prepared, tmp_path):
    with pytest.raises(ValueError, match="use --config experts"):
        train(prepared, tmp_path / "x.safetensors", TrainSettings(**{**EXPERTS.to_dict(), "config": "small"}))
    with pytest.raises(ValueError, match="use --recipe experts"):
        train(prepared, tmp_path / "y.safetensors", TrainSettings(config="experts"))
    # a pair encoder only fuse-after-align trains: saved untrained, verify and identify would score pairs with it
    with pytest.raises(ValueError, match="use --recipe fuse-after-align"):
        train(prepared, tmp_path / "z.safetensors", TrainSettings(**{**EXPERTS.to_dict(), "config": "experts-fusion"}))
    assert not (tmp_path / "z.safetensors").exists()


def test_experts_head_beats_the_untrained_one_on_held_out_identities(prepared, tmp_path):
    recipe = get_recipe("experts")
    corpus = PreparedCorpus(prepared)
    data = recipe.data(corpus, get_config("experts"))
    identities = recipe.usable(data, held_out(corpus))
    torch.manual_seed(EXPERTS.seed)
    before = recipe.validate(build_model(get_config("experts")), data, identities, torch.device("cpu"))
    out = tmp_path / "experts.safetensors"
    train(prepared, out, TrainSettings(**{**EXPERTS.to_dict(), "passes": 30}))
    after = recipe.validate(load_checkpoint(out).model, data, identities, torch.device("cpu"))
    print(f"held-out identities {len(identities)}: AUC {before['verification_auc']:.3f} -> {after['verification_auc']:.3f}, "
          f"V-F 1:2 {before['vf_1to2_accuracy']:.3f} -> {after['vf_1to2_accuracy']:.3f}")
    assert after["verification_auc"] > before["verification_auc"] + 0.15
    assert after["vf_1to2_accuracy"] > before["vf_1to2_accuracy"] + 0.1


def test_experts_checkpoint_embeds_media_through_its_frozen_spaces_then_its_heads(prepared, tmp_path):
    out = tmp_path / "experts.safetensors"
    train(prepared, out, EXPERTS)
    corpus_root = Path(PreparedCorpus(prepared).plan["source"])
    face = sorted(corpus_root.glob("faces/*/*/*"))[0]
    voice = sorted(corpus_root.glob("voices/*/*/*"))[0]
    embedder = Embedder.load(out)
    face_item = embedder.embed_face(face, spaces=[JOINT, FACE_SPACE])[0]
    voice_item = embedder.embed_voice(voice, spaces=[JOINT, VOICE_SPACE])
    model = load_checkpoint(out).model
    with torch.no_grad():
        expected_face = model.embed_faces(torch.from_numpy(face_item.vectors[FACE_SPACE])[None])[0].numpy()
        expected_voice = model.embed_voices(torch.from_numpy(voice_item.vectors[VOICE_SPACE])[None])[0].numpy()
    assert face_item.vectors[JOINT].shape == (256,) and voice_item.vectors[JOINT].shape == (256,)
    np.testing.assert_allclose(face_item.vectors[JOINT], expected_face, atol=1e-5)
    np.testing.assert_allclose(voice_item.vectors[JOINT], expected_voice, atol=1e-5)


def test_an_experts_checkpoint_whose_spaces_are_not_installed_is_refused(prepared, tmp_path):
    from fvmatch.errors import ModelMismatch
    from fvmatch.models.checkpoint import write_checkpoint

    out = tmp_path / "experts.safetensors"
    train(prepared, out, EXPERTS)
    card = read_card(out)
    card["experts"][FACE_SPACE] = "0" * 64  # a head trained on another dlib-face model
    state = {key: value.contiguous() for key, value in load_checkpoint(out).model.state_dict().items()}
    write_checkpoint(state, card, out)
    with pytest.raises(ModelMismatch, match="trained on dlib-face model 0000"):
        Embedder.load(out).space(JOINT)


def test_train_command_takes_the_recipe_and_refuses_an_unknown_one(prepared, tmp_path):
    out = tmp_path / "cli.safetensors"
    result = run_cli_here("train", prepared, "--out", out, "--recipe", "experts", "--epochs", "1", "--batch-size", "8",
                          "--json")
    assert result.returncode == 0, result.stderr
    assert read_card(out)["training"]["settings"]["config"] == "experts"  # the recipe's default config
    refused = run_cli_here("train", prepared, "--out", out, "--recipe", "nope")
    assert refused.returncode == 2 and "unknown recipe 'nope'" in refused.stderr
