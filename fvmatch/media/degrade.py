"""Degraded copies of real media, as casework evidence arrives: telephone band, noise, low-bitrate codecs, small,
compressed or blurred faces.

Every function is deterministic (noise is drawn from a seeded generator) and leaves its input untouched. Tests
generate their degraded media here, and so does the degraded-evidence benchmark, so both see the same conditions.
Audio is mono float32 in [-1, 1]; images are PIL RGB images.
"""
from __future__ import annotations

import io
from fractions import Fraction

import numpy as np
from PIL import Image, ImageFilter

TELEPHONE_RATE = 8000
TELEPHONE_BAND_HZ = (300.0, 3400.0)  # the voice band of analogue and G.711 telephony (ITU-T G.712)
FILTER_ORDER = 6  # Butterworth order; run forwards and backwards (zero phase), so 12 in effect
# what each codec is written in, and the sample rates its encoder takes (the rate closest to the input's is used)
CODECS = {
    "libopus": ("ogg", (8000, 12000, 16000, 24000, 48000)),  # VoIP and messenger voice notes (Opus)
    "aac": ("adts", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),  # phone video, streaming
    "libmp3lame": ("mp3", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)),  # downloaded audio
    "amr_nb": ("amr", (8000,)),  # GSM / 3G mobile calls (AMR narrowband, 4.75-12.2 kbit/s)
    "pcm_mulaw": ("wav", (8000,)),  # G.711 mu-law: fixed-line and VoIP telephone trunks
    "pcm_alaw": ("wav", (8000,)),  # G.711 A-law, the European variant
}
MAX_CODEC_DELAY_SECONDS = 0.1  # the delay a codec may add (priming samples); it is removed by cross-correlation


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """scipy's polyphase resampler (its Kaiser anti-alias filter: nothing above the new Nyquist survives)."""
    from scipy.signal import resample_poly

    if rate == new_rate:
        return samples.astype(np.float32)
    ratio = Fraction(new_rate, rate)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def band_limit(samples: np.ndarray, rate: int, high_hz: float, low_hz: float = 0.0) -> np.ndarray:
    """`samples` band-passed to low_hz..high_hz (low-passed when low_hz is 0), at the same rate: a narrow channel
    (a cheap microphone, a narrowband codec's low-pass) on a recording that was then stored at a higher rate."""
    from scipy.signal import butter, sosfiltfilt

    nyquist = rate / 2
    if not 0 <= low_hz < high_hz:
        raise ValueError(f"band {low_hz:g}-{high_hz:g} Hz is empty")
    if high_hz >= nyquist and low_hz == 0:
        return samples.astype(np.float32)
    if high_hz >= nyquist:
        sos = butter(FILTER_ORDER, low_hz, btype="highpass", fs=rate, output="sos")
    elif low_hz > 0:
        sos = butter(FILTER_ORDER, [low_hz, high_hz], btype="bandpass", fs=rate, output="sos")
    else:
        sos = butter(FILTER_ORDER, high_hz, btype="lowpass", fs=rate, output="sos")
    return sosfiltfilt(sos, samples).astype(np.float32)


def telephone_band(samples: np.ndarray, rate: int) -> tuple[np.ndarray, int]:
    """(samples, 8000): a telephone call as intercepted, band-passed to 300-3400 Hz and sampled at 8 kHz."""
    low, high = TELEPHONE_BAND_HZ
    return resample(band_limit(samples, rate, high, low), rate, TELEPHONE_RATE), TELEPHONE_RATE


def add_noise(samples: np.ndarray, snr_db: float, seed: int, kind: str = "white") -> np.ndarray:
    """`samples` plus stationary noise scaled so that signal power over noise power, over the whole signal, is
    exactly `snr_db`: "white" (flat: electronic hiss, a noisy line) or "pink" (-3 dB per octave: ventilation,
    traffic, a crowd far off). The noise is drawn from `seed`; the sum may exceed [-1, 1] (it is not clipped)."""
    generator = np.random.default_rng(seed)
    noise = generator.standard_normal(len(samples))
    if kind == "pink":
        spectrum = np.fft.rfft(noise)
        frequencies = np.arange(len(spectrum), dtype=np.float64)
        frequencies[0] = 1.0  # no infinite gain at DC
        noise = np.fft.irfft(spectrum / np.sqrt(frequencies), n=len(samples))
    elif kind != "white":
        raise ValueError(f"unknown noise kind {kind!r} (white or pink)")
    signal_power = float(np.mean(np.square(samples, dtype=np.float64)))
    noise_power = float(np.mean(np.square(noise)))
    if signal_power == 0:
        raise ValueError("the signal is silent: no SNR can be set")
    scale = np.sqrt(signal_power / (noise_power * 10 ** (snr_db / 10)))
    return (samples + scale * noise).astype(np.float32)


