"""Training shards: layout and dtypes, the same preprocessing as inference, failures, resume, refusals, workers."""
from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile

from fvmatch.errors import BadArgument
from fvmatch.synth import CorpusSpec, write_corpus
from fvmatch.corpus import read_meta
from fvmatch.training.prepare import FORMAT, prepare_corpus

SPEC = CorpusSpec(identities=4, seed=3, faces_per_identity=2, clips_per_identity=2, clip_seconds=2.0)
LABELS = [f"id0000{i}" for i in range(4)]
HEADER = "identity,name,gender,nationality,age,split\n"


def tree_digest(root: Path) -> dict[str, str]:
    return {str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(root.rglob("*")) if path.is_file()}


def mtimes(root: Path) -> dict[str, int]:
    return {str(path.relative_to(root)): path.stat().st_mtime_ns for path in sorted(root.rglob("*"))}


def load_shard(folder: Path) -> dict:
    shard = {name: np.load(folder / f"{name}.npy")
             for name in ("faces", "face_identity", "voices", "voice_offsets", "voice_identity")}
    for name in ("face_source", "voice_source", "shard"):
        shard[name] = json.loads((folder / f"{name}.json").read_text())
    return shard


def copy_corpus(corpus: Path, out: Path, labels: list[str] = LABELS) -> Path:
    """A copy of some identities of the corpus, with their meta.csv rows."""
    for label in labels:
        for modality in ("faces", "voices"):
            shutil.copytree(corpus / modality / label, out / modality / label)
    rows = [line for line in (corpus / "meta.csv").read_text().splitlines()[1:] if line.split(",")[0] in labels]
    (out / "meta.csv").write_text(HEADER + "".join(row + "\n" for row in rows))
    return out


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus")
    write_corpus(out, SPEC, workers=1)
    return out


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    """The corpus prepared in this process, two identities per shard: (cache, summary, progress calls)."""
    cache = tmp_path_factory.mktemp("prepared") / "cache"
    calls = []
    summary = prepare_corpus(corpus, cache, workers=1, identities_per_shard=2, progress=calls.append,
                             total=lambda n: calls.append(("total", n)))
    return cache, summary, calls


def test_prepare_json_lists_identities_shards_and_counts(corpus, prepared):
    cache, summary, calls = prepared
    stored = json.loads((cache / "prepare.json").read_text())
    assert summary == {**stored, "shards_built": ["shard-00000", "shard-00001"]}
    assert stored["format"] == FORMAT and stored["source"] == str(corpus.resolve()) and stored["complete"] is True
    assert stored["shards"] == ["shard-00000", "shard-00001"] and stored["identities_per_shard"] == 2
    with open(corpus / "meta.csv") as handle:
        meta = list(csv.DictReader(handle))
    assert [row["identity"] for row in stored["identities"]] == LABELS
    assert stored["identities"][1] == {**meta[1], "age": int(meta[1]["age"])}
    # the synthetic faces are not all detectable: whatever MTCNN misses is a recorded failure, nothing else is
    assert all(failure["error"].startswith("no face found") for failure in stored["failures"])
    assert all(failure["item"].startswith("faces/") for failure in stored["failures"])
    counts = stored["counts"]
    assert counts["faces"] == 4 * SPEC.faces_per_identity - len(stored["failures"])
    assert counts["voices"] == 4 * SPEC.clips_per_identity
    assert (counts["identities"], counts["failures"], counts["paired_identities"]) == (4, len(stored["failures"]), 4)
    assert 0.5 * 8 * SPEC.clip_seconds < counts["voice_seconds"] <= 8 * SPEC.clip_seconds
    assert calls == [("total", 4), 1, 1, 1, 1]
    assert not list(cache.glob("*.tmp")) and not list(cache.rglob("*.raw"))


