"""What every importer shares: the destination checked and cleared, face folders linked as videos, splits drawn by a
hash of the identity, and the corpus's meta.csv and import.json written (meta.csv last, so an interrupted import is
never taken for a corpus)."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.media.image import IMAGE_SUFFIXES

FORMAT = "fvmatch-import/1"
CORPUS_ENTRIES = {"faces", "voices", "meta.csv", "import.json"}
META_HEADER = ("identity", "name", "gender", "nationality", "age", "split")


def clear_destination(data: Path, force: bool, written_files: Iterable[str] = ()) -> None:
    """DATA absent or empty; with force, a previous import's entries removed: links under faces/ and voices/, and
    the files it wrote itself (`written_files`, relative to DATA: media extracted from videos), nothing else."""
    if data.exists() and not data.is_dir():
        raise BadArgument(data, "exists and is not a folder")
    entries = sorted(os.listdir(data)) if data.is_dir() else []
    if entries and not force:
        raise BadArgument(data, f"is not empty ({len(entries)} entries); give an empty or new folder, or --force to "
                                "replace a previous import there")
    written = {os.path.normpath(data / name) for name in written_files}
    for name in entries:
        if name not in CORPUS_ENTRIES and name != "meta.csv.tmp":
            raise BadArgument(data / name, "not written by fvmatch import: refusing to replace a folder holding it")
        path = data / name
        if path.is_symlink() or (name in ("faces", "voices") and not path.is_dir()):
            raise BadArgument(path, "not written by fvmatch import: refusing to replace it")
        if name in ("faces", "voices"):
            for root, folders, files in os.walk(path):
                real = [item for item in files + folders if not os.path.islink(os.path.join(root, item))
                        and not os.path.isdir(os.path.join(root, item))
                        and os.path.normpath(os.path.join(root, item)) not in written]
                if real:
                    raise BadArgument(os.path.join(root, real[0]), "a file, not a link: fvmatch import writes links "
                                                                   "only, so refusing to remove it")
    for name in entries:
        path = data / name
        if path.is_dir():
            shutil.rmtree(path)  # links are unlinked, never followed
        else:
            path.unlink()
    data.mkdir(parents=True, exist_ok=True)


def previous_written_files(data: Path) -> list[str]:
    """The files a previous import into DATA wrote itself (its import.json's "written_files"), for --force."""
    try:
        return list(json.loads((data / "import.json").read_text()).get("written_files", []))
    except (OSError, ValueError, AttributeError):
        return []


def count_files(folder: Path, patterns: Iterable[str], suffixes: set[str]) -> int:
    return sum(1 for pattern in patterns for path in folder.glob(pattern)
               if path.suffix.lower() in suffixes and path.is_file())


def face_videos(folder: Path, photo_video: str) -> tuple[dict[str, Path], int]:
    """How a person's face folder becomes videos of the corpus: images directly in the folder make it one
    pseudo-video named `photo_video`; otherwise each subfolder holding images (directly or one folder down, as
    frames per utterance) is one video. Returns ({video name: folder to link}, images the corpus will read)."""
    if count_files(folder, ("*",), IMAGE_SUFFIXES):  # photos: the corpus reads them, and one folder down, through one link
        return {photo_video: folder}, count_files(folder, ("*", "*/*"), IMAGE_SUFFIXES)
    videos: dict[str, Path] = {}
    images = 0
    for entry in sorted(entry for entry in folder.iterdir() if entry.is_dir() and not entry.name.startswith(".")):
        found = count_files(entry, ("*", "*/*"), IMAGE_SUFFIXES)
        if found:
            videos[entry.name] = entry
            images += found
    return videos, images


def hashed_draw(label: str) -> float:
    """A number in [0, 1) fixed by the identity label: the same identities land in val or test whatever subset of
    a release is imported."""
    return int(hashlib.sha256(label.encode()).hexdigest()[:8], 16) / 2**32


def reason_counts(skipped: list[dict]) -> dict[str, int]:
    """{reason: identities skipped for it}, most frequent first."""
    counts: dict[str, int] = {}
    for entry in skipped:
        counts[entry["reason"]] = counts.get(entry["reason"], 0) + 1
    return dict(sorted(counts.items(), key=lambda item: -item[1]))


def link(target: Path, at: Path) -> None:
    at.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(target, at, target_is_directory=target.is_dir())


def write_corpus_files(data: Path, summary: dict, rows: list[dict], extra_columns: tuple[str, ...] = ()) -> None:
    """import.json, then meta.csv (through a temporary name): META_HEADER's columns and `extra_columns`."""
    (data / "import.json").write_text(json.dumps(summary, indent=2) + "\n")
    temporary = data / "meta.csv.tmp"
    columns = META_HEADER + extra_columns
    with open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(column) is None else row.get(column) for column in columns])
    temporary.replace(data / "meta.csv")


def unlisted_folders(roots: Iterable[Path], listed: set[str]) -> list[str]:
    """The speaker folders under the voice roots that the meta file does not list (reported, never read)."""
    return sorted({entry.name for root in roots for entry in os.scandir(root) if entry.is_dir()
                   and entry.name not in listed})


def import_each(people: Sequence, import_one: Callable[[object], dict | str], name_of: Callable[[object], str],
                progress: Callable[[int], None] | None = None) -> tuple[list[dict], list[dict]]:
    """(meta rows, skipped identities) of importing each person (`import_one` gives a row, or why it was skipped)."""
    rows, skipped = [], []
    for person in people:
        row = import_one(person)
        if isinstance(row, str):
            skipped.append({"identity": person.identity, "name": name_of(person), "reason": row})
        else:
            rows.append(row)
        if progress:
            progress(1)
    return rows, skipped


def refuse_empty(skipped: list[dict], src: Path, face_root: Path, face_layouts: str) -> None:
    """Nothing imported: the faces folder named where no identity with voices had faces, else SRC with the reasons."""
    with_voices = [entry for entry in skipped if entry["reason"] == "no faces"]
    if with_voices and all(entry["reason"] in ("no faces", "no voices and no faces") for entry in skipped):
        raise BadArgument(face_root, f"no face images for any of the {len(with_voices):,} identities with voices "
                                     f"(read {face_layouts})")
    reasons = "; ".join(f"{count:,} {reason}" for reason, count in reason_counts(skipped).items())
    raise BadArgument(src, f"no identity has both voices and faces ({len(skipped):,} skipped: {reasons})")


def numbered_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, line) of a release's UTF-8 text file, blank lines left out; BadArgument when it is not UTF-8
    text or holds nothing."""
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise BadArgument(path, "not UTF-8 text") from None
    numbered = [(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    if not numbered:
        raise BadArgument(path, "file is empty")
    return numbered
