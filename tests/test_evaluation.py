"""Evaluation protocols: trial lists, metrics against independent computations, bootstrap intervals, corpus embedding
per space."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from fvmatch.errors import BadArgument
from fvmatch.evaluation import (EmbeddedCorpus, ItemSet, TrialCounts, embed_corpus, embed_spaces, evaluate, make_trials,
                                read_trials, table2_rows, trials_for, without_scores, write_plots, write_trials)
from fvmatch.evaluation import metrics
from fvmatch.evaluation.trials import age_band

SMALL = TrialCounts(verification=400, same_modality=400, matching=300, one_to_n=100)
REPLICATES = 200


def handmade_corpus(identities: int = 40, items: int = 3, noise: float = 0.8, dim: int = 16, seed: int = 0,
                    offset: int = 0) -> EmbeddedCorpus:
    """People with a random centre each; every face and voice is the centre plus noise, normalised. Metadata
    cycles so every stratum has partners: gender of 2, nationality of 3, ages over five decades."""
    rng = np.random.default_rng(seed)
    people = [{"identity": f"id{offset + i:05d}", "gender": "fm"[i % 2], "nationality": "abc"[i % 3],
               "age": 21 + (7 * i) % 50} for i in range(identities)]
    centres = rng.normal(size=(identities, dim))

    def item_set(folder: str) -> ItemSet:
        vectors = centres.repeat(items, axis=0) + noise * rng.normal(size=(identities * items, dim))
        return ItemSet(paths=[f"{folder}/{person['identity']}/v0/{k:05d}" for person in people for k in range(items)],
                       owners=np.arange(identities).repeat(items),
                       vectors=(vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32))

    return EmbeddedCorpus(Path("/nonexistent/corpus"), "test", "f" * 64, people, item_set("faces"), item_set("voices"))


def in_space(corpus: EmbeddedCorpus, space: str, model_id: str) -> EmbeddedCorpus:
    """The corpus as a space would embed it: its model id, and no items of a modality the space does not embed."""
    empty = ItemSet([], np.zeros(0, np.int64), np.zeros((0, corpus.faces.vectors.shape[1]), np.float32))
    return dataclasses.replace(corpus, space=space, model_id=model_id,
                               faces=empty if space == "ge2e-voice" else corpus.faces,
                               voices=empty if space == "dlib-face" else corpus.voices)


def owner(ref: str) -> str:
    return ref.split("/")[1]


def oracle_vector(corpus: EmbeddedCorpus, ref: str) -> np.ndarray:
    items = corpus.faces if ref.startswith("faces/") else corpus.voices
    return items.vectors[items.paths.index(ref)].astype(np.float64)


def oracle_score(corpus: EmbeddedCorpus, first: str, second: str) -> float:
    return float(sum(a * b for a, b in zip(oracle_vector(corpus, first), oracle_vector(corpus, second))))


def block(trials, protocol: str, direction: str, stratum: str = "U", size: int | None = None) -> list:
    return [t for t in trials.trials if (t.protocol, t.direction, t.stratum) == (protocol, direction, stratum)
            and (size is None or len(t.candidates) == size)]


@pytest.fixture(scope="module")
def corpus() -> EmbeddedCorpus:
    return handmade_corpus()


@pytest.fixture(scope="module")
def trials(corpus):
    return trials_for(corpus, seed=7, counts=SMALL)


@pytest.fixture(scope="module")
def results(corpus, trials) -> dict:
    return evaluate(corpus, seed=7, trials=trials, replicates=REPLICATES)


@pytest.mark.parametrize("kind, direction, stratum", [
    ("face-voice", "F-V", "U"), ("face-voice", "F-V", "G"), ("face-voice", "F-V", "GNA"),
    ("face-face", "F-F", "U"), ("voice-voice", "V-V", "U")])
def test_verification_auc_equals_sklearn_on_independently_computed_scores(corpus, trials, results, kind, direction, stratum):
    pairs = block(trials, "verification", direction, stratum)
    scores = [oracle_score(corpus, t.probe, t.candidates[0]) for t in pairs]
    expected = roc_auc_score([t.target for t in pairs], scores)
    assert results["verification"][kind][stratum]["auc"]["value"] == pytest.approx(expected, abs=1e-6)
    assert 0.8 < expected < 1.0  # the hand-made structure is learnable but not trivial


@pytest.mark.parametrize("direction, kind", [("F-V", "face-voice"), ("F-F", "face-face"), ("V-V", "voice-voice")])
def test_eer_equals_a_brute_force_threshold_sweep(corpus, trials, results, direction, kind):
    pairs = block(trials, "verification", direction)
    same = np.array([oracle_score(corpus, t.probe, t.candidates[0]) for t in pairs if t.target == 1])
    different = np.array([oracle_score(corpus, t.probe, t.candidates[0]) for t in pairs if t.target == 0])
    sweep = min(max((different >= t).mean(), (same < t).mean()) for t in np.r_[same, different])
    step = max(1 / len(same), 1 / len(different))  # the sweep sees the ROC's points, we interpolate between them
    assert results["verification"][kind]["U"]["eer"]["value"] == pytest.approx(sweep, abs=step + 1e-9)


@pytest.mark.parametrize("protocol, direction, stratum, size", [
    ("1:2", "F-V", "U", 2), ("1:2", "V-F", "G", 2), ("1:2", "F-V", "GN", 2), ("1:N", "V-F", "U", 5),
    ("1:N", "F-V", "U", 10)])
def test_matching_accuracy_equals_direct_counting(corpus, trials, results, protocol, direction, stratum, size):
    chosen = block(trials, protocol, direction, stratum, size)
    right = 0
    for trial in chosen:
        scores = [oracle_score(corpus, trial.probe, candidate) for candidate in trial.candidates]
        right += all(scores[trial.target] > s for k, s in enumerate(scores) if k != trial.target)
    reported = (results["matching_1to2"][direction][stratum] if protocol == "1:2"
                else results["matching_1toN"][direction][str(size)])
    assert reported["trials"] == len(chosen) == (SMALL.matching if protocol == "1:2" else SMALL.one_to_n)
    assert reported["accuracy"]["value"] == pytest.approx(right / len(chosen), abs=1e-6)


@pytest.mark.parametrize("direction", ["F-V", "V-F"])
def test_retrieval_map_equals_mean_of_precisions_at_each_hit(corpus, results, direction):
    probes, gallery = (corpus.faces, corpus.voices) if direction == "F-V" else (corpus.voices, corpus.faces)
    precisions = []
    for probe in probes.paths:
        ranked = sorted(gallery.paths, key=lambda ref: -oracle_score(corpus, probe, ref))
        hits = [owner(ref) == owner(probe) for ref in ranked]
        precisions.append(np.mean([sum(hits[: rank + 1]) / (rank + 1) for rank, hit in enumerate(hits) if hit]))
    assert results["retrieval"][direction]["queries"] == len(probes)
    assert results["retrieval"][direction]["map"]["value"] == pytest.approx(np.mean(precisions), abs=1e-6)


def test_stratified_trials_keep_gender_nationality_and_age_band_equal(corpus, trials):
    person = {p["identity"]: p for p in corpus.identities}
    attribute = {"G": lambda p: p["gender"], "N": lambda p: p["nationality"], "A": lambda p: age_band(p["age"])}
    checked = 0
    for trial in trials.trials:
        people = {owner(trial.probe), *map(owner, trial.candidates)}
        for letter in "" if trial.stratum == "U" else trial.stratum:
            assert len({attribute[letter](person[label]) for label in people}) == 1, trial
            checked += 1
    assert checked == SMALL.verification * (1 + 1 + 1 + 3) + 2 * SMALL.matching * (1 + 1 + 2)  # letters checked
    assert {t.stratum for t in trials.trials} == {"U", "G", "N", "A", "GNA", "GN"}
    assert not trials.shortfalls


def test_trials_hold_what_their_target_says(trials):
    for name in ("verification F-V GNA", "verification F-F U", "verification V-V U"):
        protocol, direction, stratum = name.split()
        pairs = block(trials, protocol, direction, stratum)
        assert sum(t.target for t in pairs) == len(pairs) // 2  # half same person
        for t in pairs:
            assert (owner(t.probe) == owner(t.candidates[0])) == (t.target == 1) and t.probe != t.candidates[0]
    for trial in trials.trials:
        if trial.protocol in ("1:2", "1:N"):
            owners = [owner(ref) for ref in trial.candidates]
            assert owners[trial.target] == owner(trial.probe) and len(set(owners)) == len(owners)
            assert trial.probe.startswith("faces/" if trial.direction == "F-V" else "voices/")


def test_trial_lists_are_identical_for_a_seed_and_differ_across_seeds(corpus, trials):
    assert trials_for(corpus, seed=7, counts=SMALL).trials == trials.trials
    other = trials_for(corpus, seed=8, counts=SMALL).trials
    assert len(other) == len(trials.trials) and other != trials.trials
    # a block's draw does not depend on the counts of the others
    fewer = trials_for(corpus, seed=7, counts=TrialCounts(verification=400, same_modality=10, matching=5, one_to_n=5))
    assert block(fewer, "verification", "F-V", "G") == block(trials, "verification", "F-V", "G")


@pytest.mark.parametrize("name", ["trials.csv", "trials.json"])
def test_trial_list_round_trips_through_a_file_and_evaluates_the_same(tmp_path, corpus, trials, results, name):
    write_trials(trials, tmp_path / name)
    read = read_trials(tmp_path / name)
    assert read.trials == trials.trials
    assert read.seed == (7 if name.endswith(".json") else None)
    again = evaluate(corpus, seed=7, trials=read, replicates=REPLICATES)
    assert again["verification"] == results["verification"] and again["retrieval"] == results["retrieval"]


def test_malformed_trial_row_is_refused_with_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("protocol,direction,stratum,probe,candidates,target\n"
                    "verification,F-V,U,faces/a/v/1.jpg,voices/a/v/1.wav,1\n"
                    "1:2,F-V,U,faces/a/v/1.jpg,voices/a/v/1.wav,0\n")
    with pytest.raises(BadArgument, match="line 3: 1 candidates for a 1:2 trial"):
        read_trials(path)


def test_trials_with_items_missing_from_the_corpus_are_skipped_and_counted(corpus, trials):
    gone = corpus.faces.paths[0]
    kept = [i for i, path in enumerate(corpus.faces.paths) if path != gone]
    smaller = EmbeddedCorpus(corpus.data, corpus.split, corpus.model_id, corpus.identities,
                             ItemSet([corpus.faces.paths[i] for i in kept], corpus.faces.owners[kept],
                                     corpus.faces.vectors[kept]), corpus.voices)
    result = evaluate(smaller, seed=7, trials=trials, replicates=20)
    expected = sum(gone == t.probe or gone in t.candidates for t in trials.trials)
    assert expected > 0 and result["trials"]["skipped"] == expected
    # the item is gone from a corpus folder that does not exist: counted as absent, every skipped trial explained
    assert result["trials"]["skipped_reasons"] == {"an item is not in DATA": expected}
    failed = dataclasses.replace(smaller, failures=[{"item": gone, "error": "no face found"}])
    assert evaluate(failed, seed=7, trials=trials, replicates=20)["trials"]["skipped_reasons"] == {
        "an item failed to embed": expected}


def _figures(node):
    if isinstance(node, dict):
        if "value" in node and "ci" in node:
            yield node
        for child in node.values():
            yield from _figures(child)


def test_every_figure_has_an_interval_that_contains_it(results):
    figures = list(_figures(results))
    assert len(figures) == 7 * 2 + 8 + 18 + 2  # verification AUC+EER, 1:2, 1:N, retrieval
    for found in figures:
        low, high = found["ci"]
        assert low <= found["value"] <= high and low < high


def test_interval_narrows_with_more_identities():
    def auc_interval(identities: int) -> tuple[float, list[float]]:
        corpus = handmade_corpus(identities=identities, noise=1.5, dim=32, seed=3)
        only_verification = TrialCounts(verification=4000, same_modality=0, matching=0, one_to_n=0)
        found = evaluate(corpus, seed=1, counts=only_verification, replicates=REPLICATES)["verification"]["face-voice"]["U"]
        return found["auc"]["value"], found["auc"]["ci"]

    (few, (few_low, few_high)), (many, (many_low, many_high)) = auc_interval(20), auc_interval(200)
    assert few_low < few < few_high and many_low < many < many_high
    assert many_high - many_low < 0.75 * (few_high - few_low)


def test_weighted_bootstrap_statistics_equal_sklearn_on_repeated_trials():
    rng = np.random.default_rng(5)
    same = rng.random(300) < 0.4
    scores = np.round(rng.normal(same * 1.0, 1.0), 1)  # rounded: ties, as the tie rules must agree too
    weights = rng.integers(0, 4, size=(3, 300))
    aucs, eers = metrics.weighted_auc(same, scores, weights), metrics.weighted_eer(same, scores, weights)
    for row, auc, eer in zip(weights, aucs, eers):
        assert auc == pytest.approx(roc_auc_score(np.repeat(same, row), np.repeat(scores, row)), abs=1e-12)
        assert eer == pytest.approx(metrics.equal_error_rate(np.repeat(same, row), np.repeat(scores, row))[0], abs=1e-12)


def test_results_record_what_reproduces_them(results, corpus):
    assert results["model_id"] == corpus.model_id and results["split"] == "test" and results["seed"] == 7
    assert results["data"] == str(corpus.data) and results["synthetic"] is False
    assert results["trials"]["counts"]["verification F-V U"] == SMALL.verification
    assert results["trials"]["counts"]["retrieval V-F U"] == len(corpus.voices)
    assert results["bootstrap"] == {**results["bootstrap"], "unit": "identity", "replicates": REPLICATES, "seed": 7}
    assert "scores" not in without_scores(results)
    json.dumps(results)


def test_table2_rows_put_the_published_voxceleb_figures_beside_ours(results):
    rows = {(row["protocol"], row["stratum"]): row for row in table2_rows(results)}
    assert rows[("verification AUC", "GNA")]["published"] == 65.07
    assert rows[("V-F 1:2 accuracy", "G")]["published"] == 74.29
    assert rows[("F-V retrieval mAP", "-")]["published"] == 6.19
    assert rows[("F-V 1:2 accuracy", "GN")]["published"] is None
    ours = results["verification"]["face-voice"]["U"]["auc"]
    assert rows[("verification AUC", "U")]["ours"] == round(100 * ours["value"], 2)
    assert all("published, VoxCeleb, another dataset" in row["published_source"]
               for row in rows.values() if row["published"] is not None)


def test_write_plots_writes_roc_det_histograms_tippett_and_the_1_to_n_curve(tmp_path, corpus):
    from fvmatch.calibration.fitting import calibrate

    plain = write_plots(evaluate(corpus, seed=7, counts=SMALL, replicates=20), tmp_path / "plain")
    assert {path.name for path in plain} == {f"{plot}-{kind}.png" for plot in ("roc", "det", "histogram")
                                             for kind in ("face-voice", "face-face", "voice-voice")} | {"matching-1toN.png"}
    result = evaluate(corpus, seed=7, counts=SMALL, replicates=20, calibration=calibrate(corpus))
    calibrated = write_plots(result, tmp_path / "calibrated")
    assert {path.name for path in calibrated} - {path.name for path in plain} == {
        "tippett-face-voice.png", "tippett-face-face.png", "tippett-voice-voice.png"}
    assert all(path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for path in plain + calibrated)
    check = result["calibration"]["face-voice"]
    assert check["cllr_min"] <= check["cllr"] and check["same"] == check["different"] == SMALL.verification // 2


class CountingEmbedder:
    """The default Embedder, counting the files it is asked to embed (with the spaces asked for)."""

    def __init__(self, embedder) -> None:
        self.inner, self.calls = embedder, []
        self.model_id, self.min_speech_seconds = embedder.model_id, embedder.min_speech_seconds

    def space(self, name):
        return self.inner.space(name)

    def embed_face(self, path, spaces):
        self.calls.append((Path(path).name, tuple(spaces)))
        return self.inner.embed_face(path, spaces=spaces)

    def embed_voices(self, paths, spaces):
        self.calls.extend((Path(path).name, tuple(spaces)) for path in paths)
        return self.inner.embed_voices(paths, spaces=spaces)


def test_embed_corpus_embeds_each_file_once_and_serves_the_second_run_from_cache(tmp_path, embedder):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    from fvmatch.synth.corpus import CorpusSpec, write_corpus

    data = tmp_path / "corpus"
    write_corpus(data, CorpusSpec(identities=4, faces_per_identity=2, clips_per_identity=1, clip_seconds=2.0), workers=1)
    (data / "faces" / "id00001" / "v0" / "broken.jpg").write_text("not an image")
    counting = CountingEmbedder(embedder)
    done = []
    first = embed_corpus(data, counting, split="train", cache_dir=tmp_path / "cache", progress=done.append,
                         total=done.append)
    assert done[0] == 4 * 2 + 1 + 4 and sum(done[1:]) == done[0]
    assert len(counting.calls) == 13 and first.embedded == 13 and first.from_cache == 0
    assert {spaces for _, spaces in counting.calls} == {("joint",)}
    assert len(first.faces) == 8 and len(first.voices) == 4 and len(first.identities) == 4
    assert first.failures == [{"item": "faces/id00001/v0/broken.jpg", "error": first.failures[0]["error"]}]
    assert first.faces.paths[0] == "faces/id00000/v0/00000.jpg" and first.faces.owners.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert np.allclose(np.linalg.norm(first.voices.vectors, axis=1), 1, atol=1e-5)
    second = embed_corpus(data, counting, split="train", cache_dir=tmp_path / "cache")
    assert len(counting.calls) == 13 and second.embedded == 0 and second.from_cache == 13
    assert np.array_equal(second.faces.vectors, first.faces.vectors) and second.failures == first.failures
    assert (tmp_path / "cache" / f"embeddings-{embedder.model_id}.npz").is_file()
    result = evaluate(second, seed=0, counts=TrialCounts(40, 40, 20, 10), replicates=20)
    assert result["synthetic"] is True and result["identities"] == 4 and result["failures"] == first.failures
    assert result["trials"]["counts"]["verification F-V U"] == 40 and "verification F-F U" in result["trials"]["counts"]
    assert "1:N F-V U N=5: no person has 4 others who fit the stratum" in result["trials"]["shortfalls"]
    with pytest.raises(BadArgument, match="no identity in split 'test'"):
        embed_corpus(data, counting, split="test")

    # a voice space: each voice embedded once more (in that space only), no faces, its own cache file
    both = embed_spaces(data, counting, ["joint", "ge2e-voice"], split="train", cache_dir=tmp_path / "cache")
    assert counting.calls[13:] == [(f"{k:05d}.wav", ("ge2e-voice",)) for k in [0] * 4]
    voices = both["ge2e-voice"]
    voice_space = embedder.space("ge2e-voice")
    assert voices.space == "ge2e-voice" and voices.model_id == voice_space.model_id != embedder.model_id
    assert len(voices.faces) == 0 and voices.faces.vectors.shape == (0, voice_space.dim) and voices.failures == []
    assert voices.voices.paths == first.voices.paths and voices.voices.vectors.shape == (4, voice_space.dim)
    assert both["joint"].from_cache == 13 and voices.embedded == 4
    assert (tmp_path / "cache" / f"embeddings-{voice_space.model_id}.npz").is_file()
    result = evaluate(both, seed=0, counts=TrialCounts(40, 40, 20, 10), replicates=20)
    assert result["spaces"]["ge2e-voice"]["trial_types"] == ["voice-voice"]  # (one clip each: no same-person pair)
    assert any(shortfall.startswith("verification V-V U") for shortfall in result["trials"]["shortfalls"])
    assert result["verification"]["face-face"]["space"] == "joint"  # no face space given: the joint one scores them


def test_a_one_modality_space_scores_its_trial_type_and_skips_the_cross_modal_protocols(corpus):
    faces_only = in_space(corpus, "dlib-face", "d" * 64)
    result = evaluate(faces_only, seed=7, counts=SMALL, replicates=20)
    assert set(result["verification"]) == {"face-face"}
    assert result["verification"]["face-face"]["space"] == "dlib-face"
    assert result["verification"]["face-face"]["model_id"] == "d" * 64
    assert result["verification"]["face-face"]["U"]["trials"] == SMALL.same_modality
    assert result["matching_1to2"] == result["matching_1toN"] == result["retrieval"] == {}
    assert set(result["trials"]["counts"]) == {"verification F-F U"} and not result["trials"]["shortfalls"]
    assert [(entry["trial_type"], entry["trials"]) for entry in result["not_evaluated"]] == [
        ("face-voice", 0), ("voice-voice", 0)]
    assert "dlib-face embeds faces only" in result["not_evaluated"][0]["reason"]
    assert result["model_id"] is None and result["spaces"]["dlib-face"]["trial_types"] == ["face-face"]
    # a trial list that holds them counts the trials it did not evaluate
    full_list = trials_for(corpus, seed=7, counts=SMALL)
    again = evaluate(faces_only, seed=7, trials=full_list, replicates=20)
    assert again["verification"]["face-face"] == result["verification"]["face-face"]
    assert {entry["trial_type"]: entry["trials"] for entry in again["not_evaluated"]} == {
        "face-voice": sum(t.direction not in ("F-F", "V-V") for t in full_list.trials),
        "voice-voice": SMALL.same_modality}


def test_each_trial_type_is_scored_in_its_own_space_when_several_are_given(corpus):
    # three spaces with different vectors for the same files: the face space's faces are another draw
    other = handmade_corpus(seed=1)
    corpora = {"joint": corpus, "dlib-face": in_space(other, "dlib-face", "d" * 64),
               "ge2e-voice": in_space(other, "ge2e-voice", "e" * 64)}
    trials = trials_for(corpora, seed=7, counts=SMALL)
    result = evaluate(corpora, seed=7, trials=trials, replicates=20)
    for kind, direction, space, scored in (("face-voice", "F-V", "joint", corpus), ("face-face", "F-F", "dlib-face", other),
                                           ("voice-voice", "V-V", "ge2e-voice", other)):
        pairs = block(trials, "verification", direction)
        expected = roc_auc_score([t.target for t in pairs], [oracle_score(scored, t.probe, t.candidates[0]) for t in pairs])
        assert result["verification"][kind]["U"]["auc"]["value"] == pytest.approx(expected, abs=1e-6)
        assert result["verification"][kind]["space"] == space and result["spaces"][space]["trial_types"] == [kind]
    assert result["verification"]["face-face"]["model_id"] == "d" * 64 and result["model_id"] == corpus.model_id
    assert result["matching_1to2"]["F-V"]["space"] == result["retrieval"]["V-F"]["space"] == "joint"
    assert result["not_evaluated"] == []
    # the blocks of a trial type are those one space alone would draw
    assert block(trials, "verification", "F-F") == block(trials_for(corpora["dlib-face"], seed=7, counts=SMALL),
                                                         "verification", "F-F")
    rows = {(row["protocol"], row["stratum"]): row for row in table2_rows(result)}
    assert rows[("F-F verification AUC", "U")]["space"] == "dlib-face"
    assert rows[("F-F verification AUC", "U")]["model_id"] == "d" * 64
    assert rows[("V-F 1:2 accuracy", "G")]["space"] == "joint"
    faces_only_rows = table2_rows(evaluate(corpora["dlib-face"], seed=7, counts=SMALL, replicates=20))
    assert [row["protocol"] for row in faces_only_rows] == ["F-F verification AUC", "F-F verification EER"]


def test_a_calibration_is_checked_in_the_space_that_scores_the_trial_type(corpus):
    from fvmatch.calibration.fitting import calibrate

    faces_only = in_space(corpus, "dlib-face", "d" * 64)
    calibration = calibrate(faces_only)
    result = evaluate(faces_only, seed=7, counts=SMALL, replicates=20, calibration=calibration)
    assert result["calibration"]["face-face"]["space"] == "dlib-face" and "cllr" in result["calibration"]["face-face"]
    assert result["calibration_maps"] == {"face-face": calibration["dlib-face face-face"]}
    elsewhere = evaluate(in_space(corpus, "dlib-face", "0" * 64), seed=7, counts=SMALL, replicates=20,
                         calibration=calibration)  # another model of the space: its scores are not the calibration's
    assert "cllr" not in elsewhere["calibration"]["face-face"]
    assert "made with model dddddddddddddddd" in elsewhere["calibration"]["face-face"]["note"]
    assert elsewhere["calibration_maps"] == {}


def test_unstratified_trial_lists_hold_the_unconstrained_blocks_of_the_chosen_trial_types(corpus, trials):
    drawn = make_trials(corpus.identities, corpus.items_of("face"), corpus.items_of("voice"), seed=7, counts=SMALL,
                        trial_types=["face-voice"], stratified=False)
    assert {t.stratum for t in drawn.trials} == {"U"} and not drawn.shortfalls
    assert {(t.protocol, t.direction) for t in drawn.trials} == {
        ("verification", "F-V"), ("1:2", "F-V"), ("1:2", "V-F"), ("1:N", "F-V"), ("1:N", "V-F"), ("retrieval", "F-V"),
        ("retrieval", "V-F")}
    assert block(drawn, "1:2", "V-F") == block(trials, "1:2", "V-F")  # the same trials as in the full list


def test_a_one_person_split_is_flagged_and_its_rows_say_why_they_are_empty():
    results = evaluate(handmade_corpus(identities=1), seed=0, counts=SMALL, replicates=20)
    assert results["retrieval"]["F-V"]["map"]["value"] == 1.0  # what the warning is about: perfect by construction
    assert len(results["warnings"]) == 1
    assert results["warnings"][0].startswith("split 'test' has 1 identity with embedded items: every trial is of one "
                                             "person")
    empty = {(row["protocol"], row["stratum"]): row["why_not"] for row in table2_rows(results) if row["ours"] is None}
    assert empty[("verification AUC", "U")] == "no person has both items and another person who fits the stratum"
    assert empty[("V-F 1:2 accuracy", "G")] == "no person has 1 others who fit the stratum"
    assert all(row["why_not"] is None for row in table2_rows(results) if row["ours"] is not None)


@pytest.mark.parametrize("people, warned", [(2, True), (9, True), (10, False)])
def test_splits_of_few_people_warn_that_the_intervals_mean_little(people, warned):
    results = evaluate(handmade_corpus(identities=people), seed=0, counts=SMALL, replicates=20)
    expected = [f"split 'test' has {people} identities with embedded items: the 95% intervals (a bootstrap over "
                "identities) mean little below 10 and can collapse to a point (zero width) with 2"]
    assert results["warnings"] == (expected if warned else [])


def test_evaluating_on_identities_the_joint_model_was_trained_on_is_warned(corpus):
    results = evaluate(corpus, seed=0, counts=SMALL, replicates=20,
                       trained_identities=["id00003", "id00001", "id99999"])
    assert results["warnings"] == [
        "2 of the 40 identities evaluated were in the joint model's training split (e.g. id00001, id00003): its "
        "figures on them are not held out and overstate its accuracy"]
    assert evaluate(corpus, seed=0, counts=SMALL, replicates=20, trained_identities=["id99999"])["warnings"] == []
