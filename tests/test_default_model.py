"""The shipped default checkpoint, end to end through the analyst pipeline, on synthetic people it never saw."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile
from scipy.signal import resample_poly

from fvmatch.errors import NoFaceFound
from fvmatch.models.checkpoint import read_card
from fvmatch.synth import CorpusSpec, write_corpus
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
from fvmatch.training.validation import verification_auc, voice_to_face_matching


@pytest.fixture(scope="module")
def unseen(tmp_path_factory, embedder):
    """40 new identities (a seed the default was not trained on), embedded with MTCNN and silero-vad as analysts do."""
    out = tmp_path_factory.mktemp("unseen")
    write_corpus(out, CorpusSpec(identities=40, seed=2024, faces_per_identity=2, clips_per_identity=2,
                                 clip_seconds=3.0), workers=1)
    faces, face_owner, voices, voice_owner, telephone = [], [], [], [], []
    for index in range(40):
        label = f"id{index:05d}"
        for path in sorted((out / "faces" / label).rglob("*.jpg")):
            try:
                faces.append(embedder.embed_face(path, spaces=["joint"])[0].vectors["joint"])
                face_owner.append(index)
            except NoFaceFound:  # a synthetic face MTCNN misses (about 1%) is left out, as enrol would
                pass
        for path in sorted((out / "voices" / label).rglob("*.wav")):
            voices.append(embedder.embed_voice(path, spaces=["joint"]).vectors["joint"])
            voice_owner.append(index)
            telephone.append(embedder.embed_voice(phone_copy(path, out / "8k" / f"{label}-{path.name}"), spaces=["joint"]).vectors["joint"])
    return (np.stack(faces), np.array(face_owner), np.stack(voices), np.array(voice_owner)), np.stack(telephone)


def phone_copy(path, copy):
    """The clip as an 8 kHz file (scipy's polyphase resampler: not the filter the default was trained with)."""
    samples, rate = soundfile.read(path, dtype="float32")
    copy.parent.mkdir(exist_ok=True)
    soundfile.write(copy, resample_poly(samples, 8000, rate).astype(np.float32), 8000, subtype="PCM_16")
    return copy


def test_default_checkpoint_is_trained_and_says_on_what(embedder):
    card = read_card(embedder.checkpoint_path)
    assert card["training_data"].startswith("SYNTHETIC DATA ONLY")
    assert card["metrics"]["validation"]["vf_1to2_accuracy"] > 0.95
    assert card["recipe"][-1].startswith("fvmatch train")


def test_default_checkpoint_matches_voices_to_faces_of_unseen_people_far_above_chance(unseen):
    (faces, face_owner, voices, voice_owner), _ = unseen
    assert len(faces) >= 76 and len(voices) == 80
    assert voice_to_face_matching(faces, face_owner, voices, voice_owner) > 0.9
    assert verification_auc(faces, face_owner, voices, voice_owner) > 0.9


def test_default_checkpoint_matches_voices_at_8_khz_as_well(unseen):
    """Phone recordings: the same clips at 8 kHz land next to their full-band embeddings and match as well."""
    (faces, face_owner, voices, voice_owner), telephone = unseen
    assert np.median(np.sum(voices * telephone, axis=1)) > 0.95  # the model before telephone training: 0.48
    full_band = voice_to_face_matching(faces, face_owner, voices, voice_owner)
    assert voice_to_face_matching(faces, face_owner, telephone, voice_owner) > full_band - 0.03
