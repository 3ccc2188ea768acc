"""The wang2020 recipe: face and voice subnets trained end to end on face crops and log-mel (the seed paper)."""
from __future__ import annotations

import torch

from fvmatch.media.log_mel import log_mel_batch
from fvmatch.models.config import JointModelConfig

from ..augment import telephone_band
from ..data import Batch, IdentityBatches, PreparedCorpus
from ..losses import JointLoss
from ..validation import validate


class Wang2020Recipe:
    name = "wang2020"
    description = "Wang et al., SIGIR 2020: subnets trained end to end on face crops and 64-band log-mel"
    default_config = "small"

    def check_config(self, config: JointModelConfig) -> None:
        if config.experts:
            raise ValueError(f"the {self.name} recipe trains on media; config {config.name!r} reads pretrained spaces "
                             f"({', '.join(config.experts)}): use --recipe experts")

    def data(self, corpus: PreparedCorpus, config: JointModelConfig) -> PreparedCorpus:
        return corpus

    def usable(self, corpus: PreparedCorpus, identities: list[int]) -> list[int]:
        return identities

    def batches(self, corpus: PreparedCorpus, identities: list[int], settings, epoch: int, rank: int,
                world: int) -> IdentityBatches:
        return IdentityBatches(corpus, identities, settings.batch_size, settings.crop_seconds, settings.seed, epoch,
                               rank, world, passes=settings.passes, telephone_fraction=settings.telephone_fraction)

    def inputs(self, batch: Batch, device: torch.device, settings) -> tuple[torch.Tensor, torch.Tensor]:
        faces = batch.faces.to(device, non_blocking=True)
        if device.type == "cuda":
            faces = faces.contiguous(memory_format=torch.channels_last)
        waveforms = batch.waveforms.to(device, non_blocking=True)
        if settings.telephone_fraction:
            waveforms = telephone_band(waveforms, batch.bands.to(device, non_blocking=True))
        return faces, log_mel_batch(waveforms)

    def validate(self, model, corpus: PreparedCorpus, identities: list[int], device: torch.device) -> dict:
        return validate(model, corpus, identities, device)

    def objective(self) -> JointLoss:
        return JointLoss()
