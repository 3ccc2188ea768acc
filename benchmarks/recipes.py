"""Every training recipe on the same synthetic corpus for the same number of steps, evaluated the way
`fvmatch evaluate` evaluates: one markdown table of recipe x (verification AUC U and G, F-V and V-F 1:2 U and G,
retrieval mAP), each with its 95% bootstrap interval over the test identities, with training wall time and pairs/s.

Run (CPU, the defaults: about 10-12 minutes on 2 busy shared cores, most of it the experts vectors and the
small-config runs):
    .venv/bin/python benchmarks/recipes.py
Options: --identities N (corpus size, 80/10/10 split), --steps, --batch-size, --device cpu cuda (both when CUDA is
there), --recipes NAME[@CONFIG] ... (default: every registered recipe at its default config; --other-configs adds
wen2021 on small and xiong2019 on experts), --work DIR (keep the corpus, its shards and the cached vectors between runs).

Each run: `fvmatch.training.trainer.train`, one epoch of ceil(steps / batches per pass) passes over the training
identities (exactly --steps when it is a whole number of passes, as with the defaults; the table shows the steps
run), its learning rate decaying from --lr to --lr/10; then
`Embedder.load(checkpoint)` embeds the test split's files through the real inference path (MTCNN faces, the
recipe's spaces) and `fvmatch.evaluation.evaluate` scores the trials drawn from seed 0. "train s" is the whole
`train` call (for wen2021 its weight-learning stage included, shown apart as "stage-1 steps"); pairs/s counts the
main loop's steps only. Synthetic data: the figures compare recipes on this generator, never real people.
"""
from __future__ import annotations

import argparse
import math
import tempfile
import time
import traceback
from pathlib import Path

import torch

from fvmatch.evaluation import TrialCounts, embed_corpus, evaluate, table2_rows
from fvmatch.training.recipes import RECIPES
from fvmatch.training.trainer import TrainSettings, train

COLUMNS = (("AUC U", "verification AUC", "U"), ("AUC G", "verification AUC", "G"),
           ("F-V 1:2 U", "F-V 1:2 accuracy", "U"), ("F-V 1:2 G", "F-V 1:2 accuracy", "G"),
           ("V-F 1:2 U", "V-F 1:2 accuracy", "U"), ("V-F 1:2 G", "V-F 1:2 accuracy", "G"),
           ("mAP F-V", "F-V retrieval mAP", "-"), ("mAP V-F", "V-F retrieval mAP", "-"))
OTHER_CONFIG = {"wen2021": "small", "xiong2019": "experts"}


def prepared_corpus(work: Path, identities: int) -> tuple[Path, Path]:
    """(corpus, shards), generated and prepared once under `work`."""
    from fvmatch.synth import CorpusSpec, write_corpus
    from fvmatch.training.prepare import prepare_corpus

    corpus, cache = work / "corpus", work / "cache"
    if not (cache / "prepare.json").is_file():
        write_corpus(corpus, CorpusSpec(identities=identities, seed=3, faces_per_identity=2, clips_per_identity=2,
                                        clip_seconds=3.0), workers=0)
        prepare_corpus(corpus, cache, workers=0)
    return corpus, cache


def default_runs(other_configs: bool) -> list[tuple[str, str]]:
    runs = [(name, recipe.default_config) for name, recipe in RECIPES.items()]
    return runs + [(name, config) for name, config in OTHER_CONFIG.items() if other_configs and name in RECIPES]


