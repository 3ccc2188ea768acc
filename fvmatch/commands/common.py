"""What every command shares: the Typer app, the consoles, the common options and small helpers."""
from __future__ import annotations

import inspect
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.measure import Measurement
from rich.text import Text
from typer.core import TyperGroup, TyperOption

from fvmatch.errors import BadArgument, UnreadableMedia


def _whole_paragraphs(help_text: str | None) -> str | None:
    """A command's docstring, each paragraph on one line for the terminal to wrap (a "\\b" paragraph as written)."""
    if not help_text:
        return help_text
    paragraphs = inspect.cleandoc(help_text).split("\n\n")
    return "\n\n".join(p if p.startswith("\b") else " ".join(p.split("\n")) for p in paragraphs)


class Commands(TyperGroup):
    """fvmatch's command tree, its help texts read as whole sentences: typer's rich help keeps a docstring's line
    breaks after the first paragraph, so a sentence wrapped in the source broke mid-sentence on the terminal."""

    def __init__(self, **attrs) -> None:
        super().__init__(**attrs)
        pending = [self]
        while pending:
            command = pending.pop()
            command.help = _whole_paragraphs(command.help)
            pending.extend(getattr(command, "commands", {}).values())


def _flag_type(self: TyperOption, ctx) -> str | None:
    """A flag's help shows no type: it takes no value (typer 0.29 shows `--json <bool>`, and `--json true` fails)."""
    return None if self.is_flag else _option_type(self, ctx)


# typer makes every option a TyperOption itself (help included, no class to pass), hence the method replaced here
_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flag_type

