"""The identities of a labelled corpus, every item embedded once per space: the input of evaluation and calibration.

Two layouts (fvmatch.corpus):

    DATA/faces/<identity>/<video>/<frame>.jpg     a corpus with meta.csv (identity, name, gender, nationality,
    DATA/voices/<identity>/<video>/<clip>.wav     age, split): one split is embedded, its metadata kept for the
    DATA/meta.csv                                 stratified protocols

    DATA/faces/<person>/<file>                    a plain folder of labelled media (an analyst's casework): every
    DATA/voices/<person>/<file>                   person is embedded; no split, no metadata

(any suffix in fvmatch.media.image.IMAGE_SUFFIXES / fvmatch.media.audio.AUDIO_SUFFIXES). Items are embedded with
the Embedder the analyst's commands use (largest face; speech windows averaged), so the figures describe the tool
as it runs, in one or more embedding spaces (fvmatch.spaces): a file is decoded, detected and cut into speech
once, then embedded in every requested space that takes its modality; a space of one modality has no items of the
other. A file that fails (unreadable, no face, too little speech) is recorded and left out. With a cache folder,
each space's vectors (and failures) are kept in `embeddings-<model id of the space>.npz`, keyed by modality and
the file's sha256, so a second run embeds nothing it has seen, whatever the split or path.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.media.audio import AUDIO_SUFFIXES
from fvmatch.media.image import IMAGE_SUFFIXES
from fvmatch.spaces import DEFAULT_SPACE, JOINT, SPACE_MODALITIES, TRIAL_TYPES

CACHE_FORMAT = "fvmatch-embedding-cache/1"
SAVE_EVERY = 1000  # new embeddings between cache saves, so an interrupted run keeps most of its work
EMBED_BATCH = 64  # files embedded together (voices: speech found in one pass over the batch's short clips)
MODALITY_FOLDERS = {"face": ("faces", IMAGE_SUFFIXES), "voice": ("voices", AUDIO_SUFFIXES)}
DEFAULT_SPACES = tuple(dict.fromkeys(DEFAULT_SPACE[kind] for kind in TRIAL_TYPES))  # each trial type's own space


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
    """A corpus's items embedded in one space (`model_id`: that space's)."""

    data: Path
    split: str | None  # None for a plain folder, used whole
    model_id: str
    identities: list[dict]  # rows (meta.csv's, or a plain folder's with no metadata) with an embedded item, sorted
    faces: ItemSet
    voices: ItemSet
    failures: list[dict] = field(default_factory=list)  # {"item": path relative to DATA, "error": one line}
    embedded: int = 0  # files embedded by this run
    from_cache: int = 0  # files (vectors or failures) served from the cache
    space: str = JOINT
    layout: str = "meta"  # "meta": a corpus with meta.csv; "plain": a plain folder of labelled media

    def items(self, modality: str) -> ItemSet:
        return self.faces if modality == "face" else self.voices

    def items_of(self, modality: str) -> dict[str, list[str]]:
        """identity -> its item paths, for trial drawing."""
        refs: dict[str, list[str]] = {}
        items = self.items(modality)
        for path, owner in zip(items.paths, items.owners):
            refs.setdefault(self.identities[owner]["identity"], []).append(path)
        return refs


Corpora = EmbeddedCorpus | Mapping[str, EmbeddedCorpus]


def as_corpora(embedded: Corpora) -> dict[str, EmbeddedCorpus]:
    """{space: corpus} of one EmbeddedCorpus or of a mapping of them."""
    return {embedded.space: embedded} if isinstance(embedded, EmbeddedCorpus) else dict(embedded)


def scoring_spaces(spaces: Iterable[str]) -> dict[str, str]:
    """Which of these spaces scores each trial type: the type's default space when it is among them, else the
    first that embeds both of the type's modalities; trial types none of them can score are left out."""
    spaces = list(spaces)
    chosen = {}
    for kind in TRIAL_TYPES:
        needed = set(kind.split("-"))
        able = [space for space in spaces if needed <= set(SPACE_MODALITIES.get(space, ("face", "voice")))]
        if able:
            chosen[kind] = DEFAULT_SPACE[kind] if DEFAULT_SPACE[kind] in able else able[0]
    return chosen


