"""A laboratory's own paired recordings laid out as fvmatch's corpus, for prepare, train, evaluate and calibrate.

Read:

    DIR/<person>/<session>/<file>   photos (fvmatch.media.image.IMAGE_SUFFIXES), recordings (AUDIO_SUFFIXES) and
                                    videos (fvmatch.media.video.VIDEO_SUFFIXES), in any mix
    DIR/<person>/<file>             files directly in a person's folder: one session named "main"
    DIR/meta.csv (optional)         column `identity` (the person's folder name) and any of gender, nationality, age,
                                    split (train | val | test); what it does not give is left empty or drawn

Written (fvmatch.corpus's layout; a session is one "video" of the corpus, so the fuse-after-align recipe pairs a
session's faces with its own voices):

    DATA/faces/<person>/<session>            -> DIR/<person>/<session>   (a session with photos: a link; the
    DATA/voices/<person>/<session>           -> DIR/<person>/<session>    corpus reader takes only its own suffixes)
    DATA/faces/<person>/<session>~<video>/<video>-<NNN>.jpg   frames of a video, FRAMES_PER_SECOND, at most
                                                               `video_frames` (files written here, not links)
    DATA/voices/<person>/<session>~<video>/<video>.wav         its soundtrack, 16 kHz mono 16-bit
    DATA/meta.csv, DATA/import.json          as the other importers; import.json lists the files written, so that
                                             --force may replace them

Splits (identity-disjoint): meta.csv's split where it gives one, else drawn by a hash of the person's folder name:
`test_fraction` of people -> test, `val_fraction` -> val, the rest train.
"""
from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fvmatch.corpus import SPLITS
from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.importers.corpus_writer import (FORMAT, clear_destination, count_files, hashed_draw, link,
                                             previous_written_files, reason_counts, write_corpus_files)
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES

LOOSE_SESSION = "main"  # the session of files directly in a person's folder
VIDEO_MARK = "~"  # <session>~<video>: the corpus video of one video file's frames and soundtrack
FRAMES_PER_SECOND = 1.0
DEFAULT_VIDEO_FRAMES = 10
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_TEST_FRACTION = 0.2
META_COLUMNS = ("gender", "nationality", "age", "split")


def import_pairs(src: str | Path, data: str | Path, val_fraction: float = DEFAULT_VAL_FRACTION,
                 test_fraction: float = DEFAULT_TEST_FRACTION, video_frames: int = DEFAULT_VIDEO_FRAMES,
                 force: bool = False, progress: Callable[[int], None] | None = None,
                 total: Callable[[int], None] | None = None) -> dict:
    """Write DATA as fvmatch's corpus of the person folders at SRC; return the summary (as import.json).

    A person left without a face or a voice is skipped and listed; a video that cannot be read is listed under
    "failed" and the rest imported. BadArgument for a SRC without person folders, a bad meta.csv, fractions out of
    range, a DATA holding anything else, or nothing to import.
    """
    from fvmatch.media.video import VIDEO_SUFFIXES

    src, data = Path(src), Path(data)
    if not src.is_dir():
        raise BadArgument(src, "no such folder (expected <person>/<session>/ folders of photos, recordings, videos)")
    if not (0.0 <= val_fraction < 1.0 and 0.0 <= test_fraction < 1.0 and val_fraction + test_fraction < 1.0):
        raise BadArgument("--val-fraction", f"{val_fraction} and --test-fraction {test_fraction} must each be in "
                                            "[0, 1) and leave some people for training")
    if video_frames < 1:
        raise BadArgument("--video-frames", f"{video_frames} is not a positive number of frames")
    people = sorted(entry for entry in src.iterdir() if entry.is_dir() and not entry.name.startswith("."))
    if not people:
        raise BadArgument(src, "holds no person folder (expected <person>/<session>/<file>)")
    given = _read_meta(src / "meta.csv", {person.name for person in people})
    clear_destination(data, force, previous_written_files(data) if force else ())
    if total:
        total(len(people))
    rows, skipped, failed, written = [], [], [], []
    counts = {"faces": 0, "voices": 0, "videos": 0, "links": 0}
    for person in people:
        faces = voices = 0
        for session, folder in _sessions(person):
            photos = count_files(folder, ("*",), IMAGE_SUFFIXES)
            recordings = count_files(folder, ("*",), AUDIO_SUFFIXES)
            for modality, found, suffixes in (("faces", photos, IMAGE_SUFFIXES), ("voices", recordings, AUDIO_SUFFIXES)):
                if not found:
                    continue
                if folder == person:  # loose files: linked one by one (a folder link would reach the sessions too)
                    for path in sorted(folder.iterdir()):
                        if path.is_file() and path.suffix.lower() in suffixes:
                            link(path, data / modality / person.name / session / path.name)
                            counts["links"] += 1
                else:
                    link(folder, data / modality / person.name / session)
                    counts["links"] += 1
            faces, voices = faces + photos, voices + recordings
            for video in sorted(path for path in folder.iterdir()
                                if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES):
                try:
                    frames, soundtrack = _extract(video, data, person.name, f"{session}{VIDEO_MARK}{video.stem}",
                                                  video_frames)
                except FvmatchError as error:
                    failed.append({"item": video.relative_to(src).as_posix(), "error": error.problem})
                    continue
                written += [path.relative_to(data).as_posix() for path in frames + soundtrack]
                faces, voices = faces + len(frames), voices + len(soundtrack)
                counts["videos"] += 1
        missing = [what for what, count in (("voices", voices), ("faces", faces)) if not count]
        if missing:
            skipped.append({"identity": person.name, "name": person.name, "reason": f"no {' and no '.join(missing)}"})
            _unlink_person(data, person.name)
        else:
            counts["faces"] += faces
            counts["voices"] += voices
            rows.append(_row(person.name, given.get(person.name, {}), val_fraction, test_fraction))
        if progress:
            progress(1)
    if not rows:
        reasons = "; ".join(f"{count:,} {reason}" for reason, count in reason_counts(skipped).items())
        raise BadArgument(src, f"no person has both a face and a voice ({len(skipped):,} skipped: {reasons})")
    summary = {
        "format": FORMAT, "source": "pairs", "src": str(src.resolve()), "data": str(data),
        "identities": len(rows),
        "splits": {name: sum(row["split"] == name for row in rows) for name in SPLITS},
        "split_rule": (f"meta.csv's split where given; else by a hash of the person: {test_fraction:.0%} test, "
                       f"{val_fraction:.0%} val, the rest train"),
        "voices": counts["voices"], "faces": counts["faces"], "links": counts["links"], "videos": counts["videos"],
        "age": "from meta.csv" if any(row.get("age") for row in rows) else "no ages given: the A and GNA strata "
                                                                              "have no trials",
        "skipped": skipped, "skipped_reasons": reason_counts(skipped), "failed": failed, "written_files": written,
        "unlisted_speakers": [],
    }
    write_corpus_files(data, summary, rows)
    return summary


