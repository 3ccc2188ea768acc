"""Filling in the vectors a gallery's items lack: a space added after they were enrolled (an upgraded gallery).

Vectors are computed from each item's evidence file, only when the file's sha256 still matches the one recorded at
enrolment; an item whose file is gone or changed is listed by name, never dropped and never embedded from other
content.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fvmatch.enrollment.enroll import file_digest
from fvmatch.errors import FvmatchError
from fvmatch.gallery import MODALITIES, Gallery
from fvmatch.spaces import reference_spaces

BATCH_SIZE = 32


@dataclass
class FillReport:
    filled: int = 0
    unavailable: list[dict] = field(default_factory=list)  # {"identity", "modality", "source_path", "problem"}

    def to_dict(self) -> dict:
        return {"filled": self.filled, "unavailable": len(self.unavailable), "unavailable_items": self.unavailable}


def items_missing_vectors(gallery: Gallery) -> list[tuple[dict, str, list[str]]]:
    """(item, modality, the spaces it lacks) for every item lacking a vector of a space the gallery records."""
    lacking: dict[int, tuple[dict, str, list[str]]] = {}
    for modality in MODALITIES:
        for space in reference_spaces(modality):
            if space in gallery.spaces:
                for item in gallery.missing_vectors(space, modality):
                    lacking.setdefault(item["media_id"], (item, modality, []))[2].append(space)
    for media_id, (item, _, _) in lacking.items():  # an item from a video keeps the video's record (its sampling)
        row = gallery.db.execute("SELECT quality_json FROM media WHERE id = ?", [media_id]).fetchone()
        try:
            video = json.loads(row[0]).get("video") if row else None
        except (ValueError, AttributeError):
            video = None
        if isinstance(video, dict):
            item["video"] = video
    return [lacking[media_id] for media_id in sorted(lacking)]


def fill_missing_vectors(gallery: Gallery, embedder, progress: Callable[[int], None] | None = None) -> FillReport:
    """Embed each item lacking a space's vector from its evidence file and store it (hold the write lock)."""
    report = FillReport()
    todo = items_missing_vectors(gallery)
    for start in range(0, len(todo), BATCH_SIZE):
        batch = todo[start : start + BATCH_SIZE]
        ready = [entry for entry in batch if _evidence_intact(entry, report)]
        filled = []
        for (item, modality, spaces), result in zip(ready, _embed(embedder, ready)):
            if isinstance(result, FvmatchError):
                report.unavailable.append(_unavailable(item, modality, result.problem))
            else:
                filled.append((item["media_id"], {space: result.vectors[space] for space in spaces}))
        gallery.fill_vectors(filled)
        report.filled += len(filled)
        if progress:
            progress(len(batch))
    gallery.flush()
    return report


def _evidence_intact(entry: tuple[dict, str, list[str]], report: FillReport) -> bool:
    item, modality, _ = entry
    path = Path(item["source_path"])
    try:
        if file_digest(path)[0] == item["sha256"]:
            return True
        problem = "the evidence file has changed since it was enrolled (sha256 differs)"
    except FileNotFoundError:
        problem = "the evidence file is gone"
    except OSError as error:
        problem = f"the evidence file cannot be read ({error.strerror or error})"
    report.unavailable.append(_unavailable(item, modality, problem))
    return False


def _embed(embedder, entries: Sequence[tuple[dict, str, list[str]]]) -> list:
    """An Embedding (or the FvmatchError) per entry, in order: voices in one batch, faces one by one."""
    results: list = [None] * len(entries)
    voices = [position for position, (item, modality, _) in enumerate(entries)
              if modality == "voice" and _video_fps(embedder, item) is None]
    spaces = sorted({space for position in voices for space in entries[position][2]})
    for position, result in zip(voices, embedder.embed_voices([entries[p][0]["source_path"] for p in voices], spaces)):
        results[position] = result
    for position, (item, modality, needed) in enumerate(entries):
        if _video_fps(embedder, item) is not None:  # an item from a video: its track or soundtrack, embedded again
            results[position] = _from_video(embedder, item, modality, needed)
        elif modality == "face":
            try:
                results[position] = embedder.embed_face(item["source_path"], spaces=needed)[0]
            except FvmatchError as error:
                results[position] = error
    return results


def _video_fps(embedder, item: dict) -> float | None:
    """The frames a second a video item was sampled at (recorded with it), or None for an image or a recording."""
    video = item.get("video")
    return float(video.get("fps") or 2.0) if isinstance(video, dict) else None


def _from_video(embedder, item: dict, modality: str, spaces: list[str]):
    """The Embedding of a video item in `spaces`: the video embedded again as it was (same sampling and audio track),
    the face track it was enrolled from (the one whose frame times are most nearly its own: numbers can change with
    the tracker; an item recorded without frame times: the main track) or its soundtrack; the FvmatchError when the video no longer gives that part."""
    from fvmatch.analysis.video import embed_video
    from fvmatch.media.video import probe_video

    record = item["video"]
    try:
        info = probe_video(item["source_path"], audio_track=record.get("audio_track"))
        evidence = embed_video(embedder, item["source_path"], fps=_video_fps(embedder, item), info=info,
                               face_spaces=spaces if modality == "face" else None,
                               voice_spaces=spaces if modality == "voice" else [], all_faces=modality == "face")
    except FvmatchError as error:
        return error
    if modality == "voice":
        found = evidence.voice
    else:
        stored = {round(float(time), 3) for time in record.get("frame_times") or []}
        times = [{round(time, 3) for time in track.times} for track in evidence.tracks]
        # the share of frame times in common (Jaccard): a short track inside a long one's time is still its own
        shared = [len(stored & own) / len(stored | own) if stored else float(not number)
                  for number, own in enumerate(times)]
        best = max(range(len(shared)), key=shared.__getitem__, default=None)
        found = evidence.track_faces[best] if best is not None and shared[best] > 0 else None
    return found if found is not None else FvmatchError(item["source_path"], f"the video no longer gives a {modality}")


def _unavailable(item: dict, modality: str, problem: str) -> dict:
    return {"identity": item["identity"], "modality": modality, "source_path": item["source_path"], "problem": problem}
