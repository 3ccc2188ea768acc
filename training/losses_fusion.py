"""The objective of fuse-after-align (Peng et al. 2024), unsupervised setting, as plain functions of tensors.

A batch holds B (face, voice) pairs, row i of both taken from one video (one recording session); no identity label
is read. Two terms:

    contrastive  symmetric InfoNCE on the joint space's cosines / temperature: face i must pick voice i among the
                 batch's voices (face_to_voice) and voice i face i (voice_to_face); every other row is a negative
    matching     the pair encoder as a same/different classifier (binary cross-entropy on its logit) over the B
                 positive pairs and 2B hard negatives chosen by the aligned similarity: for each face the most
                 similar other-video voice, for each voice the most similar other-video face

    total = face_to_voice + voice_to_face + matching_weight * matching

The hard negatives are chosen without gradient (a choice, not a function to differentiate); the matching loss's
gradient reaches both the pair encoder and, through the pairs' vectors, the heads that align them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .losses import TERM_NAMES, check_batch

TEMPERATURE = 0.07  # of the cosines in the contrastive term (ALBEF's initial value, which the paper builds on)
MATCHING_WEIGHT = 1.0


def contrastive_terms(faces: Tensor, voices: Tensor, temperature: float = TEMPERATURE) -> tuple[Tensor, Tensor]:
    """(face_to_voice, voice_to_face): mean over i of -log softmax_j(cos(f_i, v_j) / t)[i], and of
    -log softmax_j(cos(v_i, f_j) / t)[i]. Rows are L2-normalised, so the dot product is the cosine."""
    check_batch(faces, voices, "pairs")
    logits = faces.float() @ voices.float().T / temperature
    targets = torch.arange(len(faces), device=faces.device)
    return F.cross_entropy(logits, targets), F.cross_entropy(logits.T, targets)


@torch.no_grad()
def hard_negatives(faces: Tensor, voices: Tensor) -> tuple[Tensor, Tensor]:
    """(voice of each face, face of each voice): the index j != i of the most similar other-video item by cosine
    (the first one on ties). Rows i of `faces` and `voices` share a video; every other row is another video."""
    check_batch(faces, voices, "pairs")
    similarity = faces.float() @ voices.float().T
    similarity.fill_diagonal_(float("-inf"))
    return similarity.argmax(dim=1), similarity.argmax(dim=0)


def matching_loss(encoder: nn.Module, faces: Tensor, voices: Tensor) -> Tensor:
    """Binary cross-entropy of the pair encoder over the B same-video pairs (label 1) and the 2B hard negatives
    (label 0): each face with its hardest voice, each voice with its hardest face; a mean over the 3B pairs."""
    voice_of_face, face_of_voice = hard_negatives(faces, voices)
    pair_faces = torch.cat([faces, faces, faces[face_of_voice]])
    pair_voices = torch.cat([voices, voices[voice_of_face], voices])
    labels = torch.cat([torch.ones(len(faces)), torch.zeros(2 * len(faces))]).to(faces.device)
    return F.binary_cross_entropy_with_logits(encoder(pair_faces, pair_voices).float(), labels)


@dataclass(frozen=True)
class FusionLoss:
    """The fuse-after-align objective's settings; `bind(model)` gives the loss the trainer calls, reading the
    model's pair encoder."""

    temperature: float = TEMPERATURE
    matching_weight: float = MATCHING_WEIGHT

    def bind(self, model: nn.Module) -> "BoundFusionLoss":
        from fvmatch.models.fusion import pair_encoder

        encoder = pair_encoder(model)
        if encoder is None:
            raise ValueError("the fuse-after-align objective needs a model with a pair encoder (a config with "
                             "fusion_layers)")
        return BoundFusionLoss(self, encoder)


class BoundFusionLoss:
    """The objective with its pair encoder, called as the trainer calls every recipe's objective."""

    def __init__(self, settings: FusionLoss, encoder: nn.Module) -> None:
        self.settings, self.encoder = settings, encoder

    def on_device(self, faces: Tensor, voices: Tensor, face_logits: Tensor, voice_logits: Tensor, labels: Tensor,
                  center_loss) -> tuple[Tensor, Tensor]:
        """Total loss and its terms, detached, in TERM_NAMES order so the trainer's reports read them: the contrastive
        terms in the face_to_voice / voice_to_face places, the matching loss in identity_face's, zeros elsewhere
        (no identity classifier, no centers: the identity logits and labels are not read)."""
        face_to_voice, voice_to_face = contrastive_terms(faces, voices, self.settings.temperature)
        matching = matching_loss(self.encoder, faces, voices)
        total = face_to_voice + voice_to_face + self.settings.matching_weight * matching
        zero = torch.zeros((), device=faces.device)
        terms = {**{name: zero for name in TERM_NAMES}, "face_to_voice": face_to_voice, "voice_to_face": voice_to_face,
                 "identity_face": matching}
        return total, torch.stack([terms[name].detach() for name in TERM_NAMES])
