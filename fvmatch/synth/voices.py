"""Formant-synthesised 'speech' for the synthetic paired corpus.

A source-filter model, kept simple and fast (a few ms per clip): a glottal
pulse train with a slowly varying f0 is shaped into a glottal waveform, mixed
with aspiration noise, tilted by the identity's ``tone``, gated by syllable
envelopes and passed through three formant resonators that glide from a
consonant locus to a vowel from a small table and on towards another
consonant, all scaled by the identity's vocal-tract ``size``. Consonant-like
noise bursts, short pauses and a little background noise complete the clip. The three traits the face also carries
(``size``, ``tone``, ``pitch``) set the long-term spectrum and f0; the
voice-only traits and everything drawn from ``rng`` are nuisance.

Only numpy and scipy are used, so corpus generation needs no torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

SAMPLE_RATE = 16000

# Standard deviation (in trait units) of the per-clip jitter applied to the
# shared traits: the same person never sounds exactly the same twice, but the
# jitter stays far below the spread between identities (uniform on [0, 1]).
VOICE_JITTER = 0.03

# Adult male average formants F1, F2, F3 in Hz (Peterson & Barney, 1952) for
# the vowels of heed, hid, head, had, hod, hawed, hood, who'd, hud.
_VOWEL_FORMANTS_HZ = np.array(
    [
        [270.0, 2290.0, 3010.0],
        [390.0, 1990.0, 2550.0],
        [530.0, 1840.0, 2480.0],
        [660.0, 1720.0, 2410.0],
        [730.0, 1090.0, 2440.0],
        [570.0, 840.0, 2410.0],
        [440.0, 1020.0, 2240.0],
        [300.0, 870.0, 2240.0],
        [640.0, 1190.0, 2390.0],
    ]
)
# Where the formants point at a consonant (labial, alveolar, velar): each
# syllable glides in from one of these and out towards another (CVC).
_LOCUS_FORMANTS_HZ = np.array([[250.0, 900.0, 2200.0], [250.0, 1700.0, 2700.0], [250.0, 2200.0, 2400.0]])
# The formant trajectory of a syllable as piecewise-constant blocks: where
# each block starts (fraction of the syllable), and how far its formants sit
# from the vowel towards the onset locus and towards the coda locus. The
# movement matters: held vowels look like music to a voice activity detector.
_SYLLABLE_BLOCKS = np.array(
    [
        [0.00, 0.50, 0.00],
        [0.10, 0.30, 0.00],
        [0.20, 0.10, 0.00],
        [0.30, 0.00, 0.00],
        [0.70, 0.00, 0.20],
        [0.85, 0.00, 0.50],
    ]
)
_FORMANT_BANDWIDTHS_HZ = np.array([80.0, 100.0, 150.0])
# Women's vocal tracts are about 15% shorter, so their formants sit higher.
_FEMALE_FORMANT_SCALE = 1.15
# size 0 -> formants x1.15, size 1 -> x0.85 (vocal-tract length scaling).
_SIZE_FORMANT_SPAN = 0.15
# Extra spectral tilt at tone 0, as the loss at Nyquist in dB (none at tone 1).
_TILT_NYQUIST_DB = -24.0
_F0_RANGE_HZ = {False: (90.0, 150.0), True: (160.0, 250.0)}

_SYLLABLE_SECONDS = (0.12, 0.30)
_PAUSE_PROBABILITY = 0.06
# Pauses stay mostly under silero-vad's 100 ms minimum silence, so only the
# occasional longer one splits a speech segment, as in fluent speech.
_PAUSE_SECONDS = (0.04, 0.16)
_CONSONANT_PROBABILITY = 0.6
_CONSONANT_SECONDS = (0.02, 0.06)
_CONTROL_HOP = 80  # samples between f0 control points (5 ms at 16 kHz)


@dataclass(frozen=True)
class VoiceTraits:
    """Per-identity voice traits; floats in [0, 1] unless noted."""

    female: bool
    age_years: float  # 18..80: older -> a little more jitter/shimmer, slightly lower rate
    size: float  # SHARED with the face: vocal-tract scale (0 = small tract -> formants scaled up ~+15%, 1 = large -> scaled down ~-15%)
    tone: float  # SHARED with the face: spectral tilt / brightness (0 = dark, steep tilt; 1 = bright)
    pitch: float  # SHARED with the face: mean f0 within the gender's range (male ~90-150 Hz, female ~160-250 Hz)
    rate: float  # voice-only nuisance: syllable rate
    breathiness: float  # voice-only nuisance: aspiration noise level


def render_voice(
    traits: VoiceTraits,
    rng: np.random.Generator,
    seconds: float = 4.0,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """One mono float32 clip in [-1, 1] of formant-synthesised 'speech' for this identity.

    Per-clip variation (syllable sequence, intonation, pauses, noise, trait
    jitter) is drawn from rng. Raises ValueError for clips under 0.1 s.
    """
    n_samples = int(round(seconds * sample_rate))
    if n_samples < 0.1 * sample_rate:
        raise ValueError(f"a voice clip needs at least 0.1 s, got {seconds} s")
    size, tone, pitch = np.clip(
        np.array([traits.size, traits.tone, traits.pitch]) + rng.normal(0.0, VOICE_JITTER, 3), 0.0, 1.0
    )
    age = float(np.clip((traits.age_years - 18.0) / 62.0, 0.0, 1.0))
    formant_scale = (1.0 + _SIZE_FORMANT_SPAN * (1.0 - 2.0 * size)) * (_FEMALE_FORMANT_SCALE if traits.female else 1.0)

    onsets, lengths = _plan_syllables(traits.rate, age, rng, n_samples, sample_rate)
    envelope = _syllable_envelope(onsets, lengths, rng, n_samples)

    f0_low, f0_high = _F0_RANGE_HZ[traits.female]
    f0_hz = _f0_contour(f0_low + pitch * (f0_high - f0_low), onsets, lengths, age, rng, n_samples, sample_rate)
    source = _glottal_source(f0_hz, age, traits.breathiness, rng, sample_rate)
    # Tone tilts the whole source (voice and aspiration) with one low-pass
    # pole, so brightness belongs to the person, not to their breathiness.
    # The pole is set so that the loss at Nyquist, in dB, is linear in tone.
    nyquist_gain = 10.0 ** (_TILT_NYQUIST_DB * (1.0 - tone) / 20.0)
    tilt_pole = (1.0 - nyquist_gain) / (1.0 + nyquist_gain)
    source = lfilter([1.0 - tilt_pole], [1.0, -tilt_pole], source * envelope)

    speech = _vocal_tract(source, onsets, lengths, formant_scale, rng, sample_rate)
    speech_rms = np.sqrt(np.mean(speech**2))
    speech += speech_rms * _consonants(onsets, formant_scale, rng, n_samples, sample_rate)

    noise_rms = speech_rms * 10.0 ** (-rng.uniform(30.0, 45.0) / 20.0)
    clip = speech + noise_rms * _uniform_noise(rng, n_samples)
    clip *= rng.uniform(0.5, 0.9) / np.max(np.abs(clip))
    return clip.astype(np.float32)


def _uniform_noise(rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Zero-mean, unit-variance white noise; uniform rather than Gaussian because it is four times cheaper to draw."""
    return (rng.random(n_samples) - 0.5) * np.sqrt(12.0)