def embed_corpus(data: str | Path, embedder, split: str | None = None, space: str = JOINT,
                 cache_dir: str | Path | None = None, progress: Callable[[int], None] | None = None,
                 total: Callable[[int], None] | None = None) -> EmbeddedCorpus:
    """Embed every item of the evaluated identities in one space (`embed_spaces` with one space)."""
    return embed_spaces(data, embedder, [space], split, cache_dir, progress, total)[space]


def embed_spaces(data: str | Path, embedder, spaces: Sequence[str] = DEFAULT_SPACES, split: str | None = None,
                 cache_dir: str | Path | None = None, progress: Callable[[int], None] | None = None,
                 total: Callable[[int], None] | None = None) -> dict[str, EmbeddedCorpus]:
    """Embed every item of the evaluated identities in each space (see the module docstring): {space: corpus}.

    `split`: the meta.csv split to embed (None: "test"); a plain folder has none (BadArgument when one is given).
    `total(n)` is called once with the number of files, then `progress(n)` as files are done (cached ones too).
    BadArgument when DATA is neither layout, meta.csv is malformed, or no identity has media.
    """
    from fvmatch.corpus import corpus_layout

    data = Path(data)
    unknown = [space for space in spaces if space not in SPACE_MODALITIES]
    if unknown:
        raise BadArgument(unknown[0], f"not a space; one of {', '.join(SPACE_MODALITIES)}")
    layout = corpus_layout(data)
    split, rows, files_of = _identities(data, layout, split)
    wanted = {modality: [space for space in spaces if modality in SPACE_MODALITIES[space]]
              for modality in MODALITY_FOLDERS}
    files = [(modality, index, path) for modality in MODALITY_FOLDERS if wanted[modality]
             for index, row in enumerate(rows) for path in files_of(modality, row["identity"])]
    if not files:
        where = f"the {len(rows)} identities of split {split!r}" if layout == "meta" else f"the {len(rows)} people"
        expected = ("faces/<identity>/<video>/<frame>.jpg, voices/<identity>/<video>/<clip>.wav" if layout == "meta"
                    else "faces/<person>/<file>, voices/<person>/<file>")
        raise BadArgument(data, f"no {' or '.join(m for m in MODALITY_FOLDERS if wanted[m])} files for {where} "
                                f"(expected {expected})")
    if total:
        total(len(files))
    model_ids = {space: embedder.space(space).model_id for space in spaces}
    caches = {space: _EmbeddingCache(cache_dir, model_ids[space], getattr(embedder, "min_speech_seconds", None))
              for space in spaces}
    outcomes: dict[str, list] = {space: [None] * len(files) for space in spaces}  # vector | problem, per file
    counted = {space: {"embedded": 0, "from_cache": 0} for space in spaces}
    pending: list[tuple[int, Path, str, tuple[str, ...]]] = []  # (file number, path, cache key, spaces lacking it)
    try:
        for number, (modality, _, path) in enumerate(files):
            missing = _look_up(number, modality, path, wanted[modality], caches, outcomes, counted)
            if missing:
                key, lacking = missing
                pending.append((number, path, key, lacking))
            elif progress:
                progress(1)
            if pending and (len(pending) >= EMBED_BATCH or number + 1 == len(files) or files[number + 1][0] != modality):
                _embed_pending(embedder, modality, pending, outcomes, caches, counted)
                if progress:
                    progress(len(pending))
                pending = []
    finally:
        for cache in caches.values():
            cache.save()
    return {space: _corpus(data, split, layout, space, model_ids[space], embedder.space(space).dim, rows, files,
                           outcomes[space], **counted[space]) for space in spaces}


def _look_up(number: int, modality: str, path: Path, spaces: Sequence[str], caches: Mapping, outcomes: dict,
             counted: dict) -> tuple[str, tuple[str, ...]] | None:
    """Fill in a file's outcomes from the caches; return its cache key and the spaces that lack it (None: none)."""
    try:
        key = f"{modality}:{_sha256(path)}"
    except OSError as error:
        for space in spaces:
            outcomes[space][number] = f"cannot be read ({error.strerror or error})"
        return None
    lacking = []
    for space in spaces:
        outcomes[space][number] = caches[space].get(key)
        if outcomes[space][number] is None:
            lacking.append(space)
        else:
            counted[space]["from_cache"] += 1
    return (key, tuple(lacking)) if lacking else None


