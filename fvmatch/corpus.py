"""The corpus layouts: the one shared by training and evaluation (VoxCeleb style, ARCHITECTURE.md section 8)

    DATA/faces/<identity>/<video>/<frame>.jpg      (or <video>/<utterance>/<frame>.jpg, as VoxCeleb1's face frames)
    DATA/voices/<identity>/<video>/<utterance>.wav
    DATA/meta.csv        identity, name, gender, nationality, age, split (train | val | test)

and, for evaluation and calibration only, a plain folder of labelled media, such as an analyst's own casework:

    DATA/faces/<person>/<file>      (files directly in the person's folder, or in folders below it)
    DATA/voices/<person>/<file>

with no meta.csv: no splits and no gender, nationality or age.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path

from fvmatch.errors import BadArgument

META_COLUMNS = ("identity", "name", "gender", "nationality", "age", "split")
SPLITS = ("train", "val", "test")
MODALITY_FOLDERS = ("faces", "voices")
LAYOUTS = ("meta", "plain")
PLAIN_LAYOUT = "faces/<person>/<file>, voices/<person>/<file>"


def read_meta(data: str | Path) -> list[dict]:
    """The rows of DATA/meta.csv in file order, as dicts with META_COLUMNS (age an int, or None when empty).

    Raises BadArgument naming meta.csv (and the line) for a missing file, missing columns, an unknown
    split, a duplicate or empty identity, or an age that is not a whole number. Extra columns are ignored.
    """
    path = Path(data) / "meta.csv"
    if not path.is_file():
        raise BadArgument(path, f"no such file; a corpus needs meta.csv with columns {', '.join(META_COLUMNS)}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            header = [name.strip() for name in next(reader, [])]
            if not header:
                raise BadArgument(path, "file is empty")
            missing = [name for name in META_COLUMNS if name not in header]
            if missing:
                raise BadArgument(path, f"missing column(s) {', '.join(missing)} (needs {', '.join(META_COLUMNS)})")
            column = {name: header.index(name) for name in META_COLUMNS}
            rows: list[dict] = []
            first_line: dict[str, int] = {}
            for fields in reader:
                line = reader.line_num
                if not any(field.strip() for field in fields):
                    continue
                if len(fields) != len(header):
                    raise BadArgument(path, f"line {line}: {len(fields)} fields, the header has {len(header)}")
                row = {name: fields[index].strip() for name, index in column.items()}
                rows.append(_checked_row(path, line, row, first_line))
    except UnicodeDecodeError:
        raise BadArgument(path, "not UTF-8 text") from None
    except csv.Error as error:
        raise BadArgument(path, f"not a readable CSV file ({error})") from None
    if not rows:
        raise BadArgument(path, "lists no identities")
    return rows


def split_rows(data: str | Path, split: str) -> list[dict]:
    """The meta.csv rows of one split, sorted by identity; BadArgument for a split fvmatch does not know (naming
    the known ones) or one that lists nobody (naming the splits that do)."""
    if split not in SPLITS:
        raise BadArgument("--split", f"{split!r} is not a split; one of {', '.join(SPLITS)} (one split is evaluated "
                                     "at a time, identity-disjoint from training)")
    rows = read_meta(data)
    chosen = sorted((row for row in rows if row["split"] == split), key=lambda row: row["identity"])
    if not chosen:
        present = ", ".join(f"{sum(row['split'] == name for row in rows)} {name}" for name in SPLITS)
        raise BadArgument(Path(data) / "meta.csv", f"lists no identity in split {split!r} ({present})")
    return chosen


def _checked_row(path: Path, line: int, row: dict, first_line: dict[str, int]) -> dict:
    identity = row["identity"]
    if not identity or identity in {".", ".."} or "/" in identity or "\\" in identity:
        raise BadArgument(path, f"line {line}: identity {identity!r} is not a folder name")
    if identity in first_line:
        raise BadArgument(path, f"line {line}: identity {identity!r} is listed twice (first on line {first_line[identity]})")
    first_line[identity] = line
    if row["split"] not in SPLITS:
        raise BadArgument(path, f"line {line}: split {row['split']!r} is not one of {', '.join(SPLITS)}")
    if row["age"]:
        try:
            row["age"] = int(row["age"])
        except ValueError:
            raise BadArgument(path, f"line {line}: age {row['age']!r} is not a whole number") from None
    else:
        row["age"] = None
    return row


def media_files(folder: Path, suffixes: set[str]) -> list[Path]:
    """The media of one identity folder: <video>/<file> and <video>/<utterance>/<file> with a known suffix, sorted.

    The second level is VoxCeleb1's face frames (unzippedIntervalFaces: <name>/1.6/<video>/<utterance>/<frame>.jpg).
    """
    if not folder.is_dir():
        return []
    return sorted(path for pattern in ("*/*", "*/*/*") for path in folder.glob(pattern)
                  if path.suffix.lower() in suffixes and path.is_file())


def corpus_layout(data: str | Path) -> str:
    """'meta' for a corpus with meta.csv, 'plain' for a folder of faces/<person>/ or voices/<person>/ folders without
    one; BadArgument (one line) for anything else."""
    data = Path(data)
    if not data.is_dir():
        raise BadArgument(data, "no such folder")
    if (data / "meta.csv").exists():
        return "meta"
    if _person_folders(data):
        return "plain"
    raise BadArgument(data, f"neither a corpus with meta.csv nor a plain folder of labelled media ({PLAIN_LAYOUT})")


def plain_identities(data: str | Path) -> list[dict]:
    """The people of a plain folder (a folder under faces/ or voices/ each), sorted, as rows shaped like read_meta's
    with nothing known: name the folder's, gender, nationality, age and split None."""
    return [{"identity": label, "name": label, "gender": None, "nationality": None, "age": None, "split": None}
            for label in sorted(_person_folders(Path(data)))]


def person_files(folder: Path, suffixes: set[str]) -> list[Path]:
    """The media of one person of a plain folder: files with a known suffix at any depth below it, sorted.

    Hidden files and folders (".DS_Store", macOS's "._photo.jpg" companions) are left out.
    """
    if not folder.is_dir():
        return []
    found, seen = [], set()
    for root, folders, files in os.walk(folder, followlinks=True):
        seen.add(os.path.realpath(root))  # a linked folder is followed once: a link cycle cannot loop
        folders[:] = [name for name in folders
                      if not name.startswith(".") and os.path.realpath(os.path.join(root, name)) not in seen]
        found.extend(Path(root) / name for name in files
                     if not name.startswith(".") and Path(name).suffix.lower() in suffixes)
    return sorted(path for path in found if path.is_file())


def _person_folders(data: Path) -> set[str]:
    return {entry.name for modality in MODALITY_FOLDERS if (data / modality).is_dir()
            for entry in (data / modality).iterdir() if entry.is_dir() and not entry.name.startswith(".")}
