"""The ML engineer's commands for training: prepare, train."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import JsonOption, app, emit_json, plural, say_line, stderr, stdout
from fvmatch.commands.skips import skip_summary
from fvmatch.errors import BadArgument
from fvmatch.progress import item_progress


@app.command()
def prepare(
    data: Path = typer.Argument(..., help="Corpus: faces/<id>/<video>/*.jpg, voices/<id>/<video>/*.wav, meta.csv."),
    cache: Path = typer.Argument(..., help="Directory for the training shards."),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes (0: one per CPU core)."),
    experts: bool = typer.Option(False, "--experts", help="Also compute the dlib-face and ge2e-voice vectors of every "
                                 "item (what the experts, wen2021 and fuse-after-align recipes train on), in worker "
                                 "processes, resumable."),
    frames_per_video: Optional[int] = typer.Option(None, "--frames-per-video", min=1, help="At most N face frames of "
                                                   "each video folder, evenly spread (VoxCeleb holds thousands of "
                                                   "frames of one face per video); default: every frame."),
    as_json: bool = JsonOption,
) -> None:
    """Detect and align faces, keep the speech of voices, and write training shards (resumable)."""
    summary = _run_prepare(data, cache, workers, as_json, frames_per_video)
    if experts:
        summary["experts"] = _run_experts(cache, EXPERT_SPACES, workers, as_json)
    if as_json:
        emit_json(summary)
        return
    if experts:
        found = summary["experts"]
        rate = f", {found['items_per_second']:.2f} items/s" if found["items_per_second"] else ""
        say_line(stdout, f"expert vectors: {found['computed']:,} computed on {plural(found['workers'], 'worker')} in "
                         f"{found['seconds']:.0f} s{rate}, {found['cached']:,} already cached, "
                         f"{found['failed']:,} not embeddable (left out of training)")
    counts = summary["counts"]
    stdout.print(f"prepared {plural(counts['identities'], 'identity', 'identities')}: {plural(counts['faces'], 'face')}, "
                 f"{plural(counts['voices'], 'voice clip')} ({counts['voice_seconds']:.0f} s of speech), "
                 f"{plural(counts['failures'], 'failure')}, in {cache}", highlight=False)
    failures = summary["failures"]
    if failures:
        say_line(stderr, f"fvmatch: skipped {plural(len(failures), 'item')} (all of them in {cache}/prepare.json and "
                         "--json):")
        for line in skip_summary(failures, "error", lambda failure: failure["item"]):
            say_line(stderr, f"  {line}")


def _run_prepare(data: Path, cache: Path, workers: int, quiet: bool, frames_per_video: Optional[int] = None) -> dict:
    from fvmatch.training.prepare import prepare_corpus

    with item_progress(stderr, "prepare", "identities", transient=quiet) as progress:
        task = progress.add_task("prepare", total=None)
        return prepare_corpus(data, cache, workers=workers, progress=lambda n: progress.advance(task, n),
                              total=lambda n: progress.update(task, total=n), frames_per_video=frames_per_video)


EXPERT_SPACES = {"face": "dlib-face", "voice": "ge2e-voice"}


def _run_experts(cache: Path, spaces: dict[str, str], workers: int, quiet: bool) -> dict:
    """The frozen spaces' vectors of every prepared item, computed in worker processes with a progress bar."""
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.training.data import PreparedCorpus
    from fvmatch.training.expert_vectors import compute_expert_vectors

    corpus = PreparedCorpus(cache)
    embedder = Embedder.load()  # only its pretrained spaces are used: the joint weights are never loaded
    with item_progress(stderr, "expert vectors", "items", transient=quiet) as progress:
        task = progress.add_task("experts", total=None)
        try:
            return compute_expert_vectors(corpus, spaces, embedder, workers=workers,
                                          progress=lambda n: progress.advance(task, n),
                                          total=lambda n: progress.update(task, total=n))
        except ValueError as error:
            raise BadArgument(cache, str(error)) from None


def _dry_run(data: Path, out: Path, recipe: str, config: str, epochs: int, batch_size: int, passes: int,
             cache: Optional[Path], workers: int, as_json: bool) -> None:
    """train --dry-run: the plan, measured rates and problems; exit 2 when a problem would stop the run."""
    from fvmatch.training.dry_run import plan_training

    plan = plan_training(data, out, recipe, config, epochs, batch_size, passes=passes, cache=cache, workers=workers)
    if as_json:
        emit_json(plan)
    else:
        for line in dry_run_lines(plan):
            say_line(stdout, line)
    if plan["problems"]:
        raise typer.Exit(2)


