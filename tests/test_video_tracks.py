"""Face tracks (fvmatch.media.tracks) and video embedding (fvmatch.analysis.video): linking rules on made-up detections, then
real talking-head videos through MTCNN and the real encoders."""
from __future__ import annotations

import numpy as np
import pytest

from fvmatch.errors import NoFaceFound
from fvmatch.media.tracks import FaceTrack, FrameFace, TrackLinker, iou
from fvmatch.synth.identity import draw_identity
from fvmatch.synth.video import OnScreen, write_talking_head


def unit(*values):
    vector = np.array(values, np.float32)
    return vector / np.linalg.norm(vector)


def face(time, box, vector, probability=0.99, eyes=40.0):
    return FrameFace(time, box, probability, {"s": vector}, {"eye_distance_px": eyes})


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_overlapping_similar_faces_link_and_different_people_do_not():
    linker = TrackLinker("s")
    a, b = unit(1, 0, 0), unit(0, 1, 0)
    linker.add_frame([face(0.0, (0, 0, 10, 10), a), face(0.0, (50, 0, 60, 10), b)])
    linker.add_frame([face(0.5, (1, 0, 11, 10), a), face(0.5, (51, 0, 61, 10), b)])
    # a different person where the first was: overlap alone does not link it
    linker.add_frame([face(1.0, (1, 0, 11, 10), unit(0, 0, 1))])
    tracks = linker.tracks()
    assert [t.frames for t in tracks] == [2, 2, 1]
    assert [t.number for t in tracks] == [1, 2, 3]
    assert tracks[0].times == [0.0, 0.5] and tracks[2].times == [1.0]


def test_a_face_that_jumps_rejoins_on_resemblance_within_the_gap():
    linker = TrackLinker("s")
    a = unit(1, 0.05, 0)
    linker.add_frame([face(0.0, (0, 0, 10, 10), a)])
    linker.add_frame([face(0.5, (80, 80, 90, 90), unit(1, 0, 0.05))])  # a cut: no overlap, same face
    linker.add_frame([face(5.0, (80, 80, 90, 90), a)])  # after the gap: a new track
    assert [t.frames for t in linker.tracks()] == [2, 1]


def test_a_cut_to_another_person_in_the_same_place_starts_a_track_though_dlib_face_finds_them_alike():
    """Cosines measured at the cuts of benchmarks/video_minute.py's minute (one talking head to another, boxes
    overlapping): 0.82-0.90 in dlib-face, face to face; one person's consecutive samples: 0.92 and above."""
    def at(cosine, axis=1):  # a unit vector at `cosine` from (1, 0, 0), towards y (axis 1) or z (axis 2)
        values = [cosine, 0.0, 0.0]
        values[axis] = float(np.sqrt(1 - cosine ** 2))
        return unit(*values)

    linker = TrackLinker("s")
    linker.add_frame([face(0.0, (0, 0, 10, 10), at(1.0))])
    linker.add_frame([face(0.5, (0, 0, 10, 10), at(1.0))])
    linker.add_frame([face(1.0, (1, 0, 11, 10), at(0.86))])  # the next clip: another person where the first was
    linker.add_frame([face(1.5, (40, 40, 50, 50), at(0.90, axis=2))])  # another one elsewhere: too unlike to rejoin
    assert [track.times for track in linker.tracks()] == [[0.0, 0.5], [1.0], [1.5]]


def test_track_vector_is_quality_weighted_mean_renormalised():
    track = FaceTrack(1)
    track.add(face(0.0, (0, 0, 10, 10), unit(1, 0, 0), probability=1.0, eyes=30.0))  # weight 1
    track.add(face(0.5, (0, 0, 10, 10), unit(0, 1, 0), probability=0.9, eyes=10.0))  # weight 0.9 * 1/3 = 0.3
    expected = unit(1.0, 0.3, 0)
    np.testing.assert_allclose(track.vector("s"), expected, rtol=1e-6)
    assert np.linalg.norm(track.vector("s")) == pytest.approx(1.0)
    assert track.mean_probability == pytest.approx(0.95)
    assert track.summary(2.0)["seconds_on_screen"] == 1.0
    assert track.best_quality["eye_distance_px"] == 30.0


