"""The official VoxCeleb2 release laid out as fvmatch's corpus, with symbolic links to the release's files (no copies).

Read, as VGG (Oxford) distributes it:

    SRC/vox2_meta.csv                   comma-separated, fields padded with spaces; header VoxCeleb2 ID, VGGFace2 ID,
                                        Gender, Set (Set: dev | test), one row per identity
    SRC/dev/aac/<VoxCeleb2 ID>/<video>/<NNNNN>.m4a     vox2_dev_aac unzipped (AAC in MP4, read through PyAV)
    SRC/test/aac/<VoxCeleb2 ID>/<video>/<NNNNN>.m4a    vox2_test_aac; an aac/ folder directly under SRC, or one
                                                       folder further down, is read too
    FACES (--faces; VoxCeleb2 ships videos, not face frames): one folder per identity named by its VoxCeleb2 ID or
        its VGGFace2 ID, holding either frames per video (<video>/<frame>.jpg, or <video>/<utterance>/<frame>.jpg
        as VoxCeleb1's frames) or photos (<photo>.jpg, as VGGFace2 keeps them: n000012/0001_01.jpg)

Written (fvmatch.corpus's layout):

    DATA/voices/<id>            -> <aac root>/<id>
    DATA/faces/<id>/<video>     -> FACES/<label>/<video>           (frames: one link per video)
    DATA/faces/<id>/photos      -> FACES/<label>                   (photos: one pseudo-video)
    DATA/meta.csv               identity, name (the VGGFace2 ID), gender, nationality and age (empty: VoxCeleb2
                                gives neither), split, voxceleb2_set
    DATA/import.json            what was read, the split mapping, counts, the identities skipped and the speaker
                                folders the meta file does not list

Splits: Set test -> test; dev -> train, a fixed share of dev -> val chosen by a hash of the identity (as for
VoxCeleb1: fvmatch validates and calibrates on val).
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.importers.corpus_writer import (FORMAT, clear_destination, count_files, face_videos, hashed_draw,
                                             import_each, link, numbered_lines, reason_counts, refuse_empty,
                                             unlisted_folders, write_corpus_files)
from fvmatch.media.audio import AUDIO_SUFFIXES

META_FILE = "vox2_meta.csv"
META_HEADER = ("VoxCeleb2 ID", "VGGFace2 ID", "Gender", "Set")
IDENTITY_PATTERN = re.compile(r"id\d{5}")
SETS = ("dev", "test")
PHOTO_VIDEO = "photos"
DEFAULT_VAL_FRACTION = 0.05
ATTRIBUTE_NOTE = ("VoxCeleb2 gives neither nationality nor age: both left empty, so the N, A and GNA strata have "
                  "no trials (gender is kept)")


@dataclass(frozen=True)
class Speaker:
    """One row of vox2_meta.csv."""

    identity: str  # VoxCeleb2 ID, id00012
    vggface2: str  # VGGFace2 ID, n000012
    gender: str
    voxceleb_set: str  # dev | test


def read_vox2_meta(path: str | Path) -> list[Speaker]:
    """The rows of vox2_meta.csv (comma- or tab-separated, fields stripped); BadArgument naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise BadArgument(path, f"no such file; a VoxCeleb2 release has {META_FILE} ({', '.join(META_HEADER)})")
    numbered = numbered_lines(path)
    separator = "\t" if "\t" in numbered[0][1] else ","
    header = [field.strip() for field in numbered[0][1].split(separator)]
    missing = [name for name in META_HEADER if name not in header]
    if missing:
        raise BadArgument(path, f"line {numbered[0][0]}: missing column(s) {', '.join(missing)} "
                                f"(needs {', '.join(META_HEADER)}, comma-separated)")
    column = [header.index(name) for name in META_HEADER]
    speakers, first_line = [], {}
    for number, line in numbered[1:]:
        fields = [field.strip() for field in line.split(separator)]
        if len(fields) < len(header):
            raise BadArgument(path, f"line {number}: {len(fields)} fields, the header has {len(header)}")
        identity, vggface2, gender, voxceleb_set = (fields[index] for index in column)
        if not IDENTITY_PATTERN.fullmatch(identity):
            raise BadArgument(path, f"line {number}: {identity!r} is not a VoxCeleb2 ID (id followed by 5 digits)")
        if identity in first_line:
            raise BadArgument(path, f"line {number}: {identity} is listed twice (first on line {first_line[identity]})")
        if voxceleb_set not in SETS:
            raise BadArgument(path, f"line {number}: Set {voxceleb_set!r} is not one of {', '.join(SETS)}")
        if not vggface2 or vggface2 in {".", ".."} or "/" in vggface2 or "\\" in vggface2:
            raise BadArgument(path, f"line {number}: VGGFace2 ID {vggface2!r} is not a folder name")
        first_line[identity] = number
        speakers.append(Speaker(identity, vggface2, gender, voxceleb_set))
    if not speakers:
        raise BadArgument(path, "lists no identities")
    return speakers


