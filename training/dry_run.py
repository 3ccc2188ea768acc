"""What a training run will do and what will stop it, found before any hour is spent (`fvmatch train --dry-run`).

From a corpus (meta.csv) or prepared shards (prepare.json), without writing anything:

- identities per split: listed in meta.csv, and usable (at least one face and one voice);
- steps: per epoch (passes x usable train identities // batch size, tails dropped, as the batches are drawn) and in
  all, with the face-voice pairs they show;
- time: preparing the corpus and, for recipes on frozen pretrained spaces, computing the expert vectors, projected
  from a per-item rate MEASURED here on a few of the corpus's own files (the first item of each kind is a warm-up:
  it loads the models, and is not timed);
- disk: the shards (faces 160x160x3 bytes each; the measured seconds of speech per clip as 16-bit samples) against
  the space free where they go;
- problems (the run will fail) and warnings (it will run, but a figure will be missing or mean little).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from fvmatch.corpus import SPLITS, media_files, read_meta
from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.media.audio import AUDIO_SUFFIXES, SAMPLE_RATE
from fvmatch.media.image import FACE_SIZE, IMAGE_SUFFIXES

from .output_path import check_output_path

FACE_BYTES = FACE_SIZE * FACE_SIZE * 3
VOICE_BYTES_PER_SECOND = SAMPLE_RATE * 2  # int16
SAMPLE_ITEMS = 4  # per kind: one warm-up, then timed
MIN_IDENTITIES = 2


def plan_training(data: str | Path, out: str | Path, recipe: str, config: str, epochs: int, batch_size: int,
                  passes: int = 1, cache: str | Path | None = None, workers: int = 0,
                  sample_items: int = SAMPLE_ITEMS) -> dict:
    """The dry run's findings as a dict (see the module docstring); BadArgument only for a DATA that is neither a
    corpus nor prepared shards. Everything else that would stop the run is listed under "problems"."""
    from fvmatch.models.config import get_config

    data = Path(data)
    problems, warnings = [], []
    try:
        check_output_path(out)
    except BadArgument as error:
        problems.append(f"{error.item}: {error.problem}")
    experts = bool(get_config(config).experts)
    if (data / "prepare.json").is_file():
        source, per_identity, prepared = _from_shards(data, problems)
        cache_folder = data
    elif (data / "meta.csv").is_file():
        source, per_identity, prepared = data, _from_corpus(data), False
        cache_folder = Path(cache) if cache is not None else data / "prepared"
    else:
        raise BadArgument(data, "neither prepared shards (prepare.json) nor a corpus (meta.csv)")
    splits = _split_counts(per_identity)
    train_usable = splits["train"]["usable"]
    if train_usable < MIN_IDENTITIES:
        problems.append(f"the train split has {_identities(train_usable)} usable (a face and a voice each); at "
                        f"least {MIN_IDENTITIES} are needed")
    if splits["val"]["usable"] < MIN_IDENTITIES:
        warnings.append(f"the val split has {_identities(splits['val']['usable'])} usable: no validation figures "
                        "each epoch, and calibrate (which fits on val) will refuse (import with --val-fraction)")
    if splits["test"]["usable"] < MIN_IDENTITIES:
        warnings.append(f"the test split has {_identities(splits['test']['usable'])} usable: evaluate needs "
                        "several (its intervals mean little below 10)")
    per_batch = min(batch_size, max(train_usable, 1))
    steps_per_epoch = passes * (train_usable // per_batch) if train_usable >= MIN_IDENTITIES else 0
    faces = sum(len(entry["faces"]) for entry in per_identity.values())
    voices = sum(len(entry["voices"]) for entry in per_identity.values())
    samples = _sample(per_identity, sample_items)
    embedder = None
    if experts:
        from fvmatch.analysis.embedder import Embedder

        embedder = Embedder.load()  # only its pretrained spaces are used, as the recipe uses them
    measured = measure_items(samples, prepare=not prepared, embedder=embedder)
    to_embed = {"face": faces, "voice": voices}
    if experts and prepared:  # what the cache already holds is not computed again
        from .data import PreparedCorpus
        from .expert_vectors import missing_items

        model_config = get_config(config)
        corpus = PreparedCorpus(data)
        to_embed = {modality: missing_items(corpus, modality, space, embedder.space(space).model_id)
                    for modality, space in (("face", model_config.face_input), ("voice", model_config.voice_input))}
    failures = measured["failures"]
    if failures and len(failures) == measured["tried"]:
        problems.append(f"every sampled item failed ({len(failures)}; first {failures[0]['item']}: "
                        f"{failures[0]['error']})")
    else:
        warnings += [f"{failure['item']}: {failure['error']} (a sampled item; such items are skipped)"
                     for failure in failures]
    if experts and prepared and not Path(source).is_dir():
        problems.append(f"{source}: the corpus these shards were prepared from is not there (the {recipe} recipe "
                        "embeds its files once)")
    processes = workers or os.cpu_count() or 1
    projected = _projection(measured, faces, voices, to_embed, processes)
    disk = _disk(measured, faces, voices, prepared, cache_folder, problems)
    return {"data": str(data), "prepared": prepared, "recipe": recipe, "config": config, "experts": experts,
            "splits": splits, "items": {"faces": faces, "voices": voices},
            "steps": {"per_epoch": steps_per_epoch, "total": steps_per_epoch * epochs, "epochs": epochs,
                      "batch_size": per_batch, "passes": passes, "pairs_per_epoch": steps_per_epoch * per_batch},
            "measured": measured, "projected": projected, "disk": disk,
            "problems": problems, "warnings": warnings}


def _identities(count: int) -> str:
    return f"{count} identit{'y' if count == 1 else 'ies'}"


def _from_corpus(data: Path) -> dict[str, dict]:
    """{identity: {split, faces: [paths], voices: [paths]}} of a corpus's meta.csv rows (none without a folder)."""
    return {row["identity"]: {"split": row["split"],
                              "faces": media_files(data / "faces" / row["identity"], IMAGE_SUFFIXES),
                              "voices": media_files(data / "voices" / row["identity"], AUDIO_SUFFIXES)}
            for row in read_meta(data)}


