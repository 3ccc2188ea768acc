"""The official VoxCeleb1 release laid out as fvmatch's corpus, with symbolic links to the release's files (no copies).

Read, as VGG (Oxford) distributes it:

    SRC/vox1_meta.csv                   tab-separated; header VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set
                                        (Set: dev | test), one row per identity
    SRC/wav/<VoxCeleb1 ID>/<video>/<NNNNN>.wav
                                        vox1_dev_wav.zip and vox1_test_wav.zip both unzip to wav/; a wav/ one folder
                                        down (SRC/vox1_dev_wav/wav/, SRC/vox1_test_wav/wav/) is read too
    FACES (SRC unless --faces), either
        VoxCeleb1's face frames         <VGGFace1 ID>/1.6/<video>/<utterance>/<frame>.jpg (unzippedIntervalFaces,
                                        as released) or <VGGFace1 ID>/1.6/<video>/<frame>.jpg, under FACES,
                                        FACES/data or FACES/unzippedIntervalFaces/data
        or VGGFace1 photos              <VGGFace1 ID>/<photo>.jpg, one folder per celebrity name
                                        (as Wen et al. keep them, VGG_ALL_FRONTAL/<name>/)
    (a face folder named by the VoxCeleb1 ID instead of the name is read as well)

Written (fvmatch.corpus's layout):

    DATA/voices/<id>            -> SRC/wav/<id>                     (the identity's folder of videos)
    DATA/faces/<id>/<video>     -> FACES/<name>/1.6/<video>         (face frames: one link per video)
    DATA/faces/<id>/vggface1    -> FACES/<name>                     (VGGFace1 photos: no video, one pseudo-video)
    DATA/meta.csv               identity, name, gender, nationality, age, split, voxceleb1_set
    DATA/import.json            what was read, the split mapping, counts, the identities skipped and the speaker
                                folders under wav/ that vox1_meta.csv does not list (ignored)

meta.csv is written last, so an interrupted import is never taken for a corpus. VoxCeleb1 has no ages: the age
column is left empty (the A and GNA strata then have no trials), and the output says so.

Splits (identity-disjoint, as fvmatch's are). By default from the Set column: test -> test (the 40 identities of
VoxCeleb1's speaker-verification test set, disjoint from dev); dev -> train, except a fixed share of dev identities
-> val, chosen by a hash of the identity label (the same identities whatever subset of the release is imported),
because fvmatch train validates on val every epoch and calibrate fits on val, and VoxCeleb1 has no validation
identities. With `splits_file`, Nagrani et al.'s (Learnable PINs, ECCV 2018) identity_splits.txt decides instead:
`<VGGFace1 ID> <set>` per line, 1 train, 2 val, 4 test (unseen-unheard); set 3 (seen-heard) names test items of
training identities, which an identity-disjoint split cannot hold, and is refused.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.importers.corpus_writer import (FORMAT, clear_destination, count_files, hashed_draw, import_each,
                                             numbered_lines, reason_counts, refuse_empty, unlisted_folders,
                                             write_corpus_files)
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES

META_FILE = "vox1_meta.csv"
META_HEADER = ("VoxCeleb1 ID", "VGGFace1 ID", "Gender", "Nationality", "Set")
IDENTITY_PATTERN = re.compile(r"id\d{5}")
FRAME_FOLDER = "1.6"  # VoxCeleb1's face frames sit under <name>/1.6/<video>/
FACE_LAYOUTS = ("<name>/1.6/<video>/<utterance>/<frame>.jpg, <name>/1.6/<video>/<frame>.jpg or "
                "<name>/<photo>.jpg")
PHOTO_VIDEO = "vggface1"  # the pseudo-video folder of a VGGFace1 photo set (photos have no video)
DEFAULT_VAL_FRACTION = 0.1
SET_SPLITS = {"dev": "train", "test": "test"}
PINS_SPLITS = {"1": "train", "2": "val", "4": "test"}  # identity_splits.txt: 1 train, 2 val, 3 seen-heard, 4 unseen-unheard
AGE_NOTE = "VoxCeleb1 gives no ages: age left empty, so the A and GNA strata have no trials"


@dataclass(frozen=True)
class Celebrity:
    """One row of vox1_meta.csv."""

    identity: str  # VoxCeleb1 ID, id10001
    name: str  # VGGFace1 ID, A.J._Buckley
    gender: str
    nationality: str
    voxceleb_set: str  # dev | test


def read_vox1_meta(path: str | Path) -> list[Celebrity]:
    """The rows of vox1_meta.csv; BadArgument naming the file (and line) when it is missing or not the release's."""
    path = Path(path)
    if not path.is_file():
        raise BadArgument(path, f"no such file; a VoxCeleb1 release has {META_FILE} (tab-separated: "
                                f"{', '.join(META_HEADER)})")
    numbered = numbered_lines(path)
    header = [field.strip() for field in numbered[0][1].split("\t")]
    if len(header) == 1:
        raise BadArgument(path, f"line {numbered[0][0]}: not tab-separated (VoxCeleb1's {META_FILE} separates "
                                f"{', '.join(META_HEADER)} with tabs)")
    missing = [name for name in META_HEADER if name not in header]
    if missing:
        raise BadArgument(path, f"line {numbered[0][0]}: missing column(s) {', '.join(missing)} "
                                f"(needs {', '.join(META_HEADER)})")
    column = [header.index(name) for name in META_HEADER]
    rows, first_line = [], {}
    for number, line in numbered[1:]:
        fields = [field.strip() for field in line.split("\t")]
        if len(fields) < len(header):
            raise BadArgument(path, f"line {number}: {len(fields)} tab-separated fields, the header has {len(header)}")
        identity, name, gender, nationality, voxceleb_set = (fields[index] for index in column)
        if not IDENTITY_PATTERN.fullmatch(identity):
            raise BadArgument(path, f"line {number}: {identity!r} is not a VoxCeleb1 ID (id followed by 5 digits)")
        if identity in first_line:
            raise BadArgument(path, f"line {number}: {identity} is listed twice (first on line {first_line[identity]})")
        if not name or name in {".", ".."} or "/" in name or "\\" in name:
            raise BadArgument(path, f"line {number}: VGGFace1 ID {name!r} is not a folder name")
        if voxceleb_set not in SET_SPLITS:
            raise BadArgument(path, f"line {number}: Set {voxceleb_set!r} is not one of {', '.join(SET_SPLITS)}")
        first_line[identity] = number
        rows.append(Celebrity(identity, name, gender, nationality, voxceleb_set))
    if not rows:
        raise BadArgument(path, "lists no identities")
    return rows


