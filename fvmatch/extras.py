"""The training extra: torch and the packages built on it, installed with `pip install 'fvmatch[train]'`.

Analysis (enroll, identify, verify, audit, report, evaluate and calibrate in the pretrained spaces) runs without them;
training, data preparation and the joint space (a torch model) need them. Whether they are installed is asked of the
import system without importing them (importing torch costs seconds).
"""
from __future__ import annotations

import importlib.util

from fvmatch.errors import FvmatchError

TRAIN_EXTRA = "pip install 'fvmatch[train]'"
# what the joint model and its log-mel front end import (fvmatch.spaces.joint, fvmatch.media.audio.log_mel)
JOINT_PACKAGES = ("torch", "torchaudio")


class MissingTrainingExtra(FvmatchError):
    """A command or space that runs on torch, asked for in an install without the training extra."""

    def __init__(self, what: str) -> None:
        super().__init__(what, f"needs the training extra: {TRAIN_EXTRA}")
        self.args = (f"{what} needs the training extra: {TRAIN_EXTRA}",)

    def __str__(self) -> str:
        return self.args[0]


def installed(*packages: str) -> bool:
    """Whether every package can be imported (found, not imported)."""
    return all(importlib.util.find_spec(package) is not None for package in packages)


def joint_space_available() -> bool:
    """Whether the joint space's model can run here (torch and torchaudio installed)."""
    return installed(*JOINT_PACKAGES)


def require_training_extra(what: str, packages: tuple[str, ...] = JOINT_PACKAGES) -> None:
    """Raise MissingTrainingExtra naming `what` ("--space joint", "fvmatch train") when a package is absent."""
    if not installed(*packages):
        raise MissingTrainingExtra(what)
