"""Gallery maintenance: gallery info|list|remove|reindex|export|import|grant."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from fvmatch.commands.common import (GalleryOption, JsonOption, LockTimeoutOption, ModelOption, app, audit, emit_json,
                                     gallery_access_of_this_run, open_gallery, plural, say_line, say_waiting, stderr,
                                     stdout)
from fvmatch.errors import EXIT_BAD_INPUT, BadArgument
from fvmatch.progress import item_progress


gallery_app = typer.Typer(help="Inspect and maintain a gallery.", no_args_is_help=True)
app.add_typer(gallery_app, name="gallery")


@gallery_app.command("info")
def gallery_info(gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Counts per modality, pinned model, sizes and index health.

    A pure read: on a read-only gallery its audit row goes to --audit-log when given, else nowhere.
    """
    with open_gallery(gallery_path, access="read") as gallery:
        info = gallery.info()
        audit(gallery, "gallery info", [], {"counts": info["counts"]}, gallery.model_id, optional=True)
    if as_json:
        emit_json(info)
        return
    counts = info["counts"]
    stdout.print(f"gallery {info['gallery']} (format {info['format_version']}, created {info['created']})", highlight=False)
    if "team" in info:
        team = info["team"]
        stdout.print(f"team gallery: records in PostgreSQL, vectors in Milvus at {team['vectors']} (collections "
                     f"{team['collection_prefix']}_*); connected as database role {team['role']}", highlight=False)
    stdout.print(f"model {info['model_id']} ({info['embedding_dim']}-D) at {info['model_path'] or '?'}", highlight=False)
    if info["read_only"]:
        upgraded = (f"; read through an upgrade in memory ({', '.join(info['upgraded_in_memory'])}), its files as they "
                    "are" if info["upgraded_in_memory"] else "")
        stdout.print(f"read-only ({info['read_only']}): nothing of it written{upgraded}", highlight=False)
    for space, recorded in info["spaces"].items():
        stdout.print(f"space {space}: model {recorded['model_id'][:16]}, {recorded['dim']}-D", highlight=False)
    stdout.print(f"{plural(counts['identities'], 'identity', 'identities')}, {plural(counts['face'], 'face')}, "
                 f"{plural(counts['voice'], 'voice')}; "
                 f"database {info['database_bytes']:,} bytes", highlight=False)
    for name, health in info["indexes"].items():
        lacking = health["missing_vectors"]
        missing = (f"; {plural(lacking, health['modality'] + ' item')} {'lacks' if lacking == 1 else 'lack'} "
                   "its vectors (fvmatch gallery reindex)" if lacking else "")
        held_in = (f"collection {health['collection']}" if "collection" in health  # a team gallery's Milvus
                   else f"{health['file_bytes']:,} bytes")
        stdout.print(f"{name} index: {health['state']}{' (' + health['detail'] + ')' if health['detail'] else ''}, "
                     f"{plural(health['live_items'], 'item')}, {held_in}, "
                     f"{'agrees with' if health['agrees_with_database'] else 'DISAGREES with'} the database{missing}",
                     highlight=False)


