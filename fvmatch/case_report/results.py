"""An audit's results file read back for a report, without changing it, and checked against the gallery.

`fvmatch.audit.files.ResultsFile` repairs a partial last line on open, which a report must never do to evidence:
this reader only reads, and refuses what is not a complete fvmatch results file. The checks name what a report
must not hide: results from another model (refused), results of no audit run recorded in this gallery's trail
(refused), and lines that disagree with what the trail recorded when they were answered (shown, per query).
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fvmatch.audit.files import parse_results
from fvmatch.errors import BadArgument, ModelMismatch
from fvmatch.paths import input_file_problem

RUN_COMMAND = "audit run"
SCORE_TOLERANCE = 1e-6  # the trail stores scores rounded to 6 decimals, as the results file does


@dataclass
class Results:
    """A results file as read: its records (the latest per query, in query-file order) and its sha256."""

    path: Path
    records: list[dict]
    sha256: str
    size: int

    @property
    def run_ids(self) -> list[str]:
        return sorted({record["run_id"] for record in self.records})


@dataclass
class TrailCheck:
    """What the gallery's audit trail says about a results file: the audit-run rows that produced it, findings
    for the reader, and one verdict per record ("matches the trail", "differs from the trail: ...", None)."""

    rows: list[dict]
    findings: list[str] = field(default_factory=list)
    verdicts: list[str | None] = field(default_factory=list)


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def read_results(path: str | Path) -> Results:
    """The records of an `audit run` results file, the latest per query (as a resumed run sees them).

    BadArgument naming the file when it is missing, empty, cut short (an interrupted run) or not fvmatch results.
    """
    path = Path(path)
    if not path.is_file():
        raise BadArgument(path, "no such results file" if not path.exists() else input_file_problem(path))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise BadArgument(path, f"cannot read the results file ({error.strerror or error})") from None
    if not data.strip():
        raise BadArgument(path, "holds no results")
    if not data.endswith(b"\n"):
        raise BadArgument(path, "ends in a partial line (an interrupted audit run): run the same `fvmatch audit run` "
                                "again to complete it, then report")
    latest = parse_results(path, data, "is this the --out of `fvmatch audit run`?")
    if not all(isinstance(record.get("run_id"), str) for record in latest.values()):
        raise BadArgument(path, "a result carries no run id: is this the --out of `fvmatch audit run`?")
    records = sorted(latest.values(), key=lambda record: record["line"])
    return Results(path, records, hashlib.sha256(data).hexdigest(), len(data))


def check_model(results: Results, gallery) -> None:
    """ModelMismatch when any record was answered by a model other than the gallery's pinned one."""
    others = sorted({record["model_id"] for record in results.records} - {gallery.model_id})
    if others:
        raise ModelMismatch(results.path, f"holds results from model {others[0][:16]}, but the gallery is pinned to "
                                          f"{gallery.model_id[:16]}; report with the gallery the audit ran against")


def run_rows(gallery, results: Results) -> TrailCheck:
    """The gallery's `audit run` rows that produced these results, checked against them.

    BadArgument when none of the results' runs is in the trail (results of another gallery, or not of an audit).
    A run without a row (interrupted before it could append one) and a results file whose sha256 no audit run
    recorded are findings; each ok record is compared with the answer its run's row recorded.
    """
    from fvmatch.audit.trail import audit_rows

    wanted = set(results.run_ids)
    rows = [row for row in audit_rows(gallery, command=RUN_COMMAND)
            if isinstance(row["result"], dict) and row["result"].get("run_id") in wanted]
    if not rows:
        raise BadArgument(results.path, f"none of its audit runs ({', '.join(sorted(wanted)[:3])}"
                                        f"{', ...' if len(wanted) > 3 else ''}) is in the audit trail of "
                                        f"{gallery.directory}: these are not results of an audit on this gallery")
    check = TrailCheck(rows)
    found = {row["result"]["run_id"] for row in rows}
    for run_id in sorted(wanted - found):
        count = sum(record["run_id"] == run_id for record in results.records)
        check.findings.append(f"run {run_id} answered {count} of these queries but has no audit-run row in the trail "
                              "(interrupted before it could append one, or results written elsewhere)")
    recorded = [row for row in rows if _recorded_sha256(row) == results.sha256]
    if recorded:
        check.findings.append(f"the results file is byte for byte the one audit-run row {recorded[-1]['id']} "
                              f"recorded (sha256 {results.sha256[:16]}…)")
    else:
        check.findings.append(f"WARNING: the results file (sha256 {results.sha256[:16]}…) matches none of the "
                              "results files the audit-run rows recorded: it was changed, or appended to by an "
                              "interrupted run, after the last recorded run")
    answers = {}
    for row in rows:
        for answer in row["result"].get("answers") or []:
            if isinstance(answer, dict):
                answers[(row["result"]["run_id"], answer.get("query_id"))] = answer
    for record in results.records:
        answer = answers.get((record["run_id"], record["query_id"]))
        if record["status"] != "ok" or answer is None:
            check.verdicts.append(None)
            continue
        check.verdicts.append(_compare(record, answer))
    differing = sum(bool(verdict and verdict.startswith("differs")) for verdict in check.verdicts)
    if differing:
        check.findings.append(f"WARNING: {differing} answer(s) in the results file differ from what the audit trail "
                              "recorded when they were answered (see the trail column)")
    return check


