"""Batch enrolment: turn options, a directory or a manifest into items; embed them in batches; store them.

A bad item is recorded with its reason and the run carries on; an item either lands whole (its media row,
and its identity row if new) or not at all. Each batch is one transaction, so an interrupted run keeps what it
committed, and running it again skips what is already there (same file, same identity: a no-op).
"""
from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fvmatch.spaces import reference_spaces, spaces_of
from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.gallery import Gallery, NewItem
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.containers import audio_demuxer, is_video, media_kind
from fvmatch.media.image import IMAGE_SUFFIXES
from fvmatch.media.video import DEFAULT_FPS
from fvmatch.paths import file_digest, input_file_problem, read_listing, resolve_listed_path
from fvmatch.quality.notes import input_notes

MAX_LABEL_LENGTH = 200
JOINERS = ("\u200c", "\u200d")  # zero-width non-joiner and joiner
MANIFEST_COLUMNS = ("identity", "modality", "path")
BATCH_SIZE = 32


@dataclass(frozen=True)
class EnrollItem:
    identity: str
    modality: str
    path: Path
    origin: str  # where the item came from, for messages: the path, or "manifest.csv line 4"
    face_track: int | None = None  # a video's face track to enroll (as embed --video lists them; None: the longest)
    audio_track: int | None = None  # a video's audio track to read (from 1; None: the one with the most speech)


@dataclass
class EnrollReport:
    enrolled: list[dict] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)  # already enrolled: a no-op
    failed: list[dict] = field(default_factory=list)

    def fail(self, origin: str, message: str) -> None:
        self.failed.append({"item": origin, "error": message})

    def to_dict(self) -> dict:
        return {"enrolled": len(self.enrolled), "skipped": len(self.skipped), "failed": len(self.failed),
                "enrolled_items": self.enrolled, "skipped_items": self.skipped, "failures": self.failed}


def check_label(label: str, origin: str) -> str:
    """A usable identity label, in Unicode NFC form (so that "Zoë" typed composed or decomposed is one identity):
    non-empty, at most 200 characters, no control or invisible formatting characters.

    The joiners ZWNJ and ZWJ are the one exception: Persian, Indic and other scripts need them inside words, so
    they are kept between two non-ASCII letters; elsewhere ("Al\u200dice") they would only make a second
    identity that looks like the first.
    """
    label = unicodedata.normalize("NFC", label.strip())
    if not label:
        raise BadArgument(origin, "empty identity label")
    if len(label) > MAX_LABEL_LENGTH:
        raise BadArgument(origin, f"identity label longer than {MAX_LABEL_LENGTH} characters")
    for position, character in enumerate(label):
        if character in JOINERS and _joins_letters(label, position):
            continue
        if unicodedata.category(character).startswith("C"):
            raise BadArgument(origin, "identity label holds control characters")
    return label


def _joins_letters(label: str, position: int) -> bool:
    def letter(character: str) -> bool:
        return not character.isascii() and unicodedata.category(character)[0] in "LM"

    return 0 < position < len(label) - 1 and letter(label[position - 1]) and letter(label[position + 1])


def modality_of(path: Path) -> str | None:
    """face, voice or video: a container by its content (whatever its name: an MP4 with sound only is a voice),
    else by the file's suffix."""
    kind = media_kind(path)
    if kind == "video":
        return "video"
    if kind == "audio" and audio_demuxer(path) is not None:
        return "voice"
    suffix = path.suffix.lower()
    return "face" if suffix in IMAGE_SUFFIXES else "voice" if suffix in AUDIO_SUFFIXES else None


def items_from_options(identity: str, faces: Sequence[Path], voices: Sequence[Path],
                       videos: Sequence[Path] = ()) -> list[EnrollItem]:
    label = check_label(identity, "--identity")
    return ([EnrollItem(label, "face", Path(p), str(p)) for p in faces]
            + [EnrollItem(label, "voice", Path(p), str(p)) for p in voices]
            + [EnrollItem(label, "video", Path(p), str(p)) for p in videos])


def items_from_dir(directory: Path, report: EnrollReport) -> list[EnrollItem]:
    """DIR/<label>/... : every image or audio file under a label's folder (any depth); others are reported."""
    if not directory.is_dir():
        raise BadArgument(directory, "not a directory")
    items = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        try:
            label = check_label(folder.name, str(folder))
        except BadArgument as error:
            report.fail(str(folder), error.problem)
            continue
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            modality = modality_of(path)
            if modality is None:
                report.fail(str(path), f"not an image, audio or video file type ({path.suffix or 'no extension'})")
            else:
                items.append(EnrollItem(label, modality, path, str(path)))
    return items


