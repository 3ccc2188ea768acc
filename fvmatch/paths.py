"""Evidence paths named inside listing files (enrolment manifests, audit query files).

A path in a listing is relative to the listing's own folder, so a case folder can be moved whole. With a stated
root (`--root DIR`), every path must resolve, symlinks followed, to somewhere inside that root: a listing that
reaches out of the case folder (`../../etc/passwd`, an absolute path elsewhere, a symlink out) is refused row by
row, before any file is opened, and the file then opened is the resolved path that was checked. (Someone able to
write inside the root can still swap a directory for a symlink between the check and the open: the root confines
mistakes and hostile listings, not a hostile writer of the case folder itself.)
"""
from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from fvmatch.errors import BadArgument


def input_file_problem(path: Path) -> str | None:
    """Why `path` cannot be read as an input file, in the words every command uses; None when it is a regular file."""
    path = Path(path)
    if path.is_file():
        return None
    if path.is_dir():
        return "is a directory, not a file"
    return "not a regular file" if path.exists() else "no such file"


def shipped_bytes(path: Path, sha256: str, what: str) -> bytes:
    """The bytes of a weights file fvmatch ships, checked against its sha256 (ValueError naming `what` otherwise)."""
    data = Path(path).read_bytes()
    if hashlib.sha256(data).hexdigest() != sha256:
        raise ValueError(f"{path}: not the {what} fvmatch ships (sha256 differs): reinstall fvmatch")
    return data


def file_digest(path: Path) -> tuple[str, int]:
    """(sha256, size in bytes) of a file, read once."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest(), handle.tell()


def check_root(root: Path | None) -> Path | None:
    """The resolved --root directory (BadArgument when it is not one)."""
    if root is None:
        return None
    if not Path(root).is_dir():
        raise BadArgument(root, "--root is not a directory")
    return Path(root).resolve()


def resolve_listed_path(listing: Path, raw: str, root: Path | None, origin: str) -> Path:
    """The file a listing's row names: relative to the listing's folder; inside `root` when one is given.

    `root` must come from check_root (already resolved). Raises BadArgument naming `origin` ("file.csv:4").
    """
    if "\x00" in raw:
        raise BadArgument(origin, "path holds a NUL character")
    path = Path(raw)
    if not path.is_absolute():
        path = Path(listing).parent / path
    if root is not None:
        # realpath follows symlinks (strict=False: a missing file still gets its would-be location checked)
        real = Path(os.path.realpath(path))
        if real != root and root not in real.parents:
            raise BadArgument(origin, f"path {raw!r} is outside --root {root}")
        # the checked path is the one opened: a symlink on the listed path swapped after the check changes nothing
        return real
    return path


def read_listing(listing: Path, columns: tuple[str, ...], optional: tuple[str, ...] = ()) -> list[tuple[int, dict]]:
    """Rows of a CSV listing as (line number, {column: stripped cell}), blank rows dropped.

    The line number is the file's line where the row starts (a quoted cell may hold line breaks).

    The header must start with `columns` in order; any of `optional` may follow, in any order. A row shorter
    than `columns` is returned with the key "_short" holding how many cells it had, for the caller to record.
    """
    if (problem := input_file_problem(listing)) is not None:
        raise BadArgument(listing, problem)
    try:
        with open(listing, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows, start = [], 1
            for row in reader:
                rows.append((start, row))
                start = reader.line_num + 1
    except (UnicodeDecodeError, csv.Error) as error:
        raise BadArgument(listing, f"not a readable UTF-8 CSV file ({error})") from None
    header = [cell.strip().lower() for cell in rows[0][1]] if rows else []
    extra = header[len(columns):]
    if header[: len(columns)] != list(columns) or any(name not in optional for name in extra if name):
        wanted = ",".join(columns) + "".join(f"[,{name}]" for name in optional)
        raise BadArgument(listing, f"first row must be the header {wanted}")
    names = header
    result = []
    for line, row in rows[1:]:
        if not any(cell.strip() for cell in row):
            continue
        cells = {name: (row[i].strip() if i < len(row) else "") for i, name in enumerate(names) if name}
        if len(row) < len(columns):
            cells["_short"] = len(row)
        result.append((line, cells))
    return result
