"""Quality of a voice recording, measured as it streams: effective bandwidth, SNR, clipping.

Recordings are decoded in blocks and never held whole, so the figures come from a meter fed block by block: the raw
block at the file's own rate (for clipping, which only the original samples show), then the 16 kHz mono block with
silero-vad's probability for each of its 512-sample chunks (for bandwidth and SNR, read on speech and pauses).
Everything is seen after resampling to 16 kHz, so the bandwidth reads at most 8 kHz: a 44.1 kHz MP3 and a 16 kHz
recording both read about 8 kHz. Nor does it read above the file's own Nyquist frequency: upsampling an 8 kHz file
to 16 kHz leaves images of its 3-4 kHz band at 4-5 kHz (15-30 dB down with torchaudio's resampler), which are not
the recording's.
"""
from __future__ import annotations

import numpy as np

from fvmatch.quality.pitch import MAX_SPEECH_CHUNKS, chunk_f0, median_f0

SAMPLE_RATE = 16000
CHUNK = 512  # samples per silero-vad probability at 16 kHz: the frame of every spectral and energy figure here
SPEECH_PROBABILITY = 0.5  # silero's own threshold for a speech chunk
PAUSE_PROBABILITY = 0.2  # a chunk under this is a pause (between the two: onsets and tails, left out of both)
# bandwidth: the long-term average spectrum of the speech chunks (less that of the pauses: noise is not speech
# bandwidth) is smoothed over SMOOTH_HZ, and the bandwidth is the highest frequency whose level is within
# BANDWIDTH_DROP_DB of the mean level of the speech band REFERENCE_BAND_HZ. Read speech (LibriSpeech) is 5-17 dB
# under that level at 7-8 kHz; a telephone copy falls to -28 dB at 3.7 kHz and -42 dB at 4 kHz, and stays under
# -38 dB above (what leaks through the 8 -> 16 kHz resampler's filter): 30 dB puts 16 kHz speech at 6.9-8 kHz and
# 8 kHz telephone copies at 3.56-4 kHz (4.44 kHz at most when stored at 16 kHz: the upsampler's transition band),
# measured on 100 LibriSpeech clips, benchmarks/quality_figures.py
REFERENCE_BAND_HZ = (300.0, 3400.0)
BANDWIDTH_DROP_DB = 30.0
SMOOTH_HZ = 250.0
# the band below the telephone channel's 300 Hz cut: voices' fundamental and first harmonics. Its level against
# REFERENCE_BAND_HZ's tells a call that went through a telephone channel (cut at 300 Hz) from speech only low-passed
# (a narrowband codec that keeps the low end, e.g. AMR-NB's own 80 Hz high-pass)
LOW_BAND_HZ = (100.0, 250.0)
# SNR: speech chunk power (less the noise in it) over the median power of the pauses. Below MIN_PAUSE_CHUNKS pauses
# (about 1 s) the quietest chunks stand for the pauses: NOISE_PERCENTILE of all chunk powers
MIN_PAUSE_CHUNKS = 30
NOISE_PERCENTILE = 5.0
MIN_SNR_DB, MAX_SNR_DB = -20.0, 100.0  # digital silence in the pauses would otherwise read as infinite SNR
# clipping: samples at full scale (16-bit 32767/32768), or in runs of MIN_FLAT_RUN equal samples at the block's peak
# (a recording clipped below full scale, then normalised)
FULL_SCALE = 32767 / 32768
MIN_FLAT_RUN = 3


