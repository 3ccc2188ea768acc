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

from fvmatch.evidence.age import AGE_BANDS, AgeReading, age_reading, face_age_reading, voice_band_probabilities

ATTRIBUTES = Path(__file__).parent.parent / "reference" / "attributes.json"
SEXES = ("female", "male")
DEFAULT_POPULATION = {"female": 0.5, "male": 0.5}
ATTRIBUTE_SPACE = "sex"  # the name face-voice trials scored by the sex readings go by, beside the embedding spaces
HEAD_OF = {"face": "face-sex", "voice": "voice-sex"}
LIMITS = ("it separates people read as of different sex (and, weakly, of distant age bands), not people alike in "
          "both: a pair read alike is weak evidence either way")


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
    age: AgeReading | None = None  # the age band it reads as (fvmatch.evidence.age), where its estimator ran

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
        if self.age is not None:
            found["age"] = self.age.to_dict()
        return found


def reading_words(reading: dict) -> str:
    """A reading (SexReading.to_dict) in words: 'male 0.99', a voice's with its F0 and age band: 'male 0.99 (F0 112
    Hz), age 30-49 0.61', a face's with its expected age: 'female 0.97, age 30-49 0.88 (41 y)'."""
    pitch = "" if reading.get("f0_hz") is None else f" (F0 {reading['f0_hz']:.0f} Hz)"
    age = reading.get("age")
    years = "" if not age or age.get("years") is None else f" ({age['years']:.0f} y)"
    age_words = f", age {age['band']} {age['probability']:.2f}{years}" if age else ""
    return f"{reading['sex']} {reading['probability']:.2f}{pitch}{age_words}"


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
    if f0_hz is not None:
        reading = replace(reading, f0_hz=float(f0_hz))
    return replace(reading, age=_ages(modality, vectors[head["space"]][None], [quality])[0])


def p_female(head: dict, vectors: np.ndarray) -> np.ndarray:
    """P(female) of one vector or of each row of a (N, D) array."""
    logits = np.asarray(vectors, np.float64) @ np.asarray(head["weights"], np.float64) + head["bias"]
    return 1.0 / (1.0 + np.exp(-logits))


def _reading(modality: str, head: dict, probability: float) -> SexReading:
    return SexReading(modality, "female" if probability >= 0.5 else "male", float(probability), head["space"],
                      head["space_model_id"])


def readings_of(modality: str, vectors: np.ndarray, qualities: list[dict] | None = None) -> list[SexReading]:
    """The readings of stored vectors of the head's space (a gallery's faces or voices); a face's age from its stored
    quality (`qualities`, one a vector), a voice's from its vector."""
    head = sex_heads()[HEAD_OF[modality]]
    ages = _ages(modality, vectors, qualities if qualities is not None else [None] * len(vectors))
    return [replace(_reading(modality, head, value), age=age)
            for value, age in zip(np.atleast_1d(p_female(head, vectors)), ages)]


def _ages(modality: str, vectors: np.ndarray, qualities: list[dict | None]) -> list[AgeReading | None]:
    """The age readings of items (None each where the modality's age estimator is not shipped or did not run)."""
    head = sex_heads().get(f"{modality}-age")
    if head is None:
        return [None] * len(vectors)
    if modality == "face":
        return [face_age_reading(quality) for quality in qualities]
    estimator = f"{head['space']} age head"
    return [age_reading(row, estimator) for row in voice_band_probabilities(head, vectors)]


@lru_cache(maxsize=1)
def attributes_model_id() -> str:
    """The sha256 of the shipped heads' file: the model id of the sex evidence."""
    import hashlib

    return hashlib.sha256(ATTRIBUTES.read_bytes()).hexdigest()


