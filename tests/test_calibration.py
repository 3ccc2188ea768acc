"""Calibration: score -> log10 LR per (space, trial type), thresholds, Cllr, refusals, and judge() with a calibrated
model."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from fvmatch.calibration.fitting import (MIN_DIFFERENT_TRIALS, MIN_SAME_TRIALS, calibrate, cllr, cllr_min, fit,
                                         log10_lr, verbal_equivalent, write_calibrated_checkpoint)
from fvmatch.errors import BadArgument, ModelMismatch
from fvmatch.evaluation import EmbeddedCorpus, ItemSet
from fvmatch.calibration.scoring import judge

SAME_MEAN, DIFFERENT_MEAN, SD = 0.6, 0.1, 0.1


def true_log10_lr(score: float) -> float:
    """log10 of N(score; 0.6, 0.1) / N(score; 0.1, 0.1): equal variances make it linear in the score."""
    return ((score - DIFFERENT_MEAN) ** 2 - (score - SAME_MEAN) ** 2) / (2 * SD**2) / math.log(10)


@pytest.fixture(scope="module")
def gaussian_scores() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    return rng.normal(SAME_MEAN, SD, 5_000), rng.normal(DIFFERENT_MEAN, SD, 50_000)


@pytest.fixture(scope="module")
def entry(gaussian_scores) -> dict:
    return fit(*gaussian_scores)


@pytest.mark.parametrize("score", [0.2, 0.3, 0.35, 0.4, 0.5])
def test_fit_recovers_the_true_log10_lr_of_two_gaussians(entry, score):
    # the prior of the trials (1 same : 10 different) must not leak into the LR
    assert float(log10_lr(score, entry)) == pytest.approx(true_log10_lr(score), abs=0.15)


def test_fit_reports_thresholds_eer_and_trial_counts(entry, gaussian_scores):
    same, different = gaussian_scores
    assert entry["trials"] == {"same": 5_000, "different": 50_000, "identities": None}
    points = {point["fmr_target"]: point for point in entry["operating_points"]}
    assert set(points) == {0.01, 0.001}
    for fmr, point in points.items():
        assert (different > point["threshold"]).mean() == point["fmr"] <= fmr
        assert point["fmr"] > fmr - 2 / len(different)
        assert point["fnmr"] == (same <= point["threshold"]).mean()
    true_eer = 0.5 * math.erfc((SAME_MEAN - DIFFERENT_MEAN) / 2 / SD / math.sqrt(2))  # Phi(-2.5)
    assert entry["eer"]["value"] == pytest.approx(true_eer, abs=0.002)
    assert entry["eer"]["threshold"] == pytest.approx(0.35, abs=0.02)
    assert entry["map"]["bounds"] == [pytest.approx(-math.log10(5_000)), pytest.approx(math.log10(50_000))]
    json.dumps(entry)


def test_fit_stores_the_score_distributions_as_histograms(entry, gaussian_scores):
    same, different = gaussian_scores
    histogram = entry["score_histogram"]
    edges = np.array(histogram["edges"])
    assert edges[0] == -1.0 and edges[-1] == 1.0 and len(histogram["same"]) == len(histogram["different"]) == len(edges) - 1
    assert sum(histogram["same"]) == len(same) and sum(histogram["different"]) == len(different)
    # the bin holding the mean of each distribution is among its tallest
    assert np.argmax(histogram["same"]) == pytest.approx(np.searchsorted(edges, SAME_MEAN) - 1, abs=2)
    assert np.argmax(histogram["different"]) == pytest.approx(np.searchsorted(edges, DIFFERENT_MEAN) - 1, abs=2)


def test_a_tenth_of_a_percent_operating_point_needs_ten_thousand_different_person_trials(gaussian_scores):
    same, different = gaussian_scores
    assert [p["fmr_target"] for p in fit(same, different[:9_999])["operating_points"]] == [0.01]
    assert [p["fmr_target"] for p in fit(same, different[:10_000])["operating_points"]] == [0.01, 0.001]


def test_cllr_equals_its_definition_and_rewards_calibration(gaussian_scores, entry):
    same, different = gaussian_scores
    truth_same, truth_different = true_log10_lr(same), true_log10_lr(different)
    direct = 0.5 * (np.mean([math.log2(1 + 10 ** -v) for v in truth_same])
                    + np.mean([math.log2(1 + 10 ** v) for v in truth_different]))
    calibrated = cllr(truth_same, truth_different)
    assert calibrated == pytest.approx(direct, rel=1e-9)
    shifted = cllr(truth_same + 1.0, truth_different + 1.0)  # same discrimination, LRs ten times too large
    assert calibrated < shifted
    floor = cllr_min(same, different)
    assert floor <= calibrated < shifted and floor <= entry["cllr_min"] + 1e-12 <= entry["cllr"] + 1e-12
    assert cllr(np.zeros(5), np.zeros(5)) == pytest.approx(1.0)  # an LR of 1 always: one bit


def pav_oracle(scores: list[float], labels: list[int]) -> list[float]:
    """Pool-adjacent-violators written out: sort, merge neighbouring blocks while their means decrease."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    blocks: list[list[float]] = []  # [sum, count, first score, last score]
    for i in order:
        blocks.append([labels[i], 1, scores[i], scores[i]])
        while len(blocks) > 1 and (blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]
                                   or blocks[-2][3] == blocks[-1][2]):
            total, count, first, last = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
            blocks[-1][3] = last
    fitted = [0.0] * len(scores)
    position = 0
    for total, count, _, _ in blocks:
        for i in order[position : position + count]:
            fitted[i] = total / count
        position += count
    return fitted


