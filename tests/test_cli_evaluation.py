"""evaluate and calibrate as an ML engineer runs them: real processes on a small synthetic corpus."""
from __future__ import annotations

import json

import pytest
from mediagen import run_cli

from fvmatch.synth import CorpusSpec, write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation-corpus")
    # 30 identities: 3 in the test split and 3 in val, 2 faces and 2 clips each
    write_corpus(out, CorpusSpec(identities=30, seed=8, faces_per_identity=2, clips_per_identity=2, clip_seconds=2.0),
                 workers=1)
    return out


def test_evaluate_prints_the_table_writes_plots_and_reports_what_it_measured(corpus, tmp_path):
    plots = tmp_path / "plots"
    trials = tmp_path / "trials.csv"
    result = run_cli("evaluate", corpus, "--split", "test", "--plots", plots, "--write-trials", trials,
                     "--cache", tmp_path / "cache", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["split"] == "test" and report["seed"] == 0 and report["synthetic"] is True
    assert len(report["model_id"]) == 64 and report["identities"] == 3
    auc = report["verification"]["face-voice"]["U"]["auc"]
    assert 0.0 <= auc["ci"][0] <= auc["value"] <= auc["ci"][1] <= 1.0
    assert {"F-V", "V-F"} <= set(report["matching_1to2"]) and report["retrieval"]
    names = {p.name for p in plots.glob("*.png")}
    assert {"roc-face-voice.png", "det-face-voice.png", "histogram-face-voice.png", "matching-1toN.png"} <= names
    assert trials.stat().st_size > 0
    # the same trial list read back gives the same figures (the embeddings now come from the cache)
    again = json.loads(run_cli("evaluate", corpus, "--split", "test", "--trials", trials, "--cache", tmp_path / "cache",
                               "--json").stdout)
    assert again["verification"]["face-voice"]["U"]["auc"]["value"] == auc["value"]
    table = run_cli("evaluate", corpus, "--split", "test", "--cache", tmp_path / "cache")
    assert "verification AUC" in table.stdout and "95% CI" in table.stdout and "published" in table.stdout


def test_calibrate_refuses_too_few_trials_and_says_how_many_are_needed(corpus, tmp_path):
    result = run_cli("calibrate", corpus, "--out", tmp_path / "calibrated.safetensors")
    assert result.returncode == 2
    assert "too few trials" in result.stderr and "needed" in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.startswith("fvmatch: error:")]) == 1
    assert not (tmp_path / "calibrated.safetensors").exists()
