"""Miniature VoxCeleb1 and VoxCeleb2 releases in the exact published layouts, and a laboratory's paired folders,
with real media from fvmatch.synth.

    SRC/vox1_meta.csv                                   tab-separated, VGG's header and rows
    SRC/wav/<VoxCeleb1 ID>/<11-character video>/<NNNNN>.wav
    SRC/unzippedIntervalFaces/data/<VGGFace1 ID>/1.6/<video>/<utterance>/<NNNNNNN>.jpg   (flat: no <utterance>/)
    SRC/VGG_ALL_FRONTAL/<VGGFace1 ID>/<NNNNNNN>.jpg     VGGFace1 photos (as Wen et al. keep them)

`build_generated_release` lays a rendered synthetic corpus of any size out as the VoxCeleb1 release (flat
unzippedFaces/ frames, identity_splits.txt, the published trial lists), the VoxCeleb2 release or a laboratory's
pairs, with the splits chosen exactly (tests/test_lab_path.py; benchmarks/voxceleb_path.py --identities).
"""
from __future__ import annotations

import os
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


# Generated releases of any size, for the whole laboratory path (tests/test_lab_path.py, benchmarks/voxceleb_path.py):
# the synthetic corpus rendered once, then laid out as each release lays itself out, with the splits chosen exactly.
LAYOUTS = ("voxceleb1", "voxceleb2", "pairs")
VOX2_VAL_FRACTION = 0.5  # `import voxceleb2 --val-fraction` the generated VoxCeleb2 tree is made for


def render_corpus(out: Path, identities: int, faces_per_identity: int, clips_per_identity: int, seed: int = 11,
                  clip_seconds: float = 2.0, workers: int = 1) -> Path:
    """The synthetic corpus (fvmatch.synth) the generated releases are laid out from: faces/<label>/v<k>/, voices/."""
    write_corpus(out, CorpusSpec(identities=identities, seed=seed, faces_per_identity=faces_per_identity,
                                 clips_per_identity=clips_per_identity, videos_per_identity=2,
                                 clip_seconds=clip_seconds), workers=workers)
    return out


def rendered_people(rendered: Path) -> list[dict]:
    """The rendered corpus's people: label, gender, nationality and its media (sorted paths)."""
    import csv

    with open(rendered / "meta.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{"label": row["identity"], "gender": row["gender"], "nationality": row["nationality"],
             "faces": sorted((rendered / "faces" / row["identity"]).glob("*/*.jpg")),
             "voices": sorted((rendered / "voices" / row["identity"]).glob("*/*.wav"))} for row in rows]


