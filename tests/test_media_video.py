"""Reading video files (fvmatch.media.video): real MP4/WebM/MKV files written with PyAV from the synthetic corpus."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fvmatch.errors import UnreadableMedia
from fvmatch.media.video import (SAMPLE_RATE, is_video, probe_video, sampled_frames, sniff, soundtrack_blocks,
                                 soundtrack_speech)
from fvmatch.synth.identity import draw_identity
from fvmatch.synth.video import OnScreen, write_talking_head


@pytest.fixture(scope="module")
def person():
    return draw_identity("video-a", np.random.default_rng(11))


@pytest.fixture(scope="module")
def videos(tmp_path_factory, person) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("videos")
    on = [OnScreen(person)]
    files = {
        "mp4": write_talking_head(root / "talk.mp4", on, 4.0),
        "webm": write_talking_head(root / "talk.webm", on, 4.0),
        "upright": write_talking_head(root / "upright.mp4", on, 2.0),
        "vfr": write_talking_head(root / "vfr.mkv", on, 2.0,
                                  frame_times=[0, 0.05, 0.1, 0.5, 0.55, 1.2, 1.25, 1.3, 1.9]),
        "silent": write_talking_head(root / "silent.mp4", on, 2.0, audio=False),
    }
    data = files["mp4"].read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) // 2])  # moov (the index) is at the end: nothing left
    files["truncated"] = root / "truncated.mp4"
    webm = files["webm"].read_bytes()
    (root / "truncated.webm").write_bytes(webm[: int(len(webm) * 0.55)])  # clusters cut: the first seconds remain
    files["truncated_webm"] = root / "truncated.webm"
    (root / "video.wav").write_bytes(data)  # a video named as audio
    files["named_wav"] = root / "video.wav"
    from PIL import Image

    Image.new("RGB", (64, 64), (120, 130, 140)).save(root / "image.mp4", "PNG")  # an image named as a video
    files["image"] = root / "image.mp4"
    (root / "noise.mp4").write_bytes(np.random.default_rng(0).bytes(20000))
    files["noise"] = root / "noise.mp4"
    (root / "empty.webm").write_bytes(b"")
    files["empty"] = root / "empty.webm"
    return files


def test_probe_describes_container_picture_and_soundtrack(videos):
    mp4 = probe_video(videos["mp4"])
    assert (mp4.container, mp4.video_codec, mp4.audio_codec) == ("MP4/MOV", "h264", "aac")
    assert (mp4.width, mp4.height, mp4.rotation, mp4.frame_rate) == (320, 240, 0, 10.0)
    assert mp4.duration_seconds == pytest.approx(4.0, abs=0.1)
    webm = probe_video(videos["webm"])
    assert (webm.container, webm.video_codec, webm.audio_codec, webm.audio_sample_rate) == (
        "Matroska/WebM", "vp9", "opus", 48000)


def test_frames_sampled_by_timestamp_at_fps(videos):
    info = probe_video(videos["mp4"])
    frames = list(sampled_frames(videos["mp4"], 2.0, info))
    assert [f.time for f in frames] == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5])
    assert [f.number for f in frames] == list(range(8))
    assert frames[0].image.shape == (240, 320, 3) and frames[0].image.dtype == np.uint8
    assert (info.frames_decoded, info.frames_sampled, info.variable_frame_rate, info.damage) == (40, 8, False, [])
    assert [f.time for f in sampled_frames(videos["mp4"], 1.0)] == pytest.approx([0.0, 1.0, 2.0, 3.0])


def test_variable_frame_rate_sampled_evenly_and_noted(videos):
    info = probe_video(videos["vfr"])
    times = [f.time for f in sampled_frames(videos["vfr"], 2.0, info)]
    # the first frame at or after each half second: 0, 0.5, (none in 1.0-1.2) 1.2, (none until) 1.9
    assert times == pytest.approx([0.0, 0.5, 1.2, 1.9])
    assert info.variable_frame_rate is True


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_phone_rotation_applied(videos, person, tmp_path, rotation):
    path = write_talking_head(tmp_path / "turned.mp4", [OnScreen(person)], 2.0, rotation=rotation)
    info = probe_video(path)
    assert (info.rotation, info.width, info.height) == (rotation, 320, 240)
    turned = [f.image for f in sampled_frames(path)]
    upright = [f.image for f in sampled_frames(videos["upright"])]
    assert turned[0].shape == upright[0].shape == (240, 320, 3)
    # the same picture (up to coding noise), not a quarter-turned one
    difference = np.abs(turned[0].astype(float) - upright[0].astype(float)).mean()
    assert difference < 6.0


def test_soundtrack_decoded_to_16k_mono(videos, person):
    for name in ("mp4", "webm"):
        info = probe_video(videos[name])
        blocks = list(soundtrack_blocks(videos[name], info))
        samples = np.concatenate(blocks)
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert len(samples) / SAMPLE_RATE == pytest.approx(4.0, abs=0.15)
        assert 0.05 < float(np.abs(samples).max()) <= 1.0


def test_soundtrack_speech_found_with_segment_times(videos):
    from fvmatch.media.audio import SpeechSummary

    info = probe_video(videos["mp4"])
    summary, segments = SpeechSummary(), []
    windows = list(soundtrack_speech(videos["mp4"], info, summary, segments))
    assert summary.speech_seconds > 2.0
    assert sum(len(w.samples) for w in windows) / SAMPLE_RATE == pytest.approx(summary.speech_seconds)
    assert segments and all(0.0 <= start < end <= 4.2 for start, end in segments)
    assert sum(end - start for start, end in segments) == pytest.approx(summary.speech_seconds, abs=0.01)


def test_no_audio_track_reads_picture_only(videos):
    info = probe_video(videos["silent"])
    assert info.has_audio is False
    assert list(soundtrack_blocks(videos["silent"], info)) == []
    assert len(list(sampled_frames(videos["silent"], 2.0, info))) == 4


def test_format_told_by_content_not_name(videos):
    assert sniff(videos["named_wav"]) == "MP4/MOV" and is_video(videos["named_wav"])
    assert len(list(sampled_frames(videos["named_wav"]))) == 8
    assert sniff(videos["image"]) == "image" and not is_video(videos["image"])


@pytest.mark.parametrize("name, message", [
    ("image", "an image file, not a video (give it with --face)"),
    ("noise", "not a video file fvmatch reads"),
    ("empty", "file is empty"),
    ("truncated", "MP4/MOV container is truncated or damaged"),
])
def test_bad_files_are_one_line_errors(videos, name, message):
    with pytest.raises(UnreadableMedia) as raised:
        probe_video(videos[name])
    assert message in str(raised.value) and str(videos[name]) in str(raised.value)
    assert "\n" not in str(raised.value)


def test_audio_file_given_as_video(tmp_path):
    import soundfile

    soundfile.write(tmp_path / "clip.mp4", np.zeros(16000, np.float32), 16000, format="WAV")  # a WAV named .mp4
    with pytest.raises(UnreadableMedia, match="an audio file, not a video"):
        probe_video(tmp_path / "clip.mp4")


def test_truncated_webm_read_up_to_the_damage(videos):
    info = probe_video(videos["truncated_webm"])
    frames = list(sampled_frames(videos["truncated_webm"], 2.0, info))
    sound = list(soundtrack_blocks(videos["truncated_webm"], info))
    assert 1 <= len(frames) < 8 and sound
    assert any("picture ends at" in note and "truncated or damaged" in note for note in info.damage)


def test_declared_limits_refused_before_decoding(videos):
    with pytest.raises(UnreadableMedia, match="declares 320x240 pixels a frame, over the 10,000-pixel limit"):
        probe_video(videos["mp4"], max_pixels=10_000)
    with pytest.raises(UnreadableMedia, match="video declares 0.0 hours, over the 0.000277778-hour limit"):
        probe_video(videos["mp4"], max_duration=1.0)


def test_fps_outside_range_refused(videos):
    from fvmatch.errors import BadArgument

    with pytest.raises(BadArgument, match="--fps: 0 is outside"):
        list(sampled_frames(videos["mp4"], 0.0))


@pytest.mark.parametrize("suffix, container, video_codec, audio_codec", [
    (".mov", "MP4/MOV", "h264", "aac"), (".mkv", "Matroska/WebM", "h264", "aac"),
    (".avi", "AVI", "mpeg4", "pcm_s16le")])
def test_mov_mkv_and_avi_are_read(tmp_path, person, suffix, container, video_codec, audio_codec):
    path = write_talking_head(tmp_path / f"clip{suffix}", [OnScreen(person)], 2.0)
    info = probe_video(path)
    assert (info.container, info.video_codec, info.audio_codec) == (container, video_codec, audio_codec)
    assert [f.time for f in sampled_frames(path, 2.0, info)] == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert sum(len(b) for b in soundtrack_blocks(path, info)) / SAMPLE_RATE == pytest.approx(2.0, abs=0.15)  # AAC padding


def test_a_crafted_huge_duration_is_refused(tmp_path, videos):
    import struct

    data = bytearray(videos["vfr"].read_bytes())  # Matroska: Segment Info's Duration, an 8-byte float (ms)
    at = data.find(b"\x44\x89\x88")
    assert at > 0
    data[at + 3 : at + 11] = struct.pack(">d", 1e12)
    (tmp_path / "forever.mkv").write_bytes(data)
    with pytest.raises(UnreadableMedia, match="video declares 277777.8 hours, over the 24-hour limit"):
        probe_video(tmp_path / "forever.mkv")
