"""What a new user met first: help that reads right, the same words for the same problem, counts in good English."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import typer
from mediagen import run_cli_here, speech_clip
from typer.testing import CliRunner

from fvmatch.cli import app
from fvmatch.commands.common import plural, short_path

REPOSITORY = Path(__file__).resolve().parent.parent


def command_paths(command=None, path=()) -> list[tuple[str, ...]]:
    """Every command of the tree, as the words that name it (the root: ())."""
    command = command or typer.main.get_command(app)
    found = [path]
    for name, sub in getattr(command, "commands", {}).items():
        found += command_paths(sub, (*path, name))
    return found


def help_at_80_columns(*words: str) -> str:
    result = CliRunner().invoke(app, [*words, "--help"], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    return result.output


# --- 1. flags in --help -------------------------------------------------------------------------------------------

def test_no_command_shows_a_type_after_a_flag():
    paths = command_paths()
    assert ("calibrate",) in paths and ("audit", "run") in paths and ("gallery", "info") in paths
    for words in paths:
        assert "<bool>" not in help_at_80_columns(*words), words
    options = help_at_80_columns("calibrate")
    assert re.search(r"│ +--add +Keep the model's other calibration", options)
    assert re.search(r"│ +--json +One JSON document on stdout", options)
    assert re.search(r"│ +--help +-h +Show this message and exit\.", options)
    assert re.search(r"--split +<str> +Split whose trials", options)  # options that take a value keep their type


# --- 2. help sentences not broken by the docstring's line breaks ----------------------------------------------------

def test_enroll_help_reads_a_video_gives_a_face_item_on_one_line():
    lines = help_at_80_columns("enroll").splitlines()
    assert any("A video gives a face item (its longest face track)" in line for line in lines)


@pytest.mark.parametrize("words", command_paths())
def test_no_line_of_a_command_description_ends_before_the_terminal_edge(words):
    """Rich fills each line (78 columns inside the margins): a line ending early means a hard break from the source."""
    text = help_at_80_columns(*words).split("╭")[0]
    description = [line.strip() for line in text.splitlines()[3:]]  # after the blank line, the usage, the blank line
    for line, following in zip(description, description[1:]):
        if line and following:
            assert len(line) + 1 + len(following.split()[0]) > 78, (words, line, following)


def test_the_command_list_fills_each_summary_line_before_breaking_it():
    panel = help_at_80_columns().split("╭─ Commands")[1].split("╰")[0].splitlines()[1:]
    rows = [line[1:-1] for line in panel]  # inside the borders
    start = re.match(r" \S+ +", rows[0]).end()  # where the summaries' column begins
    width = len(rows[0]) - start - 1
    for row, following in zip(rows, rows[1:]):
        if not following[:start].strip():  # the same command's summary goes on
            assert len(row[start:].rstrip()) + 1 + len(following.split()[0]) > width, (row, following)


# --- 3. audio formats: what the help names is what is read ----------------------------------------------------------

def voice_help() -> str:
    embed = typer.main.get_command(app).commands["embed"]
    return next(param.help for param in embed.params if param.name == "voice")


def test_embed_voice_help_names_the_formats_read():
    assert voice_help() == "Audio file (WAV, FLAC, OGG, MP3, AIFF, AU, M4A/AAC; or an MP4 with sound only)."


def test_every_audio_format_the_help_names_is_read(tmp_path):
    import soundfile

    from fvmatch.media.audio import SpeechSummary, load_audio

    names = re.match(r"Audio file \((.*), M4A/AAC;", voice_help()).group(1).split(", ")
    assert names == ["WAV", "FLAC", "OGG", "MP3", "AIFF", "AU"]
    clip = speech_clip(2.0)
    for name in names:
        path = tmp_path / f"clip.{name.lower()}"
        soundfile.write(path, clip, 16000, format=name)
        summary = SpeechSummary()
        samples = load_audio(path, summary)
        assert summary.codec.split()[0] == name
        assert summary.duration_seconds == pytest.approx(2.0, abs=0.1), name  # MP3 adds a frame of padding
        assert len(samples) == pytest.approx(32000, abs=1600) and np.abs(samples).max() > 0.05, name


def test_an_m4a_file_is_read(tmp_path):
    import av

    from fvmatch.media.audio import SpeechSummary, load_audio

    path = tmp_path / "call.m4a"
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(speech_clip(1.0)[None].astype(np.float32), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    summary = SpeechSummary()
    samples = load_audio(path, summary)
    assert summary.codec == "MP4 aac" and len(samples) == pytest.approx(16000, abs=2000)


# --- 4. a directory given for a file --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_face_gallery(tmp_path_factory, grace_hopper) -> Path:
    gallery = tmp_path_factory.mktemp("newcomer") / "gallery"
    enrolled = run_cli_here("enroll", "-g", gallery, "-i", "grace", "--face", grace_hopper)
    assert enrolled.returncode == 0, enrolled.stderr
    return gallery


@pytest.mark.parametrize("argv", [
    ("identify", "--face", "{dir}", "-g", "{tmp}/no-gallery"),  # the file is checked before the gallery is opened
    ("identify", "--voice", "{dir}", "-g", "{gallery}"),
    ("embed", "--face", "{dir}"),
    ("embed", "--voice", "{dir}"),
    ("verify", "--face", "{dir}", "--voice", "{dir}"),
    ("enroll", "--manifest", "{dir}", "-g", "{tmp}/g"),
    ("audit", "run", "--queries", "{dir}", "--out", "{tmp}/results.jsonl", "-g", "{gallery}"),
])
def test_a_directory_given_as_a_file_is_one_line_is_a_directory_not_a_file(tmp_path, one_face_gallery, argv):
    folder = tmp_path / "photos"
    folder.mkdir()
    outcome = run_cli_here(*(arg.format(dir=folder, tmp=tmp_path, gallery=one_face_gallery) for arg in argv))
    assert (outcome.returncode, outcome.stdout, outcome.stderr) == (
        2, "", f"fvmatch: error: {folder}: is a directory, not a file\n")
    assert not (tmp_path / "no-gallery").exists() and not (tmp_path / "g").exists()


def test_enroll_reports_a_directory_given_as_a_face_in_the_same_words(tmp_path, grace_hopper):
    folder = tmp_path / "photos"
    folder.mkdir()
    outcome = run_cli_here("enroll", "-g", tmp_path / "g", "-i", "grace", "--face", folder, "--face", grace_hopper)
    assert outcome.returncode == 2
    # (without the training extra, enroll also notes once that the joint space was left out)
    failures = [line for line in outcome.stderr.splitlines()
                if line.startswith("fvmatch: ") and not line.startswith("fvmatch: note: ")]
    assert failures == [f"fvmatch: failed: {folder}: is a directory, not a file"]
    assert outcome.stdout.startswith("enrolled 1, already there 0, failed 1;")


def test_a_manifest_row_naming_a_directory_or_a_missing_file_names_the_path(tmp_path, one_face_gallery):
    gallery = tmp_path / "gallery"
    shutil.copytree(one_face_gallery, gallery)
    (tmp_path / "photos").mkdir()
    manifest = tmp_path / "batch.csv"
    manifest.write_text("identity,modality,path\ngrace,face,photos\ngrace,face,gone.jpg\n", encoding="utf-8")
    outcome = run_cli_here("enroll", "--manifest", manifest, "-g", gallery)
    assert outcome.returncode == 2
    assert [line for line in outcome.stderr.splitlines() if line.startswith("fvmatch: ")] == [
        f"fvmatch: failed: {manifest}:2: {tmp_path / 'photos'}: is a directory, not a file",
        f"fvmatch: failed: {manifest}:3: {tmp_path / 'gone.jpg'}: no such file"]


# --- 5. a query file's missing file names the file --------------------------------------------------------------------

def test_a_query_row_whose_file_is_missing_names_it_as_written_and_resolved(tmp_path):
    from fvmatch.audit.files import Query, read_queries

    case = tmp_path / "case"
    (case / "photos").mkdir(parents=True)
    (case / "photos" / "here.jpg").write_bytes(b"x")
    queries = case / "queries.csv"
    queries.write_text("query_id,modality,path\nq1,face,photos/here.jpg\nq2,voice,calls/gone.wav\nq3,face,photos\n"
                       f"q4,face,{tmp_path / 'elsewhere.jpg'}\n", encoding="utf-8")
    rows = read_queries(queries)
    assert [row.file_problem() for row in rows] == [
        None,
        f"calls/gone.wav ({case / 'calls' / 'gone.wav'}): no such file",
        f"photos ({case / 'photos'}): is a directory, not a file",
        f"{tmp_path / 'elsewhere.jpg'}: no such file",  # written absolute: said once
    ]
    assert rows[1].origin == f"{queries}:3"
    # one query answered alone (answer_query) is named by its path already: the problem alone
    alone = Query("q", 0, "face", str(tmp_path / "x.jpg"), tmp_path / "x.jpg", None, str(tmp_path / "x.jpg"))
    assert alone.file_problem() == "no such file"


# --- 6. jpeg_quality of a PNG -----------------------------------------------------------------------------------------

def test_embed_of_a_png_prints_no_none_and_gives_null_in_json(tmp_path, grace_hopper):
    import json

    from PIL import Image

    png = tmp_path / "grace.png"
    Image.open(grace_hopper).save(png)
    human = run_cli_here("embed", "--face", png, "--space", "dlib-face")
    assert human.returncode == 0, human.stderr
    first = human.stdout.splitlines()[0]
    assert first.startswith(f"face {png}  (detection_probability ") and "None" not in first
    assert "jpeg_quality" not in first and "eye_distance_px" in first
    document = json.loads(run_cli_here("embed", "--face", png, "--space", "dlib-face", "--json").stdout)
    assert document["quality"]["jpeg_quality"] is None
    jpeg = run_cli_here("embed", "--face", grace_hopper, "--space", "dlib-face")
    assert re.search(r", jpeg_quality \d+", jpeg.stdout.splitlines()[0])


# --- 7. counts in good English ----------------------------------------------------------------------------------------

def test_plural_agrees_with_the_count():
    assert [plural(n, "identity", "identities") for n in (0, 1, 2, 1024)] == [
        "0 identities", "1 identity", "2 identities", "1,024 identities"]
    assert (plural(1, "face"), plural(3, "face"), plural(1, "voice clip")) == ("1 face", "3 faces", "1 voice clip")


def test_gallery_info_and_remove_say_one_identity_one_face(one_face_gallery, tmp_path):
    info = run_cli_here("gallery", "info", "-g", one_face_gallery)
    assert info.returncode == 0, info.stderr
    assert "1 identity, 1 face, 0 voices; database " in info.stdout
    assert "dlib-face face index: ok, 1 item, " in " ".join(info.stdout.split())
    copy = tmp_path / "copy"
    shutil.copytree(one_face_gallery, copy)
    removed = run_cli_here("gallery", "remove", "-i", "grace", "-g", copy)
    assert (removed.returncode, removed.stdout) == (0, "removed grace: 1 face, 0 voices\n")


# --- 8. the rate column of progress bars ------------------------------------------------------------------------------

def test_the_rate_column_is_blank_until_a_rate_is_known_then_items_per_second():
    from rich.progress import Progress

    from fvmatch.progress import RateColumn

    now = [0.0]
    column = RateColumn("items")
    progress = Progress(column, get_time=lambda: now[0])
    task_id = progress.add_task("enroll", total=100)
    task = progress.tasks[0]
    assert column.render(task).plain == ""
    for _ in range(4):
        now[0] += 0.5
        progress.advance(task_id, 6)
    assert column.render(task).plain == "12.0 items/s"
    assert RateColumn("s").render(task).plain == "12.0 s/s"


# --- 9. long paths in narrow tables -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, width, shown", [
    ("/home/analyst/case/photos/obama3.jpg", 80, "/home/analyst/case/photos/obama3.jpg"),
    ("/home/analyst/case/photos/obama3.jpg", 24, "…/case/photos/obama3.jpg"),
    ("/home/analyst/case/photos/obama3.jpg", 23, "…/photos/obama3.jpg"),
    ("/home/analyst/case/photos/obama3.jpg", 12, "…/obama3.jpg"),
    ("/home/analyst/case/photos/obama3.jpg", 8, "…ma3.jpg"),  # a name too long alone: its end, extension and all
    ("obama3.jpg", 10, "obama3.jpg"),
    ("/case/写真/大統領.jpg", 17, "…/写真/大統領.jpg"),  # wide characters count two cells
    ("/case/写真/大統領.jpg", 16, "…/大統領.jpg"),
])
def test_short_path_keeps_the_file_name_and_elides_the_folders(path, width, shown):
    from rich.cells import cell_len

    assert short_path(path, width) == shown
    assert cell_len(shown) <= width


def test_a_table_at_80_columns_shows_the_file_names_of_its_paths():
    import io

    from rich.console import Console
    from rich.table import Table

    from fvmatch.commands.common import ShortPath

    table = Table()
    for column in ("rank", "identity", "score", "log10 LR", "decision", "matched", "source file"):
        table.add_column(column)
    table.add_row("1", "obama", "0.9876", "+2.31", "same person", "face", ShortPath("/home/analyst/case/photos/obama3.jpg"))
    narrow, wide = Console(width=80, file=io.StringIO()), Console(width=140, file=io.StringIO())
    narrow.print(table)
    wide.print(table)
    assert "│ …/obama3.jpg   │" in narrow.file.getvalue()
    assert "│ /home/analyst/case/photos/obama3.jpg │" in wide.file.getvalue()


# --- 10. CI says why tests skip ---------------------------------------------------------------------------------------

def test_ci_runs_pytest_reporting_skips():
    lines = (REPOSITORY / ".ci" / "run").read_text().splitlines()
    assert lines[-1] == ".venv/bin/python -m pytest -q -rs"
