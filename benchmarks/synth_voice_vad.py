"""How much of each synthetic voice clip silero-vad calls speech, and how fast clips are made.

Draws random identities (traits uniform, half female), renders one clip each,
runs silero-vad with its default parameters at 16 kHz and prints one table row:
clips, mean and minimum speech fraction, minimum speech seconds, ms per clip.

    python benchmarks/synth_voice_vad.py [--clips 200] [--seconds 4] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from silero_vad import get_speech_timestamps, load_silero_vad

from fvmatch.synth.identity import uniform_voice_traits
from fvmatch.synth.voices import SAMPLE_RATE, render_voice



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    identities = [uniform_voice_traits(rng) for _ in range(args.clips)]
    clip_rngs = [np.random.default_rng([args.seed, i]) for i in range(args.clips)]

    render_voice(identities[0], np.random.default_rng(0), args.seconds)  # warm-up: imports, caches
    # Wall and CPU time both: on a shared machine the CPU time is the stable one.
    wall_start, cpu_start = time.perf_counter(), time.process_time()
    clips = [render_voice(traits, clip_rng, args.seconds) for traits, clip_rng in zip(identities, clip_rngs)]
    wall_ms = (time.perf_counter() - wall_start) * 1000.0 / args.clips
    cpu_ms = (time.process_time() - cpu_start) * 1000.0 / args.clips

    torch.set_num_threads(1)
    vad = load_silero_vad()
    speech_seconds = np.array(
        [
            sum(seg["end"] - seg["start"] for seg in get_speech_timestamps(torch.from_numpy(clip), vad))
            / SAMPLE_RATE
            for clip in clips
        ]
    )
    fractions = speech_seconds / args.seconds

    print(
        f"| clips | seconds | mean speech fraction | min speech fraction | min speech s "
        f"| ms per {args.seconds:g} s clip (wall) | ms per clip (CPU) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {args.clips} | {args.seconds:g} | {fractions.mean():.3f} | {fractions.min():.3f} "
        f"| {speech_seconds.min():.2f} | {wall_ms:.2f} | {cpu_ms:.2f} |"
    )


if __name__ == "__main__":
    main()
