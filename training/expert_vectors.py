"""The frozen pretrained spaces' vectors of every prepared item, computed once and cached beside the shards.

A face's dlib-face vector and a voice's ge2e-voice vector are computed from the item's source file exactly as
inference computes them (the Embedder: largest MTCNN face, the space's own alignment; a recording's speech windows
averaged), so the head trained on them meets the same vectors at inference. One file per (space, model id, shard):

    CACHE/experts/<space>-<model id[:16]>/<shard>-<modality>.npy      float32 (items of the shard, dim), NaN rows
                                                                       for items the space could not embed
    CACHE/experts/<space>-<model id[:16]>/<shard>-<modality>.part-<first item>.npy
                                                                       a finished chunk of CHUNK_ITEMS items, kept
                                                                       until the shard's file is whole

Every file is written through a temporary name, so a run that is killed loses at most the chunks under way, and the
next run computes only what the cache lacks. `compute_expert_vectors` does the work in worker processes (one per
core, each with its own Embedder), with progress per chunk; `expert_vectors` reads the result (computing in this
process whatever is still missing).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fvmatch.errors import FvmatchError

from .data import PreparedCorpus

SOURCE_FILES = {"face": "face_source.json", "voice": "voice_source.json"}
CHUNK_ITEMS = 128  # items per saved chunk: what a kill can lose per worker


@dataclass(frozen=True)
class _Chunk:
    """Items [start, stop) of one shard's items of a modality, to embed in one space."""

    modality: str
    space: str
    shard: str
    start: int
    stop: int
    items: tuple[str, ...]  # source paths relative to the corpus


def space_folder(corpus: PreparedCorpus, space_name: str, model_id: str) -> Path:
    return corpus.cache / "experts" / f"{space_name}-{model_id[:16]}"


