"""The fvmatch command line: parse arguments, call the library, render a rich table or JSON.

Heavy libraries (torch, facenet-pytorch) are imported inside the commands that need them, so that
`fvmatch --help` and usage errors stay fast. Errors: see `main` and ARCHITECTURE.md section 10.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from fvmatch.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_NO_MATCH, BadArgument, FvmatchError
from fvmatch.progress import item_progress

app = typer.Typer(
    name="fvmatch",
    help="Forensic face-voice matching: enroll faces and voices, verify, identify across modalities.\n\n"
    "Exit codes: 0 success; 1 nothing met the decision threshold; 2 bad usage or bad input; 3 internal failure.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
stdout = Console()
stderr = Console(stderr=True)

ModelOption = typer.Option(None, "--model", envvar="FVMATCH_MODEL", help="Checkpoint (.safetensors); default: the shipped one.")
JsonOption = typer.Option(False, "--json", help="One JSON document on stdout, nothing else there.")


def emit_json(document: object) -> None:
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Directory to write the corpus into."),
    identities: int = typer.Option(100, "--identities", "-n", min=2, help="Number of identities."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same files."),
    faces: int = typer.Option(4, "--faces-per-identity", min=1),
    clips: int = typer.Option(4, "--clips-per-identity", min=1),
    clip_seconds: float = typer.Option(4.0, "--clip-seconds", min=1.5, max=60.0),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes (0: one per CPU core)."),
    as_json: bool = JsonOption,
) -> None:
    """Generate the synthetic paired face-voice corpus (training layout, meta.csv with splits)."""
    from fvmatch.synth import CorpusSpec, write_corpus

    spec = CorpusSpec(identities=identities, seed=seed, faces_per_identity=faces, clips_per_identity=clips,
                      clip_seconds=clip_seconds)
    with item_progress(stderr, "synth", "identities", transient=as_json) as progress:
        task = progress.add_task("synth", total=identities)
        summary = write_corpus(out, spec, workers=workers, progress=lambda n: progress.advance(task, n))
    if as_json:
        emit_json({"out": str(out), **summary})
        return
    ceiling = summary["ideal_observer_1to2_accuracy"]
    stdout.print(f"wrote {summary['faces']} faces and {summary['clips']} clips of {identities} identities to {out} "
                 f"(splits {summary['splits']}); ideal observer 1:2 accuracy U {ceiling['U']:.3f}, G {ceiling['G']:.3f}")


@app.command()
def embed(
    face: Optional[Path] = typer.Option(None, "--face", help="Image file."),
    voice: Optional[Path] = typer.Option(None, "--voice", help="Audio file (WAV, FLAC, OGG)."),
    model: Optional[Path] = ModelOption,
    all_faces: bool = typer.Option(False, "--all-faces", help="Embed every face in the image, not only the largest."),
    min_speech: float = typer.Option(1.0, "--min-speech", min=0.1, help="Seconds of speech required."),
    as_json: bool = JsonOption,
) -> None:
    """Print the joint embedding of one face image or one voice recording, with its quality figures."""
    if (face is None) == (voice is None):
        raise BadArgument("embed", "give exactly one of --face IMG or --voice AUDIO")
    from fvmatch.embedder import Embedder

    embedder = Embedder.load(model, min_speech_seconds=min_speech)
    embeddings = embedder.embed_face(face, all_faces=all_faces) if face else [embedder.embed_voice(voice)]
    if as_json:
        documents = [embedding.to_dict() for embedding in embeddings]
        emit_json(documents if all_faces else documents[0])
        return
    for embedding in embeddings:
        quality = ", ".join(f"{key} {value}" for key, value in embedding.quality.items())
        stdout.print(f"[bold]{embedding.modality}[/bold] {embedding.source}  ({quality})")
        stdout.print(f"model {embedding.model_id[:16]}  {len(embedding.vector)}-D unit vector:")
        stdout.print(" ".join(f"{value:+.4f}" for value in embedding.vector), soft_wrap=False)


GalleryOption = typer.Option(Path("fvmatch-gallery"), "--gallery", "-g", envvar="FVMATCH_GALLERY",
                             help="Gallery directory (default $FVMATCH_GALLERY, else ./fvmatch-gallery).")
FmrOption = typer.Option(0.01, "--fmr", help="Operating point: false-match rate of the decision (0.01 or 0.001).")
LockTimeoutOption = typer.Option(60.0, "--lock-timeout", min=0.0, help="Seconds to wait for another writer.")


def _open_gallery(path: Path):
    from fvmatch.gallery import Gallery

    return Gallery.open(path)


def _audit(gallery, command: str, inputs: list[dict], result: dict, model_id: str) -> None:
    """Append this command to the gallery's hash-chained audit trail (arguments as typed)."""
    from fvmatch.audit import append_audit

    append_audit(gallery, command, sys.argv[1:], inputs, result, model_id)


