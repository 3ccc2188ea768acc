"""A miniature VoxCeleb1 release in the exact published layout, with real media from fvmatch.synth.

    SRC/vox1_meta.csv                                   tab-separated, VGG's header and rows
    SRC/wav/<VoxCeleb1 ID>/<11-character video>/<NNNNN>.wav
    SRC/unzippedIntervalFaces/data/<VGGFace1 ID>/1.6/<video>/<NNNNNNN>.jpg
    SRC/VGG_ALL_FRONTAL/<VGGFace1 ID>/<NNNNNNN>.jpg     VGGFace1 photos (as Wen et al. keep them)
"""
from __future__ import annotations

import shutil
from pathlib import Path

from fvmatch.synth import CorpusSpec, write_corpus

# (VoxCeleb1 ID, VGGFace1 ID, Gender, Nationality, Set): real rows of vox1_meta.csv
CELEBRITIES = (
    ("id10001", "A.J._Buckley", "m", "Ireland", "dev"),
    ("id10002", "A.R._Rahman", "m", "India", "dev"),
    ("id10003", "Aamir_Khan", "m", "India", "dev"),
    ("id10270", "Eartha_Kitt", "f", "USA", "test"),
    ("id10271", "Ed_Westwick", "m", "UK", "test"),
    ("id10272", "Eddie_Griffin", "m", "USA", "test"),
    ("id10273", "Eddie_Izzard", "m", "UK", "test"),  # voices only
    ("id10274", "Eddie_Kaye_Thomas", "m", "USA", "test"),  # faces only
)
VOICES_ONLY, FACES_ONLY = "id10273", "id10274"
META_HEADER = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"


def video_id(index: int, video: int) -> str:
    """An 11-character YouTube-like video ID with '_' and '-' in it, as real ones have (gaQqIoV_aLY)."""
    return f"Yt{index:02d}vid_{video}Q-"


def frame_name(item: int) -> str:
    return f"{(item + 1) * 375:07d}.jpg"  # frame numbers of the face tracks: 0000375.jpg, 0000750.jpg


def clip_name(item: int) -> str:
    return f"{item + 1:05d}.wav"


def build_release(root: Path, faces_per_identity: int = 2, clips_per_identity: int = 2) -> Path:
    """Write the miniature release under root/release (two videos per identity) and return its path."""
    rendered = root / "rendered"
    write_corpus(rendered, CorpusSpec(identities=len(CELEBRITIES), seed=3, faces_per_identity=faces_per_identity,
                                      clips_per_identity=clips_per_identity, videos_per_identity=2, clip_seconds=2.0),
                 workers=1)
    src = root / "release"
    frames_root = src / "unzippedIntervalFaces" / "data"
    photos_root = src / "VGG_ALL_FRONTAL"
    for index, (identity, name, *_) in enumerate(CELEBRITIES):
        label = f"id{index:05d}"  # the synthetic corpus's own label
        if identity != FACES_ONLY:
            for item in range(clips_per_identity):
                target = src / "wav" / identity / video_id(index, item % 2) / clip_name(item)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(rendered / "voices" / label / f"v{item % 2}" / f"{item:05d}.wav", target)
        if identity != VOICES_ONLY:
            for item in range(faces_per_identity):
                source = rendered / "faces" / label / f"v{item % 2}" / f"{item:05d}.jpg"
                frame = frames_root / name / "1.6" / video_id(index, item % 2) / frame_name(item)
                frame.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, frame)
                photo = photos_root / name / frame_name(item)
                photo.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, photo)
    rows = ["\t".join(row) for row in CELEBRITIES]
    (src / "vox1_meta.csv").write_text("\n".join([META_HEADER, *rows]) + "\n")
    shutil.rmtree(rendered)
    return src
