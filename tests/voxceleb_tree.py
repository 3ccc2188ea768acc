"""Miniature VoxCeleb1 and VoxCeleb2 releases in the exact published layouts, and a laboratory's paired folders,
with real media from fvmatch.synth.

    SRC/vox1_meta.csv                                   tab-separated, VGG's header and rows
    SRC/wav/<VoxCeleb1 ID>/<11-character video>/<NNNNN>.wav
    SRC/unzippedIntervalFaces/data/<VGGFace1 ID>/1.6/<video>/<utterance>/<NNNNNNN>.jpg   (flat: no <utterance>/)
    SRC/VGG_ALL_FRONTAL/<VGGFace1 ID>/<NNNNNNN>.jpg     VGGFace1 photos (as Wen et al. keep them)
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

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
UNLISTED = "id10999"  # a speaker folder under wav/ that vox1_meta.csv does not list
META_HEADER = "VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet"


def video_id(index: int, video: int) -> str:
    """An 11-character YouTube-like video ID with '_' and '-' in it, as real ones have (gaQqIoV_aLY)."""
    return f"Yt{index:02d}vid_{video}Q-"


def frame_name(item: int) -> str:
    return f"{(item + 1) * 375:07d}.jpg"  # frame numbers of the face tracks: 0000375.jpg, 0000750.jpg


def clip_name(item: int) -> str:
    return f"{item + 1:05d}.wav"


def utterance_folder(item: int) -> str:
    return str(item + 1)  # the face tracks of a video's utterances: 1/, 2/, ...


def build_release(root: Path, faces_per_identity: int = 2, clips_per_identity: int = 2, nested: bool = True) -> Path:
    """Write the miniature release under root/release (two videos per identity) and return its path.

    `nested`: face frames in a folder per utterance, as released; else directly in the video's folder."""
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
                video = frames_root / name / "1.6" / video_id(index, item % 2)
                frame = (video / utterance_folder(item) if nested else video) / frame_name(item)
                frame.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, frame)
                photo = photos_root / name / frame_name(item)
                photo.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, photo)
    unlisted = src / "wav" / UNLISTED / video_id(99, 0) / clip_name(0)
    unlisted.parent.mkdir(parents=True)
    shutil.copy(rendered / "voices" / "id00000" / "v0" / "00000.wav", unlisted)
    rows = ["\t".join(row) for row in CELEBRITIES]
    (src / "vox1_meta.csv").write_text("\n".join([META_HEADER, *rows]) + "\n")
    shutil.rmtree(rendered)
    return src


# (VoxCeleb2 ID, VGGFace2 ID, Gender, Set), padded as vox2_meta.csv pads them ("id00012 ,n000012 ,m ,dev ")
SPEAKERS2 = (
    ("id00012", "n000012", "m", "dev"),
    ("id00015", "n000015", "m", "dev"),
    ("id00016", "n000016", "f", "dev"),
    ("id00017", "n000017", "m", "test"),
    ("id00061", "n000061", "f", "test"),
    ("id00081", "n000081", "m", "test"),  # voices only
    ("id00154", "n000154", "f", "dev"),  # faces only
)
VOICES_ONLY2, FACES_ONLY2 = "id00081", "id00154"
PHOTOS2 = ("id00015", "id00061")  # faces as VGGFace2 photos (<VGGFace2 ID>/<photo>.jpg); the others as frames
META2_HEADER = "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set "


def write_m4a(wav: Path, target: Path) -> None:
    """The clip as AAC in MP4 (.m4a), as VoxCeleb2 ships its audio."""
    import av
    import soundfile

    samples, rate = soundfile.read(wav, dtype="float32")
    target.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(target), "w", format="mp4") as container:
        stream = container.add_stream("aac", rate=rate, layout="mono")
        for start in range(0, len(samples), 1024):
            frame = av.AudioFrame.from_ndarray(samples[None, start : start + 1024], format="fltp", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def build_voxceleb2_release(root: Path, faces_per_identity: int = 2, clips_per_identity: int = 2) -> tuple[Path, Path]:
    """Write a miniature VoxCeleb2 release under root/release2 (dev/aac/, test/aac/, vox2_meta.csv) and its faces
    under root/faces2 (frames per video and utterance, or VGGFace2 photos); return (release, faces)."""
    rendered = root / "rendered2"
    write_corpus(rendered, CorpusSpec(identities=len(SPEAKERS2), seed=5, faces_per_identity=faces_per_identity,
                                      clips_per_identity=clips_per_identity, videos_per_identity=2, clip_seconds=2.0),
                 workers=1)
    src, faces = root / "release2", root / "faces2"
    for index, (identity, vggface2, _, voxceleb_set) in enumerate(SPEAKERS2):
        label = f"id{index:05d}"
        if identity != FACES_ONLY2:
            for item in range(clips_per_identity):
                write_m4a(rendered / "voices" / label / f"v{item % 2}" / f"{item:05d}.wav",
                          src / voxceleb_set / "aac" / identity / video_id(index, item % 2) / f"{item + 1:05d}.m4a")
        if identity != VOICES_ONLY2:
            for item in range(faces_per_identity):
                source = rendered / "faces" / label / f"v{item % 2}" / f"{item:05d}.jpg"
                if identity in PHOTOS2:
                    target = faces / vggface2 / f"{item + 1:04d}_01.jpg"
                else:
                    target = faces / identity / video_id(index, item % 2) / utterance_folder(item) / frame_name(item)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(source, target)
    write_m4a(rendered / "voices" / "id00000" / "v0" / "00000.wav",
              src / "dev" / "aac" / "id09999" / video_id(99, 0) / "00001.m4a")  # a speaker the meta does not list
    rows = [" ,".join(row) + " " for row in SPEAKERS2]
    (src / "vox2_meta.csv").write_text("\n".join([META2_HEADER, *rows]) + "\n")
    shutil.rmtree(rendered)
    return src, faces


PEOPLE = ("alice", "bob", "carol", "dave")  # dave: photos only


def build_pairs(root: Path) -> Path:
    """A laboratory's paired data under root/pairs: <person>/<session>/ with photos and WAV recordings, loose files
    in a person's folder, one session holding a talking-head video (MP4, face and voice), and a meta.csv giving
    two people's gender and split."""
    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.video import OnScreen, write_talking_head

    rendered = root / "rendered-pairs"
    write_corpus(rendered, CorpusSpec(identities=len(PEOPLE), seed=6, faces_per_identity=2, clips_per_identity=2,
                                      videos_per_identity=2, clip_seconds=2.0), workers=1)
    src = root / "pairs"
    for index, person in enumerate(PEOPLE):
        label = f"id{index:05d}"
        for item in range(2):
            session = src / person / f"2026-0{item + 1}-1{index}"
            session.mkdir(parents=True)
            shutil.copy(rendered / "faces" / label / f"v{item}" / f"{item:05d}.jpg", session / f"photo{item}.jpg")
            if person != "dave":
                shutil.copy(rendered / "voices" / label / f"v{item}" / f"{item:05d}.wav", session / f"call{item}.wav")
    shutil.copy(rendered / "faces" / "id00001" / "v0" / "00000.jpg", src / "bob" / "loose.jpg")
    interview = src / "carol" / "interview"
    interview.mkdir()
    write_talking_head(interview / "clip.mp4", [OnScreen(draw_identity("carol", np.random.default_rng(2)))],
                       seconds=3.0, seed=1)
    (src / "meta.csv").write_text("identity,gender,split\nalice,f,test\nbob,m,train\n")
    shutil.rmtree(rendered)
    return src