def encode_with_codec(samples: np.ndarray, rate: int, codec: str, bitrate: int | None = None) -> tuple[bytes, str]:
    """(file bytes, container): `samples` encoded with one of CODECS by FFmpeg through PyAV, at `bitrate` bit/s
    (the encoder's default when None). Resampled first to the codec's supported rate nearest `rate`."""
    import av

    if codec not in CODECS:
        raise ValueError(f"codec {codec!r} is not one of {', '.join(CODECS)}")
    container_format, rates = CODECS[codec]
    codec_rate = min(rates, key=lambda candidate: (abs(candidate - rate), -candidate))
    pcm = np.clip(resample(samples, rate, codec_rate), -1.0, 1.0)
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=container_format) as container:
        stream = container.add_stream(codec, rate=codec_rate)
        stream.layout = "mono"
        if bitrate is not None:
            stream.bit_rate = bitrate
        formats = [audio_format.name for audio_format in stream.codec_context.codec.audio_formats]
        sample_format = next(name for name in ("flt", "fltp", "s16", "s16p") if name in formats)
        frame_samples = stream.codec_context.frame_size or 1024
        if sample_format.startswith("s16"):
            data = (pcm * 32767).round().astype(np.int16)
        else:
            data = pcm.astype(np.float32)
        for start in range(0, len(data), frame_samples):
            frame = av.AudioFrame.from_ndarray(data[None, start : start + frame_samples], format=sample_format,
                                               layout="mono")
            frame.sample_rate = codec_rate
            frame.pts = start
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue(), container_format


def decode_audio(data: bytes) -> tuple[np.ndarray, int]:
    """(mono float32 samples, rate) of an encoded audio file held in memory, decoded by FFmpeg through PyAV."""
    import av

    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        pieces = [resampled.to_ndarray().reshape(-1) for frame in container.decode(stream)
                  for resampled in resampler.resample(frame)]
        pieces += [resampled.to_ndarray().reshape(-1) for resampled in resampler.resample(None)]
    return (np.concatenate(pieces) if pieces else np.zeros(0, np.float32)).astype(np.float32), rate


def codec_round_trip(samples: np.ndarray, rate: int, codec: str, bitrate: int | None = None) -> np.ndarray:
    """`samples` as they come out of a lossy codec: encoded (encode_with_codec), decoded, brought back to `rate`,
    the codec's delay removed and the length made that of the input, so that the copy lines up sample for sample."""
    data, _ = encode_with_codec(samples, rate, codec, bitrate)
    decoded, decoded_rate = decode_audio(data)
    decoded = resample(decoded, decoded_rate, rate)
    delay = _delay(samples, decoded, int(MAX_CODEC_DELAY_SECONDS * rate))
    aligned = decoded[delay:] if delay >= 0 else np.concatenate([np.zeros(-delay, np.float32), decoded])
    return np.pad(aligned[: len(samples)], (0, max(0, len(samples) - len(aligned)))).astype(np.float32)


def _delay(reference: np.ndarray, delayed: np.ndarray, max_lag: int) -> int:
    """The lag (samples, within +-max_lag) at which `delayed` best matches `reference` (FFT cross-correlation)."""
    size = len(reference) + len(delayed)
    correlation = np.fft.irfft(np.fft.rfft(delayed, size) * np.conj(np.fft.rfft(reference, size)), size)
    lags = np.r_[np.arange(0, max_lag + 1), np.arange(-max_lag, 0)]
    return int(lags[np.argmax(correlation[lags])])


def shrink_face(image: Image.Image, face_box, face_px: float) -> Image.Image:
    """The whole image resized (area averaging, as a low-resolution sensor integrates light over each pixel) so that
    the face box (x1, y1, x2, y2) becomes `face_px` pixels wide: a CCTV still or a face far from the camera."""
    scale = face_px / (face_box[2] - face_box[0])
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.BOX if scale < 1 else Image.BILINEAR)


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    """`image` JPEG-compressed at IJG `quality` (1-100) in memory and decoded again: a photo re-saved or shared
    through messaging apps and social networks. The result keeps its quantisation tables (`image.quantization`)."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    compressed = Image.open(io.BytesIO(buffer.getvalue()))
    compressed.load()
    return compressed


def blur(image: Image.Image, sigma: float) -> Image.Image:
    """`image` under a Gaussian blur of standard deviation `sigma` pixels: a face out of focus, or an image that
    was enlarged from a smaller one."""
    return image.filter(ImageFilter.GaussianBlur(radius=sigma)) if sigma > 0 else image.copy()
