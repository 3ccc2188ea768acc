"""The embedder: the embedding spaces of one analysis, turning media files into unit vectors of each space.

This is the interface the rest of fvmatch uses (media in; one unit vector per space, quality figures and model
ids out). It holds the joint checkpoint (face-voice trials) and loads each space on first use: the joint model's
weights when a joint embedding is first asked for (its card is read and checked at once), the pretrained face and
voice spaces (face-face and voice-voice trials) likewise; `fvmatch.spaces` says which space scores which trial.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fvmatch.evidence.age import face_age_qualities, start_loading_face_age
from fvmatch.errors import FvmatchError, InvalidCheckpoint, ModelMismatch, TooLittleSpeech
from fvmatch.extras import JOINT_PACKAGES, installed, joint_space_available, require_joint_space
from fvmatch.media.audio import (MIN_SPEECH_SECONDS, SAMPLE_RATE, SpeechSummary, SpeechWindow, louder_for_speech,
                                 require_speech, speech_windows)
from fvmatch.media.image import FaceCrop, FaceDetector
from fvmatch.models.checkpoint import (DEFAULT_CHECKPOINT, Checkpoint, CheckpointError, load_checkpoint, read_card,
                                       read_model_card)
from fvmatch.quality.minimums import QualityMinimums
from fvmatch.spaces import (COMPOSITE_SPACES, CONDITIONED_SPACES, FACE_SPACE, JOINT, SPEECH_VOICE_SPACE,
                            TEMPLATE_SPACES, VOICE_SPACE, spaces_of)
from fvmatch.spaces.conditions import split

# a recording's windows of speech (WINDOW_SECONDS each: 2 minutes, both speech streams about 15 MB) held until its
# quality is known, so that a question is embedded only in the spaces its quality picks (Embedder.embed_voice)
DEFERRED_WINDOWS = 6


@dataclass
class Embedding:
    """One item embedded in one or more spaces: a unit vector and model id per space, its modality, source, quality."""

    vectors: dict[str, np.ndarray]
    modality: str  # "face" | "voice"
    source: str
    quality: dict = field(default_factory=dict)  # face: probability, box; voice: speech_seconds, duration_seconds, ...
    model_ids: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"modality": self.modality, "source": self.source, "quality": self.quality,
                "spaces": {space: {"model_id": self.model_ids[space], "dim": len(vector),
                                   "embedding": [round(float(v), 7) for v in vector]}
                           for space, vector in self.vectors.items()}}


@dataclass
class PreparedFace:
    """A detected face with each face space's input prepared from its image (the image itself is not kept)."""

    crop: FaceCrop
    inputs: dict[str, np.ndarray]
    faces_in_image: int
    age: dict | None = None  # fvmatch.evidence.age.face_age_quality, read off the dlib-face chip where one was cut

    def quality(self) -> dict:
        return {**self.crop.quality(), "faces_in_image": self.faces_in_image,
                **({"age": self.age} if self.age is not None else {})}


