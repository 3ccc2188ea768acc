"""The generative model of a synthetic identity: metadata, shared hidden traits, and the ideal observer's ceiling.

Each identity draws gender, nationality and age (the metadata of meta.csv) and three hidden traits in [0, 1]
that BOTH its face and its voice carry:
- size:  face width/height ratio      <->  vocal-tract scale (formants lower for larger)
- tone:  skin lightness               <->  spectral tilt (brightness) of the voice
- pitch: hair lightness               <->  mean f0 within the gender's range
Gender sets both hair length/shape and the f0 range; nationality shifts the prior of `tone`, and gender the
prior of `size`, so that gender- and nationality-stratified trials are harder than unstratified ones, as with
real people. Everything else (eye colour, hair style; syllable rate, breathiness) is modality-specific nuisance,
and each image/clip jitters the shared traits by FACE_JITTER / VOICE_JITTER.

The association is learnable only through the shared traits, so an observer that read a face's and a voice's
jittered traits exactly and picked the nearest (gender first) is the ideal reference: `ideal_matching_accuracy`
estimates its 1:2 accuracy by simulation. It is an upper bound: the renders blur the traits further (brightness
and tint shift the apparent skin tone, grey hair hides part of `pitch` past 40, noise and pose hide detail).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fvmatch.synth.faces import FACE_JITTER, FaceTraits
from fvmatch.synth.voices import VOICE_JITTER, VoiceTraits

NATIONALITIES = ("N1", "N2", "N3", "N4", "N5", "N6")
AGE_RANGE = (18.0, 80.0)
TONE_SPREAD = 0.12  # sd of `tone` around its nationality's mean
SIZE_SPREAD = 0.2  # sd of `size` around its gender's mean


@dataclass(frozen=True)
class SyntheticIdentity:
    identity: str
    female: bool
    nationality: str
    age_years: float
    size: float
    tone: float
    pitch: float
    face: FaceTraits
    voice: VoiceTraits

    @property
    def gender(self) -> str:
        return "f" if self.female else "m"

    @property
    def shared_traits(self) -> np.ndarray:
        return np.array([self.size, self.tone, self.pitch])


def draw_identity(identity: str, rng: np.random.Generator) -> SyntheticIdentity:
    """One identity's metadata and traits, from its own random stream."""
    female = bool(rng.random() < 0.5)
    nationality_index = int(rng.integers(len(NATIONALITIES)))
    age_years = float(rng.uniform(*AGE_RANGE))
    size = float(np.clip(rng.normal(0.4 if female else 0.6, SIZE_SPREAD), 0.0, 1.0))
    tone = float(np.clip(rng.normal((nationality_index + 0.5) / len(NATIONALITIES), TONE_SPREAD), 0.0, 1.0))
    pitch = float(rng.random())
    face = FaceTraits(female=female, age_years=age_years, size=size, tone=tone, pitch=pitch,
                      eye_hue=float(rng.random()), hair_style=float(rng.random()))
    voice = VoiceTraits(female=female, age_years=age_years, size=size, tone=tone, pitch=pitch,
                        rate=float(rng.random()), breathiness=float(rng.random()))
    return SyntheticIdentity(identity, female, NATIONALITIES[nationality_index], age_years, size, tone, pitch, face, voice)


def uniform_face_traits(rng: np.random.Generator) -> FaceTraits:
    """Face traits drawn uniformly over their ranges, female with probability 1/2 (for stress-testing rendering)."""
    return FaceTraits(female=bool(rng.random() < 0.5), age_years=float(rng.uniform(*AGE_RANGE)), size=float(rng.random()),
                      tone=float(rng.random()), pitch=float(rng.random()), eye_hue=float(rng.random()),
                      hair_style=float(rng.random()))


def uniform_voice_traits(rng: np.random.Generator) -> VoiceTraits:
    """Voice traits drawn uniformly over their ranges, female with probability 1/2 (for stress-testing synthesis)."""
    return VoiceTraits(female=bool(rng.random() < 0.5), age_years=float(rng.uniform(*AGE_RANGE)), size=float(rng.random()),
                       tone=float(rng.random()), pitch=float(rng.random()), rate=float(rng.random()),
                       breathiness=float(rng.random()))


def ideal_matching_accuracy(trials: int = 200_000, seed: int = 0, same_gender: bool = False) -> float:
    """1:2 matching accuracy of the ideal observer (see module docstring), estimated over `trials` random triplets.

    Probe and correct candidate are one identity seen through independent per-item jitter; the wrong candidate
    is another identity (of the probe's gender when `same_gender`, the G stratum).
    """
    rng = np.random.default_rng(seed)
    people = [draw_identity("", rng) for _ in range(4000)]
    traits = np.stack([person.shared_traits for person in people])
    female = np.array([person.female for person in people])
    probe = rng.integers(len(people), size=trials)
    other = rng.integers(len(people), size=trials)
    if same_gender:
        # resample impostors until their gender matches the probe's (all do after a few rounds)
        for _ in range(100):
            wrong = (female[other] != female[probe]) | (other == probe)
            if not wrong.any():
                break
            other[wrong] = rng.integers(len(people), size=int(wrong.sum()))
    else:
        clash = other == probe
        other[clash] = (other[clash] + 1) % len(people)

    def seen(index: np.ndarray, jitter: float) -> np.ndarray:
        return np.clip(traits[index] + rng.normal(0.0, jitter, (len(index), 3)), 0.0, 1.0)

    probe_seen, right_seen, wrong_seen = seen(probe, VOICE_JITTER), seen(probe, FACE_JITTER), seen(other, FACE_JITTER)
    right_distance = ((probe_seen - right_seen) ** 2).sum(axis=1)
    wrong_distance = ((probe_seen - wrong_seen) ** 2).sum(axis=1)
    # gender is read without error from both modalities, so a gender clash rules a candidate out first
    wrong_distance[female[other] != female[probe]] = np.inf
    return float(np.mean(right_distance < wrong_distance))
