"""Age read from a face and from a voice, in three bands (ARCHITECTURE.md section 6; docs/sex-evidence.md "Age").

- **Face**: dlib's age network (CC0, Cydral Technology; models/weights/face_age.onnx, run by onnxruntime) on the chip
  the `dlib-face` space already cuts: that 150 px chip (padding 0.25) holds the network's 64 px chip (padding 0.2) as
  its centre 140 px, so no second detector or alignment runs. Its 81 outputs (P(age = 0..80)) summed per band give
  each band's probability; the expected age is shown beside. Read when the face is embedded and stored with the
  item's quality (`age`), since a gallery keeps vectors, not chips.
- **Voice**: a multinomial logistic head on the `ge2e-voice` vector, trained on labelled real speakers (Common Voice's
  self-reported decades; `benchmarks/attribute_age.py`), shipped in `reference/attributes.json` ("voice-age").

Each band reading's confusion P(read band | true band, true sex), measured on labelled real people the estimator
never saw, is stored beside the sex heads; fvmatch.evidence.attributes folds it into the face-voice likelihood ratio.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from fvmatch.paths import shipped_bytes

AGE_BANDS = ("under 30", "30-49", "50 and over")
BAND_EDGES = (30, 50)  # the first age of each band after the first
FACE_AGE_SHA256 = "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c"
FACE_AGE_ESTIMATOR = "dlib age network (CC0, Cydral) on the dlib-face chip"
_CHIP_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)  # the network's per-channel means (RGB)
_AGES = np.r_[0.25, np.arange(1, 81)].astype(np.float64)  # the age of each output class (dlib weights class 0 so)
_INNER = (5, 145)  # the 0.2-padded chip within the 150 px 0.25-padded one: 1.4 of its 1.5 face widths, centred


def _weights_dir():
    """models/weights as installed (fvmatch.models) or in the checkout."""
    from fvmatch.models.checkpoint import WEIGHTS_DIR

    return WEIGHTS_DIR


_SESSION_LOCK = threading.Lock()


def start_loading_face_age() -> None:
    """Open the face age network in a background thread, so that onnxruntime's start (about 50 ms) overlaps the face
    detection that runs before any chip is cut; `face_age_probabilities` waits for it. Nothing once it is open."""
    if not _opened_session.cache_info().currsize:
        # not a daemon: a command that fails at once (a bad file) would otherwise exit while onnxruntime builds its
        # session in this thread, and its C++ runtime aborts the process (exit -6, seen on a loaded machine); the
        # interpreter waits for it (some 50 ms) instead
        threading.Thread(target=_face_age_session).start()


def _face_age_session():
    with _SESSION_LOCK:  # one session, whichever thread asks first
        return _opened_session()


@lru_cache(maxsize=1)
def _opened_session():
    """The face age network's onnxruntime session on one thread (None where onnxruntime or the weights are absent)."""
    try:
        import onnxruntime
    except ImportError:
        return None
    path = _weights_dir() / "face_age.onnx"
    if not path.is_file():
        return None
    shipped_bytes(path, FACE_AGE_SHA256, "face age network")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    # no graph optimisation: it costs a cold query 25 ms to build and saves under 1 ms of the one face it reads
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def face_age_probabilities(chips: np.ndarray) -> np.ndarray | None:
    """P(age = 0..80) of each `dlib-face` chip (n, 150, 150, 3) uint8 -> (n, 81); None where the network is absent."""
    session = _face_age_session()
    if session is None:
        return None
    from PIL import Image

    low, high = _INNER
    inner = [np.asarray(Image.fromarray(np.ascontiguousarray(chip[low:high, low:high])).resize((64, 64), Image.BILINEAR))
             for chip in np.asarray(chips)]
    if not inner:
        return np.zeros((0, len(_AGES)), np.float32)
    batch = (np.stack(inner).astype(np.float32) - _CHIP_MEANS) / np.float32(256.0)
    return session.run(None, {"images": np.ascontiguousarray(batch.transpose(0, 3, 1, 2))})[0]


def face_age_qualities(chips: np.ndarray) -> list[dict | None]:
    """`face_age_quality` of each `dlib-face` chip (n, 150, 150, 3); None each where the network is absent."""
    probabilities = face_age_probabilities(chips) if len(chips) else None
    return [None] * len(chips) if probabilities is None else [face_age_quality(row) for row in probabilities]


def band_of_age(years: float) -> int:
    """The index in AGE_BANDS of an age in years."""
    return int(np.digitize(years, BAND_EDGES))


def face_age_quality(probabilities: np.ndarray) -> dict:
    """What a face's quality stores of its age (one row of face_age_probabilities): the expected age and each band's
    probability."""
    probabilities = np.asarray(probabilities, np.float64)
    bands = [probabilities[:BAND_EDGES[0]].sum(), probabilities[BAND_EDGES[0]:BAND_EDGES[1]].sum(),
             probabilities[BAND_EDGES[1]:].sum()]
    return {"years": round(float(probabilities @ _AGES), 1), "bands": [round(float(p), 4) for p in bands],
            "estimator": FACE_AGE_ESTIMATOR}


def voice_band_probabilities(head: dict, vectors: np.ndarray) -> np.ndarray:
    """The voice age head's band probabilities of one vector (3,) or of each row of (N, D) -> (N, 3)."""
    logits = np.asarray(vectors, np.float64) @ np.asarray(head["weights"], np.float64) + np.asarray(head["bias"])
    logits = logits - logits.max(axis=-1, keepdims=True)
    odds = np.exp(logits)
    return odds / odds.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class AgeReading:
    """The age band an item reads as: the band, each band's probability, the expected age (faces only), the
    estimator that read it."""

    band: str
    probabilities: tuple[float, ...]
    estimator: str
    years: float | None = None

    @property
    def probability(self) -> float:
        return self.probabilities[AGE_BANDS.index(self.band)]

    def to_dict(self) -> dict:
        found = {"band": self.band, "probability": round(self.probability, 4),
                 "bands": {band: round(p, 4) for band, p in zip(AGE_BANDS, self.probabilities)},
                 "estimator": self.estimator}
        if self.years is not None:
            found["years"] = round(self.years, 1)
        return found


def age_reading(probabilities, estimator: str, years: float | None = None) -> AgeReading:
    """The reading of band probabilities: the most probable band."""
    values = tuple(float(p) for p in probabilities)
    return AgeReading(AGE_BANDS[int(np.argmax(values))], values, estimator, years)


def face_age_reading(quality: dict | None) -> AgeReading | None:
    """A face's age reading from its stored quality (None where it was embedded without the age network)."""
    found = (quality or {}).get("age")
    if not isinstance(found, dict) or len(found.get("bands") or ()) != len(AGE_BANDS):
        return None
    return age_reading(found["bands"], found.get("estimator", FACE_AGE_ESTIMATOR), found.get("years"))
