"""Expert vectors at scale: computed in worker processes, resumable after a kill, the same as computed in one."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from fvmatch.analysis.embedder import Embedder
from fvmatch.synth import CorpusSpec, write_corpus
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
from fvmatch.training import expert_vectors as experts
from fvmatch.training.data import PreparedCorpus
from fvmatch.training.prepare import prepare_corpus

SPACES = {"face": "dlib-face", "voice": "ge2e-voice"}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("experts")
    write_corpus(root / "corpus", CorpusSpec(identities=4, seed=9, faces_per_identity=2, clips_per_identity=2,
                                             clip_seconds=2.0), workers=1)
    prepare_corpus(root / "corpus", root / "cache", workers=1, identities_per_shard=2)
    return root / "cache"


@pytest.fixture(scope="module")
def embedder():
    return Embedder.load()


def items_of(corpus: PreparedCorpus) -> int:
    return sum(len(refs) for refs in corpus.faces_of.values()) + sum(len(refs) for refs in corpus.voices_of.values())


def test_a_killed_run_keeps_its_saved_chunks_and_the_next_computes_only_the_rest(prepared, embedder, tmp_path,
                                                                                 monkeypatch):
    monkeypatch.setattr(experts, "CHUNK_ITEMS", 3)
    cache = tmp_path / "cache"
    shutil.copytree(prepared, cache)
    corpus = PreparedCorpus(cache)
    items, totals = items_of(corpus), []

    def killed(count):
        raise KeyboardInterrupt  # as Ctrl-C after the first chunk is saved

    with pytest.raises(KeyboardInterrupt):
        experts.compute_expert_vectors(corpus, SPACES, embedder, workers=1, progress=killed, total=totals.append)
    assert totals == [items]
    saved = sorted(path.name for path in (cache / "experts").rglob("*.npy"))
    assert saved == ["shard-00000-face.part-0000000.npy"]
    resumed = experts.compute_expert_vectors(corpus, SPACES, embedder, workers=1)
    assert (resumed["computed"], resumed["cached"], resumed["failed"]) == (items - 3, 3, 0)
    assert not list((cache / "experts").rglob("*.part-*"))  # chunks merged into one file per shard and modality
    again = experts.compute_expert_vectors(corpus, SPACES, embedder, workers=1)
    assert (again["computed"], again["cached"], again["items_per_second"]) == (0, items, None)
    # the chunked, resumed vectors are those computed in one go, item by item
    for modality, space in SPACES.items():
        found = experts.expert_vectors(corpus, modality, space, embedder)
        sources = [experts._items(corpus, shard, modality) for shard in corpus.plan["shards"]]
        expected = [np.stack([experts._embedded(embedder, modality, space, Path(corpus.plan["source"]) / item, found[0].shape[1])
                              for item in shard]) for shard in sources]
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(found, expected))


@pytest.mark.long
def test_worker_processes_give_what_one_process_gives(prepared, embedder, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(prepared, cache)
    corpus = PreparedCorpus(cache)
    found = experts.compute_expert_vectors(corpus, SPACES, embedder, workers=2)
    assert (found["computed"], found["workers"]) == (items_of(corpus), 2) and found["items_per_second"] > 0
    one_process = PreparedCorpus(prepared)
    for modality, space in SPACES.items():
        expected = experts.expert_vectors(one_process, modality, space, embedder)
        vectors = experts.expert_vectors(corpus, modality, space, embedder)
        assert all(np.array_equal(a, b, equal_nan=True) for a, b in zip(vectors, expected))
