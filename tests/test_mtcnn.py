"""fvmatch.media.mtcnn finds what facenet-pytorch's MTCNN finds, in numpy, without importing it, torchvision or torch.

Boxes and landmarks agree within 1e-3 pixels and probabilities within 1e-3 (on the 250 real photos of
shared/realmedia: 1.8e-4 px at most, identical face counts); the face counts are equal.
"""
from __future__ import annotations

import importlib.util
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fvmatch.media import mtcnn_nets
from fvmatch.media.mtcnn import MTCNN
from fvmatch.media.torch_weights import read_state_dict

ROOT = Path(__file__).resolve().parents[1]
REALMEDIA = ROOT.parent / "shared" / "realmedia"
# one face each, then two photos with two faces each (the second face small and partly turned)
REAL_PHOTOS = ["fr_barack_obama/obama1.jpg", "fr_joe_biden/biden.jpg", "vox1_Freida_Pinto/vgg_00000061.jpg",
               "fr_barack_obama/obama.jpg", "vox1_Harry_Treadaway/vgg_00000092.jpg"]
SEVERAL_FACES = {"fr_barack_obama/obama.jpg": 2, "vox1_Harry_Treadaway/vgg_00000092.jpg": 2}


@pytest.fixture(scope="module")
def ours() -> MTCNN:
    return MTCNN()


@pytest.fixture(scope="module")
def reference():
    pytest.importorskip("facenet_pytorch",
                        reason="the reference is facenet-pytorch's MTCNN (pip install 'fvmatch[train]')")
    from facenet_pytorch import MTCNN as FacenetMTCNN

    return FacenetMTCNN(image_size=160, margin=0, keep_all=True, post_process=False, device="cpu")


def real_photo(name: str) -> Path:
    path = REALMEDIA / "faces" / name
    if not REALMEDIA.is_dir():
        pytest.skip(f"real photos not available: {REALMEDIA} is absent (shared real media, not part of the repository)")
    if not path.is_file():
        pytest.skip(f"real photo {path} is absent from {REALMEDIA}")
    return path


def assert_same_detections(ours: MTCNN, reference, image: Image.Image) -> int:
    """Both detectors' boxes and landmarks agree within 1e-3 pixels, probabilities within 1e-3, in the same order;
    the face count."""
    boxes, probabilities, landmarks = ours.detect(image, landmarks=True)
    expected_boxes, expected_probabilities, expected_landmarks = reference.detect(image, landmarks=True)
    if expected_boxes is None:
        assert boxes is None and landmarks is None and list(probabilities) == [None]
        return 0
    # facenet hands back numpy object arrays (of float32 numbers)
    expected_boxes, expected_probabilities, expected_landmarks = (
        np.asarray(values, np.float32) for values in (expected_boxes, expected_probabilities, expected_landmarks))
    assert boxes.shape == expected_boxes.shape and landmarks.shape == (len(boxes), 5, 2)
    np.testing.assert_allclose(boxes, expected_boxes, rtol=0, atol=1e-3)
    np.testing.assert_allclose(probabilities, expected_probabilities, rtol=0, atol=1e-3)
    np.testing.assert_allclose(landmarks, expected_landmarks, rtol=0, atol=1e-3)
    return len(boxes)


