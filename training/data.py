"""Reading prepared shards and drawing identity-based batches of face-voice pairs.

A batch holds B distinct identities with one face and one voice each (anchor-positive pairs), the voice as a
random crop of a few seconds, as in the seed paper. Every batch is a pure function of (seed, epoch, batch
number), so a resumed run sees exactly the batches it would have seen, and DistributedDataParallel ranks take
disjoint batches of the same epoch plan.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .augment import FULL_BAND, draw_band
from .prepare import FORMAT, INT16_SCALE

SAMPLE_RATE = 16000


class PreparedCorpus:
    """The shards written by `fvmatch prepare`, memory-mapped; items are addressed per identity."""

    def __init__(self, cache: str | Path) -> None:
        self.cache = Path(cache)
        plan_path = self.cache / "prepare.json"
        if not plan_path.is_file():
            raise ValueError(f"{self.cache}: no prepare.json here (run fvmatch prepare first)")
        plan = json.loads(plan_path.read_text())
        if plan.get("format") != FORMAT:
            raise ValueError(f"{plan_path}: format {plan.get('format')!r}, expected {FORMAT!r}")
        if not plan.get("complete"):
            raise ValueError(f"{self.cache}: preparation is incomplete (run fvmatch prepare again to finish it)")
        self.plan = plan
        self.identities: list[dict] = plan["identities"]
        self.faces: list[np.ndarray] = []
        self.voices: list[np.ndarray] = []
        self.voice_offsets: list[np.ndarray] = []
        self.faces_of: dict[int, list[tuple[int, int]]] = {}
        self.voices_of: dict[int, list[tuple[int, int]]] = {}
        for shard_number, name in enumerate(plan["shards"]):
            shard = self.cache / name
            self.faces.append(np.load(shard / "faces.npy", mmap_mode="r"))
            self.voices.append(np.load(shard / "voices.npy", mmap_mode="r"))
            self.voice_offsets.append(np.load(shard / "voice_offsets.npy"))
            for row, identity in enumerate(np.load(shard / "face_identity.npy").tolist()):
                self.faces_of.setdefault(identity, []).append((shard_number, row))
            for row, identity in enumerate(np.load(shard / "voice_identity.npy").tolist()):
                self.voices_of.setdefault(identity, []).append((shard_number, row))

    def split(self, name: str) -> list[int]:
        """Indices of the identities of a split that have at least one face and one voice."""
        return [index for index, row in enumerate(self.identities)
                if row["split"] == name and self.faces_of.get(index) and self.voices_of.get(index)]

    def face(self, reference: tuple[int, int]) -> np.ndarray:
        shard, row = reference
        return np.asarray(self.faces[shard][row])

    def voice(self, reference: tuple[int, int]) -> np.ndarray:
        """int16 speech samples of one clip."""
        shard, row = reference
        offsets = self.voice_offsets[shard]
        return np.asarray(self.voices[shard][offsets[row] : offsets[row + 1]])

    def voice_length(self, reference: tuple[int, int]) -> int:
        shard, row = reference
        offsets = self.voice_offsets[shard]
        return int(offsets[row + 1] - offsets[row])

    def description(self) -> str:
        """What the model card says about the training data; a synthetic corpus says so."""
        counts = self.plan.get("counts", {})
        source = Path(self.plan.get("source", self.cache))
        text = (f"{source} ({counts.get('identities', len(self.identities))} identities, "
                f"{counts.get('faces', '?')} faces, {counts.get('voices', '?')} voice clips; train split "
                f"{len(self.split('train'))} identities)")
        synth = source / "synth.json"
        if synth.is_file():
            info = json.loads(synth.read_text())
            text = (f"SYNTHETIC DATA ONLY: fvmatch synth corpus (seed {info.get('seed')}, generator version "
                    f"{info.get('generator_version')}), {text}; never evidence of accuracy on real people")
        return text


def crop_voice(samples: np.ndarray, length: int, rng: np.random.Generator | None) -> np.ndarray:
    """A `length`-sample window of int16 speech as float32 in [-1, 1]: at random with `rng`, else the centre;
    a shorter clip is repeated to fill it."""
    spare = max(0, len(samples) - length)
    start = int(rng.integers(0, spare + 1)) if rng is not None else spare // 2
    return voice_window(samples, start, length)


def voice_window(samples: np.ndarray, start: int, length: int) -> np.ndarray:
    """`length` int16 samples from `start`, as float32 in [-1, 1]; a clip too short is repeated to fill it."""
    return np.resize(samples[start : start + length], length).astype(np.float32) / INT16_SCALE


@dataclass
class Batch:
    faces: torch.Tensor  # uint8 (B, 3, 160, 160)
    waveforms: torch.Tensor  # float32 (B, samples), 16 kHz
    labels: torch.Tensor  # int64 (B,), class index among the training identities
    bands: torch.Tensor  # float32 (B, 2): each voice's band in Hz, (0, 8000) for full band (training/augment.py)

    def pin_memory(self) -> "Batch":
        return Batch(self.faces.pin_memory(), self.waveforms.pin_memory(), self.labels.pin_memory(),
                     self.bands.pin_memory())


class IdentityBatches(torch.utils.data.Dataset):
    """One epoch's batches: `passes` permutations of the identities, each cut into groups of `batch_size` (tails
    dropped), so a batch never holds an identity twice.

    Item k is a whole Batch, so a DataLoader with batch_size=None and worker processes assembles batches in
    parallel. With `world` > 1, rank r takes batches r, r + world, ...
    """

    def __init__(self, corpus: PreparedCorpus, identities: list[int], batch_size: int, crop_seconds: float,
                 seed: int, epoch: int, rank: int = 0, world: int = 1, flip_faces: bool = True,
                 passes: int = 1, telephone_fraction: float = 0.0) -> None:
        if len(identities) < 2:
            raise ValueError("identity batches need at least 2 identities")
        self.corpus = corpus
        self.batch_size = min(batch_size, len(identities))
        self.class_of = {identity: position for position, identity in enumerate(sorted(identities))}
        groups = []
        for repeat in range(passes):
            order = np.random.default_rng([seed, epoch, repeat]).permutation(sorted(identities))
            groups += [order[start : start + self.batch_size]
                       for start in range(0, len(order) - self.batch_size + 1, self.batch_size)]
        # every rank must take the same number of steps (DistributedDataParallel waits for all at each step)
        groups = groups[: len(groups) // world * world]
        self.groups = groups[rank::world]
        self.crop_samples = int(crop_seconds * SAMPLE_RATE)
        self.seed, self.epoch, self.rank = seed, epoch, rank
        self.flip_faces = flip_faces
        self.telephone_fraction = telephone_fraction

    def __len__(self) -> int:
        return len(self.groups)

    def plan(self, k: int) -> "BatchPlan":
        """What batch k takes: drawn from its own generator, in one fixed order, wherever it is assembled."""
        rng = np.random.default_rng([self.seed, self.epoch, self.rank, k])
        plan = BatchPlan([], [], [], [], [], [])
        for identity in self.groups[k].tolist():
            face_refs, voice_refs = self.corpus.faces_of[identity], self.corpus.voices_of[identity]
            plan.faces.append(face_refs[int(rng.integers(len(face_refs)))])
            plan.flips.append(bool(self.flip_faces and rng.random() < 0.5))
            voice = voice_refs[int(rng.integers(len(voice_refs)))]
            plan.voices.append(voice)
            plan.starts.append(int(rng.integers(0, max(0, self.corpus.voice_length(voice) - self.crop_samples) + 1)))
            plan.labels.append(self.class_of[identity])
            # (drawn only when asked for, so that a run without it sees the batches it always saw)
            telephone = bool(self.telephone_fraction) and rng.random() < self.telephone_fraction
            plan.bands.append(draw_band(rng) if telephone else FULL_BAND)
        return plan

    def __getitem__(self, k: int) -> Batch:
        plan = self.plan(k)
        faces = [self.corpus.face(ref)[:, ::-1] if flip else self.corpus.face(ref)
                 for ref, flip in zip(plan.faces, plan.flips)]
        waveforms = [voice_window(self.corpus.voice(ref), start, self.crop_samples)
                     for ref, start in zip(plan.voices, plan.starts)]
        return Batch(faces=torch.from_numpy(np.ascontiguousarray(np.stack(faces))).permute(0, 3, 1, 2),
                     waveforms=torch.from_numpy(np.stack(waveforms)),
                     labels=torch.tensor(plan.labels, dtype=torch.int64),
                     bands=torch.tensor(plan.bands, dtype=torch.float32))


@dataclass
class BatchPlan:
    """One batch's draws, per pair: which face (flipped or not), which voice clip and where its crop starts."""

    faces: list[tuple[int, int]]
    flips: list[bool]
    voices: list[tuple[int, int]]
    starts: list[int]
    labels: list[int]
    bands: list[tuple[float, float]]
