"""What reading F0 adds to a voice query (fvmatch.quality.pitch, run by the quality meter on every recording), and
how far its F0 lies from librosa's YIN.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/f0_cost.py [--voices ../shared/realmedia/voices] [--repeats 5]
        [--against-librosa]

Each recording is decoded and run through silero-vad once (fvmatch.media.audio.speech_windows); its speech chunks
are then fed to the quality meter's F0 step alone, REPEATS times, and the median time is printed beside the
recording's speech seconds and the whole query's decode + VAD + quality time (the issue's budget: 20 ms a voice).
--against-librosa: each recording's F0 beside librosa's YIN (60-400 Hz, 1024-sample frames, the median over the
louder half of its frames, the first 20 s), the difference in semitones (librosa ships with resemblyzer, the
training extra).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fvmatch.media.audio import SpeechSummary, speech_windows  # noqa: E402
from fvmatch.quality import pitch, voice as voice_quality  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--voices", type=Path, default=ROOT.parent / "shared" / "realmedia" / "voices")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--against-librosa", action="store_true")
    args = parser.parse_args()
    files = sorted(p for p in args.voices.glob("*/*") if p.suffix.lower() in (".flac", ".wav", ".mp3"))
    captured: list[np.ndarray] = []
    original = pitch.chunk_f0
    voice_quality.chunk_f0 = lambda chunks: captured.append(np.array(chunks)) or original(chunks)
    rows = []
    for path in files:
        captured.clear()
        began = time.perf_counter()
        summary = SpeechSummary()
        for _ in speech_windows(path, summary):
            pass
        whole = time.perf_counter() - began
        timings = []
        for _ in range(args.repeats):
            began = time.perf_counter()
            for chunks in captured:
                original(chunks)
            timings.append(time.perf_counter() - began)
        rows.append((path, summary.speech_seconds, whole, statistics.median(timings), summary.meter.f0_hz()))
    print("| recordings | speech s (median, max) | decode + VAD + quality ms (median) | F0 ms (median, max) |")
    print("|---|---|---|---|")
    speech, whole, f0 = (np.array([row[i] for row in rows]) for i in (1, 2, 3))
    print(f"| {len(rows)} of {args.voices} | {np.median(speech):.1f}, {speech.max():.1f} | {1000 * np.median(whole):.0f} "
          f"| {1000 * np.median(f0):.1f}, {1000 * f0.max():.1f} |")
    print(f"F0 per second of speech: {1000 * np.median(f0 / np.maximum(speech, 1e-9)):.2f} ms (median)")
    if args.against_librosa:
        pairs = [(row[4], librosa_f0(row[0])) for row in rows]
        read = [(ours, theirs) for ours, theirs in pairs if ours is not None]
        semitones = np.array([abs(12 * np.log2(ours / theirs)) for ours, theirs in read])
        print(f"F0 against librosa's YIN: {len(read)} of {len(rows)} recordings read; |difference| median "
              f"{np.median(semitones):.2f}, 90th percentile {np.percentile(semitones, 90):.2f}, max "
              f"{semitones.max():.2f} semitones")


def librosa_f0(path: Path) -> float:
    """librosa's YIN F0 of a recording: the median over the louder half of its frames, the first 20 s."""
    import librosa

    samples, rate = librosa.load(path, sr=16000, duration=20)
    f0 = librosa.yin(samples, fmin=60, fmax=400, sr=rate, frame_length=1024, hop_length=256)
    energy = librosa.feature.rms(y=samples, frame_length=1024, hop_length=256)[0][: len(f0)]
    return float(np.median(f0[: len(energy)][energy >= np.median(energy)]))


if __name__ == "__main__":
    main()
