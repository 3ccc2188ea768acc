"""The joint space: a trained checkpoint that embeds faces and voices into one space.

A model trained on media (Wang et al. 2020) reads MTCNN's 160x160 crop and 64-band log-mel; a model of the experts
recipe reads the unit vectors of frozen pretrained spaces (its config's `face_input`/`voice_input`, e.g. dlib-face
and ge2e-voice): a face is that space's chip, embedded there, then the face head; a voice likewise. The card records
each such space's model id, and a checkpoint whose spaces are not the ones installed is refused.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from fvmatch.media.log_mel import log_mel
from fvmatch.models.checkpoint import Checkpoint
from fvmatch.spaces.joint_onnx import expert_space

FACE_BATCH = 32


class JointSpace:
    """Faces and voices through the checkpoint's model, on media or on its pretrained spaces' vectors."""

    name = "joint"

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", space: Callable[[str], object] | None = None) -> None:
        """`space(name)` gives the pretrained spaces an experts model reads (loaded on first use)."""
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.device = device
        self.model_id = checkpoint.model_id
        self.dim = int(checkpoint.card["embedding_dim"])
        config = checkpoint.model.config
        self.face_expert = expert_space(checkpoint.card, config.face_input, space) if config.face_input != "crop" else None
        self.voice_expert = expert_space(checkpoint.card, config.voice_input, space) if config.voice_input != "log-mel" else None
        # the speech a window gives it (fvmatch.media.audio.SpeechWindow.speech_for): its voice expert's, as the head was
        # trained on that space's vectors; silero-vad's for a model on log-mel
        self.front_end = getattr(self.voice_expert, "front_end", "speech")

    def prepare(self, image: np.ndarray, face) -> np.ndarray:
        if self.face_expert is not None:
            return self.face_expert.prepare(image, face)
        return face.pixels  # the detector's crop is already the subnet's input

    @torch.inference_mode()
    def embed(self, prepared: np.ndarray) -> np.ndarray:
        """Prepared faces (crops (n, 160, 160, 3) uint8, or the face expert's inputs) -> unit vectors (n, dim)."""
        vectors = []
        for start in range(0, len(prepared), FACE_BATCH):
            part = prepared[start : start + FACE_BATCH]
            if self.face_expert is not None:
                batch = torch.from_numpy(self.face_expert.embed(part))
            else:
                batch = torch.from_numpy(np.ascontiguousarray(part)).permute(0, 3, 1, 2)
            vectors.append(self.model.embed_faces(batch.to(self.device)).float().cpu().numpy())
        return np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)

    @torch.inference_mode()
    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        if self.voice_expert is not None:
            inputs = torch.from_numpy(self.voice_expert.embed_speech(speech)).unsqueeze(0)
        else:
            inputs = torch.from_numpy(log_mel(speech)).unsqueeze(0)
        return self.model.embed_voices(inputs.to(self.device))[0].float().cpu().numpy()