def items_from_manifest(manifest: Path, report: EnrollReport, root: Path | None = None) -> list[EnrollItem]:
    """CSV with columns identity, modality (face|voice|video), path; paths relative to the manifest's folder.

    With `root` (from paths.check_root), a row whose path resolves outside it is recorded as failed.
    """
    items = []
    for line, row in read_listing(manifest, MANIFEST_COLUMNS):
        origin = f"{manifest}:{line}"
        if "_short" in row:
            report.fail(origin, f"expected 3 columns ({','.join(MANIFEST_COLUMNS)}), found {row['_short']}")
            continue
        try:
            label = check_label(row["identity"], origin)
            if row["modality"] not in ("face", "voice", "video"):
                raise BadArgument(origin, f"unknown modality {row['modality']!r} (face, voice or video)")
            if not row["path"]:
                raise BadArgument(origin, "empty path")
            path = resolve_listed_path(manifest, row["path"], root, origin)
        except BadArgument as error:
            report.fail(origin, error.problem)
            continue
        items.append(EnrollItem(label, row["modality"], path, origin))
    return items


def enroll(gallery: Gallery, embedder, items: Sequence[EnrollItem], report: EnrollReport | None = None,
           force: bool = False, progress: Callable[[int], None] | None = None,
           record_batch: Callable[[list[dict]], object] | None = None, fps: float = DEFAULT_FPS) -> EnrollReport:
    """Embed and store `items` (hold the gallery's write lock); failures are recorded, never raised.

    A video item becomes a face item (its main face track) and a voice item (its soundtrack's speech) of its identity,
    stored together (fvmatch.analysis.video; `fps`: frames sampled a second); images and recordings are embedded in batches.

    `record_batch(entries)` is called with each batch's enrolled entries inside the transaction that stores them
    (the CLI appends an audit row there), so a killed run leaves no stored item that it did not record.
    """
    report = report if report is not None else EnrollReport()
    videos = [item for item in items if item.modality == "video"]
    items = [item for item in items if item.modality != "video"]
    seen: dict[tuple[str, str], str] = {}  # (modality, sha256) -> identity, of the items this run has stored
    for start in range(0, len(items), BATCH_SIZE):
        batch = items[start : start + BATCH_SIZE]
        # each item's outcome: ("ready", entry) | ("skipped", record) | ("failed", message), reported in listing order
        outcomes: list[tuple[str, object]] = []
        for item in batch:
            try:
                outcomes.append(_prepare(gallery, embedder, item, force))
            except FvmatchError as error:
                outcomes.append(("failed", _problem(item, error)))
            except OSError as error:
                outcomes.append(("failed", f"cannot read file ({error.strerror or error})"))
        _embed_voices(embedder, batch, outcomes)
        ready = []
        for item, (kind, value) in zip(batch, outcomes):
            if kind == "ready":  # a file listed twice in this run is stored once (checked after embedding, so that
                key = (item.modality, value[1].sha256)  # a listing that failed does not turn the next into a skip)
                earlier = seen.get(key)
                if earlier == item.identity:
                    kind, value = "skipped", _skipped(item, "listed earlier in this run")
                elif earlier is not None and not force:
                    kind, value = "failed", _already_enrolled(earlier, item)
                else:
                    seen[key] = item.identity
                    ready.append(value)
            if kind == "skipped":
                report.skipped.append(value)
            elif kind == "failed":
                report.fail(item.origin, value)
        _embed_faces(embedder, [entry for entry in ready if entry[2] is not None])
        if ready:
            entries: list[dict] = []

            def stored(media_ids: list[int]) -> None:
                entries.extend({"identity": item.identity, "modality": item.modality, "path": str(item.path),
                                "sha256": new.sha256, "media_id": media_id, "quality": new.quality,
                                **({"notes": notes} if (notes := input_notes(new.quality_details)) else {})}
                               for (item, new, _), media_id in zip(ready, media_ids))
                if record_batch is not None:
                    record_batch(entries)

            gallery.add([new for _, new, _ in ready], record=stored)
            report.enrolled.extend(entries)  # only once committed
        if progress:
            progress(len(batch))
    for item in videos:
        _enroll_video(gallery, embedder, item, report, force, record_batch, fps)
        if progress:
            progress(1)
    gallery.flush()
    return report