def judgement(face: SexReading, voice: SexReading, population: dict[str, float] = DEFAULT_POPULATION):
    """A face-voice pair's sex evidence as a fvmatch.calibration.scoring.Judgement: its LR, no decision (sex alone cannot say
    "same person"), each side's reading."""
    from fvmatch.calibration.scoring import Judgement

    found = evidence(face, voice, population)
    note = (f"{' and '.join(found['attributes'])} evidence (face-voice): {found['rests_on']}; {LIMITS}; no decision: "
            "sex and age never say \"same person\"")
    return Judgement(found["log10_lr"], "face-voice", found["log10_lr"], None, note, found["verbal"], ATTRIBUTE_SPACE,
                     attributes_model_id(), f"attribute estimators: {found['rests_on'].split('; population')[0]}",
                     {"face": found["face"], "voice": found["voice"], "population": found["population"]})


BAND_WORDS = {"under-30": "under 30", "30-49": "30-49", "50+": "50 and over"}  # how --population names the bands


def population_of(text: str | None) -> dict[str, float]:
    """A population's make-up from 'female=0.3' (the rest male), optionally with age-band shares:
    'female=0.3,under-30=0.2,50+=0.4' (bands not named share the rest equally); equal sexes and bands for None.
    ValueError when malformed."""
    if text is None:
        return dict(DEFAULT_POPULATION)
    found: dict[str, float] = {}
    for part in text.split(","):
        name, _, value = part.strip().partition("=")
        name = BAND_WORDS.get(name.strip(), name.strip())
        try:
            share = float(value)
        except ValueError:
            share = math.nan
        if name not in (*SEXES, *AGE_BANDS) or not 0.0 < share < 1.0 or name in found:
            raise ValueError("give female=SHARE or male=SHARE, a share strictly between 0 and 1, and optionally age "
                             "bands: under-30=SHARE, 30-49=SHARE, 50+=SHARE")
        found[name] = share
    sexes = [sex for sex in SEXES if sex in found]
    if len(sexes) != 1:
        raise ValueError("give the share of one sex (female=SHARE or male=SHARE); the other is the rest")
    bands = [band for band in AGE_BANDS if band in found]
    if sum(found[band] for band in bands) > 1.0 + 1e-9 or (len(bands) == len(AGE_BANDS)
                                                         and abs(sum(found[b] for b in bands) - 1.0) > 1e-6):
        raise ValueError("the age bands' shares must add up to at most 1 (exactly 1 when all three are given)")
    other = SEXES[1 - SEXES.index(sexes[0])]
    return {**found, other: 1.0 - found[sexes[0]]}


def log10_lr(face: SexReading, voice: SexReading, population: dict[str, float] = DEFAULT_POPULATION) -> float:
    """The log10 LR of a face and a voice with these readings belonging to one person, from the estimators'
    confusion and the population, within the ELUB bounds of what it rests on (sex and age where both sides' ages were
    read, else sex alone)."""
    ages = (face.age.band, voice.age.band) if uses_age(face, voice) else None
    return log10_lr_of(face.sex, voice.sex, population, ages)


def uses_age(face: SexReading, voice: SexReading) -> bool:
    """Whether a pair's evidence includes age: both sides read and both estimators' confusion measured."""
    heads = sex_heads()
    return face.age is not None and voice.age is not None and "face-age" in heads and "voice-age" in heads


def log10_lr_of(face_read: str, voice_read: str, population: dict[str, float] = DEFAULT_POPULATION,
                ages: tuple[str, str] | None = None, heads: dict | None = None) -> float:
    """`log10_lr` of the sexes (and, given `ages`, the age bands) a face and a voice are read as: the sex part within
    the sex heads' ELUB bounds, plus (given `ages`) what the age bands add to it within the age part's own bounds
    (each measured on its own validation: a band adds evidence, it never narrows what the sexes show)."""
    heads = heads or sex_heads()
    sex_part = _unbounded_log10_lr(face_read, voice_read, population, None, heads)
    value = float(np.clip(sex_part, *heads["bounds"]))
    if ages:
        age_part = _unbounded_log10_lr(face_read, voice_read, population, ages, heads) - sex_part
        value += float(np.clip(age_part, *heads["age"]["bounds"]))
    return value


