"""Reference conditions: enrolled voices brought to the condition questioned voices arrive in, to compare like with like.

A questioned voice from an intercepted call is band-limited to 300-3400 Hz and often noisy; the enrolled references
(interviews) are clean and wideband. A speaker encoder moves a voice a long way when its band or noise changes, so
the clean reference and the narrowband question sit apart even for one speaker. Forensic voice systems adapt the
condition: the reference is brought to the question's condition and embedded again. Here each enrolled voice gets,
besides its own vector, one vector per reference condition (a space of its own, `ge2e-voice@telephone`, ..., indexed
and stored like any other), computed once from its speech at enrolment; a questioned voice keeps its own vector and
is searched against the references of its condition.

Measured with `benchmarks/degraded.py` (50 questions, degraded, against 50 clean references of 10 LibriSpeech
speakers; GE2E EER, references as enrolled -> references of the question's condition): telephone band 14.4% ->
6.4%, AMR-NB 16.0% -> 8.4%, white noise at 10 dB 11.2% -> 7.3%, at 5 dB 16.4% -> 10.0%, at 0 dB 28.6% -> 18.6%,
telephone band plus noise at 10 dB 22.0% -> 17.8% (14.3% since its references are a template of three conditions:
TEMPLATE_CONDITIONS). Band-limited references do not help noisy wideband questions
(12.9% -> 20.1%, measured apart): each condition applies only where the question's measured quality calls for it
(`reference_condition`). The narrow conditions (FUSED_CONDITIONS) keep the enrolled vector beside the brought one
(CompositeVoiceSpace): scored both ways, AMR-NB at 7.95 kbit/s reaches 6.8%, at 12.2 kbit/s 2.0%, G.711 1.2%.

Faces: on the 250 real photos, dlib's descriptor of faces shrunk to 24-64 px (and JPEG quality 30) matched clean
references as well as references shrunk alike (EER within 0.7 points either way, no consistent gain), so no face
condition is kept.
"""
from __future__ import annotations

import hashlib

import numpy as np