class VoiceQualityMeter:
    """Accumulates one recording's quality block by block; `result` gives the figures.

    Memory grows by two numbers per 32 ms chunk (the chunk's power and probability) and a fixed spectrum.
    """

    def __init__(self) -> None:
        self._samples = 0
        self._clipped = 0
        self._powers: list[np.ndarray] = []
        self._probabilities: list[np.ndarray] = []
        bins = CHUNK // 2 + 1
        self._speech_spectrum = np.zeros(bins)
        self._pause_spectrum = np.zeros(bins)
        self._speech_chunks = 0
        self._pause_chunks = 0
        self._window = np.hanning(CHUNK)
        self._f0: list[np.ndarray] = []  # F0 of each voiced speech chunk (fvmatch.quality.pitch)
        self._nyquist_hz = SAMPLE_RATE / 2

    def add(self, raw_block: np.ndarray, original_rate: int) -> None:
        """Count clipped samples in a block of the file's own samples: (frames, channels) float32 at its own rate."""
        block = np.asarray(raw_block, dtype=np.float32)
        block = block.reshape(len(block), -1)
        self._samples += block.size
        self._nyquist_hz = min(SAMPLE_RATE, original_rate) / 2
        for channel in block.T:
            magnitude = np.abs(channel)
            peak = float(magnitude.max()) if len(magnitude) else 0.0
            if peak >= FULL_SCALE:  # the flat runs at the peak are among the full-scale samples
                self._clipped += int(np.count_nonzero(magnitude >= FULL_SCALE))
            elif peak > 0:  # clipped below full scale: flat runs at the block's peak
                self._clipped += _samples_in_runs(channel == peak, MIN_FLAT_RUN) + _samples_in_runs(
                    channel == -peak, MIN_FLAT_RUN)

    def add_speech(self, block16k: np.ndarray, speech_probabilities: np.ndarray) -> None:
        """Add a 16 kHz mono block and silero-vad's probability for each of its 512-sample chunks (the last chunk
        may be partial, as silero zero-pads it)."""
        block = np.asarray(block16k, dtype=np.float64)
        probabilities = np.asarray(speech_probabilities, dtype=np.float64).reshape(-1)
        count = min(len(probabilities), -(-len(block) // CHUNK))
        whole = min(count, len(block) // CHUNK)
        chunks = block[: whole * CHUNK].reshape(whole, CHUNK)
        powers = np.mean(chunks**2, axis=1)
        if count > whole:  # the partial last chunk: its power over the samples it has
            powers = np.append(powers, np.mean(block[whole * CHUNK :] ** 2))
        self._powers.append(powers)
        self._probabilities.append(probabilities[:count])
        spectra = np.abs(np.fft.rfft(chunks * self._window, axis=1)) ** 2
        speech = probabilities[:whole] >= SPEECH_PROBABILITY
        pause = probabilities[:whole] < PAUSE_PROBABILITY
        self._speech_spectrum += spectra[speech].sum(axis=0)
        self._pause_spectrum += spectra[pause].sum(axis=0)
        self._speech_chunks += int(speech.sum())
        self._pause_chunks += int(pause.sum())
        room = MAX_SPEECH_CHUNKS - sum(len(values) for values in self._f0)
        if room > 0:
            self._f0.append(chunk_f0(chunks[speech][:room]))

    def _speech_spectrum_less_noise(self) -> np.ndarray:
        """The mean power spectrum of the speech chunks, less that of the pauses (noise) where there are enough."""
        spectrum = self._speech_spectrum / self._speech_chunks
        if self._pause_chunks >= MIN_PAUSE_CHUNKS:
            # what the pauses hold is noise, in the speech chunks too: keep what speech adds above it
            spectrum = np.maximum(spectrum - self._pause_spectrum / self._pause_chunks, 0.0)
        return spectrum

    def low_band_db(self) -> float | None:
        """The speech's level in LOW_BAND_HZ relative to REFERENCE_BAND_HZ (dB; None without speech). On 25 real
        LibriSpeech clips: -2.5 to +15.1 as recorded (also with noise, or through AMR-NB at 8 kHz), -25.0 to -3.9
        through the 300-3400 Hz telephone band."""
        if self._speech_chunks == 0:
            return None
        spectrum = self._speech_spectrum_less_noise()
        frequencies = np.fft.rfftfreq(CHUNK, 1 / SAMPLE_RATE)
        low = spectrum[(frequencies >= LOW_BAND_HZ[0]) & (frequencies <= LOW_BAND_HZ[1])].mean()
        reference = spectrum[(frequencies >= REFERENCE_BAND_HZ[0]) & (frequencies <= REFERENCE_BAND_HZ[1])].mean()
        if reference <= 0:
            return None
        return float(np.clip(10 * np.log10(max(low / reference, 1e-6)), -60.0, 60.0))

    def bandwidth_hz(self) -> float | None:
        """The highest frequency (Hz, at most 8000 and at most the file's Nyquist frequency) whose speech level is
        within BANDWIDTH_DROP_DB of the speech band's mean level; None without speech."""
        if self._speech_chunks == 0:
            return None
        spectrum = self._speech_spectrum_less_noise()
        frequencies = np.fft.rfftfreq(CHUNK, 1 / SAMPLE_RATE)
        width = max(1, round(SMOOTH_HZ / (SAMPLE_RATE / CHUNK)))
        smoothed = np.convolve(spectrum, np.ones(width) / width, mode="same")
        level_db = 10 * np.log10(smoothed + 1e-20)
        band = (frequencies >= REFERENCE_BAND_HZ[0]) & (frequencies <= REFERENCE_BAND_HZ[1])
        reference_db = float(np.mean(level_db[band]))
        above = np.flatnonzero((level_db >= reference_db - BANDWIDTH_DROP_DB) & (frequencies <= self._nyquist_hz))
        return float(frequencies[above[-1]]) if len(above) else None

    def snr_db(self) -> float | None:
        """Speech power over noise power (dB): speech chunks' mean power less the noise, over the pauses' median
        power (or the quietest chunks' where pauses are too few); None without speech."""
        if not self._powers:
            return None
        powers = np.concatenate(self._powers)
        probabilities = np.concatenate(self._probabilities)
        speech = powers[probabilities >= SPEECH_PROBABILITY]
        pauses = powers[probabilities < PAUSE_PROBABILITY]
        if len(speech) == 0:
            return None
        noise = float(np.median(pauses)) if len(pauses) >= MIN_PAUSE_CHUNKS else float(
            np.percentile(powers, NOISE_PERCENTILE))
        signal = float(np.mean(speech)) - noise
        if signal <= 0:
            return MIN_SNR_DB
        if noise <= 0:
            return MAX_SNR_DB
        return float(np.clip(10 * np.log10(signal / noise), MIN_SNR_DB, MAX_SNR_DB))

    def f0_hz(self) -> float | None:
        """The median F0 (Hz) of the voiced speech chunks; None under fvmatch.quality.pitch.MIN_VOICED_CHUNKS."""
        return median_f0(self._f0)[0]

    def clipped_fraction(self) -> float:
        """The fraction of the file's samples (all channels) that are clipped."""
        return self._clipped / self._samples if self._samples else 0.0

    def result(self, sample_rate: int, codec: str, speech_seconds: float) -> dict:
        """The figures stored with the recording's embedding (plain JSON numbers; None where there was no speech)."""
        bandwidth, snr, low_band, f0 = self.bandwidth_hz(), self.snr_db(), self.low_band_db(), self.f0_hz()
        return {
            "bandwidth_hz": None if bandwidth is None else round(bandwidth, 1),
            "low_band_db": None if low_band is None else round(low_band, 1),
            "snr_db": None if snr is None else round(snr, 1),
            "f0_hz": None if f0 is None else round(f0, 1),
            "clipped_fraction": round(self.clipped_fraction(), 4),
            "speech_seconds": round(float(speech_seconds), 2),
            "sample_rate": int(sample_rate),
            "codec": str(codec),
        }


def _samples_in_runs(mask: np.ndarray, length: int) -> int:
    """How many of `mask`'s trues lie in runs of at least `length` consecutive trues."""
    positions = np.flatnonzero(mask)
    if len(positions) < length:
        return 0
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    runs = np.diff(np.concatenate([[0], breaks, [len(positions)]]))
    return int(runs[runs >= length].sum())
