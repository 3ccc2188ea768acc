"""--video through the command line: embed, enroll (options, --from-dir, manifest), identify, verify, bad input.

Synthetic talking heads written into real MP4 (H.264 + AAC) and WebM (VP9 + Opus) files with PyAV."""
from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from mediagen import gallery_state, run_cli_here
from fvmatch.synth.identity import draw_identity
from fvmatch.synth.video import OnScreen, write_talking_head


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("video_cli")
    a = draw_identity("cli-a", np.random.default_rng(21))
    b = draw_identity("cli-b", np.random.default_rng(22))
    files = {
        "a1": write_talking_head(root / "a1.mp4", [OnScreen(a)], 4.0, seed=1),
        "a2": write_talking_head(root / "a2.webm", [OnScreen(a)], 4.0, seed=2),  # another clip of A
        "b1": write_talking_head(root / "b1.mp4", [OnScreen(b)], 4.0, seed=3),
        "nothing": write_talking_head(root / "nothing.mp4", [], 2.0, audio=False),
        "silent": write_talking_head(root / "silent.mp4", [OnScreen(b)], 2.0, audio=False, seed=4),
    }
    data = files["a1"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 3])
    files["truncated"] = root / "truncated.mp4"
    from PIL import Image

    Image.new("RGB", (64, 64), (10, 20, 30)).save(root / "image.mp4", "JPEG")
    files["image"] = root / "image.mp4"
    return files


@pytest.fixture(scope="module")
def gallery(tmp_path_factory, clips):
    """A and B enrolled from one video each."""
    directory = tmp_path_factory.mktemp("video_gallery") / "g"
    for label, clip in (("alice", clips["a1"]), ("bob", clips["b1"])):
        outcome = run_cli_here("enroll", "-g", directory, "-i", label, "--video", clip, "--json")
        assert outcome.returncode == 0, outcome.stderr
    return directory


