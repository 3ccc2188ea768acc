"""Measuring and calibrating a model: evaluate, calibrate (each trial type in the embedding space that scores it)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (JsonOption, ModelOption, app, emit_json, plural, printable, say_line, stderr,
                                     stdout)
from fvmatch.progress import item_progress

DataArgument = typer.Argument(..., help="Labelled media: a corpus with meta.csv (faces/<id>/<video>/<file>, "
                              "voices/<id>/<video>/<file>), or a plain folder faces/<person>/<file>, "
                              "voices/<person>/<file> without one (every person used, no strata).")
EvaluationSpaceOption = typer.Option(
    None, "--space", help="Evaluate everything this space can score (joint, dlib-face, ge2e-voice; sex: the sex "
    "evidence's face-voice protocols, with dlib-face and ge2e-voice); default: face-voice protocols in joint and "
    "by sex, face-face in dlib-face, voice-voice in ge2e-voice.")


def _spaces(space: Optional[str], model: Optional[Path] = None) -> list[str]:
    """The spaces to embed in: --space alone, else every trial type's default space (a bad name refused early)."""
    from fvmatch.errors import BadArgument
    from fvmatch.evaluation.corpus import DEFAULT_SPACES
    from fvmatch.spaces import SPACE_MODALITIES

    if space is None:
        from fvmatch.extras import joint_space_available
        from fvmatch.spaces import JOINT

        # where the joint space cannot run (no torch, no ONNX graphs of the model) its face-voice trials are left out
        return [name for name in DEFAULT_SPACES if name != JOINT or joint_space_available(model)]
    if space == "sex":  # the sex evidence: read from the faces' and voices' vectors of the spaces its heads read
        from fvmatch.evaluation.attribute_evidence import FACE_SPACE, VOICE_SPACE

        return [FACE_SPACE, VOICE_SPACE]
    if space not in SPACE_MODALITIES:
        raise BadArgument("--space", f"{space!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    if space == "joint":
        from fvmatch.extras import require_joint_space

        require_joint_space("--space joint", model)
    return [space]


def _split(data: Path, split: Optional[str], default: str) -> Optional[str]:
    """The split to embed: --split, else `default` for a corpus with meta.csv; a plain folder has none. An unknown
    or empty split is refused here, before any trial list is read or file embedded."""
    from fvmatch.corpus import corpus_layout, split_rows

    if corpus_layout(data) == "plain":
        return split  # (a split given for a plain folder is refused by embed_spaces, naming the folder)
    split = split if split is not None else default
    split_rows(data, split)
    return split


def _embed(data: Path, embedder, spaces: list[str], split: Optional[str], cache: Optional[Path], quiet: bool):
    from fvmatch.evaluation import embed_spaces

    with item_progress(stderr, f"embed {split or 'all'}", "files", transient=quiet) as progress:
        task = progress.add_task("embed", total=None)
        return embed_spaces(data, embedder, spaces, split=split, cache_dir=cache,
                            progress=lambda n: progress.advance(task, n), total=lambda n: progress.update(task, total=n))


def _read_trial_list(path: Path, data: Path, split: Optional[str]):
    """--trials: fvmatch's list or a published one (fvmatch.evaluation.trials), its names mapped through DATA's
    meta.csv. Trials naming files absent from DATA are said and skipped (as items that fail to embed are), and so
    are those naming people of another split; a list none of whose trials is in DATA is refused."""
    from fvmatch.corpus import corpus_layout, read_meta
    from fvmatch.errors import BadArgument
    from fvmatch.evaluation.trials import FORMAT, absent_items, locate_nested_frames, read_trials

    rows = read_meta(data) if corpus_layout(data) == "meta" else []
    names = {row["name"]: row["identity"] for row in rows}
    trial_list = read_trials(path, names=names)
    if not trial_list.trials:
        raise BadArgument(path, "lists no trials")
    if trial_list.list_format != FORMAT:
        say_line(stderr, f"fvmatch: {path}: {plural(len(trial_list.trials), 'trial')}, read as a {trial_list.list_format}")
    trial_list, nested = locate_nested_frames(trial_list, data)
    if nested:
        say_line(stderr, f"fvmatch: {path}: {plural(nested, 'face frame')} named <video>/<frame> found in a folder per "
                         "utterance (<video>/<utterance>/<frame>, the nested VoxCeleb1 release)")
    absent, files = absent_items(trial_list, data)
    if absent == len(trial_list.trials):
        raise BadArgument(path, f"none of its {absent:,} trials names files in {data} ({len(files):,} files absent, "
                                f"first {files[0]}): another corpus, or faces or voices not imported")
    if absent:
        note = (f"{absent:,} of {len(trial_list.trials):,} trials name files absent from {data} "
                f"({plural(len(files), 'file')}, first {files[0]}): skipped")
        trial_list.shortfalls.append(note)
        say_line(stderr, f"fvmatch: {path}: {note}")
    outside = _outside_split(trial_list, rows, split)
    if outside:
        note = (f"{outside:,} of {len(trial_list.trials):,} trials name people outside split {split!r}: skipped "
                "(--split evaluates another)")
        trial_list.shortfalls.append(note)
        say_line(stderr, f"fvmatch: {path}: {note}")
    return trial_list


def _outside_split(trial_list, rows: list[dict], split: Optional[str]) -> int:
    """How many trials name someone of meta.csv who is not in the split evaluated."""
    if split is None:
        return 0
    elsewhere = {row["identity"] for row in rows if row["split"] != split}
    return sum(any(item.split("/")[1] in elsewhere for item in (trial.probe, *trial.candidates) if item.count("/") >= 2)
               for trial in trial_list.trials)


@app.command()
def evaluate(
    data: Path = DataArgument,
    model: Optional[Path] = ModelOption,
    space: Optional[str] = EvaluationSpaceOption,
    split: Optional[str] = typer.Option(None, "--split", help="Split to evaluate on (identity-disjoint from "
                                        "training); default test. A plain folder has none."),
    seed: int = typer.Option(0, "--seed", help="Seed of the trial lists and the bootstrap."),
    trials: Optional[Path] = typer.Option(None, "--trials", help="Evaluate this trial list instead of drawing one: "
                                          "fvmatch's CSV/JSON, or a published list as distributed (Learnable PINs "
                                          "veriflists, matching lists, VoxCeleb1's)."),
    write_trials_to: Optional[Path] = typer.Option(None, "--write-trials", help="Also write the trial list used here."),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Directory for ROC/DET/1:N/histogram PNGs."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Embedding cache directory (each file embedded once per space)."),
    as_json: bool = JsonOption,
) -> None:
    """Evaluate with the published protocols (verification, 1:2, 1:N, retrieval), each in its space, with 95% CIs."""
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.evaluation import evaluate as run_evaluation, table2_rows, trials_for, without_scores
    from fvmatch.evaluation import write_plots, write_trials

    from fvmatch.evaluation.attribute_evidence import evaluate_sex

    spaces = _spaces(space, model)
    split = _split(data, split, "test")
    given = _read_trial_list(trials, data, split) if trials else None  # a bad list fails before embedding
    embedder = Embedder.load(model, load_weights=True)  # a bad model fails here, not once per file
    corpora = _embed(data, embedder, spaces, split, cache, as_json)
    trial_list = given if given is not None else trials_for(corpora, seed)
    if write_trials_to:
        write_trials(trial_list, write_trials_to)
    results = run_evaluation(corpora, seed=seed, trials=trial_list, calibration=embedder.card.get("calibration"),
                             trained_identities=embedder.card.get("training", {}).get("identities"))
    # the sex read from each side, weighed as face-voice evidence: U beside G, so it is never read as identity
    results["attribute_evidence"] = evaluate_sex(corpora, seed, given)
    written = write_plots(results, plots) if plots else []
    if as_json:
        emit_json({**without_scores(results), "plots": [str(p) for p in written]})
        return
    where = f"split {results['split']}" if results["split"] is not None else "(plain folder, every person)"
    people = plural(results["identities"], "identity", "identities")
    _print_figures(f"{results['data']} {where} ({people}, seed {results['seed']})", table2_rows(results))
    _say_sex_evidence(results["attribute_evidence"])
    for name, entry in results["spaces"].items():
        scored = ", ".join(entry["trial_types"]) or "nothing (the other spaces score its trial types)"
        say_line(stdout, f"space {name}: model {entry['model_id'][:16]}, {entry['dim']}-D; scored {scored}; "
                         f"{plural(entry['items']['faces'], 'face')}, {plural(entry['items']['voices'], 'voice')}")
    for skipped in results["not_evaluated"]:
        say_line(stdout, f"not evaluated: {skipped['protocols']} ({skipped['reason']})")
    _say_gaps(results)
    counts = results["trials"]["counts"]
    say_line(stdout, f"{plural(sum(counts.values()), 'trial')} in {plural(len(counts), 'block')}, "
                     f"{results['trials']['skipped']} skipped; {plural(len(results['failures']), 'file')} failed to "
                     "embed; published: Wang et al. 2020, Table 2. "
                     + results["note"])
    for path in written:
        say_line(stdout, f"plot: {path}")


