"""Casework-quality evidence: clean references, degraded questioned items, fvmatch against the peers on the same files.

Run: OMP_NUM_THREADS=1 .venv/bin/python benchmarks/degraded.py [DIR] [--only voices|faces] [--quick]

DIR (default ../shared/realmedia). Voices: the LibriSpeech speakers of DIR/voices (10 speakers x 10 clips): each
speaker's first half of the clips are the references (clean, as enrolled), the second half the questioned items,
written degraded as an analyst would receive them (fvmatch.media.degrade):
  telephone (300-3400 Hz, 8 kHz file), low-pass 4 kHz and 5.5 kHz (16 kHz files), white noise at 20/10/5/0 dB,
  telephone with noise at 10 dB, and low-bitrate codecs through PyAV: AMR-NB 7.95 kbit/s (8 kHz file), AMR-NB
  12.2 kbit/s and G.711 mu-law (8 kHz codecs, files stored at 16 kHz), Opus 8 kbit/s, MP3 16 kbit/s (16 kHz WAV).
Faces: the photos of DIR/faces; each person's even-numbered photos are the references, the odd-numbered ones the
questions, shrunk so that the face (MTCNN's box on the clean photo) is 24, 32, 48 or 64 px wide, JPEG-compressed at
quality 20/40/60, or blurred (sigma 1.5 and 3 px at full size), each a PNG/JPEG file.

Pipelines, each on the same files:
  - fvmatch: the product's path (Embedder: quality measured, the references of the question's condition when its
    quality calls for one: fvmatch.spaces.conditions); "fvmatch, no condition matching" scores every question
    against the references as enrolled
  - peers: Resemblyzer (preprocess_wav + embed_utterance) and face_recognition (HOG, upsampled once, + ResNet)
For each condition: rank-1 over all questions (a question whose face or speech is not found counts as missed),
questions failed, and EER over the question-reference pairs both sides embedded (where fvmatch compared questions
with references of different conditions, the EER of each condition's questions, weighted by their number: each
condition has its own score distribution, hence its own calibration). A table per modality.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "realmedia"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def voice_conditions(quick: bool) -> dict:
    """condition name -> function (samples, rate, seed) -> (samples, rate) of the questioned file."""
    from fvmatch.media.degrade import add_noise, band_limit, codec_round_trip, telephone_band

    conditions = {
        "clean": lambda x, r, s: (x, r),
        "telephone 300-3400 Hz, 8 kHz": lambda x, r, s: telephone_band(x, r),
        "telephone + noise 10 dB": lambda x, r, s: (add_noise(telephone_band(x, r)[0], 10, s), 8000),
        "white noise 10 dB": lambda x, r, s: (add_noise(x, 10, s), r),
        "white noise 5 dB": lambda x, r, s: (add_noise(x, 5, s), r),
    }
    if not quick:
        conditions.update({
            "low-pass 4 kHz": lambda x, r, s: (band_limit(x, r, 4000), r),
            "low-pass 5.5 kHz": lambda x, r, s: (band_limit(x, r, 5500), r),
            "white noise 20 dB": lambda x, r, s: (add_noise(x, 20, s), r),
            "white noise 0 dB": lambda x, r, s: (add_noise(x, 0, s), r),
            "pink noise 10 dB": lambda x, r, s: (add_noise(x, 10, s, kind="pink"), r),
            "AMR-NB 7.95 kbit/s": lambda x, r, s: (codec_round_trip(telephone_band(x, r)[0], 8000, "amr_nb", 7950), 8000),
            "AMR-NB 12.2 kbit/s, stored at 16 kHz": lambda x, r, s: (
                band_limit(codec_round_trip(x, r, "amr_nb", 12200), r, 7990), r),
            "G.711 mu-law, stored at 16 kHz": lambda x, r, s: (band_limit(codec_round_trip(x, r, "pcm_mulaw"), r, 7990), r),
            "Opus 8 kbit/s": lambda x, r, s: (codec_round_trip(x, r, "libopus", 8000), r),
            "MP3 16 kbit/s": lambda x, r, s: (codec_round_trip(x, r, "libmp3lame", 16000), r),
        })
    return conditions


def face_conditions(quick: bool) -> dict:
    """condition name -> function (image, box) -> (PIL image of the questioned file, JPEG quality it is saved at or
    None for a PNG)."""
    from fvmatch.media.degrade import blur, shrink_face

    conditions = {"clean": lambda image, box: (image, None)}
    for pixels in ((24, 32, 48) if quick else (24, 32, 48, 64)):
        conditions[f"face {pixels} px"] = lambda image, box, p=pixels: (shrink_face(image, box, p), None)
    for quality in ((20,) if quick else (20, 40, 60)):
        conditions[f"JPEG quality {quality}"] = lambda image, box, q=quality: (image, q)
    if not quick:
        conditions["face 32 px + JPEG 40"] = lambda image, box: (shrink_face(image, box, 32), 40)
        for sigma in (1.5, 3.0):
            conditions[f"blur sigma {sigma:g} px"] = lambda image, box, s=sigma: (blur(image, s), None)
    return conditions


def figures(questions: list, references: list) -> dict:
    """rank-1 over all questions (None vectors: missed) and EER over the pairs both sides embedded.

    questions: (owner, (vector,) or None, reference space); references: (owner, {space: vector}). Scores against
    references of different conditions have different distributions (each condition gets its own calibration), so
    the EER is computed over each reference space's questions apart and averaged, weighted by their number."""
    from sklearn.metrics import roc_curve

    hits, failed, by_space = 0, 0, {}
    for owner, vectors, space in questions:
        if vectors is None:
            failed += 1
            continue
        best: dict[str, float] = {}
        scores, same = by_space.setdefault(space, ([], []))
        for ref_owner, ref_vectors in references:
            if ref_vectors is None:
                continue
            reference = ref_vectors[space]  # cosine: face_recognition's encodings are not unit vectors
            score = float(vectors[0] @ reference / (np.linalg.norm(vectors[0]) * np.linalg.norm(reference)))
            best[ref_owner] = max(best.get(ref_owner, -2.0), score)
            scores.append(score)
            same.append(ref_owner == owner)
        hits += max(best, key=best.get) == owner
    weighted, counted = 0.0, 0
    for scores, same in by_space.values():
        if 0 < sum(same) < len(same):
            false_match, true_match, _ = roc_curve(same, scores)
            index = int(np.nanargmin(np.abs(1 - true_match - false_match)))
            weighted += len(scores) * float((false_match[index] + 1 - true_match[index]) / 2)
            counted += len(scores)
    return {"rank1": hits / len(questions), "failed": failed, "eer": weighted / counted if counted else float("nan")}


