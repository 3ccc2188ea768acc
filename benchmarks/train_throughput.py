"""Training throughput: pairs/s of the full training loop against a plain fp32 PyTorch loop of the same model, and
where the time goes.

Run (GPU): .venv/bin/python benchmarks/train_throughput.py --device cuda --config wang2020 --batch-size 256
Run (CPU smoke): .venv/bin/python benchmarks/train_throughput.py --device cpu --config small --batch-size 16 --steps 4

All in one process, one after the other:
- plain fp32: the model, loss and SGD (foreach) on random tensors already on the device, log-mel given: model
  compute alone, the reference the issue quotes (about 3,400 pairs/s at batch 256 on one H100);
- the trainer's step on random tensors (training/step.py: bf16 autocast, channels_last faces, log-mel of the
  waveforms on the device, the whole loss, fused SGD, center update), eager and as a CUDA graph
  (training/cuda_graph.py), at the batch and at twice the batch;
- where one eager step's time goes: each part run alone, milliseconds per step (synchronised before and after);
- with `--parts graph`, the CUDA graph's step against eager steps from the same start (losses and weights);
- the full loop, `fvmatch.training.trainer.train` on prepared shards (a synthetic corpus generated and prepared
  here unless --cache is given), timed between consecutive steps after warm-up, so data, launches and
  synchronisation all count: batches through DataLoader workers, and batches assembled in device memory
  (training/device_data.py, the trainer's default on CUDA), eager and as a CUDA graph (the trainer's default);
- with `--parts compile`, the trainer's step under torch.compile (its compile time in the JSON).
`--parts` picks what runs (the plain step always runs: every ratio is to it, in the same process). The table
prints pairs/s, each loop's ratio to the plain one and the TFLOP/s that means; --json writes every figure.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fvmatch.media.log_mel import log_mel_batch
from fvmatch.models.config import get_config
from fvmatch.models.face import standardize_faces
from fvmatch.models.joint import IdentityClassifier, JointModel
from fvmatch.training.losses import CenterLoss, JointLoss
from fvmatch.training.cuda_graph import GraphedStep
from fvmatch.training.step import make_step
from fvmatch.training.trainer import TrainSettings, TrainNet, train
from train_run import generated_cache  # (a sibling script: benchmarks/ is on the path)

SAMPLES = 48000  # 3 s crops, the trainer's default


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def full_loop(cache: Path, config: str, batch: int, steps: int, warmup: int, device: str, workers: int,
              on_device: bool, graph: bool) -> float:
    stamps: list[float] = []
    settings = TrainSettings(config=config, epochs=1, batch_size=batch, crop_seconds=SAMPLES / 16000,
                             workers=workers, passes=10_000)  # one long epoch; stopped after `steps`

    class Enough(Exception):
        pass

    def on_step(report) -> None:
        if len(stamps) + 1 in (warmup, warmup + steps):
            synchronize(device)  # the window's ends wait for the GPU; the steps between run as in training
        stamps.append(time.perf_counter())
        if len(stamps) >= warmup + steps:
            raise Enough

    with tempfile.TemporaryDirectory() as out:
        try:
            train(cache, Path(out) / "bench.safetensors", settings, device=device, on_step=on_step,
                  data_on_device=on_device, cuda_graph=graph)
        except Enough:
            pass
    return batch * steps / (stamps[-1] - stamps[warmup - 1])


class Step:
    """One training step of the model on fixed random inputs: the plain fp32 loop, or the trainer's own step
    (training/step.py: bf16 autocast, channels_last, log-mel of the waveforms, fused SGD, center update), eager,
    under torch.compile (`compile_mode`) or as a CUDA graph (`graph`, training/cuda_graph.py)."""

    def __init__(self, config_name: str, batch: int, device: str, identities: int, trainer_like: bool,
                 graph: bool = False, compile_mode: str | None = None, seed: int = 0) -> None:
        config = get_config(config_name)
        cuda = device.startswith("cuda")
        self.device, self.trainer_like, self.cuda = device, trainer_like, cuda
        torch.manual_seed(seed)
        self.net = TrainNet(JointModel(config), IdentityClassifier(config.embedding_dim, identities)).to(device)
        self.centers = CenterLoss(identities, config.embedding_dim).to(device)
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4,
                                         fused=(trainer_like and cuda) or None)
        self.objective = JointLoss()
        generator = torch.Generator(device).manual_seed(seed)
        self.faces = torch.randint(0, 256, (batch, 3, 160, 160), dtype=torch.uint8, device=device,
                                   generator=generator)
        self.waveforms = torch.randn(batch, SAMPLES, device=device, generator=generator) * 0.1
        self.mel = log_mel_batch(self.waveforms)
        self.labels = torch.randperm(identities, device=device, generator=generator)[:batch]
        if trainer_like and cuda:
            self.net.model.face.to(memory_format=torch.channels_last)
            self.faces = self.faces.contiguous(memory_format=torch.channels_last)
        model = torch.compile(self.net, mode=compile_mode) if compile_mode else self.net
        self.run = make_step(model, self.objective, self.centers, self.optimizer, torch.device(device),
                             autocast_cache=not graph)
        self.graphed = GraphedStep(self.run, self.optimizer, torch.device(device)) if graph else None

    def __call__(self) -> torch.Tensor:
        if not self.trainer_like:
            face_vectors, voice_vectors, face_logits, voice_logits = self.net(self.faces, self.mel)
            loss, _ = self.objective.on_device(face_vectors, voice_vectors, face_logits, voice_logits, self.labels,
                                               self.centers)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            return loss.detach()
        mel = log_mel_batch(self.waveforms)
        if self.graphed is not None:
            self.graphed.set_learning_rate(1e-3)
            return self.graphed(self.faces, mel, self.labels)[0]
        self.optimizer.zero_grad(set_to_none=True)
        return self.run(self.faces, mel, self.labels)[0]


def graph_agrees_with_eager(config: str, batch: int, device: str, identities: int, steps: int = 8) -> dict:
    """The same steps from the same start, eager and as a CUDA graph, each step drawing the same dropout masks:
    each step's loss and the weights at the end, as relative differences. Eager against eager again gives the
    spread of the GPU's own non-determinism (atomics); the weights' relative change over the steps gives the
    scale (a graph that trained nothing would differ from eager by that much)."""
    runs = {name: Step(config, batch, device, identities, trainer_like=True, graph=graph)
            for name, graph in (("eager", False), ("eager again", False), ("graph", True))}

    def weights(step: Step) -> torch.Tensor:
        return torch.cat([p.detach().float().flatten() for p in step.net.parameters()])

    start = weights(runs["eager"])
    generator = torch.Generator(device).manual_seed(1)
    losses: dict[str, list[float]] = {name: [] for name in runs}
    for k in range(steps):
        waveforms = torch.randn(batch, SAMPLES, device=device, generator=generator) * 0.1
        for name, step in runs.items():
            step.waveforms.copy_(waveforms)
            torch.manual_seed(1000 + k)  # the same dropout masks in every run (a graph's replay reads the seed)
            losses[name].append(float(step()))
    reference = weights(runs["eager"])
    result = {"steps": steps, "losses": losses,
              "relative weight change over the steps": float((reference - start).norm() / start.norm())}
    for name in ("eager again", "graph"):
        result[f"{name}: max relative loss difference"] = max(
            abs(a - b) / abs(a) for a, b in zip(losses["eager"], losses[name]))
        result[f"{name}: relative weight difference"] = float(
            (weights(runs[name]) - reference).norm() / reference.norm())
    return result


def seconds_per_call(call, steps: int, warmup: int, device: str) -> float:
    for _ in range(warmup):
        call()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        call()
    synchronize(device)
    return (time.perf_counter() - start) / steps


def where_time_goes(step: Step, steps: int, warmup: int) -> dict[str, float]:
    """Milliseconds per step of each part of the trainer's step run alone (the device synchronised before and
    after)."""
    model, device = step.net.model, step.device
    autocast = dict(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=step.cuda)

    def face_part():
        with torch.autocast(**autocast):
            out = model.face(standardize_faces(step.faces))
        out.float().sum().backward()

    def voice_part():
        with torch.autocast(**autocast):
            out = model.voice(log_mel_batch(step.waveforms))
        out.float().sum().backward()

    def log_mel_part():
        log_mel_batch(step.waveforms)

    def optimizer_part():
        step.optimizer.step()

    parts = {"face subnet forward+backward": face_part, "voice subnet forward+backward (with log-mel)": voice_part,
             "log-mel alone": log_mel_part, "SGD step alone": optimizer_part, "whole trainer step": step}
    return {name: 1000 * seconds_per_call(call, steps, warmup, device) for name, call in parts.items()}


def flops_per_pair(config: str, device: str, identities: int) -> float:
    """Floating-point operations of one pair's forward and backward (torch's FLOP counter, matrix products and
    convolutions), at batch 8."""
    from torch.utils.flop_counter import FlopCounterMode

    step = Step(config, 8, device, identities, trainer_like=False)
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops() / 8


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
    parser.add_argument("--parts", nargs="+", default=["steps", "full"], choices=["steps", "graph", "full", "compile"],
                        help="steps: the plain and trainer's steps on random tensors and where time goes; graph: "
                             "the CUDA graph's step against eager steps from the same start; full: "
                             "the full loops on prepared shards; compile: the trainer's step under torch.compile")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    device, batch = args.device, args.batch_size
    identities = max(2 * batch, args.identities)
    figures: dict = {"device": torch.cuda.get_device_name() if device.startswith("cuda") else "CPU",
                     "torch": torch.__version__, "config": args.config, "batch": batch, "steps": args.steps}
    rows: list[tuple[str, float]] = []

    def attempt(name: str, measure) -> None:
        """report(name, measure()); a failure is printed and recorded, and the other measurements go on."""
        try:
            report(name, measure())
        except Exception as error:  # noqa: BLE001 - one failed variant must not cost the lease's other figures
            figures.setdefault("errors", {})[name] = f"{type(error).__name__}: {error}"
            print(f"  {name}: FAILED {type(error).__name__}: {error}", flush=True)

    def report(name: str, pairs_per_second: float) -> None:
        rows.append((name, pairs_per_second))
        figures.setdefault("pairs_per_second", {})[name] = pairs_per_second
        print(f"  {name}: {pairs_per_second:,.0f} pairs/s", flush=True)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))

    figures["gflop_per_pair"] = flops_per_pair(args.config, device, identities) / 1e9
    plain = Step(args.config, batch, device, identities, trainer_like=False)
    report("plain fp32 step (model compute only)", batch / seconds_per_call(plain, args.steps, args.warmup, device))
    del plain
    cuda = device.startswith("cuda")
    if "steps" in args.parts:
        for size in (batch, 2 * batch):
            for graph in (False, True) if cuda else (False,):
                step = Step(args.config, size, device, identities, trainer_like=True, graph=graph)
                attempt(f"trainer's step, {'CUDA graph' if graph else 'eager'}, batch {size}",
                        lambda: size / seconds_per_call(step, args.steps, args.warmup, device))
                if size == batch and not graph:
                    figures["milliseconds_per_step"] = where_time_goes(step, args.steps, args.warmup)
                del step
        if cuda:
            figures["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30

    if "graph" in args.parts and cuda:
        try:
            figures["graph_check"] = graph_agrees_with_eager(args.config, batch, device, identities)
        except Exception as error:  # noqa: BLE001 - as in attempt()
            figures["graph_check"] = {"error": f"{type(error).__name__}: {error}"}
        print("  graph check:", {k: v for k, v in figures["graph_check"].items() if k != "losses"}, flush=True)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))

    if "full" in args.parts:
        with tempfile.TemporaryDirectory() as scratch:
            started = time.perf_counter()
            cache = args.cache or generated_cache(Path(scratch), args.identities, workers=args.workers)
            figures["prepare_seconds"] = time.perf_counter() - started
            loops = [(f"full loop, DataLoader ({args.workers} workers, pinned), eager, batch {batch}", batch, False,
                      False)]
            if cuda:
                loops += [(f"full loop, batches in device memory, eager, batch {batch}", batch, True, False),
                          (f"full loop, batches in device memory, CUDA graph, batch {batch}", batch, True, True),
                          (f"full loop, batches in device memory, CUDA graph, batch {2 * batch}", 2 * batch, True,
                           True)]
            else:
                loops += [(f"full loop, batches in memory, batch {batch}", batch, True, False)]
            for name, size, on_device, graph in loops:
                attempt(name, lambda: full_loop(cache, args.config, size, args.steps, args.warmup, device,
                                                args.workers, on_device, graph))

    if "compile" in args.parts:
        started = time.perf_counter()
        compiled = Step(args.config, batch, device, identities, trainer_like=True, compile_mode="default")
        compiled()
        synchronize(device)
        figures["compile_seconds"] = time.perf_counter() - started
        report("trainer's step, torch.compile (default mode)",
               batch / seconds_per_call(compiled, args.steps, args.warmup, device))

    print(f"device {figures['device']}, torch {figures['torch']}, config {args.config}, batch {batch}, "
          f"{args.steps} timed steps after {args.warmup} warm-up; {figures['gflop_per_pair']:.2f} GFLOP per pair "
          f"(forward + backward)")
    print("loop | pairs/s | ratio to plain | TFLOP/s")
    base = rows[0][1]
    for name, value in rows:
        print(f"{name} | {value:,.0f} | {value / base:.2f} | {value * figures['gflop_per_pair'] / 1e3:.1f}")
    print("part of the trainer's step, run alone | ms per step")
    for name, value in figures.get("milliseconds_per_step", {}).items():
        print(f"{name} | {value:.1f}")


if __name__ == "__main__":
    main()