def import_voxceleb2(src: str | Path, data: str | Path, faces: str | Path, val_fraction: float = DEFAULT_VAL_FRACTION,
                     force: bool = False, progress: Callable[[int], None] | None = None,
                     total: Callable[[int], None] | None = None) -> dict:
    """Write DATA as fvmatch's corpus of the VoxCeleb2 release at SRC with the faces at FACES (links to their files);
    return the summary. Identities with no voices or no faces are skipped and listed; speaker folders the meta
    file does not list are listed and ignored. BadArgument for a missing or garbled meta, no aac/ folder, a FACES
    with no folder named by an ID of the meta, a DATA holding anything else, or nothing to import."""
    src, data, faces = Path(src), Path(data), Path(faces)
    if not src.is_dir():
        raise BadArgument(src, "no such folder (expected the VoxCeleb2 release: vox2_meta.csv, dev/aac/, test/aac/)")
    if not 0.0 <= val_fraction < 1.0:
        raise BadArgument("--val-fraction", f"{val_fraction} is not in [0, 1)")
    speakers = read_vox2_meta(src / META_FILE)
    aac_roots = _aac_roots(src)
    face_root = _face_root(faces, speakers)
    clear_destination(data, force)
    if total:
        total(len(speakers))
    unlisted = unlisted_folders(aac_roots, {speaker.identity for speaker in speakers})
    counts = {"voices": 0, "faces": 0, "links": 0}
    rows, skipped = import_each(
        speakers, lambda speaker: _import_one(speaker, data, aac_roots, face_root, val_fraction, counts),
        lambda speaker: speaker.vggface2, progress)
    if not rows:
        refuse_empty(skipped, src, face_root,
                     "<id or VGGFace2 ID>/<photo>.jpg or <id>/<video>/[<utterance>/]<frame>.jpg")
    summary = {
        "format": FORMAT, "source": "VoxCeleb2", "src": str(src.resolve()), "data": str(data),
        "voices_read": [str(root) for root in aac_roots], "faces_read": str(face_root),
        "identities": len(rows),
        "splits": {name: sum(row["split"] == name for row in rows) for name in ("train", "val", "test")},
        "split_rule": f"Set: test -> test; dev -> train, {val_fraction:.0%} of dev -> val (by a hash of the identity)",
        "voices": counts["voices"], "faces": counts["faces"], "links": counts["links"], "age": ATTRIBUTE_NOTE,
        "skipped": skipped, "skipped_reasons": reason_counts(skipped), "unlisted_speakers": unlisted,
    }
    write_corpus_files(data, summary, rows, extra_columns=("voxceleb2_set",))
    return summary


def _aac_roots(src: Path) -> list[Path]:
    candidates = [src / "aac", *sorted(src.glob("*/aac")), *sorted(src.glob("*/*/aac"))]
    roots = [root.resolve() for root in candidates if root.is_dir()]
    if not roots:
        raise BadArgument(src, "no aac/ folder (VoxCeleb2's audio unzips to dev/aac/<VoxCeleb2 ID>/<video>/<NNNNN>.m4a "
                               "and test/aac/...)")
    return list(dict.fromkeys(roots))


def _face_root(faces: Path, speakers: list[Speaker]) -> Path:
    """FACES itself, or its faces/ or data/ subfolder, whichever holds a folder named by an ID of the meta."""
    if not faces.is_dir():
        raise BadArgument(faces, "no such folder")
    labels = {label for speaker in speakers for label in (speaker.identity, speaker.vggface2)}
    for candidate in (faces, faces / "faces", faces / "data"):
        if candidate.is_dir() and any(entry.name in labels and entry.is_dir() for entry in os.scandir(candidate)):
            return candidate.resolve()
    raise BadArgument(faces, "holds no face folder named by a VoxCeleb2 ID or VGGFace2 ID of vox2_meta.csv, directly "
                             "or under faces/ or data/")


def _import_one(speaker: Speaker, data: Path, aac_roots: list[Path], face_root: Path, val_fraction: float,
                counts: dict) -> dict | str:
    """Link one identity's voices and faces into DATA and return its meta row, or why it was skipped."""
    voice_folder = next((root / speaker.identity for root in aac_roots if (root / speaker.identity).is_dir()), None)
    clips = count_files(voice_folder, ("*/*",), AUDIO_SUFFIXES) if voice_folder else 0
    face_folder = next((face_root / label for label in (speaker.identity, speaker.vggface2)
                        if (face_root / label).is_dir()), None)
    videos, pictures = face_videos(face_folder, PHOTO_VIDEO) if face_folder is not None else ({}, 0)
    missing = [what for what, count in (("voices", clips), ("faces", pictures)) if not count]
    if missing:
        return f"no {' and no '.join(missing)}"
    link(voice_folder, data / "voices" / speaker.identity)
    for video, target in videos.items():
        link(target, data / "faces" / speaker.identity / video)
    counts["voices"] += clips
    counts["faces"] += pictures
    counts["links"] += 1 + len(videos)
    split = "test" if speaker.voxceleb_set == "test" else (
        "val" if hashed_draw(speaker.identity) < val_fraction else "train")
    return {"identity": speaker.identity, "name": speaker.vggface2, "gender": speaker.gender, "nationality": None,
            "age": None, "split": split, "voxceleb2_set": speaker.voxceleb_set}
