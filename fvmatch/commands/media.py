"""Commands on single media files and generated data: synth, embed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (JsonOption, MinBandwidthOption, MinFacePxOption, MinSnrOption, ModelOption, app,
                                     emit_json, quality_minimums, say_line, stderr, stdout)
from fvmatch.errors import BadArgument
from fvmatch.progress import item_progress


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
    space: Optional[str] = typer.Option(None, "--space", help="Only this space (joint, dlib-face, ge2e-voice)."),
    min_face_px: Optional[float] = MinFacePxOption,
    min_snr: Optional[float] = MinSnrOption,
    min_bandwidth: Optional[float] = MinBandwidthOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the embeddings of one face image or one voice recording in every space of its modality (or --space),
    with its quality figures."""
    if (face is None) == (voice is None):
        raise BadArgument("embed", "give exactly one of --face IMG or --voice AUDIO")
    from fvmatch.spaces import space_for, spaces_of

    modality = "face" if face else "voice"
    spaces = [space_for(modality, modality, space)] if space is not None else spaces_of(modality)
    from fvmatch.embedder import Embedder

    embedder = Embedder.load(model, min_speech_seconds=min_speech,
                             minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
    embeddings = (embedder.embed_face(face, all_faces=all_faces, spaces=spaces) if face
                  else [embedder.embed_voice(voice, spaces=spaces)])
    if as_json:
        documents = [embedding.to_dict() for embedding in embeddings]
        emit_json(documents if all_faces else documents[0])
        return
    for embedding in embeddings:
        quality = ", ".join(f"{key} {value}" for key, value in embedding.quality.items())
        say_line(stdout, f"{embedding.modality} {embedding.source}  ({quality})")  # a path may hold [markup]
        for name, vector in embedding.vectors.items():
            stdout.print(f"{name} space, model {embedding.model_ids[name][:16]}  {len(vector)}-D unit vector:")
            stdout.print(" ".join(f"{value:+.4f}" for value in vector), soft_wrap=False)