SEPARATOR = "@"
SAMPLE_RATE = 16000
# a questioned voice is narrowband under this upper frequency, and noisy under this estimated SNR. On 50 real
# LibriSpeech clips: bandwidth 6.9-8 kHz clean, 3.6-4.0 kHz through the telephone band as 8 kHz files and 3.6-4.4
# stored at 16 kHz, 4.0-4.9 kHz low-passed at 4 kHz; SNR min 12.8, p10 17.1, median 28.0 dB clean, median 11.0 and
# max 12.9 dB with white noise at 10 dB, median 20.3 at 20 dB. A "mild noise" condition (references at 20 dB for
# questions read 12.5-21 dB) was measured and left out: it helped 20 dB questions little (3.3% -> 3.0% EER) and
# cost the clean questions it caught (0.5% -> 1.0%). The noisy threshold was 12.5 dB, set on read speech; in the
# wild the estimate reads speech with white noise at 10 dB higher (p10 10.0, median 14.6 dB on 151 questions), and
# at 15 dB the automatic choice gained on both kinds of speech (benchmarks/voice_routes.py, its second sweep: right
# answers over 22 rows 1,782 -> 1,807; in the wild white noise 10 dB 114 -> 125, pink 112 -> 125 of 151; read pink
# 48 -> 50 of 50) and lost one question in a row at most (in the wild clean 141 -> 140, white noise 15 dB 129 -> 128);
# at 16 dB and above it lost more in those rows. Its cost on read speech: 5 of the 50 clean LibriSpeech questions
# read 12.8-14.2 dB (their own noise) and go to the noisy references, rank-1 unchanged, EER of the degraded table's
# wideband rows up to 0.9 points worse (G.711 1.2% -> 2.1%, a 5.5 kHz low-pass 0.9% -> 1.3%)
NARROWBAND_BELOW_HZ = 4600.0
NOISY_BELOW_DB = 15.0
# ...but a call through a telephone channel is noisy under this SNR: its references are then the telephone-noisy
# template (TEMPLATE_CONDITIONS), which also holds the band-only references and so loses little on clean calls. On
# 50 LibriSpeech and 151 in-the-wild questions (talk shows, meetings, Common Voice) per condition, brought to the
# telephone band with white noise at 10/15/20 dB and pink noise at 10 dB (`OMP_NUM_THREADS=1 .venv/bin/python
# benchmarks/voice_routes.py`, its first sweep), rank-1 over all 22 rows (those and clean, band only, white noise at
# 0-15 dB and pink noise wideband) rose from 1,653 right answers at 12.5 dB to 1,765 at 20, 1,807 at 25, 1,806 at 30,
# 1,803 at any SNR; no row lost a question at 25 (the band-only calls, SNR p10 20.7 dB in the wild, 28.3 read, kept
# theirs)
TELEPHONE_NOISY_BELOW_DB = 25.0
# ...and it went through a telephone channel when its 100-250 Hz band is this far under its 300-3400 Hz band
# (fvmatch.quality.voice.low_band_db): telephone references help only such calls. Narrowband speech that kept its
# low end (AMR-NB at 8 kHz without the channel's 300 Hz cut; a 4 kHz low-pass) matches clean references far better
# than telephone ones (EER 2.4% vs 9.8%, 1.2% vs 10.5%, on 50 questions of 10 LibriSpeech speakers)
CHANNEL_CUT_BELOW_DB = -3.5
# condition -> (band: True the telephone band, NARROW 8 kHz sampling alone, False none; SNR of the white noise added
# or None): the recipe, part of the condition's model id
NARROW = "8 kHz"
VOICE_CONDITIONS = {
    "telephone": (True, None),
    "noisy": (False, 10.0),
    "telephone-noisy": (True, 10.0),
    # narrowband speech that kept its low end (AMR-NB or G.711 without the channel's 300 Hz cut, a 4 kHz low-pass):
    # references through 8 kHz sampling alone. On 50 questions of 10 LibriSpeech speakers, EER against references as
    # enrolled -> brought to 8 kHz (both read as silero-vad's speech): AMR-NB 12.2 kbit/s 2.3% -> 2.0%, G.711 1.6% ->
    # 0.8%, low-pass 4 kHz 1.2% -> 0.8% (Resemblyzer 2.3%, 1.6%, 1.2%); telephone calls 11.6% against them, 6.4%
    # against telephone references, so the channel's cut decides between the two
    "narrowband": (NARROW, None),
}
RECIPE_VERSION = 1
# narrow conditions whose references are scored beside the references as enrolled: the condition's vector and the
# enrolled one side by side (CompositeVoiceSpace), against the question read both ways, so that the cosine is the mean
# of the two cosines. On 50 questions of 10 LibriSpeech speakers (benchmarks/degraded.py), EER against the
# condition's references alone -> beside the enrolled ones: AMR-NB 12.2 kbit/s 2.7% -> 2.0%, G.711 2.0% -> 1.2%,
# AMR-NB 7.95 kbit/s 8.4% -> 6.8%, telephone band 6.4% -> 6.4%, 4 kHz low-pass 0.7% -> 0.9%. The noisy conditions
# stay apart: beside the enrolled references heavy noise lost (white noise at 5 dB rank-1 1.00 -> 0.88, at 0 dB EER
# 18.6% -> 21.0%)
FUSED_CONDITIONS = ("telephone", "narrowband")
# conditions whose references are one template of several conditions' vectors of the reference (their mean,
# renormalised: ConditionTemplateSpace), against the question's own vector. A noisy call's noise is rarely the white
# noise at 10 dB of the telephone-noisy recipe: a reference that is band-limited, noisy wideband and both at once
# holds up across levels and colours. Rank-1, questions against references of that condition alone -> the template
# (LibriSpeech 50 questions / in-the-wild 151; benchmarks/voice_routes.py): telephone + white noise 10 dB 0.84 ->
# 0.98 / 0.589 -> 0.589, 15 dB 0.80 -> 0.96 / 0.649 -> 0.735, 20 dB 0.70 -> 0.90 / 0.570 -> 0.775, pink noise 10 dB
# 0.76 -> 1.00 / 0.523 -> 0.623, band only 0.72 -> 0.96 / 0.397 -> 0.775. Scoring the three cosines' mean instead
# (no renormalising) did less well (0.90 / 0.596 at 10 dB, 0.92 / 0.596 pink)
TEMPLATE_CONDITIONS = {"telephone-noisy": ("telephone", "noisy", "telephone-noisy")}


def conditioned(space: str, condition: str) -> str:
    """The name of `space` brought to `condition`: "ge2e-voice@telephone"."""
    return f"{space}{SEPARATOR}{condition}"


def split(name: str) -> tuple[str, str | None]:
    """(base space, condition or None) of a space name."""
    base, _, condition = name.partition(SEPARATOR)
    return base, condition or None


