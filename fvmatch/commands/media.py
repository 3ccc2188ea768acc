"""Commands on single media files and generated data: synth, embed."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (FpsOption, JsonOption, MinBandwidthOption, MinFacePxOption, MinSnrOption,
                                     ModelOption, VideoOption, app, emit_json, plural, quality_minimums,
                                     refuse_video_as, say_line, stderr, stdout)
from fvmatch.commands.common import AudioTrackOption, TrackOption
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
    voice: Optional[Path] = typer.Option(None, "--voice", help="Audio file (WAV, FLAC, OGG, MP3, AIFF, AU, M4A/AAC; "
                                         "or an MP4 with sound only)."),
    video: Optional[Path] = VideoOption,
    fps: float = FpsOption,
    model: Optional[Path] = ModelOption,
    all_faces: bool = typer.Option(False, "--all-faces", help="Embed every face in the image (every face track of "
                                   "the video), not only the largest (the longest on screen)."),
    min_speech: float = typer.Option(1.0, "--min-speech", min=0.1, help="Seconds of speech required."),
    space: Optional[str] = typer.Option(None, "--space", help="Only this space (joint, dlib-face, ge2e-voice)."),
    min_face_px: Optional[float] = MinFacePxOption,
    min_snr: Optional[float] = MinSnrOption,
    min_bandwidth: Optional[float] = MinBandwidthOption,
    audio_track: Optional[int] = AudioTrackOption,
    track: Optional[int] = TrackOption,
    as_json: bool = JsonOption,
) -> None:
    """Print the embeddings of one face image, one voice recording or one video (its main face track and its
    soundtrack) in every space of their modality (or --space), with quality figures."""
    if sum(item is not None for item in (face, voice, video)) != 1:
        raise BadArgument("embed", "give exactly one of --face IMG, --voice AUDIO or --video FILE")
    if track is not None and video is None:
        raise BadArgument("--track", "goes with --video (it picks one of the video's face tracks)")
    refuse_video_as(face, "--face")
    refuse_video_as(voice, "--voice")
    from fvmatch.spaces import space_for, spaces_of

    if video is not None:
        return _embed_video(video, fps, model, all_faces, min_speech, space, min_face_px, min_snr, min_bandwidth,
                            as_json, audio_track, track)

    modality = "face" if face else "voice"
    spaces = [space_for(modality, modality, space)] if space is not None else spaces_of(modality)
    from fvmatch.analysis.embedder import Embedder

    embedder = Embedder.load(model, min_speech_seconds=min_speech,
                             minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
    embeddings = (embedder.embed_face(face, all_faces=all_faces, spaces=spaces) if face
                  else [embedder.embed_voice(voice, spaces=spaces, audio_track=audio_track)])
    from fvmatch.evidence.attributes import read_sex

    readings = [read_sex(embedding.modality, embedding.vectors, embedding.model_ids, embedding.quality)
                for embedding in embeddings]
    if as_json:
        documents = [{**embedding.to_dict(), "sex": reading.to_dict() if reading else None}
                     for embedding, reading in zip(embeddings, readings)]
        emit_json(documents if all_faces else documents[0])
        return
    for embedding, reading in zip(embeddings, readings):
        # a figure that is unknown (jpeg_quality of a PNG) is left out here; --json gives it as null
        quality = ", ".join(f"{key} {value}" for key, value in embedding.quality.items()
                            if value is not None and key != "age")  # the age reading is said on the next line
        say_line(stdout, f"{embedding.modality} {embedding.source}  ({quality})")  # a path may hold [markup]
        if reading is not None:
            age = f"; age: {reading.age.estimator}" if reading.age else ""
            say_line(stdout, f"{embedding.modality}: {reading.describe()} ({reading.space} sex head{age})")
        for name, vector in embedding.vectors.items():
            stdout.print(f"{name} space, model {embedding.model_ids[name][:16]}  {len(vector)}-D unit vector:")
            stdout.print(" ".join(f"{value:+.4f}" for value in vector), soft_wrap=False)


def _embed_video(video: Path, fps: float, model, all_faces: bool, min_speech: float, space, min_face_px, min_snr,
                 min_bandwidth, as_json: bool, audio_track: int | None = None, track: int | None = None) -> None:
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.commands.common import video_evidence
    from fvmatch.spaces import FACE_SPACE, SPACE_MODALITIES, spaces_of

    if space is not None and space not in SPACE_MODALITIES:
        raise BadArgument("--space", f"{space!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    face_spaces = [space] if space is not None and "face" in SPACE_MODALITIES[space] else (
        [] if space is not None else spaces_of("face"))
    voice_spaces = [space] if space is not None and "voice" in SPACE_MODALITIES[space] else (
        [] if space is not None else spaces_of("voice"))
    embedder = Embedder.load(model, min_speech_seconds=min_speech,
                             minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
    evidence = video_evidence(embedder, video, fps, face_spaces=face_spaces or [FACE_SPACE],
                              voice_spaces=voice_spaces, all_faces=all_faces, audio_track=audio_track,
                              face_track=track)
    if not face_spaces:  # a voice space asked for: the face space only linked the tracks, its vectors are not shown
        for embedding in evidence.track_faces:
            embedding.vectors, embedding.model_ids = {}, {}
    if as_json:
        emit_json(evidence.to_dict(all_faces))
        return
    figures = evidence.info.figures()
    say_line(stdout, f"video {video}  ({figures['container']} {figures['video_codec']}"
                     f"{'+' + figures['audio_codec'] if figures['audio_codec'] else ', no audio'}, "
                     f"{figures['width']}x{figures['height']}, {figures['duration_seconds']} s, "
                     f"{plural(figures['frames_sampled'], 'frame')} sampled at {fps:g}/s; sha256 {evidence.sha256[:16]})")
    for track in evidence.tracks if all_faces else evidence.tracks[:1]:
        say_line(stdout, f"face track {track.number}{' (main)' if track.number == 1 else ''}: {plural(track.frames, 'frame')}, "
                         f"{track.seconds_on_screen(fps):.1f} s on screen ({track.first_seen:.1f}-{track.last_seen:.1f} s), "
                         f"mean detection probability {track.mean_probability:.3f}")
    if len(evidence.tracks) > 1 and not all_faces:
        stdout.print(f"{plural(len(evidence.tracks) - 1, 'other face track')} (--all-faces lists them)", highlight=False)
    if evidence.voice is not None:
        segments = evidence.speech_segments
        say_line(stdout, f"soundtrack: {evidence.voice.quality['speech_seconds']} s of speech in "
                         f"{plural(len(segments), 'segment')} ({', '.join(f'{a:.1f}-{b:.1f}' for a, b in segments[:6])}"
                         f"{' ...' if len(segments) > 6 else ''} s)"
                         + (f", audio track {figures['audio_track']} of {len(figures['audio_tracks'])}"
                            if len(figures["audio_tracks"]) > 1 else ""))
    shown = [e for e in (evidence.track_faces if all_faces else [evidence.face]) if e is not None]
    for embedding in shown + ([evidence.voice] if evidence.voice is not None else []):
        for name, vector in embedding.vectors.items():
            stdout.print(f"{embedding.modality} (track {embedding.quality.get('track', '-')}) {name} space, model "
                         f"{embedding.model_ids[name][:16]}  {len(vector)}-D unit vector:" if embedding.modality == "face"
                         else f"voice {name} space, model {embedding.model_ids[name][:16]}  {len(vector)}-D unit vector:",
                         highlight=False)
            stdout.print(" ".join(f"{value:+.4f}" for value in vector), soft_wrap=False)
