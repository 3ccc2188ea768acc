"""The synthetic paired corpus: layout, metadata, splits, determinism, the ideal observer."""
from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys

import pytest
import soundfile
from PIL import Image

from fvmatch.synth import CorpusSpec, write_corpus
from fvmatch.synth.corpus import assign_splits
from fvmatch.synth.identity import ideal_matching_accuracy

SPEC = CorpusSpec(identities=5, seed=11, faces_per_identity=2, clips_per_identity=2, clip_seconds=2.0)


def tree_digest(root) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    summary = write_corpus(out, SPEC, workers=1)
    return out, summary


def test_corpus_has_the_training_layout(corpus):
    out, summary = corpus
    faces = sorted(out.glob("faces/*/*/*.jpg"))
    clips = sorted(out.glob("voices/*/*/*.wav"))
    assert len(faces) == summary["faces"] == 10 and len(clips) == summary["clips"] == 10
    assert Image.open(faces[0]).size == (256, 256)
    info = soundfile.info(clips[0])
    assert (info.samplerate, info.channels, info.frames) == (16000, 1, 32000)
    assert {path.parts[-3] for path in faces} == {path.parts[-3] for path in clips} == {f"id0000{i}" for i in range(5)}


def test_meta_csv_lists_every_identity_with_its_metadata(corpus):
    out, _ = corpus
    with open(out / "meta.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["identity"] for row in rows] == [f"id0000{i}" for i in range(5)]
    assert set(rows[0]) == {"identity", "name", "gender", "nationality", "age", "split"}
    assert all(row["gender"] in {"m", "f"} and 18 <= int(row["age"]) <= 80 for row in rows)
    assert {row["split"] for row in rows} <= {"train", "val", "test"}


def test_same_seed_gives_identical_files_however_many_workers(corpus, tmp_path):
    out, _ = corpus
    again = tmp_path / "again"
    write_corpus(again, SPEC, workers=2)
    first, second = tree_digest(out), tree_digest(again)
    assert first == second
    other = tmp_path / "other"
    write_corpus(other, CorpusSpec(**{**SPEC.__dict__, "seed": 12}), workers=1)
    changed = [name for name, digest in tree_digest(other).items() if first.get(name) != digest]
    assert len(changed) >= 20


def test_splits_are_identity_disjoint_and_fixed_by_the_seed():
    splits = assign_splits(200, seed=3)
    assert splits == assign_splits(200, seed=3) and splits != assign_splits(200, seed=4)
    assert (splits.count("train"), splits.count("val"), splits.count("test")) == (160, 20, 20)
    assert assign_splits(10, seed=0).count("test") == 1


def test_ideal_observer_is_near_perfect_and_gender_matched_trials_are_harder():
    unstratified = ideal_matching_accuracy(trials=100_000, seed=1)
    same_gender = ideal_matching_accuracy(trials=100_000, seed=1, same_gender=True)
    assert 0.97 < unstratified <= 1.0
    assert same_gender < unstratified


def test_synth_command_writes_the_corpus_and_reports_json(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fvmatch.cli", "synth", str(tmp_path / "c"), "--identities", "3",
                             "--seed", "5", "--faces-per-identity", "1", "--clips-per-identity", "1", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["identities"] == 3 and summary["faces"] == 3
    assert json.loads((tmp_path / "c" / "synth.json").read_text())["seed"] == 5
