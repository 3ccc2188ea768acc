"""evaluate and calibrate as an ML engineer runs them: real processes on a small synthetic corpus."""
from __future__ import annotations

import csv
import json
import shutil

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
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
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


def test_evaluate_in_text_says_why_rows_are_empty_warns_of_one_person_and_lists_failed_files(corpus, tmp_path):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    rows = list(csv.DictReader(open(corpus / "meta.csv", newline="")))
    person = next(row["identity"] for row in rows if row["split"] == "test")
    data = tmp_path / "one-person"
    for modality in ("faces", "voices"):
        shutil.copytree(corpus / modality / person, data / modality / person)
    (data / "faces" / person / "v9").mkdir()
    (data / "faces" / person / "v9" / "00000.jpg").write_bytes(b"not a jpeg")
    with open(data / "meta.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(row for row in rows if row["identity"] == person)
    result = run_cli("evaluate", data, "--space", "joint")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "- verification AUC U: no person has both items and another person who fits the stratum" in lines
    assert "- F-V 1:2 accuracy U: no person has 1 others who fit the stratum" in lines
    assert any(line.startswith("warning: split 'test' has 1 identity with embedded items") for line in lines)
    at = lines.index("failed to embed (1 file, all of them in --json):")
    assert lines[at + 1].startswith("  1 ") and lines[at + 1].endswith(f"(e.g. faces/{person}/v9/00000.jpg)")
