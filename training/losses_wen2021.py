"""The objective of Wen et al., CVPR 2021 ("Seeking the Shape of Sound"), as plain functions of tensors.

A batch holds B distinct identities; row i of `faces` and of `voices` (both (B, D), L2-normalised) are the same
person. Two-level modality alignment, per anchor i of class y_i with identity weight w_{y_i}:

    global_i = CE(face_logits_i, y_i) + CE(voice_logits_i, y_i)     one identity classifier shared by both
                                                                    modalities (its rows act as identity centers
                                                                    seen by the whole training set, not a batch)
    local_i  = ½ [npair(f_i; v) + npair(v_i; f)]                    N-pair, in-batch negatives, both directions
    npair(a_i; c) = log(1 + Σ_{j≠i} exp(s·cos(a_i, c_j) − s·cos(a_i, c_i)))
    total    = (1/B) Σ_i w_{y_i} · (λ_g global_i + λ_l local_i)

Dynamic reweighting of identities (the paper's three stages): a warm-up with every weight 1; then identity weight
learning, where each identity's difficulty is the moving average of its (unweighted) classification loss and, at
every update, the easiest still-unweighted identities get weight 1 while those already weighted decay by `decay`
(so identities admitted later, the harder ones, weigh more); it stops once `final_ratio` of the identities are
weighted, and the rest, the hardest, are filtered out (weight 0) as unlearnable. The final model is then trained
from scratch with those weights fixed, normalised to a mean of 1 over the identities.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from .losses import TERM_NAMES, CenterLoss, check_batch

LOCAL_SCALE = 10.0  # s: unit vectors' cosines in [-1, 1] need a scale for a softmax over negatives to sharpen
GLOBAL_WEIGHT = 1.0  # λ_g
LOCAL_WEIGHT = 1.0  # λ_l
DIFFICULTY_MOMENTUM = 0.9  # difficulty <- 0.9 difficulty + 0.1 loss
INITIAL_RATIO = 0.5  # identities weighted at the first update: the easiest half
ADD_RATIO = 0.024  # identities admitted at each later update (at least one)
FINAL_RATIO = 0.9  # weight learning stops once this share is weighted; the hardest rest is filtered out
DECAY = 0.99  # weights of identities already admitted, at each update


def npair_terms(anchors: Tensor, candidates: Tensor, scale: float = LOCAL_SCALE) -> Tensor:
    """(B, D), (B, D) -> (B,): log(1 + Σ_{j≠i} exp(s·a_i·c_j − s·a_i·c_i)) for each anchor i.

    With unit vectors a·c is the cosine. Equal to the cross-entropy of row i of s·A·Cᵀ against column i, which is
    how it is computed (log-sum-exp: no overflow at large scales).
    """
    check_batch(anchors, candidates)
    similarities = scale * anchors.float() @ candidates.float().T
    return F.cross_entropy(similarities, torch.arange(len(anchors), device=anchors.device), reduction="none")


def local_alignment_terms(faces: Tensor, voices: Tensor, scale: float = LOCAL_SCALE) -> tuple[Tensor, Tensor]:
    """The N-pair terms of each anchor, (face-anchored over voices, voice-anchored over faces), each (B,)."""
    return npair_terms(faces, voices, scale), npair_terms(voices, faces, scale)


def global_alignment_terms(face_logits: Tensor, voice_logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Identity cross-entropy of each face and each voice under the shared classifier, each (B,)."""
    return (F.cross_entropy(face_logits.float(), labels, reduction="none"),
            F.cross_entropy(voice_logits.float(), labels, reduction="none"))


def sample_weights(identity_weights: Tensor | None, labels: Tensor) -> Tensor:
    """Each sample's weight: its identity's weight, the weights normalised to a mean of 1 over all identities
    (uniform 1 without weights; a filtered identity's samples weigh 0)."""
    if identity_weights is None:
        return torch.ones(len(labels), device=labels.device)
    weights = identity_weights.to(labels.device, torch.float32)
    if not bool((weights > 0).any()):
        raise ValueError("every identity is filtered out (all identity weights are 0)")
    return (weights * len(weights) / weights.sum())[labels]


def updated_difficulty(difficulty: Tensor, seen: Tensor, labels: Tensor, losses: Tensor,
                       momentum: float = DIFFICULTY_MOMENTUM) -> tuple[Tensor, Tensor]:
    """(difficulty, seen) after a batch of distinct identities: the moving average of each identity's loss, its
    first loss when it was never seen before. New tensors; the inputs are left alone."""
    difficulty, seen = difficulty.clone(), seen.clone()
    losses = losses.detach().to(difficulty.device, difficulty.dtype)
    labels = labels.to(difficulty.device)
    previous = difficulty[labels]
    difficulty[labels] = torch.where(seen[labels], momentum * previous + (1 - momentum) * losses, losses)
    seen[labels] = True
    return difficulty, seen


