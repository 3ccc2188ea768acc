"""The fuse-after-align recipe (Peng et al. 2024, arXiv 2404.09509), unsupervised setting: contrastive alignment of
the joint space, then a pair encoder over (face, voice) trained as a same/different classifier on hard negatives.

No identity label is read in training: a positive pair is a face and a voice of the same video, i.e. items under
faces/<identity>/<video>/ and voices/<identity>/<video>/ with the same two folder names (the corpus layout's
recording session); a batch is B distinct videos drawn without regard to identity, so two videos of one person may
meet in a batch as a negative, as they do in the paper's unsupervised setting. Identities only split the corpus
(train / val) and score validation. The inputs are the frozen dlib-face and ge2e-voice vectors of the experts
recipe (training/expert_vectors.py, computed once and cached), mapped by the experts heads; the pair encoder reads
their joint vectors (models/fusion.py), so its weights travel in the checkpoint and inference re-scores pairs of
stored joint vectors.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np
import torch

from fvmatch.evaluation.metrics import auc
from fvmatch.models.config import JointModelConfig

from ..data import PreparedCorpus
from ..expert_vectors import SOURCE_FILES, expert_vectors
from ..losses_fusion import FusionLoss
from ..validation import voice_to_face_matching

MAX_VALIDATION_PAIRS = 250_000  # fused validation scores every face-voice pair up to this many (a face subset beyond)


@dataclass
class VideoData:
    """The usable vectors of every video holding both a face and a voice."""

    videos: list[tuple[int, str]]  # (identity index, video folder name)
    faces: list[np.ndarray]  # per video: (faces, face dim) face-space unit vectors
    voices: list[np.ndarray]  # per video: (voices, voice dim)
    videos_of: dict[int, list[int]]  # identity -> its videos' positions in `videos`
    description: dict  # space -> model id, items skipped, videos used


def video_of(source: str) -> str:
    """The video folder of a prepared item's source path, faces|voices/<identity>/<video>/<file>."""
    parts = PurePosixPath(source).parts
    return parts[2] if len(parts) >= 4 else ""


def video_data(corpus: PreparedCorpus, face_space: str, voice_space: str, embedder) -> VideoData:
    """Every prepared item's vector (cached), grouped by (identity, video); videos lacking a face or a voice, and
    items a space could not embed, left out."""
    grouped: dict[str, dict[tuple[int, str], list[np.ndarray]]] = {}
    skipped = {}
    for modality, space, refs in (("face", face_space, corpus.faces_of), ("voice", voice_space, corpus.voices_of)):
        shards = expert_vectors(corpus, modality, space, embedder)
        sources = [json.loads((corpus.cache / name / SOURCE_FILES[modality]).read_text())
                   for name in corpus.plan["shards"]]
        grouped[modality], skipped[modality] = {}, 0
        for identity, references in refs.items():
            for shard, row in references:
                vector = shards[shard][row]
                if not np.isfinite(vector).all():
                    skipped[modality] += 1
                    continue
                grouped[modality].setdefault((identity, video_of(sources[shard][row])), []).append(vector)
    videos = sorted(set(grouped["face"]) & set(grouped["voice"]))
    videos_of: dict[int, list[int]] = {}
    for position, (identity, _) in enumerate(videos):
        videos_of.setdefault(identity, []).append(position)
    description = {"face_space": face_space, "voice_space": voice_space,
                   "model_ids": {space: embedder.space(space).model_id for space in (face_space, voice_space)},
                   "skipped": skipped, "videos": len(videos)}
    return VideoData(videos, [np.stack(grouped["face"][key]) for key in videos],
                     [np.stack(grouped["voice"][key]) for key in videos], videos_of, description)


@dataclass
class PairBatch:
    faces: torch.Tensor  # float32 (B, face dim)
    voices: torch.Tensor  # float32 (B, voice dim): row i from the same video as face i
    labels: torch.Tensor  # int64 (B,): zeros (no identity label is read; the trainer's bookkeeping wants a tensor)

    def pin_memory(self) -> "PairBatch":
        return PairBatch(self.faces.pin_memory(), self.voices.pin_memory(), self.labels.pin_memory())


class VideoBatches(torch.utils.data.Dataset):
    """One epoch's batches: `passes` permutations of the identities' videos, each cut into groups of `batch_size`
    (tails dropped), one face and one voice of each video; a pure function of (seed, epoch, batch number)."""

    def __init__(self, data: VideoData, identities: list[int], batch_size: int, seed: int, epoch: int,
                 rank: int = 0, world: int = 1, passes: int = 1) -> None:
        videos = sorted(v for identity in identities for v in data.videos_of.get(identity, []))
        if len(videos) < 2:
            raise ValueError("video batches need at least 2 videos with a face and a voice")
        size = min(batch_size, len(videos))
        groups = []
        for repeat in range(passes):
            order = np.random.default_rng([seed, epoch, repeat]).permutation(videos)
            groups += [order[start : start + size] for start in range(0, len(order) - size + 1, size)]
        groups = groups[: len(groups) // world * world]
        self.groups = groups[rank::world]
        self.data, self.seed, self.epoch, self.rank = data, seed, epoch, rank

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, k: int) -> PairBatch:
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, k])
        faces, voices = [], []
        for video in self.groups[k].tolist():
            video_faces, video_voices = self.data.faces[video], self.data.voices[video]
            faces.append(video_faces[int(rng.integers(len(video_faces)))])
            voices.append(video_voices[int(rng.integers(len(video_voices)))])
        return PairBatch(torch.from_numpy(np.stack(faces)), torch.from_numpy(np.stack(voices)),
                         torch.zeros(len(faces), dtype=torch.int64))