def _from_shards(cache: Path, problems: list[str]) -> tuple[Path, dict[str, dict], bool]:
    """The source corpus and {identity: {split, faces, voices}} of prepared shards (the source files listed)."""
    plan = json.loads((cache / "prepare.json").read_text())
    if not plan.get("complete"):
        problems.append(f"{cache}: preparation is incomplete (run fvmatch prepare again to finish it)")
    source = Path(plan.get("source", cache))
    found = {row["identity"]: {"split": row["split"], "faces": [], "voices": []} for row in plan["identities"]}
    for name in plan.get("shards", []):
        shard = cache / name
        if not (shard / "shard.json").is_file():
            continue
        for modality, listing in (("faces", "face_source.json"), ("voices", "voice_source.json")):
            for item in json.loads((shard / listing).read_text()):
                label = item.split("/")[1]
                if label in found:
                    found[label][modality].append(source / item)
    return source, found, True


def _split_counts(per_identity: dict[str, dict]) -> dict[str, dict]:
    counts = {split: {"identities": 0, "usable": 0, "faces": 0, "voices": 0} for split in SPLITS}
    for entry in per_identity.values():
        split = counts[entry["split"]]
        split["identities"] += 1
        split["usable"] += bool(entry["faces"]) and bool(entry["voices"])
        split["faces"] += len(entry["faces"])
        split["voices"] += len(entry["voices"])
    return counts


def _sample(per_identity: dict[str, dict], count: int) -> dict[str, list[Path]]:
    """Up to `count` files of each modality, each of another identity where there are enough (spread over the
    corpus rather than one person's)."""
    chosen = {"faces": [], "voices": []}
    for modality in chosen:
        for entry in per_identity.values():
            if len(chosen[modality]) < count and entry[modality]:
                chosen[modality].append(Path(entry[modality][0]))
    return chosen


def measure_items(samples: dict[str, list[Path]], prepare: bool, embedder=None,
                  clock: Callable[[], float] = time.perf_counter) -> dict:
    """Seconds per item of each stage that will run, timed on the sample (its first item untimed: model loading),
    with the mean seconds of speech per voice clip and the sample's failures. With `embedder`, the expert vectors
    (dlib-face, ge2e-voice) are timed too."""
    from .prepare import _face_pixels, _speech_int16

    stages: dict[str, Callable[[Path], object]] = {}
    if prepare:
        stages["prepare_face"] = _face_pixels
        stages["prepare_voice"] = _speech_int16
    if embedder is not None:
        stages["expert_face"] = lambda path: embedder.embed_face(path, spaces=["dlib-face"])
        stages["expert_voice"] = lambda path: embedder.embed_voice(path, spaces=["ge2e-voice"])
    seconds: dict[str, float | None] = {}
    failures, tried, speech = [], 0, []
    for stage, run in stages.items():
        paths = samples["faces" if stage.endswith("face") else "voices"]
        timed = []
        for number, path in enumerate(paths):
            started = clock()
            tried += 1
            try:
                found = run(path)
            except (FvmatchError, OSError) as error:
                failures.append({"item": str(path), "stage": stage,
                                 "error": getattr(error, "problem", None) or str(error)})
                continue
            if number:
                timed.append(clock() - started)
            if stage == "prepare_voice":
                speech.append(len(found) / SAMPLE_RATE)
        seconds[stage] = round(sum(timed) / len(timed), 4) if timed else None
    return {"seconds_per_item": seconds, "timed_items": {stage: max(0, len(samples["faces" if stage.endswith("face")
                                                                                    else "voices"]) - 1)
                                                         for stage in stages},
            "speech_seconds_per_clip": round(sum(speech) / len(speech), 3) if speech else None,
            "failures": failures, "tried": tried}


def _projection(measured: dict, faces: int, voices: int, to_embed: dict[str, int], processes: int) -> dict:
    """Hours each stage will take at the measured rates, spread over `processes` worker processes (expert vectors:
    only the items the cache lacks)."""
    rate = measured["seconds_per_item"]
    hours = {}
    for stage, count in (("prepare_face", faces), ("prepare_voice", voices), ("expert_face", to_embed["face"]),
                         ("expert_voice", to_embed["voice"])):
        if stage in rate and rate[stage] is not None:
            hours[stage] = round(count * rate[stage] / processes / 3600, 6)
    return {"processes": processes, "hours": hours, "total_hours": round(sum(hours.values()), 6),
            "basis": "measured seconds per item on this machine x items / worker processes (one per core)"}


def _disk(measured: dict, faces: int, voices: int, prepared: bool, folder: Path, problems: list[str]) -> dict:
    """Bytes the shards will take (nothing more when already prepared) against the space free where they go."""
    speech = measured["speech_seconds_per_clip"]
    needed = 0 if prepared else int(faces * FACE_BYTES + voices * (speech or 0) * VOICE_BYTES_PER_SECOND)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if needed > free:
        problems.append(f"{folder}: the shards need about {needed / 1e9:.1f} GB, {free / 1e9:.1f} GB is free there")
    return {"folder": str(folder), "shards_bytes": needed, "free_bytes": free,
            "basis": None if prepared else f"{FACE_BYTES:,} bytes per face; {speech} s of speech per clip measured "
                                           "on the sample, 16-bit at 16 kHz"}
