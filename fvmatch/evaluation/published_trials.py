"""Published trial lists as their authors distribute them (fvmatch.evaluation.trials' module docstring lists them):
each one's reader of a line, told from the list's first line, mapping its paths onto the corpus's."""
from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.evaluation.trial import Trial

# published lists (module docstring): Learnable PINs' header and demographic criteria, the strata their file names
# carry, and VoxCeleb1's face-frame folder
PINS_HEADER = ("id", "voice-speaker-id", "face-speaker-id", "label", "voice-path", "face-path")
PINS_CRITERIA = {"random": "U", "G": "G", "N": "N", "A": "A", "GNA": "GNA"}
PINS_NAME = re.compile(r"(?:^|_)(random|G|N|A|GNA)_(seenheard|unseenunheard)(?:_|\.|$)")
MATCHING_NAME = re.compile(r"(?:^|_)(U|G|N|GN)(?:_|\.|$)")
FACE_FRAME_FOLDER = "1.6"


def published_reader(path: Path, first: str):
    """The reader of a published list's lines, told from its first line; BadArgument when it is none of them."""
    if tuple(name.strip() for name in first.split(",")) == PINS_HEADER:
        if not PINS_NAME.search(path.name):
            raise BadArgument(path, "a Learnable PINs verification list, but its name does not say the demographic "
                                    "criterion: keep the distributed name, veriflist_test_<random|G|N|A|GNA>_"
                                    "<seenheard|unseenunheard>.txt")
        return _pins_trial
    fields = first.split()
    if len(fields) == 3 and fields[0] in ("0", "1") and all(f.lower().endswith(".wav") for f in fields[1:]):
        return _voxceleb_trial
    if len(fields) >= 3 and all(_modality_of(f) for f in fields):
        return _matching_trial
    raise BadArgument(path, "line 1: not a trial list fvmatch reads (its own CSV or JSON; a Learnable PINs "
                            "veriflist; a space-separated matching list 'probe right wrong...'; a VoxCeleb1 "
                            "'label wav wav' list)")


def _modality_of(item: str) -> str | None:
    suffix = Path(item).suffix.lower()
    return "voice" if suffix == ".wav" else "face" if suffix in (".jpg", ".jpeg", ".png") else None


def _bad(path: Path, number: int, problem: str) -> BadArgument:
    return BadArgument(path, f"line {number}: {problem}")


def _voice_item(path: Path, number: int, item: str, names: Mapping[str, str]) -> str:
    """A published voice path as the corpus's: <id>/<video>/<NNNNN>.wav, or Learnable PINs' <name>/<video>_<N>.wav."""
    parts = item.strip().split("/")
    if len(parts) == 3 and parts[2].lower().endswith(".wav"):
        return f"voices/{names.get(parts[0], parts[0])}/{parts[1]}/{parts[2]}"
    if len(parts) == 2 and parts[1].lower().endswith(".wav"):
        video, _, clip = parts[1][:-4].rpartition("_")
        if video and clip.isdigit():
            return f"voices/{names.get(parts[0], parts[0])}/{video}/{int(clip):05d}.wav"
    raise _bad(path, number, f"voice {item!r} is neither <id>/<video>/<NNNNN>.wav nor <name>/<video>_<NNNNNNN>.wav")


def _face_item(path: Path, number: int, item: str, names: Mapping[str, str]) -> str:
    """A published face path as the corpus's: <name>/1.6/<video>/[<utterance>/]<frame>.jpg or
    <name>/<video>/<frame>.jpg."""
    parts = item.strip().split("/")
    if len(parts) in (4, 5) and parts[1] == FACE_FRAME_FOLDER:
        parts = [parts[0], *parts[2:]]
    if len(parts) in (3, 4) and _modality_of(parts[-1]) == "face":
        return f"faces/{names.get(parts[0], parts[0])}/{'/'.join(parts[1:])}"
    raise _bad(path, number, f"face {item!r} is neither <name>/1.6/<video>/<frame>.jpg nor <name>/<video>/<frame>.jpg")


def _label(path: Path, number: int, value: str) -> int:
    if value.strip() not in ("0", "1"):
        raise _bad(path, number, f"label {value.strip()!r} is neither 0 nor 1")
    return int(value)


def _pins_trial(path: Path, number: int, line: str, names: Mapping[str, str]) -> Trial | None:
    fields = [field.strip() for field in line.split(",")]
    if tuple(fields) == PINS_HEADER:
        return None
    if len(fields) != len(PINS_HEADER):
        raise _bad(path, number, f"{len(fields)} fields, expected {len(PINS_HEADER)} ({','.join(PINS_HEADER)})")
    if not all(field.isdigit() for field in fields[:3]):
        raise _bad(path, number, "id, voice-speaker-id and face-speaker-id must be whole numbers")
    label = _label(path, number, fields[3])
    stratum = PINS_CRITERIA[PINS_NAME.search(path.name).group(1)]
    return Trial("verification", "F-V", stratum, _face_item(path, number, fields[5], names),
                 (_voice_item(path, number, fields[4], names),), label)


def _voxceleb_trial(path: Path, number: int, line: str, names: Mapping[str, str]) -> Trial:
    fields = line.split()
    if len(fields) != 3:
        raise _bad(path, number, f"{len(fields)} fields, expected 3 (label wav wav)")
    label = _label(path, number, fields[0])
    return Trial("verification", "V-V", "U", _voice_item(path, number, fields[1], names),
                 (_voice_item(path, number, fields[2], names),), label)


def _matching_trial(path: Path, number: int, line: str, names: Mapping[str, str]) -> Trial:
    fields = line.split()
    if len(fields) < 3:
        raise _bad(path, number, f"{len(fields)} fields, expected a probe and at least 2 candidates")
    modalities = [_modality_of(field) for field in fields]
    probe, other = modalities[0], {"voice": "face", "face": "voice"}.get(modalities[0])
    if probe is None or any(modality != other for modality in modalities[1:]):
        raise _bad(path, number, "expected a probe (.wav or .jpg) and candidates of the other modality")
    item = {"voice": _voice_item, "face": _face_item}
    size = len(fields) - 1
    named = MATCHING_NAME.search(path.stem)
    stratum = named.group(1) if named else "U"
    if size > 2 and stratum != "U":
        raise _bad(path, number, f"1:N trials are unconstrained (U), but the file name says {stratum}")
    return Trial("1:2" if size == 2 else "1:N", "V-F" if probe == "voice" else "F-V", stratum,
                 item[probe](path, number, fields[0], names),
                 tuple(item[other](path, number, field, names) for field in fields[1:]), 0)


PUBLISHED_FORMATS = {
    _pins_trial: "Nagrani et al. 2018 (Learnable PINs) verification list",
    _matching_trial: "matching list (probe, right candidate, wrong candidates)",
    _voxceleb_trial: "VoxCeleb1 speaker-verification list",
}
