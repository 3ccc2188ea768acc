"""Reference conditions for degraded voices: each condition's references, and the automatic choice, on read and
in-the-wild speech.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/voice_routes.py [--real ../shared/realmedia] [--wild ../refdata/wild]
     [--cache FILE]

Two sets: the LibriSpeech speakers of REAL/voices (each speaker's first half of the clips the references, the second
half the questions; read speech) and the voices of WILD/voices (each speaker's first recording the reference, the
others the questions; talk shows, meetings, Common Voice: benchmarks/wild_set.py's). Every question is degraded in
each condition (fvmatch.media.degrade, the question's number its seed) and identified among the set's speakers
(rank-1: the best-scoring reference's speaker is its own; a question fvmatch cannot read counts as missed), with the
references of:
  - each reference space forced (`--space`): ge2e-voice, @telephone, @narrowband, @noisy, @telephone-noisy (the
    template of three conditions, fvmatch.spaces.conditions.TEMPLATE_CONDITIONS), and the telephone-noisy condition
    alone (its own part, white noise at 10 dB through the telephone band: the references before the template)
  - "mean of three": the mean of the question's cosines with the template's three parts (a variant not kept)
  - automatic: fvmatch.spaces.conditions.reference_condition, the path identify takes
  - automatic as before: every question noisy under 12.5 dB, calls against the telephone-noisy condition alone
Then the automatic choice with the calls' noisy threshold (TELEPHONE_NOISY_BELOW_DB) swept, and other speech's
(NOISY_BELOW_DB).

Vectors are cached (--cache, default ../refwork/voice_routes.pkl) by set, condition, file and the spaces' model ids.
"""
from __future__ import annotations

import argparse
import hashlib
import pickle
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from degraded import voice_conditions  # noqa: E402  (benchmarks beside this one)
from real_media import AUDIO_SUFFIXES  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
SWEEP_DB = (12.5, 15.0, 20.0, 25.0, 30.0, 1000.0)
OTHERS_DB = (10.0, 11.0, 12.5, 14.0, 15.0, 16.0, 18.0)
BEFORE_DB = 12.5  # before the template: every question, calls too, noisy under this SNR


def recipes() -> dict:
    """condition -> function (samples, rate, seed) -> (samples, rate) of the questioned file: benchmarks/degraded.py's
    recipes where it has the condition, the calls at other noise levels and colours besides."""
    from fvmatch.media.degrade import add_noise, telephone_band

    shared = voice_conditions(quick=False)

    def call(snr: float, kind: str = "white"):
        return lambda x, r, s: (add_noise(telephone_band(x, r)[0], snr, s, kind=kind), 8000)

    def noise(snr: float):
        return lambda x, r, s: (add_noise(x, snr, s), r)
    return {"clean": shared["clean"], "telephone": shared["telephone 300-3400 Hz, 8 kHz"],
            "telephone + white 10 dB": shared["telephone + noise 10 dB"], "telephone + white 15 dB": call(15),
            "telephone + white 20 dB": call(20), "telephone + pink 10 dB": call(10, "pink"),
            "white 0 dB": shared["white noise 0 dB"], "white 5 dB": shared["white noise 5 dB"],
            "white 10 dB": shared["white noise 10 dB"], "white 15 dB": noise(15), "pink 10 dB": shared["pink noise 10 dB"]}


