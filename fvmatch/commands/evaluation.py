"""Measuring and calibrating a model: evaluate, calibrate."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import JsonOption, ModelOption, app, emit_json, stderr, stdout
from fvmatch.progress import item_progress


def _embed_split(data: Path, embedder, split: str, cache: Optional[Path], quiet: bool):
    from fvmatch.evaluation import embed_corpus

    with item_progress(stderr, f"embed {split}", "files", transient=quiet) as progress:
        task = progress.add_task("embed", total=None)
        return embed_corpus(data, embedder, split=split, cache_dir=cache,
                            progress=lambda n: progress.advance(task, n), total=lambda n: progress.update(task, total=n))


@app.command()
def evaluate(
    data: Path = typer.Argument(..., help="Labelled corpus: faces/, voices/, meta.csv (with gender, nationality, age)."),
    model: Optional[Path] = ModelOption,
    split: str = typer.Option("test", "--split", help="Split to evaluate on (identity-disjoint from training)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the trial lists and the bootstrap."),
    trials: Optional[Path] = typer.Option(None, "--trials", help="Evaluate this trial list (CSV/JSON) instead of drawing one."),
    write_trials_to: Optional[Path] = typer.Option(None, "--write-trials", help="Also write the trial list used here."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Directory for ROC/DET/1:N/histogram PNGs."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Embedding cache directory (each file embedded once)."),
    as_json: bool = JsonOption,
) -> None:
    """Evaluate a model with the published protocols (verification, 1:2, 1:N, retrieval), with 95% CIs."""
    from fvmatch.embedder import Embedder
    from fvmatch.evaluation import evaluate as run_evaluation, read_trials, table2_rows, trials_for, without_scores
    from fvmatch.evaluation import write_plots, write_trials

    embedder = Embedder.load(model)
    embedded = _embed_split(data, embedder, split, cache, as_json)
    trial_list = read_trials(trials) if trials else trials_for(embedded, seed)
    if write_trials_to:
        write_trials(trial_list, write_trials_to)
    results = run_evaluation(embedded, seed=seed, trials=trial_list, calibration=embedder.card.get("calibration"))
    written = write_plots(results, plots) if plots else []
    if as_json:
        emit_json({**without_scores(results), "plots": [str(p) for p in written]})
        return
    from rich.table import Table

    table = Table(title=f"model {results['model_id'][:16]} on {results['data']} split {results['split']} "
                        f"({results['identities']} identities, seed {results['seed']})")
    for column in ("protocol", "stratum", "ours (%)", "95% CI", "published (%)"):
        table.add_column(column, justify="left" if column in ("protocol", "stratum") else "right")
    for row in table2_rows(results):
        interval = row["ours_ci"]
        table.add_row(row["protocol"], row["stratum"], "-" if row["ours"] is None else f"{row['ours']:.2f}",
                      "-" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}",
                      "-" if row["published"] is None else f"{row['published']:.2f}")
    stdout.print(table)
    counts = results["trials"]["counts"]
    stdout.print(f"{sum(counts.values()):,} trials in {len(counts)} blocks, {results['trials']['skipped']} skipped; "
                 f"{len(results['failures'])} files failed to embed; published: Wang et al. 2020, Table 2. "
                 + results["note"], highlight=False)
    for path in written:
        stdout.print(f"plot: {path}", highlight=False)


@app.command()
def calibrate(
    data: Path = typer.Argument(..., help="Labelled corpus (faces/, voices/, meta.csv)."),
    out: Path = typer.Option(..., "--out", "-o", help="Calibrated checkpoint to write (same weights, same model id)."),
    model: Optional[Path] = ModelOption,
    split: str = typer.Option("val", "--split", help="Split whose trials fit the calibration (not the test split)."),
    seed: int = typer.Option(0, "--seed"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Embedding cache directory."),
    as_json: bool = JsonOption,
) -> None:
    """Fit score -> log10 LR per trial type, thresholds at 1% / 0.1% FMR and EER, Cllr; store them in the card."""
    from fvmatch.calibration import calibrate as fit_calibration, write_calibrated_checkpoint
    from fvmatch.embedder import Embedder

    embedder = Embedder.load(model)
    embedded = _embed_split(data, embedder, split, cache, as_json)
    calibration = fit_calibration(embedded, seed=seed)
    write_calibrated_checkpoint(embedder.checkpoint_path, out, calibration)
    if as_json:
        emit_json({"checkpoint": str(out), "model_id": embedder.model_id, "calibration": calibration})
        return
    for kind in ("face-voice", "face-face", "voice-voice"):
        entry = calibration.get(kind)
        if entry is None:
            continue
        points = ", ".join(f"FMR {p['fmr_target']:.1%}: score > {p['threshold']:.4f}" for p in entry["operating_points"])
        stdout.print(f"{kind}: {entry['trials']['same']:,} same / {entry['trials']['different']:,} different trials; "
                     f"EER {entry['eer']['value']:.2%}, Cllr {entry['cllr']:.3f} (min {entry['cllr_min']:.3f}); {points}",
                     highlight=False)
    stdout.print(f"wrote {out} (model {embedder.model_id[:16]}, calibrated on {data} split {split})", highlight=False)
