"""The analyst's commands on a gallery: enroll, identify, verify."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (FmrOption, FpsOption, GalleryOption, JsonOption, LockTimeoutOption,
                                     MinBandwidthOption, MinFacePxOption, MinSnrOption, ModelOption, RootOption,
                                     PopulationOption, SpaceOption, app, audit, emit_json, file_input,
                                     open_gallery, plural, population_option,
                                     quality_minimums, refuse_video_as, require_file, say_line, say_waiting, stderr,
                                     stdout)
from fvmatch.commands.common import AudioTrackOption, TrackOption, tracks_need_one_video
from fvmatch.commands.answers import item_notes, print_group, print_notes, sex_evidence_words
from fvmatch.errors import EXIT_BAD_INPUT, EXIT_NO_MATCH, BadArgument
from fvmatch.progress import item_progress


@app.command()
def enroll(
    identity: Optional[str] = typer.Option(None, "--identity", "-i", help="Label of the person the files show."),
    face: list[Path] = typer.Option([], "--face", help="Face image (repeatable)."),
    voice: list[Path] = typer.Option([], "--voice", help="Voice recording (repeatable)."),
    video: list[Path] = typer.Option([], "--video", help="Video (repeatable): its main face track and its soundtrack."),
    track: Optional[int] = TrackOption,
    audio_track: Optional[int] = AudioTrackOption,
    fps: float = FpsOption,
    from_dir: Optional[Path] = typer.Option(None, "--from-dir", help="DIR/<label>/<files>; modality from file type."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="CSV: identity,modality,path (paths relative to "
                                            "it; modality face, voice or video)."),
    root: Optional[Path] = RootOption,
    force: bool = typer.Option(False, "--force", help="Enroll a file already enrolled under another identity."),
    gallery_path: Path = GalleryOption,
    model: Optional[Path] = ModelOption,
    lock_timeout: float = LockTimeoutOption,
    min_face_px: Optional[float] = MinFacePxOption,
    min_snr: Optional[float] = MinSnrOption,
    min_bandwidth: Optional[float] = MinBandwidthOption,
    as_json: bool = JsonOption,
) -> None:
    """Enroll face images, voice recordings and videos into the gallery (created on first use, pinned to the model).

    Each item is embedded in every space of its modality (joint, and dlib-face or ge2e-voice). A video gives a face
    item (its longest face track) and a voice item (its soundtrack's speech), with the frames and seconds used;
    --track N takes another face track, so two people of one video are enrolled from their own tracks (the soundtrack
    stays the voice of the identity that enrolled it first: the other gets its face only, and a note says so).

    A bad file is reported and skipped; the others are enrolled. Exit 2 if any item failed.
    """
    from fvmatch.enrollment.enroll import (EnrollReport, enroll as enroll_items, items_from_dir, items_from_manifest,
                                           items_from_options)

    sources = sum([identity is not None or bool(face) or bool(voice) or bool(video), from_dir is not None,
                   manifest is not None])
    if sources != 1:
        raise BadArgument("enroll", "give one of: --identity LABEL with --face/--voice files, --from-dir DIR, --manifest CSV")
    if root is not None and manifest is None:
        raise BadArgument("--root", "--root confines the paths a --manifest names; give it with --manifest")
    report = EnrollReport()
    if from_dir is not None:
        items = items_from_dir(from_dir, report)
    elif manifest is not None:
        from fvmatch.paths import check_root

        items = items_from_manifest(manifest, report, check_root(root))
    else:
        if identity is None or not (face or voice or video):
            raise BadArgument("enroll", "--identity needs at least one --face, --voice or --video file, and files need "
                              "--identity")
        items = items_from_options(identity, face, voice, video)
    tracks_need_one_video(len(video) if from_dir is None and manifest is None else 0, track, audio_track)
    if track is not None or audio_track is not None:
        from dataclasses import replace

        items = [replace(item, face_track=track, audio_track=audio_track) if item.modality == "video" else item
                 for item in items]

    from fvmatch.analysis.embedder import Embedder, embedder_for_gallery
    from fvmatch.gallery import Gallery, make_private_directory
    from fvmatch.gallery.team import is_team_gallery
    from fvmatch.spaces import PRETRAINED_SPACES

    team = is_team_gallery(gallery_path)
    if not team and gallery_path.exists() and not gallery_path.is_dir():
        raise BadArgument(gallery_path, "gallery path exists and is not a directory")
    # a new gallery: check the model (weights too) before anything is written, so a bad --model leaves no directory
    new_gallery_model = None if Gallery.exists(gallery_path) else Embedder.load(model, load_weights=True)
    if not team:
        make_private_directory(gallery_path)  # on a read-only or full disk: one line, exit 2
    with Gallery.writer_of(gallery_path, lock_timeout, say_waiting, f"pid {os.getpid()}: fvmatch enroll"):
        if Gallery.exists(gallery_path):  # (again under the lock: another writer may have created it)
            gallery = Gallery.open(gallery_path)
            try:
                gallery.require_writable()  # a team gallery's role that may only read it: refused before any work
                # every item is embedded in the joint space: a bad model fails here, not once per item
                embedder = embedder_for_gallery(gallery, model, load_weights=True)
            except BaseException:
                gallery.close()
                raise
        else:
            embedder = new_gallery_model or Embedder.load(model, load_weights=True)
            gallery = Gallery.open(gallery_path, create=True, model_id=embedder.model_id,
                                   embedding_dim=embedder.embedding_dim,
                                   model_path=str(Path(embedder.checkpoint_path).resolve()))
        embedder.minimums = quality_minimums(min_face_px, min_snr, min_bandwidth)
        with gallery, item_progress(stderr, "enroll", transient=as_json) as progress:
            gallery.add_spaces({name: embedder.space_info(name) for name in PRETRAINED_SPACES})
            task = progress.add_task("enroll", total=len(items))
            # each stored batch is recorded in its own transaction, so a killed enroll leaves no unrecorded item
            def record_batch(entries: list[dict]) -> None:
                audit(gallery, "enroll batch", [{"path": e["path"], "sha256": e["sha256"],
                                                 **({"video": e["video"]} if "video" in e else {})}
                                                for e in entries],
                      {"stored": len(entries), "identities": sorted({e["identity"] for e in entries}),
                       "media_ids": [e["media_id"] for e in entries]}, embedder.model_id)

            enroll_items(gallery, embedder, items, report, force=force, progress=lambda n: progress.advance(task, n),
                         record_batch=record_batch, fps=fps)
            counts = gallery.counts()
            audit(gallery, "enroll", [{"path": e["path"], "sha256": e["sha256"]} for e in report.enrolled],
                   {"enrolled": len(report.enrolled), "skipped": len(report.skipped), "failed": len(report.failed),
                    "identities": sorted({e["identity"] for e in report.enrolled}), "failures": report.failed},
                   embedder.model_id)
    if as_json:
        emit_json({"gallery": str(gallery_path), "model_id": embedder.model_id, **report.to_dict(), "gallery_counts": counts})
    else:
        stdout.print(f"enrolled {len(report.enrolled)}, already there {len(report.skipped)}, failed {len(report.failed)}; "
                     f"gallery now holds {plural(counts['identities'], 'identity', 'identities')}, "
                     f"{plural(counts['face'], 'face')}, {plural(counts['voice'], 'voice')}")
    from fvmatch.extras import TRAIN_EXTRA, joint_space_available

    if report.enrolled and not joint_space_available():  # an analyst's install: pretrained spaces only
        say_line(stderr, "fvmatch: note: stored in the pretrained spaces only, not in the joint space (--space joint), "
                 f"which needs torch: {TRAIN_EXTRA}, then `fvmatch gallery reindex` adds it")
    for path, notes in {e["path"]: e["notes"] for e in report.enrolled if e.get("notes")}.items():
        for note in notes:  # a video's (no audio track, no face, damage); a still's odd input (fvmatch.quality.notes)
            say_line(stderr, f"fvmatch: {path}: {note}")
    for failure in report.failed:
        say_line(stderr, f"fvmatch: failed: {failure['item']}: {failure['error']}")
    if report.failed:
        raise typer.Exit(EXIT_BAD_INPUT)


def _one_query(face: Optional[Path], voice: Optional[Path]) -> tuple[str, Path]:
    if (face is None) == (voice is None):
        raise BadArgument("identify", "give exactly one query: --face IMG, --voice AUDIO or --video FILE")
    return ("face", face) if face is not None else ("voice", voice)


@app.command()
def identify(
    face: Optional[Path] = typer.Option(None, "--face", help="Query face image."),
    voice: Optional[Path] = typer.Option(None, "--voice", help="Query voice recording."),
    video: Optional[Path] = typer.Option(None, "--video", help="Query video: its face track and its soundtrack."),
    fps: float = FpsOption,
    track: Optional[int] = TrackOption,
    audio_track: Optional[int] = AudioTrackOption,
    against: Optional[str] = typer.Option(None, "--against", help="face, voice or all (default: every trial type "
                                          "whose evidence holds on real people: the query's own modality, and the "
                                          "other only where face-voice evidence holds)."),
    top: int = typer.Option(10, "--top", "-k", min=1, max=1000, help="Identities to list (per trial type)."),
    rescore_top: int = typer.Option(50, "--rescore-top", min=1, max=10000, help="With a fuse-after-align model: "
                                    "identities of the cosine search whose best items the pair encoder re-scores "
                                    "(face-voice trials)."),
    space: Optional[str] = SpaceOption,
    fmr: float = FmrOption,
    population: Optional[str] = PopulationOption,
    gallery_path: Path = GalleryOption,
    model: Optional[Path] = ModelOption,
    min_face_px: Optional[float] = MinFacePxOption,
    min_snr: Optional[float] = MinSnrOption,
    min_bandwidth: Optional[float] = MinBandwidthOption,
    as_json: bool = JsonOption,
) -> None:
    """Who in the gallery is this? Ranks identities by their best-matching item, with a likelihood ratio.

    By default a face is compared with the enrolled faces (dlib-face space) and a voice with the enrolled voices
    (ge2e-voice space): the evidence that holds on real people. The other modality is searched only where
    face-voice evidence holds (a joint model trained and calibrated on real pairs); the shipped joint model was
    trained on synthetic people, so its face-voice scores are shown only with --space joint, and labelled.

    Each score comes with its log10 likelihood ratio and ENFSI verbal equivalent, from fvmatch's reference
    calibration (named public data) or the model card's own (fvmatch calibrate --add), which supersedes it. Each
    trial type is listed apart (merged by likelihood ratio only when all are calibrated). Exit 1 when no candidate
    reaches the decision threshold.

    A --video query is its main face track and its soundtrack, each answered as above. A fuse-after-align model
    re-ranks the top --rescore-top identities of a face-voice search by its fused score.
    """
    if against not in (None, "face", "voice", "all"):
        raise BadArgument("--against", f"{against!r} is not one of face, voice, all")
    if track is not None and video is None:
        raise BadArgument("--track", "goes with --video (it picks one of the video's face tracks)")
    if video is not None:
        if face is not None or voice is not None:
            raise BadArgument("identify", "give exactly one query: --face IMG, --voice AUDIO or --video FILE")
        from fvmatch.commands.video import identify_video
        from fvmatch.analysis.embedder import embedder_for_gallery

        require_file(video)
        with open_gallery(gallery_path) as gallery:
            embedder = embedder_for_gallery(gallery, model, minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
            return identify_video(video, fps, against, top, space, fmr, gallery, embedder, gallery_path, as_json,
                                  rescore_top, population_option(population), audio_track=audio_track,
                                  face_track=track)
    modality, path = _one_query(face, voice)
    refuse_video_as(path, f"--{modality}")
    from fvmatch.analysis.matching import query_spaces

    if space is not None:
        query_spaces(modality, [modality if against in (None, "all") else against], space)  # a bad one: refused first
    from fvmatch.analysis.embedder import embedder_for_gallery
    from fvmatch.evidence.rules import answered_targets, cross_modal_scoring, joint_label, require_targets
    from fvmatch.analysis.matching import check_gallery, identify as identify_query, merged, question_spaces, ranked

    with open_gallery(gallery_path) as gallery:
        embedder = embedder_for_gallery(gallery, model, minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
        targets, left_out = answered_targets(modality, against, gallery.counts(), embedder.card, space)
        require_targets(modality, targets, left_out, gallery.directory)
        cross_by = cross_modal_scoring(embedder.card, space)
        from fvmatch.evidence.sex_fusion import SexFusion, rescorer

        # a pair encoder, or the card's joint+sex fusion, re-ranks a joint search; None: its cosines as they are
        fused = rescorer(embedder, rescore_top, population_option(population))
        sex_fused = isinstance(fused, SexFusion)
        spaces = query_spaces(modality, targets, space, cross_by, sex_fused)
        check_gallery(gallery, modality, targets, space, cross_by)
        for name in spaces:
            gallery.check_space(name, embedder.space(name).model_id)
        # a face asked only against faces needs no age reading (the face-voice evidence is what reads it)
        query = (embedder.embed_face(path, spaces=spaces, read_age=targets != ["face"])[0] if modality == "face"
                 else embedder.embed_voice(path, spaces=spaces, audio_track=audio_track,
                                           pick=question_spaces(gallery, modality, targets, space, cross_by, sex_fused)))
        groups = identify_query(gallery, query, targets, top, space, embedder.calibration, fmr, fused,
                                joint_label(embedder.card), cross_by, population_option(population))
        audit(gallery, "identify", [file_input(path)],
               {"modality": modality, "against": targets,
                "trials": [{"trial_type": g.trial_type, "space": g.space, "model_id": g.model_id,
                            "condition": g.condition, "scoring": g.scoring or {"score": "cosine"},
                            "candidates": [{"identity": c.identity, "score": round(c.score, 6)} for c in g.candidates]}
                           for g in groups], "left_out": left_out},
               embedder.model_id)
    listed = ranked(groups)
    if as_json:
        emit_json({"query": {"modality": modality, "path": str(path), "quality": query.quality},
                   "against": targets, "model_id": embedder.model_id, "gallery": str(gallery_path),
                   "trials": [group.to_dict() for group in groups], "left_out": left_out,
                   "merged_by_likelihood_ratio": merged(groups),
                   "candidates": [{**c.to_dict(), **j.to_dict()} for c, j in listed]})
    else:
        for group in groups:
            print_group(f"{modality} query {path}", group)
        print_notes(item_notes([(modality, path)], [query]) + [j.note for _, j in listed] + left_out)
    calibrated = [j for _, j in listed if j.decision is not None]
    if calibrated and not any(j.decision == "same person" for j in calibrated):
        raise typer.Exit(EXIT_NO_MATCH)


@app.command()
def verify(
    face: list[Path] = typer.Option([], "--face", help="Face image (give two items in all: face+voice, 2 faces or 2 voices)."),
    voice: list[Path] = typer.Option([], "--voice", help="Voice recording."),
    video: list[Path] = typer.Option([], "--video", help="Video: alone, its face against its soundtrack; with another "
                                     "item, its face track and soundtrack against it."),
    fps: float = FpsOption,
    claim: Optional[str] = typer.Option(None, "--claim", help="With one --video: the claimed identity in --gallery "
                                        "its face track and soundtrack are scored against."),
    track: Optional[int] = TrackOption,
    audio_track: Optional[int] = AudioTrackOption,
    gallery_path: Path = GalleryOption,
    space: Optional[str] = SpaceOption,
    fmr: float = FmrOption,
    population: Optional[str] = PopulationOption,
    model: Optional[Path] = ModelOption,
    min_face_px: Optional[float] = MinFacePxOption,
    min_snr: Optional[float] = MinSnrOption,
    min_bandwidth: Optional[float] = MinBandwidthOption,
    as_json: bool = JsonOption,
) -> None:
    """Do two items (a face and a voice, two faces or two voices) belong to one person?

    Two faces are compared in the face space (dlib-face), two voices in the voice space (ge2e-voice): the score, its
    log10 likelihood ratio with the ENFSI verbal equivalent (fvmatch's reference calibration, or the model card's
    own), and the decision; exit 1 for "different person". A face and a voice are scored only where face-voice
    evidence holds on real people, or with --space joint (labelled: the shipped joint model was trained on
    synthetic people). A --video gives its face track and soundtrack; --video alone scores its face against its
    soundtrack (face-voice, so likewise).
    """
    items = [("face", p) for p in face] + [("voice", p) for p in voice]
    for modality, path in items:
        refuse_video_as(path, f"--{modality}")
    tracks_need_one_video(len(video), track, audio_track)
    tracks = {"face_track": track, "audio_track": audio_track}
    if claim is not None:
        if len(video) != 1 or items:
            raise BadArgument("--claim", "goes with one --video alone (for an image or a recording: audit run with a "
                              "claimed_identity column)")
        from fvmatch.commands.video import verify_video_claim
        from fvmatch.analysis.embedder import embedder_for_gallery

        require_file(video[0])
        with open_gallery(gallery_path) as gallery:
            embedder = embedder_for_gallery(gallery, model, minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
            return verify_video_claim(video[0], claim, fps, space, fmr, gallery, embedder, as_json,
                                      population_option(population), **tracks)
    if video:
        if len(video) + len(items) > 2:
            raise BadArgument("verify", "a --video goes alone or with one other item (--face, --voice or --video)")
        from fvmatch.commands.video import verify_video
        from fvmatch.analysis.embedder import Embedder

        embedder = Embedder.load(model, minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
        return verify_video(video, items, fps, space, fmr, embedder, as_json, population_option(population), **tracks)
    if len(items) != 2:
        raise BadArgument("verify", f"give exactly two items (--face/--voice), got {len(items)}")
    from fvmatch.spaces import space_for

    space_for(items[0][0], items[1][0], space)  # a bad --space is refused before anything loads
    from fvmatch.analysis.embedder import Embedder
    from fvmatch.evidence.attributes import ATTRIBUTE_SPACE
    from fvmatch.evidence.rules import cross_modal_refusal, cross_modal_scoring, joint_label
    from fvmatch.analysis.matching import describe_condition, score_pair
    from fvmatch.calibration.scoring import judge
    from fvmatch.spaces import JOINT

    embedder = Embedder.load(model, minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
    cross_by = cross_modal_scoring(embedder.card, space) if items[0][0] != items[1][0] else None
    if items[0][0] != items[1][0] and cross_by is None:
        raise BadArgument("verify", cross_modal_refusal(embedder.card))
    if cross_by == ATTRIBUTE_SPACE:
        return _verify_by_sex(embedder, items, as_json, population_option(population))
    from fvmatch.evidence.attributes import reading_words
    from fvmatch.evidence.sex_fusion import needs_sex_reading, scored_pair

    pair = score_pair(embedder, items, space, needs_sex_reading(embedder))
    # the cosine, unless a pair encoder or the card's joint+sex fusion scores this pair
    score, judged_as, scoring = scored_pair(embedder, pair, population_option(population))
    judgement = judge(score, pair.trial_type, embedder.calibration, fmr, judged_as, pair.model_id, pair.face_band)
    warning = joint_label(embedder.card) if pair.space == JOINT else None
    if as_json:
        emit_json({"items": [{"modality": m, "path": str(p), "quality": e.quality}
                             for (m, p), e in zip(items, pair.embeddings)],
                   "model_id": embedder.model_id, "condition": pair.condition, "scoring": scoring,
                   "warning": warning, **judgement.to_dict()})
    else:
        shown = (f"fused: the pair encoder's log-odds from the {pair.space} vectors, whose cosine is "
                 f"{scoring['cosine']:.4f}" if scoring["score"] == "fused" else
                 f"joint+sex: the {pair.space} cosine {scoring['cosine']:.4f} fused with the sex evidence, log10 LR "
                 f"{scoring['sex_log10_lr']:+.2f} (face {reading_words(scoring['readings']['face'])}, voice "
                 f"{reading_words(scoring['readings']['voice'])})" if scoring["score"] == "joint+sex" else
                 f"cosine in the {pair.space} space")
        stdout.print(f"{judgement.trial_type} score {score:.4f} ({shown}; model {pair.model_id[:16]}); "
                     f"{describe_condition(pair.condition)}", highlight=False)
        if judgement.decision is not None:
            stdout.print(f"log10 LR {judgement.log10_lr:+.2f} ({judgement.verbal}); decision: {judgement.decision}",
                         highlight=False)
        if warning:
            say_line(stdout, f"WARNING: {warning}")
        print_notes(item_notes(items, pair.embeddings) + [judgement.note])
    if judgement.decision == "different person":
        raise typer.Exit(EXIT_NO_MATCH)


def _verify_by_sex(embedder, items, as_json: bool, population: dict) -> None:
    """A face and a voice weighed by the sex read from each (fvmatch.evidence.attributes): each reading, the LR, what it rests
    on; no decision."""
    from fvmatch.evidence.attributes import judgement, read_sex
    from fvmatch.analysis.matching import HEAD_SPACE

    readings, embeddings = {}, []
    for modality, path in items:
        embedding = (embedder.embed_face(path, spaces=[HEAD_SPACE["face"]])[0] if modality == "face"
                     else embedder.embed_voice(path, spaces=[HEAD_SPACE["voice"]]))
        readings[modality] = read_sex(modality, embedding.vectors, embedding.model_ids, embedding.quality)
        embeddings.append(embedding)
    judged = judgement(readings["face"], readings["voice"], population)
    if as_json:
        emit_json({"items": [{"modality": m, "path": str(p), "quality": e.quality} for (m, p), e in zip(items, embeddings)],
                   "model_id": embedder.model_id, "condition": None, "scoring": {"score": "sex evidence"},
                   "warning": None, **judged.to_dict()})
        return
    say_line(stdout, f"face-voice: {sex_evidence_words(judged)}")
    print_notes(item_notes(items, embeddings) + [judged.note])