def _place(source: Path, target: Path) -> None:
    """A release file: a hard link to the rendered file where the filesystem allows (fast at 1,000 identities)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy(source, target)


def _vox2_identities(splits: list[str]) -> list[str]:
    """VoxCeleb2 IDs whose hash puts each dev identity in the split asked for under VOX2_VAL_FRACTION."""
    from fvmatch.importers.corpus_writer import hashed_draw

    free = (f"id{n:05d}" for n in range(10, 100_000))
    chosen = []
    for split in splits:
        identity = next(free)
        if split != "test":
            while (hashed_draw(identity) < VOX2_VAL_FRACTION) != (split == "val"):
                identity = next(free)
        chosen.append(identity)
    return chosen


def build_generated_release(root: Path, layout: str, rendered: Path, splits: dict[str, int]) -> dict:
    """Lay the rendered corpus out under root as the `layout` release (voxceleb1, voxceleb2, pairs), its people in
    the splits asked for ({"train": 2, "val": 10, "test": 2}: the first rendered people train, then val, then test).

    Returns {"src", "import_args" (what follows `fvmatch import LAYOUT SRC DATA`), "people" (corpus identity ->
    split), "published" (trial lists over the test split in the release's published formats: VoxCeleb1's three;
    none for the others), "face", "voice" (one test-split file of each, for verify)}."""
    people = rendered_people(rendered)
    wanted = [split for split, count in splits.items() for _ in range(count)]
    if len(wanted) > len(people):
        raise ValueError(f"{len(wanted)} people asked for, {len(people)} rendered")
    people, src = people[: len(wanted)], root / layout
    if layout == "voxceleb1":
        identities = [f"id1{n + 1:04d}" for n in range(len(people))]
        names = [f"Generated_Person_{n + 1:04d}" for n in range(len(people))]
    elif layout == "voxceleb2":
        identities = _vox2_identities(wanted)
        names = [f"n0{identity[2:]}" for identity in identities]  # VGGFace2 ID: id00012 -> n000012
    elif layout == "pairs":
        identities = names = [f"person{n + 1:04d}" for n in range(len(people))]
    else:
        raise ValueError(f"{layout}: not one of {', '.join(LAYOUTS)}")
    voices, faces = {}, {}  # corpus identity -> release paths, in order
    for index, (person, identity, name) in enumerate(zip(people, identities, names)):
        voices[identity], faces[identity] = [], []
        for item, clip in enumerate(person["voices"]):
            video = video_id(index % 100, item % 2)
            if layout == "voxceleb1":
                target = src / "wav" / identity / video / clip_name(item)
                _place(clip, target)
            elif layout == "voxceleb2":
                aac_set = "test" if wanted[index] == "test" else "dev"
                target = src / aac_set / "aac" / identity / video / f"{item + 1:05d}.m4a"
                write_m4a(clip, target)
            else:
                target = src / identity / f"2026-0{item % 2 + 1}-1{index % 10}" / f"call{item}.wav"
                _place(clip, target)
            voices[identity].append(target)
        for item, photo in enumerate(person["faces"]):
            video = video_id(index % 100, item % 2)
            if layout == "voxceleb1":  # flat frames (unzippedFaces): the layout the published face-voice lists name
                target = src / "unzippedFaces" / name / "1.6" / video / frame_name(item)
            elif layout == "voxceleb2":
                target = root / "voxceleb2-faces" / identity / video / utterance_folder(item) / frame_name(item)
            else:
                target = src / identity / f"2026-0{item % 2 + 1}-1{index % 10}" / f"photo{item}.jpg"
            _place(photo, target)
            faces[identity].append(target)
    rows = list(zip(identities, names, people, wanted))
    published = []
    if layout == "voxceleb1":
        (src / "vox1_meta.csv").write_text("\n".join(
            [META_HEADER, *(f"{i}\t{n}\t{p['gender']}\t{p['nationality']}\t{'test' if s == 'test' else 'dev'}"
                            for i, n, p, s in rows)]) + "\n")
        (src / "identity_splits.txt").write_text(
            "".join(f"{n} {({'train': 1, 'val': 2, 'test': 4})[s]}\n" for _, n, _, s in rows))
        import_args = ["--faces", src / "unzippedFaces", "--splits", src / "identity_splits.txt"]
        published = _voxceleb1_lists(src, [(i, n) for i, n, _, s in rows if s == "test"], voices, faces)
    elif layout == "voxceleb2":
        (src / "vox2_meta.csv").write_text("\n".join(
            [META2_HEADER, *(f"{i} ,{n} ,{p['gender']} ,{'test' if s == 'test' else 'dev'} " for i, n, p, s in rows)])
            + "\n")
        import_args = ["--faces", root / "voxceleb2-faces", "--val-fraction", str(VOX2_VAL_FRACTION)]
    else:
        (src / "meta.csv").write_text("identity,gender,split\n" + "".join(
            f"{i},{p['gender']},{s}\n" for i, _, p, s in rows))
        import_args = []
    tested = next(i for i, _, _, s in rows if s == "test")
    return {"src": src, "import_args": import_args, "people": {i: s for i, _, _, s in rows}, "published": published,
            "face": faces[tested][0], "voice": voices[tested][0]}


def _relative(path: Path, parts: int) -> str:
    return "/".join(path.parts[-parts:])


def _voxceleb1_lists(src: Path, tested: list[tuple[str, str]], voices: dict, faces: dict) -> list[Path]:
    """The test split's trials as VoxCeleb1's speaker-verification list (veri_test2.txt: V-V), a Learnable PINs
    veriflist (F-V verification, <name>/<video>_<NNNNNNN>.wav voices) and a matching list (V-F 1:2): each person
    against the next, one same-person and one different-person trial each."""
    veri, pins, matching = [], ["id,voice-speaker-id,face-speaker-id,label,voice-path,face-path"], []
    for number, ((identity, name), (other, other_name)) in enumerate(zip(tested, tested[1:] + tested[:1])):
        clip, same_clip, other_clip = voices[identity][0], voices[identity][1], voices[other][1]
        veri += [f"1 {_relative(clip, 3)} {_relative(same_clip, 3)}",
                 f"0 {_relative(clip, 3)} {_relative(other_clip, 3)}"]
        pins_voice = f"{name}/{clip.parent.name}_{int(clip.stem):07d}.wav"
        face, other_face = faces[identity][1], faces[other][0]
        pins += [f"{2 * number + 1},{number},{number},1,{pins_voice},{name}/{_relative(face, 2)}",
                 f"{2 * number + 2},{number},{number + 1},0,{pins_voice},{other_name}/{_relative(other_face, 2)}"]
        matching.append(f"{_relative(clip, 3)} {name}/1.6/{_relative(face, 2)} "
                        f"{other_name}/1.6/{_relative(other_face, 2)}")
    lists = []
    for file_name, lines in (("veri_test2.txt", veri), ("veriflist_test_random_unseenunheard.txt", pins),
                             ("matching_v2f_U.csv", matching)):
        lists.append(src / file_name)
        lists[-1].write_text("\n".join(lines) + "\n")
    return lists
