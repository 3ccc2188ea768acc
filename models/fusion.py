"""The pair encoder of the fuse-after-align recipe (Peng et al. 2024): a multimodal encoder over one face and one
voice of the joint space, trained as a same/different classifier after (and with) the contrastive alignment.

Each side is a single joint vector, not a token sequence, so the encoder reads four tokens, each projected to
WIDTH: a learned [CLS], the face, the voice and their elementwise product (the aligned cosine's terms, which the
attention of one token per modality could otherwise only rebuild through two layers); Transformer encoder layers
mix them, and a linear head on [CLS] gives the log-odds that the pair is one person, added to a learned affine map
of the aligned cosine (scale and offset), so that the classifier starts from what the alignment learned and learns
what else the pair holds. That logit is the fused score.
"""
from __future__ import annotations

import torch
from torch import nn

WIDTH = 64  # of the tokens: the pair encoder is small beside the heads (CPU training, a re-score per candidate)
HEADS = 4
FEEDFORWARD_FACTOR = 2
COSINE_SCALE = 10.0  # initial slope of the cosine term: cosines of 0.5 vs 0.3 become log-odds 2 apart


class PairEncoder(nn.Module):
    """(faces (B, D), voices (B, D)) joint unit vectors -> (B,) log-odds that row i's face and voice are one person."""

    def __init__(self, dim: int, layers: int) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError("a pair encoder needs at least one layer")
        self.face_in = nn.Linear(dim, WIDTH)  # one projection per token kind: they also tell the tokens apart
        self.voice_in = nn.Linear(dim, WIDTH)
        self.product_in = nn.Linear(dim, WIDTH)
        self.cls = nn.Parameter(torch.zeros(1, 1, WIDTH))
        layer = nn.TransformerEncoderLayer(WIDTH, HEADS, dim_feedforward=FEEDFORWARD_FACTOR * WIDTH, dropout=0.0,
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, 1)
        self.cosine = nn.Linear(1, 1)  # log-odds from the aligned cosine alone, the encoder's output added to it
        with torch.no_grad():
            self.cosine.weight.fill_(COSINE_SCALE)
            self.cosine.bias.zero_()

    def forward(self, faces: torch.Tensor, voices: torch.Tensor) -> torch.Tensor:
        faces, voices = faces.float(), voices.float()
        tokens = torch.stack([self.face_in(faces), self.voice_in(voices), self.product_in(faces * voices)], dim=1)
        tokens = torch.cat([self.cls.expand(len(faces), -1, -1), tokens], dim=1)
        cosines = (faces * voices).sum(dim=1, keepdim=True)
        return (self.cosine(cosines) + self.head(self.norm(self.encoder(tokens)[:, 0]))).squeeze(1)


def pair_encoder(model: nn.Module) -> PairEncoder | None:
    """The model's pair encoder, None for a model without one (every recipe but fuse-after-align)."""
    encoder = getattr(model, "pair_encoder", None)
    return encoder if isinstance(encoder, PairEncoder) else None