def _enroll_video(gallery: Gallery, embedder, item: EnrollItem, report: EnrollReport, force: bool,
                  record_batch: Callable[[list[dict]], object] | None, fps: float) -> None:
    """Embed one video and store its face track and soundtrack as items of its identity, in one transaction."""
    from fvmatch.media.video import probe_video
    from fvmatch.analysis.video import embed_video

    try:
        _check_file(item)
        # what the file is comes first: an image named .mp4 is no duplicate video
        info = probe_video(item.path, audio_track=item.audio_track)
        sha256, size = file_digest(item.path)
        # a video holds one face per track and one voice per audio track: each is a part of its own, owned by
        # whoever enrolled it first (so two people of one interview are enrolled from their own tracks)
        face_owners = gallery.video_part_owners(sha256, "face", item.face_track or 1)
        voice_owners = gallery.video_part_owners(sha256, "voice", info.audio_track if info.audio_tracks else None)
        parts = {"face": face_owners, "voice": voice_owners}
        mine = {part for part, owners in parts.items() if item.identity in owners}
        others = {part: sorted(owners - {item.identity})[0] for part, owners in parts.items()
                  if part not in mine and owners - {item.identity} and not force}
        if "face" in others:
            raise BadArgument(item.origin, _already_enrolled(others["face"], item))
        wanted = [part for part in parts if part not in mine and part not in others]
        if not wanted:  # its face is this identity's (and its soundtrack this identity's or another's)
            report.skipped.append(_skipped(item, "already enrolled for this identity"))
            return
        notes = []
        if "voice" in others:  # the soundtrack stays its first owner's voice; this identity gets its own face
            notes.append(f"soundtrack already enrolled as the voice of {others['voice']!r}: face only (--force enrolls "
                         "it again)")
        evidence = embed_video(embedder, item.path, fps=fps, face_spaces=spaces_of("face"),
                               voice_spaces=reference_spaces("voice") if "voice" in wanted else [], info=info,
                               face_track=item.face_track)
        evidence.notes.extend(notes)
    except FvmatchError as error:
        report.fail(item.origin, _problem(item, error))
        return
    except OSError as error:
        report.fail(item.origin, f"cannot read file ({error.strerror or error})")
        return
    source = str(item.path.resolve())
    ready = [NewItem(item.identity, embedding.modality, source, evidence.sha256, evidence.size,
                     float(embedding.quality["detection_probability"] if embedding.modality == "face"
                           else embedding.quality["speech_seconds"]), embedding.vectors, embedding.quality)
             for embedding in evidence.embeddings() if embedding.modality in wanted]
    entries: list[dict] = []

    def stored(media_ids: list[int]) -> None:
        entries.extend({"identity": item.identity, "modality": new.modality, "path": str(item.path),
                        "sha256": new.sha256, "media_id": media_id, "quality": new.quality,
                        "video": new.quality_details["video"], "notes": evidence.notes} for new, media_id in zip(ready, media_ids))
        if record_batch is not None:
            record_batch(entries)

    gallery.add(ready, record=stored)
    report.enrolled.extend(entries)


def _prepare(gallery: Gallery, embedder, item: EnrollItem, force: bool) -> tuple[str, object]:
    """Hash, check the gallery for the same file, crop a face; faces and voices are embedded later, in batches.

    ("ready", (item, new row without its vectors, PreparedFace or None)), or ("skipped", record) when the item is
    already enrolled for this identity.
    """
    _check_file(item)
    if is_video(item.path):
        raise BadArgument(item.origin, f"a video file, not {'an image' if item.modality == 'face' else 'a recording'}: "
                          "enroll it with --video (modality video)")
    sha256, size = file_digest(item.path)
    owners = {label for _, label in gallery.media_by_sha256(sha256, item.modality)}
    if item.identity in owners:
        return "skipped", _skipped(item, "already enrolled for this identity")
    if owners and not force:
        raise BadArgument(item.origin, _already_enrolled(sorted(owners)[0], item))
    source = str(item.path.resolve())
    if item.modality == "voice":
        return "ready", (item, NewItem(item.identity, "voice", source, sha256, size, 0.0, None, {}), None)
    face = embedder.prepare_face(item.path, spaces_of("face"))[0]
    return "ready", (item, NewItem(item.identity, "face", source, sha256, size, face.crop.probability, None,
                                   face.quality()), face)


def _check_file(item: EnrollItem) -> None:
    """BadArgument for an item whose path is no file (missing, a directory); a manifest's row names the path too."""
    if (problem := input_file_problem(item.path)) is not None:
        raise BadArgument(item.origin, problem if item.origin == str(item.path) else f"{item.path}: {problem}")


def _problem(item: EnrollItem, error: FvmatchError) -> str:
    return error.problem if error.item == item.origin else str(error)


def _skipped(item: EnrollItem, reason: str) -> dict:
    return {"identity": item.identity, "modality": item.modality, "path": str(item.path), "reason": reason}


def _already_enrolled(owner: str, item: EnrollItem) -> str:
    return f"same file is already enrolled as {owner!r}; use --force to enroll it under {item.identity!r} too"


def _embed_voices(embedder, batch: Sequence[EnrollItem], outcomes: list) -> None:
    """Embed the batch's ready voices in their spaces and reference conditions; a failure replaces its outcome."""
    voices = [position for position, (kind, _) in enumerate(outcomes) if kind == "ready" and batch[position].modality == "voice"]
    embeddings = embedder.embed_voices([batch[position].path for position in voices], reference_spaces("voice"))
    for position, embedding in zip(voices, embeddings):
        if isinstance(embedding, FvmatchError):
            outcomes[position] = ("failed", _problem(batch[position], embedding))
        else:
            new = outcomes[position][1][1]
            new.vectors, new.quality, new.quality_details = (embedding.vectors, embedding.quality["speech_seconds"],
                                                             embedding.quality)


def _embed_faces(embedder, entries: list) -> None:
    """Embed the batch's prepared faces, each space in one batch, and put the vectors on their rows."""
    if not entries:
        return
    vectors = embedder.embed_prepared_faces([face for _, _, face in entries], spaces_of("face"))
    for (_, new, _), face_vectors in zip(entries, vectors):
        new.vectors = face_vectors
