"""A gallery moved whole: exported to a folder of plain files, and imported from one into a new gallery.

The export holds every row of the store as it is: identities, items (their evidence's path, sha256, size and quality),
every vector of every space, the audit trail's rows with their hashes, and the gallery's meta (pinned models, spaces,
the audit head). Rows keep their ids, so the audit trail, which names items and rows by id, reads the same after the
move. It is independent of the storage (a directory gallery today; the same files would fill a team gallery):

    manifest.json             format, when and from where, the gallery's format version, counts, and each file's
                              sha256, size and number of rows
    meta.json                 the gallery's meta table
    identities.jsonl          one row a line, columns by name
    media.jsonl
    audit.jsonl
    vectors-<n>.ids, .f32     per space (manifest "spaces": n -> name, dim): the media ids (int64, little-endian) and
                              their vectors (float32 rows), in media id order

The manifest's own sha256 (`manifest_sha256`) is what an analyst records: every other file is checked against the
manifest before anything is written, and the import builds the new gallery beside its target and moves it in place
only when it is whole. The indexes are caches: the import builds them from the vectors. Checking the audit chain
after the import is the audit trail's (fvmatch.audit.trail.verify_chain; the command does it).
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fvmatch.errors import BadArgument, FvmatchError
from fvmatch.gallery.gallery import Gallery
from fvmatch.gallery.team import is_team_gallery, remove_team_gallery
from fvmatch.paths import file_digest

FORMAT = "fvmatch-gallery-export/1"
MANIFEST = "manifest.json"
TABLES = ("identities", "media", "audit")  # copied row by row, ids kept (meta and vectors apart)
CHUNK_ROWS = 10_000


class BadExport(FvmatchError):
    """A folder that is not a whole, unaltered gallery export."""


def manifest_sha256(folder: Path) -> str:
    """The sha256 of an export's manifest: the one figure that vouches for the whole export."""
    return file_digest(Path(folder) / MANIFEST)[0]


def _quoted(columns: list[str]) -> str:
    return ", ".join(f'"{column}"' for column in columns)  # audit's "user" is a keyword of PostgreSQL


def _rows(gallery: Gallery, table: str, columns: list[str]) -> Iterator[tuple]:
    cursor = gallery.db.execute(f"SELECT {_quoted(columns)} FROM {table} ORDER BY id")
    while rows := cursor.fetchmany(CHUNK_ROWS):
        yield from rows


def export_gallery(gallery: Gallery, folder: str | Path, progress=lambda done: None) -> dict:
    """Write `gallery` whole into `folder` (absent or empty) and return its manifest. Reads only: a read-only
    (evidence) gallery can be exported. `progress(rows written so far)` is called as it goes."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise BadArgument(folder, "the export folder must be new or empty")
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict] = {}
    written = 0

    def record(name: str, rows: int) -> None:
        digest, size = file_digest(folder / name)
        files[name] = {"sha256": digest, "bytes": size, "rows": rows}

    with gallery.indexes.snapshot():  # one read transaction: every file is of one state of the gallery
        # a team gallery's record of what its Milvus collections hold stays with them
        meta = dict(gallery.db.execute("SELECT key, value FROM meta WHERE key NOT LIKE 'milvus_sync:%'"
                                       " ORDER BY key").fetchall())
        (folder / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        record("meta.json", len(meta))
        for table in TABLES:
            columns, count = gallery.columns(table), 0
            with open(folder / f"{table}.jsonl", "w", encoding="utf-8") as handle:
                for row in _rows(gallery, table, columns):
                    handle.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False, sort_keys=True) + "\n")
                    count += 1
                    written += 1
                    if written % CHUNK_ROWS == 0:
                        progress(written)
            record(f"{table}.jsonl", count)
        spaces = {}
        for number, space in enumerate(sorted(gallery.spaces)):
            models = [row[0] for row in gallery.db.execute("SELECT DISTINCT model_id FROM vectors WHERE space = ?",
                                                           [space]).fetchall()]
            if len(models) > 1:  # one model id a space is what the export keeps
                raise BadArgument(gallery.directory, f"its {space} vectors come from {len(models)} models: fvmatch "
                                                     "gallery reindex embeds them again with one")
            ids_name, vectors_name, count = f"vectors-{number}.ids", f"vectors-{number}.f32", 0
            cursor = gallery.db.execute("SELECT media_id, embedding FROM vectors WHERE space = ? ORDER BY media_id",
                                        [space])
            with open(folder / ids_name, "wb") as ids, open(folder / vectors_name, "wb") as vectors:
                while rows := cursor.fetchmany(CHUNK_ROWS):
                    ids.write(np.array([row[0] for row in rows], dtype="<i8").tobytes())
                    vectors.write(b"".join(row[1] for row in rows))
                    count += len(rows)
                    written += len(rows)
                    progress(written)
            record(ids_name, count)
            record(vectors_name, count)
            spaces[str(number)] = {"space": space, "dim": gallery.dim(space),
                                   "model_id": models[0] if models else gallery.spaces[space]["model_id"]}
        counts = gallery.counts()
    manifest = {"format": FORMAT, "exported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "source": str(gallery.directory.resolve()), "gallery_format_version": int(meta["format_version"]),
                "counts": counts, "spaces": spaces, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return manifest


def read_manifest(folder: str | Path) -> dict:
    """The export's manifest, every file it names checked (sha256, size) and no file beside them; BadExport naming
    the first problem."""
    folder = Path(folder)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadExport(folder, f"no {MANIFEST}: not a gallery export (fvmatch gallery export writes one)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BadExport(folder / MANIFEST, f"not a readable manifest ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadExport(folder / MANIFEST, f"not a manifest of format {FORMAT}")
    files = manifest.get("files") or {}
    for name, expected in sorted(files.items()):
        path = folder / name
        if Path(name).name != name or not path.is_file():
            raise BadExport(path, "missing from the export (the manifest names it)")
        if path.stat().st_size != expected["bytes"] or file_digest(path)[0] != expected["sha256"]:
            raise BadExport(path, "altered: its sha256 is not the manifest's")
    extra = sorted(p.name for p in folder.iterdir() if p.name != MANIFEST and p.name not in files)
    if extra:
        raise BadExport(folder / extra[0], "not in the manifest: the export has files it did not write")
    needed = ["meta.json", *(f"{table}.jsonl" for table in TABLES)]
    for number, entry in (manifest.get("spaces") or {}).items():
        ids, vectors = f"vectors-{number}.ids", f"vectors-{number}.f32"
        needed += [ids, vectors]
        count = files[ids]["bytes"] // 8 if ids in files else None
        if count is not None and vectors in files and count * 4 * int(entry["dim"]) != files[vectors]["bytes"]:
            raise BadExport(folder / vectors, f"holds {files[vectors]['bytes']:,} bytes, not the {entry['dim']}-D "
                                              f"vectors of the {count:,} ids beside it")
    missing = [name for name in needed if name not in files]
    if missing:
        raise BadExport(folder / MANIFEST, f"names no {missing[0]}: not a whole export")
    return manifest


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def check_import_target(directory: str | Path) -> None:
    """BadArgument unless `directory` is absent or an empty folder, or a team gallery's database holding none yet."""
    if is_team_gallery(directory):
        if Gallery.exists(directory):
            raise BadArgument(directory, "a gallery is imported into a team database that holds none yet")
        return
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BadArgument(directory, "a gallery is imported into a new or empty folder")


