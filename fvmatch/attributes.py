"""Sex read from a face and from a voice, and the face-voice evidence it gives (ARCHITECTURE.md section 6).

Each reading is a logistic head on a pretrained space's vector (`dlib-face` for faces, `ge2e-voice` for voices),
trained on labelled real people and shipped in `reference/attributes.json` with the data it was trained on and its
confusion measured on people it never saw (`benchmarks/attributes.py` builds it). No second detector and no
second encoder: a reading costs one dot product on a vector the query has anyway.

The evidence of a face-voice pair is a likelihood ratio of the two readings (the sexes each side is read as):

    LR = P(face read r_f, voice read r_v | same person) / P(face read r_f, voice read r_v | different people)
       = sum_s pi(s) P(r_f | s) P(r_v | s) / ([sum_s pi(s) P(r_f | s)] [sum_s pi(s) P(r_v | s)])

with P(r | s) each head's measured confusion and pi the population's make-up (equal sexes unless the case says
otherwise), bounded by the ELUB bounds the heads' validation supports. It separates people read as of different
sex; it cannot separate people of one sex (an LR near 2 at most for a same-sex pair): every result says so.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np

ATTRIBUTES = Path(__file__).parent / "reference" / "attributes.json"
SEXES = ("female", "male")
DEFAULT_POPULATION = {"female": 0.5, "male": 0.5}
ATTRIBUTE_SPACE = "sex"  # the name face-voice trials scored by the sex readings go by, beside the embedding spaces
HEAD_OF = {"face": "face-sex", "voice": "voice-sex"}
LIMITS = ("it separates people read as of different sex, not people of one sex: a same-sex pair is weak evidence "
          "either way")


@lru_cache(maxsize=1)
def sex_heads() -> dict:
    """The shipped heads ({} where the package holds none): {"face-sex": head, "voice-sex": head}."""
    if not ATTRIBUTES.is_file():
        return {}
    return json.loads(ATTRIBUTES.read_text(encoding="utf-8"))


@dataclass(frozen=True)
class SexReading:
    """What one item's sex reads as: the sex, P(female), and the head (its space and model id) that read it."""

    modality: str
    sex: str
    p_female: float
    space: str
    space_model_id: str
    f0_hz: float | None = None  # a voice's median F0 (fvmatch.quality.pitch): the label-free cue shown beside it

    @property
    def probability(self) -> float:
        """The probability of the sex read."""
        return self.p_female if self.sex == "female" else 1.0 - self.p_female

    def describe(self) -> str:
        return reading_words(self.to_dict())

    def to_dict(self) -> dict:
        found = {"sex": self.sex, "probability": round(self.probability, 4), "p_female": round(self.p_female, 4),
                 "estimator": f"{self.space} sex head", "space_model_id": self.space_model_id}
        if self.modality == "voice":
            found["f0_hz"] = None if self.f0_hz is None else round(self.f0_hz, 1)
        return found


def reading_words(reading: dict) -> str:
    """A reading (SexReading.to_dict) in words: 'male 0.99', a voice's with its F0: 'male 0.99 (F0 112 Hz)'."""
    pitch = "" if reading.get("f0_hz") is None else f" (F0 {reading['f0_hz']:.0f} Hz)"
    return f"{reading['sex']} {reading['probability']:.2f}{pitch}"


def read_sex(modality: str, vectors: dict[str, np.ndarray], model_ids: dict[str, str] | None = None,
             quality: dict | None = None) -> SexReading | None:
    """The sex an item's vectors read as (None: no head for its modality, or the item lacks the head's space, or
    its vector is of another model of the space than the head was trained on); a voice's F0 from its `quality`."""
    head = sex_heads().get(HEAD_OF[modality])
    if head is None or head["space"] not in vectors:
        return None
    if model_ids and model_ids.get(head["space"], head["space_model_id"]) != head["space_model_id"]:
        return None
    reading = _reading(modality, head, p_female(head, vectors[head["space"]])[()])
    f0_hz = (quality or {}).get("f0_hz")
    return reading if f0_hz is None else replace(reading, f0_hz=float(f0_hz))


def p_female(head: dict, vectors: np.ndarray) -> np.ndarray:
    """P(female) of one vector or of each row of a (N, D) array."""
    logits = np.asarray(vectors, np.float64) @ np.asarray(head["weights"], np.float64) + head["bias"]
    return 1.0 / (1.0 + np.exp(-logits))