def test_the_pyramid_floor_scans_fully_every_few_samples_and_after_a_sample_without_faces():
    from types import SimpleNamespace

    from fvmatch.analysis.video_faces import PyramidFloor

    floor = PyramidFloor()
    found = lambda *widths: [SimpleNamespace(box=(10.0, 0.0, 10.0 + w, w)) for w in widths]  # noqa: E731
    asked = []
    for crops in (found(120, 80), found(90), found(), found(100), found(100), found(60), found(60), found(60)):
        asked.append(floor.next_smallest())
        floor.saw(crops)
    # sample 0 full; 1: half the smallest of sample 0; 2: half of 90; 3: full (sample 2 found none); 4: full (every
    # 4th); 5, 6, 7: half the smallest of the sample before
    assert asked == [None, 40.0, 45.0, None, None, 50.0, 30.0, 30.0]


def test_between_full_scans_a_frame_is_searched_around_the_faces_before_and_whole_for_large_new_ones():
    from types import SimpleNamespace

    from fvmatch.analysis.video_faces import PyramidFloor

    face = lambda x1, y1, x2, y2: SimpleNamespace(box=(x1, y1, x2, y2))  # noqa: E731
    floor = PyramidFloor()
    assert floor.next_smallest() is None and floor.regions(1280, 720) is None  # sample 0: a full scan
    floor.saw([face(100, 100, 200, 220), face(900, 300, 960, 370)])
    assert floor.next_smallest() == 30.0  # half the smallest face (60 px wide)
    # a square twice each face's larger side around it, clipped to the frame; the frame for faces of 144 px and more
    assert floor.regions(1280, 720) == [(30, 40, 271, 281, 30.0), (860, 265, 1001, 406, 30.0), (0, 0, 1280, 720, 144.0)]
    floor.saw([face(110, 100, 210, 220)])  # the second face is not found in its region
    assert floor.next_smallest() is None and floor.regions(1280, 720) is None  # so the next sample scans fully
    floor.saw([face(110, 100, 210, 220), face(900, 300, 960, 370)])
    assert floor.next_smallest() == 30.0 and floor.regions(1280, 720) is not None
    floor.saw([face(120, 100, 220, 220), face(950, 300, 1010, 370)])  # each moved within its region: none lost
    assert floor.smallest == 60
    # a face filling the frame: its region would cover most of it, so the whole frame is searched (floored)
    floor = PyramidFloor()
    floor.next_smallest()
    floor.saw([face(100, 40, 500, 440)])
    assert floor.next_smallest() == 200.0 and floor.regions(640, 480) is None


def test_a_floor_finds_the_faces_a_full_scan_finds_at_least_that_wide_and_no_smaller(grace_hopper):
    from PIL import Image

    from fvmatch.media.image import FaceDetector

    detector, image = FaceDetector(), Image.open(grace_hopper).convert("RGB")
    (full,) = detector.detect(image)
    width = full.box[2] - full.box[0]
    (floored,) = detector.detect(image, 0.5 * width)
    assert np.allclose(floored.box, full.box, atol=0.05 * width)
    # MTCNN's smallest face is not a hard edge (its boxes are regressed from 12-px cells): this 181-px face is still
    # found with a floor of twice its width, not with three times
    assert len(detector.detect(image, 2.0 * width)) == 1 and detector.detect(image, 3.0 * width) == []
    # searched only around it (its region in the image's coordinates), and in a region beside it where it is not
    x1, y1, x2, y2 = (int(v) for v in full.box)
    (around,) = detector.detect(image, None, [(x1 - 100, y1 - 100, x2 + 100, y2 + 100, 0.5 * width)])
    assert np.allclose(around.box, full.box, atol=0.05 * width) and around.pixels.shape == full.pixels.shape
    assert detector.detect(image, None, [(x2, 0, image.width, image.height, 0.5 * width)]) == []


