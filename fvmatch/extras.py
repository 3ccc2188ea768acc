"""The training extra: torch and the packages built on it, installed with `pip install 'fvmatch[train]'`.

Analysis (enroll, identify, verify, audit, report, evaluate and calibrate) runs without them; training and data
preparation need them, and so does the joint space of a checkpoint that has no ONNX graphs beside it (the shipped one
has: fvmatch.spaces.joint_onnx runs them on onnxruntime). Whether they are installed is asked of the import system
without importing them (importing torch costs seconds).
"""
from __future__ import annotations

import importlib.util

from fvmatch.errors import FvmatchError

TRAIN_EXTRA = "pip install 'fvmatch[train]'"
# what the joint model imports as a torch model (fvmatch.spaces.joint)
JOINT_PACKAGES = ("torch",)


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


def joint_space_available(checkpoint=None) -> bool:
    """Whether the joint space of a checkpoint (the shipped one for None) can run here: torch installed, or the
    checkpoint's ONNX graphs beside it (their model id is checked when they are opened)."""
    if installed(*JOINT_PACKAGES):
        return True
    from fvmatch.models.checkpoint import DEFAULT_CHECKPOINT, onnx_graph_paths

    return all(path.is_file() for path in onnx_graph_paths(checkpoint or DEFAULT_CHECKPOINT).values())


def require_training_extra(what: str, packages: tuple[str, ...] = JOINT_PACKAGES) -> None:
    """Raise MissingTrainingExtra naming `what` ("fvmatch train") when a package is absent."""
    if not installed(*packages):
        raise MissingTrainingExtra(what)


def require_joint_space(what: str = "--space joint", checkpoint=None) -> None:
    """MissingTrainingExtra naming `what` where the joint space of the checkpoint (the shipped one for None) cannot
    run (`joint_space_available`)."""
    if not joint_space_available(checkpoint):
        raise MissingTrainingExtra(what)
