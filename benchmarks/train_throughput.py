"""Training throughput: pairs/s of the full training loop against a plain fp32 PyTorch loop of the same model.

Run (GPU): .venv/bin/python benchmarks/train_throughput.py --device cuda --config wang2020 --batch-size 256
Run (CPU smoke): .venv/bin/python benchmarks/train_throughput.py --device cpu --config small --batch-size 16 --steps 6

- full loop: `fvmatch.training.trainer.train` on prepared shards (a synthetic corpus generated and prepared here
  unless --cache is given): DataLoader workers reading the shards, log-mel on the device, bf16 autocast and
  channels_last on CUDA, the whole loss, SGD step, center update. Timed between consecutive steps after warm-up,
  so data loading, launches and synchronisation all count.
- plain loop: the same model and loss on random tensors already on the device, fp32, no data path: model compute
  alone, the reference the issue quotes (about 3,400 pairs/s at batch 256 on one H100).
Both run in the same process, one after the other; the table prints pairs/s and their ratio.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fvmatch.models.config import get_config
from fvmatch.models.joint import IdentityClassifier, JointModel
from fvmatch.training.losses import CenterLoss, JointLoss
from fvmatch.training.trainer import TrainSettings, TrainNet, train


def prepared_cache(directory: Path, identities: int, workers: int) -> Path:
    from fvmatch.synth import CorpusSpec, write_corpus
    from fvmatch.training.prepare import prepare_corpus

    corpus, cache = directory / "corpus", directory / "cache"
    write_corpus(corpus, CorpusSpec(identities=identities, seed=0, faces_per_identity=2, clips_per_identity=2,
                                    clip_seconds=4.0), workers=workers)
    prepare_corpus(corpus, cache, workers=workers)
    return cache


def full_loop(cache: Path, config: str, batch: int, steps: int, warmup: int, device: str, workers: int) -> float:
    stamps: list[float] = []
    settings = TrainSettings(config=config, epochs=1, batch_size=batch, crop_seconds=3.0, workers=workers,
                             passes=10_000)  # one long epoch; stopped after `steps`

    class Enough(Exception):
        pass

    def on_step(report) -> None:
        if len(stamps) + 1 in (warmup, warmup + steps) and device.startswith("cuda"):
            torch.cuda.synchronize()  # the window's ends wait for the GPU; the steps between run as in training
        stamps.append(time.perf_counter())
        if len(stamps) >= warmup + steps:
            raise Enough

    with tempfile.TemporaryDirectory() as out:
        try:
            train(cache, Path(out) / "bench.safetensors", settings, device=device, on_step=on_step)
        except Enough:
            pass
    return batch * steps / (stamps[-1] - stamps[warmup - 1])


def plain_loop(config_name: str, batch: int, steps: int, warmup: int, device: str, identities: int) -> float:
    config = get_config(config_name)
    net = TrainNet(JointModel(config), IdentityClassifier(config.embedding_dim, identities)).to(device)
    centers = CenterLoss(identities, config.embedding_dim).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    objective = JointLoss()
    faces = torch.randint(0, 256, (batch, 3, 160, 160), dtype=torch.uint8, device=device)
    mel = torch.randn(batch, 64, 301, device=device)
    labels = torch.randperm(identities, device=device)[:batch]
    for step in range(warmup + steps):
        if step == warmup:
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
        face_vectors, voice_vectors, face_logits, voice_logits = net(faces, mel)
        loss, _ = objective.on_device(face_vectors, voice_vectors, face_logits, voice_logits, labels, centers)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--config", default="wang2020")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers of the full loop")
    parser.add_argument("--cache", type=Path, help="prepared shards to read (default: make a synthetic corpus)")
    parser.add_argument("--identities", type=int, default=600, help="identities of the generated corpus")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        cache = args.cache or prepared_cache(Path(scratch), args.identities, workers=0)
        prepare_seconds = time.perf_counter() - started
        plain = plain_loop(args.config, args.batch_size, args.steps, args.warmup, args.device,
                           identities=max(args.batch_size, args.identities))
        full = full_loop(cache, args.config, args.batch_size, args.steps, args.warmup, args.device, args.workers)
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"device {device_name}, torch {torch.__version__}, config {args.config}, batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up; corpus prepared in {prepare_seconds:.0f} s")
    print("loop | pairs/s | ratio to plain")
    print(f"plain fp32 (model compute only) | {plain:,.0f} | 1.00")
    print(f"full loop (shards, bf16 on CUDA) | {full:,.0f} | {full / plain:.2f}")


if __name__ == "__main__":
    main()
