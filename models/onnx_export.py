"""The joint checkpoint as two ONNX graphs, face and voice, that onnxruntime runs without torch (the analyst's
install: fvmatch.spaces.joint_onnx).

    .venv/bin/python -m fvmatch.models.onnx_export CHECKPOINT     (needs the training extra: torch and onnx)

writes `<stem>.face.onnx` and `<stem>.voice.onnx` beside the checkpoint (`train` does so after every checkpoint it
saves). Each graph's metadata names the checkpoint's model id (`fvmatch_model_id`): graphs of another model are
refused where they are read. What each graph takes:

- face: a model on crops takes the crops standardised ((pixel - 127.5) / 128) and already area-resized to the
  subnet's input size, float32 (n, 3, S, S): the area resize (adaptive average pooling at a ratio that is not whole,
  160 -> 64) has no ONNX operator, so the reader does it (the same bins); an experts model takes its face space's
  unit vectors (n, d).
- voice: the normalised 64-band log-mel (1, 64, frames), or the voice space's unit vector (1, d).
Both give unit vectors in the joint space (n, embedding_dim). A pair encoder (`fusion_layers`) is not exported.
"""
from __future__ import annotations

import argparse
import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import ONNX_MODEL_ID_KEY, Checkpoint, load_checkpoint, onnx_graph_paths

OPSET = 17


class _FaceGraph(nn.Module):
    """The model's face branch from its graph input (module docstring) to the joint space."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        if self.model.config.experts:
            return self.model.embed_faces(faces)
        # standardised and resized already: the subnet's own resize is skipped at its input size
        return F.normalize(self.model.shared(self.model.face_norm(self.model.face(faces))), dim=1)


class _VoiceGraph(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, voice: torch.Tensor) -> torch.Tensor:
        return self.model.embed_voices(voice)


def export_onnx(checkpoint: Checkpoint, path: str | Path) -> dict[str, Path]:
    """Write the checkpoint's face and voice graphs beside `path` (its file), each named by its model id; return them."""
    import onnx

    model, config = checkpoint.model.eval(), checkpoint.model.config
    if config.experts:
        face_example = torch.zeros(2, config.face_channels[0])
        voice_example, voice_axes = torch.zeros(1, config.voice_channels[0]), {0: "batch"}
    else:
        face_example = torch.zeros(2, 3, config.face_side, config.face_side)
        voice_example, voice_axes = torch.zeros(1, 64, 200), {0: "batch", 2: "frames"}
    written = {}
    for part, graph, example, axes in (("face", _FaceGraph(model), face_example, {0: "batch"}),
                                       ("voice", _VoiceGraph(model), voice_example, voice_axes)):
        buffer = io.BytesIO()
        with warnings.catch_warnings():  # the tracer's notes on shape checks the graphs' fixed input sizes settle;
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the legacy exporter on purpose: the
            warnings.simplefilter("ignore", DeprecationWarning)  # dynamo one needs onnxscript besides onnx
            torch.onnx.export(graph.eval(), (example,), buffer, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": axes, "output": {0: "batch"}}, dynamo=False,
                              opset_version=OPSET)
        proto = onnx.load_from_string(buffer.getvalue())
        onnx.helper.set_model_props(proto, {ONNX_MODEL_ID_KEY: checkpoint.model_id, "fvmatch_part": part})
        target = onnx_graph_paths(path)[part]
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(proto.SerializeToString())
        temporary.replace(target)  # never half a graph where a crash interrupts
        written[part] = target
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Write a joint checkpoint's ONNX graphs beside it.")
    parser.add_argument("checkpoint", type=Path)
    args = parser.parse_args()
    for part, target in export_onnx(load_checkpoint(args.checkpoint), args.checkpoint).items():
        print(f"{part}: {target}")


if __name__ == "__main__":
    main()
