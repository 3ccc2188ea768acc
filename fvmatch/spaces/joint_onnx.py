"""The joint space without torch: the checkpoint's face and voice graphs (fvmatch.models.onnx_export) run by
onnxruntime, with the same inputs and outputs as fvmatch.spaces.joint.JointSpace (its vectors within 1e-4 cosine of
torch's: tests/test_joint_onnx.py). Used where torch is absent and the graphs lie beside the checkpoint, written
from the same weights (their metadata names the checkpoint's model id)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from fvmatch.errors import ModelMismatch
from fvmatch.media.log_mel import log_mel
from fvmatch.models.checkpoint import ONNX_MODEL_ID_KEY, onnx_graph_paths
from fvmatch.models.config import JointModelConfig

FACE_BATCH = 32


def has_onnx_graphs(checkpoint_path: str | Path) -> bool:
    """Whether both graphs lie beside the checkpoint (their model id is checked when they are opened)."""
    return all(path.is_file() for path in onnx_graph_paths(checkpoint_path).values())


def expert_space(card: dict, name: str, space: Callable[[str], object] | None):
    """The pretrained space `name` an experts model reads, checked against the model id its card recorded."""
    if space is None:
        raise ValueError(f"the joint model reads the {name} space: give the joint space a way to load it")
    expert = space(name)
    trained_on = (card.get("experts") or {}).get(name)
    if trained_on != expert.model_id:
        raise ModelMismatch(name, f"the joint model's head was trained on {name} model {str(trained_on)[:16]}; the "
                                  f"installed one is {expert.model_id[:16]}")
    return expert


def area_resize(images: np.ndarray, side: int) -> np.ndarray:
    """(n, c, h, w) float32 -> (n, c, side, side): torch's `area` interpolation (adaptive average pooling: output cell
    i averages input rows floor(i h / side) to ceil((i + 1) h / side))."""
    def bins(size: int) -> np.ndarray:
        weights = np.zeros((side, size), np.float32)
        for i in range(side):
            start, stop = (i * size) // side, -((-(i + 1) * size) // side)
            weights[i, start:stop] = 1.0 / (stop - start)
        return weights

    return np.einsum("oh,nchw,pw->ncop", bins(images.shape[2]), images, bins(images.shape[3]),
                     optimize=True).astype(np.float32)


class OnnxJointSpace:
    """JointSpace's interface over onnxruntime sessions of the checkpoint's two graphs."""

    name = "joint"

    def __init__(self, card: dict, checkpoint_path: str | Path, space: Callable[[str], object] | None = None) -> None:
        import onnxruntime

        self.model_id = card["model_id"]
        self.dim = int(card["embedding_dim"])
        config = JointModelConfig.from_dict(card["config"])
        self.face_side = config.face_side
        self.sessions = {}
        for part, path in onnx_graph_paths(checkpoint_path).items():
            session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            exported_from = session.get_modelmeta().custom_metadata_map.get(ONNX_MODEL_ID_KEY)
            if exported_from != self.model_id:
                raise ModelMismatch(path, f"its ONNX graph was exported from model {str(exported_from)[:16]}, not "
                                          f"from {self.model_id[:16]} beside it: export it again (python -m "
                                          "fvmatch.models.onnx_export CHECKPOINT)")
            self.sessions[part] = session
        self.face_expert = expert_space(card, config.face_input, space) if config.face_input != "crop" else None
        self.voice_expert = (expert_space(card, config.voice_input, space) if config.voice_input != "log-mel"
                             else None)
        self.front_end = getattr(self.voice_expert, "front_end", "speech")  # as JointSpace: the speech it reads

    def prepare(self, image: np.ndarray, face) -> np.ndarray:
        if self.face_expert is not None:
            return self.face_expert.prepare(image, face)
        return face.pixels

    def embed(self, prepared: np.ndarray) -> np.ndarray:
        """Prepared faces (crops (n, 160, 160, 3) uint8, or the face expert's inputs) -> unit vectors (n, dim)."""
        vectors = []
        for start in range(0, len(prepared), FACE_BATCH):
            part = prepared[start : start + FACE_BATCH]
            if self.face_expert is not None:
                inputs = np.asarray(self.face_expert.embed(part), np.float32)
            else:
                crops = (np.asarray(part, np.float32).transpose(0, 3, 1, 2) - 127.5) / 128.0
                inputs = crops if crops.shape[-1] == self.face_side else area_resize(crops, self.face_side)
            vectors.append(self.sessions["face"].run(None, {"input": np.ascontiguousarray(inputs)})[0])
        return np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)

    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        if self.voice_expert is not None:
            inputs = np.asarray(self.voice_expert.embed_speech(speech), np.float32)[None]
        else:
            inputs = log_mel(speech)[None]
        return self.sessions["voice"].run(None, {"input": np.ascontiguousarray(inputs, np.float32)})[0][0]