def _unbounded_log10_lr(face_read: str, voice_read: str, population: dict[str, float], ages: tuple[str, str] | None,
                        heads: dict) -> float:
    """sum_t pi(t) P(face readings | t) P(voice readings | t) / ([sum_t pi(t) P(face readings | t)]
                                                                 [sum_t pi(t) P(voice readings | t)])

    over the true states t (a sex, and an age band when ages are given; the population's sexes and bands
    independent), each side's readings independent given t: P(sex read | sex) P(band read | band, sex)."""
    states = [(sex, band) for sex in SEXES for band in (AGE_BANDS if ages else (None,))]
    shares = population_shares(population)

    def likelihood(side: str, sex_read: str, band_read: str | None, sex: str, band: str | None) -> float:
        value = heads[f"{side}-sex"]["confusion"][sex][sex_read]
        return value if band is None else value * heads[f"{side}-age"]["confusion"][sex][band][band_read]

    prior = [shares[sex] * (shares[band] if band else 1.0) for sex, band in states]
    face = [likelihood("face", face_read, ages and ages[0], *state) for state in states]
    voice = [likelihood("voice", voice_read, ages and ages[1], *state) for state in states]
    same = sum(p * f * v for p, f, v in zip(prior, face, voice))
    different = sum(p * f for p, f in zip(prior, face)) * sum(p * v for p, v in zip(prior, voice))
    return math.log10(same / different)


def population_shares(population: dict[str, float]) -> dict[str, float]:
    """The population's sex shares and age-band shares (equal bands unless it names some)."""
    named = {band: population[band] for band in AGE_BANDS if band in population}
    rest = (1.0 - sum(named.values())) / (len(AGE_BANDS) - len(named)) if len(named) < len(AGE_BANDS) else 0.0
    return {**{sex: population[sex] for sex in SEXES}, **{band: named.get(band, rest) for band in AGE_BANDS}}


def evidence(face: SexReading, voice: SexReading, population: dict[str, float] = DEFAULT_POPULATION) -> dict:
    """A face-voice pair's attribute evidence: each reading, the log10 LR with its verbal equivalent, what it rests
    on (sex, and age where both sides' ages were read), what was left out and why."""
    from fvmatch.calibration.fitting import verbal_equivalent

    value = round(log10_lr(face, voice, population), 4)
    heads = sex_heads()
    with_age = uses_age(face, voice)
    shares = population_shares(population)
    rests_on = (f"sex read from the face ({heads['face-sex']['trained_on']}) and from the voice "
                f"({heads['voice-sex']['trained_on']}); P(read | true sex) measured on "
                f"{heads['face-sex']['measured_on']} and {heads['voice-sex']['measured_on']}")
    if with_age:
        rests_on += (f"; age band read from the face ({heads['face-age']['estimator']}) and from the voice "
                     f"({heads['voice-age']['trained_on']}); P(band read | true band, sex) measured on "
                     f"{heads['face-age']['measured_on']} and {heads['voice-age']['measured_on']}")
    population_words = f"population {shares['female']:.0%} female" + (
        ", age bands " + ", ".join(f"{band} {shares[band]:.0%}" for band in AGE_BANDS) if with_age else "")
    found = {"face": face.to_dict(), "voice": voice.to_dict(), "log10_lr": value, "verbal": verbal_equivalent(value),
             "population": {key: round(share, 4) for key, share in shares.items() if with_age or key in SEXES},
             "rests_on": (f"{rests_on}; {population_words}; {_bounds_words(heads, with_age)}"),
             "limits": LIMITS, "attributes": ["sex", "age"] if with_age else ["sex"]}
    if not with_age and "age" in heads:
        side = "face" if face.age is None else "voice"
        found["age_left_out"] = (f"the {side}'s age was not read (embedded before age readings, or its estimator "
                                 "did not run): the evidence rests on sex alone")
    return found


def _bounds_words(heads: dict, with_age: bool) -> str:
    low, high = heads["bounds"]
    words = f"the sex part of the log10 LR bounded to [{low:+.2f}, {high:+.2f}] by {heads['bounds_method']}"
    if with_age:
        low, high = heads["age"]["bounds"]
        words += f", the age part to [{low:+.2f}, {high:+.2f}] by {heads['age']['bounds_method']}"
    return words
