"""Identity templates: a face question scored against a person from several of their references at once.

A gallery often holds several photos of a person; matched alone, each is one noisy look at the face, and the
person's best-matching photo decides. A template is the mean of the person's first TEMPLATE_SIZE references' unit
vectors, renormalised: what their photos share weighs more than what one of them caught (pose, light, a low-resolution
crop). The question's cosine with it is the identity's score, judged by a calibration fitted on templates of as many
references (`score_name`: a template of n references is its own score, "dlib-face template3", with its own map;
applying the single-photo map to it would overstate it). Each reference's own cosine is kept, the best first: which
references carried the score.

Measured on real photos (`OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_templates.py`): 150 people of the
reference faces, each person's first k photos the references, 745 other photos the questions, identities ranked by
their best reference -> by their template, rank-1: clean, k 2 0.965 -> 0.969, k 3 0.969 -> 0.974, k 5 0.973 ->
0.983; shrunk to small faces (745), k 2 0.867 -> 0.897, k 3 0.879 -> 0.917, k 5 0.903 -> 0.937. The mean of the k
cosines (no renormalising) did less well (0.962 clean at k 3), the mean of the best two level within two questions
(0.976, 0.977 at k 3 and 5; small 0.915, 0.921), weighting by eye distance level (0.976, 0.984; small 0.918, 0.936). On the in-the-wild web photos
(`benchmarks/wild_set.py`, 3 references a person, 120 questions) the two rules are level: clean 0.958 -> 0.950, 80 px
and JPEG 30 0.942 -> 0.950 (one question each way). The first references, not the best-matching ones: a template
chosen per question would favour every identity it is compared with, the wrong ones too.
"""
from __future__ import annotations

import numpy as np

from fvmatch.gallery.gallery import Candidate
from fvmatch.gallery.scan import identity_items

TEMPLATE_SIZE = 5  # references per template: the calibration has a map for each size from 2 up to this
TEMPLATE_MODALITIES = ("face",)  # face-face trials; voices keep their best item (not measured as templates)


def template_vector(vectors: np.ndarray) -> np.ndarray:
    """The mean of unit vectors, renormalised."""
    total = np.asarray(vectors, dtype=np.float64).sum(axis=0)
    return (total / np.linalg.norm(total)).astype(np.float32)


def score_name(space: str, candidate: Candidate) -> str:
    """The name of the score a candidate carries, for its calibration: `space` for one reference, else
    "<space> template<n>"."""
    count = len(candidate.references or ())
    return f"{space} template{count}" if count > 1 else space


def templated(gallery, query: np.ndarray, candidates: list[Candidate], space: str) -> list[Candidate]:
    """`candidates` (identities found by their best item) scored again by their templates and ranked by them."""
    if not candidates:
        return []
    query = np.asarray(query, dtype=np.float32)
    modality = candidates[0].modality
    items = identity_items(gallery, [c.identity for c in candidates], modality, space, TEMPLATE_SIZE)
    scored = []
    for candidate in candidates:
        ids, paths, vectors = items.get(candidate.identity, ([candidate.media_id], [candidate.source_path], None))
        if vectors is None or len(ids) < 2:
            scored.append((candidate.score, candidate))
            continue
        cosines = vectors @ query
        order = np.argsort(-cosines, kind="stable")
        score = float(template_vector(vectors) @ query)
        references = [{"media_id": int(ids[i]), "source_path": paths[i], "score": round(float(cosines[i]), 6)}
                      for i in order]
        best = order[0]
        scored.append((score, Candidate(0, candidate.identity, score, modality, int(ids[best]), paths[best],
                                        len(ids), space, references)))
    scored.sort(key=lambda pair: (-pair[0], pair[1].identity))
    for rank, (_, candidate) in enumerate(scored, start=1):
        candidate.rank = rank
    return [candidate for _, candidate in scored]
