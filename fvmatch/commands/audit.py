"""The audit commands: `audit run` (scripted batch audit over a query file) and `audit log` (the hash-chained trail)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (FmrOption, FpsOption, GalleryOption, JsonOption, MinBandwidthOption, MinFacePxOption,
                                     MinSnrOption, ModelOption, PopulationOption, RootOption, SpaceOption, app, audit,
                                     emit_json, population_option,
                                     file_input, gallery_access_of_this_run, open_gallery, quality_minimums, say_line,
                                     stderr, stdout)
from fvmatch.errors import EXIT_BAD_INPUT, BadArgument, FvmatchError

audit_app = typer.Typer(help="Batch audits and the gallery's tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("run")
def audit_run(
    queries_file: Path = typer.Option(..., "--queries", help="CSV: query_id,modality,path[,claimed_identity]; "
                                                             "paths relative to it."),
    out: Path = typer.Option(..., "--out", help="Results, one JSON line per query; appended to when it exists."),
    against: Optional[str] = typer.Option(None, "--against", help="face, voice or all (default: every "
                                          "trial type whose evidence holds on real people, as identify)."),
    top: int = typer.Option(10, "--top", "-k", min=1, max=1000, help="Identities listed per query."),
    space: Optional[str] = SpaceOption,
    fmr: float = FmrOption,
    population: Optional[str] = PopulationOption,
    root: Optional[Path] = RootOption,
    retry_failed: bool = typer.Option(False, "--retry-failed", help="Answer again the queries that failed before."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, max=1024, help="Queries embedded per batch."),
    fps: float = FpsOption,
    gallery_path: Path = GalleryOption,
    model: Optional[Path] = ModelOption,
    min_face_px: Optional[float] = MinFacePxOption,
    min_snr: Optional[float] = MinSnrOption,
    min_bandwidth: Optional[float] = MinBandwidthOption,
    as_json: bool = JsonOption,
) -> None:
    """Answer every query of a CSV file like identify (or verify, when the row claims an identity).

    Modality face, voice or video (a video's face track and soundtrack, each answered as identify answers it).

    Resumable: query ids already in RESULTS are skipped. A bad row is recorded as a failed result and the run
    carries on. Exit 2 when any query of the file has failed.
    """
    if against not in (None, "face", "voice", "all"):
        raise BadArgument("--against", f"{against!r} is not one of face, voice, all")
    from fvmatch.audit.files import ResultsFile, read_queries
    from fvmatch.audit.batch import run_audit
    from fvmatch.paths import check_root
    from fvmatch.spaces import SPACE_MODALITIES

    if space is not None and space not in SPACE_MODALITIES:  # a query it cannot score fails alone, with the reason
        raise BadArgument("--space", f"{space!r} is not a space; one of {', '.join(SPACE_MODALITIES)}")
    if space == "joint":  # refused once, not once per query, where the joint space cannot run
        from fvmatch.extras import require_joint_space

        require_joint_space("--space joint", model)

    queries = read_queries(queries_file, check_root(root))
    if out.resolve() == queries_file.resolve():
        raise BadArgument(out, "--out must not be the query file")
    from fvmatch.analysis.embedder import embedder_for_gallery
    from fvmatch.progress import item_progress

    with open_gallery(gallery_path) as gallery, ResultsFile.exclusive(out) as results:
        embedder = embedder_for_gallery(gallery, model, load_weights=True,  # a bad model fails here, not per query
                                        minimums=quality_minimums(min_face_px, min_snr, min_bandwidth))
        with item_progress(stderr, "audit", unit="queries", transient=as_json) as progress:
            task = progress.add_task("audit", total=len(queries))
            summary = run_audit(gallery, embedder, queries, results, against=against, top=top, fmr=fmr,
                                retry_failed=retry_failed, batch_size=batch_size, space=space,
                                progress=lambda n: progress.advance(task, n), fps=fps,
                                population=population_option(population))
        answered = [record for record in (results.latest.get(q.key) for q in queries)
                    if record is not None and record.get("run_id") == summary.run_id and record.get("sha256")]
        document = {"gallery": str(gallery_path), "model_id": embedder.model_id, "queries_file": str(queries_file),
                    "results": file_input(out) if out.exists() else {"path": str(out.resolve()), "sha256": None},
                    **summary.to_dict()}
        audit(gallery, "audit run",
              [file_input(queries_file)] + [{"path": r["resolved_path"], "sha256": r["sha256"],
                                             "query_id": r["query_id"],
                                             **({"video": r["video"]} if r.get("video") else {})} for r in answered],
              {**{key: document[key] for key in ("run_id", "queries", "answered_now", "failed_now", "already_done",
                                                 "ok", "failed", "matches", "results")},
               "answers": summary.answers, "failures": summary.failures}, embedder.model_id)
    if as_json:
        emit_json(document)
    else:
        matches = ("n/a (uncalibrated model)" if summary.matches is None else str(summary.matches))
        rate = document["queries_per_second"]
        stdout.print(f"answered {summary.answered}, failed {summary.failed_now} in this run"
                     f"{f' ({rate} queries/s)' if rate else ''}; {summary.already_done} already in {out}; "
                     f"results now: {summary.ok} ok, {summary.failed} failed, same-person decisions {matches}",
                     highlight=False, soft_wrap=True)
        if summary.repaired_bytes:
            say_line(stderr, f"fvmatch: {out}: dropped a partial last line ({summary.repaired_bytes} bytes) left by an "
                     "interrupted run; that query was answered again")
    for failure in summary.failures:
        say_line(stderr, f"fvmatch: failed: {failure['item']}: {failure['error']}")
    if summary.failed:
        raise typer.Exit(EXIT_BAD_INPUT)



@audit_app.command("log")
def audit_log(
    verify_chain: bool = typer.Option(False, "--verify", help="Recompute the hash chain (and --audit-log's, when "
                                      "given); exit 2 naming the first row altered or removed."),
    since: Optional[str] = typer.Option(None, "--since", help="Rows at or after this time (ISO, UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Rows before this time (ISO, UTC)."),
    command: Optional[str] = typer.Option(None, "--command", help="Only this command (e.g. enroll, identify)."),
    identity: Optional[str] = typer.Option(None, "--identity", help="Only rows that name this identity."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="The latest N rows."),
    gallery_path: Path = GalleryOption,
    as_json: bool = JsonOption,
) -> None:
    """List the audit trail: every command that read or changed the gallery, each row chained to the previous.

    On a read-only gallery given --audit-log, the rows of that file that name the gallery follow (marked "log").
    --verify checks the gallery's chain and, with --audit-log, the file's chain as well. Neither records a row.
    """
    from fvmatch.audit.trail import audit_rows, verify_chain as check_chain, verify_log

    log = gallery_access_of_this_run().audit_log
    if log is not None and not log.is_file():
        raise BadArgument(log, "no audit log here")
    with open_gallery(gallery_path, access="inspect") as gallery:
        if verify_chain:
            check = check_chain(gallery)
            log_check = verify_log(log) if log is not None else None
            if as_json:
                emit_json({"ok": check.ok, "rows": check.rows, "first_bad_id": check.first_bad_id,
                           "problem": check.problem,
                           **({"audit_log": {"path": str(log), "ok": log_check.ok, "rows": log_check.rows,
                                             "first_bad_id": log_check.first_bad_id, "problem": log_check.problem}}
                              if log_check is not None else {})})
            else:
                if check.ok:
                    stdout.print(f"audit trail intact: {check.rows} rows, hash chain verified", highlight=False)
                if log_check is not None and log_check.ok:
                    say_line(stdout, f"audit log {log} intact: {log_check.rows} rows, hash chain verified")
            if not check.ok:
                where = gallery.directory if gallery.team is not None else gallery_path / "gallery.db"
                raise FvmatchError(where, f"audit trail broken: {check.problem}")
            if log_check is not None and not log_check.ok:
                raise FvmatchError(log, f"audit log broken: {log_check.problem}")
            return
        rows = audit_rows(gallery, since=since, until=until, command=command, identity=identity, limit=limit)
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    from rich.text import Text

    table = Table()
    for column in ("id", "time", "user", "command", "inputs", "result"):
        table.add_column(column)
    for row in rows:
        table.add_row(f"log {row['id']}" if "gallery" in row else str(row["id"]), row["time"], Text(row["user"]),
                      Text(row["command"]),
                      Text(", ".join(Path(item["path"]).name for item in row["inputs"]) or "-"),
                      Text(json.dumps(row["result"])[:120]))
    stdout.print(table)
