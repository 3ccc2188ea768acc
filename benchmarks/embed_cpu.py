"""CPU time to embed one face image and one 5 s voice clip, per model config, stage by stage.

Run: .venv/bin/python benchmarks/embed_cpu.py [--repeats 5]
Prints a table: median milliseconds of each stage over the repeats (after one warm-up), on this machine's CPU.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import torch

from fvmatch.analysis.embedder import Embedder
from fvmatch.media.audio import SpeechSummary, speech_windows
from fvmatch.media.log_mel import log_mel
from fvmatch.media.image import load_image
from fvmatch.models.checkpoint import Checkpoint, make_card
from fvmatch.models.config import CONFIGS
from fvmatch.models.joint import JointModel
from fvmatch.synth.voices import VoiceTraits, render_voice


def median_ms(function, repeats: int) -> float:
    function()  # warm-up: first calls allocate and pick kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import matplotlib.cbook

    photo = Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    clip_path = Path(tempfile.mkdtemp()) / "clip5s.wav"
    traits = VoiceTraits(female=False, age_years=40, size=0.5, tone=0.5, pitch=0.5, rate=0.5, breathiness=0.3)
    soundfile.write(clip_path, render_voice(traits, np.random.default_rng(0), seconds=5.0), 16000)

    rows = []
    for name, config in CONFIGS.items():
        torch.manual_seed(0)
        model = JointModel(config).eval()
        embedder = Embedder(Checkpoint(model, make_card(config, model.state_dict(), "benchmark")))
        image = load_image(photo)
        crop = embedder.detector.detect(image)[0].pixels[None]
        summary = SpeechSummary()
        mel = torch.from_numpy(log_mel(next(speech_windows(clip_path, summary)).samples))[None]
        with torch.inference_mode():
            stages = {
                "load+detect face (MTCNN)": median_ms(lambda: embedder.detector.detect(load_image(photo)), args.repeats),
                "face subnet+shared FC": median_ms(lambda: embedder.space("joint").embed(crop), args.repeats),
                "face total (embed_face)": median_ms(lambda: embedder.embed_face(photo), args.repeats),
                "load+VAD+log-mel (5 s clip)": median_ms(lambda: list(speech_windows(clip_path)), args.repeats),
                "voice subnet+shared FC": median_ms(lambda: model.embed_voices(mel), args.repeats),
                "voice total (embed_voice)": median_ms(lambda: embedder.embed_voice(clip_path), args.repeats),
            }
        rows.append((name, sum(p.numel() for p in model.parameters()), stages))

    print(f"CPU: {torch.get_num_threads()} threads, torch {torch.__version__}; median of {args.repeats} runs, ms")
    stage_names = list(rows[0][2])
    header = f"{'stage':32s}" + "".join(f"{name:>14s}" for name, _, _ in rows)
    print(header)
    print(f"{'parameters':32s}" + "".join(f"{params:>14,d}" for _, params, _ in rows))
    for stage in stage_names:
        print(f"{stage:32s}" + "".join(f"{stages[stage]:>14.1f}" for _, _, stages in rows))


if __name__ == "__main__":
    main()
