"""Fused scores: a fuse-after-align checkpoint's pair encoder re-scoring face-voice trials of the joint space.

A checkpoint trained with `--recipe fuse-after-align` holds, beside its joint space, a pair encoder
(fvmatch.models.fusion) that reads one face and one voice joint vector and gives the log-odds that they are one
person. That logit is the fused score: `verify` of a face and a voice reports it instead of the cosine, and
`identify` across modalities searches the gallery's cosine index first (the index stays a cosine index) and then
re-scores the top K identities' best items from their stored joint vectors, ranking them by the fused score.
Fused scores have their own calibration entry (space FUSED), fitted by `fvmatch calibrate` on the same trials as
the cosine's, so a cosine is never judged by the fused map nor the reverse.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from fvmatch.calibration.fitting import FUSED

if TYPE_CHECKING:
    from fvmatch.gallery.gallery import Candidate

DEFAULT_RESCORE_TOP = 50  # identities of the cosine search re-scored by the pair encoder (identify --rescore-top)


def has_pair_encoder(card: dict) -> bool:
    """Whether a joint checkpoint's card describes a pair encoder (without loading its weights)."""
    return bool((card.get("config") or {}).get("fusion_layers"))


@dataclass
class FusedScorer:
    """The pair encoder of one loaded checkpoint, scoring (face, voice) pairs of its joint vectors."""

    encoder: object  # fvmatch.models.fusion.PairEncoder, in eval mode
    model_id: str  # of the joint checkpoint
    rescore_top: int = DEFAULT_RESCORE_TOP

    def scores(self, faces: np.ndarray, voices: np.ndarray) -> np.ndarray:
        """(N, D) face and (N, D) voice joint vectors -> (N,) fused scores (float64), row by row."""
        import torch

        device = next(self.encoder.parameters()).device
        with torch.inference_mode():
            faces_tensor = torch.as_tensor(np.asarray(faces, np.float32), device=device)
            voices_tensor = torch.as_tensor(np.asarray(voices, np.float32), device=device)
            return np.concatenate([self.encoder(faces_tensor[s : s + 4096], voices_tensor[s : s + 4096]).cpu().numpy()
                                   for s in range(0, len(faces_tensor), 4096)] or [np.zeros(0, np.float32)]
                                  ).astype(np.float64)

    def for_query(self, embedding) -> "FusedScorer":
        """The scorer for one question (a pair encoder reads the joint vectors alone: itself)."""
        return self

    def pair(self, face: np.ndarray, voice: np.ndarray) -> float:
        """The fused score of one face and one voice joint vector."""
        return float(self.scores(face[None], voice[None])[0])

    def rescore(self, gallery, query_modality: str, query: np.ndarray,
                candidates: list[Candidate]) -> tuple[list[Candidate], dict]:
        """The candidates of a cosine search (their best items' stored joint vectors against the query's), ranked by
        fused score; and the record a result shows: the score kind, K, and each candidate's cosine."""
        from fvmatch.spaces import JOINT

        if not candidates:
            return [], self.record(0, [])
        stored = gallery._vectors([c.media_id for c in candidates], JOINT)
        queries = np.repeat(query[None].astype(np.float32), len(candidates), axis=0)
        fused = self.scores(queries, stored) if query_modality == "face" else self.scores(stored, queries)
        order = sorted(range(len(candidates)), key=lambda i: (-fused[i], candidates[i].identity))
        rescored = [replace(candidates[i], rank=rank, score=float(fused[i])) for rank, i in enumerate(order, start=1)]
        return rescored, self.record(len(candidates), [candidates[i].score for i in order])

    def record(self, rescored: int, cosines: list[float]) -> dict:
        return {"score": "fused", "space": FUSED, "rescore_top": self.rescore_top, "rescored": rescored,
                "cosines": [round(c, 6) for c in cosines],
                "about": "the pair encoder's log-odds of one person, from the joint vectors; candidates are the "
                         f"top {self.rescore_top} identities of the cosine search, re-ranked"}


def fused_scorer(embedder, rescore_top: int = DEFAULT_RESCORE_TOP) -> FusedScorer | None:
    """The checkpoint's pair encoder as a FusedScorer (its weights loaded now), None when it has none."""
    if not has_pair_encoder(embedder.card):
        return None
    from fvmatch.models.fusion import pair_encoder

    encoder = pair_encoder(embedder.model)
    if encoder is None:
        return None
    return FusedScorer(encoder.eval(), embedder.model_id, rescore_top)


def fused_pair(embedder, pair) -> tuple[float, str, dict]:
    """(score, the space its calibration is looked up under, the record a result shows) of a scored pair
    (fvmatch.analysis.matching.PairScore): the fused score for a face and a voice in the joint space of a checkpoint with a
    pair encoder, else the pair's own cosine."""
    from fvmatch.spaces import JOINT

    scorer = fused_scorer(embedder) if pair.trial_type == "face-voice" and pair.space == JOINT else None
    if scorer is None:
        return pair.score, pair.space, {"score": "cosine"}
    face, voice = sorted(pair.embeddings, key=lambda embedding: embedding.modality != "face")
    score = scorer.pair(face.vectors[JOINT], voice.vectors[JOINT])
    return score, FUSED, {"score": "fused", "space": FUSED, "cosine": round(pair.score, 6),
                          "about": "the pair encoder's log-odds of one person, from the joint vectors"}
