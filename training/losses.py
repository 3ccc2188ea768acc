"""The training objective of Wang et al., SIGIR 2020, as plain functions of tensors.

A batch holds B distinct identities; row i of `faces` and row i of `voices` (both (B, D),
L2-normalised) are the same person, and every other row is a negative. The objective is

    total = λ1 * identity + λ2 * center + ranking

with the bidirectional ranking loss of eq. 1 (hardest in-batch negatives, both directions,
plus the weighted within-modality terms), identity cross-entropy on the shared embedding's
classifier, and the center loss of Wen et al. (ECCV 2016) with one center per identity
shared by its face and its voice. Distances are Euclidean (not squared), as in eq. 1.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IDENTITY_WEIGHT = 1.0  # λ1
CENTER_WEIGHT = 0.001  # λ2
WITHIN_WEIGHT = 0.1  # λ3 = λ4
MARGIN_CROSS = 0.6  # α1 = α2
MARGIN_WITHIN = 0.2  # β1 = β2
CENTER_ALPHA = 0.5  # learning rate of the centers (Wen et al.)


def pairwise_distances(anchors: Tensor, candidates: Tensor) -> Tensor:
    """(B, D), (B, D) -> (B, B): [i, j] = ||anchors[i] - candidates[j]||_2, float32 or wider."""
    # At least float32 even from bf16 embeddings: hinges with a 0.2 margin on distances up to
    # 2 need more than bf16's 8 bits. No matmul shortcut (||a||² + ||b||² - 2ab): near-identical
    # pairs would get a noisy distance and an exploding sqrt gradient; cdist's direct form
    # gives exact small distances and a zero gradient at distance 0.
    dtype = torch.promote_types(anchors.dtype, torch.float32)
    return torch.cdist(
        anchors.to(dtype), candidates.to(dtype), compute_mode="donot_use_mm_for_euclid_dist"
    )


def check_batch(anchors: Tensor, candidates: Tensor, unit: str = "identities") -> None:
    """ValueError unless two (B, D) batches of one shape with B >= 2: every in-batch loss needs a negative."""
    if anchors.ndim != 2 or anchors.shape != candidates.shape:
        raise ValueError(
            f"expected two (B, D) batches of the same shape, got {tuple(anchors.shape)} "
            f"and {tuple(candidates.shape)}"
        )
    if anchors.shape[0] < 2:
        raise ValueError(f"in-batch negatives need at least 2 {unit} per batch, got {anchors.shape[0]}")


def _hardest_in_rows(distances: Tensor) -> Tensor:
    """Column of the smallest off-diagonal entry of each row (the first one on ties)."""
    off_diagonal = distances.masked_fill(
        torch.eye(distances.shape[0], dtype=torch.bool, device=distances.device), float("inf")
    )
    return off_diagonal.argmin(dim=1)


def hardest_negatives(anchors: Tensor, candidates: Tensor) -> Tensor:
    """For each anchor i, the index j != i of the closest candidate: its hardest negative.

    Row i of `anchors` and row i of `candidates` are the same identity, every other row a
    different one. Returns a LongTensor of shape (B,).
    """
    check_batch(anchors, candidates)
    return _hardest_in_rows(pairwise_distances(anchors, candidates))


class RankingTerms(NamedTuple):
    """The four hinge terms of eq. 1, each a mean over the B anchors (scalar tensors)."""

    face_to_voice: Tensor
    voice_to_face: Tensor
    face_within: Tensor
    voice_within: Tensor


def ranking_terms(
    faces: Tensor,
    voices: Tensor,
    margin_cross: float = MARGIN_CROSS,
    margin_within: float = MARGIN_WITHIN,
) -> RankingTerms:
    """The four hinge terms of eq. 1, hardest in-batch negatives, d = ||.||_2, p_i = d(f_i, v_i):

    face_to_voice = mean_i max(0, α + p_i - min_{j≠i} d(f_i, v_j))
    voice_to_face = mean_i max(0, α + p_i - min_{j≠i} d(v_i, f_j))
    face_within   = mean_i max(0, β + p_i - min_{k≠i} d(f_i, f_k))
    voice_within  = mean_i max(0, β + p_i - min_{k≠i} d(v_i, v_k))
    """
    check_batch(faces, voices)
    face_voice = pairwise_distances(faces, voices)
    positives = face_voice.diagonal()

    def hinge(margin: float, distances: Tensor) -> Tensor:
        # hardest negative: the closest other identity in `distances`' row
        negatives = distances.gather(1, _hardest_in_rows(distances).unsqueeze(1)).squeeze(1)
        return F.relu(margin + positives - negatives).mean()

    return RankingTerms(
        face_to_voice=hinge(margin_cross, face_voice),
        voice_to_face=hinge(margin_cross, face_voice.T),
        face_within=hinge(margin_within, pairwise_distances(faces, faces)),
        voice_within=hinge(margin_within, pairwise_distances(voices, voices)),
    )


def bidirectional_ranking_loss(
    faces: Tensor,
    voices: Tensor,
    margin_cross: float = MARGIN_CROSS,
    margin_within: float = MARGIN_WITHIN,
    weight_within: float = WITHIN_WEIGHT,
) -> Tensor:
    """Eq. 1: face_to_voice + voice_to_face + weight_within * (face_within + voice_within).

    The terms are those of `ranking_terms`: cross-modal hinges with margin α against the
    hardest other-identity voice (face anchor) or face (voice anchor), and within-modality
    hinges with margin β requiring the cross-modal positive to be closer than the hardest
    same-modality negative. Each term is a mean over the B anchors; λ3 = λ4 = weight_within.
    """
    terms = ranking_terms(faces, voices, margin_cross, margin_within)
    return terms.face_to_voice + terms.voice_to_face + weight_within * (
        terms.face_within + terms.voice_within
    )


def identity_cross_entropy(logits: Tensor, labels: Tensor) -> Tensor:
    """Softmax cross-entropy of the identity classifier, mean over the batch: (B, C), (B,) -> ()."""
    return F.cross_entropy(logits, labels)


class CenterLoss(nn.Module):
    """Center loss of Wen et al. (ECCV 2016): one center per identity, kept as a buffer.

    The centers are not parameters: the optimizer never sees them; `update_centers` moves
    them after each step. They start at zero and move to their identity's mean embedding.
    """

    centers: Tensor

    def __init__(self, n_identities: int, embedding_dim: int) -> None:
        super().__init__()
        self.register_buffer("centers", torch.zeros(n_identities, embedding_dim))

    def forward(self, embeddings: Tensor, labels: Tensor) -> Tensor:
        """0.5 * mean_i ||x_i - c_{y_i}||²: a mean over samples (Wen et al. write a sum; their
        Caffe layer divides it by the batch size, as here), so λ2 does not depend on B."""
        differences = embeddings - self.centers[labels]
        return 0.5 * differences.pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def update_centers(
        self, embeddings: Tensor, labels: Tensor, alpha: float = CENTER_ALPHA
    ) -> None:
        """Wen et al.'s update: c_j -= alpha * sum_{i: y_i=j} (c_j - x_i) / (1 + n_j).

        n_j is the number of samples of identity j in the batch; identities absent from it
        keep their center.
        """
        # index_add_ rather than bincount: bincount reads max(labels) back to size its output, a GPU sync per step
        counts = torch.zeros(self.centers.shape[0], dtype=self.centers.dtype, device=self.centers.device).index_add_(
            0, labels, torch.ones(len(labels), dtype=self.centers.dtype, device=self.centers.device))
        embeddings = embeddings.to(self.centers.dtype)
        sums = torch.zeros_like(self.centers).index_add_(0, labels, embeddings)
        step = (counts.unsqueeze(1) * self.centers - sums) / (1 + counts.unsqueeze(1))
        self.centers -= alpha * step


TERM_NAMES = ("identity_face", "identity_voice", "center_face", "center_voice",
              "face_to_voice", "voice_to_face", "face_within", "voice_within")


@dataclass(frozen=True)
class JointLoss:
    """The weighted sum of all terms of the paper's objective, with its weights as fields."""

    identity_weight: float = IDENTITY_WEIGHT  # λ1
    center_weight: float = CENTER_WEIGHT  # λ2
    within_weight: float = WITHIN_WEIGHT  # λ3 = λ4
    margin_cross: float = MARGIN_CROSS  # α1 = α2
    margin_within: float = MARGIN_WITHIN  # β1 = β2

    def __call__(self, *inputs) -> tuple[Tensor, dict[str, float]]:
        """Total loss and each term as a float (one device-to-host copy for all terms); the arguments of `on_device`."""
        total, terms = self.on_device(*inputs)
        return total, dict(zip(TERM_NAMES, terms.tolist()))

    def on_device(
        self,
        faces: Tensor,
        voices: Tensor,
        face_logits: Tensor,
        voice_logits: Tensor,
        labels: Tensor,
        center_loss: CenterLoss,
    ) -> tuple[Tensor, Tensor]:
        """Total loss and its terms (detached, stacked in TERM_NAMES order) for a batch of B distinct identities,
        left on the device, so that a training step never waits for the host to read them.

        total = λ1 * (CE(face_logits) + CE(voice_logits))
              + λ2 * (center(faces) + center(voices))
              + face_to_voice + voice_to_face + λ3 * face_within + λ4 * voice_within

        Face and voice of identity y share the center c_y. The centers are only read here:
        call `center_loss.update_centers(torch.cat([faces, voices]), labels.repeat(2))`
        after each optimizer step.
        """
        ranking = ranking_terms(faces, voices, self.margin_cross, self.margin_within)
        terms = {
            "identity_face": identity_cross_entropy(face_logits, labels),
            "identity_voice": identity_cross_entropy(voice_logits, labels),
            "center_face": center_loss(faces, labels),
            "center_voice": center_loss(voices, labels),
            **ranking._asdict(),
        }
        total = (
            self.identity_weight * (terms["identity_face"] + terms["identity_voice"])
            + self.center_weight * (terms["center_face"] + terms["center_voice"])
            + ranking.face_to_voice
            + ranking.voice_to_face
            + self.within_weight * (ranking.face_within + ranking.voice_within)
        )
        return total, torch.stack([terms[name].detach() for name in TERM_NAMES])