def _recorded_sha256(row: dict) -> str | None:
    recorded = row["result"].get("results")
    return recorded.get("sha256") if isinstance(recorded, dict) else None


def _compare(record: dict, answer: dict) -> str:
    top = record["candidates"][0] if record["candidates"] else {}
    problems = []
    if top.get("identity") != answer.get("identity"):
        problems.append(f"top candidate {top.get('identity')!r} here, {answer.get('identity')!r} in the trail")
    score = answer.get("score")
    if _number(score) and _number(top.get("score")) and abs(top["score"] - score) > SCORE_TOLERANCE:
        problems.append(f"score {top['score']} here, {score} in the trail")
    if record.get("decision") != answer.get("decision"):
        problems.append(f"decision {record.get('decision')!r} here, {answer.get('decision')!r} in the trail")
    return "differs from the trail: " + "; ".join(problems) if problems else "matches the trail"


def select_details(records: Sequence[dict], query_ids: Sequence[str], limit: int, source: object) -> list[dict]:
    """The records that get a detailed section: those named (every record with that query id), else the first
    `limit` answered ones in query-file order. BadArgument for an unknown id or more ids than `limit`."""
    if not query_ids:
        return [record for record in records if record["status"] == "ok"][:limit]
    wanted = list(dict.fromkeys(query_ids))
    if len(wanted) > limit:
        raise BadArgument("--query-id", f"{len(wanted)} queries named, more than --detail-limit {limit}")
    known = {record["query_id"] for record in records}
    unknown = [query_id for query_id in wanted if query_id not in known]
    if unknown:
        raise BadArgument("--query-id", f"{unknown[0]!r} is not a query of {source}")
    return [record for record in records if record["query_id"] in set(wanted)]


def calibration_findings(records: Sequence[dict], card: dict) -> list[str]:
    """Say so when the results were answered under another calibration than the report reads: another of the
    model card's own, or other reference calibrations of fvmatch (fvmatch.evidence.rules.effective_calibration)."""
    from fvmatch.evidence.rules import effective_calibration

    findings = []
    answered = [record.get("calibration") or {} for record in records if record["status"] == "ok"]
    current = (card.get("calibration") or {}).get("created")
    others = sorted({summary.get("created") for summary in answered} - {current}, key=str)
    if others:
        now = f"calibration created {current}" if current else "no calibration"
        then = ", ".join(f"calibration created {created}" if created else "no calibration" for created in others)
        findings.append(f"WARNING: some results were answered under {then}; the model card read for this report has "
                        f"{now}, and the score plots use the card's (give the checkpoint the audit used with --model)")
    references = sorted({entry["data"] for entry in effective_calibration(card).values()
                         if isinstance(entry, dict) and entry.get("reference") and entry.get("data")})
    then = {tuple(summary["reference"]) for summary in answered if isinstance(summary.get("reference"), list)}
    if then - {tuple(references)}:
        findings.append(f"WARNING: some results were answered under fvmatch reference calibrations "
                        f"({'; '.join(', '.join(used) or 'none' for used in sorted(then - {tuple(references)}))}) "
                        f"other than this fvmatch's ({', '.join(references) or 'none'}), which the score plots use")
    return findings


def answer_summary(record: dict) -> dict:
    """A record in short: what the JSON output and the audit trail keep of it."""
    top = record["candidates"][0] if record.get("candidates") else {}
    return {"query_id": record["query_id"], "line": record["line"], "status": record["status"],
            "identity": top.get("identity"), "score": top.get("score"), "log10_lr": top.get("log10_lr"),
            "decision": record.get("decision"), "error": record.get("error")}