def test_embed_video_json(clips):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    outcome = run_cli_here("embed", "--video", clips["a1"], "--json")
    assert outcome.returncode == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert document["video"]["container"] == "MP4/MOV" and document["video"]["frames_sampled"] == 8
    assert [t["frames"] for t in document["tracks"]] == [8]
    assert document["face"]["modality"] == "face" and document["voice"]["modality"] == "voice"
    assert set(document["face"]["spaces"]) == {"joint", "dlib-face"}
    assert set(document["voice"]["spaces"]) == {"joint", "ge2e-voice"}
    assert document["face"]["quality"]["video"]["frame_times"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    # the track's age: its best frame's reading off the dlib-face chip, shown with the sex read
    age = document["face"]["quality"]["age"]
    assert sum(age["bands"]) == pytest.approx(1.0, abs=1e-3) and 0 < age["years"] < 81


def test_a_video_enrolls_as_one_identity_with_its_provenance(gallery, clips):
    connection = sqlite3.connect(gallery / "gallery.db")
    rows = connection.execute("SELECT identities.label, media.modality, media.sha256, media.quality_json FROM media "
                              "JOIN identities ON identities.id = media.identity_id ORDER BY media.id").fetchall()
    audit_inputs = [json.loads(row[0]) for row in
                    connection.execute("SELECT inputs FROM audit WHERE command = 'enroll batch' ORDER BY id")]
    connection.close()
    assert [(label, modality) for label, modality, _, _ in rows] == [
        ("alice", "face"), ("alice", "voice"), ("bob", "face"), ("bob", "voice")]
    import hashlib

    sha = hashlib.sha256(clips["a1"].read_bytes()).hexdigest()
    face, voice = json.loads(rows[0][3]), json.loads(rows[1][3])
    assert rows[0][2] == rows[1][2] == sha
    assert face["video"]["sha256"] == sha and face["video"]["frame_times"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert face["frames"] == 8 and face["detection_probability"] > 0.9
    assert voice["speech_seconds"] > 2.0 and voice["video"]["speech_segments"]
    # the audit trail records the same provenance with the stored items
    assert audit_inputs[0][0]["video"]["frame_times"] == face["video"]["frame_times"]
    assert audit_inputs[0][1]["video"]["speech_segments"] == voice["video"]["speech_segments"]
    again = run_cli_here("enroll", "-g", gallery, "-i", "alice", "--video", clips["a1"], "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 1


def test_identify_video_finds_the_person_in_both_modalities_each_against_its_own(gallery, clips):
    outcome = run_cli_here("identify", "-g", gallery, "--video", clips["a2"], "--json")
    assert outcome.returncode == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    found = {(t["query"], t["trial_type"], t["against"]): t["candidates"][0]["identity"] for t in document["trials"]}
    assert found[("face track", "face-face", "face")] == "alice"
    assert found[("soundtrack", "voice-voice", "voice")] == "alice"
    assert set(found) == {("face track", "face-face", "face"), ("face track", "face-voice", "voice"),
                          ("soundtrack", "voice-voice", "voice"), ("soundtrack", "face-voice", "face")}
    # face-voice trials are weighed by sex, never by the synthetic-trained joint space
    assert {t["space"] for t in document["trials"] if t["trial_type"] == "face-voice"} == {"sex"}
    face_face = next(t for t in document["trials"] if t["trial_type"] == "face-face")
    assert face_face["space"] == "dlib-face" and face_face["candidates"][0]["matched_modality"] == "face"
    connection = sqlite3.connect(gallery / "gallery.db")
    inputs, result = connection.execute("SELECT inputs, result FROM audit WHERE command = 'identify' "
                                        "ORDER BY id DESC LIMIT 1").fetchone()
    connection.close()
    assert json.loads(inputs)[0]["video"]["face_track"]["frame_times"][:2] == [0.0, 0.5]
    # a named space scores what it embeds; the trials it cannot score are said, not silently dropped
    faces_only = run_cli_here("identify", "-g", gallery, "--video", clips["a2"], "--space", "dlib-face", "--json")
    assert faces_only.returncode == 0, faces_only.stderr
    document = json.loads(faces_only.stdout)
    assert {(t["query"], t["trial_type"]) for t in document["trials"]} == {("face track", "face-face")}
    assert document["left_out"] == [
        "face-voice trials of the video's face track left out: the dlib-face space embeds face only",
        "voice-voice trials of the video's soundtrack left out: the dlib-face space embeds face only",
        "voice-face trials of the video's soundtrack left out: the dlib-face space embeds face only"]
    assert json.loads(result)["modality"] == "video"


def test_verify_video_alone_weighs_its_face_and_voice_by_sex_and_by_the_joint_space_only_named_and_labelled(clips):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    by_sex = run_cli_here("verify", "--video", clips["a1"], "--json")
    assert by_sex.returncode == 0, by_sex.stderr
    (trial,) = json.loads(by_sex.stdout)["trials"]
    assert (trial["space"], trial["decision"]) == ("sex", None) and set(trial["readings"]) >= {"face", "voice"}
    assert {trial["readings"][side]["age"]["band"] for side in ("face", "voice")} <= {"under 30", "30-49", "50 and over"}
    outcome = run_cli_here("verify", "--video", clips["a1"], "--space", "joint", "--json")
    assert outcome.returncode == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    (trial,) = document["trials"]
    assert trial["trial_type"] == "face-voice" and trial["space"] == "joint" and -1.0 <= trial["score"] <= 1.0
    assert document["warning"].startswith("SYNTHETIC-TRAINED joint space")
    text = run_cli_here("verify", "--video", clips["a1"], "--space", "joint")
    assert "WARNING: SYNTHETIC-TRAINED joint space" in text.stdout


def test_verify_video_against_another_video(clips):
    outcome = run_cli_here("verify", "--video", clips["a1"], "--video", clips["a2"], "--json")
    assert outcome.returncode == 0, outcome.stderr
    trials = {(t["first"].split()[-1], t["second"].split()[-1], t["trial_type"]): t["score"]
              for t in json.loads(outcome.stdout)["trials"]}
    assert len(trials) == 4 and {kind for *_, kind in trials} == {"face-face", "voice-voice", "face-voice"}
    other = run_cli_here("verify", "--video", clips["a1"], "--video", clips["b1"], "--json")
    voice_same = next(t["score"] for t in json.loads(outcome.stdout)["trials"] if t["trial_type"] == "voice-voice")
    voice_other = next(t["score"] for t in json.loads(other.stdout)["trials"] if t["trial_type"] == "voice-voice")
    assert voice_same > voice_other


def test_no_audio_enrolls_face_only_and_says_so(tmp_path, clips):
    outcome = run_cli_here("enroll", "-g", tmp_path / "g", "-i", "carol", "--video", clips["silent"])
    assert outcome.returncode == 0
    assert "no audio track: face only" in outcome.stderr
    assert "1 identity, 1 face, 0 voices" in " ".join(outcome.stdout.split())


@pytest.mark.parametrize("name, message", [
    ("nothing", "nothing usable: no face found in 4 sampled frames (2 a second); no audio track"),
    ("truncated", "MP4/MOV container is truncated or damaged"),
    ("image", "an image file, not a video (give it with --face)"),
])
def test_bad_videos_fail_in_one_line_and_leave_the_gallery_unchanged(gallery, clips, name, message):
    before = gallery_state(gallery)
    outcome = run_cli_here("enroll", "-g", gallery, "-i", "dave", "--video", clips[name])
    assert outcome.returncode == 2
    assert message in outcome.stderr and "Traceback" not in outcome.stderr
    assert gallery_state(gallery) == before
    query = run_cli_here("identify", "-g", gallery, "--video", clips[name])
    assert query.returncode == 2 and message in query.stderr
    assert len([line for line in query.stderr.splitlines() if line.strip()]) == 1


def test_a_video_given_as_a_voice_is_refused_by_content(tmp_path, clips):
    named_wav = tmp_path / "interview.wav"
    shutil.copy(clips["a1"], named_wav)
    outcome = run_cli_here("embed", "--voice", named_wav)
    assert outcome.returncode == 2
    assert "a video file, not an audio file: give it with --video" in outcome.stderr


def test_from_dir_and_manifest_take_videos(tmp_path, clips):
    folder = tmp_path / "people" / "erin"
    folder.mkdir(parents=True)
    shutil.copy(clips["a1"], folder / "call.wav")  # a video named .wav: a video by its content
    outcome = run_cli_here("enroll", "-g", tmp_path / "g1", "--from-dir", tmp_path / "people", "--json")
    assert outcome.returncode == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert sorted(e["modality"] for e in document["enrolled_items"]) == ["face", "voice"]
    manifest = tmp_path / "list.csv"
    shutil.copy(clips["b1"], tmp_path / "b1.mp4")
    manifest.write_text("identity,modality,path\nfrank,video,b1.mp4\n")
    outcome = run_cli_here("enroll", "-g", tmp_path / "g2", "--manifest", manifest, "--json")
    assert outcome.returncode == 0, outcome.stderr
    assert json.loads(outcome.stdout)["gallery_counts"] == {"identities": 1, "face": 1, "voice": 1}


def audit_run(gallery, tmp_path, rows: str):
    """`audit run` of a query file of these rows: its exit code, the results file and its records by query id."""
    queries, results = tmp_path / "queries.csv", tmp_path / "results.jsonl"
    queries.write_text(rows)
    outcome = run_cli_here("audit", "run", "-g", gallery, "--queries", queries, "--out", results, "--json")
    return outcome.returncode, results, {r["query_id"]: r for r in map(json.loads, results.read_text().splitlines())}


def test_audit_run_and_report_take_videos(gallery, clips, tmp_path):
    code, results, records = audit_run(gallery, tmp_path, f"query_id,modality,path,claimed_identity\n"
                                       f"q1,video,{clips['a2']},\nq2,video,{clips['image']},\n"
                                       f"q3,video,{clips['a2']},alice\n")
    assert code == 2  # q2 failed
    assert records["q2"]["status"] == "failed" and "an image file, not a video" in records["q2"]["error"]
    first = records["q1"]
    assert first["status"] == "ok" and first["modality"] == "video" and first["against"] == ["face", "voice"]
    best = {}
    for candidate in first["candidates"]:
        best.setdefault((candidate["query"], candidate["trial_type"]), candidate["identity"])
    assert best[("face track", "face-face")] == "alice" and best[("soundtrack", "voice-voice")] == "alice"
    assert first["video"]["face_track"]["frame_times"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert first["video"]["speech_segments"]
    claimed = records["q3"]
    assert {c["identity"] for c in claimed["candidates"]} == {"alice"} and len(claimed["candidates"]) == 4
    # the report draws the track's keyframes and the soundtrack, and shows the enrolled faces from their videos
    page = tmp_path / "report.html"
    outcome = run_cli_here("report", "-g", gallery, "--results", results, "--out", page)
    assert outcome.returncode == 0, outcome.stderr
    html = page.read_text()
    assert "4 of the 8 frames of its main face track" in html and "speech segments used shaded" in html
    assert "enrolled face not shown" not in html
    assert "face track: face-face" in html


def test_report_of_a_video_answered_now(gallery, clips, tmp_path):
    page = tmp_path / "now.html"
    outcome = run_cli_here("report", "-g", gallery, "--video", clips["a2"], "--out", page, "--json")
    assert outcome.returncode == 0, outcome.stderr
    assert "frames of its main face track" in page.read_text()
    connection = sqlite3.connect(gallery / "gallery.db")
    inputs = connection.execute("SELECT inputs FROM audit WHERE command = 'report query' ORDER BY id DESC").fetchone()[0]
    connection.close()
    assert json.loads(inputs)[0]["video"]["face_track"]["frame_times"][:2] == [0.0, 0.5]


def test_reindex_fills_video_items_from_their_videos(gallery, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(gallery, old)
    with sqlite3.connect(old / "gallery.db") as db:  # as enrolled before these spaces existed
        kept = dict(db.execute("SELECT media_id || space, embedding FROM vectors WHERE space IN "
                               "('dlib-face', 'ge2e-voice')").fetchall())
        db.execute("DELETE FROM vectors WHERE space IN ('dlib-face', 'ge2e-voice')")
    filled = run_cli_here("gallery", "reindex", "--gallery", old, "--json")
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout)["filled"] == 4 and json.loads(filled.stdout)["unavailable"] == 0
    with sqlite3.connect(old / "gallery.db") as db:
        again = dict(db.execute("SELECT media_id || space, embedding FROM vectors WHERE space IN "
                                "('dlib-face', 'ge2e-voice')").fetchall())
    assert again.keys() == kept.keys()
    for key, blob in kept.items():  # the same track and speech, embedded again
        np.testing.assert_allclose(np.frombuffer(again[key], np.float32), np.frombuffer(blob, np.float32), atol=1e-5)


def test_verify_video_against_a_claimed_identity(gallery, clips):
    outcome = run_cli_here("verify", "--video", clips["a2"], "--claim", "alice", "-g", gallery, "--json")
    assert outcome.returncode == 0, outcome.stderr
    trials = {(t["query"], t["trial_type"]): t for t in json.loads(outcome.stdout)["trials"]}
    assert set(trials) == {("face track", "face-face"), ("face track", "face-voice"), ("soundtrack", "voice-voice"),
                           ("soundtrack", "face-voice")}
    assert {t["space"] for (_, kind), t in trials.items() if kind == "face-voice"} == {"sex"}
    assert all(t["identity"] == "alice" for t in trials.values())
    same = trials[("soundtrack", "voice-voice")]["score"]
    other = json.loads(run_cli_here("verify", "--video", clips["a2"], "--claim", "bob", "-g", gallery,
                                    "--json").stdout)["trials"]
    assert same > next(t["score"] for t in other if t["query"] == "soundtrack" and t["trial_type"] == "voice-voice")
    unknown = run_cli_here("verify", "--video", clips["a2"], "--claim", "nobody", "-g", gallery)
    assert unknown.returncode == 2 and "nobody: no such identity in the gallery" in unknown.stderr


def test_embed_video_in_one_space(clips):
    voice_only = json.loads(run_cli_here("embed", "--video", clips["a1"], "--space", "ge2e-voice", "--json").stdout)
    assert voice_only["face"]["spaces"] == {} and list(voice_only["voice"]["spaces"]) == ["ge2e-voice"]
    assert voice_only["tracks"][0]["frames"] == 8  # the face is still found and tracked
    face_only = json.loads(run_cli_here("embed", "--video", clips["a1"], "--space", "dlib-face", "--json").stdout)
    assert list(face_only["face"]["spaces"]) == ["dlib-face"] and face_only["voice"] is None


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """A on the left for 4 s (track 1), B on the right from 1 s to 3 s (track 2), one soundtrack."""
    a, b = draw_identity("cli-a", np.random.default_rng(21)), draw_identity("cli-b", np.random.default_rng(22))
    return write_talking_head(tmp_path_factory.mktemp("two") / "two.mp4",
                              [OnScreen(a, (0.27, 0.5), 0.5), OnScreen(b, (0.75, 0.5), 0.5, since=1.0, until=3.0)],
                              4.0, width=480)


def test_track_picks_which_face_of_a_video_is_its_face(tmp_path, two_people):
    two = two_people
    found = {}
    for track in (None, 2):
        outcome = run_cli_here("embed", "--video", two, "--space", "dlib-face", "--json",
                               *(("--track", track) if track else ()))
        assert outcome.returncode == 0, outcome.stderr
        found[track] = json.loads(outcome.stdout)
    assert [t["track"] for t in found[None]["tracks"]] == [1, 2] and found[None]["face"]["quality"]["track"] == 1
    # the second track (B, on screen 1-3 s) is the face asked for, listed first; A's is the other
    assert found[2]["face"]["quality"]["track"] == 2 and [t["track"] for t in found[2]["tracks"]] == [2, 1]
    centres = {k: np.mean([(box[0] + box[2]) / 2 for box in found[k]["tracks"][0]["boxes"]]) for k in (None, 2)}
    assert centres[None] < 240 < centres[2]  # A stands left, B right, in the 480-px picture
    assert found[None]["face"]["spaces"]["dlib-face"]["embedding"] != found[2]["face"]["spaces"]["dlib-face"]["embedding"]
    missing = run_cli_here("embed", "--video", two, "--space", "dlib-face", "--track", "5")
    assert missing.returncode == 2 and missing.stderr.strip() == (
        f"fvmatch: error: --track: {two} holds 2 face tracks (1-2, longest first: embed --video lists them): there is "
        "no track 5")
    alone = run_cli_here("identify", "-g", tmp_path / "g", "--face", tmp_path / "x.jpg", "--track", "2")
    assert alone.returncode == 2 and "--track: goes with --video" in alone.stderr
    # verify --video alone: B's face (track 2) against the soundtrack, read by sex and age like any face-voice pair
    read = {}
    for track in ("1", "2"):
        verified = run_cli_here("verify", "--video", two, "--track", track, "--json")
        assert verified.returncode == 0, verified.stderr
        (trial,) = json.loads(verified.stdout)["trials"]
        assert trial["space"] == "sex"
        read[track] = trial["readings"]
    assert read["1"]["voice"] == read["2"]["voice"] and read["1"]["face"]["p_female"] != read["2"]["face"]["p_female"]
    both = run_cli_here("verify", "--video", two, "--video", two, "--track", "2")
    assert both.returncode == 2 and "--track: goes with one --video" in both.stderr


def test_two_people_of_one_video_enroll_from_their_own_tracks_and_reindex_from_them(tmp_path, two_people):
    gallery = tmp_path / "g"
    first = run_cli_here("enroll", "-g", gallery, "-i", "ann", "--video", two_people, "--json")
    assert first.returncode == 0, first.stderr
    assert [e["modality"] for e in json.loads(first.stdout)["enrolled_items"]] == ["face", "voice"]
    second = run_cli_here("enroll", "-g", gallery, "-i", "ben", "--video", two_people, "--track", "2", "--json")
    assert second.returncode == 0, second.stderr
    (entry,) = json.loads(second.stdout)["enrolled_items"]  # B's face; the soundtrack stays A's voice
    assert entry["modality"] == "face" and entry["video"]["frame_times"] == [1.0, 1.5, 2.0, 2.5]
    assert "soundtrack already enrolled as the voice of 'ann': face only" in " ".join(entry["notes"])
    again = run_cli_here("enroll", "-g", gallery, "-i", "ben", "--video", two_people, "--track", "2", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["skipped"] == 1
    before = gallery_state(gallery)
    taken = run_cli_here("enroll", "-g", gallery, "-i", "cy", "--video", two_people, "--track", "2")
    assert taken.returncode == 2 and "same file is already enrolled as 'ben'" in taken.stderr
    assert gallery_state(gallery) == before
    for misuse in (("--video", two_people, "--video", two_people, "--track", "2"),
                   ("--face", two_people, "--audio-track", "1")):
        refused = run_cli_here("enroll", "-g", gallery, "-i", "cy", *misuse)
        assert refused.returncode == 2 and "goes with one --video" in refused.stderr
    # reindex embeds each face again from its own track, found by its frame times
    with sqlite3.connect(gallery / "gallery.db") as db:
        assert db.execute("SELECT identities.label, json_extract(quality_json, '$.track') FROM media JOIN identities "
                          "ON identities.id = identity_id WHERE modality = 'face' ORDER BY media.id").fetchall() == [
            ("ann", 1), ("ben", 2)]
        kept = dict(db.execute("SELECT media_id, embedding FROM vectors WHERE space = 'dlib-face'").fetchall())
        db.execute("DELETE FROM vectors WHERE space = 'dlib-face'")
    filled = run_cli_here("gallery", "reindex", "--gallery", gallery, "--json")
    assert filled.returncode == 0, filled.stderr
    assert json.loads(filled.stdout)["filled"] == 2
    with sqlite3.connect(gallery / "gallery.db") as db:
        again = dict(db.execute("SELECT media_id, embedding FROM vectors WHERE space = 'dlib-face'").fetchall())
    assert again.keys() == kept.keys() and len(kept) == 2
    for key, blob in kept.items():
        np.testing.assert_allclose(np.frombuffer(again[key], np.float32), np.frombuffer(blob, np.float32), atol=1e-5)


def test_audit_run_takes_a_video_rows_tracks(gallery, two_people, tmp_path):
    code, _, records = audit_run(gallery, tmp_path, f"query_id,modality,path,claimed_identity,track,audio_track\n"
                                 f"q1,video,{two_people},,2,1\nq2,video,{two_people},,0,\n"
                                 f"q3,face,{two_people},,1,\nq4,video,{two_people},,3,\n")
    assert code == 2  # q2, q3 and q4 failed
    assert records["q1"]["status"] == "ok"
    assert records["q1"]["video"]["face_track"]["frame_times"] == [1.0, 1.5, 2.0, 2.5]  # B's track, not A's
    assert "track '0' is not a track number (a whole number from 1)" in records["q2"]["error"]
    assert "track '1' goes with modality video" in records["q3"]["error"]
    assert "holds 2 face tracks" in records["q4"]["error"] and "there is no track 3" in records["q4"]["error"]
