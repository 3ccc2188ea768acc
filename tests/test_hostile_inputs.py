"""Hostile and malformed inputs (issue 7): each is refused with one line naming the file and exit 2, or gives the
correct result; none ends in a traceback, runs anything, takes unbounded memory or changes the gallery.

Already covered elsewhere and not repeated here: a text file named .jpg/.wav, a truncated and an empty JPEG, an
8000x8000 bilevel PNG and NaN samples (test_media_image, test_media_audio, test_cli); a checkpoint that is a
text file, pickled or lacks a card, flipped or swapped weights (test_checkpoint, test_cli).
"""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import soundfile
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from scipy.signal import resample_poly

from fvmatch.enrollment.enroll import EnrollReport, items_from_manifest
from fvmatch.errors import NoFaceFound, UnreadableMedia
from fvmatch.media.audio import MAX_RESAMPLE_KERNEL, SAMPLE_RATE, load_audio, resampling_ratio
from fvmatch.media.image import FaceDetector, load_image
from fvmatch.models.checkpoint import (CARD_KEY, DEFAULT_CHECKPOINT, CheckpointError, load_checkpoint, read_card,
                                       write_checkpoint)
from fvmatch.models.config import get_config
from fvmatch.models.joint import JointModel

from mediagen import gallery_state, run_cli, speech_clip

HTML = b"<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"
POSTSCRIPT = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 100 100\n(x) print showpage\n"