app = typer.Typer(
    cls=Commands,
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


@dataclass
class GalleryAccess:
    """How this invocation may touch a gallery: fvmatch's own options, given before the command
    (`fvmatch --read-only --audit-log FILE identify ...`), so that every command that opens a gallery honours them."""

    read_only: bool = False
    audit_log: Path | None = None


# the options of the invocations under way, innermost last: pushed by the app's callback, popped when it ends (typer
# hands a command no context it did not ask for, and the commands need not ask: open_gallery and audit read this)
_RUNNING: list[GalleryAccess] = []


@app.callback()
def gallery_access(
    context: typer.Context,
    read_only: bool = typer.Option(False, "--read-only", help="Open the gallery read-only: write no byte of it (also "
                                   "implied when its files or folder cannot be written); commands that change it "
                                   "are refused."),
    audit_log: Optional[Path] = typer.Option(None, "--audit-log", envvar="FVMATCH_AUDIT_LOG", metavar="FILE",
                                             help="Also record the audit rows in FILE (JSON lines, hash-chained); a "
                                             "read-only gallery's queries record them there alone, and need it."),
) -> None:
    # (no docstring: the app's help text stays the one above)
    if read_only and context.invoked_subcommand == "enroll":  # the one writer that opens a gallery by itself
        raise BadArgument("--read-only", "enroll changes the gallery; give --read-only to commands that read it")
    _RUNNING.append(GalleryAccess(read_only, audit_log))
    context.call_on_close(_RUNNING.pop)


def gallery_access_of_this_run() -> GalleryAccess:
    """The options given before the command (defaults when a command function is called outside the CLI)."""
    return _RUNNING[-1] if _RUNNING else GalleryAccess()

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


def plural(count: int, word: str, words: str | None = None) -> str:
    """`count` with the noun that agrees with it: "1 identity", "2 identities", "1,024 faces" (`words`: the plural,
    `word` + "s" by default)."""
    return f"{count:,} {word if count == 1 else words or word + 's'}"


def short_path(path: str, width: int) -> str:
    """`path` in at most `width` terminal cells, its file name kept: the folders nearest the file, the rest elided
    ("…/case/photos/obama3.jpg"); a name too long alone keeps its end, extension and all ("…ma3.jpg")."""
    if cell_len(path) <= width:
        return path
    *folders, name = path.split("/")
    shown = name
    for folder in reversed(folders):
        if cell_len(f"…/{folder}/{shown}") > width:
            break
        shown = f"{folder}/{shown}"
    if cell_len(f"…/{shown}") <= width:
        return f"…/{shown}"
    while name and cell_len(name) > width - 1:
        name = name[1:]
    return f"…{name}" if width > 0 else ""


class ShortPath:
    """A table cell holding a path: whole where the column is wide enough, else `short_path` to the column's width
    (rich's own overflow would keep the start, "/home/analyst/c…", and lose the file name)."""

    def __init__(self, path: object) -> None:
        self.path = printable(path)

    def __rich_measure__(self, console, options) -> Measurement:
        whole = cell_len(self.path)
        return Measurement(min(whole, cell_len("…/" + self.path.rsplit("/", 1)[-1])), whole)

    def __rich_console__(self, console, options):
        yield Text(short_path(self.path, options.max_width), no_wrap=True)


GalleryOption = typer.Option(Path("fvmatch-gallery"), "--gallery", "-g", envvar="FVMATCH_GALLERY",
                             help="Gallery directory, or a team gallery: a .toml file or a postgresql:// URL "
                             "(docs/team-galleries.md). Default $FVMATCH_GALLERY, else ./fvmatch-gallery.")
PopulationOption = typer.Option(None, "--population", metavar="female=SHARE",
                                help="The population the sex evidence of face-voice trials assumes: female=0.3 (the "
                                "rest male; default equal sexes), named in every result.")


def population_option(text: str | None) -> dict[str, float]:
    """--population as a make-up {"female": share, "male": share} (BadArgument when malformed)."""
    from fvmatch.evidence.attributes import population_of

    try:
        return population_of(text)
    except ValueError as error:
        raise BadArgument("--population", f"{text!r}: {error}") from None


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


def open_gallery(path: Path, access: str = "query"):
    """An existing gallery (NotAGallery, exit 2, when there is none), read-only with --read-only or when this user
    cannot write it, its audit rows also going to --audit-log when given. What the command will do with it decides
    what a read-only gallery allows, checked here, before any work: "query" records an audit row (so it needs
    --audit-log), "read" is a pure read (its row goes to --audit-log, or nowhere), "inspect" records no row (the
    audit log is only read, if given), "write" is refused."""
    from fvmatch.gallery import Gallery, GalleryUnwritable

    if access not in ("query", "read", "inspect", "write"):
        raise ValueError(f"access {access!r} is not one of query, read, inspect, write")
    options = gallery_access_of_this_run()
    gallery = Gallery.open(path, read_only=options.read_only)
    try:
        if gallery.read_only and access == "write":
            gallery.require_writable()
        if gallery.read_only and access == "query" and options.audit_log is None:
            raise GalleryUnwritable(path, f"read-only gallery ({gallery.read_only}): give --audit-log FILE to record "
                                    f"this query's audit row elsewhere (or {gallery.way_to_write})")
        if options.audit_log is not None and access != "inspect":
            from fvmatch.audit.trail import check_audit_log

            check_audit_log(options.audit_log, gallery)
        gallery.audit_log = options.audit_log
    except BaseException:
        gallery.close()
        raise
    return gallery


def audit(gallery, command: str, inputs: list[dict], result: dict, model_id: str, optional: bool = False) -> dict | None:
    """Append this command to the gallery's hash-chained audit trail (arguments as typed), and to --audit-log when
    given; on a read-only gallery to --audit-log alone. The row as stored (the log's, on a read-only gallery). An
    `optional` row (a pure read's) on a read-only gallery without --audit-log is not recorded: None."""
    from fvmatch.audit.trail import append_audit

    if optional and gallery.read_only and gallery.audit_log is None:
        return None
    return append_audit(gallery, command, sys.argv[1:], inputs, result, model_id)


def file_input(path: Path) -> dict:
    from fvmatch.enrollment.enroll import file_digest

    return {"path": str(Path(path).resolve()), "sha256": file_digest(Path(path))[0]}


def say_waiting(message: str) -> None:
    """Told once while waiting for another writer's lock."""
    say_line(stderr, f"fvmatch: {message} ...")



VideoOption = typer.Option(None, "--video", help="Video file (MP4, MOV, MKV, WebM, AVI): its face track and soundtrack.")
FpsOption = typer.Option(2.0, "--fps", min=0.01, max=30.0, help="Video frames sampled per second.")
TrackOption = typer.Option(None, "--track", min=1, help="With --video: the face track to take (from 1, longest on "
                           "screen first, as `embed --video` lists them; default 1).")
AudioTrackOption = typer.Option(None, "--audio-track", min=1, help="Audio track to read (from 1) of a video or "
                                "container holding several (default: the one with the most speech).")


def tracks_need_one_video(videos: int, track: int | None, audio_track: int | None) -> None:
    """--track and --audio-track pick one video's tracks: refused unless exactly `videos` == 1."""
    for option, value in (("--track", track), ("--audio-track", audio_track)):
        if value is not None and videos != 1:
            raise BadArgument(option, "goes with one --video (it picks one of that video's tracks)")


def require_file(path: Path) -> None:
    """UnreadableMedia for a path that is no file (missing, a directory), in the words every command uses: called
    before a gallery or a model is opened, so a mistyped path is the one error said."""
    from fvmatch.paths import input_file_problem

    if (problem := input_file_problem(path)) is not None:
        raise UnreadableMedia(path, problem)


def refuse_video_as(path: Path | None, option: str) -> None:
    """`require_file`; then BadArgument for a video given where an image or a recording is expected (its content,
    whatever its name)."""
    from fvmatch.media.containers import is_video

    if path is None:
        return
    require_file(path)
    if is_video(path):
        raise BadArgument(path, f"a video file, not {'an image' if option == '--face' else 'an audio file'}: "
                          "give it with --video")


def video_evidence(embedder, path: Path, fps: float, audio_track: int | None = None, **options):
    """fvmatch.analysis.video.embed_video with a progress bar on stderr (seconds of video read); the notes it makes (no audio
    track, no face, damage) are said on stderr, one line each."""
    from fvmatch.media.video import probe_video
    from fvmatch.progress import item_progress
    from fvmatch.analysis.video import embed_video

    info = probe_video(path, audio_track=audio_track)
    with item_progress(stderr, "video", unit="s", transient=True) as progress:
        task = progress.add_task("video", total=max(info.duration_seconds, 0.01))
        evidence = embed_video(embedder, path, fps=fps, info=info,
                               progress=lambda seconds: progress.update(task, completed=seconds), **options)
    for note in evidence.notes:
        say_line(stderr, f"fvmatch: {path}: {note}")
    return evidence
