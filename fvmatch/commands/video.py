"""identify --video and verify --video: a video's face track and soundtrack as two questioned items.

The commands in analyst.py hand over here when given --video; everything else (search, scoring, calibration, the
audit trail) is the same as for a photo and a recording.
"""
from __future__ import annotations

from pathlib import Path

import typer

from fvmatch.commands.common import audit, emit_json, file_input, say_line, stdout, video_evidence
from fvmatch.errors import EXIT_NO_MATCH, BadArgument

PART = {"face": "face track", "voice": "soundtrack"}


def identify_video(path: Path, fps: float, against: str | None, top: int, space: str | None, fmr: float,
                   gallery, embedder, gallery_path: Path, as_json: bool, rescore_top: int = 50,
                   population: dict | None = None, audio_track: int | None = None,
                   face_track: int | None = None) -> None:
    """Search the gallery with the video's main face track and its soundtrack, each against `against` (default
    both modalities), one group per (part, trial type)."""
    from fvmatch.commands.answers import print_group, print_notes
    from fvmatch.evidence.rules import cross_modal_scoring, joint_label, video_targets
    from fvmatch.analysis.matching import (check_gallery, identify as identify_query, merged, query_spaces,
                                           question_spaces, ranked)
    from fvmatch.spaces import SPACE_MODALITIES, spaces_of

    if space is not None and space not in SPACE_MODALITIES:
        raise BadArgument("--space", f"{space!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    counts = gallery.counts()
    parts, left_out = video_targets(against, counts, embedder.card, space)
    targets = sorted({target for part in parts.values() for target in part})
    if not targets:
        asked = ["face", "voice"] if against in (None, "all") else [against]
        raise BadArgument(gallery.directory, "; ".join([f"nothing of this video can be weighed against the gallery's "
                                                        f"{' or '.join(asked)} items", *left_out]))
    cross_by = cross_modal_scoring(embedder.card, space)
    from fvmatch.evidence.sex_fusion import SexFusion, rescorer

    # a pair encoder, or the card's joint+sex fusion, re-ranks a joint search; None: its cosines as they are
    fused = rescorer(embedder, rescore_top, population)
    sex_fused = isinstance(fused, SexFusion)
    spaces = {m: query_spaces(m, parts[m], space, cross_by, sex_fused) if parts[m] else [] for m in parts}
    for modality in parts:
        if parts[modality]:
            check_gallery(gallery, modality, [t for t in parts[modality] if counts[t]] or parts[modality], space,
                          cross_by)
    for name in {name for names in spaces.values() for name in names}:
        gallery.check_space(name, embedder.space(name).model_id)
    evidence = video_evidence(embedder, path, fps, face_spaces=spaces["face"] or spaces_of("face")[:1],
                              voice_spaces=spaces["voice"],
                              voice_pick=question_spaces(gallery, "voice", parts["voice"], space, cross_by, sex_fused),
                              audio_track=audio_track, face_track=face_track)
    answered = []  # (part, groups)
    for query in evidence.embeddings():
        if parts[query.modality]:
            answered.append((query, identify_query(gallery, query, parts[query.modality], top, space,
                                                   embedder.calibration, fmr, fused, joint_label(embedder.card),
                                                   cross_by, population)))
    groups = [group for _, found in answered for group in found]
    audit(gallery, "identify", [{**file_input(path), "video": evidence.provenance()}],
          {"modality": "video", "against": targets,
           "trials": [{"query": PART[query.modality], "trial_type": g.trial_type, "space": g.space,
                       "model_id": g.model_id, "condition": g.condition, "scoring": g.scoring or {"score": "cosine"},
                       "candidates": [{"identity": c.identity, "score": round(c.score, 6)} for c in g.candidates]}
                      for query, found in answered for g in found], "left_out": left_out},
          embedder.model_id)
    listed = ranked(groups)
    if as_json:
        emit_json({"query": {"modality": "video", "path": str(path), "sha256": evidence.sha256,
                             "video": evidence.info.figures(), "notes": evidence.notes,
                             "face_quality": evidence.face.quality if evidence.face is not None else None,
                             "voice_quality": evidence.voice.quality if evidence.voice is not None else None},
                   "against": targets, "model_id": embedder.model_id, "gallery": str(gallery_path),
                   "trials": [{"query": PART[query.modality], **group.to_dict()} for query, found in answered
                              for group in found], "left_out": left_out,
                   "merged_by_likelihood_ratio": merged(groups),
                   "candidates": [{**c.to_dict(), **j.to_dict()} for c, j in listed]})
    else:
        for query, found in answered:
            for group in found:
                print_group(f"video {path}, {PART[query.modality]}", group)
        print_notes([j.note for _, j in listed] + left_out)
    calibrated = [j for _, j in listed if j.decision is not None]
    if calibrated and not any(j.decision == "same person" for j in calibrated):
        raise typer.Exit(EXIT_NO_MATCH)


def verify_video(videos: list[Path], others: list[tuple[str, Path]], fps: float, space: str | None, fmr: float,
                 embedder, as_json: bool, population: dict | None = None, face_track: int | None = None,
                 audio_track: int | None = None) -> None:
    """A video alone: does its on-screen face belong with its soundtrack (joint space)? A video with a face, a voice
    or another video: every trial between the two sides' items, each in its trial type's space."""
    from fvmatch.commands.answers import print_notes, sex_evidence_words
    from fvmatch.evidence.attributes import ATTRIBUTE_SPACE, DEFAULT_POPULATION, judgement as sex_judgement, read_sex
    from fvmatch.evidence.rules import cross_modal_refusal, cross_modal_scoring, joint_label
    from fvmatch.calibration.scoring import judge
    from fvmatch.spaces import JOINT, SPACE_MODALITIES, space_for, spaces_of, trial_type

    if space is not None and space not in SPACE_MODALITIES:
        raise BadArgument("--space", f"{space!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    cross_by = cross_modal_scoring(embedder.card, space)  # what scores its face-voice trials, if anything
    if len(videos) == 1 and not others and cross_by is None:  # its face against its soundtrack: face-voice alone
        raise BadArgument(videos[0], cross_modal_refusal(embedder.card))
    calibration = embedder.calibration
    first = video_evidence(embedder, videos[0], fps, audio_track=audio_track, face_track=face_track)
    left = [(f"video {videos[0]} {PART[e.modality]}", e) for e in first.embeddings()]
    if len(videos) == 2:
        second = video_evidence(embedder, videos[1], fps)
        right = [(f"video {videos[1]} {PART[e.modality]}", e) for e in second.embeddings()]
    elif others:
        modality, other = others[0]
        right = [(f"{modality} {other}", embedder.embed_face(other, spaces=spaces_of("face"))[0] if modality == "face"
                  else embedder.embed_voice(other, spaces=spaces_of("voice")))]
    else:  # the video alone: its face against its soundtrack
        chosen = space or JOINT
        if space is not None and set(SPACE_MODALITIES.get(chosen, ())) != {"face", "voice"}:
            raise BadArgument("--space", f"the {chosen} space cannot score a face against a voice")
        right = [(label, e) for label, e in left if e.modality == "voice"]
        left = [(label, e) for label, e in left if e.modality == "face"]
        if not left or not right:
            raise BadArgument(videos[0], "the video gives no " + ("face" if not left else "speech") + " to compare "
                              f"with its {'soundtrack' if not left else 'face'} ({'; '.join(first.notes)})")
    trials, left_out = [], []
    for left_label, a in left:
        for right_label, b in right:
            if a.modality != b.modality and cross_by is None:
                left_out = [f"face-voice trials left out: {cross_modal_refusal(embedder.card)}"]
                continue
            if a.modality != b.modality and cross_by == ATTRIBUTE_SPACE:
                face, voice = (a, b) if a.modality == "face" else (b, a)
                judged = sex_judgement(read_sex("face", face.vectors, face.model_ids, face.quality),
                                       read_sex("voice", voice.vectors, voice.model_ids, voice.quality),
                                       population or DEFAULT_POPULATION)
                trials.append((left_label, right_label, ATTRIBUTE_SPACE, judged.score, judged))
                continue
            try:
                chosen = space_for(a.modality, b.modality, space)
            except BadArgument:
                continue  # --space names a space that cannot score this pair
            score = float(a.vectors[chosen] @ b.vectors[chosen])
            judgement = judge(score, trial_type(a.modality, b.modality), calibration, fmr, chosen,
                              embedder.space(chosen).model_id)
            trials.append((left_label, right_label, chosen, score, judgement))
    if not trials:
        raise BadArgument("verify", "; ".join(["no trial between these items can be scored"
                                               + (f" in the {space} space" if space else ""), *left_out]))
    warning = joint_label(embedder.card) if any(chosen == JOINT for _, _, chosen, _, _ in trials) else None
    if as_json:
        emit_json({"items": [{"path": str(p), "modality": "video"} for p in videos]
                   + [{"path": str(p), "modality": m} for m, p in others],
                   "model_id": embedder.model_id,
                   "trials": [{"first": l, "second": r, "space": chosen, **j.to_dict()} for l, r, chosen, _, j in trials],
                   "warning": warning, "notes": first.notes + left_out})
    else:
        for left_label, right_label, chosen, score, judgement in trials:
            if judgement.readings:  # sex evidence
                say_line(stdout, f"face-voice: {left_label} vs {right_label}: {sex_evidence_words(judgement)}")
                continue
            say_line(stdout, f"{judgement.trial_type}: {left_label} vs {right_label}: score {score:.4f} (cosine in the "
                             f"{chosen} space; model {embedder.space(chosen).model_id[:16]})")
            if judgement.decision is not None:
                stdout.print(f"  log10 LR {judgement.log10_lr:+.2f} ({judgement.verbal}); decision: {judgement.decision}",
                             highlight=False)
        if warning:
            say_line(stdout, f"WARNING: {warning}")
        print_notes([j.note for *_, j in trials] + left_out)
    decided = [j for *_, j in trials if j.decision is not None]
    if decided and not any(j.decision == "same person" for j in decided):
        raise typer.Exit(EXIT_NO_MATCH)


def verify_video_claim(path: Path, claim: str, fps: float, space: str | None, fmr: float, gallery, embedder,
                       as_json: bool, population: dict | None = None, face_track: int | None = None,
                       audio_track: int | None = None) -> None:
    """Is the person of this video the claimed identity? Its face track and soundtrack each scored against the
    identity's best item of each modality (exactly, not searched), one line per part and trial type."""
    from fvmatch.commands.answers import print_notes, sex_evidence_words
    from fvmatch.evidence.rules import cross_modal_scoring, joint_label, video_targets
    from fvmatch.gallery.gallery import UnknownIdentity
    from fvmatch.analysis.matching import describe_condition, query_spaces, question_spaces, verify_claim
    from fvmatch.spaces import SPACE_MODALITIES, spaces_of

    if space is not None and space not in SPACE_MODALITIES:
        raise BadArgument("--space", f"{space!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    if not gallery.has_identity(claim):
        raise UnknownIdentity(claim, "no such identity in the gallery")
    parts, left_out = video_targets(None, gallery.counts(), embedder.card, space)
    cross_by = cross_modal_scoring(embedder.card, space)
    spaces = {m: query_spaces(m, parts[m], space, cross_by) if parts[m] else [] for m in parts}
    for name in {name for names in spaces.values() for name in names}:
        gallery.check_space(name, embedder.space(name).model_id)
    evidence = video_evidence(embedder, path, fps, face_spaces=spaces["face"] or spaces_of("face")[:1],
                              voice_spaces=spaces["voice"],
                              voice_pick=question_spaces(gallery, "voice", parts["voice"], space, cross_by),
                              audio_track=audio_track, face_track=face_track)
    answered = [(query, group) for query in evidence.embeddings() if parts[query.modality]
                for group in verify_claim(gallery, query, claim, parts[query.modality], space, embedder.calibration,
                                          fmr, joint_label(embedder.card), cross_by, population)]
    if not answered:
        raise BadArgument(claim, "; ".join(["the claimed identity has no item this video's face track or soundtrack "
                                            "can be weighed against", *left_out]))
    audit(gallery, "verify", [{**file_input(path), "video": evidence.provenance()}],
          {"modality": "video", "claimed_identity": claim,
           "trials": [{"query": PART[q.modality], "trial_type": g.trial_type, "space": g.space, "model_id": g.model_id,
                       "score": round(g.candidates[0].score, 6), "decision": g.judgements[0].decision}
                      for q, g in answered]}, embedder.model_id)
    if as_json:
        emit_json({"video": str(path), "sha256": evidence.sha256, "claimed_identity": claim,
                   "notes": evidence.notes + left_out, "model_id": embedder.model_id,
                   "trials": [{"query": PART[q.modality], "trial_type": g.trial_type, "space": g.space,
                               "model_id": g.model_id, "condition": g.condition, "warning": g.warning,
                               **g.candidates[0].to_dict(), **g.judgements[0].to_dict()} for q, g in answered]})
    else:
        for query, group in answered:
            candidate, judgement = group.candidates[0], group.judgements[0]
            if judgement.readings:  # sex evidence
                say_line(stdout, f"face-voice: video {path} {PART[query.modality]} vs {claim}'s "
                                 f"{candidate.modality} ({candidate.source_path}): {sex_evidence_words(judgement)}")
                continue
            say_line(stdout, f"{group.trial_type}: video {path} {PART[query.modality]} vs {claim}'s best "
                             f"{candidate.modality} ({candidate.source_path}): score {candidate.score:.4f} (cosine in "
                             f"the {group.space} space; model {group.model_id[:16]}); {describe_condition(group.condition)}")
            if judgement.decision is not None:
                stdout.print(f"  log10 LR {judgement.log10_lr:+.2f} ({judgement.verbal}); decision: {judgement.decision}",
                             highlight=False)
            if group.warning:
                say_line(stdout, f"  WARNING: {group.warning}")
        print_notes([g.judgements[0].note for _, g in answered] + left_out)
    decided = [g.judgements[0] for _, g in answered if g.judgements[0].decision is not None]
    if decided and not any(j.decision == "same person" for j in decided):
        raise typer.Exit(EXIT_NO_MATCH)
