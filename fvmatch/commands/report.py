"""`fvmatch report`: a self-contained HTML report of one audit run's results, or of one query answered now."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (GalleryOption, JsonOption, ModelOption, PopulationOption, app, audit, emit_json,
                                     open_gallery, population_option, stdout)
from fvmatch.errors import BadArgument


@app.command()
def report(
    out: Path = typer.Option(..., "--out", help="The HTML file to write (replaced atomically, owner-only)."),
    results: Optional[Path] = typer.Option(None, "--results", help="Results of `fvmatch audit run` (JSON lines)."),
    query_ids: list[str] = typer.Option([], "--query-id", help="With --results: a query to detail (repeatable)."),
    detail_limit: Optional[int] = typer.Option(None, "--detail-limit", min=0,
                                               help="With --results: queries detailed at most (default 50)."),
    face: Optional[Path] = typer.Option(None, "--face", help="Answer this face image now and report it."),
    voice: Optional[Path] = typer.Option(None, "--voice", help="Answer this voice recording now and report it."),
    video: Optional[Path] = typer.Option(None, "--video", help="Answer this video now (its face track and soundtrack) "
                                         "and report it."),
    claim: Optional[str] = typer.Option(None, "--claim", help="With --face/--voice: verify this claimed identity."),
    against: Optional[str] = typer.Option(None, "--against", help="face, voice or all (default: every "
                                          "trial type whose evidence holds on real people, as identify)."),
    top: Optional[int] = typer.Option(None, "--top", "-k", min=1, max=1000, help="Identities listed (default 10)."),
    fmr: Optional[float] = typer.Option(None, "--fmr", help="Decision's false-match rate (0.01 default, or 0.001)."),
    population: Optional[str] = PopulationOption,
    gallery_path: Path = GalleryOption,
    model: Optional[Path] = ModelOption,
    as_json: bool = JsonOption,
) -> None:
    """Write one self-contained HTML report: of an audit run (--results) or of one query answered now (--face/--voice).

    Queries, candidates with their enrolled faces, scores, log10 LR, decisions and the calibration's score plots.

    Also the model card, the gallery and the audit rows; its sha256 goes into the trail (on a read-only gallery,
    into --audit-log, which it then needs). Exit 0 written, 2 bad input.
    """
    if sum([results is not None, face is not None, voice is not None, video is not None]) != 1:
        raise BadArgument("report", "give one of: --results RESULTS.jsonl, --face IMG, --voice AUDIO, --video FILE")
    from fvmatch.case_report.output import check_out

    check_out(out)
    if results is not None:
        given = [name for name, value in (("--claim", claim), ("--against", against), ("--top", top), ("--fmr", fmr),
                                          ("--population", population)) if value is not None]
        if given:
            raise BadArgument(given[0], "applies to --face/--voice (the options of an audit run are in its results)")
        if out.resolve() == results.resolve():
            raise BadArgument(out, "--out must not be the results file")
        document = _audit_run_report(results, list(query_ids), 50 if detail_limit is None else detail_limit, out,
                                     gallery_path, model)
    else:
        if query_ids or detail_limit is not None:
            raise BadArgument("--query-id" if query_ids else "--detail-limit", "applies to --results")
        if against not in (None, "face", "voice", "all"):
            raise BadArgument("--against", f"{against!r} is not one of face, voice, all")
        modality, path = ("face", face) if face is not None else ("voice", voice) if voice is not None else ("video", video)
        if out.resolve() == path.resolve():
            raise BadArgument(out, "--out must not be the query file")
        document = _query_report(modality, path, claim, against, 10 if top is None else top,
                                 0.01 if fmr is None else fmr, out, gallery_path, model, population_option(population))
    if as_json:
        emit_json(document)
    else:
        count, failed = len(document["queries"]), sum(q["status"] == "failed" for q in document["queries"])
        stdout.print(f"wrote {out} ({document['bytes']:,} bytes, sha256 {document['sha256'][:16]}…): "
                     f"{count} {'query' if count == 1 else 'queries'} ({failed} failed), "
                     f"{len(document['detailed'])} in detail; "
                     f"audit row {document['audit_row']}"
                     + (f" of the audit log {document['audit_log']}" if document["audit_log"] else ""),
                     highlight=False, markup=False, soft_wrap=True)


def _audit_run_report(results_path: Path, query_ids: list[str], detail_limit: int, out: Path, gallery_path: Path,
                      model: Optional[Path]) -> dict:
    from fvmatch.case_report import (answer_summary, calibration_findings, check_model, read_results, render_report,
                                     run_rows, select_details, write_report)
    from fvmatch.analysis.embedder import embedder_for_gallery

    results = read_results(results_path)
    with open_gallery(gallery_path) as gallery:
        check_model(results, gallery)
        trail = run_rows(gallery, results)
        detailed = select_details(results.records, query_ids, detail_limit, results_path)
        embedder = embedder_for_gallery(gallery, model)
        findings = calibration_findings(results.records, embedder.card) + trail.findings
        source = {"label": "results file", "path": str(results_path.resolve()), "sha256": results.sha256}
        page = render_report(results.records, gallery, embedder.card, trail.rows, kind="audit run", source=source,
                             detailed=detailed, verdicts=trail.verdicts, findings=findings, arguments=sys.argv[1:])
        sha256, size = write_report(page, out)
        document = _document(out, sha256, size, "audit run", gallery_path, embedder.model_id, results.records,
                             detailed, findings, answer_summary)
        document["run_ids"] = results.run_ids
        document["audit_rows_shown"] = [row["id"] for row in trail.rows]
        row = audit(gallery, "report", [{"path": source["path"], "sha256": results.sha256}],
                    {"report": {"path": document["report"], "sha256": sha256}, "kind": "audit run",
                     "run_ids": results.run_ids, "query_ids": [r["query_id"] for r in results.records],
                     "detailed": document["detailed"]}, embedder.model_id)
    document["audit_row"], document["audit_log"] = row["id"], _log_of(gallery)
    return document


def _log_of(gallery) -> str | None:
    """The audit log file that holds this report's rows instead of the gallery's trail (a read-only gallery's)."""
    return str(gallery.audit_log) if gallery.read_only else None


def _query_report(modality: str, path: Path, claim: Optional[str], against: Optional[str], top: int, fmr: float,
                  out: Path, gallery_path: Path, model: Optional[Path], population: dict | None = None) -> dict:
    from fvmatch.audit.batch import answer_query
    from fvmatch.case_report import answer_summary, render_report, write_report
    from fvmatch.analysis.embedder import embedder_for_gallery

    with open_gallery(gallery_path) as gallery:
        embedder = embedder_for_gallery(gallery, model)
        record = answer_query(gallery, embedder, modality, path, claimed_identity=claim, against=against, top=top,
                              fmr=fmr, query_id=path.name, population=population)
        if record["status"] != "ok":
            raise BadArgument(path, record["error"])
        inputs = [{"path": record["resolved_path"], "sha256": record["sha256"],
                   **({"video": record["video"]} if record.get("video") else {})}]
        # the query's answer goes into the trail first, so that the report can show the row that produced it
        answered = audit(gallery, "report query", inputs,
                         {"run_id": record["run_id"], "modality": modality, "task": record["task"],
                          "claimed_identity": claim, "against": record["against"], "decision": record["decision"],
                          "candidates": [{"identity": c["identity"], "score": c["score"], "log10_lr": c["log10_lr"],
                                          "decision": c["decision"]} for c in record["candidates"]]},
                         embedder.model_id)
        source = {"label": "query file", "path": record["resolved_path"], "sha256": record["sha256"]}
        page = render_report([record], gallery, embedder.card, [answered], kind="query", source=source,
                             detailed=[record], arguments=sys.argv[1:])
        sha256, size = write_report(page, out)
        document = _document(out, sha256, size, "query", gallery_path, embedder.model_id, [record], [record], [],
                             answer_summary)
        document["query_audit_row"] = answered["id"]
        row = audit(gallery, "report", inputs,
                    {"report": {"path": document["report"], "sha256": sha256}, "kind": "query",
                     "query_audit_row": answered["id"], "query_ids": [record["query_id"]],
                     "detailed": document["detailed"]}, embedder.model_id)
    document["audit_row"], document["audit_log"] = row["id"], _log_of(gallery)
    return document


def _document(out: Path, sha256: str, size: int, kind: str, gallery_path: Path, model_id: str, records: list[dict],
              detailed: list[dict], findings: list[str], summary) -> dict:
    return {"report": str(out.resolve()), "sha256": sha256, "bytes": size, "kind": kind, "gallery": str(gallery_path),
            "model_id": model_id, "queries": [summary(record) for record in records],
            "detailed": [record["query_id"] for record in detailed], "findings": findings}