def _print_figures(title: str, rows: list[dict], published: bool = True) -> None:
    """Table 2's rows (fvmatch.evaluation.table2_rows): ours with its interval, the space, the published figure."""
    from rich import box
    from rich.table import Table

    # no column rules and single spaces between columns: six columns fit in 80 characters
    table = Table(title=printable(title), box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    columns = ("protocol", "stratum", "space", "ours %", "95% CI") + (("published %",) if published else ())
    for column in columns:
        table.add_column(column, justify="left" if column in ("protocol", "stratum", "space") else "right",
                         no_wrap=True)
    for row in rows:
        interval = row["ours_ci"]
        cells = [row["protocol"], row["stratum"], row["space"] or "-",
                 "-" if row["ours"] is None else f"{row['ours']:.2f}",
                 "-" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"]
        if published:
            cells.append("-" if row["published"] is None else f"{row['published']:.2f}")
        table.add_row(*cells)
    stdout.print(table)


def _say_sex_evidence(found: dict) -> None:
    """The sex evidence's face-voice figures (fvmatch.evaluation.attribute_evidence), or why there are none."""
    from fvmatch.evaluation import table2_rows

    if "why_not" in found:
        say_line(stdout, f"sex evidence not evaluated: {found['why_not']}")
        return
    _print_figures(f"sex evidence, face-voice ({plural(found['identities'], 'identity', 'identities')}): not "
                   "identity evidence", table2_rows(found), published=False)
    say_line(stdout, found["note"])


def _say_gaps(results: dict) -> None:
    """In text, what --json holds beside the table: why a row shows "-", the warnings, the skipped trials by reason
    and the files that failed to embed (summarised by reason)."""
    from fvmatch.commands.skips import skip_summary
    from fvmatch.evaluation import table2_rows

    for row in table2_rows(results):
        if row["why_not"] is not None:
            say_line(stdout, f"- {row['protocol']} {row['stratum']}: {row['why_not']}")
    for warning in results["warnings"]:
        say_line(stdout, f"warning: {warning}")
    reasons = results["trials"]["skipped_reasons"]
    if reasons:
        say_line(stdout, f"skipped trials: {'; '.join(f'{count:,} {why}' for why, count in reasons.items())}")
    if results["failures"]:
        say_line(stdout, f"failed to embed ({plural(len(results['failures']), 'file')}, all of them in --json):")
        for line in skip_summary(results["failures"], "error", lambda failure: failure["item"]):
            say_line(stdout, f"  {line}")


@app.command()
def calibrate(
    data: Path = DataArgument,
    out: Path = typer.Option(..., "--out", "-o", help="Calibrated checkpoint to write (same weights, same model id)."),
    model: Optional[Path] = ModelOption,
    space: Optional[str] = typer.Option(
        None, "--space", help="Calibrate the trial types this space can score (joint, dlib-face, ge2e-voice); "
        "default: face-voice in joint, face-face in dlib-face, voice-voice in ge2e-voice."),
    split: Optional[str] = typer.Option(None, "--split", help="Split whose trials fit the calibration (not the test "
                                        "split); default val. A plain folder has none: all of it is used."),
    seed: int = typer.Option(0, "--seed"),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Embedding cache directory."),
    add: bool = typer.Option(False, "--add", help="Keep the model's other calibration entries (e.g. the clean "
                             "voice-voice one beside a telephone condition's), replacing only those fitted here."),
    face_band: Optional[str] = typer.Option(None, "--face-band", help="The data's faces are of this size band "
                                            "(small, medium, large by eye distance): the face-face map is kept for "
                                            "questions of that band. Needs --space dlib-face."),
    as_json: bool = JsonOption,
) -> None:
    """Fit score -> log10 LR per (space, trial type), thresholds at 1% / 0.1% FMR and EER, Cllr; store them in the
    card (replacing its calibration, or adding to it with --add)."""
    from fvmatch.calibration.fitting import added_to, calibrate as fit_calibration, write_calibrated_checkpoint
    from fvmatch.analysis.embedder import Embedder

    if space == "sex":
        from fvmatch.errors import BadArgument

        raise BadArgument("--space", "'sex': the sex evidence's confusion and bounds ship with its heads "
                                     "(benchmarks/attributes.py measures them); calibrate fits embedding spaces")
    spaces = _spaces(space, model)
    if face_band is not None:
        from fvmatch.errors import BadArgument
        from fvmatch.quality.face import FACE_BANDS

        if face_band not in [name for name, _ in FACE_BANDS]:
            raise BadArgument("--face-band", f"{face_band!r} is not one of {', '.join(name for name, _ in FACE_BANDS)}")
        if spaces != ["dlib-face"]:
            raise BadArgument("--face-band", "a size band calibrates face-face trials: give it with --space dlib-face")
    split = _split(data, split, "val")
    embedder = Embedder.load(model, load_weights=True)  # a bad model fails here, not once per file
    corpora = _embed(data, embedder, spaces, split, cache, as_json)
    from fvmatch.evidence.fused_scores import fused_scorer
    from fvmatch.evidence.sex_fusion import add_sex_fusion

    # a fuse-after-align model: its face-voice trials are calibrated by the fused score too (what verify reports)
    calibration = fit_calibration(corpora, seed=seed, face_band=face_band, fused=fused_scorer(embedder))
    # the joint space's face-voice trials fused with the sex read from each side, fitted on the same pairs
    calibration = add_sex_fusion(calibration, corpora, seed)
    if add:
        calibration = added_to(embedder.card.get("calibration"), calibration)
    write_calibrated_checkpoint(embedder.checkpoint_path, out, calibration)
    if as_json:
        emit_json({"checkpoint": str(out), "model_id": embedder.model_id, "calibration": calibration})
        return
    for key, entry in calibration.items():
        if not isinstance(entry, dict) or "map" not in entry:
            continue
        points = ", ".join(f"FMR {p['fmr_target']:.1%}: score > {p['threshold']:.4f}" for p in entry["operating_points"])
        say_line(stdout, f"{entry['space']} {key.removeprefix(entry['space']).strip()} (model {entry['space_model_id'][:16]}): "
                         f"{entry['trials']['same']:,} same / {entry['trials']['different']:,} different trials; "
                         f"EER {entry['eer']['value']:.2%}, Cllr {entry['cllr']:.3f} (min {entry['cllr_min']:.3f}); {points}")
    source = f"split {split}" if split is not None else "every person of the folder"
    say_line(stdout, f"wrote {out} (model {embedder.model_id[:16]}, calibrated on {data}, {source})")