def import_gallery(folder: str | Path, directory: str | Path, progress=lambda done: None,
                   manifest: dict | None = None) -> dict:
    """Make a new gallery at `directory` (absent, or an empty folder; or a team gallery whose database holds none)
    from the export in `folder`, every file checked against its manifest first (`manifest`: read_manifest's, when the
    caller has checked them already); returns the manifest. A folder gallery is built in a hidden folder beside
    `directory` and moved in place whole; a team gallery's rows go in in one transaction, and a failure removes its
    tables and collections again: on any failure nothing is left at `directory`."""
    folder = Path(folder)
    check_import_target(directory)
    manifest = manifest if manifest is not None else read_manifest(folder)
    meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    pinned = {"model_id": meta["model_id"], "embedding_dim": int(meta["embedding_dim"]),
              "model_path": meta.get("model_path") or None}
    if is_team_gallery(directory):
        gallery = Gallery.open(directory, create=True, **pinned)
        try:
            with gallery, gallery.writer():
                _fill(gallery, folder, manifest, meta, progress)
        except BaseException:
            remove_team_gallery(directory)
            raise
        return manifest
    directory = Path(directory)
    building = directory.parent / f".{directory.name}.importing-{os.getpid()}"
    shutil.rmtree(building, ignore_errors=True)
    try:
        gallery = Gallery.open(building, create=True, **pinned)
        with gallery, gallery.writer():
            _fill(gallery, folder, manifest, meta, progress)
        if directory.exists():
            directory.rmdir()
        building.rename(directory)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return manifest


def _fill(gallery: Gallery, folder: Path, manifest: dict, meta: dict, progress) -> None:
    """The export's rows and vectors into a new, empty gallery, in one transaction; then its indexes built."""
    done = 0
    with gallery.transaction():
        gallery.db.execute("DELETE FROM meta")
        gallery.db.conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", sorted(meta.items()))
        for table in TABLES:
            columns = gallery.columns(table)
            insert = f"INSERT INTO {table} ({_quoted(columns)}) VALUES ({', '.join('?' * len(columns))})"
            batch = []
            for row in _jsonl(folder / f"{table}.jsonl"):
                if sorted(row) != sorted(columns):  # another schema: an export of another fvmatch version
                    raise BadExport(folder / f"{table}.jsonl", f"its rows hold {', '.join(sorted(row))}; "
                                    f"this fvmatch's {table} holds {', '.join(sorted(columns))}")
                batch.append([row[column] for column in columns])
                if len(batch) == CHUNK_ROWS:
                    gallery.db.conn.executemany(insert, batch)
                    done += len(batch)
                    progress(done)
                    batch = []
            gallery.db.conn.executemany(insert, batch)
            done += len(batch)
        for number, entry in sorted(manifest["spaces"].items()):
            ids = np.fromfile(folder / f"vectors-{number}.ids", dtype="<i8")
            vectors = np.fromfile(folder / f"vectors-{number}.f32", dtype="<f4").reshape(len(ids), entry["dim"])
            model_id = entry["model_id"]
            for start in range(0, len(ids), CHUNK_ROWS):
                gallery.db.conn.executemany(
                    "INSERT INTO vectors (media_id, space, model_id, embedding) VALUES (?, ?, ?, ?)",
                    [(int(i), entry["space"], model_id, v.tobytes())
                     for i, v in zip(ids[start:start + CHUNK_ROWS], vectors[start:start + CHUNK_ROWS])])
                done += len(ids[start:start + CHUNK_ROWS])
                progress(done)
        if gallery.team is not None:  # rows came with their ids: new ones follow them
            gallery.db.advance_identities(("identities", "media"))
    if gallery.counts() != manifest["counts"]:
        raise BadExport(folder, f"the imported counts {gallery.counts()} are not the manifest's {manifest['counts']}")
    gallery.reindex()  # the indexes, caches, built from the vectors