def _input(path: Path) -> dict:
    from fvmatch.enrollment import file_digest

    return {"path": str(Path(path).resolve()), "sha256": file_digest(Path(path))[0]}


def _say_waiting(message: str) -> None:
    stderr.print(f"fvmatch: {message} ...", highlight=False)


@app.command()
def enroll(
    identity: Optional[str] = typer.Option(None, "--identity", "-i", help="Label of the person the files show."),
    face: list[Path] = typer.Option([], "--face", help="Face image (repeatable)."),
    voice: list[Path] = typer.Option([], "--voice", help="Voice recording (repeatable)."),
    from_dir: Optional[Path] = typer.Option(None, "--from-dir", help="DIR/<label>/<files>; modality from file type."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV: identity,modality,path (paths relative to it)."),
    force: bool = typer.Option(False, "--force", help="Enroll a file already enrolled under another identity."),
    gallery_path: Path = GalleryOption,
    model: Optional[Path] = ModelOption,
    lock_timeout: float = LockTimeoutOption,
    as_json: bool = JsonOption,
) -> None:
    """Enroll face images and voice recordings into the gallery (created on first use, pinned to the model).

    A bad file is reported and skipped; the others are enrolled. Exit 2 if any item failed.
    """
    from fvmatch.enrollment import EnrollReport, enroll as enroll_items, items_from_dir, items_from_manifest, items_from_options

    sources = sum([identity is not None or bool(face) or bool(voice), from_dir is not None, manifest is not None])
    if sources != 1:
        raise BadArgument("enroll", "give one of: --identity LABEL with --face/--voice files, --from-dir DIR, --manifest CSV")
    report = EnrollReport()
    if from_dir is not None:
        items = items_from_dir(from_dir, report)
    elif manifest is not None:
        items = items_from_manifest(manifest, report)
    else:
        if identity is None or not (face or voice):
            raise BadArgument("enroll", "--identity needs at least one --face or --voice file, and files need --identity")
        items = items_from_options(identity, face, voice)

    from fvmatch.embedder import Embedder, embedder_for_gallery
    from fvmatch.gallery import Gallery
    from fvmatch.gallery.lock import WriteLock

    if gallery_path.exists() and not gallery_path.is_dir():
        raise BadArgument(gallery_path, "gallery path exists and is not a directory")
    # a new gallery: check the model before anything is written, so a bad --model leaves no directory behind
    new_gallery_model = None if (gallery_path / "gallery.db").exists() else Embedder.load(model)
    gallery_path.mkdir(mode=0o700, parents=True, exist_ok=True)
    with WriteLock(gallery_path, lock_timeout, _say_waiting, f"pid {os.getpid()}: fvmatch enroll"):
        if (gallery_path / "gallery.db").exists():  # (again under the lock: another writer may have created it)
            gallery = Gallery.open(gallery_path)
            embedder = embedder_for_gallery(gallery, model)
        else:
            embedder = new_gallery_model or Embedder.load(model)
            gallery = Gallery.open(gallery_path, create=True, model_id=embedder.model_id,
                                   embedding_dim=embedder.embedding_dim,
                                   model_path=str(Path(embedder.checkpoint_path).resolve()))
        with gallery, item_progress(stderr, "enroll", transient=as_json) as progress:
            task = progress.add_task("enroll", total=len(items))
            enroll_items(gallery, embedder, items, report, force=force, progress=lambda n: progress.advance(task, n))
            counts = gallery.counts()
            _audit(gallery, "enroll", [{"path": e["path"], "sha256": e["sha256"]} for e in report.enrolled],
                   {"enrolled": len(report.enrolled), "skipped": len(report.skipped), "failed": len(report.failed),
                    "identities": sorted({e["identity"] for e in report.enrolled}), "failures": report.failed},
                   embedder.model_id)
    if as_json:
        emit_json({"gallery": str(gallery_path), "model_id": embedder.model_id, **report.to_dict(), "gallery_counts": counts})
    else:
        stdout.print(f"enrolled {len(report.enrolled)}, already there {len(report.skipped)}, failed {len(report.failed)}; "
                     f"gallery now holds {counts['identities']} identities, {counts['face']} faces, {counts['voice']} voices")
    for failure in report.failed:
        stderr.print(f"fvmatch: failed: {failure['item']}: {failure['error']}", markup=False, highlight=False, soft_wrap=True)
    if report.failed:
        raise typer.Exit(EXIT_BAD_INPUT)


def _one_query(face: Optional[Path], voice: Optional[Path]) -> tuple[str, Path]:
    if (face is None) == (voice is None):
        raise BadArgument("identify", "give exactly one query: --face IMG or --voice AUDIO")
    return ("face", face) if face is not None else ("voice", voice)


@app.command()
def identify(
    face: Optional[Path] = typer.Option(None, "--face", help="Query face image."),
    voice: Optional[Path] = typer.Option(None, "--voice", help="Query voice recording."),
    against: Optional[str] = typer.Option(None, "--against", help="face, voice or all (default: the other modality)."),
    top: int = typer.Option(10, "--top", "-k", min=1, max=1000, help="Identities to list."),
    fmr: float = FmrOption,
    gallery_path: Path = GalleryOption,
    model: Optional[Path] = ModelOption,
    as_json: bool = JsonOption,
) -> None:
    """Who in the gallery is this? Ranks identities by their best-matching item (cross-modal by default).

    With a calibrated model, exit 1 when no candidate reaches the decision threshold.
    """
    modality, path = _one_query(face, voice)
    if against not in (None, "face", "voice", "all"):
        raise BadArgument("--against", f"{against!r} is not one of face, voice, all")
    targets = [("voice" if modality == "face" else "face")] if against is None else (
        ["face", "voice"] if against == "all" else [against])
    from fvmatch.embedder import embedder_for_gallery
    from fvmatch.scoring import judge, trial_type

    with _open_gallery(gallery_path) as gallery:
        embedder = embedder_for_gallery(gallery, model)
        counts = gallery.counts()
        if not any(counts[target] for target in targets):
            raise BadArgument(gallery_path, f"gallery holds no {' or '.join(targets)} items to search")
        query = embedder.embed_face(path)[0] if modality == "face" else embedder.embed_voice(path)
        candidates = gallery.search(query.vector, targets, top=top)
        _audit(gallery, "identify", [_input(path)],
               {"modality": modality, "against": targets,
                "candidates": [{"identity": c.identity, "score": round(c.score, 6)} for c in candidates]},
               embedder.model_id)
    calibration = embedder.card.get("calibration")
    judged = [judge(c.score, trial_type(modality, c.modality), calibration, fmr) for c in candidates]
    if as_json:
        emit_json({"query": {"modality": modality, "path": str(path), "quality": query.quality},
                   "against": targets, "model_id": embedder.model_id, "gallery": str(gallery_path),
                   "candidates": [{**c.to_dict(), **j.to_dict()} for c, j in zip(candidates, judged)]})
    else:
        from rich.table import Table

        table = Table(title=f"{modality} query {path} against {' + '.join(targets)}")
        for column in ("rank", "identity", "score", "log10 LR", "decision", "matched", "source file"):
            table.add_column(column, justify="right" if column in ("rank", "score", "log10 LR") else "left")
        for candidate, judgement in zip(candidates, judged):
            table.add_row(str(candidate.rank), candidate.identity, f"{candidate.score:.4f}",
                          "-" if judgement.log10_lr is None else f"{judgement.log10_lr:+.2f}",
                          judgement.decision or "-", candidate.modality, candidate.source_path)
        stdout.print(table)
        notes = sorted({j.note for j in judged})
        stdout.print(f"model {embedder.model_id[:16]}; " + " ".join(notes), highlight=False)
    calibrated = [j for j in judged if j.decision is not None]
    if calibrated and not any(j.decision == "same person" for j in calibrated):
        raise typer.Exit(EXIT_NO_MATCH)


@app.command()
def verify(
    face: list[Path] = typer.Option([], "--face", help="Face image (give two items in all: face+voice, 2 faces or 2 voices)."),
    voice: list[Path] = typer.Option([], "--voice", help="Voice recording."),
    fmr: float = FmrOption,
    model: Optional[Path] = ModelOption,
    as_json: bool = JsonOption,
) -> None:
    """Do two items (a face and a voice, two faces or two voices) belong to one person?

    With a calibrated model: the log10 LR, its verbal equivalent and the decision; exit 1 for "different person".
    """
    items = [("face", p) for p in face] + [("voice", p) for p in voice]
    if len(items) != 2:
        raise BadArgument("verify", f"give exactly two items (--face/--voice), got {len(items)}")
    from fvmatch.embedder import Embedder
    from fvmatch.scoring import judge, trial_type

    embedder = Embedder.load(model)
    embeddings = [embedder.embed_face(p)[0] if m == "face" else embedder.embed_voice(p) for m, p in items]
    score = float(embeddings[0].vector @ embeddings[1].vector)
    judgement = judge(score, trial_type(items[0][0], items[1][0]), embedder.card.get("calibration"), fmr)
    if as_json:
        emit_json({"items": [{"modality": m, "path": str(p), "quality": e.quality} for (m, p), e in zip(items, embeddings)],
                   "model_id": embedder.model_id, **judgement.to_dict()})
    else:
        stdout.print(f"{judgement.trial_type} score {score:.4f} (cosine; model {embedder.model_id[:16]})", highlight=False)
        if judgement.decision is not None:
            stdout.print(f"log10 LR {judgement.log10_lr:+.2f} ({judgement.verbal}); decision: {judgement.decision}",
                         highlight=False)
        stdout.print(judgement.note, highlight=False)
    if judgement.decision == "different person":
        raise typer.Exit(EXIT_NO_MATCH)


gallery_app = typer.Typer(help="Inspect and maintain a gallery.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")


@gallery_app.command("info")
def gallery_info(gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Counts per modality, pinned model, sizes and index health."""
    with _open_gallery(gallery_path) as gallery:
        info = gallery.info()
        _audit(gallery, "gallery info", [], {"counts": info["counts"]}, gallery.model_id)
    if as_json:
        emit_json(info)
        return
    counts = info["counts"]
    stdout.print(f"gallery {info['gallery']} (format {info['format_version']}, created {info['created']})", highlight=False)
    stdout.print(f"model {info['model_id']} ({info['embedding_dim']}-D) at {info['model_path'] or '?'}", highlight=False)
    stdout.print(f"{counts['identities']} identities, {counts['face']} faces, {counts['voice']} voices; "
                 f"database {info['database_bytes']:,} bytes", highlight=False)
    for modality, health in info["indexes"].items():
        stdout.print(f"{modality} index: {health['state']}{' (' + health['detail'] + ')' if health['detail'] else ''}, "
                     f"{health['live_items']} items, {health['file_bytes']:,} bytes, "
                     f"{'agrees with' if health['agrees_with_database'] else 'DISAGREES with'} the database", highlight=False)


@gallery_app.command("list")
def gallery_list(gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Every identity with its number of faces and voices."""
    with _open_gallery(gallery_path) as gallery:
        identities = gallery.identities()
        _audit(gallery, "gallery list", [], {"identities": len(identities)}, gallery.model_id)
    if as_json:
        emit_json(identities)
        return
    from rich.table import Table

    table = Table()
    for column in ("identity", "faces", "voices", "enrolled"):
        table.add_column(column)
    for row in identities:
        table.add_row(row["identity"], str(row["faces"]), str(row["voices"]), row["created"])
    stdout.print(table)


@gallery_app.command("remove")
def gallery_remove(identity: str = typer.Option(..., "--identity", "-i", help="Label to remove with all its media."),
                   gallery_path: Path = GalleryOption, lock_timeout: float = LockTimeoutOption,
                   as_json: bool = JsonOption) -> None:
    """Remove an identity and its media from the database and the indexes."""
    with _open_gallery(gallery_path) as gallery:
        with gallery.writer(lock_timeout, _say_waiting, f"pid {os.getpid()}: fvmatch gallery remove"):
            removed = gallery.remove_identity(identity)
            gallery.flush()
            _audit(gallery, "gallery remove", [], {"identity": identity, "removed": removed}, gallery.model_id)
    if as_json:
        emit_json({"identity": identity, "removed": removed})
    else:
        stdout.print(f"removed {identity}: {removed['face']} faces, {removed['voice']} voices", highlight=False)


@gallery_app.command("reindex")
def gallery_reindex(gallery_path: Path = GalleryOption, lock_timeout: float = LockTimeoutOption,
                    as_json: bool = JsonOption) -> None:
    """Rebuild the search indexes from the stored embeddings."""
    with _open_gallery(gallery_path) as gallery:
        with gallery.writer(lock_timeout, _say_waiting, f"pid {os.getpid()}: fvmatch gallery reindex"):
            counts = gallery.reindex()
            _audit(gallery, "gallery reindex", [], {"reindexed": counts}, gallery.model_id)
    if as_json:
        emit_json({"reindexed": counts})
    else:
        stdout.print(f"rebuilt indexes: {counts['face']} faces, {counts['voice']} voices", highlight=False)


audit_app = typer.Typer(help="The gallery's tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("log")
def audit_log(
    verify_chain: bool = typer.Option(False, "--verify", help="Recompute the hash chain; exit 2 naming the first "
                                                                "row altered or removed."),
    since: Optional[str] = typer.Option(None, "--since", help="Rows at or after this time (ISO, UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Rows before this time (ISO, UTC)."),
    command: Optional[str] = typer.Option(None, "--command", help="Only this command (e.g. enroll, identify)."),
    identity: Optional[str] = typer.Option(None, "--identity", help="Only rows that name this identity."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="The latest N rows."),
    gallery_path: Path = GalleryOption,
    as_json: bool = JsonOption,
) -> None:
    """List the audit trail: every command that read or changed the gallery, each row chained to the previous."""
    from fvmatch.audit import audit_rows, verify_chain as check_chain

    with _open_gallery(gallery_path) as gallery:
        if verify_chain:
            check = check_chain(gallery)
            if as_json:
                emit_json({"ok": check.ok, "rows": check.rows, "first_bad_id": check.first_bad_id,
                           "problem": check.problem})
            elif check.ok:
                stdout.print(f"audit trail intact: {check.rows} rows, hash chain verified", highlight=False)
            if not check.ok:
                raise FvmatchError(gallery_path / "gallery.db", f"audit trail broken: {check.problem}")
            return
        rows = audit_rows(gallery, since=since, until=until, command=command, identity=identity, limit=limit)
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table()
    for column in ("id", "time", "user", "command", "inputs", "result"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["time"], row["user"], row["command"],
                      ", ".join(Path(item["path"]).name for item in row["inputs"]) or "-",
                      json.dumps(row["result"])[:120])
    stdout.print(table)


@app.command()
def prepare(
    data: Path = typer.Argument(..., help="Corpus: faces/<id>/<video>/*.jpg, voices/<id>/<video>/*.wav, meta.csv."),
    cache: Path = typer.Argument(..., help="Directory for the training shards."),
    workers: int = typer.Option(0, "--workers", min=0, help="Worker processes (0: one per CPU core)."),
    as_json: bool = JsonOption,
) -> None:
    """Detect and align faces, keep the speech of voices, and write training shards (resumable)."""
    summary = _run_prepare(data, cache, workers, as_json)
    if as_json:
        emit_json(summary)
        return
    counts = summary["counts"]
    stdout.print(f"prepared {counts['identities']} identities: {counts['faces']} faces, {counts['voices']} voice clips "
                 f"({counts['voice_seconds']:.0f} s of speech), {counts['failures']} failures, in {cache}", highlight=False)
    for failure in summary["failures"]:
        stderr.print(f"fvmatch: skipped: {failure['item']}: {failure['error']}", markup=False, highlight=False)


def _run_prepare(data: Path, cache: Path, workers: int, quiet: bool) -> dict:
    from fvmatch.training.prepare import prepare_corpus

    with item_progress(stderr, "prepare", "identities", transient=quiet) as progress:
        task = progress.add_task("prepare", total=None)
        return prepare_corpus(data, cache, workers=workers, progress=lambda n: progress.advance(task, n),
                              total=lambda n: progress.update(task, total=n))


@app.command()
def train(
    data: Path = typer.Argument(..., help="Prepared shards (from fvmatch prepare), or a corpus to prepare first."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.safetensors), updated every epoch."),
    config: str = typer.Option("small", "--config", help="Model config: small or wang2020."),
    epochs: int = typer.Option(10, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=2, help="Identities per batch (one face-voice pair each)."),
    lr: float = typer.Option(1e-3, "--lr", min=0.0, help="Starting learning rate (decays logarithmically)."),
    lr_end: float = typer.Option(1e-8, "--lr-end", min=0.0, help="Final learning rate."),
    crop_seconds: float = typer.Option(3.0, "--crop-seconds", min=0.5, help="Voice crop length."),
    passes: int = typer.Option(1, "--passes", min=1, help="Passes over the training identities per epoch."),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or cuda:N."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    face_weights: Optional[Path] = typer.Option(None, "--face-weights", envvar="FVMATCH_FACE_WEIGHTS",
                                                help="Local pretrained face-subnet weights (never downloaded)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Where to prepare shards when DATA is a raw corpus."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run that wrote --out."),
    as_json: bool = JsonOption,
) -> None:
    """Train the joint face-voice embedding (Wang et al. 2020 losses); same command under torchrun for many GPUs."""
    from fvmatch.models.config import CONFIGS

    if config not in CONFIGS:
        raise BadArgument("--config", f"unknown config {config!r}; known: {', '.join(sorted(CONFIGS))}")
    if resume and not out.is_file():
        raise BadArgument(out, "nothing to resume: no checkpoint here")
    if not (data / "prepare.json").is_file():
        if not (data / "meta.csv").is_file():
            raise BadArgument(data, "neither prepared shards (prepare.json) nor a corpus (meta.csv)")
        cache = cache or data / "prepared"
        _run_prepare(data, cache, 0, as_json)
        data = cache
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fvmatch.training.trainer import TrainSettings, train as train_model

    settings = TrainSettings(config=config, epochs=epochs, batch_size=batch_size, lr_start=lr, lr_end=lr_end,
                             crop_seconds=crop_seconds, passes=passes, seed=seed, workers=workers,
                             face_weights=str(face_weights) if face_weights else None)
    columns = (TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=as_json) as progress:
        task = progress.add_task("train", total=None, status="")

        def on_step(report) -> None:
            terms = report.terms
            progress.update(task, total=report.total_steps, completed=report.step, status=(
                f"epoch {report.epoch + 1} loss {report.loss:.3f} (rank f>v {terms['face_to_voice']:.3f} "
                f"v>f {terms['voice_to_face']:.3f} id {terms['identity_face'] + terms['identity_voice']:.2f}) "
                f"lr {report.learning_rate:.1e} {report.pairs_per_second:.0f} pairs/s"))

        def on_epoch(record: dict) -> None:
            if not as_json:
                progress.console.print(
                    f"epoch {record['epoch'] + 1}: step {record['step']}, validation AUC "
                    f"{record.get('val_verification_auc', float('nan')):.4f}, V-F 1:2 "
                    f"{record.get('val_vf_1to2_accuracy', float('nan')):.4f}", highlight=False)

        try:
            result = train_model(data, out, settings, device=device, resume=resume, on_step=on_step, on_epoch=on_epoch)
        except ValueError as error:
            raise BadArgument(data, str(error).removeprefix(f"{data}: ")) from None
    if int(os.environ.get("RANK", "0")) != 0:
        return  # under torchrun only rank 0 reports
    if as_json:
        emit_json({"checkpoint": str(result.checkpoint), "model_id": result.model_id, "steps": result.steps,
                   "history": result.history})
    else:
        stdout.print(f"wrote {result.checkpoint} (model {result.model_id[:16]}) after {result.steps} steps", highlight=False)


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


def main() -> None:
    """Entry point: run the app; a user mistake becomes one line on stderr and its exit code, never a traceback."""
    try:
        app()
    except FvmatchError as error:
        stderr.print(f"fvmatch: error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        stderr.print("fvmatch: interrupted", highlight=False)
        sys.exit(130)
    except Exception as error:  # the last line of defence: an internal failure still gets one line and exit 3
        if os.environ.get("FVMATCH_DEBUG"):
            raise
        stderr.print(f"fvmatch: internal error: {type(error).__name__}: {error} (set FVMATCH_DEBUG=1 for a traceback)",
                     markup=False, highlight=False, soft_wrap=True)
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