def next_identity_weights(weights: Tensor, difficulty: Tensor, initial_ratio: float = INITIAL_RATIO,
                          add_ratio: float = ADD_RATIO, decay: float = DECAY) -> Tensor:
    """One update of the identity weights (C,). At the first (no identity weighted yet): the easiest
    int(initial_ratio · C) identities (at least 1) get 1. Later: every weighted identity decays by `decay`, and the
    easiest int(add_ratio · C) unweighted ones (at least 1) get 1. Ties in difficulty go to the lower index."""
    count = len(weights)
    weighted = weights > 0
    if not bool(weighted.any()):
        admitted, new = max(1, int(initial_ratio * count)), torch.zeros_like(weights)
    else:
        admitted, new = max(1, int(add_ratio * count)), weights * decay
    candidates = torch.nonzero(~weighted).squeeze(1)
    easiest = candidates[torch.argsort(difficulty[candidates], stable=True)][:admitted]
    new[easiest] = 1.0
    return new


def weighted_ratio(weights: Tensor) -> float:
    """The share of identities with a weight above 0."""
    return float((weights > 0).float().mean())


@dataclass
class Wen2021Loss:
    """The weighted two-level alignment loss, with its settings (and the weight-learning stage's) as fields.

    `identity_weights` (C,) is set by the recipe from the weight-learning stage (None: every identity weighs 1);
    it is not a field, so the model card lists the settings, not C numbers."""

    local_scale: float = LOCAL_SCALE
    global_weight: float = GLOBAL_WEIGHT
    local_weight: float = LOCAL_WEIGHT
    difficulty_momentum: float = DIFFICULTY_MOMENTUM
    initial_ratio: float = INITIAL_RATIO
    add_ratio: float = ADD_RATIO
    final_ratio: float = FINAL_RATIO
    decay: float = DECAY
    warmup_passes: int = 35  # the authors' 500 warm-up iterations of 64 over 924 identities
    update_passes: int = 7  # the authors' 100 iterations between updates
    weighting_batch_size: int = 64
    weighting_lr: float = 0.01

    identity_weights: ClassVar[Tensor | None] = None

    def __call__(self, *inputs) -> tuple[Tensor, dict[str, float]]:
        """Total loss and each term as a float; the arguments of `on_device`."""
        total, terms = self.on_device(*inputs)
        return total, dict(zip(TERM_NAMES, terms.tolist()))

    def per_sample(self, faces: Tensor, voices: Tensor, face_logits: Tensor, voice_logits: Tensor,
                   labels: Tensor) -> dict[str, Tensor]:
        """The unweighted terms of each sample, (B,) each: identity_face, identity_voice, face_to_voice (the
        face-anchored N-pair), voice_to_face."""
        identity_face, identity_voice = global_alignment_terms(face_logits, voice_logits, labels)
        face_to_voice, voice_to_face = local_alignment_terms(faces, voices, self.local_scale)
        return {"identity_face": identity_face, "identity_voice": identity_voice,
                "face_to_voice": face_to_voice, "voice_to_face": voice_to_face}

    def on_device(self, faces: Tensor, voices: Tensor, face_logits: Tensor, voice_logits: Tensor, labels: Tensor,
                  center_loss: CenterLoss | None = None) -> tuple[Tensor, Tensor]:
        """Total loss and its terms (weighted means, detached, stacked in TERM_NAMES order; the center and
        within-modality terms, which this objective lacks, are 0), left on the device. The centers are unused."""
        return self.weighted(self.per_sample(faces, voices, face_logits, voice_logits, labels),
                             sample_weights(self.identity_weights, labels))

    def weighted(self, terms: dict[str, Tensor], weights: Tensor) -> tuple[Tensor, Tensor]:
        """(total, stacked terms) of per-sample terms under per-sample weights."""
        means = {name: (weights * value).mean() for name, value in terms.items()}
        total = (self.global_weight * (means["identity_face"] + means["identity_voice"])
                 + self.local_weight * 0.5 * (means["face_to_voice"] + means["voice_to_face"]))
        zero = torch.zeros((), device=total.device)
        return total, torch.stack([means.get(name, zero).detach() for name in TERM_NAMES])
