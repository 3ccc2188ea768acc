"""A video read in parts side by side (fvmatch.analysis.video_parts) gives exactly what one pass gives: the same
sampled frames, faces, boxes and tracks (vectors to float rounding), a worker process reading each part after the
first; a part that cannot be read sends the video back to one pass. Real encoders, real H.264 files."""
from __future__ import annotations

import numpy as np
import pytest

from fvmatch.analysis import video_parts
from fvmatch.analysis.video_faces import FRESH_EVERY
from fvmatch.analysis.video_parts import video_parts as parts_of
from fvmatch.synth.identity import draw_identity
from fvmatch.synth.video import OnScreen, write_talking_head

FPS = 8.0  # a sampling grid block (FRESH_EVERY slots) of 4 s: two parts in a 6-s clip


@pytest.fixture(scope="module")
def crossing(tmp_path_factory):
    """A on screen for 6 s; B from 2.5 s to 5 s, across the parts' seam at 4 s."""
    a, b = draw_identity("part-a", np.random.default_rng(11)), draw_identity("part-b", np.random.default_rng(12))
    return write_talking_head(tmp_path_factory.mktemp("parts") / "crossing.mp4",
                              [OnScreen(a, (0.27, 0.5), 0.5), OnScreen(b, (0.75, 0.5), 0.5, since=2.5, until=5.0)],
                              6.0, width=400, audio=False)


def read(embedder, path, workers, progress=None):
    from fvmatch.analysis.video import face_tracks
    from fvmatch.media.video import probe_video

    info, timings, counts = probe_video(path), {"decode": 0.0, "detection": 0.0, "embedding": 0.0}, {}
    tracks = face_tracks(embedder, path, info, FPS, ["dlib-face"], timings, progress, counts, workers=workers)
    return tracks, info, timings, counts


def test_parts_start_where_one_pass_starts_afresh_and_are_no_more_than_the_workers(monkeypatch):
    grid = FRESH_EVERY / 2.0  # 16 s at 2 fps
    assert parts_of(58.76, 2.0, 2) == [(0.0, 2 * grid), (2 * grid, None)]
    assert parts_of(3600.0, 2.0, 4) == [(0.0, 56 * grid), (56 * grid, 112 * grid), (112 * grid, 169 * grid),
                                        (169 * grid, None)]
    assert parts_of(58.76, 2.0, 1) == parts_of(20.0, 2.0, 8) == parts_of(0.0, 2.0, 8) == [(0.0, None)]
    monkeypatch.setenv(video_parts.WORKERS_VARIABLE, "1")
    assert parts_of(3600.0, 2.0) == [(0.0, None)]
    monkeypatch.setenv(video_parts.WORKERS_VARIABLE, "3")
    assert len(parts_of(3600.0, 2.0)) == 3


def test_two_parts_read_side_by_side_give_one_pass_s_tracks(embedder, crossing, monkeypatch):
    monkeypatch.setattr(video_parts, "PART_MIN_SECONDS", 2.0)
    assert parts_of(6.0, FPS, 2) == [(0.0, 4.0), (4.0, None)]
    one, one_info, one_timings, one_counts = read(embedder, crossing, 1)
    told: list[float] = []
    both, both_info, timings, counts = read(embedder, crossing, 2, told.append)
    assert timings["processes"] == 2 and "processes" not in one_timings
    assert [len(track.times) for track in one] == [48, 20]  # A in every sample, B from 2.5 s to 5 s: one track
    assert [(track.times, track.boxes) for track in both] == [(track.times, track.boxes) for track in one]
    for ours, theirs in zip(both, one):  # each track's weighted sum of its faces' vectors
        assert ours.weights == pytest.approx(theirs.weights)
        assert np.allclose(ours.sums["dlib-face"], theirs.sums["dlib-face"], atol=1e-5)
    assert counts == one_counts and counts["reused"] > 0
    assert (both_info.frames_decoded, both_info.frames_sampled) == (one_info.frames_decoded, one_info.frames_sampled)
    assert both_info.frames_sampled == 48 and both_info.damage == one_info.damage == []
    assert 5.5 < max(told) <= 6.0  # progress: the video seconds read by both parts together


def test_a_part_that_cannot_be_read_sends_the_video_back_to_one_pass(embedder, tmp_path, monkeypatch):
    """A WebM whose clusters are overwritten at 80% of the file: decoding stops at 4.3 s, in the second part (from
    4 s); one pass reads up to the damage and says so, and that is what the parts give back."""
    person = draw_identity("part-c", np.random.default_rng(13))
    whole = write_talking_head(tmp_path / "whole.webm", [OnScreen(person, (0.5, 0.5), 0.6)], 6.0, audio=False)
    data = bytearray(whole.read_bytes())
    at = int(len(data) * 0.8)
    data[at:at + 4096] = b"\xff" * 4096
    path = tmp_path / "damaged.webm"
    path.write_bytes(bytes(data))
    monkeypatch.setattr(video_parts, "PART_MIN_SECONDS", 2.0)
    one, one_info, _, _ = read(embedder, path, 1)
    again, info, timings, _ = read(embedder, path, 2)
    assert "processes" not in timings  # read in one pass after all
    assert [(track.times, track.boxes) for track in again] == [(track.times, track.boxes) for track in one]
    assert info.damage == one_info.damage and info.damage[0].startswith("video decoding stopped after")
    said = [note for note in info.notes if note.startswith("read in one pass")]
    assert len(said) == 1 and said[0].startswith("read in one pass: the part from 4 s could not be read apart (video "
                                                 "decoding stopped after")
    assert not any(note.startswith("read in one pass") for note in one_info.notes)
    assert 32 < one_info.frames_sampled == info.frames_sampled < 48


def test_a_file_whose_index_calls_every_frame_a_key_frame_reads_its_part_from_the_start(tmp_path):
    """With its sync-sample table renamed away, an MP4 says every frame is a key frame, so a seek lands on a frame
    that needs those before it: the part is then decoded from the file's start, and samples the same pictures."""
    from fvmatch.media.video import probe_video, sampled_frames

    person = draw_identity("part-d", np.random.default_rng(14))
    keyed = write_talking_head(tmp_path / "keyed.mp4", [OnScreen(person, (0.5, 0.5), 0.6)], 6.0, audio=False)
    data = keyed.read_bytes()
    assert data.count(b"stss") == 1
    unkeyed = tmp_path / "unkeyed.mp4"
    unkeyed.write_bytes(data.replace(b"stss", b"free"))  # the box kept, its type one every reader skips
    for path in (keyed, unkeyed):
        whole = {frame.time: frame.image for frame in sampled_frames(path, FPS, probe_video(path))}
        part = [(frame.time, frame.image) for frame in sampled_frames(path, FPS, probe_video(path), part=(4.0, None))]
        assert [when for when, _ in part] == [when for when in whole if when >= 4.0]
        assert all(np.array_equal(image, whole[when]) for when, image in part)
