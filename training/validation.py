"""Validation figures computed each epoch on held-out identities: verification AUC and V-F 1:2 accuracy."""
from __future__ import annotations

import numpy as np
import torch

from fvmatch.evaluation.metrics import auc
from fvmatch.media.log_mel import log_mel_batch

from .data import PreparedCorpus, crop_voice

VALIDATION_VOICE_SECONDS = 4.0  # the centre of each clip (shorter clips repeated), batched: quick even on CPU


@torch.inference_mode()
def embed_identities(model, corpus: PreparedCorpus, identities: list[int], device: torch.device,
                     batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every face and voice of the identities: (face vectors, face owners, voice vectors, voice owners)."""
    model.eval()
    face_refs = [(i, ref) for i in identities for ref in corpus.faces_of[i]]
    voice_refs = [(i, ref) for i in identities for ref in corpus.voices_of[i]]
    faces = []
    for start in range(0, len(face_refs), batch_size):
        pixels = np.stack([corpus.face(ref) for _, ref in face_refs[start : start + batch_size]])
        faces.append(model.embed_faces(torch.from_numpy(pixels).permute(0, 3, 1, 2).to(device)).float().cpu())
    voices = []
    length = int(VALIDATION_VOICE_SECONDS * 16000)
    for start in range(0, len(voice_refs), batch_size):
        windows = np.stack([crop_voice(corpus.voice(ref), length, None) for _, ref in voice_refs[start : start + batch_size]])
        voices.append(model.embed_voices(log_mel_batch(torch.from_numpy(windows).to(device))).float().cpu())
    return (torch.cat(faces).numpy(), np.array([i for i, _ in face_refs]),
            torch.cat(voices).numpy(), np.array([i for i, _ in voice_refs]))


def verification_auc(faces: np.ndarray, face_owner: np.ndarray, voices: np.ndarray, voice_owner: np.ndarray) -> float:
    """ROC AUC of the cosine over every face-voice pair (same person vs different), unstratified."""
    scores = voices @ faces.T
    same = voice_owner[:, None] == face_owner[None, :]
    return auc(same.ravel(), scores.ravel())


def voice_to_face_matching(faces: np.ndarray, face_owner: np.ndarray, voices: np.ndarray,
                           voice_owner: np.ndarray) -> float:
    """V-F 1:2 accuracy, exactly: the mean over voices of the share of (right face, wrong face) pairs it ranks right.

    This is the expected accuracy of triplets drawn voice first, then one of its faces and one other face;
    a tie counts half.
    """
    scores = voices @ faces.T
    accuracies = []
    for row, owner in zip(scores, voice_owner):
        right, wrong = row[face_owner == owner], row[face_owner != owner]
        if len(right) and len(wrong):
            accuracies.append(((right[:, None] > wrong[None, :]).mean()
                               + 0.5 * (right[:, None] == wrong[None, :]).mean()))
    return float(np.mean(accuracies))


def validate(model, corpus: PreparedCorpus, identities: list[int], device: torch.device) -> dict[str, float]:
    faces, face_owner, voices, voice_owner = embed_identities(model, corpus, identities, device)
    return {"verification_auc": verification_auc(faces, face_owner, voices, voice_owner),
            "vf_1to2_accuracy": voice_to_face_matching(faces, face_owner, voices, voice_owner),
            "identities": len(identities), "faces": int(len(faces)), "voices": int(len(voices))}
