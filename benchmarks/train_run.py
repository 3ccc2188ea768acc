"""A training run on a synthetic corpus: wall time, pairs/s and held-out figures of each config, side by side.

Run (GPU): .venv/bin/python benchmarks/train_run.py --device cuda --identities 2000 --epochs 12 --passes 12
Run (CPU smoke): .venv/bin/python benchmarks/train_run.py --device cpu --identities 24 --epochs 1 --passes 1 \
    --batch-size 8 --runs small-default small

Runs (`--runs`, in order, all on the same prepared corpus and so on the same held-out `val` identities):
- `wang2020`: the seed's config (Inception-ResNet-v1 faces, DIMNet-voice) at --batch-size, --epochs, --passes;
- `small`: the small config with those same settings;
- `small-default`: the small config with `fvmatch train`'s defaults (batch 64, 10 epochs, 1 pass per epoch).
Held-out figures: the last epoch's validation (verification AUC over every face-voice pair of the val identities,
V-F 1:2 accuracy over all voice/right-face/wrong-face triplets). Synthetic people: this measures the machinery
and the speed, never accuracy on real people.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fvmatch.training.trainer import TrainSettings, train


def generated_cache(directory: Path, identities: int, workers: int) -> Path:
    from fvmatch.synth import CorpusSpec, write_corpus
    from fvmatch.training.prepare import prepare_corpus

    corpus, cache = directory / "corpus", directory / "cache"
    if not (cache / "prepare.json").is_file():
        write_corpus(corpus, CorpusSpec(identities=identities, seed=0, faces_per_identity=2, clips_per_identity=2,
                                        clip_seconds=4.0), workers=workers)
        prepare_corpus(corpus, cache, workers=workers)
    return cache


def settings_of(run: str, args) -> TrainSettings:
    if run == "small-default":
        return TrainSettings(config="small")
    return TrainSettings(config=run, batch_size=args.batch_size, epochs=args.epochs, passes=args.passes,
                         workers=args.workers)


def timed_run(cache: Path, run: str, args, out_dir: Path) -> dict:
    """One run, timed whole: the steps, each epoch's validation and checkpoint included."""
    settings = settings_of(run, args)
    started = time.perf_counter()

    def on_epoch(record: dict) -> None:
        print(f"    {run} epoch {record['epoch']} at {time.perf_counter() - started:.0f} s: val AUC "
              f"{record.get('val_verification_auc', float('nan')):.3f}, V-F 1:2 "
              f"{record.get('val_vf_1to2_accuracy', float('nan')):.3f}", flush=True)

    graph = None
    try:
        result = train(cache, out_dir / f"{run}.safetensors", settings, device=args.device, on_epoch=on_epoch)
    except Exception as error:  # noqa: BLE001 - on a GPU, try once more without the CUDA graph, and say so
        if not args.device.startswith("cuda"):
            raise
        print(f"    {run} FAILED ({type(error).__name__}: {error}); again with eager steps", flush=True)
        graph, started = False, time.perf_counter()
        result = train(cache, out_dir / f"{run}-eager.safetensors", settings, device=args.device, on_epoch=on_epoch,
                       cuda_graph=False)
    seconds = time.perf_counter() - started
    pairs = result.steps * settings.batch_size
    last = result.history[-1]
    return {"run": run, "cuda_graph": graph, "config": settings.config, "batch": settings.batch_size, "epochs": settings.epochs,
            "passes": settings.passes, "steps": result.steps, "pairs": pairs, "wall_seconds": seconds,
            "pairs_per_second": pairs / seconds, "val_identities": last.get("val_identities"),
            "val_verification_auc": last.get("val_verification_auc"),
            "val_vf_1to2_accuracy": last.get("val_vf_1to2_accuracy"), "history": result.history}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--runs", nargs="+", default=["wang2020", "small", "small-default"],
                        choices=["wang2020", "small", "small-default"])
    parser.add_argument("--cache", type=Path, help="prepared shards (default: generate --identities and prepare)")
    parser.add_argument("--work", type=Path, help="where to generate the corpus and write checkpoints (default: a "
                                                  "temporary folder)")
    parser.add_argument("--identities", type=int, default=2000)
    parser.add_argument("--prepare-only", action="store_true", help="generate and prepare the corpus, then stop")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--passes", type=int, default=12)
    parser.add_argument("--workers", type=int, default=8, help="corpus generation processes (and DataLoader "
                                                               "workers where the corpus is not held on the device)")
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        cache = args.cache or generated_cache(work, args.identities, args.workers)
        print(f"corpus ready in {time.perf_counter() - started:.0f} s: {cache}", flush=True)
        if args.prepare_only:
            return
        figures = {"device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU",
                   "torch": torch.__version__, "runs": []}
        for run in args.runs:
            figures["runs"].append(timed_run(cache, run, args, work))
            row = figures["runs"][-1]
            print(f"  {run}: {row['wall_seconds']:.0f} s, {row['pairs_per_second']:,.0f} pairs/s, val AUC "
                  f"{row['val_verification_auc']:.3f}, V-F 1:2 {row['val_vf_1to2_accuracy']:.3f}", flush=True)
            if args.json:
                args.json.write_text(json.dumps(figures, indent=2))

    print(f"device {figures['device']}, torch {figures['torch']}; held-out: the corpus's val identities "
          f"({figures['runs'][0]['val_identities']})")
    print("run | config | batch | epochs x passes | steps | wall s | pairs/s | val AUC | val V-F 1:2")
    for row in figures["runs"]:
        print(f"{row['run']} | {row['config']} | {row['batch']} | {row['epochs']} x {row['passes']} | {row['steps']} | "
              f"{row['wall_seconds']:.0f} | {row['pairs_per_second']:,.0f} | {row['val_verification_auc']:.3f} | "
              f"{row['val_vf_1to2_accuracy']:.3f}")


if __name__ == "__main__":
    main()
