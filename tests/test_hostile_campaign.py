"""A campaign of odd and hostile inputs through every command that reads media (`-m long`: a few minutes).

The images, videos and audio files of issue 30 and the earlier hostile-input issues, generated here, each given to
embed, enroll, identify and verify with every option it could be given with (--face, --voice, --video). Every run
must end with a documented exit code (0, 1 or 2), never a traceback, its messages one line each; a refused input
(exit 2) leaves the gallery as it was (its rows and index files, hashed), and an accepted one says what was odd
about it where the issue asks.
"""
from __future__ import annotations

import hashlib
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mediagen import gallery_state, run_cli_here, speech_clip
from test_misleading_inputs import header_only_png, patch_stts_delta, write_tracks, write_turned_by

pytestmark = pytest.mark.long

OPTIONS = ("--face", "--voice", "--video")


def _hostile_inputs(root: Path, photo: Path) -> dict[str, Path]:
    """Every odd input, by name."""
    import soundfile

    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.video import OnScreen, write_talking_head

    files: dict[str, Path] = {}
    upright = Image.open(photo).convert("RGB")
    for degrees, method in ((90, Image.Transpose.ROTATE_90), (180, Image.Transpose.ROTATE_180),
                            (270, Image.Transpose.ROTATE_270)):
        files[f"photo turned {degrees}"] = root / f"turned-{degrees}.png"
        upright.transpose(method).save(files[f"photo turned {degrees}"])
    exif = Image.Exif()
    exif[0x0112] = 8
    files["photo with a wrong EXIF orientation"] = root / "exif8.jpg"
    upright.save(files["photo with a wrong EXIF orientation"], exif=exif, quality=95)
    files["header-only 100000x100000 PNG"] = header_only_png(root / "huge.png", 100_000, 100_000)
    data = photo.read_bytes()
    files["JPEG cut in half"] = root / "cut.jpg"
    files["JPEG cut in half"].write_bytes(data[: len(data) // 2])
    files["text named .mp4"] = root / "text.mp4"
    files["text named .mp4"].write_text("not a video\n")

    speech = speech_clip(4.0)
    files["video, silent first audio track"] = write_tracks(root / "two-tracks.mp4",
                                                            [np.zeros_like(speech), speech], photo)
    files["M4A, silent first audio track"] = write_tracks(root / "two-tracks.m4a", [np.zeros_like(speech), speech],
                                                          container_format="ipod")
    files["video turned 45 degrees"] = write_turned_by(root / "tilted.mp4", 45, photo)
    whole = write_talking_head(root / "whole.mp4", [OnScreen(draw_identity("hostile", np.random.default_rng(3)))], 8.0)
    files["MP4 with frames hours apart"] = root / "stts.mp4"
    patch_stts_delta(whole, files["MP4 with frames hours apart"], 36_000)
    files["MP4 cut in half"] = root / "cut.mp4"
    files["MP4 cut in half"].write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])

    files["stereo WAV whose channels cancel"] = root / "inverted.wav"
    soundfile.write(files["stereo WAV whose channels cancel"], np.stack([speech, -speech], axis=1), 16000,
                    subtype="PCM_16")
    soundfile.write(root / "speech.wav", speech, 16000, subtype="PCM_16")
    claims = bytearray((root / "speech.wav").read_bytes())
    at = claims.find(b"data")
    size = struct.unpack("<I", claims[at + 4 : at + 8])[0]
    claims[at + 4 : at + 8] = struct.pack("<I", 2 * size)
    files["WAV claiming twice its data"] = root / "claims-more.wav"
    files["WAV claiming twice its data"].write_bytes(bytes(claims))
    files["WAV of silence"] = root / "silence.wav"
    soundfile.write(files["WAV of silence"], np.zeros(3 * 16000, np.float32), 16000, subtype="PCM_16")
    files["float WAV holding NaN"] = root / "nan.wav"
    soundfile.write(files["float WAV holding NaN"], np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    files["empty file"] = root / "empty.wav"
    files["empty file"].write_bytes(b"")
    return files


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, grace_hopper):
    root = tmp_path_factory.mktemp("campaign")
    import soundfile

    soundfile.write(root / "reference.wav", speech_clip(5.0, seed=1), 16000, subtype="PCM_16")
    gallery = root / "gallery"
    for args in (("--face", grace_hopper), ("--voice", root / "reference.wav")):
        enrolled = run_cli_here("enroll", "-g", gallery, "-i", "grace", *args)
        assert enrolled.returncode == 0, enrolled.stderr
    return {"inputs": _hostile_inputs(root, grace_hopper), "gallery": gallery, "photo": grace_hopper,
            "voice": root / "reference.wav", "root": root}