def fused_score_matrix(encoder, faces: torch.Tensor, voices: torch.Tensor, chunk: int = 4096) -> np.ndarray:
    """(voices, faces) pair encoder logits of every voice with every face, in chunks of pairs."""
    rows, columns = torch.meshgrid(torch.arange(len(voices)), torch.arange(len(faces)), indexing="ij")
    rows, columns = rows.reshape(-1), columns.reshape(-1)
    scores = [encoder(faces[columns[s : s + chunk]], voices[rows[s : s + chunk]]).float().cpu()
              for s in range(0, len(rows), chunk)]
    return torch.cat(scores).reshape(len(voices), len(faces)).numpy()


def one_to_two(scores: np.ndarray, voice_owner: np.ndarray, face_owner: np.ndarray) -> float:
    """V-F 1:2 accuracy from a (voices, faces) score matrix (training/validation.py's, on any score)."""
    accuracies = []
    for row, owner in zip(scores, voice_owner):
        right, wrong = row[face_owner == owner], row[face_owner != owner]
        if len(right) and len(wrong):
            accuracies.append((right[:, None] > wrong[None, :]).mean() + 0.5 * (right[:, None] == wrong[None, :]).mean())
    return float(np.mean(accuracies))


class FuseAfterAlignRecipe:
    name = "fuse-after-align"
    description = ("Peng et al. 2024, fuse after align (unsupervised: same-video pairs, no identity labels): "
                   "contrastive alignment of experts heads, then a pair encoder trained as a same/different "
                   "classifier on hard negatives chosen by the aligned similarity")
    default_config = "experts-fusion"

    def check_config(self, config: JointModelConfig) -> None:
        if set(config.experts) != {config.face_input, config.voice_input} or not config.fusion_layers:
            raise ValueError(f"the {self.name} recipe trains experts heads and a pair encoder; config {config.name!r} "
                             "has no pair encoder or reads media: use --config experts-fusion")

    def data(self, corpus: PreparedCorpus, config: JointModelConfig) -> VideoData:
        from fvmatch.analysis.embedder import Embedder

        embedder = Embedder.load()  # only its pretrained spaces are used: the joint weights are never loaded
        for space, dim in ((config.face_input, config.face_channels[0]), (config.voice_input, config.voice_channels[0])):
            if embedder.space(space).dim != dim:
                raise ValueError(f"config {config.name!r} expects {dim}-D {space} vectors; the space gives "
                                 f"{embedder.space(space).dim}")
        return video_data(corpus, config.face_input, config.voice_input, embedder)

    def usable(self, data: VideoData, identities: list[int]) -> list[int]:
        """The identities with at least one video holding a face and a voice."""
        return [i for i in identities if data.videos_of.get(i)]

    def batches(self, data: VideoData, identities: list[int], settings, epoch: int, rank: int,
                world: int) -> VideoBatches:
        return VideoBatches(data, identities, settings.batch_size, settings.seed, epoch, rank, world,
                            passes=settings.passes)

    def inputs(self, batch: PairBatch, device: torch.device, settings) -> tuple[torch.Tensor, torch.Tensor]:
        return batch.faces.to(device, non_blocking=True), batch.voices.to(device, non_blocking=True)

    @torch.inference_mode()
    def validate(self, model, data: VideoData, identities: list[int], device: torch.device) -> dict:
        """Fused figures (the pair encoder's logit: the score verify reports) as verification_auc and
        vf_1to2_accuracy, the joint space's cosine beside them; every face-voice pair of held-out identities."""
        from fvmatch.models.fusion import pair_encoder

        model.eval()
        videos = [v for i in self.usable(data, identities) for v in data.videos_of[i]]
        face_owner = np.concatenate([[data.videos[v][0]] * len(data.faces[v]) for v in videos])
        voice_owner = np.concatenate([[data.videos[v][0]] * len(data.voices[v]) for v in videos])
        faces = model.embed_faces(torch.from_numpy(np.concatenate([data.faces[v] for v in videos])).to(device))
        voices = model.embed_voices(torch.from_numpy(np.concatenate([data.voices[v] for v in videos])).to(device))
        keep = max(1, MAX_VALIDATION_PAIRS // len(voices))
        if len(faces) > keep:  # a seeded subset of faces, so a large validation split stays quick
            chosen = np.sort(np.random.default_rng(0).choice(len(faces), keep, replace=False))
            faces, face_owner = faces[torch.from_numpy(chosen).to(device)], face_owner[chosen]
        fused = fused_score_matrix(pair_encoder(model), faces, voices)
        same = voice_owner[:, None] == face_owner[None, :]
        face_vectors, voice_vectors = faces.float().cpu().numpy(), voices.float().cpu().numpy()
        return {"verification_auc": auc(same.ravel(), fused.ravel()),
                "vf_1to2_accuracy": one_to_two(fused, voice_owner, face_owner),
                "cosine_verification_auc": auc(same.ravel(), (voice_vectors @ face_vectors.T).ravel()),
                "cosine_vf_1to2_accuracy": voice_to_face_matching(face_vectors, face_owner, voice_vectors, voice_owner),
                "score": "fused", "identities": len(set(face_owner.tolist())), "videos": len(videos),
                "faces": int(len(faces)), "voices": int(len(voices))}

    def objective(self) -> FusionLoss:
        return FusionLoss()
