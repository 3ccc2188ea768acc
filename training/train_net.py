"""What one training run trains: its settings, and the joint model with its identity head as one module.

Shared by the trainer and the recipes that train a model of their own on the way (wen2021's identity weighting).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from fvmatch.models.joint import IdentityClassifier


@dataclass
class TrainSettings:
    recipe: str = "wang2020"  # training/recipes/
    config: str = "small"
    epochs: int = 10
    batch_size: int = 64
    lr_start: float = 1e-3
    lr_end: float = 1e-8
    momentum: float = 0.9
    weight_decay: float = 5e-4
    crop_seconds: float = 3.0
    passes: int = 1  # passes over the training identities per epoch (each pass: every identity once)
    seed: int = 0
    workers: int = 0  # DataLoader worker processes assembling batches
    telephone_fraction: float = 0.0  # share of voice crops narrowed to a telephone band (training/augment.py)
    face_weights: str | None = None  # local pretrained face subnet weights (e.g. VGGFace2), never downloaded

    def to_dict(self) -> dict:
        return asdict(self)


class TrainNet(nn.Module):
    """Joint model + identity head in one module, so that DistributedDataParallel wraps a single forward."""

    def __init__(self, model: nn.Module, classifier: IdentityClassifier) -> None:
        super().__init__()
        self.model = model
        self.classifier = classifier

    def forward(self, faces: torch.Tensor, voices: torch.Tensor):
        face_vectors, voice_vectors = self.model(faces, voices)
        return face_vectors, voice_vectors, self.classifier(face_vectors), self.classifier(voice_vectors)