def _plan_syllables(
    rate: float, age: float, rng: np.random.Generator, n_samples: int, sample_rate: int
) -> tuple[np.ndarray, np.ndarray]:
    """Syllables covering the clip: onset sample and length of each, separated by occasional pauses."""
    mean_seconds = (0.26 - 0.10 * rate) * (1.0 + 0.10 * age)
    max_count = int(n_samples / (_SYLLABLE_SECONDS[0] * sample_rate)) + 1
    syllable_seconds = np.clip(mean_seconds * rng.uniform(0.7, 1.3, max_count), *_SYLLABLE_SECONDS)
    gap_seconds = np.where(rng.random(max_count) < _PAUSE_PROBABILITY, rng.uniform(*_PAUSE_SECONDS, max_count), 0.0)
    # A short lead-in, as a recording rarely starts on the first syllable.
    gap_seconds[0] = rng.uniform(0.0, 0.08)
    lengths = np.round(syllable_seconds * sample_rate).astype(int)
    onsets = np.cumsum(np.round(gap_seconds * sample_rate).astype(int)) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    keep = onsets < n_samples
    onsets, lengths = onsets[keep], lengths[keep]
    return onsets, np.minimum(lengths, n_samples - onsets)


def _syllable_envelope(onsets: np.ndarray, lengths: np.ndarray, rng: np.random.Generator, n_samples: int) -> np.ndarray:
    """Amplitude envelope: a rise-hold-fall bump per syllable with a random stress level, zero in pauses."""
    envelope = np.zeros(n_samples)
    stress = rng.uniform(0.55, 1.0, len(onsets))
    for onset, length, level in zip(onsets, lengths, stress):
        u = np.arange(length) / length
        # Rise over the first 20%, fall over the last 30%, each a smoothstep
        # (as smooth as a raised cosine, without a cosine per sample).
        ramp = np.minimum(1.0, np.minimum(u / 0.2, (1.0 - u) / 0.3))
        envelope[onset : onset + length] = level * ramp * ramp * (3.0 - 2.0 * ramp)
    return envelope


