"""`evaluate` measures the sex evidence with the seed protocols, U beside G (fvmatch.evaluation.attribute_evidence):
on real faces and voices of known sex, linked into people of one sex each, it reads above chance unstratified and
at chance within one sex, and `evaluate` prints and returns both."""
from __future__ import annotations

import csv
import json
import os

import pytest

from mediagen import REALMEDIA, run_cli_here

# realmedia people of known sex (VoxCeleb1 meta, LibriSpeech SPEAKERS.TXT), a face and a voice of one sex per person
LINKED = {"F": (("vox1_Freida_Pinto", "librispeech_1998"), ("vox1_Golshifteh_Farahani", "librispeech_3080"),
                ("vox1_Jasika_Nicole", "librispeech_3331"), ("vox1_Julia_Stiles", "librispeech_367"),
                ("fr_rose_leslie", "librispeech_533")),
          "M": (("fr_barack_obama", "librispeech_2033"), ("fr_joe_biden", "librispeech_2414"),
                ("vox1_Garrett_Hedlund", "librispeech_2609"), ("vox1_Gaspard_Ulliel", "librispeech_3005"),
                ("vox1_Harry_Treadaway", "librispeech_1688"))}


@pytest.fixture(scope="module")
def linked_corpus(tmp_path_factory):
    """A corpus with meta.csv: 10 people, each two real photos of one person and two recordings of another of the
    same sex (no real person's face and voice can be brought here together); the smallest files, to embed fast."""
    if not (REALMEDIA / "faces").is_dir():
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings of ../shared/realmedia are needed")
    data = tmp_path_factory.mktemp("linked")
    rows = []
    for sex, people in LINKED.items():
        for number, (face, voice) in enumerate(people):
            identity = f"id{sex}{number}"
            for modality, source in (("faces", REALMEDIA / "faces" / face), ("voices", REALMEDIA / "voices" / voice)):
                folder = data / modality / identity / "s1"
                folder.mkdir(parents=True)
                for path in sorted(source.iterdir(), key=lambda path: (path.stat().st_size, path.name))[:2]:
                    os.symlink(path.resolve(), folder / path.name)
            rows.append({"identity": identity, "name": f"{face}+{voice}", "gender": sex.lower(), "nationality": "x",
                         "age": "", "split": "test"})
    with open(data / "meta.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return data


@pytest.fixture(scope="module")
def embedding_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


def test_sex_evidence_reads_above_chance_across_sexes_and_at_chance_within_one(linked_corpus, embedder,
                                                                              embedding_cache):
    from fvmatch.evaluation import embed_spaces
    from fvmatch.evaluation.attribute_evidence import evaluate_sex, sex_corpus

    corpora = embed_spaces(linked_corpus, embedder, ["dlib-face", "ge2e-voice"], cache_dir=embedding_cache)
    corpus, why_not = sex_corpus(corpora)
    assert why_not is None and corpus.space == "sex" and len(corpus.identities) == 10
    # a face is the one-hot of its reading, a voice the LR table's column of its: the dot product is the pair's LR
    assert set(map(tuple, corpus.faces.vectors.tolist())) <= {(1.0, 0.0), (0.0, 1.0)}
    found = evaluate_sex(corpora, seed=0)
    auc = found["verification"]["face-voice"]
    assert auc["space"] == "sex" and found["spaces"]["sex"]["trial_types"] == ["face-voice"]
    assert auc["U"]["auc"]["value"] > 0.65 and abs(auc["G"]["auc"]["value"] - 0.5) < 0.1
    two = found["matching_1to2"]["V-F"]
    assert two["U"]["accuracy"]["value"] > 0.65 and abs(two["G"]["accuracy"]["value"] - 0.5) < 0.1
    assert "not identity evidence" in found["note"].lower()
    assert evaluate_sex({"dlib-face": corpora["dlib-face"]})["why_not"].startswith("needs the items embedded")


def test_evaluate_prints_and_returns_the_sex_evidence_beside_the_spaces(linked_corpus, embedding_cache):
    shown = run_cli_here("evaluate", linked_corpus, "--space", "sex", "--cache", embedding_cache)  # vectors cached
    assert shown.returncode == 0, shown.stderr
    assert "sex evidence, face-voice (10 identities): not identity evidence" in " ".join(shown.stdout.split())
    assert "V-F 1:2 accuracy   G        sex" in shown.stdout and "G rows (both people of one gender)" in shown.stdout
    found = json.loads(run_cli_here("evaluate", linked_corpus, "--space", "dlib-face", "--cache", embedding_cache,
                                    "--json").stdout)
    assert found["attribute_evidence"] == {"why_not": "needs the items embedded in dlib-face and ge2e-voice, the "
                                                      "spaces the sex heads read"}
    refused = run_cli_here("calibrate", linked_corpus, "--space", "sex", "--out", linked_corpus / "x.safetensors")
    assert refused.returncode == 2 and refused.stderr.startswith("fvmatch: error: --space: 'sex': the sex evidence")