def dry_run_lines(plan: dict) -> list[str]:
    """The dry run in words: one line per finding."""
    splits = plan["splits"]
    lines = [f"{plan['data']} ({'prepared shards' if plan['prepared'] else 'corpus, to be prepared'}), recipe "
             f"{plan['recipe']}, config {plan['config']}",
             "identities (usable: a face and a voice): " + ", ".join(
                 f"{name} {entry['usable']:,} of {entry['identities']:,}" for name, entry in splits.items()),
             f"items: {plan['items']['faces']:,} faces, {plan['items']['voices']:,} voice clips"]
    steps = plan["steps"]
    lines.append(f"steps: {steps['per_epoch']:,} per epoch x {steps['epochs']} epochs = {steps['total']:,} "
                 f"(batches of {steps['batch_size']} identities, {steps['pairs_per_epoch']:,} face-voice pairs "
                 "per epoch)")
    rates = ", ".join(f"{stage.replace('_', ' ')} {seconds:.3f} s" for stage, seconds in
                      plan["measured"]["seconds_per_item"].items() if seconds is not None)
    if rates:
        projected = plan["projected"]
        hours = ", ".join(f"{stage.replace('_', ' ')} {_duration(value)}" for stage, value in projected["hours"].items())
        lines.append(f"measured per item: {rates}; projected on {projected['processes']} worker processes: {hours} "
                     f"(total {_duration(projected['total_hours'])})")
    disk = plan["disk"]
    if plan["prepared"]:
        lines.append(f"disk: already prepared in {disk['folder']} ({_size(disk['free_bytes'])} free)")
    else:
        lines.append(f"disk: shards {_size(disk['shards_bytes'])} in {disk['folder']} ({_size(disk['free_bytes'])} "
                     "free)")
    lines += [f"warning: {warning}" for warning in plan["warnings"]]
    lines += [f"problem: {problem}" for problem in plan["problems"]]
    lines.append(f"{plural(len(plan['problems']), 'problem')}: "
                 + ("the run would fail" if plan["problems"] else "nothing found that would stop the run"))
    return lines


def _duration(hours: float) -> str:
    return f"{hours:.1f} h" if hours >= 1 else f"{hours * 60:.1f} min" if hours * 60 >= 1 else f"{hours * 3600:.0f} s"


def _size(count: int) -> str:
    return f"{count / 1e9:.1f} GB" if count >= 1e9 else f"{count / 1e6:.1f} MB"


