"""The ML engineer's commands for published data: import voxceleb1."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import JsonOption, app, emit_json, say_line, stderr, stdout
from fvmatch.progress import item_progress

import_app = typer.Typer(help="Lay a published corpus out as fvmatch's corpus (links to its files, never copies).",
                         no_args_is_help=True)
app.add_typer(import_app, name="import")


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
    force: bool = typer.Option(False, "--force", help="Replace a previous import in DATA (links and meta only)."),
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
    for entry in summary["skipped"]:
        say_line(stderr, f"fvmatch: skipped: {entry['identity']} ({entry['name']}): {entry['reason']}")
    if as_json:
        emit_json(summary)
        return
    splits_found = ", ".join(f"{count} {name}" for name, count in summary["splits"].items())
    say_line(stdout, f"imported {summary['identities']} identities ({splits_found}): {summary['voices']:,} voice "
                     f"clips, {summary['faces']:,} faces ({summary['face_layout']}) as {summary['links']:,} links "
                     f"in {data}; {len(summary['skipped'])} skipped")
    say_line(stdout, f"splits from {summary['split_rule']}")
    say_line(stdout, f"age: {summary['age']}")