def read_identity_splits(path: str | Path) -> dict[str, str]:
    """Learnable PINs' identity_splits.txt as {VGGFace1 ID: fvmatch split}; BadArgument naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise BadArgument(path, "no such file (expected Nagrani et al.'s identity_splits.txt: '<VGGFace1 ID> <set>' "
                                "per line)")
    splits = {}
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise BadArgument(path, "not UTF-8 text") from None
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise BadArgument(path, f"line {number}: {len(fields)} fields, expected '<VGGFace1 ID> <set>'")
        name, label = fields
        if label == "3":
            raise BadArgument(path, f"line {number}: set 3 (seen-heard test) holds test items of training identities; "
                                    "fvmatch's splits are identity-disjoint (1 train, 2 val, 4 test)")
        if label not in PINS_SPLITS:
            raise BadArgument(path, f"line {number}: set {label!r} is not one of 1 (train), 2 (val), 4 (test)")
        splits[name] = PINS_SPLITS[label]
    if not splits:
        raise BadArgument(path, "lists no identities")
    return splits


def set_split(celebrity: Celebrity, val_fraction: float) -> str:
    """The fvmatch split of an identity from VoxCeleb1's Set: test -> test, dev -> train or (a hashed share) val."""
    if celebrity.voxceleb_set == "test":
        return "test"
    return "val" if hashed_draw(celebrity.identity) < val_fraction else "train"


def import_voxceleb1(src: str | Path, data: str | Path, faces: str | Path | None = None,
                     splits_file: str | Path | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
                     force: bool = False, progress: Callable[[int], None] | None = None,
                     total: Callable[[int], None] | None = None) -> dict:
    """Write DATA as fvmatch's corpus of the VoxCeleb1 release at SRC (links to its files); return the summary.

    An identity with no voices or no faces is skipped and listed. DATA must be absent or empty; with `force`, a
    previous import there (links, meta.csv, import.json and nothing else) is replaced. `total(n)` is called once
    with the number of identities, then `progress(1)` per identity. BadArgument for a missing or garbled meta, a
    release without wav/, faces that are neither layout, a DATA holding anything else, or nothing to import.
    """
    src, data = Path(src), Path(data)
    if not src.is_dir():
        raise BadArgument(src, "no such folder (expected the VoxCeleb1 release: vox1_meta.csv, wav/)")
    if not 0.0 <= val_fraction < 1.0:
        raise BadArgument("--val-fraction", f"{val_fraction} is not in [0, 1)")
    celebrities = read_vox1_meta(src / META_FILE)
    named_splits = read_identity_splits(splits_file) if splits_file is not None else None
    wav_roots = _wav_roots(src)
    face_root = _face_root(Path(faces) if faces is not None else src, celebrities, given=faces is not None)
    clear_destination(data, force)
    if total:
        total(len(celebrities))
    unlisted = unlisted_folders(wav_roots, {celebrity.identity for celebrity in celebrities})
    counts = {"voices": 0, "faces": 0, "links": 0, "frame_sets": 0, "photo_sets": 0}
    rows, skipped = import_each(
        celebrities, lambda celebrity: _import_one(celebrity, data, wav_roots, face_root, named_splits, val_fraction,
                                                   counts), lambda celebrity: celebrity.name, progress)
    if not rows:
        refuse_empty(skipped, src, face_root, FACE_LAYOUTS)
    split_rule = (f"{Path(splits_file).name}: 1 -> train, 2 -> val, 4 -> test" if named_splits is not None else
                  f"Set: test -> test; dev -> train, {val_fraction:.0%} of dev -> val (by a hash of the identity)")
    summary = {
        "format": FORMAT, "source": "VoxCeleb1", "src": str(src.resolve()), "data": str(data),
        "voices_read": [str(root) for root in wav_roots], "faces_read": str(face_root),
        "face_layout": _face_layout(counts), "identities": len(rows),
        "splits": {name: sum(row["split"] == name for row in rows) for name in ("train", "val", "test")},
        "split_rule": split_rule, "voices": counts["voices"], "faces": counts["faces"], "links": counts["links"],
        "age": AGE_NOTE, "skipped": skipped, "skipped_reasons": reason_counts(skipped),
        "unlisted_speakers": unlisted,
    }
    write_corpus_files(data, summary, rows, extra_columns=("voxceleb1_set",))
    return summary


