"""The xiong2019 recipe: Xiong et al. 2019's voice-anchored triplet loss in an L2-norm constrained space
(training/losses_xiong2019.py), on either kind of model: end to end on media (config small or wang2020, the
wang2020 recipe's batches and validation) or a head on frozen pretrained spaces (config experts, the experts
recipe's). The paper trains its CNNs end to end, so `small` is the default.
"""
from __future__ import annotations

import torch

from fvmatch.models.config import JointModelConfig

from ..data import PreparedCorpus
from ..losses_xiong2019 import Xiong2019Loss
from .experts import ExpertBatch, ExpertData, ExpertsRecipe
from .wang2020 import Wang2020Recipe


class EitherInputRecipe:
    """What a recipe needs beside its objective, for both kinds of model: media configs go through the wang2020
    recipe's data path, pretrained-space configs through the experts recipe's."""

    media, experts = Wang2020Recipe(), ExpertsRecipe()

    def _path(self, data) -> Wang2020Recipe | ExpertsRecipe:
        return self.experts if isinstance(data, ExpertData) else self.media

    def check_config(self, config: JointModelConfig) -> None:
        (self.experts if config.experts else self.media).check_config(config)

    def data(self, corpus: PreparedCorpus, config: JointModelConfig) -> PreparedCorpus | ExpertData:
        return (self.experts if config.experts else self.media).data(corpus, config)

    def usable(self, data, identities: list[int]) -> list[int]:
        return self._path(data).usable(data, identities)

    def batches(self, data, identities: list[int], settings, epoch: int, rank: int, world: int):
        return self._path(data).batches(data, identities, settings, epoch, rank, world)

    def inputs(self, batch, device: torch.device, settings) -> tuple[torch.Tensor, torch.Tensor]:
        path = self.experts if isinstance(batch, ExpertBatch) else self.media
        return path.inputs(batch, device, settings)

    def validate(self, model, data, identities: list[int], device: torch.device) -> dict:
        return self._path(data).validate(model, data, identities, device)


class Xiong2019Recipe(EitherInputRecipe):
    name = "xiong2019"
    description = ("Xiong et al. 2019: voice-anchored triplet loss (in-batch negative faces) with every embedding "
                   "constrained to a sphere of radius alpha")
    default_config = "small"

    def objective(self) -> Xiong2019Loss:
        return Xiong2019Loss()