def _sessions(person: Path) -> list[tuple[str, Path]]:
    """(session name, folder) of a person: each subfolder, and the person's own folder when it holds files."""
    sessions = [(entry.name, entry) for entry in sorted(person.iterdir())
                if entry.is_dir() and not entry.name.startswith(".") and VIDEO_MARK not in entry.name]
    if any(entry.is_file() and not entry.name.startswith(".") for entry in person.iterdir()):
        sessions.insert(0, (LOOSE_SESSION, person))
    return sessions


def _extract(video: Path, data: Path, person: str, name: str, max_frames: int) -> tuple[list[Path], list[Path]]:
    """Write up to `max_frames` frames (FRAMES_PER_SECOND) and the soundtrack of a video; return the files."""
    import soundfile
    from PIL import Image

    from fvmatch.media.video import probe_video, sampled_frames, soundtrack_blocks

    info = probe_video(video)
    frames = []
    folder = data / "faces" / person / name
    for frame in sampled_frames(video, FRAMES_PER_SECOND, info=info):
        if len(frames) == max_frames:
            break
        folder.mkdir(parents=True, exist_ok=True)
        frames.append(folder / f"{video.stem}-{frame.number:03d}.jpg")
        Image.fromarray(frame.image).save(frames[-1], quality=95)
    blocks = list(soundtrack_blocks(video, info))
    soundtrack = []
    if blocks and sum(len(block) for block in blocks):
        path = data / "voices" / person / name / f"{video.stem}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.concatenate(blocks), 16000, subtype="PCM_16")
        soundtrack.append(path)
    return frames, soundtrack


def _unlink_person(data: Path, person: str) -> None:
    """Take back what was written for a person who is skipped (links unlinked, extracted files removed)."""
    import shutil

    for modality in ("faces", "voices"):
        folder = data / modality / person
        if folder.is_dir():
            shutil.rmtree(folder)


def _read_meta(path: Path, people: set[str]) -> dict[str, dict]:
    """{person: {column: value}} of DIR/meta.csv (absent: empty); BadArgument naming the file and line."""
    if not path.is_file():
        return {}
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if "identity" not in (reader.fieldnames or []):
                raise BadArgument(path, "line 1: no identity column (the person's folder name)")
            found = {}
            for fields in reader:
                line = reader.line_num
                person = (fields.get("identity") or "").strip()
                if person not in people:
                    raise BadArgument(path, f"line {line}: {person!r} is not a person folder of {path.parent}")
                values = {column: (fields.get(column) or "").strip() or None for column in META_COLUMNS}
                if values["split"] is not None and values["split"] not in SPLITS:
                    raise BadArgument(path, f"line {line}: split {values['split']!r} is not one of {', '.join(SPLITS)}")
                if values["age"] is not None and not values["age"].isdigit():
                    raise BadArgument(path, f"line {line}: age {values['age']!r} is not a whole number")
                found[person] = values
    except UnicodeDecodeError:
        raise BadArgument(path, "not UTF-8 text") from None
    return found


def _row(person: str, given: dict, val_fraction: float, test_fraction: float) -> dict:
    split = given.get("split")
    if split is None:
        draw = hashed_draw(person)
        split = "test" if draw < test_fraction else "val" if draw < test_fraction + val_fraction else "train"
    return {"identity": person, "name": person, "gender": given.get("gender"),
            "nationality": given.get("nationality"), "age": given.get("age"), "split": split}
