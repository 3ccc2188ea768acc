"""Embedding spaces: named embedders, each with its own model id (sha256 of its weight files), dimension and scores.

    joint       the trained checkpoint (faces and voices): scores face-voice trials
    dlib-face   dlib's ResNet face descriptor, 128-D (weights in `face-recognition-models`): face-face trials
    ge2e-voice  Resemblyzer's GE2E speaker encoder, 256-D (weights in the `resemblyzer` wheel): voice-voice trials
    ge2e-voice@telephone, @noisy, @telephone-noisy, @narrowband
                enrolled voices brought to a questioned voice's condition first (fvmatch.spaces.conditions): the
                references a narrowband or noisy question is compared with; @telephone and @narrowband hold the
                brought vector beside the enrolled one (512-D: the score is the mean of the two cosines)

A face space turns one detected face of a decoded image into a small prepared input (`prepare`: an aligned chip,
kept instead of the whole image) and prepared inputs into unit vectors, in batches (`embed`). A voice space turns
one window of 16 kHz speech into a unit vector (`embed_speech`): silero-vad's segments, joined, or for a space whose
`front_end` is "trimmed" (ge2e-voice) the same stretch with only its long silences trimmed (SpeechWindow.speech_for);
the embedder averages the windows of a long recording. Nothing outside this package knows a space's internals.
"""
from __future__ import annotations

from typing import Protocol

import numpy as np

from fvmatch.spaces.conditions import FUSED_CONDITIONS, TEMPLATE_CONDITIONS, VOICE_CONDITIONS, conditioned

TRIAL_TYPES = ("face-voice", "face-face", "voice-voice")
JOINT = "joint"
FACE_SPACE = "dlib-face"
VOICE_SPACE = "ge2e-voice"
# ge2e-voice reads its speech with long silences trimmed as Resemblyzer trims them; the reference conditions read
# silero-vad's speech (what they measured best on): this internal space is the same encoder on silero's speech, the
# base the conditioned references are made from and the one a question compared with them is embedded in. Not a
# --space choice, never stored in a gallery
SPEECH_VOICE_SPACE = "ge2e-voice/speech"
# a question compared in a fused condition (FUSED_CONDITIONS): its vector read as the condition's references are
# beside its vector read as the enrolled ones are; internal, never stored in a gallery
FUSED_QUERY_SPACE = "ge2e-voice/speech+trimmed"
# reference condition -> the space of a question's vector compared with its references
CONDITIONED_SPACES = {conditioned(VOICE_SPACE, condition): FUSED_QUERY_SPACE if condition in FUSED_CONDITIONS
                      else SPEECH_VOICE_SPACE for condition in VOICE_CONDITIONS}


def _condition_part(condition: str) -> str:
    """The space of a reference's vector brought to `condition` alone: the condition's own part where its references
    are made of parts (a fused or template condition: "ge2e-voice/speech@telephone"), else the condition's space."""
    made_of_parts = condition in FUSED_CONDITIONS or condition in TEMPLATE_CONDITIONS
    return conditioned(SPEECH_VOICE_SPACE if made_of_parts else VOICE_SPACE, condition)


# a template condition's references (fvmatch.spaces.conditions.ConditionTemplateSpace) -> the spaces of its parts
TEMPLATE_SPACES = {conditioned(VOICE_SPACE, condition): tuple(_condition_part(part) for part in parts)
                   for condition, parts in TEMPLATE_CONDITIONS.items()}
# spaces made of other spaces' vectors (side by side: fvmatch.spaces.conditions.CompositeVoiceSpace; or a template)
# -> their parts; a fused condition's references: the condition's own vector and the enrolled one
COMPOSITE_SPACES = {FUSED_QUERY_SPACE: (SPEECH_VOICE_SPACE, VOICE_SPACE),
                    **{conditioned(VOICE_SPACE, condition): (_condition_part(condition), VOICE_SPACE)
                       for condition in FUSED_CONDITIONS},
                    **TEMPLATE_SPACES}