def run_one(recipe: str, config: str, corpus: Path, cache: Path, out: Path, args, device: str) -> dict:
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.training.data import PreparedCorpus

    train_ids = len(PreparedCorpus(cache).split("train"))
    batch = min(args.batch_size, train_ids)
    settings = TrainSettings(recipe=recipe, config=config, epochs=1, batch_size=batch, crop_seconds=2.0,
                             passes=math.ceil(args.steps / (train_ids // batch)), lr_start=args.lr,
                             lr_end=args.lr / 10, seed=0)
    stamps: list[float] = []
    started = time.perf_counter()
    train(cache, out, settings, device=device, on_step=lambda report: stamps.append(time.perf_counter()))
    seconds = time.perf_counter() - started
    # the main loop's pairs/s: first step's end to the last's, (steps - 1) batches
    pairs_per_second = batch * (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 else float("nan")
    from fvmatch.models.checkpoint import read_card

    card = read_card(out)
    weighting = card["training"]["recipe"].get("identity_weighting", {})
    embedder = Embedder.load(out, device=device, load_weights=True)
    embedded = embed_corpus(corpus, embedder, split="test")
    results = evaluate(embedded, seed=0, counts=TrialCounts(verification=4000, same_modality=0, matching=2000,
                                                            one_to_n=0), keep_scores=False)
    rows = {(row["protocol"], row["stratum"]): row for row in table2_rows(results)}
    return {"recipe": recipe, "config": config, "device": device, "steps": len(stamps), "batch": batch,
            "stage1_steps": weighting.get("steps"), "seconds": seconds, "pairs_per_second": pairs_per_second,
            "test_identities": results["identities"],
            "figures": {label: rows.get((protocol, stratum)) for label, protocol, stratum in COLUMNS}}


def cell(row: dict | None) -> str:
    if row is None or row["ours"] is None:
        return "-"
    low, high = row["ours_ci"]
    return f"{row['ours']:.1f} ({low:.1f}-{high:.1f})"


def markdown(results: list[dict]) -> str:
    header = ["recipe", "config", "device", "steps x batch", "stage-1 steps", "train s", "pairs/s",
              *[label for label, _, _ in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        if "error" in result:
            lines.append(f"| {result['recipe']} | {result['config']} | {result['device']} | failed: "
                         f"{result['error']} |" + " |" * (len(header) - 4))
            continue
        lines.append("| " + " | ".join([
            result["recipe"], result["config"], result["device"], f"{result['steps']} x {result['batch']}",
            str(result["stage1_steps"] or "-"), f"{result['seconds']:.0f}", f"{result['pairs_per_second']:.0f}",
            *[cell(result["figures"][label]) for label, _, _ in COLUMNS]]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=100)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    parser.add_argument("--recipes", nargs="+", help="NAME or NAME@CONFIG (default: see the module docstring)")
    parser.add_argument("--work", type=Path, help="keep the corpus, shards and cached vectors here")
    parser.add_argument("--other-configs", action="store_true",
                        help="also wen2021 on small and xiong2019 on experts (like-for-like; minutes more)")
    args = parser.parse_args()
    runs = [tuple(entry.split("@", 1)) if "@" in entry else (entry, RECIPES[entry].default_config)
            for entry in args.recipes] if args.recipes else default_runs(args.other_configs)

    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        corpus, cache = prepared_corpus(work, args.identities)
        print(f"corpus: {args.identities} synthetic identities, prepared in {time.perf_counter() - started:.0f} s",
              flush=True)
        results = []
        for device in args.device:
            for recipe, config in runs:
                out = work / f"{recipe}-{config}-{device}.safetensors"
                out.unlink(missing_ok=True)
                try:
                    results.append(run_one(recipe, config, corpus, cache, out, args, device))
                except Exception as error:  # one recipe failing leaves the others' rows: the table names why
                    traceback.print_exc()
                    results.append({"recipe": recipe, "config": config, "device": device,
                                    "error": f"{type(error).__name__}: {error}".replace("|", "/")[:200]})
                print(markdown(results[-1:]).splitlines()[-1], flush=True)
        print(f"\n{args.steps} steps of batch {args.batch_size} per recipe, lr {args.lr} -> {args.lr / 10}, "
              f"{args.identities} synthetic identities (test split evaluated, seed 0), "
              f"total {time.perf_counter() - started:.0f} s\n")
        print(markdown(results))


if __name__ == "__main__":
    main()
