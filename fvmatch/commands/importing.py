"""The ML engineer's commands for paired data: import voxceleb1, voxceleb2, pairs."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import JsonOption, app, emit_json, say_line, stderr, stdout
from fvmatch.commands.skips import say_skipped
from fvmatch.progress import item_progress

import_app = typer.Typer(help="Lay a published corpus or a laboratory's own pairs out as fvmatch's corpus (links to "
                         "their files; only frames and soundtracks of videos are written).",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")
ReplaceOption = typer.Option(False, "--force", help="Replace a previous import in DATA (what it wrote only: links, "
                             "meta.csv, a video's frames and soundtrack).")


@import_app.command("voxceleb1")
def voxceleb1(
    src: Path = typer.Argument(..., help="The VoxCeleb1 release: vox1_meta.csv (tab-separated) and "
                               "wav/<id>/<video>/<NNNNN>.wav (also <folder>/wav/)."),
    data: Path = typer.Argument(..., help="Corpus folder to write (absent or empty): faces/, voices/ (links), meta.csv."),
    faces: Optional[Path] = typer.Option(None, "--faces", help="Face frames (<name>/1.6/<video>/<frame>.jpg, also "
                                         "under data/ or unzippedIntervalFaces/data/) or VGGFace1 photos "
                                         "(<name>/<photo>.jpg); default: SRC."),
    splits: Optional[Path] = typer.Option(None, "--splits", help="Nagrani et al.'s identity_splits.txt (1 train, "
                                          "2 val, 4 test) instead of the Set column."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of dev identities made val when the "
                                       "splits come from the Set column (chosen by a hash of the identity)."),
    force: bool = ReplaceOption,
    as_json: bool = JsonOption,
) -> None:
    """Lay the VoxCeleb1 release out as a corpus for prepare, train, evaluate and calibrate: links to its files,
    meta.csv with gender, nationality and split (VoxCeleb1 has no ages: left empty)."""
    from fvmatch.importers import import_voxceleb1

    with item_progress(stderr, "import", "identities", transient=as_json) as progress:
        task = progress.add_task("import", total=None)
        summary = import_voxceleb1(src, data, faces=faces, splits_file=splits, val_fraction=val_fraction, force=force,
                                   progress=lambda n: progress.advance(task, n),
                                   total=lambda n: progress.update(task, total=n))
    _report(summary, data, as_json, "voice clips", f"faces ({summary['face_layout']})")


@import_app.command("voxceleb2")
def voxceleb2(
    src: Path = typer.Argument(..., help="The VoxCeleb2 release: vox2_meta.csv and dev/aac/<id>/<video>/<NNNNN>.m4a, "
                               "test/aac/... (also aac/ or <folder>/aac/)."),
    data: Path = typer.Argument(..., help="Corpus folder to write (absent or empty): faces/, voices/ (links), meta.csv."),
    faces: Path = typer.Option(..., "--faces", help="Faces, one folder per identity named by its VoxCeleb2 ID or "
                               "VGGFace2 ID: frames (<video>/[<utterance>/]<frame>.jpg) or photos (<photo>.jpg)."),
    val_fraction: float = typer.Option(0.05, "--val-fraction", help="Share of dev identities made val (chosen by a "
                                       "hash of the identity)."),
    force: bool = ReplaceOption,
    as_json: bool = JsonOption,
) -> None:
    """Lay the VoxCeleb2 release out as a corpus for prepare, train, evaluate and calibrate: links to its M4A files
    and to the faces given, meta.csv with gender and split (VoxCeleb2 has no nationality or age: left empty)."""
    from fvmatch.importers import import_voxceleb2

    with item_progress(stderr, "import", "identities", transient=as_json) as progress:
        task = progress.add_task("import", total=None)
        summary = import_voxceleb2(src, data, faces, val_fraction=val_fraction, force=force,
                                   progress=lambda n: progress.advance(task, n),
                                   total=lambda n: progress.update(task, total=n))
    _report(summary, data, as_json, "voice clips (M4A)")


@import_app.command("pairs")
def pairs(
    src: Path = typer.Argument(..., help="A laboratory's paired data: <person>/<session>/ folders of photos, "
                               "recordings and videos (a video gives both a face and a voice); optional meta.csv "
                               "(identity, gender, nationality, age, split)."),
    data: Path = typer.Argument(..., help="Corpus folder to write (absent or empty)."),
    val_fraction: float = typer.Option(0.1, "--val-fraction", help="Share of people made val where meta.csv gives "
                                       "no split (by a hash of the person's folder name)."),
    test_fraction: float = typer.Option(0.2, "--test-fraction", help="Share of people made test where meta.csv "
                                        "gives no split."),
    video_frames: int = typer.Option(10, "--video-frames", min=1, help="Frames kept per video (one a second)."),
    force: bool = ReplaceOption,
    as_json: bool = JsonOption,
) -> None:
    """Lay a laboratory's own paired recordings out as a corpus: photos and recordings linked per session, videos'
    frames and soundtracks written, splits from meta.csv or drawn by person."""
    from fvmatch.importers import import_pairs

    with item_progress(stderr, "import", "people", transient=as_json) as progress:
        task = progress.add_task("import", total=None)
        summary = import_pairs(src, data, val_fraction=val_fraction, test_fraction=test_fraction,
                               video_frames=video_frames, force=force, progress=lambda n: progress.advance(task, n),
                               total=lambda n: progress.update(task, total=n))
    for failure in summary["failed"][:3]:
        say_line(stderr, f"fvmatch: video not read: {failure['item']}: {failure['error']}")
    if len(summary["failed"]) > 3:
        say_line(stderr, f"fvmatch: {len(summary['failed']) - 3:,} more videos not read (all in --json)")
    _report(summary, data, as_json, f"voices ({summary['videos']:,} videos read)")


def _report(summary: dict, data: Path, as_json: bool, voices_are: str, faces_are: str = "faces") -> None:
    """An import's summary: its skips on stderr, then --json or the counts, the split rule and the ages."""
    say_skipped(summary, data)
    if as_json:
        emit_json(summary)
        return
    splits_found = ", ".join(f"{count} {name}" for name, count in summary["splits"].items())
    say_line(stdout, f"imported {summary['identities']} identities ({splits_found}): {summary['voices']:,} "
                     f"{voices_are}, {summary['faces']:,} {faces_are} as {summary['links']:,} links in {data}; "
                     f"{len(summary['skipped'])} skipped")
    say_line(stdout, f"splits from {summary['split_rule']}")
    say_line(stdout, f"age: {summary['age']}")
