"""What every command shares: the Typer app, the consoles, the common options and small helpers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.console import Console

from fvmatch.errors import BadArgument

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


# bidirectional overrides and isolates reorder what a terminal shows (a file "x\u202egpj.exe" reads "xexe.jpg")
_BIDI_CONTROLS = set(range(0x202A, 0x202F)) | set(range(0x2066, 0x206A))


def printable(text: object) -> str:
    """`text` for a terminal line: control characters (newline, escape sequences, NUL, ...), bidi controls, line
    separators and a file name's undecodable bytes (surrogates) written as escapes (\\n, \\x1b, \\u202e, \\udcff),
    so that a file name can neither break a one-line message, restyle or reorder the terminal, nor fail to encode.
    JSON output needs none of this: it escapes them itself."""
    import unicodedata

    characters = []
    for character in str(text):
        code = ord(character)
        if code in _BIDI_CONTROLS or unicodedata.category(character) in ("Cc", "Cs", "Zl", "Zp"):
            escaped = repr(character)[1:-1]  # Python's own escape: \n, \t, \x1b, \u2028
            characters.append(escaped if escaped != character else f"\\u{code:04x}")
        else:
            characters.append(character)
    return "".join(characters)


def say_line(console: Console, text: object) -> None:
    """One line, printed as is: no rich markup or highlighting, control characters escaped (`printable`)."""
    console.print(printable(text), markup=False, highlight=False, soft_wrap=True)


def emit_json(document: object) -> None:
    """The one JSON document a --json command writes to stdout."""
    sys.stdout.write(json.dumps(document, indent=2) + "\n")



GalleryOption = typer.Option(Path("fvmatch-gallery"), "--gallery", "-g", envvar="FVMATCH_GALLERY",
                             help="Gallery directory (default $FVMATCH_GALLERY, else ./fvmatch-gallery).")
FmrOption = typer.Option(0.01, "--fmr", help="Operating point: false-match rate of the decision (0.01 or 0.001).")
SpaceOption = typer.Option(None, "--space", help="Score every trial in this space (joint, dlib-face, ge2e-voice); "
                           "default: face-face in dlib-face, voice-voice in ge2e-voice, face-voice in joint.")
RootOption = typer.Option(None, "--root", help="Refuse listed paths that resolve (symlinks followed) outside this directory.")
LockTimeoutOption = typer.Option(60.0, "--lock-timeout", min=0.0, help="Seconds to wait for another writer.")
MinFacePxOption = typer.Option(None, "--min-face-px", min=0.0, help="Refuse faces whose eyes are fewer pixels apart.")
MinSnrOption = typer.Option(None, "--min-snr", help="Refuse voices under this estimated signal-to-noise ratio (dB).")
MinBandwidthOption = typer.Option(None, "--min-bandwidth", min=0.0,
                                  help="Refuse voices whose speech reaches no higher than this frequency (Hz).")


def quality_minimums(min_face_px: float | None, min_snr: float | None, min_bandwidth: float | None):
    """The QualityMinimums an embedder refuses items under (fvmatch.quality.minimums)."""
    from fvmatch.quality.minimums import QualityMinimums

    return QualityMinimums(eye_distance_px=min_face_px, snr_db=min_snr, bandwidth_hz=min_bandwidth)


def open_gallery(path: Path):
    """An existing gallery (NotAGallery, exit 2, when there is none)."""
    from fvmatch.gallery import Gallery

    return Gallery.open(path)


def audit(gallery, command: str, inputs: list[dict], result: dict, model_id: str) -> dict:
    """Append this command to the gallery's hash-chained audit trail (arguments as typed); the row as stored."""
    from fvmatch.audit import append_audit

    return append_audit(gallery, command, sys.argv[1:], inputs, result, model_id)


def file_input(path: Path) -> dict:
    from fvmatch.enrollment import file_digest

    return {"path": str(Path(path).resolve()), "sha256": file_digest(Path(path))[0]}


def say_waiting(message: str) -> None:
    """Told once while waiting for another writer's lock."""
    say_line(stderr, f"fvmatch: {message} ...")



VideoOption = typer.Option(None, "--video", help="Video file (MP4, MOV, MKV, WebM, AVI): its face track and soundtrack.")
FpsOption = typer.Option(2.0, "--fps", min=0.01, max=30.0, help="Video frames sampled per second.")


def refuse_video_as(path: Path | None, option: str) -> None:
    """BadArgument for a video given where an image or a recording is expected (its content, whatever its name)."""
    from fvmatch.media.video import is_video

    if path is not None and is_video(path):
        raise BadArgument(path, f"a video file, not {'an image' if option == '--face' else 'an audio file'}: "
                          "give it with --video")


def video_evidence(embedder, path: Path, fps: float, **options):
    """fvmatch.video.embed_video with a progress bar on stderr (seconds of video read); the notes it makes (no audio
    track, no face, damage) are said on stderr, one line each."""
    from fvmatch.media.video import probe_video
    from fvmatch.progress import item_progress
    from fvmatch.video import embed_video

    info = probe_video(path)
    with item_progress(stderr, "video", unit="s", transient=True) as progress:
        task = progress.add_task("video", total=max(info.duration_seconds, 0.01))
        evidence = embed_video(embedder, path, fps=fps, info=info,
                               progress=lambda seconds: progress.update(task, completed=seconds), **options)
    for note in evidence.notes:
        say_line(stderr, f"fvmatch: {path}: {note}")
    return evidence