def _identities(data: Path, layout: str, split: str | None) -> tuple[str | None, list[dict], Callable]:
    """The split embedded, its identities (sorted) and how to list one identity's files of a modality."""
    # one reader of meta.csv and of the corpus layout for training and evaluation
    from fvmatch.corpus import media_files, person_files, plain_identities, split_rows

    if layout == "plain":
        if split is not None:
            raise BadArgument(data, f"has no meta.csv, so no split {split!r}: a plain folder of labelled media is "
                                    "used whole (give no split)")
        return None, plain_identities(data), (
            lambda modality, label: person_files(data / MODALITY_FOLDERS[modality][0] / label,
                                                 MODALITY_FOLDERS[modality][1]))
    split = split or "test"
    rows = split_rows(data, split)
    return split, rows, (lambda modality, label: media_files(data / MODALITY_FOLDERS[modality][0] / label,
                                                            MODALITY_FOLDERS[modality][1]))


def _embed_pending(embedder, modality: str, pending: list, outcomes: dict, caches: dict, counted: dict) -> None:
    """Embed a batch of files in the spaces that lack them (files lacking the same spaces embedded together)."""
    groups: dict[tuple[str, ...], list] = {}
    for entry in pending:
        groups.setdefault(entry[3], []).append(entry)
    for lacking, entries in groups.items():
        for (number, _, key, _), found in zip(entries, _embed_files(embedder, modality, [e[1] for e in entries], lacking)):
            for space in lacking:
                outcome = found if isinstance(found, str) else found[space]
                outcomes[space][number] = outcome
                caches[space].put(key, outcome)
                counted[space]["embedded"] += 1


def _embed_files(embedder, modality: str, paths: list[Path], spaces: Sequence[str]) -> list[dict | str]:
    """Each file's {space: unit vector}, or the reason it has none (the problem of the FvmatchError it raised)."""
    if modality == "voice":
        return [found.problem if isinstance(found, FvmatchError) else found.vectors
                for found in embedder.embed_voices(paths, spaces=list(spaces))]
    found = []
    for path in paths:
        try:
            found.append(embedder.embed_face(path, spaces=list(spaces))[0].vectors)
        except FvmatchError as error:
            found.append(error.problem)
    return found


def _corpus(data: Path, split: str | None, layout: str, space: str, model_id: str, dim: int, rows: list[dict],
            files: list, outcomes: list, embedded: int, from_cache: int) -> EmbeddedCorpus:
    """One space's EmbeddedCorpus from the outcomes of the files (None: a file of a modality it does not embed)."""
    failures = []
    vectors: dict[str, list] = {"face": [], "voice": []}
    for (modality, index, path), outcome in zip(files, outcomes):
        relative = path.relative_to(data).as_posix()
        if isinstance(outcome, str):
            failures.append({"item": relative, "error": outcome})
        elif outcome is not None:
            vectors[modality].append((index, relative, outcome))
    kept = sorted({index for found in vectors.values() for index, _, _ in found})
    position = {index: new for new, index in enumerate(kept)}
    sets = {}
    for modality, found in vectors.items():
        sets[modality] = ItemSet(
            paths=[relative for _, relative, _ in found],
            owners=np.array([position[index] for index, _, _ in found], dtype=np.int64),
            vectors=np.array([vector for _, _, vector in found], dtype=np.float32).reshape(len(found), dim))
    return EmbeddedCorpus(data=data, split=split, model_id=model_id, identities=[rows[index] for index in kept],
                          faces=sets["face"], voices=sets["voice"], failures=failures, embedded=embedded,
                          from_cache=from_cache, space=space, layout=layout)


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class _EmbeddingCache:
    """Vectors and failures by (modality, sha256) for one space's model and embedder settings; a no-op without a
    folder."""

    def __init__(self, folder: str | Path | None, model_id: str, min_speech_seconds: float | None) -> None:
        self.path = Path(folder) / f"embeddings-{model_id}.npz" if folder is not None else None
        self.settings = json.dumps({"model_id": model_id, "min_speech_seconds": min_speech_seconds})
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
