"""The embedder: a loaded checkpoint that turns media files into unit vectors of the joint space.

This is the interface the rest of fvmatch uses (media in; one unit vector per item, quality figures and a
model id out), so that later configs can put other subnets behind it without touching the gallery or CLI.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fvmatch.errors import FvmatchError, InvalidCheckpoint, ModelMismatch
from fvmatch.media.audio import (MIN_SPEECH_SECONDS, SpeechSummary, SpeechWindow, require_speech, short_clip_windows,
                                 speech_windows)
from fvmatch.media.image import FaceDetector
from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint, read_card

FACE_BATCH = 32


@dataclass
class Embedding:
    """One item in the joint space: the unit vector, its modality, its source and its quality figures."""

    vector: np.ndarray
    modality: str  # "face" | "voice"
    source: str
    quality: dict = field(default_factory=dict)  # face: probability, box; voice: speech_seconds, duration_seconds, ...
    model_id: str = ""

    def to_dict(self) -> dict:
        return {"modality": self.modality, "source": self.source, "model_id": self.model_id,
                "quality": self.quality, "embedding": [round(float(v), 7) for v in self.vector]}


class Embedder:
    """A checkpoint ready to embed faces and voices on one device."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu", min_speech_seconds: float = MIN_SPEECH_SECONDS,
                 checkpoint_path: Path | None = None) -> None:
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.device = device
        self.min_speech_seconds = min_speech_seconds
        self.checkpoint_path = checkpoint_path
        self._detector: FaceDetector | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", **options) -> "Embedder":
        """Load a checkpoint (the shipped default when `path` is None); InvalidCheckpoint names a bad file."""
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        try:
            checkpoint = load_checkpoint(path, device=device)
        except CheckpointError as error:
            raise InvalidCheckpoint(path, str(error).removeprefix(f"{path}: ")) from None
        return cls(checkpoint, device=device, checkpoint_path=path, **options)

    @property
    def model_id(self) -> str:
        return self.checkpoint.model_id

    @property
    def card(self) -> dict:
        return self.checkpoint.card

    @property
    def embedding_dim(self) -> int:
        return int(self.card["embedding_dim"])

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector(device=self.device)
        return self._detector

    @torch.inference_mode()
    def embed_face_crops(self, crops: np.ndarray) -> np.ndarray:
        """uint8 crops (n, 160, 160, 3) -> unit vectors (n, embedding_dim), in batches."""
        vectors = []
        for start in range(0, len(crops), FACE_BATCH):
            batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + FACE_BATCH])).permute(0, 3, 1, 2)
            vectors.append(self.model.embed_faces(batch.to(self.device)).float().cpu().numpy())
        return np.concatenate(vectors) if vectors else np.zeros((0, self.embedding_dim), np.float32)

    def embed_face(self, path: str | Path, all_faces: bool = False) -> list[Embedding]:
        """Embed the largest face of an image (every face with `all_faces`); NoFaceFound/UnreadableMedia on failure."""
        found = self.detector.faces_in_file(path)
        chosen = found if all_faces else found[:1]
        vectors = self.embed_face_crops(np.stack([crop.pixels for crop in chosen]))
        return [
            Embedding(vector=vector, modality="face", source=str(path), model_id=self.model_id,
                      quality={**crop.quality(), "faces_in_image": len(found)})
            for crop, vector in zip(chosen, vectors)
        ]

    def embed_voice(self, path: str | Path) -> Embedding:
        """Embed a recording: windows of its speech, each embedded, averaged by seconds of speech, renormalised.

        The recording is streamed (an hour-long file is never held whole). TooLittleSpeech when it holds less than
        `min_speech_seconds`; UnreadableMedia for a bad file.
        """
        summary = SpeechSummary()
        return self._voice_embedding(path, summary, speech_windows(path, summary))

    def embed_voices(self, paths: Sequence[str | Path]) -> list[Embedding | FvmatchError]:
        """`embed_voice` of many recordings, in their order, an error in place of each that fails.

        Clips up to a minute have their speech found in batches (the voice activity detector dominates the cost of
        a short clip); longer recordings are streamed one by one.
        """
        results: list[Embedding | FvmatchError] = []
        for path, found in zip(paths, short_clip_windows(paths)):
            if isinstance(found, FvmatchError):  # the file could not be read
                results.append(found)
                continue
            try:
                results.append(self.embed_voice(path) if found is None else self._voice_embedding(path, *found))
            except FvmatchError as error:
                results.append(error)
        return results

    @torch.inference_mode()
    def _voice_embedding(self, path: str | Path, summary: SpeechSummary, windows: Iterable[SpeechWindow]) -> Embedding:
        total = np.zeros(self.embedding_dim, dtype=np.float64)
        count = 0
        for window in windows:  # (a generator fills in `summary` as it goes)
            mel = torch.from_numpy(window.features).unsqueeze(0).to(self.device)
            total += window.speech_seconds * self.model.embed_voices(mel)[0].double().cpu().numpy()
            count += 1
        require_speech(path, summary, self.min_speech_seconds)
        vector = (total / np.linalg.norm(total)).astype(np.float32)
        return Embedding(vector=vector, modality="voice", source=str(path), model_id=self.model_id,
                         quality={"speech_seconds": round(summary.speech_seconds, 2),
                                  "duration_seconds": round(summary.duration_seconds, 2),
                                  "sample_rate": summary.original_sample_rate, "channels": summary.channels,
                                  "windows": count})


def embedder_for_gallery(gallery, model_path: str | Path | None = None, device: str = "cpu", **options) -> Embedder:
    """The model to use with a gallery: `model_path` if given, else the one the gallery was built with.

    The gallery's pinned model is looked for at the path it recorded, then as the shipped default. A model
    other than the pinned one is refused (ModelMismatch naming both).
    """
    if model_path is None:
        for candidate in (gallery.model_path, DEFAULT_CHECKPOINT):
            if candidate and Path(candidate).is_file():
                try:
                    card = read_card(candidate)
                except CheckpointError:
                    continue
                if card["model_id"] == gallery.model_id:
                    model_path = candidate
                    break
        if model_path is None:
            raise ModelMismatch(gallery.directory, f"the gallery's model {gallery.model_id[:16]} is neither at "
                                f"{gallery.model_path or '(no recorded path)'} nor the shipped default; give it with --model")
    embedder = Embedder.load(model_path, device=device, **options)
    gallery.check_model(embedder.model_id)
    return embedder


_default_embedder: Embedder | None = None


def load_model(path: str | Path | None = None, device: str = "cpu") -> Embedder:
    """Load a checkpoint as an Embedder: `path`, else the shipped default."""
    return Embedder.load(path, device=device)


def _shared_default() -> Embedder:
    global _default_embedder
    if _default_embedder is None:
        _default_embedder = load_model()
    return _default_embedder


def embed_face(path: str | Path) -> Embedding:
    """The largest face in an image, embedded with the default model."""
    return _shared_default().embed_face(path)[0]


def embed_voice(path: str | Path) -> Embedding:
    """A recording's speech, embedded with the default model."""
    return _shared_default().embed_voice(path)
