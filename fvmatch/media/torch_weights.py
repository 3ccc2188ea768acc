"""Tensors of a state dict that torch saved in its legacy format, read without torch, as numpy arrays.

facenet-pytorch ships its MTCNN weights (data/{p,r,o}net.pt) in this format, and Resemblyzer its GE2E checkpoint
(pretrained.pt: a dict of the step, the model's state dict and the optimizer's); models/weights/convert_pretrained.py
reads them here, without torch, to write the safetensors files that face detection and the voice space load. The
unpickler accepts dicts of float32 tensors and plain values and nothing else: a tampered file cannot make it call
anything.
"""
from __future__ import annotations

import collections
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

# torch's legacy serialisation, the format of facenet's files: pickles of the magic number, the protocol version,
# the system info, the state dict (whose tensors name their storage by key) and the storage keys; then each storage
# as an int64 element count and its raw values
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
TORCH_LEGACY_PROTOCOL = 1001
FLOAT32 = np.dtype("<f4")


@dataclass(frozen=True)
class _TensorRef:
    """A tensor of the state dict as pickled: its storage's key, offset, shape and strides (in elements)."""

    storage: str
    offset: int
    shape: tuple
    strides: tuple


def _tensor_ref(storage: str, offset: int, shape: tuple, strides: tuple, *_grad_and_hooks) -> _TensorRef:
    return _TensorRef(storage, offset, tuple(shape), tuple(strides))


class _StateDictUnpickler(pickle.Unpickler):
    """Unpickles a state dict of float32 tensors and nothing else: every other global is refused, so a tampered
    weights file cannot make the unpickler call anything."""

    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor_v2"): _tensor_ref,
               ("torch", "FloatStorage"): FLOAT32}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"{module}.{name} is not part of a state dict of float32 tensors")
        return self.ALLOWED[(module, name)]

    def persistent_load(self, pid):
        # a storage: ("storage", its type, key, location, element count, view); views are not used by state dicts
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage" and pid[1] is FLOAT32
                and isinstance(pid[2], str) and pid[5] is None):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}: only whole float32 storages")
        return pid[2]


def _unpickle(file: BinaryIO):
    return _StateDictUnpickler(file).load()


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a state dict that torch saved in its legacy format, by name, as numpy arrays."""
    with open(path, "rb") as file:
        return load_state_dict(file, str(path))


def load_state_dict(file: BinaryIO, name: str, entry: str | None = None) -> dict[str, np.ndarray]:
    """The float32 tensors of a state dict in torch's legacy format read from `file` (`name`: the file, for messages),
    by name, as numpy arrays; `entry`: the key of the state dict inside a pickled dict (a training checkpoint's
    "model_state"), whose other entries are read past and dropped."""
    magic, protocol, system = _unpickle(file), _unpickle(file), _unpickle(file)
    if (magic != TORCH_LEGACY_MAGIC or protocol != TORCH_LEGACY_PROTOCOL or not isinstance(system, dict)
            or not system.get("little_endian")):
        raise ValueError(f"{name}: not a little-endian state dict in torch's legacy format")
    pickled, keys = _unpickle(file), _unpickle(file)
    tensors = pickled.get(entry) if entry is not None and isinstance(pickled, dict) else pickled
    if not isinstance(tensors, dict):
        raise ValueError(f"{name}: no state dict{f' under {entry!r}' if entry else ''}")
    storages = {key: _read_storage(file, name) for key in keys}
    return {key: _tensor(ref, storages, name) for key, ref in tensors.items()}


def _read_storage(file: BinaryIO, path: str) -> np.ndarray:
    header = file.read(8)  # the element count
    count = int(np.frombuffer(header, "<i8")[0]) if len(header) == 8 else -1
    data = file.read(FLOAT32.itemsize * count) if count >= 0 else b""
    if count < 0 or len(data) != FLOAT32.itemsize * count:
        raise ValueError(f"{path}: truncated storage")
    return np.frombuffer(data, FLOAT32)


def _tensor(ref: _TensorRef, storages: dict[str, np.ndarray], path: str) -> np.ndarray:
    """The tensor `ref` describes, as a new array, once checked to lie wholly inside its storage (facenet's tensors
    are laid out column-major, as converted from Matlab: any strides are read)."""
    if not (isinstance(ref, _TensorRef) and ref.storage in storages and _lies_inside(ref, len(storages[ref.storage]))):
        raise ValueError(f"{path}: a tensor that does not lie inside its storage")
    strides = tuple(stride * FLOAT32.itemsize for stride in ref.strides)
    view = np.lib.stride_tricks.as_strided(storages[ref.storage][ref.offset:], ref.shape, strides, writeable=False)
    return view.astype(np.float32)


def _lies_inside(ref: _TensorRef, storage_size: int) -> bool:
    numbers = (ref.offset, *ref.shape, *ref.strides)
    if len(ref.shape) != len(ref.strides) or not all(isinstance(number, int) and number >= 0 for number in numbers):
        return False
    last = ref.offset + sum((length - 1) * stride for length, stride in zip(ref.shape, ref.strides))
    return min(ref.shape, default=1) >= 1 and last < storage_size
