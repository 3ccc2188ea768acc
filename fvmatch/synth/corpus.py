"""Write a synthetic paired corpus in the training layout (ARCHITECTURE.md sections 8-9).

    OUT/faces/<identity>/<video>/<frame>.jpg
    OUT/voices/<identity>/<video>/<utterance>.wav
    OUT/meta.csv            identity, name, gender, nationality, age, split (identity-disjoint 80/10/10)
    OUT/hidden_traits.csv   the shared traits behind each identity (for analysis; never a training input)
    OUT/synth.json          the parameters, and the ideal observer's 1:2 accuracy on this generative model
    OUT/manifest.csv        identity, modality, path (relative): every file, ready for `fvmatch enroll --manifest`

Every item has its own random stream derived from (seed, identity index, item), so the output is identical
for a seed however many worker processes render it.
"""
from __future__ import annotations

import csv
import json
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

GENERATOR_VERSION = 1
SPLIT_FRACTIONS = (("train", 0.8), ("val", 0.1), ("test", 0.1))


@dataclass(frozen=True)
class CorpusSpec:
    identities: int = 100
    seed: int = 0
    faces_per_identity: int = 4
    clips_per_identity: int = 4
    videos_per_identity: int = 2
    clip_seconds: float = 4.0
    image_size: int = 256


def identity_label(index: int) -> str:
    return f"id{index:05d}"


def assign_splits(identities: int, seed: int) -> list[str]:
    """Identity-disjoint train/val/test labels, a random 80/10/10 partition fixed by the seed."""
    order = np.random.default_rng([seed, 7]).permutation(identities)
    splits = [""] * identities
    counts = [round(fraction * identities) for _, fraction in SPLIT_FRACTIONS]
    if identities >= 10:
        counts[1], counts[2] = max(counts[1], 1), max(counts[2], 1)
    counts[0] = identities - counts[1] - counts[2]
    position = 0
    for (name, _), count in zip(SPLIT_FRACTIONS, counts):
        for index in order[position : position + count]:
            splits[index] = name
        position += count
    return splits


def _write_identity(out: Path, spec: CorpusSpec, index: int) -> dict:
    """Render and write one identity's faces and clips; return its metadata row."""
    import soundfile

    from fvmatch.synth.faces import render_face
    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.voices import render_voice

    label = identity_label(index)
    person = draw_identity(label, np.random.default_rng([spec.seed, index]))
    for item in range(spec.faces_per_identity):
        video = f"v{item % spec.videos_per_identity}"
        path = out / "faces" / label / video / f"{item:05d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image = render_face(person.face, np.random.default_rng([spec.seed, index, 1, item]), size=spec.image_size)
        image.save(path, quality=92)
    for item in range(spec.clips_per_identity):
        video = f"v{item % spec.videos_per_identity}"
        path = out / "voices" / label / video / f"{item:05d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        clip = render_voice(person.voice, np.random.default_rng([spec.seed, index, 2, item]), seconds=spec.clip_seconds)
        soundfile.write(path, clip, 16000, subtype="PCM_16")
    return {"identity": label, "name": f"Synthetic {label}", "gender": person.gender,
            "nationality": person.nationality, "age": int(round(person.age_years)),
            "size": round(person.size, 4), "tone": round(person.tone, 4), "pitch": round(person.pitch, 4)}


def write_corpus(out: str | Path, spec: CorpusSpec, workers: int = 0,
                 progress: Callable[[int], None] | None = None) -> dict:
    """Generate the corpus into `out` (created; existing files are overwritten); return the summary in synth.json.

    `workers` processes render identities in parallel (0: one per CPU core); `progress(n)` is called as
    identities complete.
    """
    from fvmatch.synth.identity import ideal_matching_accuracy

    if spec.identities < 2:
        raise ValueError("a corpus needs at least 2 identities")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or multiprocessing.cpu_count()
    if workers > 1:
        # spawn, not fork: the caller may have torch loaded, and forking a process with its threads is unsafe
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_write_identity, out, spec, index) for index in range(spec.identities)]
            rows = []
            for future in futures:
                rows.append(future.result())
                if progress:
                    progress(1)
    else:
        rows = []
        for index in range(spec.identities):
            rows.append(_write_identity(out, spec, index))
            if progress:
                progress(1)
    splits = assign_splits(spec.identities, spec.seed)
    with open(out / "meta.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "name", "gender", "nationality", "age", "split"])
        for row, split in zip(rows, splits):
            writer.writerow([row["identity"], row["name"], row["gender"], row["nationality"], row["age"], split])
    with open(out / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "modality", "path"])
        for modality, folder in (("face", "faces"), ("voice", "voices")):
            for path in sorted((out / folder).glob("*/*/*")):
                writer.writerow([path.parts[-3], modality, path.relative_to(out).as_posix()])
    with open(out / "hidden_traits.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identity", "size", "tone", "pitch"])
        for row in rows:
            writer.writerow([row["identity"], row["size"], row["tone"], row["pitch"]])
    summary = {
        "generator": "fvmatch synth", "generator_version": GENERATOR_VERSION, **asdict(spec),
        "faces": spec.identities * spec.faces_per_identity, "clips": spec.identities * spec.clips_per_identity,
        "splits": {name: splits.count(name) for name, _ in SPLIT_FRACTIONS},
        "ideal_observer_1to2_accuracy": {"U": ideal_matching_accuracy(seed=spec.seed),
                                         "G": ideal_matching_accuracy(seed=spec.seed, same_gender=True)},
        "note": "synthetic data: never evidence of accuracy on real people",
    }
    (out / "synth.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
