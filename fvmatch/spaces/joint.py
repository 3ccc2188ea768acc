"""The joint space: a trained checkpoint (Wang et al. 2020) that embeds faces and voices into one space."""
from __future__ import annotations

import numpy as np
import torch

from fvmatch.media.audio import log_mel
from fvmatch.models.checkpoint import Checkpoint

FACE_BATCH = 32


class JointSpace:
    """Faces: MTCNN's 160x160 crop through the face subnet; voices: 64-band log-mel through the voice subnet."""

    name = "joint"

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu") -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.device = device
        self.model_id = checkpoint.model_id
        self.dim = int(checkpoint.card["embedding_dim"])

    def prepare(self, image: np.ndarray, face) -> np.ndarray:
        return face.pixels  # the detector's crop is already the subnet's input

    @torch.inference_mode()
    def embed(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (n, 160, 160, 3) -> unit vectors (n, dim), in batches."""
        vectors = []
        for start in range(0, len(crops), FACE_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + FACE_BATCH])).permute(0, 3, 1, 2)
            vectors.append(self.model.embed_faces(batch.to(self.device)).float().cpu().numpy())
        return np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        mel = torch.from_numpy(log_mel(speech)).unsqueeze(0).to(self.device)
        return self.model.embed_voices(mel)[0].float().cpu().numpy()
