"""The wen2021 and xiong2019 recipes through the real trainer on a tiny synthetic corpus (CPU): each learns (held-out
identities, against the untrained model), resumes exactly, and its card names the recipe and its settings; an
experts-recipe checkpoint calibrates through `fvmatch calibrate`."""
from __future__ import annotations

import functools

import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
from mediagen import run_cli_here
from trainruns import stopped_after_first_epoch_then_resumed

from fvmatch.models.checkpoint import load_checkpoint, read_card
from fvmatch.models.config import get_config
from fvmatch.models.joint import build_model
from fvmatch.synth import CorpusSpec, write_corpus
from fvmatch.training import losses_wen2021
from fvmatch.training.data import PreparedCorpus
from fvmatch.training.prepare import prepare_corpus
from fvmatch.training.recipes import RECIPES, get_recipe
from fvmatch.training.trainer import TrainSettings, train

HEAD = dict(config="experts", epochs=1, passes=30, batch_size=8, lr_start=0.05, lr_end=0.005, seed=1)
# the weight-learning stage, shortened for a test: 3 warm-up passes, an update every pass (the schedule is the same)
QUICK_WEIGHTING = functools.partial(losses_wen2021.Wen2021Loss, warmup_passes=3, update_passes=1)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("papers")
    write_corpus(root / "corpus", CorpusSpec(identities=40, seed=11, faces_per_identity=2, clips_per_identity=2,
                                             clip_seconds=2.0), workers=1)
    prepare_corpus(root / "corpus", root / "cache", workers=1)
    return root / "cache"


@pytest.fixture
def quick_weighting(monkeypatch):
    monkeypatch.setattr("fvmatch.training.recipes.wen2021.Wen2021Loss", QUICK_WEIGHTING)


def held_out_figures(recipe_name: str, prepared, model) -> dict:
    recipe = get_recipe(recipe_name)
    corpus = PreparedCorpus(prepared)
    data = recipe.experts.data(corpus, get_config("experts"))  # the vectors only: no weight learning here
    identities = recipe.usable(data, corpus.split("val") + corpus.split("test"))
    return recipe.validate(model, data, identities, torch.device("cpu"))


def test_both_recipes_are_registered_with_their_default_configs_and_a_new_instance_per_run():
    assert RECIPES["wen2021"].default_config == "experts" and RECIPES["xiong2019"].default_config == "small"
    assert get_recipe("wen2021") is not get_recipe("wen2021")
    assert get_recipe("wen2021").weighting is None


@pytest.mark.parametrize("recipe", ["wen2021", "xiong2019"])
def test_recipe_head_beats_the_untrained_one_on_held_out_identities(recipe, prepared, tmp_path, quick_weighting):
    torch.manual_seed(HEAD["seed"])
    before = held_out_figures(recipe, prepared, build_model(get_config("experts")))
    out = tmp_path / f"{recipe}.safetensors"
    train(prepared, out, TrainSettings(recipe=recipe, **HEAD))
    after = held_out_figures(recipe, prepared, load_checkpoint(out).model)
    print(f"{recipe}: held-out AUC {before['verification_auc']:.3f} -> {after['verification_auc']:.3f}, "
          f"V-F 1:2 {before['vf_1to2_accuracy']:.3f} -> {after['vf_1to2_accuracy']:.3f}")
    assert after["verification_auc"] > before["verification_auc"] + 0.15
    assert after["vf_1to2_accuracy"] > before["vf_1to2_accuracy"] + 0.1


def test_wen2021_card_names_the_recipe_its_settings_and_the_identities_it_filtered(prepared, tmp_path,
                                                                                   quick_weighting):
    out = tmp_path / "wen.safetensors"
    train(prepared, out, TrainSettings(recipe="wen2021", **{**HEAD, "passes": 1}))
    card = read_card(out)
    assert card["training"]["settings"]["recipe"] == "wen2021" and card["config"]["name"] == "experts"
    recipe_card = card["training"]["recipe"]
    assert recipe_card["name"] == "wen2021"
    assert recipe_card["objective"]["local_scale"] == 10.0 and recipe_card["objective"]["final_ratio"] == 0.9
    assert recipe_card["objective"]["warmup_passes"] == 3  # the settings this run used
    weighting = recipe_card["identity_weighting"]
    train_ids = len(PreparedCorpus(prepared).split("train"))
    # 32 identities: 16 at the first update, then one per update until 29 (>= 90%); the 3 hardest filtered out
    assert weighting["identities"] == train_ids == 32
    assert (weighting["weighted"], weighting["filtered"], weighting["updates"]) == (29, 3, 14)
    assert len(weighting["filtered_identities"]) == 3 and all(i.startswith("id") for i in weighting["filtered_identities"])
    assert weighting["steps"] == 3 + 13  # one step per pass at batch 32
    assert set(card["experts"]) == {"dlib-face", "ge2e-voice"}