def test_a_face_takes_the_vectors_of_the_embedded_chip_it_barely_differs_from(embedder, grace_hopper):
    from types import SimpleNamespace

    from PIL import Image

    from fvmatch.analysis.embedder import PreparedFace
    from fvmatch.analysis.video_faces import ChipReuse, chip_signature

    image = np.asarray(Image.open(grace_hopper).convert("RGB"))
    (crop,) = embedder.detector.detect(Image.fromarray(image))
    chip = embedder.space("dlib-face").prepare(image, crop)
    other = np.roll(chip, 40, axis=1)  # the same pixels, the face out of place: another chip
    blend = lambda share: ((1 - share) * chip + share * other).astype(np.uint8)  # noqa: E731
    box = crop.box
    moved = (box[0] + 0.6 * (box[2] - box[0]), box[1], box[2] + 0.6 * (box[2] - box[0]), box[3])
    correlation = lambda a, b: float(chip_signature(a) @ chip_signature(b))  # noqa: E731
    brighter = np.clip(chip * 1.3 + 12, 0, 255).astype(np.uint8)
    assert correlation(brighter, chip) > 0.99 and correlation(other, chip) < 0.6
    # a drift in two steps, each within the threshold, the two together past it
    threshold, shares = ChipReuse.MIN_CORRELATION, np.arange(0.0, 1.0, 0.01)
    step = max(s for s in shares if correlation(blend(s), chip) >= threshold)
    drift = max(s for s in shares if correlation(blend(s), blend(step)) >= threshold)
    assert 0 < step < drift and correlation(blend(drift), chip) < threshold

    def slot(picture, where=box):
        (found,) = reuse.slots([PreparedFace(SimpleNamespace(box=where), {"dlib-face": picture}, 1)])
        return found

    reuse = ChipReuse()
    first = slot(chip)
    assert slot(brighter) is first  # brightness and contrast do not count
    assert slot(blend(step)) is first
    assert slot(blend(drift)) is not first  # compared with the chip embedded, not with the one reused
    reuse = ChipReuse()
    first = slot(chip)
    assert slot(chip, moved) is not first  # the same chip elsewhere in the frame (IoU under MIN_IOU)
    assert slot(other, moved) is not first
    assert len({id(slot(chip)), id(first)}) == 2  # only the sample just before is looked at


@pytest.fixture(scope="module")
def people():
    return draw_identity("track-a", np.random.default_rng(1)), draw_identity("track-b", np.random.default_rng(2))


@pytest.fixture(scope="module")
def two_people(tmp_path_factory, people):
    """A on screen for 4 s (and speaking), B beside them from 1 s to 3 s."""
    a, b = people
    path = tmp_path_factory.mktemp("tracks") / "two.webm"
    return write_talking_head(path, [OnScreen(a, (0.27, 0.5), 0.5), OnScreen(b, (0.75, 0.5), 0.5, since=1.0, until=3.0)],
                              4.0, width=480)