SPACE_MODALITIES = {JOINT: ("face", "voice"), FACE_SPACE: ("face",), VOICE_SPACE: ("voice",),
                    **{name: ("voice",) for name in CONDITIONED_SPACES}}
PRETRAINED_SPACES = (FACE_SPACE, VOICE_SPACE, *CONDITIONED_SPACES)  # the spaces whose weights ship in packages
# the space that scores each trial type unless --space says otherwise
DEFAULT_SPACE = {"face-face": FACE_SPACE, "voice-voice": VOICE_SPACE, "face-voice": JOINT}


def trial_type(first: str, second: str) -> str:
    """'face-voice' for a cross-modal pair (either order), else 'face-face' or 'voice-voice'."""
    if first == second:
        return f"{first}-{first}"
    return "face-voice"


def spaces_of(modality: str) -> list[str]:
    """The spaces that embed a modality, joint first (reference conditions not included); without the training
    extra (torch) the joint space is left out: items are then stored in the pretrained spaces only."""
    return [space for space in reference_spaces(modality) if space not in CONDITIONED_SPACES]


def reference_spaces(modality: str) -> list[str]:
    """The spaces an enrolled item of `modality` is stored in: its own and those of every reference condition; the
    joint space only where it can run (the training extra installed: fvmatch.extras)."""
    from fvmatch.extras import joint_space_available

    joint = joint_space_available()
    return [space for space, modalities in SPACE_MODALITIES.items()
            if modality in modalities and (space != JOINT or joint)]


def query_space(name: str) -> str:
    """The space a query's own vector comes from when it is searched in `name`: for a reference condition the
    question read as its references are (SPEECH_VOICE_SPACE; FUSED_QUERY_SPACE beside the enrolled references too),
    never degraded further; else `name`."""
    return CONDITIONED_SPACES.get(name, name)


def condition_query_spaces(name: str) -> list[str]:
    """The spaces a query searched in `name` by default must also be embedded in, since its measured quality may
    pick one of `name`'s reference conditions after it is embedded (none for a space without conditions)."""
    return list(dict.fromkeys(CONDITIONED_SPACES[conditioned(name, condition)] for condition in VOICE_CONDITIONS
                              if conditioned(name, condition) in CONDITIONED_SPACES))


def space_for(first: str, second: str, override: str | None = None) -> str:
    """The space that scores a trial between modalities `first` and `second`: `override` if given (BadArgument when
    it does not embed both; MissingTrainingExtra for the joint space where torch is absent), else the trial type's
    default."""
    from fvmatch.errors import BadArgument
    from fvmatch.extras import require_joint_space

    if override is None:
        return DEFAULT_SPACE[trial_type(first, second)]
    if override not in SPACE_MODALITIES:
        raise BadArgument("--space", f"{override!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    if not {first, second} <= set(SPACE_MODALITIES[override]):
        raise BadArgument("--space", f"the {override} space embeds {' and '.join(SPACE_MODALITIES[override])} only: "
                          f"it cannot score {first}-{second} trials")
    if override == JOINT:
        require_joint_space("--space joint")
    return override


class FaceSpace(Protocol):
    name: str
    dim: int
    model_id: str

    def prepare(self, image: np.ndarray, face) -> np.ndarray:
        """The space's input for one face (`face`: a media.image.DetectedFace) of an RGB uint8 (H, W, 3) image."""

    def embed(self, prepared: np.ndarray) -> np.ndarray:
        """Prepared inputs stacked (n, ...) -> unit vectors (n, dim) float32."""


class VoiceSpace(Protocol):
    name: str
    dim: int
    model_id: str

    def embed_speech(self, speech: np.ndarray) -> np.ndarray:
        """16 kHz mono float32 speech (at least a second) -> unit vector (dim,) float32."""
