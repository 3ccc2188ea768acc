"""Turn a VoxCeleb-style corpus into shards a GPU trainer streams without re-decoding (ARCHITECTURE.md section 8).

Input:
    DATA/faces/<identity>/<video>/<frame>.jpg        any suffix in fvmatch.media.image.IMAGE_SUFFIXES
    DATA/voices/<identity>/<video>/<utterance>.wav   any suffix in fvmatch.media.audio.AUDIO_SUFFIXES
    DATA/meta.csv    identity, name, gender, nationality, age, split (train | val | test; one row per identity)

Every item goes through the preprocessing inference uses: a face is the largest MTCNN crop
(`FaceDetector().faces_in_file(path)[0].pixels`, uint8 160x160x3 RGB); a voice is `load_audio`
(16 kHz mono) then `speech_only` (silero-vad, silences dropped), stored as int16 (float = int16 / 32768).
A file that is unreadable, has no face or less than MIN_SPEECH_SECONDS of speech is recorded as a
failure and skipped, as is an identity folder that meta.csv does not list. meta.csv rows with no
folder are left out of the identity list.

Output:
    CACHE/prepare.json  {"format": "fvmatch-prepared/1", "source": absolute DATA path,
                         "identities": [{"identity", "name", "gender", "nationality", "age" (int or null), "split"}, ...]
                                       sorted by identity; an identity's index is its position in this list,
                         "shards": ["shard-00000", ...], "identities_per_shard": K,
                         "failures": [{"item": path relative to DATA, "error": one line}, ...],
                         "counts": {"identities", "faces", "voices", "voice_seconds", "failures", "paired_identities"},
                         "complete": true once every shard is written}
    CACHE/shard-00000/  identities [0, K); shard-00001: [K, 2K); ...
        faces.npy           uint8 (n_faces, 160, 160, 3)
        face_identity.npy   int32 (n_faces,)           identity index
        face_source.json    source paths relative to DATA, parallel to faces
        voices.npy          int16 (total_samples,)     speech-only 16 kHz waveforms, concatenated
        voice_offsets.npy   int64 (n_voices + 1,)      clip i is voices[offsets[i]:offsets[i + 1]]; last = total
        voice_identity.npy  int32 (n_voices,)
        voice_source.json
        shard.json          {"format", "shard", "identity_range": [start, stop], "counts", "failures"}

`paired_identities` counts the identities left with at least one face and one voice. Items in a shard
are ordered by identity, then by path, so a corpus gives byte-identical shards whatever the number
of workers. The .npy files can be opened with `np.load(path, mmap_mode="r")`.

A shard is built in shard-XXXXX.tmp/ and renamed into place when whole, so a shard directory is
either complete or absent. prepare.json is written first (with "complete": false); a later run with
the same DATA keeps the shards that exist and builds the rest, then merges the failures and counts
and sets "complete": true. A cache prepared from another DATA or identity list is refused.
"""
from __future__ import annotations

import importlib.util
import json
import multiprocessing
import os
import queue
import shutil
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from functools import lru_cache
from pathlib import Path

import numpy as np

from fvmatch.corpus import media_files, read_meta
from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.media.audio import AUDIO_SUFFIXES, MIN_SPEECH_SECONDS, SAMPLE_RATE, SpeechSummary, require_speech
from fvmatch.media.image import FACE_SIZE, IMAGE_SUFFIXES

FORMAT = "fvmatch-prepared/1"
INT16_SCALE = 32768  # soundfile reads PCM_16 as int / 32768, so this round-trips 16-bit sources exactly
MIN_PAIRED_IDENTITIES = 2


