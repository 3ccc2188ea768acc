"""The experts recipe: frozen pretrained face and voice spaces, only a joint head trained (wang2020 objective).

Each prepared face is a dlib-face vector and each voice a ge2e-voice vector (training/expert_vectors.py, computed
once); a batch is B distinct identities with one face vector and one voice vector each, drawn as the wang2020
recipe draws its items, and the ExpertsModel maps both into the joint space.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fvmatch.models.config import JointModelConfig

from ..data import IdentityBatches, PreparedCorpus
from ..expert_vectors import expert_vectors
from ..losses import JointLoss
from ..validation import verification_auc, voice_to_face_matching


@dataclass
class ExpertData:
    """The vectors of every usable item, grouped by identity."""

    faces_of: dict[int, np.ndarray]  # identity -> (faces, face dim)
    voices_of: dict[int, np.ndarray]  # identity -> (voices, voice dim)
    description: dict  # space -> model id, items skipped


@dataclass
class ExpertBatch:
    faces: torch.Tensor  # float32 (B, face dim): face-space unit vectors
    voices: torch.Tensor  # float32 (B, voice dim): voice-space unit vectors
    labels: torch.Tensor  # int64 (B,)

    def pin_memory(self) -> "ExpertBatch":
        return ExpertBatch(self.faces.pin_memory(), self.voices.pin_memory(), self.labels.pin_memory())


def expert_data(corpus: PreparedCorpus, face_space: str, voice_space: str, embedder) -> ExpertData:
    """Every prepared item's vector in its modality's space (cached), grouped by identity; unembeddable ones left out."""
    grouped, skipped = {}, {}
    for modality, space, refs in (("face", face_space, corpus.faces_of), ("voice", voice_space, corpus.voices_of)):
        shards = expert_vectors(corpus, modality, space, embedder)
        grouped[modality] = {}
        skipped[modality] = 0
        for identity, references in refs.items():
            rows = np.stack([shards[shard][row] for shard, row in references])
            usable = np.isfinite(rows).all(axis=1)
            skipped[modality] += int((~usable).sum())
            if usable.any():
                grouped[modality][identity] = rows[usable]
    description = {"face_space": face_space, "voice_space": voice_space,
                   "model_ids": {space: embedder.space(space).model_id for space in (face_space, voice_space)},
                   "skipped": skipped}
    return ExpertData(grouped["face"], grouped["voice"], description)


class ExpertBatches(torch.utils.data.Dataset):
    """One epoch's batches of distinct identities (the wang2020 recipe's grouping), one face and voice vector each."""

    def __init__(self, data: ExpertData, identities: list[int], batch_size: int, seed: int, epoch: int,
                 rank: int = 0, world: int = 1, passes: int = 1) -> None:
        grouping = IdentityBatches(None, identities, batch_size, 0.0, seed, epoch, rank, world, passes=passes)
        self.groups, self.class_of = grouping.groups, grouping.class_of
        self.data, self.seed, self.epoch, self.rank = data, seed, epoch, rank

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, k: int) -> ExpertBatch:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, k])
        faces, voices, labels = [], [], []
        for identity in self.groups[k].tolist():
            identity_faces, identity_voices = self.data.faces_of[identity], self.data.voices_of[identity]
            faces.append(identity_faces[int(rng.integers(len(identity_faces)))])
            voices.append(identity_voices[int(rng.integers(len(identity_voices)))])
            labels.append(self.class_of[identity])
        return ExpertBatch(torch.from_numpy(np.stack(faces)), torch.from_numpy(np.stack(voices)),
                           torch.tensor(labels, dtype=torch.int64))


class ExpertsRecipe:
    name = "experts"
    description = ("frozen pretrained face and voice spaces (dlib-face, ge2e-voice), a 2-layer MLP head per modality "
                   "and a shared layer trained with the wang2020 objective")
    default_config = "experts"

    def check_config(self, config: JointModelConfig) -> None:
        if set(config.experts) != {config.face_input, config.voice_input}:
            raise ValueError(f"the {self.name} recipe trains a head on pretrained spaces; config {config.name!r} reads "
                             "media: use --config experts")
        if config.fusion_layers:  # it would be saved untrained, and verify/identify would score pairs with it
            raise ValueError(f"the {self.name} recipe does not train config {config.name!r}'s pair encoder: use "
                             "--recipe fuse-after-align")

    def data(self, corpus: PreparedCorpus, config: JointModelConfig) -> ExpertData:
        from fvmatch.analysis.embedder import Embedder

        embedder = Embedder.load()  # only its pretrained spaces are used: the joint weights are never loaded
        data = expert_data(corpus, config.face_input, config.voice_input, embedder)
        dims = {config.face_input: config.face_channels[0], config.voice_input: config.voice_channels[0]}
        for space, dim in dims.items():
            if embedder.space(space).dim != dim:
                raise ValueError(f"config {config.name!r} expects {dim}-D {space} vectors; the space gives "
                                 f"{embedder.space(space).dim}")
        return data

    def usable(self, data: ExpertData, identities: list[int]) -> list[int]:
        """The identities left with at least one face and one voice vector."""
        return [i for i in identities if i in data.faces_of and i in data.voices_of]

    def batches(self, data: ExpertData, identities: list[int], settings, epoch: int, rank: int,
                world: int) -> ExpertBatches:
        return ExpertBatches(data, identities, settings.batch_size, settings.seed, epoch, rank, world,
                             passes=settings.passes)

    def inputs(self, batch: ExpertBatch, device: torch.device, settings) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.faces.to(device, non_blocking=True), batch.voices.to(device, non_blocking=True)

    @torch.inference_mode()
    def validate(self, model, data: ExpertData, identities: list[int], device: torch.device) -> dict:
        model.eval()
        identities = self.usable(data, identities)
        faces = np.concatenate([data.faces_of[i] for i in identities])
        voices = np.concatenate([data.voices_of[i] for i in identities])
        face_owner = np.concatenate([[i] * len(data.faces_of[i]) for i in identities])
        voice_owner = np.concatenate([[i] * len(data.voices_of[i]) for i in identities])
        face_vectors = model.embed_faces(torch.from_numpy(faces).to(device)).float().cpu().numpy()
        voice_vectors = model.embed_voices(torch.from_numpy(voices).to(device)).float().cpu().numpy()
        return {"verification_auc": verification_auc(face_vectors, face_owner, voice_vectors, voice_owner),
                "vf_1to2_accuracy": voice_to_face_matching(face_vectors, face_owner, voice_vectors, voice_owner),
                "identities": len(identities), "faces": int(len(faces)), "voices": int(len(voices))}

    def objective(self) -> JointLoss:
        return JointLoss()
