"""fvmatch train --dry-run on an imported miniature VoxCeleb1: what the run would do and what would stop it."""
from __future__ import annotations

import json

import pytest
from mediagen import run_cli_here
from voxceleb_tree import build_release

from fvmatch.training.dry_run import FACE_BYTES, VOICE_BYTES_PER_SECOND


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("dry-run")
    data = root / "corpus"
    result = run_cli_here("import", "voxceleb1", build_release(root), data)
    assert result.returncode == 0, result.stderr
    return data


def test_dry_run_reports_splits_steps_measured_rates_disk_and_the_problems_without_writing(corpus, tmp_path):
    pytest.importorskip("torch", reason="train needs the training extra (torch): pip install 'fvmatch[train]'")
    out = tmp_path / "missing" / "model.safetensors"
    result = run_cli_here("train", corpus, "--out", out, "--dry-run", "--batch-size", "2", "--epochs", "3", "--json")
    assert result.returncode == 2, result.stderr  # the output folder is missing: the run would fail
    plan = json.loads(result.stdout)
    assert plan["splits"] == {"train": {"identities": 3, "usable": 3, "faces": 6, "voices": 6},
                              "val": {"identities": 0, "usable": 0, "faces": 0, "voices": 0},
                              "test": {"identities": 3, "usable": 3, "faces": 6, "voices": 6}}
    assert plan["steps"] == {"per_epoch": 1, "total": 3, "epochs": 3, "batch_size": 2, "passes": 1,
                             "pairs_per_epoch": 2}
    assert plan["problems"] == [f"{out.parent}: no such folder: the checkpoint model.safetensors cannot be written "
                                "there (create the folder first)"]
    assert plan["warnings"][0].startswith("the val split has 0 identities usable")
    rates = plan["measured"]["seconds_per_item"]
    assert set(rates) == {"prepare_face", "prepare_voice"} and all(seconds > 0 for seconds in rates.values())
    speech = plan["measured"]["speech_seconds_per_clip"]
    assert 0 < speech <= 2.0  # the clips are 2 s long
    assert plan["disk"]["shards_bytes"] == int(12 * FACE_BYTES + 12 * speech * VOICE_BYTES_PER_SECOND)
    hours = plan["projected"]["hours"]
    processes = plan["projected"]["processes"]
    assert hours["prepare_face"] == round(12 * rates["prepare_face"] / processes / 3600, 6)
    assert not (corpus / "prepared").exists() and not out.parent.exists()


def test_dry_run_in_text_says_each_finding_and_exits_0_when_nothing_stops_the_run(corpus, tmp_path):
    pytest.importorskip("torch", reason="train needs the training extra (torch): pip install 'fvmatch[train]'")
    result = run_cli_here("train", corpus, "--out", tmp_path / "model.safetensors", "--dry-run", "--recipe",
                          "experts")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1] == "identities (usable: a face and a voice): train 3 of 3, val 0 of 0, test 3 of 3"
    assert lines[3].startswith("steps: 1 per epoch x 10 epochs = 10 (batches of 3 identities")
    measured = next(line for line in lines if line.startswith("measured per item: "))
    assert "expert face" in measured and "expert voice" in measured and "prepare face" in measured
    assert lines[-1] == "0 problems: nothing found that would stop the run"
    assert not (tmp_path / "model.safetensors").exists() and not (corpus / "prepared").exists()


def test_dry_run_on_prepared_shards_counts_their_items_and_measures_nothing_already_done(corpus, tmp_path):
    pytest.importorskip("torch", reason="train needs the training extra (torch): pip install 'fvmatch[train]'")
    cache = tmp_path / "cache"
    assert run_cli_here("prepare", corpus, cache, "--workers", "1").returncode == 0
    result = run_cli_here("train", cache, "--out", tmp_path / "m.safetensors", "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["prepared"] is True and plan["items"] == {"faces": 12, "voices": 12}
    assert {name: entry["usable"] for name, entry in plan["splits"].items()} == {"train": 3, "val": 0, "test": 3}
    assert plan["measured"]["seconds_per_item"] == {} and plan["disk"]["shards_bytes"] == 0