def prepare_corpus(data: str | Path, cache: str | Path, workers: int = 0, identities_per_shard: int = 64,
                   progress: Callable[[int], None] | None = None,
                   total: Callable[[int], None] | None = None, frames_per_video: int | None = None) -> dict:
    """Prepare the shards of DATA in CACHE (resuming a partial cache); return prepare.json's content.

    The returned dict also holds "shards_built", the shards this call wrote (empty when the cache was
    already complete). `workers` processes build shards in parallel (0: one per CPU core; 1: in this
    process). `total(n)` is called once with the number of identities, then `progress(n)` as identities
    complete (shards already in the cache are reported at once). Raises BadArgument for a corpus that
    cannot be prepared, or ends with fewer than 2 identities holding both a face and a voice.
    `frames_per_video`: at most this many face frames of each video folder (faces/<id>/<video>/), spread evenly over
    its frames in name order (VoxCeleb1's tracks hold a frame a second of one face: a handful of a video says what
    its thousands do, at a fraction of the detection and expert time); None keeps every frame.
    """
    if frames_per_video is not None and frames_per_video < 1:
        raise BadArgument(frames_per_video, "frames per video must be at least 1")
    if identities_per_shard < 1:
        raise BadArgument(identities_per_shard, "identities per shard must be at least 1")
    if workers < 0:
        raise BadArgument(workers, "workers must be 0 (one per CPU core) or more")
    data, cache = Path(data).resolve(), Path(cache)
    identities, plan_failures = _plan(data)
    labels = [row["identity"] for row in identities]
    shards = {_shard_name(index): (start, labels[start : start + identities_per_shard])
              for index, start in enumerate(range(0, len(labels), identities_per_shard))}
    plan = {"format": FORMAT, "source": str(data), "identities": identities, "shards": list(shards),
            "identities_per_shard": identities_per_shard, "frames_per_video": frames_per_video}
    stored = _existing_plan(cache, plan)
    done = {name: _read_json(cache / name / "shard.json") for name in shards if (cache / name / "shard.json").is_file()}
    if total:
        total(len(labels))
    if progress and done:
        progress(sum(len(shards[name][1]) for name in done))
    if stored is not None and stored.get("complete") and len(done) == len(shards):
        return _checked_result(data, cache, {**stored, "shards_built": []})

    _write_json(cache / "prepare.json", _summary(plan, plan_failures, done, complete=False))
    todo = [(name, *shards[name]) for name in shards if name not in done]
    workers = min(workers or os.cpu_count() or 1, len(todo))
    if workers <= 1:
        for name, start, shard_labels in todo:
            done[name] = _build_shard(data, cache, name, start, shard_labels, progress, frames_per_video)
    else:
        done.update(_build_in_pool(data, cache, todo, workers, progress, frames_per_video))
    result = _summary(plan, plan_failures, done, complete=True)
    _write_json(cache / "prepare.json", result)
    return _checked_result(data, cache, {**result, "shards_built": [name for name, _, _ in todo]})


def _plan(data: Path) -> tuple[list[dict], list[dict]]:
    """The identities to prepare (meta.csv rows with a folder, sorted) and the failures found while planning."""
    if not data.is_dir():
        raise BadArgument(data, "no such folder")
    folders = {modality: _identity_folders(data / modality) for modality in ("faces", "voices")}
    if not folders["faces"] and not folders["voices"]:
        raise BadArgument(data, "empty corpus: no faces/<identity>/ or voices/<identity>/ folders "
                                "(expected faces/<identity>/<video>/<frame>.jpg, voices/<identity>/<video>/<clip>.wav, meta.csv)")
    meta = {row["identity"]: row for row in read_meta(data)}
    failures = [{"item": f"{modality}/{label}", "error": f"identity {label!r} is not in meta.csv; skipped"}
                for modality in ("faces", "voices") for label in sorted(folders[modality] - meta.keys())]
    labels = sorted((folders["faces"] | folders["voices"]) & meta.keys())
    paired = [label for label in labels
              if _has_media(data / "faces" / label, IMAGE_SUFFIXES) and _has_media(data / "voices" / label, AUDIO_SUFFIXES)]
    if len(paired) < MIN_PAIRED_IDENTITIES:
        raise BadArgument(data, f"training needs at least {MIN_PAIRED_IDENTITIES} identities in meta.csv with both face "
                                f"images and voice recordings; found {len(paired)} ({', '.join(paired) or 'none'})")
    return [meta[label] for label in labels], failures


