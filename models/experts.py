"""The joint head over frozen pretrained spaces (the `experts` recipe): a small MLP per modality on the spaces'
unit vectors, one shared Linear to the joint space, L2 normalisation, the JointModel's layout on other inputs."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import JointModelConfig


def mlp(widths: tuple[int, ...], output_dim: int) -> nn.Sequential:
    """Linear + BatchNorm + ReLU for each width after the first, then a Linear to `output_dim`."""
    layers: list[nn.Module] = []
    for c_in, c_out in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out), nn.ReLU(inplace=True)]
    layers.append(nn.Linear(widths[-1], output_dim))
    return nn.Sequential(*layers)


class ExpertsModel(nn.Module):
    """Face-space vectors (batch, face_channels[0]) and voice-space vectors (batch, voice_channels[0]) -> unit
    vectors (batch, embedding_dim) in one joint space; the shared layer is what links the modalities."""

    def __init__(self, config: JointModelConfig) -> None:
        super().__init__()
        if config.face_subnet != "mlp" or config.voice_subnet != "mlp":
            raise ValueError("an experts model has mlp subnets for both modalities")
        if len(config.face_channels) < 1 or len(config.voice_channels) < 1:
            raise ValueError("mlp subnets need at least their input width")
        self.config = config
        self.face = mlp(config.face_channels, config.subnet_dim)
        self.voice = mlp(config.voice_channels, config.subnet_dim)
        self.face_norm = nn.BatchNorm1d(config.subnet_dim, affine=False) if config.subnet_batchnorm else nn.Identity()
        self.voice_norm = nn.BatchNorm1d(config.subnet_dim, affine=False) if config.subnet_batchnorm else nn.Identity()
        self.shared = nn.Linear(config.subnet_dim, config.embedding_dim)

    def embed_faces(self, face_vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.shared(self.face_norm(self.face(face_vectors.float()))), dim=1)

    def embed_voices(self, voice_vectors: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.shared(self.voice_norm(self.voice(voice_vectors.float()))), dim=1)

    def forward(self, face_vectors: torch.Tensor, voice_vectors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_faces(face_vectors), self.embed_voices(voice_vectors)
