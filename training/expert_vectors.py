"""The frozen pretrained spaces' vectors of every prepared item, computed once and cached beside the shards.

A face's dlib-face vector and a voice's ge2e-voice vector are computed from the item's source file exactly as
inference computes them (the Embedder: largest MTCNN face, the space's own alignment; a recording's speech windows
averaged), so the head trained on them meets the same vectors at inference. One file per (space, model id, shard):

    CACHE/experts/<space>-<model id[:16]>/<shard>.npy    float32 (items of the shard, dim), NaN rows for items
                                                         the space could not embed (skipped in training)

written through a temporary name, so an interrupted run recomputes only the shards it had not finished.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fvmatch.errors import FvmatchError

from .data import PreparedCorpus

SOURCE_FILES = {"face": "face_source.json", "voice": "voice_source.json"}


def expert_vectors(corpus: PreparedCorpus, modality: str, space_name: str, embedder,
                   progress: Callable[[int], None] | None = None) -> list[np.ndarray]:
    """Per shard, the (items, dim) vectors of the `modality` items in the space `space_name` of `embedder`."""
    space = embedder.space(space_name)
    folder = corpus.cache / "experts" / f"{space_name}-{space.model_id[:16]}"
    folder.mkdir(parents=True, exist_ok=True)
    source = Path(corpus.plan["source"])
    if not source.is_dir():
        raise ValueError(f"{source}: the corpus these shards were prepared from is not there (the experts recipe "
                         "embeds its files once)")
    shards = []
    for name in corpus.plan["shards"]:
        path = folder / f"{name}-{modality}.npy"
        if not path.is_file():
            items = json.loads((corpus.cache / name / SOURCE_FILES[modality]).read_text())
            vectors = np.full((len(items), space.dim), np.nan, dtype=np.float32)
            for row, item in enumerate(items):
                vectors[row] = _embedded(embedder, modality, space_name, source / item, space.dim)
                if progress:
                    progress(1)
            temporary = path.with_name(path.stem + ".tmp.npy")
            np.save(temporary, vectors)
            os.replace(temporary, path)
        shards.append(np.load(path))
    return shards


def _embedded(embedder, modality: str, space_name: str, path: Path, dim: int) -> np.ndarray:
    """The item's vector, or NaNs when the space cannot embed it (the shard kept it for another space's reasons)."""
    try:
        if modality == "face":
            return embedder.embed_face(path, spaces=[space_name])[0].vectors[space_name]
        return embedder.embed_voice(path, spaces=[space_name]).vectors[space_name]
    except FvmatchError:
        return np.full(dim, np.nan, dtype=np.float32)