def _wav_roots(src: Path) -> list[Path]:
    roots = [root for root in [src / "wav", *sorted(src.glob("*/wav"))] if root.is_dir()]
    if not roots:
        raise BadArgument(src, "no wav/ folder (VoxCeleb1's audio unzips to wav/<VoxCeleb1 ID>/<video>/<NNNNN>.wav)")
    return [root.resolve() for root in roots]


def _face_root(faces: Path, celebrities: list[Celebrity], given: bool) -> Path:
    """The folder holding one folder per celebrity (frames or photos): FACES, FACES/data or
    FACES/unzippedIntervalFaces/data, whichever holds folders named by the meta's names or IDs."""
    if not faces.is_dir():
        raise BadArgument(faces, "no such folder")
    labels = {label for celebrity in celebrities for label in (celebrity.name, celebrity.identity)}
    candidates = [faces, faces / "data", faces / "unzippedIntervalFaces" / "data", faces / "unzippedIntervalFaces"]
    for candidate in candidates:
        if candidate.is_dir() and any(entry.name in labels and entry.is_dir() for entry in os.scandir(candidate)):
            return candidate.resolve()
    where = "" if given else " (give the face frames or photos with --faces DIR)"
    raise BadArgument(faces, "holds no face folder named by a VGGFace1 ID or VoxCeleb1 ID of vox1_meta.csv, "
                             f"directly or under data/ or unzippedIntervalFaces/data/{where}")


def _import_one(celebrity: Celebrity, data: Path, wav_roots: list[Path], face_root: Path,
                named_splits: dict[str, str] | None, val_fraction: float, counts: dict) -> dict | str:
    """Link one identity's voices and faces into DATA and return its meta row, or why it was skipped."""
    if named_splits is not None:
        if celebrity.name not in named_splits:
            return "not in the identity splits file"
        split = named_splits[celebrity.name]
    else:
        split = set_split(celebrity, val_fraction)
    voice_folder = next((root / celebrity.identity for root in wav_roots if (root / celebrity.identity).is_dir()), None)
    clips = count_files(voice_folder, ("*/*",), AUDIO_SUFFIXES) if voice_folder else 0
    face_folder = next((face_root / label for label in (celebrity.name, celebrity.identity)
                        if (face_root / label).is_dir()), None)
    frames = face_folder / FRAME_FOLDER if face_folder is not None else None
    if frames is not None and frames.is_dir():
        videos = sorted(entry for entry in frames.iterdir() if entry.is_dir())
        # as released, a video's frames sit one level further down, in a folder per utterance (1/, 2/, ...)
        pictures = sum(count_files(video, ("*", "*/*"), IMAGE_SUFFIXES) for video in videos)
        links = {video.name: video for video in videos}
        kind = "frame_sets"
    elif face_folder is not None:
        pictures = count_files(face_folder, ("*",), IMAGE_SUFFIXES)
        links = {PHOTO_VIDEO: face_folder}
        kind = "photo_sets"
    else:
        pictures, links, kind = 0, {}, None
    missing = [what for what, count in (("voices", clips), ("faces", pictures)) if not count]
    if missing:
        return f"no {' and no '.join(missing)}"
    (data / "voices").mkdir(parents=True, exist_ok=True)
    os.symlink(voice_folder, data / "voices" / celebrity.identity, target_is_directory=True)
    (data / "faces" / celebrity.identity).mkdir(parents=True, exist_ok=True)
    for video, target in links.items():
        os.symlink(target, data / "faces" / celebrity.identity / video, target_is_directory=True)
    counts["voices"] += clips
    counts["faces"] += pictures
    counts["links"] += 1 + len(links)
    counts[kind] += 1
    return {"identity": celebrity.identity, "name": celebrity.name, "gender": celebrity.gender,
            "nationality": celebrity.nationality, "split": split, "voxceleb1_set": celebrity.voxceleb_set}


def _face_layout(counts: dict) -> str:
    kinds = [name for name, key in (("VoxCeleb1 face frames (<name>/1.6/<video>/[<utterance>/]<frame>)", "frame_sets"),
                                    ("VGGFace1 photos (<name>/<photo>)", "photo_sets")) if counts[key]]
    return " and ".join(kinds)
