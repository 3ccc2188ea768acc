"""Face subnets: Inception-ResNet-v1 (facenet-pytorch) for the seed config, a small CNN for CPU work.

Both take uint8 RGB crops (batch, 3, 160, 160) standardised as facenet does, (x - 127.5) / 128.
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .config import JointModelConfig


def standardize_faces(faces: torch.Tensor) -> torch.Tensor:
    """uint8 (or 0-255 float) RGB crops -> facenet's input scale; the one place this happens, training and inference."""
    return (faces.float() - 127.5) / 128.0


class SmallFaceCNN(nn.Module):
    """Area-downsampling to `input_size`, stride-2 conv stages with BatchNorm+ReLU, global average pool, a linear
    layer to the subnet width."""

    def __init__(self, channels: tuple[int, ...], output_dim: int, input_size: int = 160) -> None:
        super().__init__()
        self.input_size = input_size
        stages: list[nn.Module] = []
        c_in = 3
        for c_out in channels:
            stages += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.project = nn.Linear(c_in, output_dim)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if faces.shape[-1] != self.input_size:
            faces = F.interpolate(faces, size=(self.input_size, self.input_size), mode="area")
        return self.project(self.stages(faces).mean(dim=(2, 3)))


def build_face_subnet(config: JointModelConfig) -> nn.Module:
    if config.face_subnet == "inception_resnet_v1":
        from facenet_pytorch import InceptionResnetV1

        # never pretrained=...: that downloads; local weights come through load_face_weights
        return InceptionResnetV1(classify=False)
    if config.face_subnet == "small_cnn":
        return SmallFaceCNN(config.face_channels, config.subnet_dim, config.face_input_size)
    raise ValueError(f"unknown face subnet {config.face_subnet!r}")


def load_face_weights(face_subnet: nn.Module, path: str | Path) -> str:
    """Load local pretrained face weights (e.g. facenet-pytorch's VGGFace2 file) into the face subnet.

    Accepts a .safetensors file or a PyTorch state dict, read with `weights_only=True` (PyTorch's restricted
    loader: tensors only, never arbitrary pickled objects). The classifier of the pretrained file ('logits.*')
    is dropped. Returns the file's sha256, for the model card. Raises ValueError with the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such face-weights file")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    from safetensors import SafetensorError

    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(path)
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, pickle.UnpicklingError, RuntimeError, EOFError, KeyError, ValueError, OSError) as error:
        # what safetensors and torch's restricted loader raise for a file that is not weights: a bad file, said once
        raise ValueError(f"{path}: not a readable weights file ({type(error).__name__}: {error})") from None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise ValueError(f"{path}: not a state dict of tensors")
    state = {key: value for key, value in state.items() if not key.startswith("logits.")}
    result = face_subnet.load_state_dict(state, strict=False)
    if result.missing_keys:
        raise ValueError(f"{path}: weights do not fit the face subnet (missing {len(result.missing_keys)} tensors, "
                         f"e.g. {result.missing_keys[0]})")
    return digest