def chosen(conditions: dict, wanted: str | None) -> dict:
    """The conditions whose names contain one of the comma-separated `wanted` (all when None)."""
    parts = [part.strip() for part in wanted.split(",")] if wanted else None
    return {name: f for name, f in conditions.items() if parts is None or any(part in name for part in parts)}


def run_voices(root: Path, quick: bool, wanted: str | None = None) -> None:
    import soundfile

    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError
    from fvmatch.spaces import VOICE_SPACE, condition_query_spaces, query_space, reference_spaces
    from fvmatch.spaces.conditions import conditioned, reference_condition
    from resemblyzer import VoiceEncoder, preprocess_wav

    speakers = sorted(p for p in (root / "voices").iterdir() if p.name.startswith("librispeech_"))
    split = {speaker.name: sorted(speaker.glob("*.flac")) for speaker in speakers}
    embedder, encoder = Embedder.load(), VoiceEncoder("cpu", verbose=False)
    spaces = [space for space in reference_spaces("voice") if space.startswith(VOICE_SPACE)]
    # a question is embedded as `identify` embeds it: in ge2e-voice and in the space its conditions' questions are
    # read in (each space's own front end), the one used picked from its measured quality
    questions_spaces = [VOICE_SPACE, *condition_query_spaces(VOICE_SPACE)]

    def fvmatch_embedding(path):
        try:
            return embedder.embed_voice(path, spaces=spaces if path in references_paths else questions_spaces)
        except FvmatchError:
            return None

    references_paths = {path for clips in split.values() for path in clips[: len(clips) // 2]}
    references = {"fvmatch": [], "peer": []}
    for owner, clips in split.items():
        for path in clips[: len(clips) // 2]:
            embedding = fvmatch_embedding(path)
            references["fvmatch"].append((owner, None if embedding is None else embedding.vectors))
            references["peer"].append((owner, {"peer": encoder.embed_utterance(preprocess_wav(path))}))
    questions = [(owner, path) for owner, clips in split.items() for path in clips[len(clips) // 2 :]]
    print(f"\nvoices: {len(questions)} questions against {len(references['peer'])} clean references of {len(split)} "
          "speakers")
    print("| condition | fvmatch rank-1 | EER | condition matched | fvmatch, no condition matching rank-1 | EER "
          "| peer Resemblyzer rank-1 | EER | failed (fvmatch / peer) |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for condition, degrade in chosen(voice_conditions(quick), wanted).items():
            rows = {"fvmatch": [], "base": [], "peer": []}
            matched, peer_failed = {}, 0
            for number, (owner, path) in enumerate(questions):
                samples, rate = soundfile.read(path, dtype="float32")
                degraded, degraded_rate = degrade(samples, rate, number)
                file = Path(scratch) / f"{number}.wav"
                soundfile.write(file, np.clip(degraded, -1, 1), degraded_rate, subtype="PCM_16")
                embedding = fvmatch_embedding(file)
                if embedding is None:
                    rows["fvmatch"].append((owner, None, VOICE_SPACE))
                    rows["base"].append((owner, None, VOICE_SPACE))
                else:
                    wanted = reference_condition(embedding.quality)
                    space = conditioned(VOICE_SPACE, wanted) if wanted else VOICE_SPACE
                    matched[wanted] = matched.get(wanted, 0) + 1
                    vector = embedding.vectors[VOICE_SPACE]
                    rows["fvmatch"].append((owner, (embedding.vectors[query_space(space)],), space))
                    rows["base"].append((owner, (vector,), VOICE_SPACE))
                try:
                    rows["peer"].append((owner, (encoder.embed_utterance(preprocess_wav(file)),), "peer"))
                except Exception:  # the peer's own failure on a file: a missed question
                    rows["peer"].append((owner, None, "peer"))
                    peer_failed += 1
            ours, base = figures(rows["fvmatch"], references["fvmatch"]), figures(rows["base"], references["fvmatch"])
            peer = figures(rows["peer"], references["peer"])
            used = ", ".join(f"{name or 'none'} {count}" for name, count in sorted(matched.items(), key=str))
            print(f"| {condition} | {ours['rank1']:.3f} | {ours['eer']:.1%} | {used} | {base['rank1']:.3f} | "
                  f"{base['eer']:.1%} | {peer['rank1']:.3f} | {peer['eer']:.1%} | {ours['failed']} / {peer['failed']} |",
                  flush=True)


def run_faces(root: Path, quick: bool, wanted: str | None = None) -> None:
    import face_recognition

    from fvmatch.analysis.embedder import Embedder
    from fvmatch.errors import FvmatchError
    from fvmatch.media.image import load_image
    from fvmatch.spaces import FACE_SPACE

    people = sorted(p for p in (root / "faces").iterdir() if p.is_dir())
    photos = {person.name: sorted(p for p in person.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
              for person in people}
    embedder = Embedder.load()

    def ours(path):
        try:
            return {FACE_SPACE: embedder.embed_face(path, spaces=[FACE_SPACE])[0].vectors[FACE_SPACE]}
        except FvmatchError:
            return None

    def peer(path):
        image = face_recognition.load_image_file(path)
        boxes = face_recognition.face_locations(image)
        if not boxes:
            return None
        largest = max(boxes, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
        return {"peer": face_recognition.face_encodings(image, [largest])[0]}

    references = {"fvmatch": [], "peer": []}
    questions = []
    for owner, paths in photos.items():
        for number, path in enumerate(paths):
            if number % 2 == 0:
                references["fvmatch"].append((owner, ours(path)))
                references["peer"].append((owner, peer(path)))
            else:
                try:
                    face = embedder.detector.faces_in_file(path)[0]
                except FvmatchError:
                    continue  # no face on the clean photo: no size to shrink it to
                questions.append((owner, path, face.box))
    print(f"\nfaces: {len(questions)} questions against {len(references['peer'])} clean references of "
          f"{len(photos)} people")
    print("| condition | fvmatch rank-1 | EER | peer face_recognition rank-1 | EER | failed (fvmatch / peer) | EER where "
          "both found the faces: fvmatch / peer |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        for condition, degrade in chosen(face_conditions(quick), wanted).items():
            rows = {"fvmatch": [], "peer": []}
            for number, (owner, path, box) in enumerate(questions):
                image, quality = degrade(load_image(path), box)
                file = Path(scratch) / f"{number}.{'png' if quality is None else 'jpg'}"
                image.save(file, **({"format": "PNG"} if quality is None else {"format": "JPEG", "quality": quality}))
                mine, theirs = ours(file), peer(file)
                rows["fvmatch"].append((owner, None if mine is None else (mine[FACE_SPACE],), FACE_SPACE))
                rows["peer"].append((owner, None if theirs is None else (theirs["peer"],), "peer"))
            a, b = figures(rows["fvmatch"], references["fvmatch"]), figures(rows["peer"], references["peer"])
            # the peer's EER is over the faces it found, fewer and clearer where faces are small: the same pairs too
            found = [k for k, (ours_, theirs_) in enumerate(zip(rows["fvmatch"], rows["peer"]))
                     if ours_[1] is not None and theirs_[1] is not None]
            kept = [k for k, (ours_, theirs_) in enumerate(zip(references["fvmatch"], references["peer"]))
                    if ours_[1] is not None and theirs_[1] is not None]
            common = [figures([rows[name][k] for k in found], [references[name][k] for k in kept])["eer"]
                      if found else float("nan") for name in ("fvmatch", "peer")]
            print(f"| {condition} | {a['rank1']:.3f} | {a['eer']:.1%} | {b['rank1']:.3f} | {b['eer']:.1%} | "
                  f"{a['failed']} / {b['failed']} | {common[0]:.1%} / {common[1]:.1%} ({len(found)} questions) |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--only", choices=["voices", "faces"])
    parser.add_argument("--quick", action="store_true", help="A few conditions of each kind (a quick look).")
    parser.add_argument("--conditions", help="Only the conditions whose names contain one of these (comma-separated).")
    args = parser.parse_args()
    if not (args.directory / "faces").is_dir() and not (args.directory / "voices").is_dir():
        sys.exit(f"degraded: {args.directory} has no faces/ or voices/ folder (the real media of ../shared/realmedia "
                 "are needed)")
    print(f"real media: {args.directory}")
    if args.only in (None, "voices") and (args.directory / "voices").is_dir():
        run_voices(args.directory, args.quick, args.conditions)
    if args.only in (None, "faces") and (args.directory / "faces").is_dir():
        run_faces(args.directory, args.quick, args.conditions)


if __name__ == "__main__":
    main()
