"""The joint model: face subnet + voice subnet, one shared Linear to the joint space, L2 normalisation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import JointModelConfig
from .face import build_face_subnet, standardize_faces
from .voice import DIMNetVoice


class JointModel(nn.Module):
    """Maps face crops and voice log-mels into one L2-normalised space; the shared layer is what links them."""

    def __init__(self, config: JointModelConfig) -> None:
        super().__init__()
        if config.voice_channels[-1] != config.subnet_dim:
            raise ValueError("voice subnet output must equal subnet_dim")
        self.config = config
        self.face = build_face_subnet(config)
        self.voice = DIMNetVoice(config.voice_channels)
        self.face_norm = nn.BatchNorm1d(config.subnet_dim, affine=False) if config.subnet_batchnorm else nn.Identity()
        self.voice_norm = nn.BatchNorm1d(config.subnet_dim, affine=False) if config.subnet_batchnorm else nn.Identity()
        # one layer for both modalities (the seed's ablation: shared 85.49 vs separate 73.67 AUC)
        self.shared = nn.Linear(config.subnet_dim, config.embedding_dim)

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        """uint8 RGB crops (batch, 3, 160, 160) -> unit vectors (batch, embedding_dim)."""
        return F.normalize(self.shared(self.face_norm(self.face(standardize_faces(faces)))), dim=1)

    def embed_voices(self, mel: torch.Tensor) -> torch.Tensor:
        """Normalised log-mel (batch, 64, frames) -> unit vectors (batch, embedding_dim)."""
        return F.normalize(self.shared(self.voice_norm(self.voice(mel))), dim=1)

    def forward(self, faces: torch.Tensor, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.embed_faces(faces), self.embed_voices(mel)


class IdentityClassifier(nn.Module):
    """Linear(embedding_dim -> identities) on the joint embedding: the identity cross-entropy head, training only."""

    def __init__(self, embedding_dim: int, identities: int) -> None:
        super().__init__()
        self.linear = nn.Linear(embedding_dim, identities)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.linear(embeddings)


def build_model(config: JointModelConfig) -> nn.Module:
    """The network a config describes: JointModel on media, ExpertsModel on frozen pretrained spaces' vectors; with
    `fusion_layers`, a pair encoder beside it (models/fusion.py)."""
    if config.experts:
        from .experts import ExpertsModel

        model = ExpertsModel(config)
    else:
        model = JointModel(config)
    if config.fusion_layers:
        from .fusion import PairEncoder

        model.pair_encoder = PairEncoder(config.embedding_dim, config.fusion_layers)
    return model
