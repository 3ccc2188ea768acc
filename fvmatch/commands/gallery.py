"""Gallery maintenance and its audit trail: gallery info|list|remove|reindex, audit log."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (GalleryOption, JsonOption, LockTimeoutOption, app, audit, emit_json,
                                     open_gallery, say_waiting, stdout)
from fvmatch.errors import FvmatchError


gallery_app = typer.Typer(help="Inspect and maintain a gallery.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")


@gallery_app.command("info")
def gallery_info(gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Counts per modality, pinned model, sizes and index health."""
    with open_gallery(gallery_path) as gallery:
        info = gallery.info()
        audit(gallery, "gallery info", [], {"counts": info["counts"]}, gallery.model_id)
    if as_json:
        emit_json(info)
        return
    counts = info["counts"]
    stdout.print(f"gallery {info['gallery']} (format {info['format_version']}, created {info['created']})", highlight=False)
    stdout.print(f"model {info['model_id']} ({info['embedding_dim']}-D) at {info['model_path'] or '?'}", highlight=False)
    stdout.print(f"{counts['identities']} identities, {counts['face']} faces, {counts['voice']} voices; "
                 f"database {info['database_bytes']:,} bytes", highlight=False)
    for modality, health in info["indexes"].items():
        stdout.print(f"{modality} index: {health['state']}{' (' + health['detail'] + ')' if health['detail'] else ''}, "
                     f"{health['live_items']} items, {health['file_bytes']:,} bytes, "
                     f"{'agrees with' if health['agrees_with_database'] else 'DISAGREES with'} the database", highlight=False)


@gallery_app.command("list")
def gallery_list(gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Every identity with its number of faces and voices."""
    with open_gallery(gallery_path) as gallery:
        identities = gallery.identities()
        audit(gallery, "gallery list", [], {"identities": len(identities)}, gallery.model_id)
    if as_json:
        emit_json(identities)
        return
    from rich.table import Table

    table = Table()
    for column in ("identity", "faces", "voices", "enrolled"):
        table.add_column(column)
    for row in identities:
        table.add_row(row["identity"], str(row["faces"]), str(row["voices"]), row["created"])
    stdout.print(table)


@gallery_app.command("remove")
def gallery_remove(identity: str = typer.Option(..., "--identity", "-i", help="Label to remove with all its media."),
                   gallery_path: Path = GalleryOption, lock_timeout: float = LockTimeoutOption,
                   as_json: bool = JsonOption) -> None:
    """Remove an identity and its media from the database and the indexes."""
    with open_gallery(gallery_path) as gallery:
        with gallery.writer(lock_timeout, say_waiting, f"pid {os.getpid()}: fvmatch gallery remove"):
            removed = gallery.remove_identity(identity)
            gallery.flush()
            audit(gallery, "gallery remove", [], {"identity": identity, "removed": removed}, gallery.model_id)
    if as_json:
        emit_json({"identity": identity, "removed": removed})
    else:
        stdout.print(f"removed {identity}: {removed['face']} faces, {removed['voice']} voices", highlight=False)


@gallery_app.command("reindex")
def gallery_reindex(gallery_path: Path = GalleryOption, lock_timeout: float = LockTimeoutOption,
                    as_json: bool = JsonOption) -> None:
    """Rebuild the search indexes from the stored embeddings."""
    with open_gallery(gallery_path) as gallery:
        with gallery.writer(lock_timeout, say_waiting, f"pid {os.getpid()}: fvmatch gallery reindex"):
            counts = gallery.reindex()
            audit(gallery, "gallery reindex", [], {"reindexed": counts}, gallery.model_id)
    if as_json:
        emit_json({"reindexed": counts})
    else:
        stdout.print(f"rebuilt indexes: {counts['face']} faces, {counts['voice']} voices", highlight=False)


audit_app = typer.Typer(help="The gallery's tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("log")
def audit_log(
    verify_chain: bool = typer.Option(False, "--verify", help="Recompute the hash chain; exit 2 naming the first "
                                                                "row altered or removed."),
    since: Optional[str] = typer.Option(None, "--since", help="Rows at or after this time (ISO, UTC)."),
    until: Optional[str] = typer.Option(None, "--until", help="Rows before this time (ISO, UTC)."),
    command: Optional[str] = typer.Option(None, "--command", help="Only this command (e.g. enroll, identify)."),
    identity: Optional[str] = typer.Option(None, "--identity", help="Only rows that name this identity."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="The latest N rows."),
    gallery_path: Path = GalleryOption,
    as_json: bool = JsonOption,
) -> None:
    """List the audit trail: every command that read or changed the gallery, each row chained to the previous."""
    from fvmatch.audit import audit_rows, verify_chain as check_chain

    with open_gallery(gallery_path) as gallery:
        if verify_chain:
            check = check_chain(gallery)
            if as_json:
                emit_json({"ok": check.ok, "rows": check.rows, "first_bad_id": check.first_bad_id,
                           "problem": check.problem})
            elif check.ok:
                stdout.print(f"audit trail intact: {check.rows} rows, hash chain verified", highlight=False)
            if not check.ok:
                raise FvmatchError(gallery_path / "gallery.db", f"audit trail broken: {check.problem}")
            return
        rows = audit_rows(gallery, since=since, until=until, command=command, identity=identity, limit=limit)
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table()
    for column in ("id", "time", "user", "command", "inputs", "result"):
        table.add_column(column)
    for row in rows:
        table.add_row(str(row["id"]), row["time"], row["user"], row["command"],
                      ", ".join(Path(item["path"]).name for item in row["inputs"]) or "-",
                      json.dumps(row["result"])[:120])
    stdout.print(table)