def test_finds_facenets_face_in_grace_hopper(ours, reference, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB")
    assert assert_same_detections(ours, reference, image) == 1
    boxes, probabilities, landmarks = ours.detect(image, landmarks=True)
    assert probabilities[0] > 0.99
    x1, y1, x2, y2 = boxes[0]
    assert all(x1 < x < x2 and y1 < y < y2 for x, y in landmarks[0])  # eyes, nose and mouth inside the box


@pytest.mark.parametrize("name", REAL_PHOTOS)
def test_finds_facenets_faces_in_real_photos(ours, reference, name):
    image = Image.open(real_photo(name)).convert("RGB")
    assert assert_same_detections(ours, reference, image) == SEVERAL_FACES.get(name, 1)


def test_several_faces_come_largest_first(ours):
    image = Image.open(real_photo("fr_barack_obama/obama.jpg")).convert("RGB")
    boxes, _, _ = ours.detect(image, landmarks=True)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    assert len(boxes) == 2 and areas[0] > areas[1]


def test_a_flat_image_has_no_face(ours, reference):
    image = Image.new("RGB", (256, 256), (128, 140, 150))
    assert assert_same_detections(ours, reference, image) == 0
    assert ours.detect(image) == (None, [None])


def test_an_image_below_the_minimum_face_size_has_no_face(ours, grace_hopper):
    tiny = Image.open(grace_hopper).convert("RGB").resize((19, 22))
    assert ours.detect(tiny, landmarks=True) == (None, [None], None)


def test_a_uint8_array_gives_the_same_faces_as_its_image(ours, grace_hopper):
    image = Image.open(grace_hopper).convert("RGB")
    from_image, from_array = ours.detect(image, landmarks=True), ours.detect(np.asarray(image), landmarks=True)
    for expected, found in zip(from_image, from_array):
        np.testing.assert_array_equal(found, expected)


def test_detecting_a_face_imports_neither_torch_nor_facenet_pytorch(grace_hopper):
    probe = ("import sys\n"
             "from PIL import Image\n"
             "from fvmatch.media.mtcnn import MTCNN\n"
             f"boxes, probabilities, landmarks = MTCNN().detect(Image.open({str(grace_hopper)!r}).convert('RGB'), "
             "landmarks=True)\n"
             "print(len(boxes), sorted(name for name in ('torch', 'torchvision', 'facenet_pytorch')\n"
             "                         if name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "1 []"


def facenet_weights_file(net: str) -> Path:
    """facenet-pytorch's own weights of `net`, the source of the shipped mtcnn.safetensors (training extra)."""
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None:
        pytest.skip("facenet-pytorch is not installed (pip install 'fvmatch[train]'): its wheel is the weights' source")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / f"{net}.pt"


@pytest.mark.parametrize("net", ["pnet", "rnet", "onet"])
def test_shipped_weights_are_those_torch_loads_from_facenet(net):
    torch = pytest.importorskip("torch", reason="the reference is torch's own loader (pip install 'fvmatch[train]')")
    expected = torch.load(facenet_weights_file(net), map_location="cpu", weights_only=True)
    shipped = mtcnn_nets.load_weights()[net]
    assert list(read_state_dict(facenet_weights_file(net))) == list(expected)
    assert sorted(shipped) == sorted(expected)
    for name, tensor in expected.items():
        assert shipped[name].dtype == np.float32
        np.testing.assert_array_equal(shipped[name], tensor.numpy())


def test_conversion_writes_the_shipped_file_again(tmp_path, monkeypatch):
    facenet_weights_file("pnet")  # skips without facenet-pytorch, the source
    spec = importlib.util.spec_from_file_location("convert_pretrained", ROOT / "models/weights/convert_pretrained.py")
    convert = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(convert)
    monkeypatch.setattr(convert, "OUT", tmp_path)
    convert.convert_mtcnn()
    assert (tmp_path / "mtcnn.safetensors").read_bytes() == mtcnn_nets.WEIGHTS_FILE.read_bytes()
    assert "Timothy Esler" in (mtcnn_nets.WEIGHTS_FILE.parent / "mtcnn.LICENSE").read_text()


def test_changed_shipped_weights_are_refused(tmp_path):
    changed = tmp_path / "mtcnn.safetensors"
    data = bytearray(mtcnn_nets.WEIGHTS_FILE.read_bytes())
    data[-1] ^= 1  # one bit of the last weight
    changed.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="not the MTCNN weights fvmatch ships"):
        mtcnn_nets.load_weights(changed)


def test_a_weights_file_that_calls_anything_else_is_refused(tmp_path):
    # a legacy-format file whose state dict is a call of print: the unpickler refuses the global, nothing runs
    class Call:
        def __reduce__(self):
            return print, ("unpickled code ran",)

    tampered = tmp_path / "pnet.pt"
    with open(tampered, "wb") as file:
        for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, Call(), []):
            pickle.dump(header, file, protocol=2)
    with pytest.raises(pickle.UnpicklingError, match=r"\.print is not part of a state dict"):
        read_state_dict(tampered)