def _reading(modality: str, head: dict, probability: float) -> SexReading:
    return SexReading(modality, "female" if probability >= 0.5 else "male", float(probability), head["space"],
                      head["space_model_id"])


def readings_of(modality: str, vectors: np.ndarray) -> list[SexReading]:
    """The readings of stored vectors of the head's space (a gallery's faces or voices)."""
    head = sex_heads()[HEAD_OF[modality]]
    return [_reading(modality, head, value) for value in np.atleast_1d(p_female(head, vectors))]


@lru_cache(maxsize=1)
def attributes_model_id() -> str:
    """The sha256 of the shipped heads' file: the model id of the sex evidence."""
    import hashlib

    return hashlib.sha256(ATTRIBUTES.read_bytes()).hexdigest()


def judgement(face: SexReading, voice: SexReading, population: dict[str, float] = DEFAULT_POPULATION):
    """A face-voice pair's sex evidence as a fvmatch.scoring.Judgement: its LR, no decision (sex alone cannot say
    "same person"), each side's reading."""
    from fvmatch.scoring import Judgement

    found = evidence(face, voice, population)
    note = (f"sex evidence (face-voice): {found['rests_on']}; {LIMITS}; no decision: sex alone never says "
            "\"same person\"")
    return Judgement(found["log10_lr"], "face-voice", found["log10_lr"], None, note, found["verbal"], ATTRIBUTE_SPACE,
                     attributes_model_id(), f"sex heads: {found['rests_on'].split('; population')[0]}",
                     {"face": found["face"], "voice": found["voice"], "population": found["population"]})


def population_of(text: str | None) -> dict[str, float]:
    """A population's make-up from 'female=0.3' (the rest male); equal sexes for None. ValueError when malformed."""
    if text is None:
        return dict(DEFAULT_POPULATION)
    name, _, value = text.partition("=")
    share = float(value)
    if name.strip() not in SEXES or not 0.0 < share < 1.0:
        raise ValueError("give female=SHARE or male=SHARE, a share strictly between 0 and 1")
    other = SEXES[1 - SEXES.index(name.strip())]
    return {name.strip(): share, other: 1.0 - share}


def log10_lr(face: SexReading, voice: SexReading, population: dict[str, float] = DEFAULT_POPULATION) -> float:
    """The log10 LR of a face read as `face.sex` and a voice read as `voice.sex` belonging to one person, from the
    heads' confusion (P(read | true sex)) and the population, within the heads' ELUB bounds."""
    return log10_lr_of(face.sex, voice.sex, population)


def log10_lr_of(face_read: str, voice_read: str, population: dict[str, float] = DEFAULT_POPULATION) -> float:
    """`log10_lr` of the sexes a face and a voice are read as."""
    heads = sex_heads()
    read_face, read_voice = heads["face-sex"]["confusion"], heads["voice-sex"]["confusion"]
    same = sum(population[s] * read_face[s][face_read] * read_voice[s][voice_read] for s in SEXES)
    different = (sum(population[s] * read_face[s][face_read] for s in SEXES)
                 * sum(population[s] * read_voice[s][voice_read] for s in SEXES))
    low, high = heads["bounds"]
    return float(np.clip(math.log10(same / different), low, high))


def evidence(face: SexReading, voice: SexReading, population: dict[str, float] = DEFAULT_POPULATION) -> dict:
    """A face-voice pair's sex evidence: each reading, the log10 LR with its verbal equivalent, what it rests on."""
    from fvmatch.calibration import verbal_equivalent

    value = round(log10_lr(face, voice, population), 4)
    heads = sex_heads()
    return {"face": face.to_dict(), "voice": voice.to_dict(), "log10_lr": value, "verbal": verbal_equivalent(value),
            "population": {s: round(population[s], 4) for s in SEXES},
            "rests_on": (f"sex read from the face ({heads['face-sex']['trained_on']}) and from the voice "
                         f"({heads['voice-sex']['trained_on']}); P(read | true sex) measured on "
                         f"{heads['face-sex']['measured_on']} and {heads['voice-sex']['measured_on']}; population "
                         f"{population['female']:.0%} female; log10 LR bounded to [{heads['bounds'][0]:+.2f}, "
                         f"{heads['bounds'][1]:+.2f}] by {heads['bounds_method']}"),
            "limits": LIMITS}