def test_cllr_min_equals_cllr_after_an_independent_pav():
    rng = np.random.default_rng(4)
    same, different = rng.normal(1, 1, 150).round(1), rng.normal(0, 1, 400).round(1)  # ties too
    posterior = pav_oracle(list(np.r_[same, different]), [1] * 150 + [0] * 400)
    prior = math.log10(150 / 400)
    to_lr = [(math.inf if p == 1 else -math.inf if p == 0 else math.log10(p / (1 - p))) - prior for p in posterior]
    expected = 0.5 * (np.mean([math.log2(1 + 10 ** -v) for v in to_lr[:150]])
                      + np.mean([math.log2(1 + 10 ** v) for v in to_lr[150:]]))
    assert cllr_min(same, different) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("same, different, needed", [
    (MIN_SAME_TRIALS - 1, 5_000, f"{MIN_SAME_TRIALS - 1} same-person trials (at least {MIN_SAME_TRIALS:,} needed)"),
    (500, MIN_DIFFERENT_TRIALS - 1,
     f"{MIN_DIFFERENT_TRIALS - 1} different-person trials (at least {MIN_DIFFERENT_TRIALS:,} needed)")])
def test_too_few_trials_are_refused_naming_the_number_needed(same, different, needed):
    rng = np.random.default_rng(0)
    with pytest.raises(BadArgument) as refused:
        fit(rng.normal(0.6, 0.1, same), rng.normal(0.1, 0.1, different))
    assert needed in str(refused.value)


@pytest.mark.parametrize("value, words", [
    (0.0, "no support for either proposition (LR = 1)"),
    (0.5, "limited support for the same-person proposition"),
    (1.0, "moderate support for the same-person proposition"),
    (2.5, "moderately strong support for the same-person proposition"),
    (3.0, "strong support for the same-person proposition"),
    (5.9, "very strong support for the same-person proposition"),
    (6.0, "extremely strong support for the same-person proposition"),
    (-0.3, "limited support for the different-person proposition"),
    (-1.5, "moderate support for the different-person proposition"),
    (-4.0, "very strong support for the different-person proposition"),
    (-7.0, "extremely strong support for the different-person proposition")])
def test_verbal_equivalent_follows_the_enfsi_scale_both_ways(value, words):
    assert verbal_equivalent(value) == words


