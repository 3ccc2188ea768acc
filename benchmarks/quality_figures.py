"""Quality figures on real media: what each figure reads on clean and degraded copies.

Run: .venv/bin/python benchmarks/quality_figures.py [--realmedia ../shared/realmedia] [--clips 100] [--photos 250]

Voices: every LibriSpeech clip of realmedia/voices (16 kHz FLAC) is measured as it is, as an 8 kHz telephone copy
(300-3400 Hz, fvmatch.media.degrade.telephone_band), as that copy stored at 16 kHz (scipy's upsampler), through
low-bitrate codecs (PyAV), and with white noise added at 0, 5, 10, 20 and 30 dB SNR; the table gives each condition's
median and range of bandwidth and estimated SNR, and for the noisy copies the error against the SNR set. The MP3s
of realmedia (44.1/48 kHz) are streamed block by block as the pipeline streams a file. Faces: MTCNN on every photo
of realmedia/faces, the largest face's figures (median, quartiles, range); then, per face, whether the sharpness
falls with each step of Gaussian blur (sigma 0, 1, 2, 4, 8 px) and what halving the image does to the eye
distance and sharpness. Measured numbers only; nothing is written.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SNRS_DB = (0, 5, 10, 20, 30)
CODECS = (("libopus", 8000), ("amr_nb", 12200), ("libmp3lame", 16000), ("pcm_mulaw", None))


def spread(values) -> str:
    """median [min, max] of the numbers among `values` (None left out, and counted)."""
    numbers = np.array([value for value in values if value is not None], dtype=np.float64)
    missing = len(values) - len(numbers)
    if len(numbers) == 0:
        return "-"
    text = f"{np.median(numbers):.1f} [{numbers.min():.1f}, {numbers.max():.1f}]"
    return text + (f" ({missing} none)" if missing else "")


def quartiles(values, digits: int = 1) -> str:
    """median (IQR low-high, range min-max) of the numbers among `values`."""
    numbers = np.array([value for value in values if value is not None], dtype=np.float64)
    if len(numbers) == 0:
        return "-"
    low, median, high = np.percentile(numbers, [25, 50, 75])
    return (f"{median:.{digits}f} (IQR {low:.{digits}f}-{high:.{digits}f}, "
            f"range {numbers.min():.{digits}f}-{numbers.max():.{digits}f})")


def measure_file(path: Path, block_seconds: float = 60.0) -> dict:
    """A file's voice figures, streamed in blocks as fvmatch.media.audio streams it (soundfile, mono, torchaudio
    resampling to 16 kHz, silero-vad per block)."""
    import soundfile
    import torch
    import torchaudio.functional

    from fvmatch.media.audio import resampling_ratio
    from fvmatch.media.vad import speech_only, speech_probabilities
    from fvmatch.quality.voice import VoiceQualityMeter

    meter, speech_seconds = VoiceQualityMeter(), 0.0
    with soundfile.SoundFile(path) as sound:
        orig, new = resampling_ratio(sound.samplerate)
        for block in sound.blocks(blocksize=int(block_seconds * sound.samplerate), dtype="float32", always_2d=True):
            meter.add(block, sound.samplerate)
            mono = block.mean(axis=1)
            if orig != new:
                mono = torchaudio.functional.resample(torch.from_numpy(mono), orig, new).numpy()
            meter.add_speech(mono, speech_probabilities(mono))
            speech_seconds += len(speech_only(mono)) / 16000
        return meter.result(sound.samplerate, sound.format, speech_seconds)


def voices(root: Path, clips: int) -> None:
    import soundfile
    from scipy.signal import resample_poly

    from fvmatch.media import degrade
    from fvmatch.media.audio import voice_quality_of_clip
    from fvmatch.spaces.conditions import reference_condition

    paths = sorted((root / "voices").glob("librispeech_*/*.flac"))[:clips]
    conditions: dict[str, list[dict]] = {}
    started = time.perf_counter()
    for path in paths:
        samples, rate = soundfile.read(path, dtype="float32")
        phone, phone_rate = degrade.telephone_band(samples, rate)
        copies = {"clean 16 kHz": (samples, rate), "telephone 8 kHz": (phone, phone_rate),
                  "telephone stored at 16 kHz": (resample_poly(phone, 2, 1).astype(np.float32), 16000)}
        for codec, bitrate in CODECS:
            label = f"{codec} {bitrate // 1000} kbit/s" if bitrate else codec
            copies[label] = (degrade.codec_round_trip(samples, rate, codec, bitrate), rate)
        for snr in SNRS_DB:
            copies[f"white noise {snr} dB"] = (degrade.add_noise(samples, snr, seed=snr), rate)
        for label, (copy, copy_rate) in copies.items():
            conditions.setdefault(label, []).append(voice_quality_of_clip(copy, copy_rate))
    print(f"\n{len(paths)} LibriSpeech clips, {len(conditions)} conditions ({time.perf_counter() - started:.0f} s)\n")
    print("| condition | bandwidth_hz median [range] | snr_db median [range] | references it is compared with |")
    print("|---|---|---|---|")
    for label, figures in conditions.items():
        labels = {}
        for quality in figures:
            chosen = reference_condition(quality) or "as enrolled"
            labels[chosen] = labels.get(chosen, 0) + 1
        counts = ", ".join(f"{name} {count}" for name, count in sorted(labels.items()))
        print(f"| {label} | {spread([q['bandwidth_hz'] for q in figures])} | "
              f"{spread([q['snr_db'] for q in figures])} | {counts} |")
    clean = np.array([q["snr_db"] for q in conditions["clean 16 kHz"]])
    estimates = np.array([[q["snr_db"] for q in conditions[f"white noise {snr} dB"]] for snr in SNRS_DB])
    monotonic = int(np.all(np.diff(estimates, axis=0) > 0, axis=0).sum())
    print(f"\nSNR estimate rises with every step of added noise (0/5/10/20/30 dB) on {monotonic} of {len(paths)} clips")
    # the SNR a copy truly has: the noise added plus the clip's own (its clean estimate), powers summed
    true = -10 * np.log10(10 ** (-np.array(SNRS_DB, dtype=np.float64)[:, None] / 10) + 10 ** (-clean[None] / 10))
    print("| SNR set (dB) | estimate median [range] | median error vs set | median error vs set+own noise |")
    print("|---|---|---|---|")
    for row, snr in enumerate(SNRS_DB):
        print(f"| {snr} | {spread(list(estimates[row]))} | {np.median(estimates[row] - snr):+.1f} | "
              f"{np.median(estimates[row] - true[row]):+.1f} |")
    mp3s = sorted((root / "voices").glob("*/*.mp3"))
    if mp3s:
        started = time.perf_counter()
        figures = [measure_file(path) for path in mp3s]
        print(f"\n{len(mp3s)} MP3 speeches streamed in 60 s blocks ({time.perf_counter() - started:.0f} s): "
              f"bandwidth_hz {spread([q['bandwidth_hz'] for q in figures])}, snr_db "
              f"{spread([q['snr_db'] for q in figures])}, clipped_fraction "
              f"{spread([q['clipped_fraction'] for q in figures])}, sample rates "
              f"{sorted({q['sample_rate'] for q in figures})}")


def faces(root: Path, photos: int) -> None:
    from PIL import Image

    from fvmatch.media import degrade
    from fvmatch.media.image import IMAGE_FORMATS, FaceDetector, load_image
    from fvmatch.quality.face import face_quality, jpeg_quality_estimate, sharpness

    detector = FaceDetector()
    paths = sorted(path for path in (root / "faces").glob("*/*") if path.is_file())[:photos]
    figures, falls, half_eyes, half_sharpness, started = [], [], [], [], time.perf_counter()
    none_found = 0
    for path in paths:
        with Image.open(path, formats=IMAGE_FORMATS) as opened:
            quality = jpeg_quality_estimate(opened)
        image = load_image(path)
        found = detector.detect(image)
        if not found:
            none_found += 1
            continue
        face = found[0]
        pixels = np.asarray(image)
        figures.append(face_quality(pixels, face.box, face.landmarks, face.probability, quality))
        steps = [sharpness(np.asarray(degrade.blur(image, sigma)), face.box) for sigma in (0, 1, 2, 4, 8)]
        falls.append([later < earlier for earlier, later in zip(steps, steps[1:])])
        half = image.resize((image.width // 2, image.height // 2), Image.BOX)
        again = detector.detect(half)
        if again:
            half_face = face_quality(np.asarray(half), again[0].box, again[0].landmarks, again[0].probability, None)
            half_eyes.append(half_face["eye_distance_px"] / figures[-1]["eye_distance_px"])
            if figures[-1]["face_px"] >= 128:  # both sizes at least the 64 px the sharpness is read at
                half_sharpness.append(half_face["sharpness"] / figures[-1]["sharpness"])
    print(f"\n{len(paths)} photos, a face found in {len(figures)} ({none_found} none; "
          f"{time.perf_counter() - started:.0f} s)\n")
    print("| figure | median (IQR, range) |")
    print("|---|---|")
    for key in ("eye_distance_px", "face_px", "sharpness", "detection_probability", "jpeg_quality"):
        values = [figure[key] for figure in figures]
        missing = sum(value is None for value in values)
        print(f"| {key} | {quartiles(values)}{f' ({missing} not a standard JPEG table)' if missing else ''} |")
    jpeg_values = sorted({figure["jpeg_quality"] for figure in figures if figure["jpeg_quality"] is not None})
    print(f"JPEG qualities read: {jpeg_values}")
    falls_array = np.array(falls)
    print(f"sharpness falls at each blur step (sigma 0->1->2->4->8 px): "
          f"{', '.join(f'{int(column.sum())}/{len(falls)}' for column in falls_array.T)}; "
          f"at every step on {int(falls_array.all(axis=1).sum())}/{len(falls)}; "
          f"over sigma 0-4 on {int(falls_array[:, :3].all(axis=1).sum())}/{len(falls)}")
    ratios = np.array([figure["eye_distance_px"] / figure["face_px"] for figure in figures])
    print(f"eye distance / box width: {quartiles(list(ratios), 3)}")
    print(f"image halved: eye distance ratio {quartiles(half_eyes, 3)} ({len(half_eyes)} faces found again); "
          f"sharpness ratio for faces >= 128 px {quartiles(half_sharpness, 3)} ({len(half_sharpness)} faces)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realmedia", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "realmedia")
    parser.add_argument("--clips", type=int, default=100)
    parser.add_argument("--photos", type=int, default=250)
    parser.add_argument("--only", choices=("voices", "faces"))
    args = parser.parse_args()
    if not args.realmedia.is_dir():
        raise SystemExit(f"{args.realmedia} is absent: real recordings and photos are needed (shared real media)")
    if args.only != "faces":
        voices(args.realmedia, args.clips)
    if args.only != "voices":
        faces(args.realmedia, args.photos)


if __name__ == "__main__":
    main()