class Embedder:
    """The spaces of one analysis on one device: the joint checkpoint and the pretrained spaces, each on first use."""

    def __init__(self, checkpoint: Checkpoint | None, device: str = "cpu",
                 min_speech_seconds: float = MIN_SPEECH_SECONDS, checkpoint_path: Path | None = None,
                 card: dict | None = None, minimums: QualityMinimums = QualityMinimums()) -> None:
        """`checkpoint` loaded; or None, with the path of one and its checked `card`: it loads on first use."""
        if checkpoint is None and (checkpoint_path is None or card is None):
            raise ValueError("an Embedder without a loaded checkpoint needs the checkpoint's path and card")
        self._checkpoint = checkpoint
        self._card = checkpoint.card if checkpoint is not None else card
        self.device = device
        self.min_speech_seconds = min_speech_seconds
        self.minimums = minimums  # PoorQuality for an item under them (none by default)
        self.checkpoint_path = checkpoint_path
        self._spaces: dict[str, object] = {}
        self._detector: FaceDetector | None = None

    @classmethod
    def load(cls, path: str | Path | None = None, device: str = "cpu", load_weights: bool = False,
             **options) -> "Embedder":
        """Open a checkpoint (the shipped default when `path` is None): its card is read and checked now, its weights
        on first use, or now with `load_weights` where the joint space can run (without the training extra it is
        never loaded: fvmatch.extras); InvalidCheckpoint names a bad file."""
        path = Path(path) if path is not None else DEFAULT_CHECKPOINT
        try:
            card, _ = read_model_card(path)
        except CheckpointError as error:
            raise _invalid(path, error) from None
        embedder = cls(None, device=device, checkpoint_path=path, card=card, **options)
        if load_weights and joint_space_available(path):
            embedder.space(JOINT)
        return embedder

    @property
    def checkpoint(self) -> Checkpoint:
        """The joint checkpoint, its weights loaded and checked against the card on first use (InvalidCheckpoint)."""
        if self._checkpoint is None:
            try:
                checkpoint = load_checkpoint(self.checkpoint_path, device=self.device)
            except CheckpointError as error:
                raise _invalid(self.checkpoint_path, error) from None
            if checkpoint.card != self._card:
                raise InvalidCheckpoint(self.checkpoint_path, "the checkpoint changed after it was opened")
            self._checkpoint = checkpoint
        return self._checkpoint

    @property
    def model_id(self) -> str:
        """The joint checkpoint's model id (the model a gallery is pinned to)."""
        return self._card["model_id"]

    @property
    def model(self):
        return self.checkpoint.model

    @property
    def card(self) -> dict:
        return self._card

    @property
    def calibration(self) -> dict:
        """The calibration its scores are judged by: fvmatch's reference entries under the card's own
        (fvmatch.evidence.rules.effective_calibration)."""
        from fvmatch.evidence.rules import effective_calibration

        return effective_calibration(self._card)

    @property
    def embedding_dim(self) -> int:
        return int(self.card["embedding_dim"])

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = FaceDetector()
        return self._detector

    def space(self, name: str):
        """The space called `name`, loaded on first use."""
        if name not in self._spaces:
            if name == JOINT:
                self._spaces[name] = self._joint_space()
            elif name == FACE_SPACE:
                from fvmatch.spaces.dlib_face import DlibFaceSpace

                self._spaces[name] = DlibFaceSpace()
            elif name == VOICE_SPACE:
                from fvmatch.spaces.ge2e_voice import Ge2eVoiceSpace

                self._spaces[name] = Ge2eVoiceSpace()
            elif name == SPEECH_VOICE_SPACE:  # the same encoder (loaded once) on silero-vad's speech
                self._spaces[name] = self.space(VOICE_SPACE).reading_speech()
            elif name in COMPOSITE_SPACES:
                from fvmatch.spaces.conditions import CompositeVoiceSpace, ConditionTemplateSpace

                kind = ConditionTemplateSpace if name in TEMPLATE_SPACES else CompositeVoiceSpace
                self._spaces[name] = kind(name, [self.space(part) for part in COMPOSITE_SPACES[name]])
            elif name in CONDITIONED_SPACES or split(name)[0] == SPEECH_VOICE_SPACE:
                # a reference condition, or the condition's own part of a fused one ("ge2e-voice/speech@telephone")
                from fvmatch.spaces.conditions import ConditionedVoiceSpace

                self._spaces[name] = ConditionedVoiceSpace(self.space(SPEECH_VOICE_SPACE), split(name)[1], name)
            else:
                raise KeyError(name)
        return self._spaces[name]

    def _joint_space(self):
        """The checkpoint's joint space: its torch model where torch is installed, else its ONNX graphs beside it
        on onnxruntime; else MissingTrainingExtra (one line, exit 2)."""
        if installed(*JOINT_PACKAGES):
            from fvmatch.spaces.joint import JointSpace

            return JointSpace(self.checkpoint, self.device, self.space)
        require_joint_space("--space joint", self.checkpoint_path)
        from fvmatch.spaces.joint_onnx import OnnxJointSpace

        return OnnxJointSpace(self._card, self.checkpoint_path, self.space)

    def space_info(self, name: str) -> dict:
        """{"model_id", "dim"} of a space (loads it)."""
        space = self.space(name)
        return {"model_id": space.model_id, "dim": int(space.dim)}

    # ----- faces ------------------------------------------------------------------------------------------------
    def prepare_face(self, path: str | Path, spaces: Sequence[str], all_faces: bool = False,
                     read_age: bool = True) -> list[PreparedFace]:
        """Detect the largest face of an image (every face with `all_faces`) and prepare each space's input; with
        `read_age`, its age too where the dlib-face chip is cut (a face-face search needs none: it costs a cold query
        onnxruntime's start, about 60 ms).

        NoFaceFound/UnreadableMedia on failure.
        """
        if read_age and FACE_SPACE in spaces:
            start_loading_face_age()  # onnxruntime's start overlaps the detection
        image, found = self.detector.image_and_faces(path)
        chosen = found if all_faces else found[:1]
        for crop in chosen:
            self.minimums.check(path, crop.quality())
        prepared = [PreparedFace(crop, {name: self.space(name).prepare(image, crop) for name in spaces}, len(found))
                    for crop in chosen]
        if read_age and FACE_SPACE in spaces and prepared:  # read off the chip the face space cut: no second detector
            for face, age in zip(prepared, face_age_qualities(np.stack([face.inputs[FACE_SPACE] for face in prepared]))):
                face.age = age
        return prepared

    def embed_prepared_faces(self, faces: Sequence[PreparedFace], spaces: Sequence[str]) -> list[dict[str, np.ndarray]]:
        """{space: unit vector} for each prepared face, every space's faces in one batch."""
        vectors = [{} for _ in faces]
        for name in spaces:
            if faces:
                for row, vector in zip(vectors, self.space(name).embed(np.stack([face.inputs[name] for face in faces]))):
                    row[name] = vector
        return vectors

    def embed_face(self, path: str | Path, all_faces: bool = False, spaces: Sequence[str] | None = None,
                   read_age: bool = True) -> list[Embedding]:
        """Embed the largest face of an image (every face with `all_faces`) in `spaces` (default: every face space);
        `read_age`: prepare_face's."""
        spaces = list(spaces) if spaces is not None else spaces_of("face")
        prepared = self.prepare_face(path, spaces, all_faces, read_age)
        return [self.face_embedding(path, face, vectors, spaces)
                for face, vectors in zip(prepared, self.embed_prepared_faces(prepared, spaces))]

    def face_embedding(self, path: str | Path, face: PreparedFace, vectors: dict[str, np.ndarray],
                       spaces: Sequence[str]) -> Embedding:
        return Embedding(vectors=vectors, modality="face", source=str(path), quality=face.quality(),
                         model_ids={name: self.space(name).model_id for name in spaces})

    # ----- voices -----------------------------------------------------------------------------------------------
    def embed_voice(self, path: str | Path, spaces: Sequence[str] | None = None,
                    pick: Callable[[dict], Sequence[str]] | None = None, audio_track: int | None = None) -> Embedding:
        """Embed a recording: windows of its speech, each embedded, averaged by seconds of speech, renormalised.

        The recording is streamed (an hour-long file is never held whole). `pick`, given the recording's measured
        quality, names the spaces of `spaces` it needs (a question's quality chooses the references it is compared
        with, and so the speech its vector is read from: fvmatch.analysis.matching.question_spaces): the windows wait for
        the quality and only those spaces are embedded, unless the recording holds more than DEFERRED_WINDOWS
        windows of speech, whose spaces are then all embedded as they come (memory stays bounded). A recording in
        which silero-vad finds too little speech and that is quieter than -30 dBFS is read again, silero hearing it
        raised to that level (fvmatch.media.audio.louder_for_speech; its quality says so: `speech_found_louder_db`).
        TooLittleSpeech when it holds less than `min_speech_seconds` even so; UnreadableMedia for a bad file.
        `audio_track` (from 1): a container's track to read (default: the one with the most speech).
        """
        summary = SpeechSummary()
        try:
            return self._voice_embedding(path, summary, speech_windows(path, summary, audio_track), spaces, pick)
        except TooLittleSpeech:
            louder = louder_for_speech(summary)  # a quiet recording: its speech looked for again, louder
            if louder is None:
                raise
        summary = SpeechSummary(louder_db=louder)
        return self._voice_embedding(path, summary, speech_windows(path, summary, audio_track), spaces, pick)

    def embed_voices(self, paths: Sequence[str | Path], spaces: Sequence[str] | None = None,
                     pick: Callable[[dict], Sequence[str]] | None = None) -> list[Embedding | FvmatchError]:
        """`embed_voice` of many recordings, in their order, an error in place of each that fails."""
        results: list[Embedding | FvmatchError] = []
        for path in paths:
            try:
                results.append(self.embed_voice(path, spaces, pick))
            except FvmatchError as error:
                results.append(error)
        return results

    def _voice_embedding(self, path: str | Path, summary: SpeechSummary, windows: Iterable[SpeechWindow],
                         spaces: Sequence[str] | None, pick: Callable[[dict], Sequence[str]] | None = None) -> Embedding:
        spaces = list(spaces) if spaces is not None else spaces_of("voice")

        def parts(names: Sequence[str]) -> list[str]:  # a composite space's vector is made of its parts' vectors
            return list(dict.fromkeys(part for name in names for part in COMPOSITE_SPACES.get(name, (name,))))

        embedded = parts(spaces)  # the spaces whose encoders run, window by window
        totals = {name: np.zeros(self.space(name).dim, dtype=np.float64) for name in embedded}

        def add(window: SpeechWindow, names: Sequence[str]) -> None:
            for name in names:  # each space its own speech of the window (SpeechWindow.speech_for), by its length
                speech = window.speech_for(self.space(name))
                if len(speech):
                    totals[name] += len(speech) / SAMPLE_RATE * self.space(name).embed_speech(speech)

        held: list[SpeechWindow] = []  # windows waiting for the recording's quality (`pick`)
        count = 0
        for window in windows:  # (a generator fills in `summary` as it goes)
            count += 1
            if pick is None:
                add(window, embedded)
                continue
            held.append(window)
            if len(held) > DEFERRED_WINDOWS:  # a long recording: every space, window by window
                for waiting in held:
                    add(waiting, embedded)
                held, pick = [], None
        require_speech(path, summary, self.min_speech_seconds)
        quality = {**summary.quality(), "windows": count}
        self.minimums.check(path, quality)
        if pick is not None:
            wanted = set(pick(quality))
            spaces = [name for name in spaces if name in wanted]
            embedded = parts(spaces)
            for window in held:
                add(window, embedded)
        vectors = {name: (totals[name] / np.linalg.norm(totals[name])).astype(np.float32) for name in embedded}
        vectors = {name: self.space(name).combine([vectors[part] for part in COMPOSITE_SPACES[name]])
                   if name in COMPOSITE_SPACES else vectors[name] for name in spaces}
        return Embedding(vectors=vectors, modality="voice", source=str(path),
                         model_ids={name: self.space(name).model_id for name in spaces}, quality=quality)