def expert_vectors(corpus: PreparedCorpus, modality: str, space_name: str, embedder,
                   progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Per shard, the (items, dim) vectors of the `modality` items in the space `space_name` of `embedder`
    (what the cache lacks is computed here, in this process)."""
    space = embedder.space(space_name)
    source = _source(corpus)
    folder = space_folder(corpus, space_name, space.model_id)
    for chunk in _missing_chunks(corpus, modality, space_name, folder):
        _save_chunk(folder, chunk, _embed_chunk(embedder, source, chunk, space.dim))
        if progress:
            progress(chunk.stop - chunk.start)
    return [_assembled(corpus, folder, name, modality, space.dim) for name in corpus.plan["shards"]]


def missing_items(corpus: PreparedCorpus, modality: str, space_name: str, model_id: str) -> int:
    """How many `modality` items of the corpus the cache lacks vectors of in the space."""
    return sum(chunk.stop - chunk.start
               for chunk in _missing_chunks(corpus, modality, space_name, space_folder(corpus, space_name, model_id)))


def compute_expert_vectors(corpus: PreparedCorpus, spaces: dict[str, str], embedder, workers: int = 0,
                           progress: Callable[[int], None] | None = None,
                           total: Callable[[int], None] | None = None) -> dict:
    """Fill the cache with the vectors of every item, `spaces` {modality: space name}, in `workers` processes
    (0: one per CPU core; 1: in this process). `total(n)` is called once with the items to compute, `progress(n)` as
    chunks finish. Returns {"computed", "cached", "failed" (NaN rows), "seconds", "workers", "items_per_second"}."""
    source = _source(corpus)
    folders = {modality: space_folder(corpus, name, embedder.space(name).model_id) for modality, name in spaces.items()}
    dims = {modality: embedder.space(name).dim for modality, name in spaces.items()}
    chunks = [chunk for modality, name in spaces.items()
              for chunk in _missing_chunks(corpus, modality, name, folders[modality])]
    every = sum(len(_items(corpus, shard, modality)) for modality in spaces for shard in corpus.plan["shards"])
    todo = sum(chunk.stop - chunk.start for chunk in chunks)
    if total:
        total(todo)
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    started = time.perf_counter()
    if workers == 1:
        for chunk in chunks:
            _save_chunk(folders[chunk.modality], chunk, _embed_chunk(embedder, source, chunk, dims[chunk.modality]))
            if progress:
                progress(chunk.stop - chunk.start)
    else:
        _in_pool(chunks, source, dims, folders, workers, embedder.checkpoint_path, progress)
    seconds = time.perf_counter() - started
    failed = 0
    for modality in spaces:
        for name in corpus.plan["shards"]:
            failed += int(np.isnan(_assembled(corpus, folders[modality], name, modality, dims[modality])).any(axis=1).sum())
    return {"computed": todo, "cached": every - todo, "failed": failed, "seconds": round(seconds, 3),
            "workers": workers, "items_per_second": round(todo / seconds, 3) if todo and seconds > 0 else None}


def _source(corpus: PreparedCorpus) -> Path:
    source = Path(corpus.plan["source"])
    if not source.is_dir():
        raise ValueError(f"{source}: the corpus these shards were prepared from is not there (the experts recipe "
                         "embeds its files once)")
    return source


def _items(corpus: PreparedCorpus, shard: str, modality: str) -> list[str]:
    return json.loads((corpus.cache / shard / SOURCE_FILES[modality]).read_text())


def _shard_file(folder: Path, shard: str, modality: str) -> Path:
    return folder / f"{shard}-{modality}.npy"


def _part_file(folder: Path, chunk: _Chunk) -> Path:
    return folder / f"{chunk.shard}-{chunk.modality}.part-{chunk.start:07d}.npy"


def _missing_chunks(corpus: PreparedCorpus, modality: str, space_name: str, folder: Path) -> list[_Chunk]:
    """The chunks whose vectors neither a whole shard file nor a saved chunk holds."""
    chunks = []
    for shard in corpus.plan["shards"]:
        if _shard_file(folder, shard, modality).is_file():
            continue
        items = _items(corpus, shard, modality)
        for start in range(0, len(items), CHUNK_ITEMS):
            chunk = _Chunk(modality, space_name, shard, start, min(start + CHUNK_ITEMS, len(items)),
                           tuple(items[start : start + CHUNK_ITEMS]))
            if not _part_file(folder, chunk).is_file():
                chunks.append(chunk)
    return chunks


def _save_chunk(folder: Path, chunk: _Chunk, vectors: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    _save(_part_file(folder, chunk), vectors)


def _save(path: Path, vectors: np.ndarray) -> None:
    temporary = path.with_name(path.stem + ".tmp.npy")
    np.save(temporary, vectors)
    os.replace(temporary, path)


def _assembled(corpus: PreparedCorpus, folder: Path, shard: str, modality: str, dim: int) -> np.ndarray:
    """A shard's vectors: its file, else made from its saved chunks (then the chunks are removed)."""
    path = _shard_file(folder, shard, modality)
    if not path.is_file():
        count = len(_items(corpus, shard, modality))
        parts = [folder / f"{shard}-{modality}.part-{start:07d}.npy" for start in range(0, count, CHUNK_ITEMS)]
        vectors = (np.concatenate([np.load(part) for part in parts]) if parts
                   else np.zeros((0, dim), dtype=np.float32))
        _save(path, vectors.reshape(count, dim))
        for part in parts:
            part.unlink()
    return np.load(path)


def _embed_chunk(embedder, source: Path, chunk: _Chunk, dim: int) -> np.ndarray:
    vectors = np.full((len(chunk.items), dim), np.nan, dtype=np.float32)
    for row, item in enumerate(chunk.items):
        vectors[row] = _embedded(embedder, chunk.modality, chunk.space, source / item, dim)
    return vectors


def _embedded(embedder, modality: str, space_name: str, path: Path, dim: int) -> np.ndarray:
    """The item's vector, or NaNs when the space cannot embed it (the shard kept it for another space's reasons)."""
    try:
        if modality == "face":
            return embedder.embed_face(path, spaces=[space_name])[0].vectors[space_name]
        return embedder.embed_voice(path, spaces=[space_name]).vectors[space_name]
    except FvmatchError:
        return np.full(dim, np.nan, dtype=np.float32)


_worker_embedder = None


def _start_worker(checkpoint: str, threads: int) -> None:
    """Pool initializer: one Embedder per process, the cores shared among the workers rather than oversubscribed."""
    import torch

    from fvmatch.analysis.embedder import Embedder

    global _worker_embedder
    torch.set_num_threads(threads)
    _worker_embedder = Embedder.load(checkpoint)


def _worker_chunk(source: Path, chunk: _Chunk, dim: int) -> np.ndarray:
    return _embed_chunk(_worker_embedder, source, chunk, dim)


def _in_pool(chunks: list[_Chunk], source: Path, dims: dict[str, int], folders: dict[str, Path], workers: int,
             checkpoint, progress: Callable[[int], None] | None) -> None:
    """Chunks embedded in `workers` processes, each saved by this process as it comes back (any order)."""
    threads = max(1, (os.cpu_count() or 1) // workers)
    context = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker,
                             initargs=(str(checkpoint), threads)) as pool:
        pending = {pool.submit(_worker_chunk, source, chunk, dims[chunk.modality]): chunk for chunk in chunks}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                chunk = pending.pop(future)
                _save_chunk(folders[chunk.modality], chunk, future.result())
                if progress:
                    progress(chunk.stop - chunk.start)
