"""Write the pretrained weights that analysis runs in numpy as safetensors, once, from the packages that ship them.

Run from the repository root (needs the training extra: resemblyzer, silero-vad, facenet-pytorch and torch; an
analyst's install needs none of them):
    .venv/bin/python models/weights/convert_pretrained.py

- ge2e_voice.safetensors: Resemblyzer 0.1.4's GE2E speaker encoder (resemblyzer/pretrained.pt, Apache-2.0,
  Copyright 2019 Resemble.AI), the network's tensors only (its optimizer state and GE2E's loss scale dropped), read
  without unpickling anything but tensors (fvmatch.media.torch_weights). Its header names the source file's sha256,
  on which the ge2e-voice space's model id rests, so that galleries and calibrations made from pretrained.pt stay valid.
- silero_vad_16k.safetensors: silero-vad 6.2's 16 kHz network, as its JIT model (silero_vad/data/silero_vad.jit,
  MIT, Copyright (c) 2020-present Silero Team) holds it; the package's own silero_vad_16k.safetensors holds other
  weights (an older model) and gives other probabilities.
- mtcnn.safetensors: facenet-pytorch 2.5.3's MTCNN detector (facenet_pytorch/data/{pnet,rnet,onet}.pt, MIT, Copyright
  (c) 2019 Timothy Esler), each net's tensors under its name ("pnet.conv1.weight"...), read as ge2e's are; the
  header names each source file's sha256.
The bytes are the same on every run (the header's keys sorted; it holds no date).
"""
from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
from safetensors.numpy import save

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fvmatch.media.torch_weights import load_state_dict  # noqa: E402

OUT = Path(__file__).resolve().parent
GE2E_LOSS_ONLY = ("similarity_weight", "similarity_bias")
GE2E_NOTICE = ("Resemblyzer (https://github.com/resemble-ai/Resemblyzer), Copyright 2019 Resemble.AI. Licensed under "
               "the Apache License, Version 2.0 (http://www.apache.org/licenses/LICENSE-2.0); see ge2e_voice.LICENSE. "
               "Converted from resemblyzer/pretrained.pt: the same float32 values, stored as safetensors.")
SILERO_NOTICE = ("silero-vad (https://github.com/snakers4/silero-vad), MIT License, Copyright (c) 2020-present Silero "
                 "Team; see silero_vad_16k.LICENSE. Converted from silero_vad/data/silero_vad.jit (the 16 kHz model): "
                 "the same float32 values, stored as safetensors.")
MTCNN_NETS = ("pnet", "rnet", "onet")
MTCNN_NOTICE = ("facenet-pytorch (https://github.com/timesler/facenet-pytorch), MIT License, Copyright (c) 2019 "
                "Timothy Esler; see mtcnn.LICENSE. Converted from facenet_pytorch/data/{pnet,rnet,onet}.pt: the same "
                "float32 values, stored as safetensors, each net's tensors prefixed with its name.")


def write_safetensors(path: Path, tensors: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """safetensors' bytes with the header's keys sorted (the library writes its metadata in no fixed order), readable
    by every safetensors reader: the 8-byte header length, the JSON header padded with spaces to 8 bytes, the data."""
    blob = save(tensors, metadata=metadata)
    length = int.from_bytes(blob[:8], "little")
    header = json.dumps(json.loads(blob[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + blob[8 + length :])
    path.chmod(0o644)


def package_file(package: str, relative: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{package} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def ge2e_tensors() -> tuple[dict[str, np.ndarray], str]:
    """The GE2E network's tensors in Resemblyzer's pretrained.pt, and the file's sha256."""
    source = package_file("resemblyzer", "pretrained.pt")
    data = source.read_bytes()
    state = load_state_dict(io.BytesIO(data), str(source), entry="model_state")
    tensors = {name: np.ascontiguousarray(value) for name, value in state.items() if name not in GE2E_LOSS_ONLY}
    return tensors, hashlib.sha256(data).hexdigest()


def silero_tensors() -> tuple[dict[str, np.ndarray], str]:
    """The 16 kHz network's tensors in silero-vad's JIT model, named as its tinygrad_model.py names them, and the JIT
    file's sha256."""
    import torch

    source = package_file("silero_vad", "data/silero_vad.jit")
    model = torch.jit.load(str(source), map_location="cpu")._model  # the 16 kHz network
    names = {"stft.forward_basis_buffer": "stft_conv.weight", "decoder.decoder.2.weight": "final_conv.weight",
             "decoder.decoder.2.bias": "final_conv.bias",
             **{f"decoder.rnn.{name}": f"lstm_cell.{name}"
                for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")},
             **{f"encoder.{index}.reparam_conv.{kind}": f"conv{index + 1}.{kind}"
                for index in range(4) for kind in ("weight", "bias")}}
    state = model.state_dict()
    if set(state) != set(names):
        sys.exit(f"{source}: unexpected tensors {sorted(set(state) ^ set(names))}")
    tensors = {ours: np.ascontiguousarray(state[theirs].numpy(), dtype=np.float32) for theirs, ours in names.items()}
    return tensors, hashlib.sha256(source.read_bytes()).hexdigest()


def mtcnn_tensors() -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """MTCNN's three nets' tensors in facenet-pytorch's wheel, each prefixed with its net's name, and each source
    file's sha256 by net."""
    tensors, sources_sha256 = {}, {}
    for net in MTCNN_NETS:
        source = package_file("facenet_pytorch", f"data/{net}.pt")
        data = source.read_bytes()
        state = load_state_dict(io.BytesIO(data), str(source))
        tensors.update({f"{net}.{name}": np.ascontiguousarray(value) for name, value in state.items()})
        sources_sha256[net] = hashlib.sha256(data).hexdigest()
    return tensors, sources_sha256


def convert_ge2e() -> None:
    tensors, source_sha256 = ge2e_tensors()
    write_safetensors(OUT / "ge2e_voice.safetensors", tensors, metadata={
        "source": "resemblyzer 0.1.4, resemblyzer/pretrained.pt (model_state)", "source_sha256": source_sha256,
        "licence": GE2E_NOTICE})


def convert_silero() -> None:
    tensors, source_sha256 = silero_tensors()
    write_safetensors(OUT / "silero_vad_16k.safetensors", tensors, metadata={
        "source": "silero-vad 6.2, silero_vad/data/silero_vad.jit (_model)", "source_sha256": source_sha256,
        "licence": SILERO_NOTICE})


def convert_mtcnn() -> None:
    tensors, sources_sha256 = mtcnn_tensors()
    write_safetensors(OUT / "mtcnn.safetensors", tensors, metadata={
        "source": "facenet-pytorch 2.5.3, facenet_pytorch/data/{pnet,rnet,onet}.pt",
        **{f"source_sha256_{net}": sha256 for net, sha256 in sources_sha256.items()}, "licence": MTCNN_NOTICE})


if __name__ == "__main__":
    convert_ge2e()
    convert_silero()
    convert_mtcnn()
    for name in ("ge2e_voice.safetensors", "silero_vad_16k.safetensors", "mtcnn.safetensors"):
        path = OUT / name
        print(json.dumps({"file": str(path.relative_to(ROOT)), "bytes": path.stat().st_size,
                          "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}))
