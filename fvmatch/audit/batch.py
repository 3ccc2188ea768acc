"""Scripted batch audits: a query file in, one JSON line per query out, resumable, never stopped by a bad row.

A query file is a CSV with the header `query_id,modality,path[,claimed_identity]`; paths are relative to the
file (and confined to `--root` when one is given, see fvmatch.paths). A row without a claim is answered like
`identify` (ranked candidates); a row with one like a verification of that claim (the claimed identity's best
item, scored exactly). Each answer or failure is one line of the results file, written and fsynced batch by
batch, so a killed run loses at most the batch in flight and re-running it answers only what is missing. The
query and results files themselves: fvmatch.audit.files.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fvmatch.audit.files import Query, ResultsFile
from fvmatch.errors import BadArgument, FvmatchError

BATCH_SIZE = 32


@dataclass
class AuditSummary:
    run_id: str
    queries: int = 0
    answered: int = 0  # in this run
    failed_now: int = 0  # in this run
    already_done: int = 0  # skipped: answered by an earlier run
    ok: int = 0  # in the results file, for this query file
    failed: int = 0
    matches: int | None = None  # ok results with decision "same person"; None when the model is uncalibrated
    seconds: float = 0.0
    repaired_bytes: int = 0
    answers: list[dict] = field(default_factory=list)  # this run's answers, short form, for the audit trail
    failures: list[dict] = field(default_factory=list)  # this run's failures

    def to_dict(self) -> dict:
        rate = self.answered / self.seconds if self.seconds > 0 else None
        return {"run_id": self.run_id, "queries": self.queries, "answered_now": self.answered,
                "failed_now": self.failed_now, "already_done": self.already_done, "ok": self.ok,
                "failed": self.failed, "matches": self.matches, "seconds": round(self.seconds, 3),
                "queries_per_second": None if rate is None else round(rate, 2), "repaired_bytes": self.repaired_bytes,
                "failures": self.failures}


def run_audit(gallery, embedder, queries: Sequence[Query], results: ResultsFile, against: str | None = None,
              top: int = 10, fmr: float = 0.01, retry_failed: bool = False, batch_size: int = BATCH_SIZE,
              space: str | None = None,
              progress: Callable[[int], None] | None = None, input_digest: Callable[[Path], tuple[str, int]] | None = None,
              fps: float = 2.0, population: dict | None = None) -> AuditSummary:
    """Answer every query not yet in `results` (failed ones too with `retry_failed`), appending batch by batch.
    A video row is answered for its face track and its soundtrack (`fps`: its frames sampled a second)."""
    results.check_model(embedder.model_id)
    summary = AuditSummary(run_id=uuid.uuid4().hex[:16], queries=len(queries), repaired_bytes=results.repaired_bytes)
    pending = []
    for query in queries:
        earlier = results.latest.get(query.key)
        if earlier is not None and (earlier.get("status") == "ok" or not retry_failed):
            summary.already_done += 1
        else:
            pending.append(query)
    if progress and summary.already_done:
        progress(summary.already_done)
    started = time.perf_counter()
    context = _Context(gallery, embedder, against, top, fmr, summary.run_id, input_digest, space, population)
    context.fps = fps
    for start in range(0, len(pending), batch_size):
        batch = pending[start : start + batch_size]
        records = context.answer(batch)
        results.append(records)
        for record in records:
            if record["status"] == "ok":
                summary.answered += 1
                top_one = record["candidates"][0] if record["candidates"] else {}
                summary.answers.append({"query_id": record["query_id"], "identity": top_one.get("identity"),
                                        "score": top_one.get("score"), "decision": record["decision"]})
            else:
                summary.failed_now += 1
                summary.failures.append({"item": record["origin"], "error": record["error"]})
        if progress:
            progress(len(batch))
    summary.seconds = time.perf_counter() - started
    final = [results.latest[query.key] for query in queries if query.key in results.latest]
    summary.ok = sum(record["status"] == "ok" for record in final)
    summary.failed = len(final) - summary.ok
    if embedder.calibration:
        summary.matches = sum(record["status"] == "ok" and record["decision"] == "same person" for record in final)
    return summary


def answer_query(gallery, embedder, modality: str, path: Path, claimed_identity: str | None = None,
                 against: str | None = None, top: int = 10, fmr: float = 0.01, query_id: str = "query",
                 space: str | None = None, population: dict | None = None) -> dict:
    """One query answered exactly as `audit run` answers a row: the same record, status "ok" or "failed"."""
    query = Query(query_id, 0, modality, str(path), Path(path), claimed_identity, str(path))
    return _Context(gallery, embedder, against, top, fmr, uuid.uuid4().hex[:16], None, space,
                    population).answer([query])[0]


class _Context:
    """What answering needs, fixed for a run: gallery, model, options, the calibration summary."""

    def __init__(self, gallery, embedder, against, top, fmr, run_id, input_digest, space=None,
                 population=None) -> None:
        from fvmatch.enrollment.enroll import file_digest

        self.gallery, self.embedder, self.against, self.top, self.fmr, self.run_id, self.space = (
            gallery, embedder, against, top, fmr, run_id, space)
        self.population = population  # of the sex evidence (fvmatch.evidence.attributes); None: equal sexes
        self.checked: dict[str, FvmatchError | None] = {}  # per query modality: what the gallery lacks for it
        self.digest = input_digest or file_digest
        self.counts = gallery.counts()
        from fvmatch.evidence.rules import cross_modal_scoring, joint_label, video_targets

        # per query modality, what it is weighed against (fvmatch.evidence.rules: only trial types whose evidence holds)
        self.parts, self.left_out = video_targets(against, self.counts, embedder.card, space)
        self.joint_warning = joint_label(embedder.card)
        self.cross_by = cross_modal_scoring(embedder.card, space)  # what scores face-voice trials, if anything
        calibration = embedder.calibration
        self.calibration = calibration
        from fvmatch.evidence.sex_fusion import SexFusion, rescorer

        # a pair encoder or the card's joint+sex fusion re-ranks face-voice searches, as identify does
        self.fused = rescorer(embedder, population=population)
        self.sex_fused = isinstance(self.fused, SexFusion)
        self.calibration_summary = None if not calibration else {
            "fmr": fmr, **{key: (embedder.card.get("calibration") or {}).get(key) for key in ("data", "split", "created")},
            "trial_types": sorted(key for key in calibration if isinstance(calibration[key], dict) and "map" in calibration[key]),
            "reference": sorted({entry["data"] for entry in calibration.values()
                                 if isinstance(entry, dict) and entry.get("reference")})}

    fps = 2.0  # a video row's frames sampled a second

    def targets(self, modality: str) -> list[str]:
        if modality == "video":  # its face track and soundtrack, each weighed against what holds for it
            return sorted({target for part in self.parts.values() for target in part})
        return self.parts[modality]

    def spaces(self, modality: str) -> list[str]:
        from fvmatch.analysis.matching import query_spaces

        return query_spaces(modality, self.targets(modality), self.space, self.cross_by, self.sex_fused)

    def pick(self, modality: str):
        """The spaces a question of a given measured quality needs (Embedder.embed_voice's `pick`)."""
        from fvmatch.analysis.matching import question_spaces

        return question_spaces(self.gallery, modality, self.targets(modality), self.space, self.cross_by,
                               self.sex_fused)

    def check_gallery(self, modality: str) -> None:
        """What the gallery lacks to answer a query of this modality (no items, missing vectors), found once."""
        from fvmatch.analysis.matching import check_gallery

        if modality not in self.checked:
            try:
                check_gallery(self.gallery, modality, self.targets(modality), self.space, self.cross_by)
                for name in self.spaces(modality):
                    self.gallery.check_space(name, self.embedder.space(name).model_id)
                self.checked[modality] = None
            except FvmatchError as error:
                self.checked[modality] = error
        if self.checked[modality] is not None:
            raise self.checked[modality]

    def answer(self, batch: Sequence[Query]) -> list[dict]:
        """Records for a batch, in its order: faces detected one by one then embedded in one forward pass;
        voices' speech found in batches, then embedded."""
        records: list[dict | None] = [None] * len(batch)
        prepared = []  # (position, record, embedding or None, prepared face or None, seconds spent)
        voices = []  # (position, record, seconds spent), embedded together after the loop
        for position, query in enumerate(batch):
            record = self._record(query)
            began = time.perf_counter()
            try:
                if query.problem is not None:
                    raise BadArgument(query.origin, query.problem)
                if (problem := query.file_problem()) is not None:
                    raise BadArgument(query.origin, problem)
                if query.modality == "video":
                    records[position] = self._answer_video(query, record, began)
                    continue
                if not any(self.counts[target] for target in self.targets(query.modality)):
                    from fvmatch.evidence.rules import require_targets

                    require_targets(query.modality, [], self.left_out, query.origin)
                self.check_gallery(query.modality)
                record["sha256"], record["size"] = self.digest(query.path)
                if query.modality == "voice":
                    voices.append((position, record, time.perf_counter() - began))
                else:
                    face = self.embedder.prepare_face(query.path, self.spaces("face"))[0]
                    record["quality"] = face.quality()
                    prepared.append((position, record, None, face, time.perf_counter() - began))
            except FvmatchError as error:
                records[position] = self._failed(record, self._problem(query, error),
                                                 query.problem_kind or type(error).__name__)
            except OSError as error:
                records[position] = self._failed(record, f"{query.raw_path}: cannot read file "
                                                 f"({error.strerror or error})", "OSError")
        if voices:
            began = time.perf_counter()
            embeddings = self.embedder.embed_voices([batch[position].path for position, _, _ in voices],
                                                    self.spaces("voice"), self.pick("voice"))
            share = (time.perf_counter() - began) / len(voices)  # the batch's work, split evenly
            for (position, record, seconds), embedding in zip(voices, embeddings):
                if isinstance(embedding, FvmatchError):
                    records[position] = self._failed(record, self._problem(batch[position], embedding),
                                                      type(embedding).__name__)
                else:
                    record["quality"] = embedding.quality
                    prepared.append((position, record, embedding, None, seconds + share))
        faces = [entry for entry in prepared if entry[3] is not None]
        shares: dict[int, tuple[object, float]] = {}
        if faces:
            began = time.perf_counter()
            spaces = self.spaces("face")
            vectors = self.embedder.embed_prepared_faces([entry[3] for entry in faces], spaces)
            share = (time.perf_counter() - began) / len(faces)  # the batch's forward passes, split evenly
            shares = {entry[0]: (self.embedder.face_embedding(batch[entry[0]].path, entry[3], face_vectors, spaces), share)
                      for entry, face_vectors in zip(faces, vectors)}
        for position, record, embedding, face, seconds in prepared:
            if face is not None:
                embedding, share = shares[position]
                seconds += share
            records[position] = self._answer(batch[position], record, embedding, seconds)
        return records

    @staticmethod
    def _problem(query: Query, error: FvmatchError) -> str:
        """The error's one line, naming the path as the query file wrote it."""
        return error.problem if error.item == query.origin else f"{query.raw_path}: {error.problem}"

    def _record(self, query: Query) -> dict:
        return {"query_id": query.query_id, "line": query.line, "origin": query.origin, "status": None,
                "task": "verify" if query.claimed_identity else "identify", "modality": query.modality,
                "path": query.raw_path, "resolved_path": None if query.path is None else str(query.path.resolve()),
                "sha256": None, "size": None, "claimed_identity": query.claimed_identity,
                "against": self.targets(query.modality) if query.modality in ("face", "voice", "video") else None,
                "quality": None, "candidates": [], "decision": None, "matches": [], "notes": [],
                "model_id": self.embedder.model_id, "calibration": self.calibration_summary,
                "run_id": self.run_id, "answered_at": None, "timing_ms": None, "error": None, "error_kind": None}

    def _failed(self, record: dict, problem: str, kind: str) -> dict:
        return {**record, "status": "failed", "error": problem, "error_kind": kind,
                "answered_at": _utc_now()}

    def _answer(self, query: Query, record: dict, embedding, embed_seconds: float) -> dict:
        from fvmatch.analysis.matching import ranked

        began = time.perf_counter()
        targets = self.targets(query.modality)
        groups, failure = self._groups(embedding, query, targets, record)
        if failure is not None:
            return failure
        notes = list(self.left_out)
        if query.claimed_identity and not groups:  # answered with what holds: nothing, and why
            notes.insert(0, f"no evidence: claimed identity {query.claimed_identity!r} has no {' or '.join(targets)} "
                            f"items to weigh this {query.modality} against")
        search_seconds = time.perf_counter() - began
        pairs = ranked(groups)
        judged = [j for _, j in pairs]
        listed = []
        for candidate, judgement in pairs:
            entry = {**candidate.to_dict(), **judgement.to_dict()}
            entry.pop("note")
            listed.append(entry)
        record = {**record, "trials": [{"trial_type": g.trial_type, "space": g.space, "model_id": g.model_id,
                                        "condition": g.condition, "scoring": g.scoring or {"score": "cosine"},
                                        "warning": g.warning} for g in groups]}
        matches = [c.identity for c, j in pairs if j.decision == "same person"]
        calibrated = any(j.decision is not None for j in judged)
        decision = None if not calibrated else ("same person" if matches else "different person")
        return {**record, "status": "ok", "candidates": listed, "decision": decision, "matches": matches,
                "notes": list(dict.fromkeys([*notes, *(j.note for j in judged)])), "answered_at": _utc_now(),
                "timing_ms": {"embed": round(embed_seconds * 1000, 2), "search": round(search_seconds * 1000, 2)}}


    def _groups(self, embedding, query: Query, targets: list[str], record: dict) -> tuple[list, dict | None]:
        """The trial groups answering one embedding, the claimed identity's scored exactly or an identification:
        (groups, None), or ([], the failed record) when the claimed identity is not enrolled."""
        from fvmatch.gallery.gallery import UnknownIdentity
        from fvmatch.analysis.matching import identify, verify_claim

        if not query.claimed_identity:
            return identify(self.gallery, embedding, targets, self.top, self.space, self.calibration, self.fmr,
                            self.fused, self.joint_warning, self.cross_by, self.population), None
        try:
            return verify_claim(self.gallery, embedding, query.claimed_identity, targets, self.space,
                                self.calibration, self.fmr, self.joint_warning, self.cross_by, self.population), None
        except UnknownIdentity:
            return [], self._failed(record, f"claimed identity {query.claimed_identity!r} is not enrolled",
                                    "UnknownIdentity")

    def _answer_video(self, query: Query, record: dict, began: float) -> dict:
        """A video row: its main face track and its soundtrack each searched (or scored against the claim), the
        candidates of both in one list (by likelihood ratio when every group is calibrated), each naming its part."""
        from fvmatch.analysis.matching import check_gallery, merged, query_spaces, question_spaces
        from fvmatch.spaces import spaces_of
        from fvmatch.analysis.video import embed_video
        from fvmatch.media.video import probe_video

        parts = {part: [target for target in self.parts[part] if self.counts[target]] for part in ("face", "voice")}
        if not any(parts.values()):
            from fvmatch.evidence.rules import require_targets

            require_targets("video's face or voice", [], self.left_out, query.origin)
        spaces = {}
        for part, targets in parts.items():
            if targets:
                check_gallery(self.gallery, part, targets, self.space, self.cross_by)
            spaces[part] = query_spaces(part, targets, self.space, self.cross_by, self.sex_fused) if targets else []
            for name in spaces[part]:
                self.gallery.check_space(name, self.embedder.space(name).model_id)
        record["sha256"], record["size"] = self.digest(query.path)
        evidence = embed_video(self.embedder, query.path, fps=self.fps, face_spaces=spaces["face"] or spaces_of("face")[:1],
                               voice_spaces=spaces["voice"],
                               voice_pick=question_spaces(self.gallery, "voice", parts["voice"], self.space,
                                                          self.cross_by, self.sex_fused),
                               info=probe_video(query.path, audio_track=query.audio_track), face_track=query.face_track)
        embed_seconds = time.perf_counter() - began
        began = time.perf_counter()
        answered = []  # (part, group)
        for embedding in evidence.embeddings():
            if not parts[embedding.modality]:
                continue
            part = "face track" if embedding.modality == "face" else "soundtrack"
            found, failure = self._groups(embedding, query, parts[embedding.modality], record)
            if failure is not None:
                return failure
            answered.extend((part, group) for group in found)
        search_seconds = time.perf_counter() - began
        groups = [group for _, group in answered]
        triples = [(part, c, j) for part, g in answered for c, j in zip(g.candidates, g.judgements)]
        if merged(groups):
            triples.sort(key=lambda t: (-t[2].log10_lr, t[1].identity))
        listed = []
        for part, candidate, judgement in triples:
            entry = {**candidate.to_dict(), **judgement.to_dict(), "query": part}
            entry.pop("note")
            listed.append(entry)
        matches = sorted({c.identity for _, c, j in triples if j.decision == "same person"})
        calibrated = any(j.decision is not None for _, _, j in triples)
        return {**record, "status": "ok", "quality": {"face": evidence.face.quality if evidence.face else None,
                                                      "voice": evidence.voice.quality if evidence.voice else None},
                "video": evidence.provenance(),
                "trials": [{"query": part, "trial_type": g.trial_type, "space": g.space, "model_id": g.model_id,
                            "condition": g.condition, "scoring": g.scoring or {"score": "cosine"}, "warning": g.warning}
                           for part, g in answered],
                "candidates": listed, "matches": matches,
                "decision": None if not calibrated else ("same person" if matches else "different person"),
                "notes": list(dict.fromkeys([*self.left_out, *(j.note for _, _, j in triples), *evidence.notes])),
                "answered_at": _utc_now(),
                "timing_ms": {"embed": round(embed_seconds * 1000, 2), "search": round(search_seconds * 1000, 2)}}


def _utc_now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