def _identity_folders(root: Path) -> set[str]:
    if not root.is_dir():
        return set()
    return {entry.name for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")}


def _has_media(folder: Path, suffixes: set[str]) -> bool:
    return bool(media_files(folder, suffixes))


def _shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def _existing_plan(cache: Path, plan: dict) -> dict | None:
    """The cache's prepare.json when it was made from the same plan; None for a new or empty cache."""
    path = cache / "prepare.json"
    if cache.exists() and not cache.is_dir():
        raise BadArgument(cache, "is a file, not a folder")
    if not path.is_file():
        if cache.exists() and any(cache.iterdir()):
            raise BadArgument(cache, "is not empty and holds no prepare.json; give an empty or new folder")
        return None
    stored = _read_json(path)
    for key, what in (("format", "format"), ("source", "corpus"), ("identities_per_shard", "identities per shard"),
                      ("frames_per_video", "--frames-per-video")):
        if stored.get(key) != plan[key]:
            raise BadArgument(cache, f"was prepared with another {what} ({stored.get(key)!r}, now {plan[key]!r}); "
                                     f"give an empty folder or delete this one")
    if stored.get("identities") != plan["identities"]:
        before = len(stored.get("identities") or [])
        raise BadArgument(cache, f"was prepared from another identity list or meta.csv ({before} identities, now "
                                 f"{len(plan['identities'])}); give an empty folder or delete this one")
    return stored


def _summary(plan: dict, plan_failures: list[dict], shards: dict[str, dict], complete: bool) -> dict:
    """prepare.json: the plan, with the failures and counts of the shards written so far."""
    names = [name for name in plan["shards"] if name in shards]
    failures = plan_failures + [failure for name in names for failure in shards[name]["failures"]]
    counts = {"identities": len(plan["identities"]), "failures": len(failures)}
    for key in ("faces", "voices", "paired_identities"):
        counts[key] = sum(shards[name]["counts"][key] for name in names)
    counts["voice_seconds"] = round(sum(shards[name]["counts"]["voice_seconds"] for name in names), 3)
    return {**plan, "failures": failures, "counts": counts, "complete": complete}


def _checked_result(data: Path, cache: Path, result: dict) -> dict:
    paired = result["counts"]["paired_identities"]
    if paired < MIN_PAIRED_IDENTITIES:
        raise BadArgument(data, f"training needs at least {MIN_PAIRED_IDENTITIES} identities with both a usable face "
                                f"and voice; {paired} left after preparation (see the failures in {cache / 'prepare.json'})")
    return result


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BadArgument(path, f"cannot read this cache file ({error}); give an empty folder or delete this one") from None


def _write_json(path: Path, content: dict | list) -> None:
    """Write JSON through a temporary name, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1) + "\n")
    os.replace(temporary, path)


def _build_in_pool(data: Path, cache: Path, todo: list, workers: int, progress: Callable[[int], None] | None,
                   frames_per_video: int | None = None) -> dict[str, dict]:
    """Build shards in `workers` spawned processes, one shard per task; their progress comes back on a queue."""
    # spawn, not fork: the caller may have torch loaded, and forking a process with its threads is unsafe
    context = multiprocessing.get_context("spawn")
    progress_queue = context.Queue()
    threads = max(1, (os.cpu_count() or 1) // workers)
    built: dict[str, dict] = {}
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(progress_queue, threads)) as pool:
        futures = {pool.submit(_build_shard, data, cache, name, start, labels, None, frames_per_video): name
                   for name, start, labels in todo}
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(progress_queue, progress)
                for future in finished:
                    built[futures[future]] = future.result()
        except BaseException:  # not handled here: stop the workers (also on Ctrl-C), then re-raise
            pool.shutdown(wait=True, cancel_futures=True)
            raise
    _drain(progress_queue, progress)  # the workers have exited, so everything they reported is in the queue
    progress_queue.close()
    return built


def _drain(progress_queue, progress: Callable[[int], None] | None) -> None:
    while True:
        try:
            count = progress_queue.get_nowait()
        except queue.Empty:
            return
        if progress:
            progress(count)


_worker_queue = None


def _start_worker(progress_queue, threads: int) -> None:
    """Pool initializer: keep the progress queue, and share the CPU cores among the workers rather than oversubscribe."""
    global _worker_queue
    _worker_queue = progress_queue
    if importlib.util.find_spec("torch") is not None:  # prepare itself runs without the training extra
        import torch

        torch.set_num_threads(threads)


def _report_to_parent(count: int) -> None:
    if _worker_queue is not None:
        _worker_queue.put(count)


@lru_cache(maxsize=1)
def _face_detector():
    """One MTCNN per process, built on first use and reused for every shard the process builds."""
    from fvmatch.media.image import FaceDetector

    return FaceDetector()


def sampled_frames(paths: list[Path], identity_folder: Path, per_video: int | None) -> list[Path]:
    """At most `per_video` of an identity's face files from each video folder (its first level below the identity),
    evenly spread over them in name order; all of them for None."""
    if per_video is None:
        return paths
    videos: dict[str, list[Path]] = {}
    for path in paths:
        videos.setdefault(path.relative_to(identity_folder).parts[0], []).append(path)
    kept = []
    for frames in videos.values():
        frames = sorted(frames)
        chosen = np.unique(np.linspace(0, len(frames) - 1, min(per_video, len(frames))).round().astype(int))
        kept.extend(frames[i] for i in chosen)
    return sorted(kept)


def _build_shard(data: Path, cache: Path, name: str, start: int, labels: list[str],
                 progress: Callable[[int], None] | None = None, frames_per_video: int | None = None) -> dict:
    """Build one shard in NAME.tmp/, rename it into place, and return its shard.json content."""
    progress = progress or _report_to_parent
    temporary = cache / f"{name}.tmp"
    if temporary.exists():
        shutil.rmtree(temporary)  # left by an interrupted run
    temporary.mkdir(parents=True)
    faces = _NpyStream(temporary / "faces.npy", np.uint8, (FACE_SIZE, FACE_SIZE, 3))
    voices = _NpyStream(temporary / "voices.npy", np.int16)
    face_identity, face_source, voice_identity, voice_source, voice_offsets = [], [], [], [], [0]
    failures: list[dict] = []
    paired = 0
    for index, label in enumerate(labels, start):
        face_count = voice_count = 0
        for path in sampled_frames(media_files(data / "faces" / label, IMAGE_SUFFIXES), data / "faces" / label,
                                   frames_per_video):
            pixels = _attempt(_face_pixels, path, data, failures)
            if pixels is not None:
                faces.append(pixels[np.newaxis])
                face_identity.append(index)
                face_source.append(path.relative_to(data).as_posix())
                face_count += 1
        for path in media_files(data / "voices" / label, AUDIO_SUFFIXES):
            speech = _attempt(_speech_int16, path, data, failures)
            if speech is not None:
                voices.append(speech)
                voice_offsets.append(voice_offsets[-1] + len(speech))
                voice_identity.append(index)
                voice_source.append(path.relative_to(data).as_posix())
                voice_count += 1
        paired += face_count > 0 and voice_count > 0
        progress(1)
    faces.close()
    voices.close()
    np.save(temporary / "face_identity.npy", np.array(face_identity, dtype=np.int32))
    np.save(temporary / "voice_identity.npy", np.array(voice_identity, dtype=np.int32))
    np.save(temporary / "voice_offsets.npy", np.array(voice_offsets, dtype=np.int64))
    _write_json(temporary / "face_source.json", face_source)
    _write_json(temporary / "voice_source.json", voice_source)
    shard = {"format": FORMAT, "shard": name, "identity_range": [start, start + len(labels)],
             "counts": {"identities": len(labels), "faces": len(face_source), "voices": len(voice_source),
                        "voice_seconds": round(voice_offsets[-1] / SAMPLE_RATE, 3), "failures": len(failures),
                        "paired_identities": paired},
             "failures": failures}
    _write_json(temporary / "shard.json", shard)
    if (cache / name).exists():
        shutil.rmtree(cache / name)  # a shard folder without shard.json was not made by this module's rename
    os.replace(temporary, cache / name)
    return shard


def _attempt(preprocess: Callable[[Path], np.ndarray], path: Path, data: Path, failures: list[dict]) -> np.ndarray | None:
    """`preprocess(path)`, or None after recording why the item was skipped."""
    try:
        return preprocess(path)
    except FvmatchError as error:
        message = error.problem
    except OSError as error:
        message = f"{type(error).__name__}: {error.strerror or error}"
    failures.append({"item": path.relative_to(data).as_posix(), "error": " ".join(message.split())})
    return None


def _face_pixels(path: Path) -> np.ndarray:
    """The largest face's 160x160x3 uint8 crop, exactly as inference crops it."""
    return _face_detector().faces_in_file(path)[0].pixels


def _speech_int16(path: Path) -> np.ndarray:
    """The speech of a recording (16 kHz mono, silences dropped, as inference keeps it) as int16."""
    from fvmatch.media.audio import load_audio
    from fvmatch.media.vad import speech_only

    summary = SpeechSummary()
    speech = speech_only(load_audio(path, summary))
    summary.speech_seconds = len(speech) / SAMPLE_RATE
    require_speech(path, summary, MIN_SPEECH_SECONDS)
    return np.clip(np.round(speech * INT16_SCALE), -INT16_SCALE, INT16_SCALE - 1).astype(np.int16)


class _NpyStream:
    """A .npy file written row block by row block, so a shard never has to fit in memory."""

    def __init__(self, path: Path, dtype, row_shape: tuple[int, ...] = ()) -> None:
        self.path, self.dtype, self.row_shape, self.rows = path, np.dtype(dtype), row_shape, 0
        self._raw_path = path.with_name(path.name + ".raw")
        self._raw = open(self._raw_path, "wb")

    def append(self, block: np.ndarray) -> None:
        assert block.shape[1:] == self.row_shape and block.dtype == self.dtype, (block.shape, block.dtype)
        self._raw.write(np.ascontiguousarray(block).tobytes())
        self.rows += len(block)

    def close(self) -> None:
        """Write the .npy header, then the rows (the header needs the final row count)."""
        self._raw.close()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                  "shape": (self.rows, *self.row_shape)}
        with open(self.path, "wb") as out, open(self._raw_path, "rb") as raw:
            np.lib.format.write_array_header_1_0(out, header)
            shutil.copyfileobj(raw, out, 1 << 22)
        self._raw_path.unlink()