def test_shards_hold_the_documented_arrays(prepared):
    cache, summary, _ = prepared
    labels = [row["identity"] for row in summary["identities"]]
    faces = voices = 0
    for number, name in enumerate(summary["shards"]):
        shard = load_shard(cache / name)
        n_faces, n_voices = len(shard["face_source"]), len(shard["voice_source"])
        assert shard["faces"].dtype == np.uint8 and shard["faces"].shape == (n_faces, 160, 160, 3)
        assert shard["face_identity"].dtype == np.int32 and shard["face_identity"].shape == (n_faces,)
        assert shard["voices"].dtype == np.int16 and shard["voices"].ndim == 1
        assert shard["voice_offsets"].dtype == np.int64 and shard["voice_offsets"].shape == (n_voices + 1,)
        assert shard["voice_offsets"][0] == 0 and shard["voice_offsets"][-1] == len(shard["voices"])
        assert (np.diff(shard["voice_offsets"]) >= 16000).all()  # every clip kept at least 1 s of speech
        assert shard["voice_identity"].dtype == np.int32 and shard["voice_identity"].shape == (n_voices,)
        assert shard["shard"]["identity_range"] == [2 * number, 2 * number + 2]
        for index, source in zip(shard["face_identity"], shard["face_source"]):
            assert 2 * number <= index < 2 * number + 2 and source.split("/")[1] == labels[index]
        for index, source in zip(shard["voice_identity"], shard["voice_source"]):
            assert 2 * number <= index < 2 * number + 2 and source.split("/")[1] == labels[index]
        assert shard["face_source"] == sorted(shard["face_source"])
        assert shard["shard"]["counts"]["faces"] == n_faces and shard["shard"]["counts"]["voices"] == n_voices
        faces, voices = faces + n_faces, voices + n_voices
        assert np.load(cache / name / "faces.npy", mmap_mode="r").shape == shard["faces"].shape
    assert (faces, voices) == (summary["counts"]["faces"], summary["counts"]["voices"])


def test_items_are_the_inference_preprocessing_of_their_files(corpus, prepared):
    from fvmatch.media.audio import load_audio
    from fvmatch.media.vad import speech_only
    from fvmatch.media.image import FaceDetector

    cache, summary, _ = prepared
    detector = FaceDetector()
    for name in summary["shards"]:
        shard = load_shard(cache / name)
        first, last = 0, len(shard["face_source"]) - 1
        for item in {first, last}:
            expected = detector.faces_in_file(corpus / shard["face_source"][item])[0].pixels
            np.testing.assert_array_equal(shard["faces"][item], expected)
        start, stop = shard["voice_offsets"][-2:]
        speech = speech_only(load_audio(corpus / shard["voice_source"][-1]))
        np.testing.assert_array_equal(shard["voices"][start:stop], np.round(speech * 32768).astype(np.int16))
        original, _ = soundfile.read(corpus / shard["voice_source"][-1], dtype="int16")
        assert len(set(shard["voices"][start:stop].tolist()) - set(original.tolist())) == 0