def test_xiong2019_card_and_a_few_steps_on_the_small_config(prepared, tmp_path):
    out = tmp_path / "xiong.safetensors"
    result = train(prepared, out, TrainSettings(recipe="xiong2019", epochs=1, batch_size=16, crop_seconds=1.0,
                                                lr_start=0.01, lr_end=0.001))
    card = read_card(out)
    assert result.steps == 2 and card["config"]["name"] == "small" and "experts" not in card
    assert card["training"]["recipe"]["name"] == "xiong2019"
    assert card["training"]["recipe"]["objective"] == {"norm": 4.0, "margin": 6.4}
    assert 0.0 <= card["metrics"]["validation"]["verification_auc"] <= 1.0


@pytest.mark.parametrize("recipe", ["wen2021", "xiong2019"])
def test_resume_continues_exactly_where_the_run_stopped(recipe, prepared, tmp_path, quick_weighting):
    settings = TrainSettings(recipe=recipe, **{**HEAD, "epochs": 2, "passes": 2})
    straight = tmp_path / "straight.safetensors"
    train(prepared, straight, settings)
    stopped = tmp_path / "stopped.safetensors"
    resumed = stopped_after_first_epoch_then_resumed(prepared, stopped, settings)
    assert resumed.epochs_run == 1
    a, b = load_checkpoint(straight).model.state_dict(), load_checkpoint(stopped).model.state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert read_card(straight)["model_id"] == read_card(stopped)["model_id"]


def test_wen2021_reads_its_learned_weights_from_the_cache_on_a_second_run(prepared, tmp_path, quick_weighting,
                                                                          monkeypatch):
    train(prepared, tmp_path / "first.safetensors", TrainSettings(recipe="wen2021", **{**HEAD, "passes": 1}))

    def no_second_learning(*args, **kwargs):
        raise AssertionError("the weights were learned again")

    monkeypatch.setattr("fvmatch.training.recipes.wen2021.learn_identity_weights", no_second_learning)
    train(prepared, tmp_path / "second.safetensors", TrainSettings(recipe="wen2021", **{**HEAD, "passes": 1}))
    assert (read_card(tmp_path / "first.safetensors")["training"]["recipe"]["identity_weighting"]
            == read_card(tmp_path / "second.safetensors")["training"]["recipe"]["identity_weighting"])


@pytest.mark.slow
def test_calibrate_fits_an_experts_recipe_checkpoint(prepared, tmp_path):
    """On a plain folder of 10 people with 5 faces and 5 voices each: the fewest trials calibration accepts."""
    model = tmp_path / "experts.safetensors"
    train(prepared, model, TrainSettings(recipe="experts", **{**HEAD, "passes": 10}))
    folder = tmp_path / "folder"
    write_corpus(folder, CorpusSpec(identities=10, seed=5, faces_per_identity=5, clips_per_identity=5,
                                    clip_seconds=1.5, image_size=160), workers=1)
    (folder / "meta.csv").unlink()  # a plain folder: every person is used
    out = tmp_path / "calibrated.safetensors"
    result = run_cli_here("calibrate", folder, "--model", model, "--out", out, "--space", "joint", "--json")
    assert result.returncode == 0, result.stderr
    calibration = read_card(out)["calibration"]
    entries = {key: entry for key, entry in calibration.items() if isinstance(entry, dict) and "map" in entry}
    assert {entry["space"] for entry in entries.values()} == {"joint"}
    face_voice = next(entry for key, entry in entries.items() if "face-voice" in key)
    assert face_voice["trials"]["same"] >= 100 and face_voice["trials"]["different"] >= 1000
    assert 0.0 <= face_voice["eer"]["value"] < 0.5  # the trained head separates these unseen people
    assert read_card(out)["model_id"] == read_card(model)["model_id"]
