"""One split of a VoxCeleb-style corpus, every item embedded once: the input of evaluation and calibration.

    DATA/faces/<identity>/<video>/<frame>.jpg     (any suffix in fvmatch.media.image.IMAGE_SUFFIXES)
    DATA/voices/<identity>/<video>/<clip>.wav     (any suffix in fvmatch.media.audio.AUDIO_SUFFIXES)
    DATA/meta.csv                                 identity, name, gender, nationality, age, split

Items are embedded with the Embedder the analyst's commands use (largest face; speech windows averaged), so the
figures describe the tool as it runs. A file that fails (unreadable, no face, too little speech) is recorded and
left out. With a cache folder, vectors (and failures) are kept in `embeddings-<model id>.npz`, keyed by modality
and the file's sha256, so a second run embeds nothing it has seen, whatever the split or path.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES

CACHE_FORMAT = "fvmatch-embedding-cache/1"
SAVE_EVERY = 1000  # new embeddings between cache saves, so an interrupted run keeps most of its work
MODALITY_FOLDERS = {"face": ("faces", IMAGE_SUFFIXES), "voice": ("voices", AUDIO_SUFFIXES)}


@dataclass
class ItemSet:
    """The embedded items of one modality: paths relative to the corpus, owners (identity indices), unit vectors."""

    paths: list[str]
    owners: np.ndarray
    vectors: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class EmbeddedCorpus:
    data: Path
    split: str
    model_id: str
    identities: list[dict]  # meta.csv rows of the split with at least one embedded item, sorted by identity
    faces: ItemSet
    voices: ItemSet
    failures: list[dict] = field(default_factory=list)  # {"item": path relative to DATA, "error": one line}
    embedded: int = 0  # files embedded by this run
    from_cache: int = 0  # files (vectors or failures) served from the cache

    def items(self, modality: str) -> ItemSet:
        return self.faces if modality == "face" else self.voices

    def items_of(self, modality: str) -> dict[str, list[str]]:
        """identity -> its item paths, for trial drawing."""
        refs: dict[str, list[str]] = {}
        items = self.items(modality)
        for path, owner in zip(items.paths, items.owners):
            refs.setdefault(self.identities[owner]["identity"], []).append(path)
        return refs


def embed_corpus(data: str | Path, embedder, split: str = "test", cache_dir: str | Path | None = None,
                 progress: Callable[[int], None] | None = None, total: Callable[[int], None] | None = None
                 ) -> EmbeddedCorpus:
    """Embed every face and voice of the split's identities (see the module docstring).

    `total(n)` is called once with the number of files, then `progress(n)` as files are done (cached ones too).
    BadArgument when meta.csv is missing or malformed, or the split lists no identity with media.
    """
    # one reader of meta.csv and of the corpus layout for training and evaluation
    from fvmatch.corpus import media_files, read_meta

    data = Path(data)
    rows = sorted((row for row in read_meta(data) if row["split"] == split), key=lambda row: row["identity"])
    if not rows:
        raise BadArgument(data / "meta.csv", f"lists no identity in split {split!r}")
    files = [(modality, index, path) for modality, (folder, suffixes) in MODALITY_FOLDERS.items()
             for index, row in enumerate(rows) for path in media_files(data / folder / row["identity"], suffixes)]
    if not files:
        raise BadArgument(data, f"no face or voice files for the {len(rows)} identities of split {split!r} "
                                "(expected faces/<identity>/<video>/<frame>.jpg, voices/<identity>/<video>/<clip>.wav)")
    if total:
        total(len(files))
    cache = _EmbeddingCache(cache_dir, embedder)
    vectors: dict[str, list] = {"face": [], "voice": []}
    failures = []
    embedded = from_cache = 0
    try:
        for modality, index, path in files:
            relative = path.relative_to(data).as_posix()
            try:
                key = f"{modality}:{_sha256(path)}"
            except OSError as error:
                failures.append({"item": relative, "error": f"cannot be read ({error.strerror or error})"})
                key = None
            if key is not None:
                outcome = cache.get(key)
                if outcome is None:
                    outcome = _embed(embedder, modality, path)
                    cache.put(key, outcome)
                    embedded += 1
                else:
                    from_cache += 1
                if isinstance(outcome, str):
                    failures.append({"item": relative, "error": outcome})
                else:
                    vectors[modality].append((index, relative, outcome))
            if progress:
                progress(1)
    finally:
        cache.save()
    kept = sorted({index for found in vectors.values() for index, _, _ in found})
    position = {index: new for new, index in enumerate(kept)}
    dim = next((len(vector) for found in vectors.values() for _, _, vector in found), 0)
    sets = {}
    for modality, found in vectors.items():
        sets[modality] = ItemSet(
            paths=[relative for _, relative, _ in found],
            owners=np.array([position[index] for index, _, _ in found], dtype=np.int64),
            vectors=np.array([vector for _, _, vector in found], dtype=np.float32).reshape(len(found), dim))
    return EmbeddedCorpus(data=data, split=split, model_id=embedder.model_id, identities=[rows[i] for i in kept],
                          faces=sets["face"], voices=sets["voice"], failures=failures, embedded=embedded,
                          from_cache=from_cache)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _embed(embedder, modality: str, path: Path) -> np.ndarray | str:
    """The item's unit vector, or the reason it has none (the problem of the FvmatchError it raised)."""
    try:
        if modality == "face":
            return embedder.embed_face(path)[0].vector
        return embedder.embed_voice(path).vector
    except FvmatchError as error:
        return error.problem


class _EmbeddingCache:
    """Vectors and failures by (modality, sha256) for one model and embedder settings; a no-op without a folder."""

    def __init__(self, folder: str | Path | None, embedder) -> None:
        self.path = Path(folder) / f"embeddings-{embedder.model_id}.npz" if folder is not None else None
        self.settings = json.dumps({"model_id": embedder.model_id,
                                    "min_speech_seconds": getattr(embedder, "min_speech_seconds", None)})
        self.entries: dict[str, np.ndarray | str] = {}
        self.unsaved = 0
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        try:
            with np.load(self.path, allow_pickle=False) as stored:
                if str(stored["format"]) != CACHE_FORMAT or str(stored["settings"]) != self.settings:
                    return  # another embedder setting: start afresh, the file is replaced on save
                self.entries.update(zip(stored["keys"].tolist(), stored["vectors"]))
                self.entries.update(zip(stored["failed_keys"].tolist(), stored["failed_problems"].tolist()))
        except (OSError, ValueError, KeyError):
            self.entries.clear()  # a damaged cache costs a re-embedding, never a wrong vector

    def get(self, key: str) -> np.ndarray | str | None:
        return self.entries.get(key)

    def put(self, key: str, outcome: np.ndarray | str) -> None:
        if self.path is None:
            return
        self.entries[key] = outcome
        self.unsaved += 1
        if self.unsaved >= SAVE_EVERY:
            self.save()

    def save(self) -> None:
        if self.path is None or not self.unsaved:
            return
        vectors = {key: value for key, value in self.entries.items() if not isinstance(value, str)}
        failed = {key: value for key, value in self.entries.items() if isinstance(value, str)}
        dim = len(next(iter(vectors.values()))) if vectors else 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(temporary, format=np.array(CACHE_FORMAT), settings=np.array(self.settings),
                 keys=np.array(list(vectors), dtype=str),
                 vectors=np.array(list(vectors.values()), dtype=np.float32).reshape(len(vectors), dim),
                 failed_keys=np.array(list(failed), dtype=str), failed_problems=np.array(list(failed.values()), dtype=str))
        temporary.replace(self.path)
        self.unsaved = 0