def _invalid(path: Path, error: CheckpointError) -> InvalidCheckpoint:
    return InvalidCheckpoint(path, str(error).removeprefix(f"{path}: "))


def embedder_for_gallery(gallery, model_path: str | Path | None = None, device: str = "cpu", **options) -> Embedder:
    """The model to use with a gallery: `model_path` if given, else the one the gallery was built with.

    The gallery's pinned model is looked for at the path it recorded, then as the shipped default. A model
    other than the pinned one is refused (ModelMismatch naming both).
    """
    if model_path is None:
        for candidate in (gallery.model_path, DEFAULT_CHECKPOINT):
            if candidate and Path(candidate).is_file():
                try:
                    card = read_card(candidate)
                except CheckpointError:
                    continue
                if card["model_id"] == gallery.model_id:
                    model_path = candidate
                    break
        if model_path is None:
            raise ModelMismatch(gallery.directory, f"the gallery's model {gallery.model_id[:16]} is neither at "
                                f"{gallery.model_path or '(no recorded path)'} nor the shipped default; give it with --model")
    embedder = Embedder.load(model_path, device=device, **options)
    gallery.check_model(embedder.model_id)
    gallery.space_models = lambda name: embedder.space(name).model_id  # loads a space only when asked
    return embedder


_default_embedder: Embedder | None = None


def load_model(path: str | Path | None = None, device: str = "cpu") -> Embedder:
    """Load a checkpoint as an Embedder: `path`, else the shipped default."""
    return Embedder.load(path, device=device)


def _shared_default() -> Embedder:
    global _default_embedder
    if _default_embedder is None:
        _default_embedder = load_model()
    return _default_embedder


def embed_face(path: str | Path) -> Embedding:
    """The largest face in an image, embedded in every face space with the default model."""
    return _shared_default().embed_face(path)[0]


def embed_voice(path: str | Path) -> Embedding:
    """A recording's speech, embedded in every voice space with the default model."""
    return _shared_default().embed_voice(path)