def test_two_people_give_two_tracks_and_the_longest_is_main(embedder, two_people):
    pytest.importorskip("torch",
                        reason="the joint space needs the training extra (torch): pip install 'fvmatch[train]'")
    from fvmatch.analysis.video import embed_video

    evidence = embed_video(embedder, two_people, fps=2.0, all_faces=True)
    assert [t.frames for t in evidence.tracks] == [8, 4]
    assert evidence.tracks[0].times == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    assert evidence.tracks[1].times == pytest.approx([1.0, 1.5, 2.0, 2.5])
    # the main track is the person on the left
    assert all(box[2] < 240 for box in evidence.tracks[0].boxes)
    assert all(box[0] > 240 for box in evidence.tracks[1].boxes)
    assert evidence.tracks[0].mean_probability > 0.9
    main, other = evidence.track_faces
    assert main is evidence.face and main.quality["frames"] == 8 and other.quality["frames"] == 4
    for space, vector in main.vectors.items():
        assert vector.shape == (embedder.space_info(space)["dim"],)
        assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert float(main.vectors["joint"] @ other.vectors["joint"]) < 0.5  # two people apart in the joint space
    # provenance: the video's sha256, the track's frame times and boxes, the speech segments used
    assert main.quality["video"]["sha256"] == evidence.sha256
    assert main.quality["video"]["frame_times"] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]
    assert len(main.quality["video"]["boxes"]) == 8
    voice = evidence.voice
    assert voice.modality == "voice" and voice.quality["speech_seconds"] > 2.0
    segments = voice.quality["video"]["speech_segments"]
    assert segments and sum(b - a for a, b in segments) == pytest.approx(voice.quality["speech_seconds"], abs=0.01)
    assert evidence.notes == []
    assert set(evidence.timings) == {"decode", "detection", "embedding", "speech"}
    # each of the 12 faces embedded or given the vectors of an embedded one; each track embeds its first
    chips = evidence.face_chips
    assert chips["embedded"] + chips["reused"] == 12 and chips["embedded"] >= 2
    assert evidence.to_dict()["face_chips"] == chips


def test_no_audio_gives_face_only_and_no_face_gives_voice_only(embedder, tmp_path, people):
    from fvmatch.analysis.video import embed_video

    silent = write_talking_head(tmp_path / "silent.mp4", [OnScreen(people[0])], 2.0, audio=False)
    evidence = embed_video(embedder, silent)
    assert evidence.face is not None and evidence.voice is None
    assert evidence.notes == ["no audio track: face only"]
    # nobody on screen, someone speaking
    empty = write_talking_head(tmp_path / "empty.mp4", [], 3.0, voice=people[0])
    evidence = embed_video(embedder, empty)
    assert evidence.face is None and evidence.voice is not None
    assert evidence.notes == ["no face found in 6 sampled frames (2 a second): voice only"]
    # neither
    nothing = write_talking_head(tmp_path / "nothing.mp4", [], 2.0, audio=False)
    with pytest.raises(NoFaceFound, match="nothing usable: no face found in 4 sampled frames .*; no audio track"):
        embed_video(embedder, nothing)


def test_a_low_sampling_rate_still_links_a_track(embedder, tmp_path, people):
    from fvmatch.analysis.video import embed_video

    clip = write_talking_head(tmp_path / "slow.mp4", [OnScreen(people[0])], 8.0, frame_rate=5)
    evidence = embed_video(embedder, clip, fps=1 / 3, voice_spaces=[])  # samples 3 s apart, beyond MAX_GAP_SECONDS
    assert [t.frames for t in evidence.tracks] == [3]
    assert evidence.tracks[0].times == pytest.approx([0.0, 3.0, 6.0])


def test_the_soundtrack_goes_down_the_recordings_voice_path(embedder, two_people, tmp_path):
    import soundfile

    from fvmatch.media.video import probe_video, soundtrack_blocks
    from fvmatch.analysis.video import embed_video

    evidence = embed_video(embedder, two_people, face_spaces=["dlib-face"])
    decoded = np.concatenate(list(soundtrack_blocks(two_people, probe_video(two_people))))
    soundfile.write(tmp_path / "soundtrack.wav", decoded, 16000, subtype="FLOAT")
    recording = embedder.embed_voice(tmp_path / "soundtrack.wav")
    for space, vector in recording.vectors.items():
        assert float(vector @ evidence.voice.vectors[space]) > 0.999, space
    assert recording.quality["speech_seconds"] == evidence.voice.quality["speech_seconds"]
