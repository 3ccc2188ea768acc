"""Checkpoints: one safetensors file holding the weights and, in its header, the JSON model card.

The model id is the sha256 of the weights alone (canonical safetensors bytes without metadata), so a
calibration written into the card later does not change which model it is, and a card that does not
belong to its weights is detected. Nothing is ever unpickled. Reading and checking a card imports no torch
(`read_model_card`): a command that never uses the joint model does not pay for loading it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .config import JointModelConfig

if TYPE_CHECKING:
    import torch

    from .joint import JointModel

CARD_KEY = "fvmatch_model_card"
CARD_FORMAT = "fvmatch-model-card/1"
CARD_FIELDS = ("format", "model_id", "config", "embedding_dim", "training_data", "metrics", "calibration", "created")
WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "default.safetensors"


ONNX_PARTS = ("face", "voice")  # the joint model as two graphs onnxruntime runs without torch (models/onnx_export.py)
ONNX_MODEL_ID_KEY = "fvmatch_model_id"  # the metadata entry naming the checkpoint a graph was exported from


def onnx_graph_paths(path: str | Path) -> dict[str, Path]:
    """Where a checkpoint's ONNX graphs lie: beside it, `<stem>.face.onnx` and `<stem>.voice.onnx`."""
    path = Path(path)
    return {part: path.with_name(f"{path.stem}.{part}.onnx") for part in ONNX_PARTS}


class CheckpointError(ValueError):
    """The file is not a usable fvmatch checkpoint; the message says why."""


@dataclass
class Checkpoint:
    model: JointModel
    card: dict

    @property
    def model_id(self) -> str:
        return self.card["model_id"]


def weights_sha256(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the weights in canonical safetensors form (no metadata): the model id. The state may be numpy arrays
    (read without torch: the same bytes, so the same id)."""
    if _is_numpy(state):
        from safetensors.numpy import save
    else:
        from safetensors.torch import save

        state = {key: value.contiguous() for key, value in state.items()}
    return hashlib.sha256(save(state)).hexdigest()


def _is_numpy(state: dict) -> bool:
    """Whether a state dict holds numpy arrays (a calibrated copy written without torch) rather than tensors."""
    import numpy as np

    return all(isinstance(value, np.ndarray) for value in state.values())


def make_card(config: JointModelConfig, state: dict[str, torch.Tensor], training_data: str,
              metrics: dict | None = None, calibration: dict | None = None, **extra) -> dict:
    """A complete model card for these weights."""
    return {
        "format": CARD_FORMAT,
        "model_id": weights_sha256(state),
        "config": config.to_dict(),
        "embedding_dim": config.embedding_dim,
        "training_data": training_data,
        "metrics": metrics or {},
        "calibration": calibration,  # None until `fvmatch calibrate` fills it
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def save_checkpoint(model: JointModel, path: str | Path, training_data: str, metrics: dict | None = None,
                    calibration: dict | None = None, **extra) -> dict:
    """Write weights + card to `path` (through a temporary file and a rename); return the card."""
    path = Path(path)
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    card = make_card(model.config, state, training_data, metrics, calibration, **extra)
    write_checkpoint(state, card, path)
    return card


def write_checkpoint(state: dict[str, torch.Tensor], card: dict, path: Path) -> None:
    """Write weights and card atomically: a crash leaves the old file or the new one, never half of one; torch
    tensors or numpy arrays."""
    if _is_numpy(state):
        from safetensors.numpy import save_file
    else:
        from safetensors.torch import save_file

    temporary = path.with_name(path.name + ".tmp")
    save_file(state, temporary, metadata={CARD_KEY: json.dumps(card, sort_keys=True)})
    temporary.replace(path)


def read_card(path: str | Path) -> dict:
    """The model card of a checkpoint, without loading the weights; CheckpointError if it has none or a bad one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(path, framework="numpy") as handle:  # the header only: no tensor is read, no torch imported
            metadata = handle.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: not a safetensors checkpoint ({type(error).__name__})") from None
    if CARD_KEY not in metadata:
        raise CheckpointError(f"{path}: safetensors file without an fvmatch model card")
    try:
        card = json.loads(metadata[CARD_KEY])
    except json.JSONDecodeError:
        raise CheckpointError(f"{path}: model card is not valid JSON") from None
    except RecursionError:
        raise CheckpointError(f"{path}: model card is nested too deeply to be one") from None
    missing = [name for name in CARD_FIELDS if name not in card] if isinstance(card, dict) else list(CARD_FIELDS)
    if missing:
        raise CheckpointError(f"{path}: model card lacks {', '.join(missing)}")
    if card["format"] != CARD_FORMAT:
        raise CheckpointError(f"{path}: model card format {card['format']!r}, expected {CARD_FORMAT!r}")
    return card


def read_model_card(path: str | Path) -> tuple[dict, JointModelConfig]:
    """A checkpoint's card and the model config it describes, both checked, without reading the weights."""
    card = read_card(path)
    try:
        config = JointModelConfig.from_dict(card["config"])
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise CheckpointError(f"{path}: model card describes no buildable model ({_one_line(error)})") from None
    if card["embedding_dim"] != config.embedding_dim:
        raise CheckpointError(f"{path}: model card's embedding_dim {card['embedding_dim']!r} differs from its "
                              f"config's {config.embedding_dim!r}")
    return card, config


def load_checkpoint(path: str | Path | None = None, device: str = "cpu") -> Checkpoint:
    """Load and validate a checkpoint (the shipped default when `path` is None); the model is in eval mode."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .joint import build_model

    path = Path(path) if path is not None else DEFAULT_CHECKPOINT
    card, config = read_model_card(path)
    try:
        state = load_file(path)
    except (SafetensorError, OSError) as error:
        raise CheckpointError(f"{path}: weights cannot be read ({type(error).__name__})") from None
    if weights_sha256(state) != card["model_id"]:
        raise CheckpointError(f"{path}: weights do not match the model card's model id (altered or corrupt)")
    # the card is not covered by the model id: a few bytes of JSON may describe any size of model, so the model
    # is laid out without memory (meta device) and takes the file's tensors as they are (assign), never allocating
    # more than the file holds; every conv stage has weights, which bounds the layers a card may ask for
    if len(config.face_channels) + len(config.voice_channels) > len(state) + 2:
        raise CheckpointError(f"{path}: model card describes more layers than the file holds tensors ({len(state)})")
    try:
        with torch.device("meta"):
            model = build_model(config)
    except (ValueError, TypeError, KeyError, AttributeError, RuntimeError) as error:
        raise CheckpointError(f"{path}: model card describes no buildable model ({_one_line(error)})") from None
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit the {config.name} model ({_one_line(error)})") from None
    if any(tensor.is_meta for tensor in [*model.parameters(), *model.buffers()]):
        raise CheckpointError(f"{path}: weights do not fit the {config.name} model (tensors missing)")
    return Checkpoint(model=model.to(device).eval(), card=card)


def _one_line(error: Exception, limit: int = 200) -> str:
    """The informative first line of a library's (often multi-line) error message, shortened."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
