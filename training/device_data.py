"""The prepared corpus held in the training device's memory, and batches assembled there.

Through a DataLoader each batch of 256 pairs is 69 MB on the host (faces as uint8, crops as float32), copied by a
worker into shared memory, by the pin-memory thread into pinned memory and then to the GPU. Held on the GPU, the
corpus is read once: a batch is one gather of face rows, a flip, and one gather of crop samples, all on the device,
from the same draws (`IdentityBatches.plan`), so training sees exactly the batches the DataLoader would give it.
"""
from __future__ import annotations

import numpy as np
import torch

from .data import Batch, BatchPlan, IdentityBatches, PreparedCorpus
from .prepare import INT16_SCALE

MAX_SHARE_OF_FREE_MEMORY = 0.3  # the corpus may take this share of the GPU's free memory; else the DataLoader serves


class DeviceCorpus:
    """Every face crop (uint8, rows in shard order) and every voice sample (int16, clips end to end) on one device."""

    def __init__(self, corpus: PreparedCorpus, device: torch.device | str) -> None:
        self.device = torch.device(device)
        # shard by shard (each read off its memory map into a writable copy), joined on the device
        self.faces = torch.cat([torch.from_numpy(np.array(faces)).to(self.device) for faces in corpus.faces])
        self.voices = torch.cat([torch.from_numpy(np.array(voices)).to(self.device) for voices in corpus.voices])
        self.face_base = np.cumsum([0] + [len(faces) for faces in corpus.faces])
        self.voice_base = np.cumsum([0] + [len(voices) for voices in corpus.voices])
        self.voice_offsets = corpus.voice_offsets

    @staticmethod
    def bytes_needed(corpus: PreparedCorpus) -> int:
        return sum(faces.nbytes for faces in corpus.faces) + sum(voices.nbytes for voices in corpus.voices)

    def batch(self, plan: BatchPlan, crop_samples: int) -> Batch:
        """The batch of `plan`, assembled on the device; equal, element for element, to IdentityBatches'."""
        rows = torch.tensor([self.face_base[shard] + row for shard, row in plan.faces], device=self.device)
        faces = self.faces[rows]  # (B, H, W, 3)
        flips = torch.tensor(plan.flips, device=self.device)[:, None, None, None]
        faces = torch.where(flips, faces.flip(2), faces).permute(0, 3, 1, 2)  # (B, 3, H, W), channels_last in memory

        starts, spans = [], []
        for (shard, row), start in zip(plan.voices, plan.starts):
            clip_start = self.voice_base[shard] + self.voice_offsets[shard][row]
            clip_length = int(self.voice_offsets[shard][row + 1] - self.voice_offsets[shard][row])
            starts.append(clip_start + start)
            spans.append(min(clip_length - start, crop_samples))  # a clip shorter than the crop repeats (np.resize)
        starts_t = torch.tensor(starts, dtype=torch.int64, device=self.device)[:, None]
        spans_t = torch.tensor(spans, dtype=torch.int64, device=self.device)[:, None]
        offsets = torch.arange(crop_samples, device=self.device)[None, :] % spans_t
        waveforms = self.voices[starts_t + offsets].float() / INT16_SCALE
        return Batch(faces=faces, waveforms=waveforms,
                     labels=torch.tensor(plan.labels, dtype=torch.int64, device=self.device),
                     bands=torch.tensor(plan.bands, dtype=torch.float32, device=self.device))


def device_corpus_for(batches, corpus, device: torch.device) -> DeviceCorpus | None:
    """A DeviceCorpus when the recipe's batches are media batches of a prepared corpus and it fits the GPU's free
    memory comfortably; None otherwise (the DataLoader serves)."""
    if not isinstance(batches, IdentityBatches) or not isinstance(corpus, PreparedCorpus):
        return None
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if DeviceCorpus.bytes_needed(corpus) > MAX_SHARE_OF_FREE_MEMORY * free:
            return None
    return DeviceCorpus(corpus, device)