def sets(real: Path, wild: Path) -> dict[str, dict[str, tuple[list[Path], list[Path]]]]:
    """set -> speaker -> (references, questions)."""
    found = {}
    if (real / "voices").is_dir():
        found["read (LibriSpeech)"] = {
            p.name: (lambda c: (c[: len(c) // 2], c[len(c) // 2:]))(sorted(p.glob("*.flac")))
            for p in sorted((real / "voices").iterdir()) if p.name.startswith("librispeech_")}
    if (wild / "voices").is_dir():
        found["in the wild"] = {
            p.name: (lambda c: (c[:1], c[1:]))(sorted(f for f in p.iterdir() if f.suffix.lower() in AUDIO_SUFFIXES))
            for p in sorted((wild / "voices").iterdir()) if p.is_dir()}
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=ROOT / "shared" / "realmedia")
    parser.add_argument("--wild", type=Path, default=ROOT / "refdata" / "wild")
    parser.add_argument("--cache", type=Path, default=ROOT / "refwork" / "voice_routes.pkl")
    args = parser.parse_args()
    import soundfile

    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError
    from fvmatch.spaces import (COMPOSITE_SPACES, SPEECH_VOICE_SPACE, VOICE_SPACE, condition_query_spaces,
                                query_space, reference_spaces)
    from fvmatch.spaces import conditions as C

    chosen_sets = sets(args.real, args.wild)
    if not chosen_sets:
        sys.exit(f"voice_routes: neither {args.real}/voices nor {args.wild}/voices is a folder of speakers")
    embedder = Embedder.load()
    template = C.conditioned(VOICE_SPACE, "telephone-noisy")
    alone = C.conditioned(SPEECH_VOICE_SPACE, "telephone-noisy")  # the condition's own part: the references before
    parts = COMPOSITE_SPACES[template]
    reference_names = [s for s in reference_spaces("voice") if s.startswith(VOICE_SPACE)] + [alone, *parts]
    reference_names = list(dict.fromkeys(reference_names))
    question_names = [VOICE_SPACE, *condition_query_spaces(VOICE_SPACE)]
    models = hashlib.sha256(" ".join(embedder.space(n).model_id for n in reference_names + question_names)
                            .encode()).hexdigest()[:16]
    cache = pickle.loads(args.cache.read_bytes()) if args.cache.is_file() else {}

    def embed(key: tuple, path: Path, names: list[str]):
        key = (models, *key)
        if key not in cache:
            try:
                embedding = embedder.embed_voice(path, spaces=names)
                cache[key] = ({n: embedding.vectors[n] for n in names}, dict(embedding.quality))
            except FvmatchError as error:
                cache[key] = (None, {"failed": str(error)})
        return cache[key]

    forced = [VOICE_SPACE, *(C.conditioned(VOICE_SPACE, c) for c in C.VOICE_CONDITIONS), alone]
    results = {}  # (set, condition) -> list of (quality, {rule: hit}) per question (None: failed)
    with tempfile.TemporaryDirectory() as scratch:
        for set_name, speakers in chosen_sets.items():
            references = [(speaker, embed(("ref", set_name, speaker, path.name), path, reference_names)[0])
                          for speaker, (refs, _) in speakers.items() for path in refs]
            references = [(speaker, vectors) for speaker, vectors in references if vectors is not None]
            args.cache.parent.mkdir(parents=True, exist_ok=True)
            args.cache.write_bytes(pickle.dumps(cache))
            questions = [(speaker, path) for speaker, (_, asked) in speakers.items() for path in asked]
            for condition, degrade in recipes().items():
                rows = []
                for number, (speaker, path) in enumerate(questions):
                    samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
                    degraded, degraded_rate = degrade(samples.mean(axis=1), rate, number)
                    file = Path(scratch) / "question.wav"
                    soundfile.write(file, np.clip(degraded, -1, 1), degraded_rate, subtype="PCM_16")
                    vectors, quality = embed(("question", set_name, condition, speaker, path.name), file, question_names)
                    if vectors is None:
                        rows.append(None)
                        continue

                    def hit(score) -> bool:
                        best: dict[str, float] = {}
                        for owner, reference in references:
                            best[owner] = max(best.get(owner, -2.0), score(reference))
                        return max(best, key=best.get) == speaker

                    asked = {space: SPEECH_VOICE_SPACE if space == alone else query_space(space) for space in forced}
                    hits = {space: hit(lambda ref, s=space: float(ref[s] @ vectors[asked[s]])) for space in forced}
                    speech = vectors[SPEECH_VOICE_SPACE]
                    hits["mean of three"] = hit(lambda ref: float(np.mean([ref[part] @ speech for part in parts])))
                    rows.append((quality, hits))
                results[set_name, condition] = rows
                args.cache.write_bytes(pickle.dumps(cache))
                print(f"  {set_name}, {condition}: {len(rows)} questions", file=sys.stderr, flush=True)

    def route(quality: dict, calls_below: float, before: bool = False, others_below: float | None = None) -> str:
        saved = C.TELEPHONE_NOISY_BELOW_DB, C.NOISY_BELOW_DB
        C.TELEPHONE_NOISY_BELOW_DB = calls_below
        C.NOISY_BELOW_DB = saved[1] if others_below is None else others_below
        try:
            wanted = C.reference_condition(quality)
        finally:
            C.TELEPHONE_NOISY_BELOW_DB, C.NOISY_BELOW_DB = saved
        if wanted is None:
            return VOICE_SPACE
        return alone if before and wanted == "telephone-noisy" else C.conditioned(VOICE_SPACE, wanted)

    def rate(rows: list, rule) -> str:
        return f"{sum(row is not None and row[1][rule(row[0])] for row in rows) / len(rows):.3f}"

    names = {alone: "telephone-noisy alone (before)", template: "@telephone-noisy (template)"}
    columns = [names.get(space, space.replace(VOICE_SPACE, "") or "ge2e-voice") for space in forced]
    print("rank-1 per reference space forced, the automatic choice (now / as before)")
    print("| set | question | " + " | ".join(columns) + " | mean of three | automatic | automatic before |")
    print("|---|---|" + "---|" * (len(forced) + 3))
    for (set_name, condition), rows in results.items():
        cells = [rate(rows, lambda q, s=space: s) for space in forced]
        cells += [rate(rows, lambda q: "mean of three"), rate(rows, lambda q: route(q, C.TELEPHONE_NOISY_BELOW_DB)),
                  rate(rows, lambda q: route(q, BEFORE_DB, before=True, others_below=BEFORE_DB))]
        print(f"| {set_name} | {condition} (n={len(rows)}) | " + " | ".join(cells) + " |")
    print("\nautomatic choice, right answers, with calls noisy under X dB (TELEPHONE_NOISY_BELOW_DB is "
          f"{C.TELEPHONE_NOISY_BELOW_DB:g})")
    print("| set | question | " + " | ".join(f"{x:g}" if x < 1000 else "any" for x in SWEEP_DB) + " |")
    print("|---|---|" + "---|" * len(SWEEP_DB))
    totals = np.zeros(len(SWEEP_DB), int)
    for (set_name, condition), rows in results.items():
        counts = [sum(row is not None and row[1][route(row[0], x)] for row in rows) for x in SWEEP_DB]
        totals += counts
        print(f"| {set_name} | {condition} | " + " | ".join(map(str, counts)) + " |")
    print("| all | | " + " | ".join(map(str, totals)) + " |")
    print(f"\nautomatic choice, right answers, with other speech (not a call) noisy under X dB (NOISY_BELOW_DB is "
          f"{C.NOISY_BELOW_DB:g})")
    print("| set | question | " + " | ".join(f"{x:g}" for x in OTHERS_DB) + " |")
    print("|---|---|" + "---|" * len(OTHERS_DB))
    totals = np.zeros(len(OTHERS_DB), int)
    for (set_name, condition), rows in results.items():
        counts = [sum(row is not None and row[1][route(row[0], C.TELEPHONE_NOISY_BELOW_DB, others_below=x)]
                      for row in rows) for x in OTHERS_DB]
        totals += counts
        print(f"| {set_name} | {condition} | " + " | ".join(map(str, counts)) + " |")
    print("| all | | " + " | ".join(map(str, totals)) + " |")


if __name__ == "__main__":
    main()
