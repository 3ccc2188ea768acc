"""The fuse-after-align recipe: its losses against plain loops, its hard-negative choice, training through the real
trainer on same-video pairs (held-out identities, resume, card), and verify / identify with its pair encoder's
fused scores through the CLI (CPU, tiny synthetic corpus)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
from mediagen import run_cli_here
from trainruns import stopped_after_first_epoch_then_resumed

from fvmatch.analysis.embedder import Embedder
from fvmatch.evidence.fused_scores import FUSED, fused_scorer
from fvmatch.models.checkpoint import load_checkpoint, read_card
from fvmatch.models.config import get_config
from fvmatch.models.joint import build_model
from fvmatch.spaces import JOINT
from fvmatch.synth import CorpusSpec, write_corpus
from fvmatch.training.data import PreparedCorpus
from fvmatch.training.losses_fusion import contrastive_terms, hard_negatives, matching_loss
from fvmatch.training.prepare import prepare_corpus
from fvmatch.training.recipes import get_recipe
from fvmatch.training.recipes.fuse_after_align import video_of
from fvmatch.training.trainer import TrainSettings, train

FUSION = TrainSettings(recipe="fuse-after-align", config="experts-fusion", epochs=1, passes=10, batch_size=16,
                       lr_start=0.1, lr_end=0.01, seed=1)


def unit_rows(seed: int, rows: int = 5, dim: int = 4) -> torch.Tensor:
    x = torch.randn(rows, dim, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


# ----- losses against plain loops -----------------------------------------------------------------------------------
def test_contrastive_terms_equal_a_loop_over_anchors():
    faces, voices, t = unit_rows(0), unit_rows(1), 0.1
    face_to_voice, voice_to_face = contrastive_terms(faces, voices, t)

    def loop(anchors, others):
        total = 0.0
        for i in range(len(anchors)):
            logits = [float(anchors[i] @ others[j]) / t for j in range(len(others))]
            total += -(logits[i] - math.log(sum(math.exp(v) for v in logits)))
        return total / len(anchors)

    assert float(face_to_voice) == pytest.approx(loop(faces, voices), rel=1e-5)
    assert float(voice_to_face) == pytest.approx(loop(voices, faces), rel=1e-5)


def test_hard_negatives_are_the_most_similar_other_video_item():
    faces, voices = unit_rows(2, rows=6), unit_rows(3, rows=6)
    voice_of_face, face_of_voice = hard_negatives(faces, voices)
    for i in range(6):
        others = [j for j in range(6) if j != i]
        assert int(voice_of_face[i]) == max(others, key=lambda j: float(faces[i] @ voices[j]))
        assert int(face_of_voice[i]) == max(others, key=lambda j: float(voices[i] @ faces[j]))
    # a planted impostor: voice 4 made almost face 1's own direction is face 1's hardest negative
    voices[4] = faces[1] * 0.99 + voices[4] * 0.01
    assert int(hard_negatives(faces, voices)[0][1]) == 4


def test_matching_loss_is_the_mean_cross_entropy_over_positives_and_both_hard_negatives():
    faces, voices = unit_rows(4), unit_rows(5)

    def encoder(f, v):
        return 3.0 * (f * v).sum(dim=1) + 0.2 * f[:, 0] - 0.1

    voice_of_face, face_of_voice = hard_negatives(faces, voices)
    pairs = ([(i, i, 1) for i in range(5)] + [(i, int(voice_of_face[i]), 0) for i in range(5)]
             + [(int(face_of_voice[i]), i, 0) for i in range(5)])
    total = 0.0
    for f, v, label in pairs:
        p = 1 / (1 + math.exp(-float(encoder(faces[f][None], voices[v][None])[0])))
        total += -(math.log(p) if label else math.log(1 - p))
    assert float(matching_loss(encoder, faces, voices)) == pytest.approx(total / len(pairs), rel=1e-5)


def test_a_video_is_the_folder_under_the_identity():
    assert video_of("faces/id00012/v1/00003.jpg") == "v1"
    assert video_of("voices/id00012/abcXYZ/00001.wav") == "abcXYZ"


# ----- training through the real trainer ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("fusion")
    write_corpus(root / "corpus", CorpusSpec(identities=40, seed=11, faces_per_identity=2, clips_per_identity=2,
                                             clip_seconds=2.0), workers=1)
    prepare_corpus(root / "corpus", root / "cache", workers=1)
    return root / "cache"


@pytest.fixture(scope="module")
def trained(prepared, tmp_path_factory):
    out = tmp_path_factory.mktemp("fusion-model") / "faa.safetensors"
    train(prepared, out, FUSION)
    return out


def test_training_beats_the_untrained_model_on_held_out_identities(prepared, trained):
    recipe = get_recipe("fuse-after-align")
    corpus = PreparedCorpus(prepared)
    data = recipe.data(corpus, get_config("experts-fusion"))
    held_out = recipe.usable(data, corpus.split("val") + corpus.split("test"))
    torch.manual_seed(FUSION.seed)
    before = recipe.validate(build_model(get_config("experts-fusion")), data, held_out, torch.device("cpu"))
    after = recipe.validate(load_checkpoint(trained).model, data, held_out, torch.device("cpu"))
    print(f"held-out identities {after['identities']}: fused AUC {before['verification_auc']:.3f} -> "
          f"{after['verification_auc']:.3f}, fused V-F 1:2 {before['vf_1to2_accuracy']:.3f} -> "
          f"{after['vf_1to2_accuracy']:.3f}, cosine AUC {after['cosine_verification_auc']:.3f}")
    assert after["verification_auc"] > before["verification_auc"] + 0.15
    assert after["vf_1to2_accuracy"] > before["vf_1to2_accuracy"] + 0.1


def test_card_names_the_recipe_its_settings_and_holds_the_pair_encoder(prepared, trained):
    card = read_card(trained)
    assert card["training"]["settings"]["recipe"] == "fuse-after-align"
    assert card["training"]["recipe"]["name"] == "fuse-after-align"
    assert card["training"]["recipe"]["objective"] == {"temperature": 0.07, "matching_weight": 1.0}
    assert card["config"]["name"] == "experts-fusion" and card["config"]["fusion_layers"] == 2
    assert set(card["experts"]) == {"dlib-face", "ge2e-voice"}
    assert card["metrics"]["validation"]["score"] == "fused"
    model = load_checkpoint(trained).model
    assert any(key.startswith("pair_encoder.") for key in model.state_dict())
    videos = get_recipe("fuse-after-align").data(PreparedCorpus(prepared), get_config("experts-fusion")).videos
    assert len(videos) == 80 and len({identity for identity, _ in videos}) == 40  # 2 videos each, 1 face + 1 voice


def test_resume_continues_to_the_same_weights(prepared, tmp_path):
    settings = TrainSettings(**{**FUSION.to_dict(), "epochs": 2, "passes": 1})
    straight, stopped = tmp_path / "straight.safetensors", tmp_path / "stopped.safetensors"
    train(prepared, straight, settings)
    resumed = stopped_after_first_epoch_then_resumed(prepared, stopped, settings)
    assert resumed.epochs_run == 1
    assert read_card(stopped)["model_id"] == read_card(straight)["model_id"]


def test_the_recipe_refuses_a_config_without_a_pair_encoder(prepared, tmp_path):
    with pytest.raises(ValueError, match="use --config experts-fusion"):
        train(prepared, tmp_path / "x.safetensors", TrainSettings(**{**FUSION.to_dict(), "config": "experts"}))


# ----- verify and identify with fused scores --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def gallery(prepared, trained, tmp_path_factory):
    """Faces of five held-out identities enrolled; one voice of the first of them as the question."""
    corpus_root = Path(PreparedCorpus(prepared).plan["source"])
    people = sorted(p.name for p in (corpus_root / "faces").iterdir())[-5:]
    directory = tmp_path_factory.mktemp("fusion-gallery") / "gallery"
    faces = [sorted((corpus_root / "faces" / person).glob("*/*.jpg"))[0] for person in people]
    for person, face in zip(people, faces):
        enrolled = run_cli_here("enroll", "--gallery", directory, "--model", trained, "--identity", person,
                                "--face", face)
        assert enrolled.returncode == 0, enrolled.stderr
    voice = sorted((corpus_root / "voices" / people[0]).glob("*/*.wav"))[0]
    return directory, people, faces, voice


def test_verify_reports_the_fused_score_of_a_face_and_a_voice(trained, gallery):
    _, _, faces, voice = gallery
    result = run_cli_here("verify", "--model", trained, "--face", faces[0], "--voice", voice, "--space", "joint",
                          "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    embedder = Embedder.load(trained)
    face_vector = embedder.embed_face(faces[0], spaces=[JOINT])[0].vectors[JOINT]
    voice_vector = embedder.embed_voice(voice, spaces=[JOINT]).vectors[JOINT]
    assert answer["scoring"]["score"] == "fused" and answer["space"] == FUSED
    assert answer["score"] == pytest.approx(fused_scorer(embedder).pair(face_vector, voice_vector), abs=1e-4)
    assert answer["scoring"]["cosine"] == pytest.approx(float(face_vector @ voice_vector), abs=1e-4)
    text = run_cli_here("verify", "--model", trained, "--face", faces[0], "--voice", voice, "--space", "joint")
    assert "fused: the pair encoder's log-odds" in text.stdout


def test_identify_re_ranks_the_cosine_top_k_by_fused_score(trained, gallery):
    directory, people, faces, voice = gallery
    result = run_cli_here("identify", "--gallery", directory, "--voice", voice, "--space", "joint", "--rescore-top", "4",
                          "--top", "3", "--json")
    assert result.returncode == 0, result.stderr
    group = json.loads(result.stdout)["trials"][0]
    assert group["scoring"]["score"] == "fused" and group["scoring"]["rescore_top"] == 4
    candidates = group["candidates"]
    assert len(candidates) == 3 and all(c["space"] == FUSED for c in candidates)
    # the fused scores, recomputed from the stored faces' joint vectors, rank the top 4 of the cosine search
    embedder = Embedder.load(trained)
    scorer = fused_scorer(embedder)
    question = embedder.embed_voice(voice, spaces=[JOINT]).vectors[JOINT]
    stored = {person: embedder.embed_face(face, spaces=[JOINT])[0].vectors[JOINT] for person, face in zip(people, faces)}
    by_cosine = sorted(people, key=lambda person: -float(stored[person] @ question))[:4]
    fused = {person: scorer.pair(stored[person], question) for person in by_cosine}
    expected = sorted(by_cosine, key=lambda person: -fused[person])[:3]
    assert [c["identity"] for c in candidates] == expected
    assert [c["score"] for c in candidates] == pytest.approx([fused[p] for p in expected], abs=1e-4)
    assert group["scoring"]["cosines"] == pytest.approx([float(stored[p] @ question) for p in expected], abs=1e-4)
    text = run_cli_here("identify", "--gallery", directory, "--voice", voice, "--space", "joint", "--rescore-top", "4")
    assert "fused scores (pair encoder) of the top 4 by cosine" in " ".join(text.stdout.split())


def test_calibrating_a_fusion_model_fits_the_fused_score_verify_reports(trained, gallery, tmp_path):
    from fvmatch.calibration.fitting import calibrate, pair_scores, write_calibrated_checkpoint
    from fvmatch.evaluation.corpus import EmbeddedCorpus, ItemSet
    from fvmatch.evaluation.metrics import equal_error_rate

    embedder = Embedder.load(trained)
    scorer = fused_scorer(embedder)
    rng = np.random.default_rng(3)
    people = 12
    centres = rng.normal(size=(people, 256))

    def items(modality):  # 3 items a person near the person's direction: learnable, not separable
        owners = np.repeat(np.arange(people), 3)
        vectors = centres[owners] + 1.5 * rng.normal(size=(len(owners), 256))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        return ItemSet([f"{modality}/{i}" for i in range(len(owners))], owners, vectors)

    corpus = EmbeddedCorpus(tmp_path, None, embedder.model_id, [{"identity": f"p{i}"} for i in range(people)],
                            items("face"), items("voice"), layout="plain")
    calibration = calibrate(corpus, trial_types=["face-voice"], fused=scorer)
    cosine_entry, fused_entry = calibration["face-voice"], calibration[f"{FUSED} face-voice"]
    assert fused_entry["space"] == FUSED and fused_entry["space_model_id"] == embedder.model_id
    assert fused_entry["trials"] == cosine_entry["trials"] == {"same": 108, "different": 1188, "identities": 12}
    same, different, _ = pair_scores(corpus.faces, corpus.voices, score=scorer.scores)
    labels = np.r_[np.ones(len(same)), np.zeros(len(different))].astype(bool)
    assert fused_entry["eer"]["value"] == pytest.approx(equal_error_rate(labels, np.r_[same, different])[0])
    assert fused_entry["eer"]["threshold"] != pytest.approx(cosine_entry["eer"]["threshold"])
    calibrated = tmp_path / "calibrated.safetensors"
    write_calibrated_checkpoint(trained, calibrated, calibration)
    _, _, faces, voice = gallery
    result = run_cli_here("verify", "--model", calibrated, "--face", faces[0], "--voice", voice, "--space", "joint",
                          "--json")
    answer = json.loads(result.stdout)
    assert answer["log10_lr"] is not None and f"calibrated: {FUSED} face-voice map" in answer["note"]


def test_a_batch_audit_re_ranks_face_voice_searches_as_identify_does(gallery, tmp_path):
    directory, _, _, voice = gallery
    queries = tmp_path / "queries.csv"
    queries.write_text(f"query_id,modality,path\nq1,voice,{voice}\n")
    out = tmp_path / "results.jsonl"
    ran = run_cli_here("audit", "run", "--queries", queries, "--out", out, "--gallery", directory, "--space", "joint",
                       "--json")
    assert ran.returncode == 0, ran.stderr
    (record,) = [json.loads(line) for line in out.read_text().splitlines()]
    alone = json.loads(run_cli_here("identify", "--gallery", directory, "--voice", voice, "--space", "joint",
                                    "--json").stdout)
    assert record["trials"][0]["scoring"]["score"] == "fused" and record["trials"][0]["scoring"]["rescore_top"] == 50
    assert [(c["identity"], round(c["score"], 4)) for c in record["candidates"]] == \
        [(c["identity"], round(c["score"], 4)) for c in alone["candidates"]]
