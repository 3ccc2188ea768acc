"""In-the-wild dev set: rank-1 identification of real voices and web photos, fvmatch beside the peers.

Talk-show, meeting and phone-recorded voices and web photos, every pipeline on the same files.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/wild_set.py [DIR] [--only voices|faces] [--cache FILE]

DIR (default ../refdata/wild, built by its build_wild_set.py; its README lists sources, licences and sha256) holds
voices/<speaker>/<recording> and faces/<person>/<photo>. Each identity's first file (sorted by name) is enrolled into
a fresh gallery, clean; every other file is a question, identified among all enrolled identities (rank-1: the best
scoring enrolled item is the question's own; one item per identity, so identify's exact re-scoring is this cosine).
A question that fails (too little speech, no face) counts as missed. Rank-1 with its 95% Wilson interval.

Voices, questions clean and brought to the telephone band with white noise at 10 dB (benchmarks/degraded.py's
condition, the same seeds), each question scored:
  - fvmatch, automatic: the references of the condition its measured quality picks (fvmatch.spaces.conditions), the
    path `identify` takes by default
  - fvmatch, forced --space ge2e-voice, ge2e-voice@telephone, ge2e-voice@noisy, ge2e-voice@telephone-noisy
  - peer Resemblyzer (preprocess_wav + embed_utterance), its own references
and per corpus (the folder prefix: urdu = talk shows, meeting, cv = Common Voice read prompts on the contributors' own
devices), since read and spontaneous speech have been seen to call for different conditions.
Faces, questions clean and with the face shrunk to 80 px wide (faces already narrower keep their size) and saved as
JPEG quality 30: fvmatch dlib-face beside the face_recognition pipeline (benchmarks/real_media.py's peer). Then with
TEMPLATE_REFERENCES clean photos of each person enrolled and the others asked: identities ranked by their best
reference and by their template (fvmatch.analysis.templates: how identify ranks faces), each pipeline's vectors.

Embeddings are cached (--cache, default DIR/.cache/wild_set.npz) by file content and model id: a second run only
scores.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from degraded import figures, voice_conditions  # noqa: E402  (benchmarks beside this one)
from real_media import AUDIO_SUFFIXES, IMAGE_SUFFIXES, peer_face_recognition, peer_resemblyzer  # noqa: E402
from attributes import wilson  # noqa: E402

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "refdata" / "wild"
DEGRADED_VOICE = "telephone + noise 10 dB"
FORCED_SPACES = ("ge2e-voice", "ge2e-voice@telephone", "ge2e-voice@noisy", "ge2e-voice@telephone-noisy")
FACE_PX, JPEG_QUALITY = 80, 30
TEMPLATE_REFERENCES = 3  # references a person in the templates' table (each person's first photos)


def rate(hits: int, total: int) -> str:
    low, high = wilson(hits, total)
    return f"{hits / total:.3f} [{low:.2f}, {high:.2f}]" if total else "-"


class Cache:
    """Vectors (and a voice's measured quality) by a key made of the file's bytes and the pipeline's model ids, in
    one .npz (arrays) and one .json (qualities) beside it."""

    def __init__(self, path: Path) -> None:
        self.path, self.notes = path, path.with_suffix(".json")
        self.vectors: dict[str, np.ndarray] = dict(np.load(path)) if path.exists() else {}
        self.qualities: dict[str, dict] = json.loads(self.notes.read_text()) if self.notes.exists() else {}
        self.dirty = False

    def get(self, key: str):
        """(vectors by space, quality) or None when not cached; ({}, quality) records a failed file."""
        if key not in self.qualities:
            return None
        prefix = key + "|"
        return ({name[len(prefix):]: vector for name, vector in self.vectors.items() if name.startswith(prefix)},
                self.qualities[key])

    def put(self, key: str, vectors: dict, quality: dict) -> None:
        for name, vector in vectors.items():
            self.vectors[f"{key}|{name}"] = np.asarray(vector, np.float32)
        self.qualities[key] = quality
        self.dirty = True

    def save(self) -> None:
        if self.dirty:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(self.path, **self.vectors)
            self.notes.write_text(json.dumps(self.qualities))
            self.dirty = False


def labelled(root: Path, suffixes: set[str]) -> dict[str, list[Path]]:
    return {folder.name: sorted(p for p in folder.iterdir() if p.suffix.lower() in suffixes)
            for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))}


def corpus(identity: str) -> str:
    return identity.split("_", 1)[0]


def run_voices(root: Path, cache: Cache) -> None:
    import soundfile

    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError
    from fvmatch.spaces import VOICE_SPACE, condition_query_spaces, query_space, reference_spaces
    from fvmatch.spaces.conditions import conditioned, reference_condition

    speakers = labelled(root / "voices", AUDIO_SUFFIXES)
    embedder, peer = Embedder.load(), None
    reference_names = [space for space in reference_spaces("voice") if space.startswith(VOICE_SPACE)]
    question_names = [VOICE_SPACE, *condition_query_spaces(VOICE_SPACE)]
    models = hashlib.sha256(" ".join(embedder.space(name).model_id for name in reference_names + question_names)
                            .encode()).hexdigest()[:16]

    def ours(data: bytes, path: Path, names: list[str]):
        key = f"voice {models} {','.join(names)} {hashlib.sha256(data).hexdigest()}"
        if (hit := cache.get(key)) is None:
            try:
                embedding = embedder.embed_voice(path, spaces=names)
                hit = ({name: embedding.vectors[name] for name in names}, embedding.quality)
            except FvmatchError as error:
                hit = ({}, {"failed": str(error)})
            cache.put(key, *hit)
        return hit

    def theirs(data: bytes, path: Path):
        nonlocal peer
        key = f"resemblyzer {hashlib.sha256(data).hexdigest()}"
        if (hit := cache.get(key)) is None:
            peer = peer or peer_resemblyzer()
            try:
                hit = ({"peer": peer(path)}, {})
            except Exception as error:  # the peer's own failure on a file: a missed question
                hit = ({}, {"failed": f"{type(error).__name__}: {error}"})
            cache.put(key, *hit)
        return hit

    references = {"fvmatch": [], "peer": []}
    for owner, files in speakers.items():
        data = files[0].read_bytes()
        vectors, _ = ours(data, files[0], reference_names)
        references["fvmatch"].append((owner, vectors or None))
        vectors, _ = theirs(data, files[0])
        references["peer"].append((owner, vectors or None))
    cache.save()
    questions = [(owner, path) for owner, files in speakers.items() for path in files[1:]]
    corpora = sorted({corpus(owner) for owner, _ in questions})
    print(f"\nvoices: {len(questions)} questions against {len(speakers)} enrolled speakers (one clean recording each); "
          "questions per corpus: " + ", ".join(f"{name} {sum(corpus(o) == name for o, _ in questions)}"
                                              for name in corpora))
    failed_references = [owner for owner, vectors in references["fvmatch"] if vectors is None]
    if failed_references:
        print(f"  fvmatch could not enrol: {', '.join(failed_references)} (their questions still count)")
    conditions = {name: f for name, f in voice_conditions(quick=True).items() if name in ("clean", DEGRADED_VOICE)}
    with tempfile.TemporaryDirectory() as scratch:
        for condition, degrade in conditions.items():
            rows = {name: [] for name in ("automatic", *FORCED_SPACES, "peer")}
            routed: dict[str, int] = {}
            routes: list[str | None] = []  # per question: the condition the automatic choice took (None: failed)
            failures = {"fvmatch": [], "peer": []}
            for number, (owner, path) in enumerate(questions):
                if condition == "clean":
                    file, data = path, path.read_bytes()
                else:
                    samples, sample_rate = soundfile.read(path, dtype="float32", always_2d=True)
                    degraded, degraded_rate = degrade(samples.mean(axis=1), sample_rate, number)
                    buffer = io.BytesIO()
                    soundfile.write(buffer, np.clip(degraded, -1, 1), degraded_rate, format="WAV", subtype="PCM_16")
                    data = buffer.getvalue()
                    file = Path(scratch) / f"{number}.wav"
                    file.write_bytes(data)
                vectors, quality = ours(data, file, question_names)
                if not vectors:
                    failures["fvmatch"].append(f"{path.parent.name}/{path.name}: {quality['failed']}")
                    for name in ("automatic", *FORCED_SPACES):
                        rows[name].append((owner, None, VOICE_SPACE))
                    routes.append(None)
                else:
                    wanted = reference_condition(quality)
                    routed[wanted or "none"] = routed.get(wanted or "none", 0) + 1
                    routes.append(wanted or "none")
                    chosen = conditioned(VOICE_SPACE, wanted) if wanted else VOICE_SPACE
                    rows["automatic"].append((owner, (vectors[query_space(chosen)],), chosen))
                    for space in FORCED_SPACES:
                        rows[space].append((owner, (vectors[query_space(space)],), space))
                peer_vectors, peer_quality = theirs(data, file)
                rows["peer"].append((owner, (peer_vectors["peer"],) if peer_vectors else None, "peer"))
                if not peer_vectors:
                    failures["peer"].append(f"{path.parent.name}/{path.name}: {peer_quality['failed']}")
            cache.save()
            print_voice_table(condition, rows, references, corpora, routed, failures)
            print_routes(rows, references, routes)


def hits_of(rows: list, references: list) -> list[bool]:
    """Per question: is its best-scoring reference its own identity (a failed question: False)."""
    return [figures([row], references)["rank1"] == 1.0 for row in rows]


def print_voice_table(condition: str, rows: dict, references: dict, corpora: list[str], routed: dict,
                      failures: dict) -> None:
    print(f"\n{condition}: rank-1 [95% Wilson]; automatic condition chose: "
          + ", ".join(f"{name} {count}" for name, count in sorted(routed.items())))
    print("| pipeline | all | " + " | ".join(corpora) + " | EER | failed |")
    print("|---|---|" + "---|" * len(corpora) + "---|---|")
    for name, questions in rows.items():
        refs = references["peer" if name == "peer" else "fvmatch"]
        hits = hits_of(questions, refs)
        owners = [owner for owner, _, _ in questions]
        by_corpus = [rate(sum(h for h, o in zip(hits, owners) if corpus(o) == c),
                          sum(corpus(o) == c for o in owners)) for c in corpora]
        summary = figures(questions, refs)
        label = {"automatic": "fvmatch, automatic condition", "peer": "peer Resemblyzer"}.get(
            name, f"fvmatch --space {name}")
        print(f"| {label} | {rate(sum(hits), len(hits))} | " + " | ".join(by_corpus)
              + f" | {summary['eer']:.1%} | {summary['failed']} |", flush=True)
    for who, failed in failures.items():
        if failed:
            print(f"  {who} failed on: " + "; ".join(failed))


def print_routes(rows: dict, references: dict, routes: list) -> None:
    """Rank-1 of every pipeline on the questions the automatic choice sent to each condition: where it helps and
    where another choice would have done better."""
    names = [name for name in rows if name != "automatic"]
    print("  by the automatic choice's condition: questions; rank-1 automatic | " + " | ".join(names))
    hits = {name: hits_of(questions, references["peer" if name == "peer" else "fvmatch"])
            for name, questions in rows.items()}
    for route in sorted({r for r in routes if r is not None}):
        picked = [k for k, r in enumerate(routes) if r == route]
        print(f"  {route}: {len(picked)}; " + " | ".join(
            f"{sum(hits[name][k] for k in picked) / len(picked):.3f}" for name in ("automatic", *names)))


def web_quality(detector, path: Path, target: Path) -> Path:
    """`path` with its face shrunk to FACE_PX wide (a face already narrower keeps its size) and saved as JPEG quality
    JPEG_QUALITY at `target`: the degraded question of the faces' tables."""
    from fvmatch.errors import FvmatchError
    from fvmatch.media.degrade import shrink_face
    from fvmatch.media.image import load_image

    image = load_image(path)
    try:
        box = detector.faces_in_file(path)[0].box
        if box[2] - box[0] > FACE_PX:
            image = shrink_face(image, box, FACE_PX)
    except FvmatchError:
        pass  # no face found on the clean photo: compressed at its size
    image.convert("RGB").save(target, format="JPEG", quality=JPEG_QUALITY)
    return target


def run_faces(root: Path, cache: Cache) -> None:
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError
    from fvmatch.spaces import FACE_SPACE

    people = labelled(root / "faces", IMAGE_SUFFIXES)
    embedder, peer = Embedder.load(), None
    model = embedder.space(FACE_SPACE).model_id[:16]

    def ours(data: bytes, path: Path):
        key = f"face {model} {hashlib.sha256(data).hexdigest()}"
        if (hit := cache.get(key)) is None:
            try:
                embedding = embedder.embed_face(path, spaces=[FACE_SPACE])[0]
                hit = ({FACE_SPACE: embedding.vectors[FACE_SPACE]}, {})
            except FvmatchError as error:
                hit = ({}, {"failed": str(error)})
            cache.put(key, *hit)
        return hit[0] or None

    def theirs(data: bytes, path: Path):
        nonlocal peer
        key = f"face_recognition {hashlib.sha256(data).hexdigest()}"
        if (hit := cache.get(key)) is None:
            peer = peer or peer_face_recognition()
            vector = peer(path)
            hit = ({"peer": vector} if vector is not None else {}, {})
            cache.put(key, *hit)
        return hit[0] or None

    references = {"fvmatch": [], "peer": []}
    for owner, files in people.items():
        data = files[0].read_bytes()
        references["fvmatch"].append((owner, ours(data, files[0])))
        references["peer"].append((owner, theirs(data, files[0])))
    cache.save()
    questions = [(owner, path) for owner, files in people.items() for path in files[1:]]
    print(f"\nfaces: {len(questions)} questions against {len(people)} enrolled people (one clean photo each)")
    print("| questions | fvmatch dlib-face rank-1 [95% Wilson] | EER | peer face_recognition rank-1 | EER "
          "| failed (fvmatch / peer) |")
    print("|---|---|---|---|---|---|")
    asked: dict[tuple[str, Path], dict] = {}  # (condition, question) -> each pipeline's vector (None: failed)
    with tempfile.TemporaryDirectory() as scratch:
        for condition in ("clean", f"face {FACE_PX} px + JPEG {JPEG_QUALITY}"):
            rows = {"fvmatch": [], "peer": []}
            for number, (owner, path) in enumerate(questions):
                file = (path if condition == "clean"
                        else web_quality(embedder.detector, path, Path(scratch) / f"{number}.jpg"))
                data = file.read_bytes()
                mine, other = ours(data, file), theirs(data, file)
                asked[condition, path] = {"fvmatch": None if mine is None else mine[FACE_SPACE],
                                          "peer": None if other is None else other["peer"]}
                rows["fvmatch"].append((owner, None if mine is None else (mine[FACE_SPACE],), FACE_SPACE))
                rows["peer"].append((owner, None if other is None else (other["peer"],), "peer"))
            cache.save()
            a, b = figures(rows["fvmatch"], references["fvmatch"]), figures(rows["peer"], references["peer"])
            hits = [sum(hits_of(rows[name], references[name])) for name in ("fvmatch", "peer")]
            print(f"| {condition} | {rate(hits[0], len(questions))} | {a['eer']:.1%} | {rate(hits[1], len(questions))} "
                  f"| {b['eer']:.1%} | {a['failed']} / {b['failed']} |", flush=True)
    print_templates(people, asked, ours, theirs)


def print_templates(people: dict, asked: dict, ours, theirs) -> None:
    """Several references a person: each person's first TEMPLATE_REFERENCES photos enrolled (clean), the others
    asked; identities ranked by their best reference (identify's way for voices, the peer's nearest neighbour) and by
    their template (fvmatch.analysis.templates, identify's way for faces), each pipeline's vectors."""
    from fvmatch.analysis.templates import template_vector
    from fvmatch.spaces import FACE_SPACE

    references = {"fvmatch": {}, "peer": {}}
    for owner, files in people.items():
        found = [(ours(data, path), theirs(data, path))
                 for path, data in ((path, path.read_bytes()) for path in files[:TEMPLATE_REFERENCES])]
        for name, vectors in (("fvmatch", [m[FACE_SPACE] for m, _ in found if m is not None]),
                              ("peer", [o["peer"] for _, o in found if o is not None])):
            if vectors:  # as unit vectors: cosines, as the table above (face_recognition's are not unit vectors)
                stacked = np.stack(vectors).astype(np.float64)
                references[name][owner] = stacked / np.linalg.norm(stacked, axis=1, keepdims=True)
    questions = [(owner, path) for owner, files in people.items() for path in files[TEMPLATE_REFERENCES:]]
    print(f"\nfaces, {TEMPLATE_REFERENCES} clean references a person: {len(questions)} questions against "
          f"{len(people)} people")
    print("| questions | fvmatch, best reference | fvmatch, template (identify) | peer, best reference "
          "| peer, template |")
    print("|---|---|---|---|---|")
    for condition in dict.fromkeys(condition for condition, _ in asked):
        cells = []
        for name in ("fvmatch", "peer"):
            for rule in ("best", "template"):
                hits = 0
                for owner, path in questions:
                    vector = asked[condition, path][name]
                    if vector is None:
                        continue
                    vector = np.asarray(vector, np.float64) / np.linalg.norm(vector)  # the peer's are not unit
                    scores = {person: float((refs @ vector).max()) if rule == "best" else
                              float(template_vector(refs) @ vector) for person, refs in references[name].items()}
                    hits += max(scores, key=scores.get) == owner
                cells.append(rate(hits, len(questions)))
        print(f"| {condition} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", choices=["voices", "faces"])
    parser.add_argument("--cache", type=Path, help="Embedding cache (.npz); default DIR/.cache/wild_set.npz.")
    args = parser.parse_args()
    if not (args.directory / "faces").is_dir() and not (args.directory / "voices").is_dir():
        sys.exit(f"wild_set: {args.directory} has no faces/ or voices/ folder (the in-the-wild dev set: build it with "
                 "../refdata/wild/build_wild_set.py, or give a folder of voices/<speaker>/* and faces/<person>/*)")
    cache = Cache(args.cache or args.directory / ".cache" / "wild_set.npz")
    print(f"in-the-wild set: {args.directory}")
    if args.only in (None, "voices") and (args.directory / "voices").is_dir():
        run_voices(args.directory, cache)
    if args.only in (None, "faces") and (args.directory / "faces").is_dir():
        run_faces(args.directory, cache)


if __name__ == "__main__":
    main()
