"""Inputs that used to mislead fvmatch, each now read rightly or refused with one true line (all generated here)."""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvmatch.errors import UnreadableMedia
from fvmatch.media.image import load_image
from fvmatch.media.video import is_video, media_kind, probe_video, sampled_frames, sniff
from mediagen import run_cli_here, speech_clip


def write_aac(path: Path, container_format: str, seconds: float = 4.0) -> Path:
    """A speech-like clip encoded to AAC (16 kHz mono) by PyAV in `container_format` (mp4, ipod = .m4a, adts)."""
    import av

    with av.open(str(path), "w", format=container_format) as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(speech_clip(seconds)[None].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return path


def header_only_png(path: Path, width: int, height: int) -> Path:
    """A PNG that declares `width` x `height` RGB pixels and holds none (a signature, IHDR and IEND)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


# --- 1. 16-bit, 32-bit and float grayscale images ------------------------------------------------------------------

@pytest.fixture(scope="module")
def wide_grayscale(tmp_path_factory, grace_hopper) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("wide")
    gray = np.asarray(Image.open(grace_hopper).convert("L"))
    Image.fromarray(gray.astype(np.uint16) * 257).save(root / "gray16.png")
    Image.fromarray(gray.astype(np.int32) * 1000 - 50_000).save(root / "gray32.tif")
    Image.fromarray(gray.astype(np.float32) / 255 * 3.5 - 1).save(root / "float.tif")
    return {"I;16": root / "gray16.png", "I": root / "gray32.tif", "F": root / "float.tif", "L": gray}


@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_wide_grayscale_images_are_scaled_by_their_range_not_clipped_white(wide_grayscale, mode):
    path = wide_grayscale[mode]
    assert Image.open(path).mode == mode
    pixels = np.asarray(load_image(path))
    assert pixels.shape == (600, 512, 3) and pixels.dtype == np.uint8
    # the 8-bit photo stretched to its own range: within rounding of the original
    gray = wide_grayscale["L"].astype(np.float64)
    expected = (gray - gray.min()) * 255 / (gray.max() - gray.min())
    assert np.abs(pixels[..., 0] - expected).max() <= 1.0


def test_a_16_bit_grayscale_png_photo_is_found_and_embedded(wide_grayscale):
    result = run_cli_here("embed", "--face", wide_grayscale["I;16"], "--json")
    assert result.returncode == 0, result.stderr
    embedded = json.loads(result.stdout)
    assert embedded["modality"] == "face" and embedded["quality"]["detection_probability"] > 0.99
    assert embedded["quality"]["faces_in_image"] == 1
    x1, y1, x2, y2 = embedded["quality"]["box"]
    assert 150 < x1 < x2 < 380 and 90 < y1 < y2 < 360  # the face of grace_hopper.jpg: (174, 120, 356, 340)


# --- 2. AAC in M4A, MP4 and ADTS: read by --voice -------------------------------------------------------------------

@pytest.fixture(scope="module")
def aac_files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("aac")
    return {"m4a": write_aac(root / "call.m4a", "ipod"), "mp4": write_aac(root / "call.mp4", "mp4"),
            "aac": write_aac(root / "call.aac", "adts")}


@pytest.mark.parametrize("kind", ["m4a", "mp4", "aac"])
def test_aac_audio_is_embedded_with_voice(aac_files, kind):
    assert media_kind(aac_files[kind]) == "audio" and not is_video(aac_files[kind])
    result = run_cli_here("embed", "--voice", aac_files[kind], "--json")
    assert result.returncode == 0, result.stderr
    quality = json.loads(result.stdout)["quality"]
    assert quality["codec"] == ("AAC aac" if kind == "aac" else "MP4 aac")
    assert (quality["sample_rate"], quality["channels"]) == (16000, 1)
    assert quality["duration_seconds"] == pytest.approx(4.0, abs=0.15)  # the encoder's padding: one frame or two
    assert quality["speech_seconds"] > 3.0


@pytest.mark.parametrize("kind, problem", [
    ("m4a", "an audio file, not a video (give it with --voice)"),
    ("mp4", "MP4/MOV file holds no video track (an audio file: give it with --voice)"),
])
def test_aac_audio_given_as_video_points_to_voice(aac_files, kind, problem):
    result = run_cli_here("embed", "--video", aac_files[kind])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == f"fvmatch: error: {aac_files[kind]}: {problem}"


# --- 3. HEIC/HEIF still images --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def heic(tmp_path_factory) -> Path:
    """The first boxes of an iPhone photo: an ftyp saying heic (not a decodable image: none is needed)."""
    path = tmp_path_factory.mktemp("heic") / "IMG_0001.HEIC"
    ftyp = struct.pack(">I", 24) + b"ftyp" + b"heic" + b"\x00\x00\x00\x00" + b"mif1heic"
    meta = struct.pack(">I", 40) + b"meta" + bytes(32)
    path.write_bytes(ftyp + meta)
    return path


def test_a_heic_photo_is_named_as_such(heic):
    assert (sniff(heic), media_kind(heic), is_video(heic)) == ("heif", "heif", False)
    with pytest.raises(UnreadableMedia) as raised:
        load_image(heic)
    assert str(raised.value) == f"{heic}: a HEIC/HEIF still image, which fvmatch cannot decode: convert it to JPEG or PNG"


@pytest.mark.parametrize("option, problem", [
    ("--face", "a HEIC/HEIF still image, which fvmatch cannot decode: convert it to JPEG or PNG"),
    ("--video", "a HEIC/HEIF still image, not a video (convert it to JPEG or PNG and give it with --face)"),
])
def test_a_heic_photo_is_refused_by_face_and_video_alike(heic, option, problem):
    result = run_cli_here("embed", option, heic)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.strip().splitlines()[-1] == f"fvmatch: error: {heic}: {problem}"


def test_an_avif_photo_is_decoded(tmp_path, grace_hopper):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF codec")
    path = tmp_path / "photo.avif"
    Image.open(grace_hopper).save(path)
    assert (sniff(path), is_video(path)) == ("image", False)
    assert load_image(path).size == (512, 600)


# --- 4. a video that is one still picture over its sound -----------------------------------------------------------

@pytest.fixture(scope="module")
def still_video(tmp_path_factory, grace_hopper) -> Path:
    """An intact MP4: one H.264 picture (the photo) at 0 s, then 8 s of AAC speech."""
    import av

    path = tmp_path_factory.mktemp("still") / "voicemail.mp4"
    picture = np.asarray(Image.open(grace_hopper).convert("RGB"))
    with av.open(str(path), "w", format="mp4") as container:
        video = container.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 512, 600, "yuv420p"
        sound = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
        frame.pts = 0
        for packet in [*video.encode(frame), *video.encode(None)]:
            container.mux(packet)
        audio = av.AudioFrame.from_ndarray(speech_clip(8.0)[None].astype(np.float32), format="fltp", layout="mono")
        audio.sample_rate = 16000
        for packet in [*sound.encode(audio), *sound.encode(None)]:
            container.mux(packet)
    return path


def test_a_still_picture_over_sound_is_a_still_not_damage(still_video):
    info = probe_video(still_video)
    frames = list(sampled_frames(still_video, 2.0, info))
    assert len(frames) == 1 and info.frames_declared == 1
    assert info.damage == [] and info.still_picture is True
    assert info.notes == [f"one picture (a still) over {info.duration_seconds:.1f} s of sound"]
    assert info.figures()["still_picture"] is True and info.figures()["damage"] == []


def test_embedding_a_still_video_says_still_and_not_truncated(still_video):
    result = run_cli_here("embed", "--video", still_video, "--json")
    assert result.returncode == 0, result.stderr
    embedded = json.loads(result.stdout)
    assert embedded["notes"] == ["one picture (a still) over 8.1 s of sound"]
    assert embedded["video"]["damage"] == [] and "truncated" not in result.stderr
    assert embedded["face"] is not None and embedded["voice"]["quality"]["speech_seconds"] > 6


# --- 5. an image named .mp4 that is already enrolled as a face ----------------------------------------------------

def test_an_enrolled_image_renamed_mp4_is_called_an_image_not_a_duplicate(tmp_path, grace_hopper):
    gallery = tmp_path / "gallery"
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(grace_hopper.read_bytes())
    first = run_cli_here("enroll", "-g", gallery, "-i", "grace", "--face", photo)
    assert first.returncode == 0, first.stderr
    renamed = tmp_path / "clip.mp4"
    renamed.write_bytes(grace_hopper.read_bytes())
    again = run_cli_here("enroll", "-g", gallery, "-i", "grace", "--video", renamed)
    assert again.returncode == 2
    assert f"fvmatch: failed: {renamed}: an image file, not a video (give it with --face)" in again.stderr
    assert "already enrolled" not in again.stderr + again.stdout


# --- 6. a soundtrack truncated part-way: said on screen --------------------------------------------------------------

@pytest.fixture(scope="module")
def cut_webm(tmp_path_factory) -> Path:
    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.video import OnScreen, write_talking_head

    root = tmp_path_factory.mktemp("cut")
    whole = write_talking_head(root / "whole.webm", [OnScreen(draw_identity("cut-a", np.random.default_rng(3)))], 8.0)
    data = whole.read_bytes()
    (root / "cut.webm").write_bytes(data[: int(len(data) * 0.5)])  # clusters cut: the first seconds remain
    return root / "cut.webm"


def test_a_truncated_soundtrack_is_said_on_screen_when_enrolled(tmp_path, cut_webm):
    result = run_cli_here("enroll", "-g", tmp_path / "gallery", "-i", "cut", "--video", cut_webm, "--json")
    assert result.returncode == 0, result.stderr
    notes = [line.removeprefix(f"fvmatch: {cut_webm}: ") for line in result.stderr.splitlines()
             if line.startswith(f"fvmatch: {cut_webm}: ")]
    soundtrack = [note for note in notes if note.startswith("soundtrack ends at")]
    assert len(soundtrack) == 1 and soundtrack[0].endswith("of the 8.0 s declared (truncated or damaged)")
    voices = [e for e in json.loads(result.stdout)["enrolled_items"] if e["modality"] == "voice"]
    speech = voices[0]["quality"]  # a video item's quality figure: its seconds of speech
    assert f"voice from {speech:.2f} s of speech, up to the damage" in notes
    assert all(set(notes) <= set(e["notes"]) for e in json.loads(result.stdout)["enrolled_items"])


# --- 8. oversized images: one message, whatever the size -----------------------------------------------------------

@pytest.mark.parametrize("width, height", [(8000, 7500), (10000, 10000), (20000, 20000), (100_000, 100_000)])
def test_an_oversized_image_gets_one_message_whatever_its_size(tmp_path, width, height):
    path = header_only_png(tmp_path / "large.png", width, height)
    with pytest.raises(UnreadableMedia) as raised:
        load_image(path)
    assert str(raised.value) == (f"{path}: image is {width}x{height} pixels, over the 50,000,000-pixel limit "
                                 f"({width * height / 1e6:.1f} Mpx): downscale it first")


# --- 9. several audio tracks: the silent first one is not taken for the recording ----------------------------------

def write_tracks(path: Path, tracks: list[np.ndarray], picture: Path | None = None, container_format: str = "mp4",
                 layouts: list[str] | None = None) -> Path:
    """An MP4 (or M4A: container_format "ipod") of 16 kHz AAC audio tracks, in order, and with `picture` a 4 s
    H.264 video of that photo first. A track of shape (n, 2) is stereo."""
    import av

    with av.open(str(path), "w", format=container_format) as container:
        video = None
        if picture is not None:
            video = container.add_stream("libx264", rate=5)
            video.width, video.height, video.pix_fmt = 256, 300, "yuv420p"
        sounds = [container.add_stream("aac", rate=16000, layout="stereo" if samples.ndim == 2 else "mono")
                  for samples in tracks]
        if video is not None:
            encode_frames(container, video, np.asarray(Image.open(picture).convert("RGB").resize((256, 300))), 20)
        for sound, samples in zip(sounds, tracks):
            planes = np.ascontiguousarray(np.atleast_2d(samples.T), dtype=np.float32)
            frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout="stereo" if samples.ndim == 2 else "mono")
            frame.sample_rate = 16000
            for packet in [*sound.encode(frame), *sound.encode(None)]:
                container.mux(packet)
    return path


@pytest.fixture(scope="module")
def two_tracks(tmp_path_factory, grace_hopper) -> dict[str, Path]:
    """A video and an M4A whose first audio track is silent and whose second holds 4 s of speech."""
    root = tmp_path_factory.mktemp("tracks")
    tracks = [np.zeros(4 * 16000, np.float32), speech_clip(4.0)]
    return {"video": write_tracks(root / "interview.mp4", tracks, grace_hopper),
            "m4a": write_tracks(root / "call.m4a", tracks, container_format="ipod")}


def test_every_audio_track_of_a_video_is_listed_and_the_speech_read(two_tracks):
    result = run_cli_here("embed", "--video", two_tracks["video"], "--json")
    assert result.returncode == 0, result.stderr
    embedded = json.loads(result.stdout)
    listed = embedded["video"]["audio_tracks"]
    assert [(t["track"], t["codec"], t["channels"]) for t in listed] == [(1, "aac", 1), (2, "aac", 1)]
    assert listed[0]["speech_seconds_in_first_30_s"] == 0.0 and listed[1]["speech_seconds_in_first_30_s"] > 3.0
    assert embedded["video"]["audio_track"] == 2
    assert embedded["voice"]["quality"]["speech_seconds"] > 3.0 and embedded["notes"] == []


def test_audio_track_chooses_the_track_of_a_video(two_tracks):
    first = run_cli_here("embed", "--video", two_tracks["video"], "--audio-track", "1", "--json")
    assert first.returncode == 0, first.stderr
    embedded = json.loads(first.stdout)
    assert embedded["video"]["audio_track"] == 1 and embedded["voice"] is None
    assert embedded["notes"] == ["soundtrack: too little speech: 0.0 s detected in 4.1 s of audio (minimum 1 s): "
                                 "face only"]
    missing = run_cli_here("embed", "--video", two_tracks["video"], "--audio-track", "3")
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines()[-1] == (f"fvmatch: error: --audio-track: {two_tracks['video']} holds 2 "
                                                      "audio tracks (1-2): there is no track 3")


def test_voice_reads_the_speaking_track_of_a_container_or_the_one_named(two_tracks):
    chosen = run_cli_here("embed", "--voice", two_tracks["m4a"], "--json")
    assert chosen.returncode == 0, chosen.stderr
    quality = json.loads(chosen.stdout)["quality"]
    assert quality["audio_track"] == 2 and len(quality["audio_tracks"]) == 2 and quality["speech_seconds"] > 3.0
    named = run_cli_here("embed", "--voice", two_tracks["m4a"], "--audio-track", "1")
    assert named.returncode == 2
    assert named.stderr.strip().splitlines()[-1] == (f"fvmatch: error: {two_tracks['m4a']}: too little speech: 0.0 s "
                                                    "detected in 4.1 s of audio (minimum 1 s)")


def test_a_single_track_file_refuses_another_track_in_one_line(media_dir):
    result = run_cli_here("embed", "--voice", media_dir / "speech.wav", "--audio-track", "2")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (f"fvmatch: error: --audio-track: {media_dir / 'speech.wav'} "
                                                     "holds one audio track: there is no track 2")


@pytest.mark.parametrize("container", ["wav", "m4a"])
def test_stereo_channels_that_cancel_in_the_mix_are_read_one_alone(tmp_path, container):
    import soundfile

    speech = speech_clip(4.0)
    cancelling = np.stack([speech, -speech], axis=1)
    path = tmp_path / f"inverted.{container}"
    if container == "wav":
        soundfile.write(path, cancelling, 16000, subtype="PCM_16")
    else:
        write_tracks(path, [cancelling], container_format="ipod")
    result = run_cli_here("embed", "--voice", path, "--json")
    assert result.returncode == 0, result.stderr
    quality = json.loads(result.stdout)["quality"]
    assert quality["channels"] == 2 and quality["speech_seconds"] > 3.0
    assert quality["channels_read"] == ("channel 1 alone: the channels cancel in the mono mix (one is the other "
                                        "inverted)")
    ordinary = tmp_path / "stereo.wav"
    soundfile.write(ordinary, np.stack([speech, 0.8 * speech], axis=1), 16000, subtype="PCM_16")
    mixed = json.loads(run_cli_here("embed", "--voice", ordinary, "--json").stdout)["quality"]
    assert "channels_read" not in mixed and mixed["speech_seconds"] > 3.0


# --- 10. a display matrix of 45 degrees: said, not rounded away silently -----------------------------------------

def write_turned_by(path: Path, degrees: float, picture: Path) -> Path:
    """A 2 s H.264 MP4 of the photo whose display matrix turns it by `degrees` counter-clockwise."""
    import av

    pixels = np.asarray(Image.open(picture).convert("RGB").resize((256, 300)))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 256, 300, "yuv420p"
        stream.set_display_rotation(degrees)
        encode_frames(container, stream, pixels, 10)
    return path


def encode_frames(container, stream, pixels: np.ndarray, count: int) -> None:
    """`count` frames of one picture into a PyAV video stream, then the encoder flushed."""
    import av

    for number in range(count):
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
        frame.pts = number
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


@pytest.mark.parametrize("degrees, quarter, off", [(45, 0, 45), (135, 180, 45), (100, 90, 10)])
def test_a_rotation_that_is_no_quarter_turn_is_said(tmp_path, grace_hopper, degrees, quarter, off):
    path = write_turned_by(tmp_path / "tilted.mp4", degrees, grace_hopper)
    info = probe_video(path)
    assert info.rotation == quarter
    assert info.notes == [f"display matrix turns the picture {degrees} degrees, not a quarter turn: frames are read "
                          f"turned {quarter} degrees, so faces in them stand {off} degrees off upright"]
    list(sampled_frames(path, 2.0, info))
    assert len(info.notes) == 1  # said once, not per frame


def test_a_quarter_turn_says_nothing(tmp_path, grace_hopper):
    info = probe_video(write_turned_by(tmp_path / "turned.mp4", 90, grace_hopper))
    assert (info.rotation, info.notes) == (90, [])


def test_embedding_a_45_degree_video_says_so_on_screen(tmp_path, grace_hopper):
    path = write_turned_by(tmp_path / "tilted.mp4", 45, grace_hopper)
    result = run_cli_here("embed", "--video", path, "--json")
    note = ("display matrix turns the picture 45 degrees, not a quarter turn: frames are read turned 0 degrees, so "
            "faces in them stand 45 degrees off upright")
    assert f"fvmatch: {path}: {note}" in result.stderr.splitlines()
    if result.returncode == 0:
        assert note in json.loads(result.stdout)["notes"]


# --- 11. a patched sample table: frames hours apart ---------------------------------------------------------------

def patch_stts_delta(source: Path, target: Path, factor: int) -> None:
    """Copy an MP4 with the sample durations of its (first) stts entry multiplied by `factor`: its frames then lie
    `factor` times further apart than the container's declared duration allows."""
    data = bytearray(source.read_bytes())
    at = data.find(b"stts")
    count, delta = struct.unpack(">II", data[at + 12 : at + 20])
    data[at + 16 : at + 20] = struct.pack(">I", delta * factor)
    target.write_bytes(bytes(data))


def test_frames_hours_apart_are_said_not_read_as_one_frame(tmp_path):
    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.video import OnScreen, write_talking_head

    whole = write_talking_head(tmp_path / "whole.mp4", [OnScreen(draw_identity("stts", np.random.default_rng(3)))],
                               8.0)
    patched = tmp_path / "patched.mp4"
    patch_stts_delta(whole, patched, 36_000)  # 0.1 s -> an hour between frames
    info = probe_video(patched)
    frames = list(sampled_frames(patched, 2.0, info))
    assert (len(frames), info.frames_declared) == (1, 80)
    assert info.damage == [f"picture: 1 of the 80 frames the track declares were read: its timestamps span 80.0 "
                           f"hours in a video of {info.duration_seconds:.1f} s (a damaged or edited sample table)"]
    intact = probe_video(whole)
    list(sampled_frames(whole, 2.0, intact))
    assert intact.damage == [] and intact.frames_decoded == 80


# --- 12. a WAV whose header claims twice the data it holds ----------------------------------------------------------

def test_a_wav_claiming_twice_its_data_is_said_truncated(tmp_path, media_dir):
    data = bytearray((media_dir / "speech.wav").read_bytes())
    at = data.find(b"data")
    size = struct.unpack("<I", data[at + 4 : at + 8])[0]
    data[at + 4 : at + 8] = struct.pack("<I", 2 * size)
    data[4:8] = struct.pack("<I", len(data) - 8 + size)
    path = tmp_path / "claims-more.wav"
    path.write_bytes(bytes(data))
    damage = "audio ends at 5.0 s of the 10.0 s its WAV header declares (truncated or damaged)"
    shown = run_cli_here("embed", "--voice", path)
    assert shown.returncode == 0, shown.stderr
    assert f"damage {damage}" in shown.stdout
    enrolled = run_cli_here("enroll", "-g", tmp_path / "gallery", "-i", "claims", "--voice", path, "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    import sqlite3

    with sqlite3.connect(tmp_path / "gallery" / "gallery.db") as connection:
        stored = [json.loads(row[0]) for row in connection.execute("SELECT quality_json FROM media")]
    assert [q.get("damage") for q in stored] == [damage]  # the provenance keeps it
    whole = run_cli_here("embed", "--voice", media_dir / "speech.wav", "--json")
    assert "damage" not in json.loads(whole.stdout)["quality"]


def test_identify_takes_the_speaking_track_or_the_one_named(tmp_path, two_tracks, media_dir):
    gallery = tmp_path / "gallery"
    enrolled = run_cli_here("enroll", "-g", gallery, "-i", "speaker", "--voice", media_dir / "speech.wav")
    assert enrolled.returncode == 0, enrolled.stderr
    found = run_cli_here("identify", "-g", gallery, "--voice", two_tracks["m4a"], "--json")
    assert found.returncode in (0, 1), found.stderr
    answer = json.loads(found.stdout)
    assert answer["query"]["quality"]["audio_track"] == 2 and answer["candidates"][0]["identity"] == "speaker"
    named = run_cli_here("identify", "-g", gallery, "--voice", two_tracks["m4a"], "--audio-track", "1")
    assert named.returncode == 2
    assert "too little speech: 0.0 s detected in 4.1 s of audio" in named.stderr.strip().splitlines()[-1]
