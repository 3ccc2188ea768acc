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

from fvmatch.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, BadArgument, FvmatchError

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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from fvmatch.synth import CorpusSpec, write_corpus

    spec = CorpusSpec(identities=identities, seed=seed, faces_per_identity=faces, clips_per_identity=clips,
                      clip_seconds=clip_seconds)
    columns = (TextColumn("synth"), BarColumn(), MofNCompleteColumn(), TextColumn("identities"), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=as_json) as progress:
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