def _f0_contour(
    mean_f0_hz: float,
    onsets: np.ndarray,
    lengths: np.ndarray,
    age: float,
    rng: np.random.Generator,
    n_samples: int,
    sample_rate: int,
) -> np.ndarray:
    """Per-sample f0 in Hz around the identity's mean.

    Declination, a slow phrase melody, per-syllable accents and jitter, all in semitones.
    """
    n_control = -(-n_samples // _CONTROL_HOP)
    position = np.arange(n_control) * _CONTROL_HOP
    t = position / sample_rate
    semitones = rng.uniform(-2.0, -0.5) * (t / t[-1] - 0.5)
    semitones += rng.uniform(0.5, 1.5) * np.sin(2.0 * np.pi * rng.uniform(0.3, 1.0) * t + rng.uniform(0.0, 2.0 * np.pi))
    # Each syllable gets its own level and a rise or fall across it, the main
    # difference between speech and a held note.
    syllable = np.maximum(np.searchsorted(onsets, position, side="right") - 1, 0)
    across = np.clip((position - onsets[syllable]) / lengths[syllable], 0.0, 1.0) - 0.5
    semitones += rng.normal(0.0, 1.0, len(onsets))[syllable] + rng.normal(0.0, 2.0, len(onsets))[syllable] * across
    # Jitter: small cycle-scale f0 perturbation that grows with age.
    semitones += rng.normal(0.0, 0.05 + 0.12 * age, n_control)
    # Piecewise constant over 5 ms is inaudible next to the jitter and far
    # cheaper than interpolating; the phase stays continuous either way.
    return np.repeat(mean_f0_hz * 2.0 ** (semitones / 12.0), _CONTROL_HOP)[:n_samples]


def _glottal_source(
    f0_hz: np.ndarray, age: float, breathiness: float, rng: np.random.Generator, sample_rate: int
) -> np.ndarray:
    """Glottal flow derivative from an f0 track, with shimmer and pitch-synchronous aspiration noise."""
    phase = np.cumsum(f0_hz) / sample_rate
    cycle = np.floor(phase)
    pulse_at = np.flatnonzero(cycle[1:] != cycle[:-1]) + 1
    pulses = np.zeros_like(f0_hz)
    # Shimmer: cycle-to-cycle amplitude variation, more with age.
    pulses[pulse_at] = rng.normal(1.0, 0.03 + 0.08 * age, len(pulse_at))
    # Two poles near DC shape each impulse into a smooth glottal pulse; the
    # zero at DC is lip radiation. Net slope about -6 dB/octave.
    voiced = lfilter([1.0, -1.0], [1.0, -1.94, 0.9409], pulses)
    # Aspiration noise rides on the open phase of each glottal cycle (a
    # parabola in the cycle's phase: as good as a raised cosine, and cheaper).
    within_cycle = phase - cycle
    aspiration = _uniform_noise(rng, len(f0_hz)) * (4.0 * within_cycle * (1.0 - within_cycle))
    level = (0.05 + 0.45 * breathiness) * np.sqrt(np.mean(voiced**2) / np.mean(aspiration**2))
    return voiced + level * aspiration


def _vocal_tract(
    source: np.ndarray,
    onsets: np.ndarray,
    lengths: np.ndarray,
    formant_scale: float,
    rng: np.random.Generator,
    sample_rate: int,
) -> np.ndarray:
    """Filter the source through three cascaded formant resonators.

    The formants glide through each syllable from a consonant locus to the vowel and on towards another locus.
    """
    n_syllables = len(onsets)
    vowels = _VOWEL_FORMANTS_HZ[rng.integers(0, len(_VOWEL_FORMANTS_HZ), n_syllables)]
    # Small per-syllable formant wobble stands in for coarticulation.
    vowels = vowels * rng.normal(1.0, 0.03, (n_syllables, 1))
    onset_loci, coda_loci = _LOCUS_FORMANTS_HZ[rng.integers(0, len(_LOCUS_FORMANTS_HZ), (2, n_syllables))]
    block_start, toward_onset, toward_coda = _SYLLABLE_BLOCKS.T
    block_formants = (
        vowels[:, None, :]
        + toward_onset[None, :, None] * (onset_loci - vowels)[:, None, :]
        + toward_coda[None, :, None] * (coda_loci - vowels)[:, None, :]
    )
    block_starts = (onsets[:, None] + np.round(lengths[:, None] * block_start[None, :]).astype(int)).ravel()
    block_starts[0] = 0
    block_bounds = np.append(block_starts, len(source))
    b0, denominators = _resonator_cascade(block_formants.reshape(-1, 3) * formant_scale, sample_rate)

    out = np.empty_like(source)
    state = np.zeros(denominators.shape[1] - 1)
    # Coefficients change only where the envelope is near zero or within a
    # smooth glide, so carrying the state over gives no audible clicks.
    for start, stop, gain, denominator in zip(block_bounds[:-1], block_bounds[1:], b0, denominators):
        # A syllable cut short by the clip's end can leave empty blocks, and
        # lfilter returns a garbage state for an empty input.
        if stop > start:
            out[start:stop], state = lfilter([gain], denominator, source[start:stop], zi=state)
    return out


def _resonator_cascade(formants_hz: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Gain and denominator of three cascaded two-pole resonators per row.

    Each resonator has unity gain at DC, as in Klatt's synthesiser.
    """
    radius = np.exp(-np.pi * _FORMANT_BANDWIDTHS_HZ / sample_rate)
    # Keep every formant safely below Nyquist when a large scale pushes F3 up.
    theta = 2.0 * np.pi * np.minimum(formants_hz, 0.45 * sample_rate) / sample_rate
    sections = np.stack(
        [np.ones_like(theta), -2.0 * radius * np.cos(theta), np.broadcast_to(radius**2, theta.shape)], axis=-1
    )
    # One 6th-order filter per block: a single lfilter call costs a fifth of
    # three second-order sections through sosfilt.
    denominator = sections[:, 0]
    for section in np.moveaxis(sections[:, 1:], 1, 0):
        product = np.zeros((len(denominator), denominator.shape[1] + 2))
        for k in range(3):
            product[:, k : k + denominator.shape[1]] += denominator * section[:, k : k + 1]
        denominator = product
    return np.prod(sections.sum(axis=-1), axis=-1), denominator


def _consonants(
    onsets: np.ndarray, formant_scale: float, rng: np.random.Generator, n_samples: int, sample_rate: int
) -> np.ndarray:
    """Fricative-like noise bursts at the onset of some syllables, unit RMS while sounding."""
    # One high-passed noise for the whole clip, gated by burst envelopes;
    # the cutoff follows the vocal-tract scale, as a front cavity would.
    pole = np.exp(-2.0 * np.pi * 2500.0 * formant_scale / sample_rate)
    noise = lfilter([1.0, -1.0], [1.0, -pole], _uniform_noise(rng, n_samples))
    noise /= np.sqrt(np.mean(noise**2))
    gate = np.zeros(n_samples)
    has_consonant = rng.random(len(onsets)) < _CONSONANT_PROBABILITY
    burst_lengths = np.round(rng.uniform(*_CONSONANT_SECONDS, len(onsets)) * sample_rate).astype(int)
    levels = rng.uniform(0.2, 0.6, len(onsets))
    for onset, length, level in zip(onsets[has_consonant], burst_lengths[has_consonant], levels[has_consonant]):
        length = min(length, n_samples - onset)
        gate[onset : onset + length] = level * np.hanning(length)
    return noise * gate
