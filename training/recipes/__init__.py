"""Training recipes: one method of the field each, sharing the data path, the trainer, checkpoints and evaluation.

A recipe says which model config it trains, how a batch of identities becomes the model's inputs, how the model is
validated, and its objective; `fvmatch train --recipe NAME` picks one. Every recipe's model is a joint space (faces
and voices into one L2-normalised space), so `embed`, `identify`, `verify`, `evaluate` and `calibrate` take it as
they take any checkpoint.

    wang2020   Wang et al., SIGIR 2020: face and voice subnets trained end to end on crops and log-mel (default)
    experts    frozen dlib-face and ge2e-voice vectors (computed once, cached), a small head per modality trained
               with the wang2020 objective: CPU minutes for thousands of identities
    fuse-after-align
               Peng et al. 2024: same-video pairs (no identity labels) aligned contrastively on the experts heads,
               then a pair encoder trained as a same/different classifier on hard negatives (verify and identify
               re-score with it)
    wen2021    Wen et al., CVPR 2021: a shared identity classifier (global) and an N-pair term (local) align the
               modalities; identities reweighted by difficulty, the hardest filtered out (config experts or small)
    xiong2019  Xiong et al. 2019: voice-anchored triplet loss, embeddings constrained to a sphere of radius alpha
               (config small or experts)

`get_recipe` gives a new instance each time: a recipe may keep what it computed for one run (wen2021 keeps the
identity weights its data() learned), and `recipe_card` adds what a recipe's `card()` says about its run.
"""
from __future__ import annotations

from typing import Protocol

import torch

from fvmatch.models.config import JointModelConfig

from ..data import PreparedCorpus
from ..losses import JointLoss


class Recipe(Protocol):
    name: str
    description: str
    default_config: str

    def check_config(self, config: JointModelConfig) -> None:
        """ValueError when the recipe cannot train this config."""

    def data(self, corpus: PreparedCorpus, config: JointModelConfig):
        """What the recipe's batches and validation read (computed once before training)."""

    def usable(self, data, identities: list[int]) -> list[int]:
        """The identities of a split that this data can draw a face and a voice of."""

    def batches(self, data, identities: list[int], settings, epoch: int, rank: int, world: int) -> torch.utils.data.Dataset:
        """One epoch's batches of distinct identities, a pure function of (seed, epoch)."""

    def inputs(self, batch, device: torch.device, settings) -> tuple[torch.Tensor, torch.Tensor]:
        """The model's (face input, voice input) for a batch, on the device."""

    def validate(self, model, data, identities: list[int], device: torch.device) -> dict:
        """Validation figures on held-out identities (verification_auc and vf_1to2_accuracy at least)."""

    def objective(self) -> JointLoss:
        """The loss, with `on_device(faces, voices, face_logits, voice_logits, labels, centers)`."""


from .experts import ExpertsRecipe  # noqa: E402 (the recipes import nothing of this module)
from .fuse_after_align import FuseAfterAlignRecipe  # noqa: E402
from .wang2020 import Wang2020Recipe  # noqa: E402
from .wen2021 import Wen2021Recipe  # noqa: E402
from .xiong2019 import Xiong2019Recipe  # noqa: E402

RECIPES: dict[str, Recipe] = {recipe.name: recipe for recipe in (Wang2020Recipe(), ExpertsRecipe(), FuseAfterAlignRecipe(),
                                                                  Wen2021Recipe(), Xiong2019Recipe())}


def get_recipe(name: str) -> Recipe:
    """A new instance of the named recipe (for one run); KeyError lists the known names."""
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known: {', '.join(sorted(RECIPES))}")
    return type(RECIPES[name])()


def recipe_card(recipe: Recipe) -> dict:
    """What the model card says about the recipe: its name, what it is, and its objective's settings."""
    from dataclasses import asdict

    card = getattr(recipe, "card", None)  # what a recipe says about its run (wen2021: its identity weighting)
    return {"name": recipe.name, "description": recipe.description, "objective": asdict(recipe.objective()),
            **(card() if card else {})}