def reference_condition(quality: dict) -> str | None:
    """The reference condition a questioned voice of this measured quality is compared in, or None (clean and
    wideband, or its quality not measured)."""
    bandwidth, snr, low_band = quality.get("bandwidth_hz"), quality.get("snr_db"), quality.get("low_band_db")
    narrow = bandwidth is not None and bandwidth < NARROWBAND_BELOW_HZ
    band = (True if low_band is not None and low_band < CHANNEL_CUT_BELOW_DB else NARROW) if narrow else False
    noisy_below = TELEPHONE_NOISY_BELOW_DB if band is True else NOISY_BELOW_DB
    noise = 10.0 if snr is not None and snr < noisy_below else None
    if band == NARROW and noise is not None:  # no narrowband-noisy references: the noise weighs more (as before)
        band = False
    for condition, recipe in VOICE_CONDITIONS.items():
        if recipe == (band, noise):
            return condition
    return None


def bring_to_condition(speech: np.ndarray, condition: str) -> np.ndarray:
    """16 kHz speech as it would reach fvmatch in `condition`: through the telephone band (8 kHz, decoded back to
    16 kHz the way fvmatch reads an 8 kHz file) and/or with white noise at the condition's SNR."""
    from fvmatch.media.degrade import add_noise, telephone_band

    band, snr_db = VOICE_CONDITIONS[condition]
    if band:
        from fvmatch.media.degrade import TELEPHONE_RATE, resample
        from fvmatch.media.resample import resample as sinc_resample  # torchaudio's, in numpy

        narrow, rate = (telephone_band(speech, SAMPLE_RATE) if band is True
                        else (resample(speech, SAMPLE_RATE, TELEPHONE_RATE), TELEPHONE_RATE))
        speech = sinc_resample(narrow, rate, SAMPLE_RATE)[: len(speech)]
    if snr_db is not None and np.any(speech):
        # noise drawn from the speech itself: a reference's conditioned vector is a function of its evidence alone
        # (an audit re-derives it), and no two references share one noise (a common noise makes them alike)
        seed = int.from_bytes(hashlib.sha256(np.ascontiguousarray(speech, np.float32).tobytes()).digest()[:8], "big")
        speech = add_noise(speech, snr_db, seed)
    return np.ascontiguousarray(speech, dtype=np.float32)


class CompositeVoiceSpace:
    """Voice spaces' unit vectors side by side, divided by the square root of their number: a unit vector whose
    cosine with another such vector is the mean of the parts' cosines. Each part is embedded from its own reading
    of the speech (its front end) and averaged over the windows on its own; the embedder joins the parts' final
    vectors (`combine`)."""

    def __init__(self, name: str, parts: list) -> None:
        self.name = name
        self.parts = parts
        self.dim = sum(part.dim for part in parts)
        recipe = "side by side v1 " + " ".join(part.model_id for part in parts)
        self.model_id = hashlib.sha256(recipe.encode()).hexdigest()

    def combine(self, vectors: list[np.ndarray]) -> np.ndarray:
        return (np.concatenate(vectors) / np.sqrt(len(vectors))).astype(np.float32)


class ConditionTemplateSpace:
    """A reference condition made of other conditions' vectors of one reference: their mean, renormalised (a unit
    vector the question's own vector is compared with, as with any reference condition)."""

    def __init__(self, name: str, parts: list) -> None:
        self.name = name
        self.parts = parts
        self.dim = parts[0].dim
        recipe = "template v1 " + " ".join(part.model_id for part in parts)
        self.model_id = hashlib.sha256(recipe.encode()).hexdigest()

    def combine(self, vectors: list[np.ndarray]) -> np.ndarray:
        total = np.sum(vectors, axis=0, dtype=np.float64)
        return (total / np.linalg.norm(total)).astype(np.float32)


class ConditionedVoiceSpace:
    """A voice space whose inputs are first brought to a condition: the references' side of a condition match."""

    def __init__(self, base, condition: str, name: str | None = None) -> None:
        """`name`: the space's name where it is not its base family's condition (a fused condition's own part,
        "ge2e-voice/speech@telephone", beside the reference condition "ge2e-voice@telephone")."""
        if condition not in VOICE_CONDITIONS:
            raise KeyError(condition)
        self.base = base
        self.condition = condition
        self.name = name or conditioned(getattr(base, "family", base.name), condition)
        self.dim = base.dim
        self.front_end = getattr(base, "front_end", "speech")  # reads the speech its base reads (silero-vad's)
        recipe = f"{base.model_id} {condition} {VOICE_CONDITIONS[condition]} v{RECIPE_VERSION}"
        self.model_id = hashlib.sha256(recipe.encode()).hexdigest()

    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        return self.base.embed_speech(bring_to_condition(speech, self.condition))