def png_declaring(path: Path, width: int, height: int, rows: int | None = None) -> Path:
    """An 8-bit RGBA PNG declaring width x height; with `rows`, only that many black rows of pixel data follow, so
    the file stays tiny whatever it claims; without, all of them, compressed as they go (zeros shrink ~1000x)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + 4 * width)
    pixels = b"".join(compressor.compress(row) for _ in range(height if rows is None else rows)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def damaged_exif() -> bytes:
    """EXIF turning the image (orientation 6) and holding an ASCII value under a SHORT tag (ExtraSamples)."""
    entries = [(0x0112, 3, 1, struct.pack(">HH", 6, 0)), (0x0152, 2, 4, b"cam\x00")]
    ifd = (struct.pack(">H", len(entries)) + b"".join(struct.pack(">HHI", *entry[:3]) + entry[3] for entry in entries)
           + struct.pack(">I", 0))
    return b"Exif\x00\x00MM\x00\x2a" + struct.pack(">I", 8) + ifd


def run_limited(code: str, *args, headroom_gb: float = 2.0, timeout: float = 300) -> subprocess.CompletedProcess:
    """`code` in a fresh Python that has imported torch and may then grow its address space by `headroom_gb` only:
    a regression that reaches for gigabytes fails there at once instead of taking the shared machine's memory."""
    prelude = ("import resource, sys, torch, torchaudio.functional\n"
               "vm = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize')).split()[1]) * 1024\n"
               f"resource.setrlimit(resource.RLIMIT_AS, (vm + int({headroom_gb} * 2**30), resource.RLIM_INFINITY))\n")
    return subprocess.run([sys.executable, "-c", prelude + code, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """A refused command's stderr: exactly one line, the error (no traceback, no library chatter)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fvmatch: error: "), result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory, grace_hopper) -> Path:
    """Every hostile media file, built once (all small: the bombs only declare their size)."""
    root = tmp_path_factory.mktemp("hostile")
    photo = grace_hopper.read_bytes()
    Image.open(grace_hopper).save(root / "photo.png")
    png = (root / "photo.png").read_bytes()
    speech = speech_clip(4.0, seed=4)
    soundfile.write(root / "speech.wav", speech, SAMPLE_RATE, subtype="PCM_16")
    soundfile.write(root / "speech.flac", speech, SAMPLE_RATE, subtype="PCM_16")
    flac = (root / "speech.flac").read_bytes()
    files = {
        "empty.jpg": b"", "empty.png": b"", "empty.wav": b"", "empty.flac": b"",
        "html.png": HTML, "html.jpg": HTML, "html.gif": HTML, "html.webp": HTML,
        "html.wav": HTML, "html.mp3": HTML, "html.flac": HTML, "html.ogg": HTML,
        "postscript.jpg": POSTSCRIPT,
        "truncated.jpg": photo[: len(photo) // 2],
        "truncated.png": png[: len(png) // 2],
        "signature-only.png": png[:8],
        "header-only.wav": (root / "speech.wav").read_bytes()[:20],
        "truncated.flac": flac[: len(flac) // 2],
    }
    for name, data in files.items():
        (root / name).write_bytes(data)
    png_declaring(root / "bomb.png", 7072, 7072)  # 50.01 Mpx of RGBA zeros: 200 MB decoded, a few hundred kB here
    png_declaring(root / "under-limit.png", 7000, 7000)  # 49 Mpx: the control that is decoded
    png_declaring(root / "declared-20000.png", 20000, 20000, rows=2)  # claims 1.6 GB of RGBA, holds 2 rows
    Image.new("RGB", (1, 1), (200, 150, 120)).save(root / "one-pixel.png")
    Image.new("RGB", (9, 9), (200, 150, 120)).save(root / "nine.png")
    Image.new("RGB", (19, 19), (200, 150, 120)).save(root / "nineteen.png")
    Image.open(grace_hopper).transpose(Image.Transpose.ROTATE_90).save(root / "damaged-exif.jpg", exif=damaged_exif())
    nan, inf = speech.copy(), speech.copy()
    nan[1000] = np.nan
    inf[1000], inf[2000] = np.inf, -np.inf
    soundfile.write(root / "nan.wav", nan, SAMPLE_RATE, subtype="FLOAT")
    soundfile.write(root / "inf.wav", inf, SAMPLE_RATE, subtype="FLOAT")
    soundfile.write(root / "loud.wav", speech * np.float32(1e20), SAMPLE_RATE, subtype="FLOAT")  # finite, absurd
    soundfile.write(root / "one-hz.wav", speech, 1, subtype="PCM_16")  # 4 s of samples claiming 17.8 hours
    soundfile.write(root / "megahertz.wav", speech, 1_000_000, subtype="PCM_16")
    return root


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def known_gallery(tmp_path_factory, grace_hopper, hostile) -> Path:
    """A gallery holding one identity with one face and one voice, enrolled through the CLI."""
    directory = tmp_path_factory.mktemp("galleries") / "case"
    result = run_cli("enroll", "--identity", "known", "--face", grace_hopper, "--voice", hostile / "speech.wav",
                     "--gallery", directory, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["gallery_counts"] == {"identities": 1, "face": 1, "voice": 1}
    return directory


@pytest.fixture()
def gallery(known_gallery, tmp_path) -> Path:
    """A private copy of the known gallery that a test may change."""
    shutil.copytree(known_gallery, tmp_path / "gallery")
    return tmp_path / "gallery"


# --- images --------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("empty.png", "file is empty"),
    ("html.png", "not an image file Pillow can read"),
    ("html.gif", "not an image file Pillow can read"),
    ("html.webp", "not an image file Pillow can read"),
    ("postscript.jpg", "not an image file Pillow can read"),  # never handed to Ghostscript
    ("truncated.png", "cannot decode image .*truncated"),
    ("signature-only.png", "not an image file Pillow can read"),
    ("bomb.png", r"image is 7072x7072 pixels, over the 50,000,000-pixel limit"),
    ("declared-20000.png", "image is 20000x20000 pixels, over the 50,000,000-pixel limit"),
])
def test_hostile_image_files_are_refused_naming_the_file_and_the_problem(hostile, name, problem):
    with pytest.raises(UnreadableMedia, match=f"{name}: {problem}"):
        load_image(hostile / name)


@pytest.mark.parametrize("name, size", [("one-pixel.png", "1x1"), ("nine.png", "9x9")])
def test_images_smaller_than_the_smallest_face_are_no_face_not_a_crash(detector, hostile, name, size):
    with pytest.raises(NoFaceFound, match=f"{name}: no face found: the image is {size} pixels, below the detector's "
                                          "10-pixel minimum face size"):
        detector.faces_in_file(hostile / name)
    assert detector.detect(load_image(hostile / name)) == []


def test_a_small_faceless_image_is_searched_at_twice_its_size_and_still_holds_no_face(detector, hostile):
    with pytest.raises(NoFaceFound, match="nineteen.png: no face found \\(detector threshold"):
        detector.faces_in_file(hostile / "nineteen.png")


def test_an_image_whose_exif_is_damaged_is_still_turned_upright(detector, hostile, grace_hopper):
    upright = load_image(hostile / "damaged-exif.jpg")
    assert upright.size == Image.open(grace_hopper).size  # stored on its side, turned back by orientation 6
    assert detector.faces_in_file(hostile / "damaged-exif.jpg")[0].probability > 0.99


def test_decompression_bombs_are_refused_before_their_pixels_are_allocated(hostile):
    # peak resident memory of a fresh process (VmHWM: ru_maxrss would carry over pytest's own across fork and exec),
    # before and after refusing the two, then after decoding the control (49 Mpx, just under the limit), which shows
    # that the measurement does see a decode
    code = ("import sys\n"
            "from fvmatch.errors import UnreadableMedia\n"
            "from fvmatch.media.image import load_image\n"
            "peak = lambda: int(open('/proc/self/status').read().split('VmHWM:')[1].split()[0]) / 1024\n"
            "before = peak()\n"
            "for name in sys.argv[1:3]:\n"
            "    try:\n        load_image(name)\n    except UnreadableMedia as error:\n        print(error)\n"
            "refused = peak()\n"
            "load_image(sys.argv[3])\n"
            "print(before, refused, peak())\n")
    result = subprocess.run([sys.executable, "-c", code, hostile / "bomb.png", hostile / "declared-20000.png",
                             hostile / "under-limit.png"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    *messages, figures = result.stdout.strip().splitlines()
    assert len(messages) == 2 and "over the 50,000,000-pixel limit" in messages[0] and \
        "20000x20000 pixels, over the" in messages[1]
    before, refused, decoded = map(float, figures.split())
    assert refused - before < 40, f"refusing took {refused - before:.0f} MB"  # decoding the bomb: 200 MB at least
    assert decoded - refused > 150  # the control, 49 Mpx of RGBA, was decoded


# --- audio ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, problem", [
    ("empty.wav", "file is empty"),
    ("empty.flac", "file is empty"),
    ("html.wav", "not an audio file soundfile can read: Format not recognised"),
    ("html.mp3", "not an audio file soundfile can read: Format not recognised"),
    ("html.flac", "not an audio file soundfile can read: Format not recognised"),
    ("html.ogg", "not an audio file soundfile can read: Format not recognised"),
    ("header-only.wav", "not an audio file soundfile can read"),
    ("truncated.flac", "audio data is truncated or corrupt"),
    ("inf.wav", "audio holds NaN or infinite samples"),
    ("loud.wav", r"audio samples reach [\d.]+e\+19, far outside the \[-1, 1\] range of audio"),
    ("one-hz.wav", "sample rate of 1 Hz is outside the 4,000-768,000 Hz of a voice recording"),
    ("megahertz.wav", "sample rate of 1,000,000 Hz is outside"),
])
def test_hostile_audio_files_are_refused_naming_the_file_and_the_problem(hostile, capfd, name, problem):
    with pytest.raises(UnreadableMedia, match=f"{name}: {problem}"):
        load_audio(hostile / name)
    # nothing from the C libraries either (mpg123 used to print its resync notes for a text file named .mp3)
    assert capfd.readouterr().err == ""


def test_a_truncated_wav_gives_the_embedding_of_the_audio_it_still_holds(embedder, hostile, tmp_path):
    data = (hostile / "speech.wav").read_bytes()
    kept_bytes = (len(data) - 44) // 2 + 1  # half of the samples and one stray byte of the next
    (tmp_path / "truncated.wav").write_bytes(data[: 44 + kept_bytes])
    first_half = soundfile.read(hostile / "speech.wav", dtype="int16")[0][: kept_bytes // 2]
    soundfile.write(tmp_path / "first-half.wav", first_half, SAMPLE_RATE, subtype="PCM_16")
    truncated = embedder.embed_voice(tmp_path / "truncated.wav")
    assert truncated.quality["duration_seconds"] == pytest.approx(2.0, abs=0.01)
    np.testing.assert_array_equal(truncated.vectors["joint"], embedder.embed_voice(tmp_path / "first-half.wav").vectors["joint"])


def test_other_rates_and_channel_counts_give_the_embedding_of_the_16k_mono_original(embedder, hostile, tmp_path):
    speech, _ = soundfile.read(hostile / "speech.wav", dtype="float32")
    reference = embedder.embed_voice(hostile / "speech.wav").vectors["joint"]
    for rate, channels, layout in [(96000, 1, "all"), (96000, 6, "all"), (44100, 2, "all"), (22050, 1, "all"),
                                   (16000, 6, "centre only"), (48000, 2, "left only")]:
        resampled = resample_poly(speech, rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else speech
        data = np.zeros((len(resampled), channels), np.float32)
        if layout == "all":
            data[:] = resampled[:, None] * 0.9
        else:
            data[:, 2 if layout == "centre only" else 0] = resampled * 0.9  # the others silent: the mix is quieter
        path = tmp_path / f"{rate}-{channels}.wav"
        soundfile.write(path, data, rate, subtype="PCM_16")
        embedding = embedder.embed_voice(path)
        assert (embedding.quality["sample_rate"], embedding.quality["channels"]) == (rate, channels)
        assert embedding.quality["duration_seconds"] == pytest.approx(4.0, abs=0.01)
        assert float(embedding.vectors["joint"] @ reference) > 0.98, (rate, channels, layout)


def test_8khz_audio_gives_the_embedding_of_its_own_content_upsampled(embedder, hostile, tmp_path):
    # an 8 kHz recording has nothing above 4 kHz: decoded by fvmatch it must embed as the same samples upsampled by
    # another resampler (no dependence on one filter's roll-off), and near the full-band original (the default was
    # trained with telephone-band copies; before that this cosine was 0.46)
    speech, _ = soundfile.read(hostile / "speech.wav", dtype="float32")
    soundfile.write(tmp_path / "8k.wav", resample_poly(speech, 1, 2).astype(np.float32), 8000, subtype="PCM_16")
    stored, _ = soundfile.read(tmp_path / "8k.wav", dtype="float32")
    soundfile.write(tmp_path / "upsampled.wav", resample_poly(stored, 2, 1).astype(np.float32), SAMPLE_RATE,
                    subtype="FLOAT")
    ours = embedder.embed_voice(tmp_path / "8k.wav")
    assert ours.quality["sample_rate"] == 8000 and ours.quality["duration_seconds"] == pytest.approx(4.0, abs=0.01)
    assert float(ours.vectors["joint"] @ embedder.embed_voice(tmp_path / "upsampled.wav").vectors["joint"]) > 0.99
    assert float(ours.vectors["joint"] @ embedder.embed_voice(hostile / "speech.wav").vectors["joint"]) > 0.9


def test_resampling_ratios_stay_small_and_close_to_the_true_rate():
    for rate in (8000, 11025, 16000, 22050, 32000, 44100, 48000, 88200, 96000, 192000, 384000):
        assert Fraction(*resampling_ratio(rate)) == Fraction(rate, SAMPLE_RATE)  # the usual rates: exact
    for rate in np.random.default_rng(0).integers(4000, 768_001, 500):
        orig, new = resampling_ratio(int(rate))
        assert orig * new <= MAX_RESAMPLE_KERNEL
        assert abs(orig / new / (rate / SAMPLE_RATE) - 1) < 1e-3


def test_an_odd_header_rate_is_resampled_in_bounded_memory(embedder, hostile, tmp_path):
    # 44,101 Hz: torchaudio's exact kernel would be 16,000 x 44,101 taps, 12 GB (more than the 2 GB allowed here)
    speech, _ = soundfile.read(hostile / "speech.wav", dtype="float32")
    path = tmp_path / "odd.wav"
    soundfile.write(path, resample_poly(speech, 44101, SAMPLE_RATE).astype(np.float32), 44101, subtype="PCM_16")
    result = run_limited("from fvmatch.media.audio import load_audio\nprint(len(load_audio(sys.argv[1])))", path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert abs(int(result.stdout) - len(speech)) <= 16
    embedding = embedder.embed_voice(path)  # safe in this process now that the child got through
    assert float(embedding.vectors["joint"] @ embedder.embed_voice(hostile / "speech.wav").vectors["joint"]) > 0.98


# --- the real CLI on hostile media ---------------------------------------------------------------------------------

@pytest.mark.parametrize("option, name, problem", [
    ("--voice", "html.mp3", "not an audio file soundfile can read: Format not recognised."),
    ("--voice", "loud.wav", "audio samples reach 8.07e+19, far outside"),  # was: exit 0 and a NaN embedding
    ("--face", "one-pixel.png", "no face found: the image is 1x1 pixels"),  # was: exit 3, ValueError inside MTCNN
    ("--face", "declared-20000.png", "image is 20000x20000 pixels, over the 50,000,000-pixel limit"),
    ("--face", "postscript.jpg", "not an image file Pillow can read"),
])
def test_embed_refuses_hostile_media_with_one_line_and_exit_2(hostile, option, name, problem):
    result = run_cli("embed", option, hostile / name, "--json")
    assert (result.returncode, result.stdout) == (2, "")
    assert one_error_line(result).startswith(f"fvmatch: error: {hostile / name}: {problem}")


def test_enrolling_hostile_media_records_each_file_and_leaves_the_gallery_unchanged(gallery, hostile):
    rows = {  # file -> what its failure line must say
        "empty.jpg": "file is empty", "empty.wav": "file is empty",
        "html.jpg": "not an image file", "postscript.jpg": "not an image file",
        "html.wav": "not an audio file", "html.mp3": "not an audio file",
        "truncated.jpg": "cannot decode image", "truncated.png": "cannot decode image",
        "header-only.wav": "not an audio file", "truncated.flac": "truncated or corrupt",
        "bomb.png": "over the 50,000,000-pixel limit", "declared-20000.png": "20000x20000 pixels, over the",
        "one-pixel.png": "1x1 pixels, below the detector's", "nan.wav": "NaN or infinite samples",
        "inf.wav": "NaN or infinite samples", "loud.wav": "far outside the [-1, 1] range",
        "one-hz.wav": "sample rate of 1 Hz is outside",
    }
    manifest = hostile / "hostile.csv"
    manifest.write_text("identity,modality,path\n" + "".join(
        f"intruder,{'voice' if Path(name).suffix in ('.wav', '.mp3', '.flac') else 'face'},{name}\n" for name in rows))
    before = gallery_state(gallery)
    result = run_cli("enroll", "--manifest", manifest, "--gallery", gallery, "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert (report["enrolled"], report["failed"]) == (0, len(rows))
    for line, ((name, problem), failure) in enumerate(zip(rows.items(), report["failures"]), start=2):
        assert failure["item"] == f"{manifest}:{line}" and problem in failure["error"], (name, failure)
    failure_lines = [line for line in result.stderr.splitlines() if line.startswith("fvmatch: failed: ")]
    assert len(failure_lines) == len(rows)
    chatter = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("fvmatch: failed: ")
               and not line.lstrip().startswith("enroll")]  # the progress bar's line
    assert chatter == []
    assert gallery_state(gallery) == before


# --- checkpoints ---------------------------------------------------------------------------------------------------

def _deep_card(path: Path) -> None:
    save_file({"x": torch.zeros(2)}, path, metadata={CARD_KEY: "[" * 100_000 + "]" * 100_000})


def _swapped_card(path: Path) -> None:
    torch.manual_seed(5)
    state = {key: value.contiguous() for key, value in JointModel(get_config("small")).state_dict().items()}
    write_checkpoint(state, read_card(DEFAULT_CHECKPOINT), path)


BAD_CHECKPOINTS = {
    "html": (lambda path: path.write_bytes(HTML), "not a safetensors checkpoint"),
    "empty": (lambda path: path.write_bytes(b""), "not a safetensors checkpoint"),
    "truncated": (lambda path: path.write_bytes(DEFAULT_CHECKPOINT.read_bytes()[:300_000]),
                  "not a safetensors checkpoint"),
    "swapped": (_swapped_card, "weights do not match the model card's model id"),
    "deep": (_deep_card, "model card is nested too deeply to be one"),
}


@pytest.mark.parametrize("kind", BAD_CHECKPOINTS)
def test_a_bad_checkpoint_is_refused_with_one_line_and_changes_nothing(gallery, hostile, tmp_path, kind):
    make, problem = BAD_CHECKPOINTS[kind]
    model = tmp_path / f"{kind}.safetensors"
    make(model)
    before = gallery_state(gallery)
    result = run_cli("enroll", "--identity", "newcomer", "--voice", hostile / "speech.wav", "--gallery", gallery,
                     "--model", model)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"fvmatch: error: {model}: {problem}")
    assert gallery_state(gallery) == before


def test_a_card_describing_a_huge_model_is_refused_without_building_it(tmp_path):
    # the default weights (so the model id matches) under a card whose voice subnet has two 30,000-channel layers:
    # built for real that is 10.8 GB of parameters; the child may take 2 GB
    card = read_card(DEFAULT_CHECKPOINT)
    config = dict(card["config"], voice_channels=[64, 30000, 30000, card["config"]["subnet_dim"]])
    write_checkpoint(load_file(DEFAULT_CHECKPOINT), dict(card, config=config), tmp_path / "huge.safetensors")
    result = run_limited("from fvmatch.models.checkpoint import CheckpointError, load_checkpoint\n"
                         "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError as error:\n    print(error)\n",
                         tmp_path / "huge.safetensors")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().startswith(f"{tmp_path / 'huge.safetensors'}: weights do not fit the small model (")


@pytest.mark.parametrize("change, problem", [
    ({"config": {"voice_channels": [64] * 100_000 + [256]}}, r"model card describes more layers than the file holds "
                                                             r"tensors \(\d+\)"),
    ({"embedding_dim": 128}, "model card's embedding_dim 128 differs from its config's 256"),
    ({"embedding_dim": "abc"}, "model card's embedding_dim 'abc' differs from its config's 256"),
    ({"config": {"embedding_dim": -5}}, r"model card's embedding_dim 256 differs from its config's -5"),
])
def test_a_card_that_does_not_describe_its_weights_is_refused(tmp_path, change, problem):
    card = read_card(DEFAULT_CHECKPOINT)
    altered = dict(card, **{key: value for key, value in change.items() if key != "config"})
    altered["config"] = dict(card["config"], **change.get("config", {}))
    write_checkpoint(load_file(DEFAULT_CHECKPOINT), altered, tmp_path / "altered.safetensors")
    with pytest.raises(CheckpointError, match=f"altered.safetensors: {problem}"):
        load_checkpoint(tmp_path / "altered.safetensors")


# --- manifests: paths that reach out, files that are not manifests -------------------------------------------------

@pytest.fixture()
def case_folder(tmp_path, grace_hopper) -> Path:
    """tmp/case/{evidence/face.jpg, voice.wav, links/...} and, outside the case, tmp/elsewhere/secret.jpg (a face);
    files the known gallery does not hold."""
    case = tmp_path / "case"
    (case / "evidence").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    Image.open(grace_hopper).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(case / "evidence" / "face.jpg")
    soundfile.write(case / "voice.wav", speech_clip(3.0, seed=8), SAMPLE_RATE, subtype="PCM_16")
    Image.open(grace_hopper).save(tmp_path / "elsewhere" / "secret.jpg", quality=80)
    (case / "links").mkdir()
    os.symlink(tmp_path / "elsewhere" / "secret.jpg", case / "links" / "out.jpg")
    os.symlink(tmp_path / "elsewhere", case / "links" / "out-dir")
    return case


def test_manifest_rows_reaching_outside_root_are_refused_row_by_row(gallery, case_folder, tmp_path):
    manifest = case_folder / "evidence" / "manifest.csv"
    manifest.write_text(
        "identity,modality,path\n"
        "suspect,face,face.jpg\n"                                   # 2: inside, relative to the manifest
        f"suspect,voice,{case_folder / 'voice.wav'}\n"               # 3: inside, absolute
        "suspect,face,../../../../../../../../../../etc/passwd\n"    # 4: climbs out
        "suspect,face,/etc/passwd\n"                                  # 5: absolute, elsewhere
        "suspect,face,../links/out.jpg\n"                            # 6: a symlink leading out
        "suspect,face,../links/out-dir/secret.jpg\n"                 # 7: through a symlinked folder
        f"suspect,face,{tmp_path / 'elsewhere' / 'secret.jpg'}\n"    # 8: absolute, next to the case
        "suspect,face,../evidence/../../case/evidence/face.jpg\n"    # 9: wanders but stays inside (a duplicate)
    )
    before = gallery_state(gallery)
    result = run_cli("enroll", "--manifest", manifest, "--root", case_folder, "--gallery", gallery, "--json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert (report["enrolled"], report["skipped"], report["failed"]) == (2, 1, 5), report["failures"]
    assert {failure["item"] for failure in report["failures"]} == {f"{manifest}:{line}" for line in (4, 5, 6, 7, 8)}
    assert all(f"is outside --root {case_folder.resolve()}" in failure["error"] for failure in report["failures"])
    after = gallery_state(gallery)
    assert [row[1] for row in after["rows"]["identities"]] == ["known", "suspect"]
    added = [row for row in after["rows"]["media"] if row not in before["rows"]["media"]]
    assert sorted(row[3] for row in added) == sorted([str((case_folder / "evidence" / "face.jpg").resolve()),
                                                      str((case_folder / "voice.wav").resolve())])


def test_without_root_manifest_paths_are_relative_to_the_manifest_not_the_working_directory(case_folder, tmp_path,
                                                                                          monkeypatch):
    manifest = case_folder / "evidence" / "manifest.csv"
    manifest.write_text("identity,modality,path\nsuspect,face,../../../etc/passwd\nsuspect,face,../links/out.jpg\n"
                        "suspect,face,/etc/passwd\n")
    monkeypatch.chdir(tmp_path / "elsewhere")
    report = EnrollReport()
    items = items_from_manifest(manifest, report)
    assert report.failed == []
    assert [item.path for item in items] == [manifest.parent / "../../../etc/passwd", manifest.parent / "../links/out.jpg",
                                             Path("/etc/passwd")]
    assert items[1].path.resolve() == (tmp_path / "elsewhere" / "secret.jpg").resolve()


@pytest.mark.parametrize("content, problem", [
    (b"", "first row must be the header identity,modality,path"),
    (HTML, "first row must be the header identity,modality,path"),
    ("identity,modality,path\nx,face,a.jpg\n".encode("utf-16"), "not a readable UTF-8 CSV file"),
    (bytes(range(256)) * 4, "not a readable UTF-8 CSV file"),
])
def test_a_file_that_is_not_a_manifest_is_refused_with_one_line(gallery, tmp_path, content, problem):
    manifest = tmp_path / "manifest.csv"
    manifest.write_bytes(content)
    before = gallery_state(gallery)
    result = run_cli("enroll", "--manifest", manifest, "--gallery", gallery)
    assert result.returncode == 2
    assert one_error_line(result).startswith(f"fvmatch: error: {manifest}: {problem}")
    assert gallery_state(gallery) == before


# --- labels --------------------------------------------------------------------------------------------------------

STORED_VERBATIM = [
    "x'); DROP TABLE media;--",
    "Robert\"); DELETE FROM identities; --",
    "<script>alert('xss')</script>",
    "<img src=x onerror=alert(1)>",
    "$(rm -rf ~)",
    "`touch pwned-backtick`",
    "; touch pwned-semicolon",
    "%s%s%n {0} {label!r}",
    "O'Brien, \"Bob\"",
    "Zoë 李 Ωμέγα عربي",
    "[bold red]not bold[/]",
    "L" * 200,
    "مهر\u200cنوش",  # Persian: the zero-width non-joiner belongs inside the word
    "क\u094d\u200dष",  # Devanagari half form through the zero-width joiner
]
REFUSED = [
    ("L" * 201, "identity label longer than 200 characters"),
    ("\x1b[31mred\x1b[0m", "identity label holds control characters"),  # ANSI escape: would colour the terminal
    ("two\nlines", "identity label holds control characters"),
    ("evil\u202egpj.exe", "identity label holds control characters"),  # right-to-left override
    ("zero\u200bwidth", "identity label holds control characters"),
    ("nul\x00byte", "identity label holds control characters"),
    ("Al\u200dice", "identity label holds control characters"),  # a joiner where no script needs one
    ("\u200cمهر", "identity label holds control characters"),
]


def test_injection_looking_labels_are_stored_verbatim_or_refused_and_never_run(gallery, hostile, tmp_path):
    import csv

    sandbox = tmp_path / "home"  # HOME and working directory of the run: `rm -rf ~` would empty it
    sandbox.mkdir()
    (sandbox / "canary").write_text("still here")
    manifest = tmp_path / "labels.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "modality", "path"])
        for label in STORED_VERBATIM + [label for label, _ in REFUSED]:
            writer.writerow([label, "voice", hostile / "speech.wav"])
    result = subprocess.run([sys.executable, "-m", "fvmatch.cli", "enroll", "--manifest", manifest, "--force",
                             "--gallery", gallery, "--json"], capture_output=True, text=True, cwd=sandbox,
                            env={**os.environ, "HOME": str(sandbox)}, timeout=300)
    assert result.returncode == 2, result.stderr
    report = json.loads(result.stdout)
    assert (report["enrolled"], report["failed"]) == (len(STORED_VERBATIM), len(REFUSED))
    for failure, (_, problem) in zip(report["failures"], REFUSED):
        assert failure["error"] == problem
    listed = run_cli("gallery", "list", "--gallery", gallery, "--json")
    assert listed.returncode == 0, listed.stderr
    identities = {row["identity"]: (row["faces"], row["voices"]) for row in json.loads(listed.stdout)}
    assert identities == {"known": (1, 1), **{label: (0, 1) for label in STORED_VERBATIM}}
    connection = sqlite3.connect(gallery / "gallery.db")
    assert connection.execute("SELECT count(*) FROM media").fetchone()[0] == 2 + len(STORED_VERBATIM)
    assert {row[0] for row in connection.execute("SELECT label FROM identities")} == set(identities)
    connection.close()
    assert (sandbox / "canary").read_text() == "still here"
    assert sorted(p.name for p in sandbox.iterdir()) == ["canary"]  # no pwned-* file where it ran


def test_a_label_is_one_identity_whatever_its_unicode_normal_form(gallery, hostile, grace_hopper):
    decomposed, composed = "Zoe\u0308 Martin", "Zo\u00eb Martin"
    assert run_cli("enroll", "--identity", decomposed, "--voice", hostile / "speech.wav", "--force",
                   "--gallery", gallery).returncode == 0
    again = run_cli("enroll", "--identity", composed, "--voice", hostile / "speech.wav", "--face", grace_hopper,
                    "--force", "--gallery", gallery, "--json")
    assert again.returncode == 0, again.stderr
    assert (json.loads(again.stdout)["enrolled"], json.loads(again.stdout)["skipped"]) == (1, 1)  # the same identity
    listed = {row["identity"]: (row["faces"], row["voices"])
              for row in json.loads(run_cli("gallery", "list", "--gallery", gallery, "--json").stdout)}
    assert listed[composed] == (1, 1) and decomposed not in listed
    removed = run_cli("gallery", "remove", "--identity", decomposed, "--gallery", gallery, "--json")
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == {"face": 1, "voice": 1}


@pytest.mark.parametrize("label, problem", REFUSED[:2])
def test_a_bad_identity_option_is_refused_before_anything_is_opened(tmp_path, hostile, label, problem):
    result = run_cli("enroll", "--identity", label, "--voice", hostile / "speech.wav", "--gallery", tmp_path / "new")
    assert result.returncode == 2
    assert one_error_line(result) == f"fvmatch: error: --identity: {problem}"
    assert not (tmp_path / "new").exists()


def test_gallery_list_prints_a_label_that_looks_like_markup_as_it_is(gallery, hostile):
    enrolled = run_cli("enroll", "--identity", "[/]x[bold]y", "--voice", hostile / "speech.wav", "--force",
                       "--gallery", gallery)
    assert enrolled.returncode == 0, enrolled.stderr
    listed = run_cli("gallery", "list", "--gallery", gallery)
    assert listed.returncode == 0, listed.stderr
    assert "[/]x[bold]y" in listed.stdout


# --- unicode and spaces in paths -----------------------------------------------------------------------------------

def test_unicode_spaces_and_commas_in_paths_and_folder_labels_survive_the_round_trip(tmp_path, grace_hopper, hostile):
    person = tmp_path / "dossier été 2024" / "Zoë 李 o'neil [b]"
    person.mkdir(parents=True)
    shutil.copy(grace_hopper, person / "photo 1 — é.jpg")
    shutil.copy(hostile / "speech.wav", person / "clip ü, 1.wav")
    gallery = tmp_path / "galería de casos ü"
    result = run_cli("enroll", "--from-dir", tmp_path / "dossier été 2024", "--gallery", gallery, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["enrolled"] == 2
    listed = json.loads(run_cli("gallery", "list", "--gallery", gallery, "--json").stdout)
    assert [(row["identity"], row["faces"], row["voices"]) for row in listed] == [("Zoë 李 o'neil [b]", 1, 1)]
    connection = sqlite3.connect(gallery / "gallery.db")
    assert sorted(row[0] for row in connection.execute("SELECT source_path FROM media")) == sorted(
        [str((person / "clip ü, 1.wav").resolve()), str((person / "photo 1 — é.jpg").resolve())])
    connection.close()
    embedded = run_cli("embed", "--voice", person / "clip ü, 1.wav", "--json")
    assert embedded.returncode == 0, embedded.stderr
    assert json.loads(embedded.stdout)["source"] == str(person / "clip ü, 1.wav")



def test_control_characters_in_file_names_are_escaped_in_messages(tmp_path, hostile, grace_hopper):
    """A name holding a newline, an ANSI colour sequence, a right-to-left override and a byte that is not UTF-8
    reaches the terminal as escapes: still one line, nothing restyled, reordered or unencodable."""
    import os

    weird = os.fsdecode(b"clip\n\x1b[31mred\xe2\x80\xaegpj\xff.wav")  # (\xff: not UTF-8, a surrogate in Python)
    shown = "clip\\n\\x1b[31mred\\u202egpj\\udcff.wav"
    (tmp_path / weird).write_bytes((hostile / "html.wav").read_bytes())
    refused = run_cli("embed", "--voice", tmp_path / weird)
    assert refused.returncode == 2
    assert one_error_line(refused) == f"fvmatch: error: {tmp_path}/{shown}: not an audio file soundfile can read: " \
        "Format not recognised."
    enroll = run_cli("enroll", "--identity", "x", "--voice", tmp_path / weird, "--face", grace_hopper,
                     "--gallery", tmp_path / "g")
    assert enroll.returncode == 2
    failures = [line for line in enroll.stderr.splitlines() if line.startswith("fvmatch: failed: ")]
    assert failures == [f"fvmatch: failed: {tmp_path}/{shown}: not an audio file soundfile can read: "
                        "Format not recognised."]
    assert "\x1b" not in enroll.stderr + refused.stderr and "\u202e" not in enroll.stderr + refused.stderr
    (tmp_path / weird).write_bytes((hostile / "speech.wav").read_bytes())
    embedded = run_cli("embed", "--voice", tmp_path / weird)  # the human output names the file, escaped too
    assert embedded.returncode == 0 and embedded.stdout.startswith(f"voice {tmp_path}/{shown}  (")

# --- long recordings: memory does not grow with duration -----------------------------------------------------------

def long_recording(path: Path, seconds: float, rate: int, channels: int) -> Path:
    """`seconds` of 20 s utterances with 2 s pauses, written a piece at a time (16-bit PCM)."""
    unit = np.concatenate([speech_clip(20.0, seed=11), np.zeros(2 * SAMPLE_RATE, np.float32)])
    unit = resample_poly(unit, rate, SAMPLE_RATE).astype(np.float32) if rate != SAMPLE_RATE else unit
    frames = int(seconds * rate)
    with soundfile.SoundFile(path, "w", rate, channels, "PCM_16") as sound:
        while sound.frames < frames:
            piece = unit[: frames - sound.frames]
            sound.write(np.repeat(piece[:, None], channels, axis=1) * 0.8)
    return path


def embed_voice_peak_rss(path: Path) -> tuple[dict, float]:
    """`fvmatch embed --voice PATH --json` as the only child of a fresh process: its output and its peak RSS (MB)."""
    wrapper = ("import json, resource, subprocess, sys\n"
               "result = subprocess.run([sys.executable, '-m', 'fvmatch.cli', 'embed', '--voice', sys.argv[1], '--json'],"
               " capture_output=True, text=True)\n"
               "print(json.dumps({'returncode': result.returncode, 'stdout': result.stdout, 'stderr': result.stderr,"
               " 'peak_kb': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))\n")
    # glibc keeps freed blocks of a few MB for reuse once its mmap threshold has risen (it rises each time such a block
    # is freed), so the peak wandered by up to 100 MB between identical runs; a fixed threshold returns every large
    # buffer when freed, and the comparison is about what the recording's length keeps alive
    environment = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    outer = subprocess.run([sys.executable, "-c", wrapper, path], capture_output=True, text=True, timeout=1200,
                           env=environment)
    run = json.loads(outer.stdout)
    assert run["returncode"] == 0, run["stderr"][-2000:]
    return json.loads(run["stdout"]), run["peak_kb"] / 1024


@pytest.mark.parametrize("minutes, rate, channels", [
    (5, 48000, 2),  # decoded whole: 115 MB of float32
    # decoded whole: 230 MB of float32; a minute or more of CPU, so out of the default run (the `long` marker)
    pytest.param(60, 16000, 1, marks=[pytest.mark.slow, pytest.mark.long]),
])
def test_a_long_recording_is_embedded_in_the_memory_of_a_one_minute_one(tmp_path, minutes, rate, channels):
    short, short_peak_mb = embed_voice_peak_rss(long_recording(tmp_path / "short.wav", 60, rate, channels))
    long, long_peak_mb = embed_voice_peak_rss(long_recording(tmp_path / "long.wav", 60 * minutes, rate, channels))
    print(f"peak RSS: {short_peak_mb:.0f} MB for 1 min, {long_peak_mb:.0f} MB for {minutes} min "
          f"({rate} Hz, {channels} channels)")
    assert long["quality"]["duration_seconds"] == pytest.approx(60 * minutes, abs=0.01)
    assert long["quality"]["speech_seconds"] > 0.8 * 60 * minutes
    assert long["quality"]["windows"] >= 0.8 * 60 * minutes / 20.0
    assert short["quality"]["windows"] <= 3
    assert set(long["spaces"]) == {"joint", "ge2e-voice"}
    for space in long["spaces"].values():
        assert np.linalg.norm(space["embedding"]) == pytest.approx(1.0, abs=1e-5)
    assert long_peak_mb - short_peak_mb < 60  # the whole file would be 115 MB (5 min) or 230 MB (60 min) more
    assert long_peak_mb < 1500