def _files_digest(directory: Path) -> dict[str, str]:
    """sha256 of every file of a gallery but its database (whose audit trail records the attempts)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())
            if p.is_file() and not p.name.startswith("gallery.db")}


def _runs(campaign, name: str, path: Path, option: str, scratch: Path):
    """(command words, gallery) of every command that takes `path` with `option`."""
    gallery = campaign["gallery"]
    fresh = scratch / "gallery"
    shutil.copytree(gallery, fresh)
    reference = ("--face", campaign["photo"]) if option != "--voice" else ("--voice", campaign["voice"])
    yield ["embed", option, path], None
    yield ["enroll", "-g", fresh, "-i", "questioned", option, path], fresh
    yield ["identify", "-g", gallery, option, path], gallery
    yield ["verify", option, path, *reference], None


def _check_run(words, gallery, result) -> list[str]:
    """What is wrong with one run (nothing: an empty list)."""
    problems = []
    if result.returncode not in (0, 1, 2):
        problems.append(f"exit {result.returncode}")
    if "Traceback" in result.stdout + result.stderr:
        problems.append("traceback")
    # a progress bar (rich draws it on stderr, and leaves its last state where stderr is no terminal) is no message
    lines = [line for line in result.stderr.splitlines() if line.strip() and "\u2501" not in line]
    if result.returncode == 2 and not any(line.startswith("fvmatch: ") for line in lines):
        problems.append(f"refused without a message: {lines[-3:]}")
    stray = [line for line in lines if not line.startswith("fvmatch: ")]
    if stray:
        problems.append(f"a message of more than one line, or not fvmatch's: {stray[:3]}")
    return problems


def test_every_hostile_input_through_every_command(campaign, tmp_path):
    before = gallery_state(campaign["gallery"])["rows"]
    failures = []
    for number, (name, path) in enumerate(campaign["inputs"].items()):
        for option in OPTIONS:
            scratch = tmp_path / f"{number}{option}"
            scratch.mkdir()
            for words, gallery in _runs(campaign, name, path, option, scratch):
                if gallery is not None:
                    state, files = gallery_state(gallery), _files_digest(gallery)
                result = run_cli_here(*words)
                problems = _check_run(words, gallery, result)
                if gallery is not None and result.returncode == 2:
                    if (gallery_state(gallery), _files_digest(gallery)) != (state, files):
                        problems.append("refused, but the gallery changed")
                if problems:
                    failures.append(f"{name} ({' '.join(map(str, words[:2]))} {option}): {'; '.join(problems)}")
    assert failures == [], "\n".join(failures)
    # queries (identify) may record what they used in the gallery's meta rows; its people and items stay as they were
    after = gallery_state(campaign["gallery"])["rows"]
    assert (after["identities"], after["media"]) == (before["identities"], before["media"])


@pytest.mark.parametrize("name, option, said", [
    ("photo turned 180", "--face", "turned 180"),
    ("photo turned 90", "--face", "turned 270"),
    ("photo with a wrong EXIF orientation", "--face", "turned 270"),
    ("WAV claiming twice its data", "--voice", "audio ends at 4.0 s of the 8.0 s its WAV header declares"),
    ("stereo WAV whose channels cancel", "--voice", "channel 1 alone: the channels cancel in the mono mix"),
    ("M4A, silent first audio track", "--voice", "audio_track 2"),
    ("video, silent first audio track", "--video", "audio track 2 of 2"),
    ("video turned 45 degrees", "--video", "not a quarter turn"),
    ("MP4 with frames hours apart", "--video", "a damaged or edited sample table"),
])
def test_what_was_odd_is_said_on_screen(campaign, name, option, said):
    result = run_cli_here("embed", option, campaign["inputs"][name])
    assert said in result.stdout + result.stderr, (result.returncode, result.stdout[-500:], result.stderr[-500:])