def test_bad_files_and_unlisted_identities_are_recorded_and_skipped(corpus, prepared, tmp_path):
    data = copy_corpus(corpus, tmp_path / "data")
    good = (corpus / "faces/id00000/v0/00000.jpg").read_bytes()
    (data / "faces/id00002/v0/truncated.jpg").write_bytes(good[: len(good) // 2])
    (data / "voices/id00001/v0/text.wav").write_text("this is not audio\n")
    soundfile.write(data / "voices/id00003/v1/silence.wav", np.zeros(16000 * 2, np.float32), 16000, subtype="PCM_16")
    (data / "faces/id09999/v0").mkdir(parents=True)
    (data / "faces/id09999/v0/00000.jpg").write_bytes(good)
    (data / "faces/id00000/v0/notes.txt").write_text("not media: ignored\n")

    summary = prepare_corpus(data, tmp_path / "cache", workers=1)

    clean = prepared[1]
    errors = {failure["item"]: failure["error"] for failure in summary["failures"]}
    assert errors.pop("faces/id09999") == "identity 'id09999' is not in meta.csv; skipped"
    assert errors.pop("faces/id00002/v0/truncated.jpg").startswith("cannot decode image")
    assert errors.pop("voices/id00001/v0/text.wav").startswith("not an audio file soundfile can read")
    assert errors.pop("voices/id00003/v1/silence.wav").startswith("too little speech: 0.0 s detected in 2.0 s")
    assert errors == {failure["item"]: failure["error"] for failure in clean["failures"]}
    assert [row["identity"] for row in summary["identities"]] == LABELS
    assert summary["shards"] == ["shard-00000"] and summary["complete"] is True
    counts, clean_counts = summary["counts"], clean["counts"]
    assert (counts["faces"], counts["voices"], counts["voice_seconds"]) == (
        clean_counts["faces"], clean_counts["voices"], clean_counts["voice_seconds"])
    assert counts["failures"] == clean_counts["failures"] + 4
    shard = load_shard(tmp_path / "cache/shard-00000")
    assert shard["shard"]["failures"] == [failure for failure in summary["failures"] if failure["item"] != "faces/id09999"]
    clean_faces = [source for name in clean["shards"] for source in json.loads((prepared[0] / name / "face_source.json").read_text())]
    assert shard["face_source"] == clean_faces


def test_rerun_of_a_complete_cache_changes_nothing(corpus, prepared):
    cache, summary, _ = prepared
    before = mtimes(cache)
    calls = []
    again = prepare_corpus(corpus, cache, workers=1, identities_per_shard=2, progress=calls.append)
    assert again == {**summary, "shards_built": []}
    assert mtimes(cache) == before and calls == [4]


def test_interrupted_run_rebuilds_only_the_missing_shard(corpus, prepared, tmp_path):
    clean_cache = prepared[0]
    cache = tmp_path / "cache"
    shutil.copytree(clean_cache, cache)
    shutil.rmtree(cache / "shard-00001")
    (cache / "shard-00001.tmp").mkdir()
    (cache / "shard-00001.tmp/faces.npy.raw").write_bytes(b"half a shard")
    plan = json.loads((cache / "prepare.json").read_text())
    (cache / "prepare.json").write_text(json.dumps({**plan, "complete": False}))
    kept = mtimes(cache / "shard-00000")

    calls = []
    summary = prepare_corpus(corpus, cache, workers=1, identities_per_shard=2, progress=calls.append)

    assert summary["shards_built"] == ["shard-00001"] and calls == [2, 1, 1]
    assert mtimes(cache / "shard-00000") == kept
    assert tree_digest(cache) == tree_digest(clean_cache)


def test_workers_give_byte_identical_shards(corpus, prepared, tmp_path):
    calls = []
    summary = prepare_corpus(corpus, tmp_path / "cache", workers=2, identities_per_shard=2, progress=calls.append)
    assert summary == prepared[1] and sum(calls) == 4
    assert tree_digest(tmp_path / "cache") == tree_digest(prepared[0])


def test_cache_of_another_corpus_or_identity_list_is_refused(corpus, prepared, tmp_path):
    other = copy_corpus(corpus, tmp_path / "other")
    with pytest.raises(BadArgument, match="prepared with another corpus"):
        prepare_corpus(other, prepared[0], workers=1, identities_per_shard=2)
    with pytest.raises(BadArgument, match="another identities per shard"):
        prepare_corpus(corpus, prepared[0], workers=1, identities_per_shard=3)
    stale = tmp_path / "stale"
    stale.mkdir()
    plan = json.loads((prepared[0] / "prepare.json").read_text())
    (stale / "prepare.json").write_text(json.dumps({**plan, "identities": plan["identities"][:3], "complete": False}))
    with pytest.raises(BadArgument, match=r"another identity list or meta.csv \(3 identities, now 4\)"):
        prepare_corpus(corpus, stale, workers=1, identities_per_shard=2)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "thesis.pdf").write_text("")
    with pytest.raises(BadArgument, match="is not empty and holds no prepare.json"):
        prepare_corpus(corpus, busy, workers=1)


def test_empty_and_one_identity_corpora_are_refused(corpus, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadArgument, match="empty corpus: no faces/<identity>/ or voices/<identity>/ folders"):
        prepare_corpus(tmp_path / "empty", tmp_path / "cache", workers=1)
    one = copy_corpus(corpus, tmp_path / "one", labels=["id00000"])
    with pytest.raises(BadArgument, match=r"at least 2 identities .* with both face images and voice recordings; found 1 \(id00000\)") as raised:
        prepare_corpus(one, tmp_path / "cache", workers=1)
    assert raised.value.exit_code == 2
    assert not (tmp_path / "cache").exists()


def test_corpus_left_with_one_usable_identity_is_refused_after_preparation(corpus, tmp_path):
    data = copy_corpus(corpus, tmp_path / "data", labels=["id00000", "id00001"])
    for face in (data / "faces/id00001").rglob("*.jpg"):
        face.write_text("not an image\n")
    with pytest.raises(BadArgument, match="at least 2 identities with both a usable face and voice; 1 left after preparation"):
        prepare_corpus(data, tmp_path / "cache", workers=1)
    stored = json.loads((tmp_path / "cache/prepare.json").read_text())
    assert stored["complete"] is True and stored["counts"]["failures"] == SPEC.faces_per_identity


def test_meta_with_a_missing_column_is_refused(corpus, tmp_path):
    data = copy_corpus(corpus, tmp_path / "data")
    lines = (data / "meta.csv").read_text().splitlines()
    (data / "meta.csv").write_text("".join(line.rsplit(",", 1)[0] + "\n" for line in lines))
    with pytest.raises(BadArgument, match=r"meta.csv: missing column\(s\) split"):
        prepare_corpus(data, tmp_path / "cache", workers=1)


def test_read_meta_returns_rows_with_integer_ages(tmp_path):
    (tmp_path / "meta.csv").write_text(HEADER.replace("split", "split,notes")
                                       + "id2,B,f,N1,34,train,x\nid1,A,m,N2,,test,y\n")
    assert read_meta(tmp_path) == [
        {"identity": "id2", "name": "B", "gender": "f", "nationality": "N1", "age": 34, "split": "train"},
        {"identity": "id1", "name": "A", "gender": "m", "nationality": "N2", "age": None, "split": "test"},
    ]


@pytest.mark.parametrize("content, problem", [
    (None, "meta.csv: no such file"),
    ("", "meta.csv: file is empty"),
    (HEADER, "meta.csv: lists no identities"),
    ("identity,name,gender,age,split\nid1,A,m,34,train\n", r"missing column\(s\) nationality"),
    (HEADER + "id1,A,m,N1,34,training\n", "line 2: split 'training' is not one of train, val, test"),
    (HEADER + "id1,A,m,N1,34,train\nid1,A,m,N1,34,test\n", r"line 3: identity 'id1' is listed twice \(first on line 2\)"),
    (HEADER + "id1,A,m,N1,thirty,train\n", "line 2: age 'thirty' is not a whole number"),
    (HEADER + "id1,A,m,N1,34\n", "line 2: 5 fields, the header has 6"),
    (HEADER + "../id1,A,m,N1,34,train\n", "line 2: identity '../id1' is not a folder name"),
])
def test_read_meta_refuses_malformed_files(tmp_path, content, problem):
    if content is not None:
        (tmp_path / "meta.csv").write_text(content)
    with pytest.raises(BadArgument, match=problem):
        read_meta(tmp_path)


def test_frames_per_video_keeps_an_even_spread_of_each_videos_frames(corpus, tmp_path):
    from fvmatch.training.prepare import sampled_frames

    folder = tmp_path / "faces" / "id1"
    frames = [folder / "vidA" / f"{n:07d}.jpg" for n in range(7)] + [folder / "vidB" / "u1" / "0000001.jpg",
                                                                      folder / "vidB" / "u2" / "0000002.jpg"]
    kept = sampled_frames(frames, folder, 3)
    assert [path.relative_to(folder).as_posix() for path in kept] == [
        "vidA/0000000.jpg", "vidA/0000003.jpg", "vidA/0000006.jpg", "vidB/u1/0000001.jpg", "vidB/u2/0000002.jpg"]
    assert sampled_frames(frames, folder, None) == frames
    # prepared: each identity's two faces put in one video, one frame of it kept; the cache remembers the choice
    merged = copy_corpus(corpus, tmp_path / "merged", LABELS[:2])
    for label in LABELS[:2]:
        videos = sorted((merged / "faces" / label).iterdir())
        for extra in videos[1:]:
            for frame in extra.iterdir():
                frame.rename(videos[0] / f"b_{frame.name}")
            extra.rmdir()
    summary = prepare_corpus(merged, tmp_path / "cache", workers=1, frames_per_video=1)
    assert summary["counts"]["faces"] == 2 and summary["frames_per_video"] == 1
    with pytest.raises(BadArgument, match="another --frames-per-video"):
        prepare_corpus(merged, tmp_path / "cache", workers=1)
