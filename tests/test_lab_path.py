"""The laboratory's whole path on each release layout (VoxCeleb1, VoxCeleb2, a laboratory's pairs): import, prepare,
train, evaluate on the published lists, calibrate, then verify with the calibrated checkpoint (issue 31's "done when").

Each layout gets a generated tree just big enough for `calibrate`: 10 val people with 5 faces and 5 voices each give
exactly MIN_SAME_TRIALS face-face and voice-voice same-person pairs (10 x C(5, 2)), 250 face-voice ones, and 2,250
different-person face-voice ones; 2 train and 2 test people beside them. The default run trains the cheapest recipe
(wang2020, small config, one step); every recipe on every layout is `-m long`.
"""
from __future__ import annotations

import json
import math

import pytest
from mediagen import run_cli_here
from voxceleb_tree import LAYOUTS, build_generated_release, render_corpus

from fvmatch.calibration.fitting import MIN_IDENTITIES, MIN_SAME_TRIALS, log10_lr, verbal_equivalent
from fvmatch.corpus import read_meta

SPLITS = {"train": 2, "val": 10, "test": 2}
FACES = VOICES = 5
RECIPES = ("wang2020", "experts", "fuse-after-align", "wen2021", "xiong2019")
TINY_TRAINING = ("--epochs", "1", "--batch-size", "2", "--crop-seconds", "1")  # 2 train people: one step


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """One synthetic corpus, laid out as each release in turn (same people, so the layouts are comparable)."""
    return render_corpus(tmp_path_factory.mktemp("lab-rendered") / "rendered", sum(SPLITS.values()), FACES, VOICES)


@pytest.fixture(scope="module", params=LAYOUTS)
def imported(request, rendered, tmp_path_factory):
    layout = request.param
    root = tmp_path_factory.mktemp(f"lab-{layout}")
    tree = build_generated_release(root / "release", layout, rendered, SPLITS)
    data = root / "corpus"
    result = run_cli_here("import", layout, tree["src"], data, *tree["import_args"], "--json")
    assert result.returncode == 0, result.stderr
    return {"layout": layout, "root": root, "tree": tree, "data": data, "summary": json.loads(result.stdout)}


@pytest.fixture(scope="module")
def prepared(imported):
    cache = imported["root"] / "cache"
    result = run_cli_here("prepare", imported["data"], cache, "--workers", "1", "--json")
    assert result.returncode == 0, result.stderr
    return cache, json.loads(result.stdout)


def run_path(imported, cache, recipe: str, *train_options: str, run: str = "cheapest") -> dict:
    """train (one step) -> evaluate (each published list of the layout, else the drawn protocols) -> calibrate on
    val -> verify a test face against a test voice with the calibrated checkpoint; the JSON of each. `run` names
    the files written (one run's checkpoint never overwrites another's)."""
    root, data, tree = imported["root"], imported["data"], imported["tree"]
    model, calibrated = root / f"{run}-{recipe}.safetensors", root / f"{run}-{recipe}-calibrated.safetensors"
    embeddings = root / f"{run}-embeddings-{recipe}"
    trained = run_cli_here("train", cache, "--out", model, "--recipe", recipe, *train_options, *TINY_TRAINING, "--json")
    assert trained.returncode == 0, trained.stderr
    evaluated = {}
    for trials in tree["published"] or [None]:
        options = ("--trials", trials) if trials is not None else ()
        result = run_cli_here("evaluate", data, "--model", model, "--space", "joint", *options, "--cache", embeddings,
                              "--json")
        assert result.returncode == 0, result.stderr
        evaluated[trials.name if trials is not None else "drawn"] = json.loads(result.stdout)
    calibration = run_cli_here("calibrate", data, "--model", model, "--space", "joint", "--out", calibrated,
                               "--cache", embeddings, "--json")
    assert calibration.returncode == 0, calibration.stderr
    verified = run_cli_here("verify", "--face", tree["face"], "--voice", tree["voice"], "--model", calibrated,
                            "--space", "joint", "--json")
    assert verified.returncode in (0, 1), verified.stderr  # 1: ran fine, not a same-person decision
    return {"trained": json.loads(trained.stdout), "evaluated": evaluated, "calibrated": json.loads(calibration.stdout),
            "verified": json.loads(verified.stdout), "model": model, "embeddings": embeddings,
            "calibrated_model": calibrated}


@pytest.fixture(scope="module")
def cheapest(imported, prepared):
    pytest.importorskip("torch", reason="training needs the training extra: pip install 'fvmatch[train]'")
    return run_path(imported, prepared[0], "wang2020", "--config", "small")


def test_import_puts_every_generated_person_in_the_split_asked(imported):
    rows = {row["identity"]: row["split"] for row in read_meta(imported["data"])}
    assert rows == imported["tree"]["people"]
    assert imported["summary"]["splits"] == SPLITS and imported["summary"]["skipped"] == []
    people = sum(SPLITS.values())
    assert (imported["summary"]["faces"], imported["summary"]["voices"]) == (people * FACES, people * VOICES)


def test_prepare_cuts_every_face_and_voice_of_the_tree(prepared):
    counts = prepared[1]["counts"]
    people = sum(SPLITS.values())
    assert (counts["faces"], counts["voices"], counts["failures"]) == (people * FACES, people * VOICES, 0)
    assert counts["paired_identities"] == people


def test_training_validates_on_the_ten_val_people(cheapest):
    (epoch,) = cheapest["trained"]["history"]
    assert 0.0 <= epoch["val_verification_auc"] <= 1.0 and "val_note" not in epoch