@gallery_app.command("grant")
def gallery_grant(role: str = typer.Argument(..., help="A database role (its administrator creates it)."),
                  write: bool = typer.Option(False, "--write/--read-only",
                                             help="Also let it enroll, remove and reindex (default: read only)."),
                  gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """A team gallery: let a database role read it, or with --write also change it (a role granted --read-only
    after --write loses its writes). Run as the role that owns the gallery's tables; recorded on the audit trail.
    """
    with open_gallery(gallery_path, access="write") as gallery:
        if gallery.team is None:
            raise BadArgument(gallery_path, "grant is for team galleries: a directory gallery's readers and writers "
                              "are its folder's permissions")
        gallery.db.grant(role, write)
        access = "write" if write else "read"
        audit(gallery, "gallery grant", [], {"role": role, "access": access}, gallery.model_id)
    if as_json:
        emit_json({"gallery": str(gallery_path), "role": role, "access": access})
        return
    say_line(stdout, f"database role {role} may now {'read and change' if write else 'only read'} {gallery_path}")


@gallery_app.command("list")
def gallery_list(gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Every identity with its number of faces and voices.

    A pure read: on a read-only gallery its audit row goes to --audit-log when given, else nowhere.
    """
    with open_gallery(gallery_path, access="read") as gallery:
        identities = gallery.identities()
        audit(gallery, "gallery list", [], {"identities": len(identities)}, gallery.model_id, optional=True)
    if as_json:
        emit_json(identities)
        return
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for column in ("identity", "faces", "voices", "enrolled"):
        table.add_column(column)
    for row in identities:
        table.add_row(Text(row["identity"]), str(row["faces"]), str(row["voices"]), row["created"])
    stdout.print(table)


@gallery_app.command("remove")
def gallery_remove(identity: str = typer.Option(..., "--identity", "-i", help="Label to remove with all its media."),
                   gallery_path: Path = GalleryOption, lock_timeout: float = LockTimeoutOption,
                   as_json: bool = JsonOption) -> None:
    """Remove an identity and its media from the database and the indexes."""
    with open_gallery(gallery_path, access="write") as gallery:
        with gallery.writer(lock_timeout, say_waiting, f"pid {os.getpid()}: fvmatch gallery remove"):
            removed = gallery.remove_identity(identity)
            gallery.flush()
            audit(gallery, "gallery remove", [], {"identity": identity, "removed": removed}, gallery.model_id)
    if as_json:
        emit_json({"identity": identity, "removed": removed})
    else:
        stdout.print(f"removed {identity}: {plural(removed['face'], 'face')}, {plural(removed['voice'], 'voice')}",
                     highlight=False)


@gallery_app.command("reindex")
def gallery_reindex(gallery_path: Path = GalleryOption, model: Optional[Path] = ModelOption,
                    lock_timeout: float = LockTimeoutOption, as_json: bool = JsonOption) -> None:
    """Fill in the vectors items lack (a space added after they were enrolled: an upgraded gallery) and embed again
    those of a pretrained space whose model this fvmatch changed, from their evidence files; then rebuild the search
    indexes from the stored vectors.

    An item whose evidence file is gone or changed (sha256) is listed by name and kept as it is: exit 2.
    """
    from fvmatch.analysis.embedder import embedder_for_gallery
    from fvmatch.enrollment.reembed import fill_missing_vectors, items_missing_vectors
    from fvmatch.spaces import PRETRAINED_SPACES

    with open_gallery(gallery_path, access="write") as gallery:
        embedder = embedder_for_gallery(gallery, model, load_weights=True)  # a bad model fails here, not per item
        with gallery.writer(lock_timeout, say_waiting, f"pid {os.getpid()}: fvmatch gallery reindex"):
            installed = {name: embedder.space_info(name) for name in PRETRAINED_SPACES}
            replaced = {name: {"from": gallery.spaces[name]["model_id"], "to": info["model_id"]}
                        for name, info in installed.items()
                        if name in gallery.spaces and gallery.spaces[name]["model_id"] != info["model_id"]}
            for name, change in replaced.items():  # vectors nothing now computed compares with: embedded again below
                change["vectors_dropped"] = gallery.replace_space_model(name, installed[name])
            gallery.add_spaces(installed)
            with item_progress(stderr, "reindex", transient=as_json) as progress:
                task = progress.add_task("reindex", total=len(items_missing_vectors(gallery)))
                report = fill_missing_vectors(gallery, embedder, lambda n: progress.advance(task, n))
            counts = gallery.reindex()
            audit(gallery, "gallery reindex", [], {"reindexed": counts, "replaced_spaces": replaced, **report.to_dict()},
                  gallery.model_id)
    if as_json:
        emit_json({"reindexed": counts, "replaced_spaces": replaced, **report.to_dict()})
    else:
        for name, change in replaced.items():
            stdout.print(f"{name}: this fvmatch's model {change['to'][:16]} replaces {change['from'][:16]}; "
                         f"{plural(change['vectors_dropped'], 'vector')} embedded again from their evidence", highlight=False)
        stdout.print(f"filled {plural(report.filled, 'missing vector')}; rebuilt indexes: "
                     + ", ".join(f"{key} {count}" for key, count in counts.items()), highlight=False)
    for item in report.unavailable:
        say_line(stderr, f"fvmatch: not filled: {item['identity']} {item['modality']} {item['source_path']}: "
                         f"{item['problem']}")
    if report.unavailable:
        raise typer.Exit(EXIT_BAD_INPUT)


@gallery_app.command("export")
def gallery_export(to: Path = typer.Option(..., "--to", help="A new (or empty) folder for the export."),
                   gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Write the gallery whole into a folder of plain files: every identity, item, vector of every space and audit
    row with its hash, and a manifest with each file's sha256. `gallery import` makes a gallery of it elsewhere.

    A pure read (a read-only evidence gallery can be exported); the export's audit row, naming the manifest's
    sha256, goes to the trail after it (on a read-only gallery to --audit-log when given, else nowhere).
    """
    from fvmatch.gallery.transfer import export_gallery, manifest_sha256

    with open_gallery(gallery_path, access="read") as gallery:
        with item_progress(stderr, "export", transient=as_json) as progress:
            task = progress.add_task("export", total=None)
            manifest = export_gallery(gallery, to, lambda done: progress.update(task, completed=done))
        digest = manifest_sha256(to)
        audit(gallery, "gallery export", [], {"to": str(to.resolve()), "manifest_sha256": digest,
                                              "counts": manifest["counts"]}, gallery.model_id, optional=True)
    summary = {"to": str(to.resolve()), "manifest_sha256": digest, "counts": manifest["counts"],
               "spaces": sorted(entry["space"] for entry in manifest["spaces"].values()),
               "audit_rows": manifest["files"]["audit.jsonl"]["rows"]}
    if as_json:
        emit_json(summary)
        return
    stdout.print(f"exported {_counted(manifest['counts'])}, {plural(summary['audit_rows'], 'audit row')} to "
                 f"{summary['to']}; manifest sha256 {digest}", highlight=False)


@gallery_app.command("import")
def gallery_import(folder: Path = typer.Argument(..., help="A folder written by `fvmatch gallery export`."),
                   gallery_path: Path = GalleryOption, as_json: bool = JsonOption) -> None:
    """Make a new gallery at --gallery (absent or an empty folder, or a team database holding none) from an export,
    every file checked against the manifest's sha256 first and the audit trail's hash chain after; ids, vectors and
    audit rows as exported, the indexes built from the vectors. Anything amiss: one line, exit 2, and no gallery left
    at --gallery.
    """
    import shutil

    from fvmatch.audit.trail import verify_chain
    from fvmatch.errors import FvmatchError
    from fvmatch.gallery import Gallery
    from fvmatch.gallery.team import is_team_gallery, remove_team_gallery
    from fvmatch.gallery.transfer import BadExport, check_import_target, import_gallery, manifest_sha256, read_manifest

    if gallery_access_of_this_run().read_only:
        raise BadArgument("--read-only", "gallery import makes a gallery; give --read-only to commands that read one")
    check_import_target(gallery_path)
    checked = read_manifest(folder)  # every file against the manifest, before anything is written
    with item_progress(stderr, "import", transient=as_json) as progress:
        task = progress.add_task("import", total=None)
        manifest = import_gallery(folder, gallery_path, lambda done: progress.update(task, completed=done), checked)
    try:
        with Gallery.open(gallery_path) as gallery:
            where = str(gallery.directory.resolve())
            check = verify_chain(gallery)
            if not check.ok:
                raise BadExport(folder, f"the audit trail does not verify: {check.problem}")
            digest = manifest_sha256(folder)
            audit(gallery, "gallery import", [{"path": str(folder.resolve()), "sha256": digest}],
                  {"from": manifest["source"], "manifest_sha256": digest, "counts": manifest["counts"],
                   "audit_rows_verified": check.rows}, gallery.model_id)
    except FvmatchError:
        if is_team_gallery(gallery_path):
            remove_team_gallery(gallery_path)
        else:
            shutil.rmtree(gallery_path, ignore_errors=True)
        raise
    summary = {"gallery": where, "from": manifest["source"], "manifest_sha256": digest,
               "counts": manifest["counts"], "audit_rows_verified": check.rows}
    if as_json:
        emit_json(summary)
        return
    stdout.print(f"imported {_counted(manifest['counts'])} into {summary['gallery']}; every file matched manifest "
                 f"sha256 {digest}; audit trail verified ({plural(check.rows, 'row')})", highlight=False)


def _counted(counts: dict) -> str:
    """A gallery's counts in words: "2 identities, 2 faces, 1 voice"."""
    return (f"{plural(counts['identities'], 'identity', 'identities')}, {plural(counts['face'], 'face')}, "
            f"{plural(counts['voice'], 'voice')}")