@app.command()
def train(
    data: Path = typer.Argument(..., help="Prepared shards (from fvmatch prepare), or a corpus to prepare first."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.safetensors), updated every epoch."),
    recipe: str = typer.Option("wang2020", "--recipe", help="Training recipe: wang2020 (end to end on media), "
                               "experts (a head on frozen dlib-face and ge2e-voice vectors), fuse-after-align, "
                               "wen2021 (Wen et al. 2021: two-level alignment, identities reweighted) or xiong2019 "
                               "(Xiong et al. 2019: voice-anchored triplet loss on a sphere)."),
    config: Optional[str] = typer.Option(None, "--config", help="Model config: small or wang2020 (media), experts "
                                         "(frozen spaces), experts-fusion (fuse-after-align). Default: the recipe's "
                                         "own (wang2020, xiong2019: small; experts, wen2021: experts)."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Identities per batch (one face-voice pair each)."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Starting learning rate (decays logarithmically)."),
    lr_end: float = typer.Option(1e-8, "--lr-end", min=0.0, help="Final learning rate."),
    crop_seconds: float = typer.Option(3.0, "--crop-seconds", min=0.5, help="Voice crop length."),
    passes: int = typer.Option(1, "--passes", min=1, help="Passes over the training identities per epoch."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    telephone_fraction: float = typer.Option(0.0, "--telephone-fraction", min=0.0, max=1.0,
                                             help="Share of voice crops narrowed to a telephone band (edges drawn per crop)."),
    face_weights: Optional[Path] = typer.Option(None, "--face-weights", envvar="FVMATCH_FACE_WEIGHTS",
                                                help="Local pretrained face-subnet weights (never downloaded)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Where to prepare shards when DATA is a raw corpus."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run that wrote --out."),
    eager: bool = typer.Option(False, "--eager", help="On CUDA, run each step eagerly rather than replaying it as "
                               "one CUDA graph, and read batches through the DataLoader rather than from the "
                               "corpus held in GPU memory (for debugging; 4x fewer pairs/s at batch 256 on an H200)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Write nothing: report identities per split, steps, "
                                 "disk and time (measured on a few of DATA's files) and what would fail (exit 2)."),
    as_json: bool = JsonOption,
) -> None:
    """Train the joint face-voice embedding with a recipe (default: Wang et al. 2020); same command under torchrun
    for many GPUs."""
    from fvmatch.extras import require_training_extra

    require_training_extra("fvmatch train", ("torch", "torchaudio", "torchvision", "facenet_pytorch"))
    from fvmatch.models.config import CONFIGS
    from fvmatch.training.output_path import check_output_path
    from fvmatch.training.recipes import RECIPES

    if not dry_run:
        check_output_path(out)  # before any hour is spent preparing or training
    if recipe not in RECIPES:
        raise BadArgument("--recipe", f"unknown recipe {recipe!r}; known: {', '.join(sorted(RECIPES))}")
    config = config or RECIPES[recipe].default_config
    if config not in CONFIGS:
        raise BadArgument("--config", f"unknown config {config!r}; known: {', '.join(sorted(CONFIGS))}")
    if resume and not out.is_file():
        raise BadArgument(out, "nothing to resume: no checkpoint here")
    if dry_run:
        _dry_run(data, out, recipe, config, epochs, batch_size, passes, cache, workers, as_json)
        return
    if not (data / "prepare.json").is_file():
        if not (data / "meta.csv").is_file():
            raise BadArgument(data, "neither prepared shards (prepare.json) nor a corpus (meta.csv)")
        cache = cache or data / "prepared"
        _run_prepare(data, cache, 0, as_json)
        data = cache
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fvmatch.training.trainer import TrainSettings, train as train_model

    model_config = CONFIGS[config]
    # computed here, in parallel and with a bar, rather than silently inside training (under torchrun the ranks
    # would race for the same files: there each computes what it lacks, as before)
    if model_config.experts and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        _run_experts(data, {"face": model_config.face_input, "voice": model_config.voice_input}, 0, as_json)

    settings = TrainSettings(recipe=recipe, config=config, epochs=epochs, batch_size=batch_size, lr_start=lr, lr_end=lr_end,
                             crop_seconds=crop_seconds, passes=passes, seed=seed, workers=workers,
                             telephone_fraction=telephone_fraction, face_weights=str(face_weights) if face_weights else None)
    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=as_json) as progress:
        task = progress.add_task("train", total=None, status="")

        shown = {"at": 0.0}

        def on_step(report) -> None:
            progress.update(task, total=report.total_steps, completed=report.step)
            if time.monotonic() - shown["at"] < 0.5 and report.step < report.total_steps:
                return  # reading the loss waits for the GPU: a few times a second is enough for the eye
            shown["at"] = time.monotonic()
            terms = report.terms
            progress.update(task, status=(
                f"epoch {report.epoch + 1} loss {report.loss:.3f} (rank f>v {terms['face_to_voice']:.3f} "
                f"v>f {terms['voice_to_face']:.3f} id {terms['identity_face'] + terms['identity_voice']:.2f}) "
                f"lr {report.learning_rate:.1e} {report.pairs_per_second:.0f} pairs/s"))

        def on_epoch(record: dict) -> None:
            if as_json:
                return
            if "val_note" in record:
                measured = f"validation {record['val_note']}"
            else:
                measured = (f"validation AUC {record['val_verification_auc']:.4f}, V-F 1:2 "
                            f"{record['val_vf_1to2_accuracy']:.4f}")
            progress.console.print(f"epoch {record['epoch'] + 1}: step {record['step']}, {measured}", highlight=False)

        try:
            result = train_model(data, out, settings, device=device, resume=resume, on_step=on_step, on_epoch=on_epoch,
                                 data_on_device=False if eager else None, cuda_graph=False if eager else None)
        except ValueError as error:
            raise BadArgument(data, str(error).removeprefix(f"{data}: ")) from None
        except FloatingPointError as error:  # diverged: the settings' doing (checkpoints of earlier epochs are kept)
            raise BadArgument("train", str(error)) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 reports
    if as_json:
        emit_json({"checkpoint": str(result.checkpoint), "model_id": result.model_id, "steps": result.steps,
                   "history": result.history})
    else:
        stdout.print(f"wrote {result.checkpoint} (model {result.model_id[:16]}) after {result.steps} steps", highlight=False)