def test_judge_decides_on_both_sides_of_the_threshold(entry):
    calibration = {"face-voice": entry}
    threshold = next(p["threshold"] for p in entry["operating_points"] if p["fmr_target"] == 0.01)
    above, below = judge(threshold + 0.01, "face-voice", calibration), judge(threshold - 0.01, "face-voice", calibration)
    assert above.decision == "same person" and below.decision == "different person"
    assert above.log10_lr == pytest.approx(entry["map"]["slope"] * (threshold + 0.01) + entry["map"]["intercept"], abs=1e-4)
    assert above.verbal == verbal_equivalent(above.log10_lr) and "1.0% false-match-rate" in above.note
    strict = next(p["threshold"] for p in entry["operating_points"] if p["fmr_target"] == 0.001)
    between = (threshold + strict) / 2
    assert judge(between, "face-voice", calibration).decision == "same person"
    assert judge(between, "face-voice", calibration, fmr=0.001).decision == "different person"
    with pytest.raises(BadArgument, match=r"available: 1\.0%, 0\.1%"):
        judge(0.5, "face-voice", calibration, fmr=0.05)
    untouched = judge(0.5, "face-face", calibration)
    assert untouched.decision is None and untouched.log10_lr is None and "uncalibrated" in untouched.note
    assert json.loads(json.dumps(above.to_dict()))["verbal"] == above.verbal