def test_evaluate_reads_each_published_list_of_the_layout_whole(imported, cheapest):
    evaluated = cheapest["evaluated"]
    if imported["layout"] != "voxceleb1":  # VoxCeleb2 and a laboratory's pairs publish no list: drawn protocols
        assert list(evaluated) == ["drawn"]
        assert evaluated["drawn"]["verification"]["face-voice"]["U"]["trials"] > 0
        return
    tested = SPLITS["test"]  # each list: every test person against the next, one same and one different trial each
    counts = {name: report["trials"]["counts"] for name, report in evaluated.items()}
    assert counts == {"veri_test2.txt": {"verification V-V U": 2 * tested},
                      "veriflist_test_random_unseenunheard.txt": {"verification F-V U": 2 * tested},
                      "matching_v2f_U.csv": {"1:2 V-F U": tested}}
    assert all(report["trials"]["skipped"] == 0 and not report["failures"] for report in evaluated.values())
    figures = evaluated["veriflist_test_random_unseenunheard.txt"]["verification"]["face-voice"]["U"]
    assert (figures["same"], figures["different"]) == (tested, tested)


def test_calibrate_fits_the_val_split_with_just_enough_trials(cheapest, imported):
    calibration = cheapest["calibrated"]["calibration"]
    assert calibration["split"] == "val" and calibration["data"] == str(imported["data"])
    entries = {key: entry for key, entry in calibration.items() if isinstance(entry, dict) and "map" in entry}
    trials = {key: (entry["trials"]["same"], entry["trials"]["different"]) for key, entry in entries.items()}
    val, per_person = SPLITS["val"], FACES * VOICES
    pairs_within = FACES * (FACES - 1) // 2
    assert sorted(trials.values()) == sorted([
        (val * per_person, val * (val - 1) * per_person),  # face-voice
        (val * pairs_within, (val * FACES) * (val * FACES - 1) // 2 - val * pairs_within),  # face-face
        (val * pairs_within, (val * VOICES) * (val * VOICES - 1) // 2 - val * pairs_within)])  # voice-voice
    assert val == MIN_IDENTITIES and val * pairs_within == MIN_SAME_TRIALS  # the tree is as small as calibrate allows


def test_calibrate_refuses_the_two_person_test_split_saying_what_it_needs(imported, cheapest, tmp_path):
    result = run_cli_here("calibrate", imported["data"], "--model", cheapest["model"], "--space", "joint",
                          "--split", "test", "--out", tmp_path / "c.safetensors", "--cache", cheapest["embeddings"])
    assert result.returncode == 2 and "too few trials in split 'test' to calibrate" in result.stderr
    assert not (tmp_path / "c.safetensors").exists()


def test_the_trained_and_calibrated_checkpoints_run_without_torch_from_their_onnx_graphs(imported, cheapest):
    """train writes the graphs beside its checkpoint, calibrate copies them beside its copy; an analyst's install
    (no torch) then verifies with the calibrated model as torch does."""
    from light_process import run_light

    from fvmatch.spaces.joint_onnx import has_onnx_graphs

    assert has_onnx_graphs(cheapest["model"]) and has_onnx_graphs(cheapest["calibrated_model"])
    tree = imported["tree"]
    light = run_light("verify", "--face", tree["face"], "--voice", tree["voice"], "--model",
                      cheapest["calibrated_model"], "--space", "joint", "--json")
    assert light.returncode in (0, 1), light.stderr
    found, expected = json.loads(light.stdout), cheapest["verified"]
    assert found["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert found["log10_lr"] == pytest.approx(expected["log10_lr"], abs=1e-3)


def test_verify_with_the_calibrated_checkpoint_gives_the_lr_of_its_face_voice_map(cheapest):
    verified, calibration = cheapest["verified"], cheapest["calibrated"]["calibration"]
    assert verified["trial_type"] == "face-voice" and verified["space"] == "joint"
    entry = next(entry for entry in calibration.values() if isinstance(entry, dict)
                 and entry.get("space") == "joint" and entry["trials"]["same"] == SPLITS["val"] * FACES * VOICES)
    expected = round(float(log10_lr(verified["score"], entry)), 4)
    assert math.isclose(verified["log10_lr"], expected, abs_tol=1e-4)
    assert verified["verbal"] == verbal_equivalent(verified["log10_lr"])
    assert "split val" in verified["note"]


@pytest.mark.long
@pytest.mark.parametrize("recipe", RECIPES)
def test_every_recipe_trains_evaluates_calibrates_and_verifies(imported, prepared, recipe):
    pytest.importorskip("torch", reason="training needs the training extra: pip install 'fvmatch[train]'")
    cache = prepared[0]
    experts = run_cli_here("prepare", imported["data"], cache, "--experts", "--workers", "1", "--json")
    assert experts.returncode == 0, experts.stderr  # once per layout: later calls find every vector in the cache
    path = run_path(imported, cache, recipe, run="every")
    assert path["trained"]["history"] and "val_note" not in path["trained"]["history"][0]
    for report in path["evaluated"].values():
        assert report["trials"]["skipped"] == 0 and not report["failures"]
    spaces = {entry["space"] for entry in path["calibrated"]["calibration"].values()
              if isinstance(entry, dict) and "map" in entry}
    assert "joint" in spaces
    verified = path["verified"]
    assert verified["trial_type"] == "face-voice" and math.isfinite(verified["log10_lr"])
    assert verified["verbal"] == verbal_equivalent(verified["log10_lr"]) and "split val" in verified["note"]
