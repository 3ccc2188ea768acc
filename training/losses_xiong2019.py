"""The objective of Xiong et al. 2019 ("Voice-Face Cross-modal Matching and Retrieval: A Benchmark", arXiv
1911.09338): a triplet loss in a voice-anchored, L2-norm constrained metric space, as plain functions of tensors.

A batch holds B distinct identities; row i of `faces` and of `voices` are the same person. Every embedding is
constrained to the sphere of radius α (x -> α·x/||x||); each voice is an anchor, its own face the positive and
every other face of the batch a negative, with squared Euclidean distances:

    loss = 1/(B(B-1)) Σ_i Σ_{j≠i} max(0, ||v_i - f_i||² - ||v_i - f_j||² + m)

On the sphere ||a - b||² = 2α²(1 - cos(a, b)), so α and m act together: the margin in cosine is m / (2α²).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import TERM_NAMES, CenterLoss

NORM = 4.0  # α: the radius every embedding is constrained to
MARGIN = 6.4  # m: on the radius-4 sphere a cosine margin of 0.2 (m / 2α² = 0.2)


def norm_constrained(embeddings: Tensor, norm: float = NORM) -> Tensor:
    """(B, D) -> (B, D), each row scaled to L2 norm `norm` (a zero row stays zero), float32 or wider."""
    return norm * F.normalize(embeddings.to(torch.promote_types(embeddings.dtype, torch.float32)), dim=1)


def voice_anchored_triplet_terms(voices: Tensor, faces: Tensor, norm: float = NORM, margin: float = MARGIN) -> Tensor:
    """(B,): each voice anchor's mean hinge over its B - 1 in-batch negative faces, in the norm-constrained space."""
    if voices.ndim != 2 or voices.shape != faces.shape:
        raise ValueError(f"expected two (B, D) batches of the same shape, got {tuple(voices.shape)} and "
                         f"{tuple(faces.shape)}")
    if voices.shape[0] < 2:
        raise ValueError(f"in-batch negatives need at least 2 identities per batch, got {voices.shape[0]}")
    anchors, candidates = norm_constrained(voices, norm), norm_constrained(faces, norm)
    # direct differences, not the matmul shortcut: exact small distances (as training/losses.py's pairwise_distances)
    squared = torch.cdist(anchors, candidates, compute_mode="donot_use_mm_for_euclid_dist").pow(2)
    positives = squared.diagonal()
    hinges = F.relu(margin + positives[:, None] - squared)
    off_diagonal = ~torch.eye(len(voices), dtype=torch.bool, device=voices.device)
    return (hinges * off_diagonal).sum(dim=1) / (len(voices) - 1)


def voice_anchored_triplet_loss(voices: Tensor, faces: Tensor, norm: float = NORM, margin: float = MARGIN) -> Tensor:
    """The mean over every in-batch triplet (voice anchor, its face, another face)."""
    return voice_anchored_triplet_terms(voices, faces, norm, margin).mean()


@dataclass(frozen=True)
class Xiong2019Loss:
    """The voice-anchored triplet loss, with the radius and the margin as fields."""

    norm: float = NORM  # α
    margin: float = MARGIN  # m

    def __call__(self, *inputs) -> tuple[Tensor, dict[str, float]]:
        """Total loss and each term as a float; the arguments of `on_device`."""
        total, terms = self.on_device(*inputs)
        return total, dict(zip(TERM_NAMES, terms.tolist()))

    def on_device(self, faces: Tensor, voices: Tensor, face_logits: Tensor, voice_logits: Tensor, labels: Tensor,
                  center_loss: CenterLoss | None = None) -> tuple[Tensor, Tensor]:
        """Total loss and its terms stacked in TERM_NAMES order, left on the device: the triplet loss is the
        voice_to_face term (voice anchor, face candidates), every other term 0. The logits and centers are unused:
        this objective has no identity classifier (the trainer's head gets no gradient)."""
        total = voice_anchored_triplet_loss(voices, faces, self.norm, self.margin)
        terms = torch.zeros(len(TERM_NAMES), device=total.device)
        terms[TERM_NAMES.index("voice_to_face")] = total.detach()
        return total, terms