def handmade_corpus(identities: int, items: int, seed: int = 0, space: str = "joint", model_id: str = "a" * 64,
                    noise: float = 1.0) -> EmbeddedCorpus:
    """People with a random centre each, items the centre plus noise; a face or voice space has no items of the
    other modality."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, 8))

    def item_set(folder: str, embedded: bool) -> ItemSet:
        count = identities * items if embedded else 0
        vectors = centres.repeat(items, axis=0)[:count] + noise * rng.normal(size=(count, 8))
        return ItemSet([f"{folder}/id{i:03d}/v0/{k}" for i in range(identities) for k in range(items)][:count],
                       np.arange(identities).repeat(items)[:count], vectors / np.linalg.norm(vectors, axis=1, keepdims=True))

    people = [{"identity": f"id{i:03d}", "gender": "", "nationality": "", "age": None} for i in range(identities)]
    return EmbeddedCorpus(Path("/data/corpus"), "val", model_id, people, item_set("faces", space != "ge2e-voice"),
                          item_set("voices", space != "dlib-face"), space=space)


def test_calibrate_fits_every_trial_type_of_a_corpus_into_a_json_card_entry():
    corpus = handmade_corpus(identities=30, items=6)
    calibration = calibrate(corpus, seed=3)
    assert {"face-voice", "face-face", "voice-voice", "data", "created", "model_id", "split"} <= set(calibration)
    assert calibration["face-voice"]["trials"] == {"same": 30 * 36, "different": 180 * 180 - 30 * 36, "identities": 30}
    assert calibration["face-face"]["trials"] == {"same": 30 * 15, "different": 180 * 179 // 2 - 30 * 15, "identities": 30}
    assert calibration["data"] == "/data/corpus" and calibration["split"] == "val"
    assert json.loads(json.dumps(calibration)) == calibration
    assert calibrate(corpus, seed=3)["face-voice"]["map"] == calibration["face-voice"]["map"]


def test_calibrate_refuses_a_corpus_too_small_for_a_trial_type():
    corpus = handmade_corpus(identities=30, items=2)  # face-face: 30 same-person pairs only
    with pytest.raises(BadArgument) as refused:
        calibrate(corpus)
    message = str(refused.value)
    assert "face-face: 30 same-person trials (at least 100 needed)" in message
    assert "voice-voice: 30 same-person trials" in message and "face-voice:" not in message
    assert calibrate(corpus, trial_types=["face-voice"])["face-voice"]["trials"]["same"] == 120


def test_calibrated_checkpoint_keeps_the_model_id_and_carries_the_calibration(tmp_path, entry):
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card

    model_id = read_card(DEFAULT_CHECKPOINT)["model_id"]
    calibration = {"model_id": model_id, "face-voice": entry, "data": "corpus", "created": "2025-01-01T00:00:00+00:00"}
    card = write_calibrated_checkpoint(DEFAULT_CHECKPOINT, tmp_path / "calibrated.safetensors", calibration)
    loaded = Embedder.load(tmp_path / "calibrated.safetensors")
    assert loaded.model_id == card["model_id"] == model_id
    assert loaded.card["calibration"] == json.loads(json.dumps(calibration))
    assert judge(0.9, "face-voice", loaded.card["calibration"]).decision == "same person"
    with pytest.raises(ModelMismatch):
        write_calibrated_checkpoint(DEFAULT_CHECKPOINT, tmp_path / "other.safetensors", {**calibration, "model_id": "b" * 64})


def test_calibrate_fits_each_trial_type_in_its_own_space_under_its_calibration_key():
    corpora = {"joint": handmade_corpus(30, 6, seed=1),
               "dlib-face": handmade_corpus(30, 6, seed=2, space="dlib-face", model_id="d" * 64, noise=0.5),
               "ge2e-voice": handmade_corpus(30, 6, seed=3, space="ge2e-voice", model_id="e" * 64, noise=0.7)}
    calibration = calibrate(corpora, seed=3)
    entries = {key: entry for key, entry in calibration.items() if isinstance(entry, dict) and "map" in entry}
    assert {key: (entry["space"], entry["space_model_id"]) for key, entry in entries.items()} == {
        "face-voice": ("joint", "a" * 64), "dlib-face face-face": ("dlib-face", "d" * 64),
        "ge2e-voice voice-voice": ("ge2e-voice", "e" * 64)}
    assert calibration["model_id"] == "a" * 64 and calibration["format"] == "fvmatch-calibration/2"
    assert calibration["spaces"] == {"joint": "a" * 64, "dlib-face": "d" * 64, "ge2e-voice": "e" * 64}
    # each entry is fitted on its own space's scores: the less noisy face space separates better
    assert entries["dlib-face face-face"]["eer"]["value"] < entries["face-voice"]["eer"]["value"]
    assert entries["dlib-face face-face"]["trials"] == {"same": 30 * 15, "different": 180 * 179 // 2 - 30 * 15,
                                                       "identities": 30}
    assert json.loads(json.dumps(calibration)) == calibration
    # judge reads an entry with the space's model, and refuses it with another model of that space
    threshold = entries["dlib-face face-face"]["operating_points"][0]["threshold"]
    judged = judge(threshold + 0.05, "face-face", calibration, space="dlib-face", model_id="d" * 64)
    assert judged.decision == "same person" and judged.log10_lr > 0
    assert judge(threshold + 0.05, "face-face", calibration, space="dlib-face", model_id="0" * 64).decision is None
    assert judge(0.9, "face-face", calibration).decision is None  # the joint space has no face-face calibration


def test_calibrate_in_one_space_fits_what_that_space_scores_and_names_it_when_trials_are_too_few():
    faces_only = handmade_corpus(30, 6, space="dlib-face", model_id="d" * 64)
    calibration = calibrate(faces_only)
    assert "model_id" not in calibration  # no joint-space entry: nothing ties it to one checkpoint's weights
    assert [key for key, entry in calibration.items() if isinstance(entry, dict) and "map" in entry] == [
        "dlib-face face-face"]
    with pytest.raises(BadArgument) as refused:
        calibrate({"dlib-face": handmade_corpus(30, 2, space="dlib-face", model_id="d" * 64),
                   "ge2e-voice": handmade_corpus(8, 6, space="ge2e-voice", model_id="e" * 64)})
    message = str(refused.value)
    assert "too few trials in split 'val' to calibrate" in message
    assert "dlib-face face-face: 30 same-person trials (at least 100 needed)" in message
    assert "ge2e-voice voice-voice: 120 same-person trials" not in message
    assert "ge2e-voice voice-voice: 8 people with same-person trials (at least 10 needed)" in message
    assert "face-voice" not in message  # neither space scores it: not asked for
    with pytest.raises(BadArgument, match="none of the spaces dlib-face scores face-voice trials"):
        calibrate(faces_only, trial_types=["face-voice"])


def test_a_calibrated_checkpoint_refuses_joint_entries_of_another_model(tmp_path, entry):
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, read_card

    model_id = read_card(DEFAULT_CHECKPOINT)["model_id"]
    other_space = {**entry, "space": "dlib-face", "space_model_id": "d" * 64}
    card = write_calibrated_checkpoint(DEFAULT_CHECKPOINT, tmp_path / "faces.safetensors",
                                       {"dlib-face face-face": other_space, "spaces": {"dlib-face": "d" * 64}})
    assert card["model_id"] == model_id and card["calibration"]["dlib-face face-face"]["space_model_id"] == "d" * 64
    with pytest.raises(ModelMismatch, match="made with model bbbbbbbbbbbbbbbb"):
        write_calibrated_checkpoint(DEFAULT_CHECKPOINT, tmp_path / "other.safetensors",
                                    {"face-voice": {**entry, "space": "joint", "space_model_id": "b" * 64}})
