"""Where a team gallery lives: its records' PostgreSQL database and its vectors' Milvus, named by `--gallery` as a
small TOML file or a URL.

    # casework.toml (no password here: libpq's PGPASSWORD or ~/.pgpass, and FVMATCH_MILVUS_TOKEN)
    records = "postgresql://analyst1@db.unit.example/casework"
    vectors = "http://milvus.unit.example:19530"      # or a Milvus Lite folder: "vectors.db" (one process at a time)
    prefix = "casework"                               # Milvus collections' names start with it (default: database's)

    --gallery "postgresql://analyst1@db.unit.example/casework?vectors=http://milvus.unit.example:19530"

A path whose name ends `.toml` is read as such a file; `postgresql://` (or `postgres://`) starts the URL form. Any
other `--gallery` is a directory gallery.
"""
from __future__ import annotations

import json
import logging
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fvmatch.errors import BadArgument
from fvmatch.gallery.database import NotAGallery
from fvmatch.gallery.files import GalleryUnwritable
from fvmatch.gallery.postgres import TeamUnreachable, connect_postgres, writer_description
from fvmatch.gallery.postgres_schema import drop_schema, has_schema, migrate, pending

URL_START = re.compile(r"^(postgres(?:ql)?):/+")  # a typed URL comes through a Path with its "//" made "/"
MILVUS_TOKEN_VARIABLE = "FVMATCH_MILVUS_TOKEN"


@dataclass(frozen=True)
class TeamConfig:
    """A team gallery's two stores. `name` is what messages and audit rows call it (no password)."""

    name: str
    records: str  # a libpq URL
    vectors: str  # a Milvus URI, or a Milvus Lite folder's path
    prefix: str


class TeamName(str):
    """A team gallery's name where a directory gallery has its folder (`gallery.directory`): what messages and audit
    rows show. It resolves to itself; it has no files under it (`/` fails)."""

    def resolve(self) -> "TeamName":
        """The gallery file's absolute path (so that audit log rows name it the same from any folder); a URL as it is."""
        return self if URL_START.match(self) else TeamName(Path(self).resolve())


def is_team_gallery(gallery: str | Path) -> bool:
    text = str(gallery)
    return bool(URL_START.match(text)) or text.endswith(".toml")


def team_config(gallery: str | Path) -> TeamConfig:
    """The team gallery `gallery` names (is_team_gallery's); BadArgument, one line, when it is malformed."""
    text = str(gallery)
    if URL_START.match(text):
        return _from_url(URL_START.sub(lambda match: f"{match.group(1)}://", text))
    path = Path(gallery)
    try:
        settings = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadArgument(path, "no such team gallery file (a .toml --gallery names one: docs/team-galleries.md)") \
            from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise BadArgument(path, f"not a readable team gallery file ({error})") from None
    unknown = sorted(set(settings) - {"records", "vectors", "prefix"})
    if unknown:
        raise BadArgument(path, f"unknown setting {unknown[0]!r} (a team gallery file holds records, vectors, prefix)")
    for key in ("records", "vectors"):
        if not isinstance(settings.get(key), str) or not settings[key]:
            raise BadArgument(path, f"names no {key} (records = \"postgresql://...\", vectors = a Milvus URI)")
    if urlsplit(settings["records"]).password:
        raise BadArgument(path, "holds a password: give it to libpq (PGPASSWORD, ~/.pgpass), never in this file")
    vectors = settings["vectors"]
    if "://" not in vectors:  # a Milvus Lite folder, found beside the file
        vectors = str((path.parent / vectors).resolve())
    prefix = settings.get("prefix") or _database_of(settings["records"])
    return TeamConfig(str(path), settings["records"], vectors, _checked_prefix(path, prefix))


def _from_url(url: str) -> TeamConfig:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    vectors, prefix = query.pop("vectors", None), query.pop("prefix", None)
    if vectors:  # its "//" made "/" too, when the URL came through a path
        vectors = re.sub(r"^(https?|tcp):/(?=[^/])", r"\1://", vectors)
    records = urlunsplit(parts._replace(query=urlencode(query)))
    shown = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@")
                                      if parts.password else parts.netloc, query=""))
    if not vectors:
        raise BadArgument(shown, "a team gallery URL names its vectors too: ...?vectors=http://milvus-host:19530")
    return TeamConfig(shown, records, vectors, _checked_prefix(shown, prefix or _database_of(records)))


def _database_of(records: str) -> str:
    return urlsplit(records).path.strip("/") or "fvmatch"


def _checked_prefix(where: str, prefix: str) -> str:
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,100}", prefix):
        raise BadArgument(where, f"Milvus collection prefix {prefix!r} must be letters, digits and underscores "
                          "(set prefix = ... in the team gallery file)")
    return prefix


def connect_milvus(config: TeamConfig):
    """A pymilvus client of the team gallery's vectors; TeamUnreachable, one line, when it cannot connect."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        raise TeamUnreachable(config.name, "team galleries need the team extra: pip install 'fvmatch[team]'") from None
    uri = config.vectors if "://" in config.vectors else config.vectors.rstrip("/")
    if "://" not in uri and not uri.endswith(".db"):
        raise BadArgument(config.name, f"vectors {uri!r}: a Milvus URI (http://host:19530) or a Milvus Lite "
                          "folder whose name ends .db")
    # pymilvus logs its own fallbacks (a listing's timestamp) as warnings on stderr: not the analyst's concern
    logging.getLogger("pymilvus").setLevel(logging.ERROR)
    try:
        return MilvusClient(uri=uri, token=os.environ.get(MILVUS_TOKEN_VARIABLE, ""), timeout=30)
    except Exception as error:  # pymilvus raises its own MilvusException, grpc's errors or OSError: all say why
        raise TeamUnreachable(config.name, f"cannot connect to the gallery's vectors at {uri}: "
                              f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}") from None


def open_team_stores(config: TeamConfig, create: bool, read_only: bool):
    """A team gallery's database, migrated (its schema made, with `create`), why it is read-only (None: this role
    may write it), and its Milvus client: (PostgresDatabase, reason, client). NotAGallery for a database holding no
    gallery; GalleryUnwritable for one whose schema is due an upgrade that this role may not make."""
    db = connect_postgres(config.records, config.name, writer_description("open"))
    try:
        made = has_schema(db)
        reason = "opened read-only" if read_only else (
            None if not made or db.may_write() else f"database role {db.role()} may only read it")
        due = pending(db)
        if due and not made and (reason is not None or not create):
            raise NotAGallery(config.name, "no gallery in this database yet (enroll something first)")
        if due and made and reason is not None:
            raise GalleryUnwritable(config.name, f"gallery of an older format ({', '.join(due)} not applied): its "
                                    "owner's role upgrades it by opening it to write")
        migrate(db)
        return db, reason, connect_milvus(config)
    except BaseException:
        db.conn.close()
        raise


def team_holds_gallery(config: TeamConfig) -> bool:
    """Whether the team database holds a gallery (its schema made and pinned)."""
    db = connect_postgres(config.records, config.name, writer_description("open"))
    try:
        return has_schema(db) and db.execute("SELECT count(*) FROM meta WHERE key = 'format_version'").fetchone()[0] > 0
    finally:
        db.conn.close()


def remove_team_gallery(gallery: str | Path) -> None:
    """Remove a team gallery whole: its Milvus collections, its tables and functions. Only for a gallery this
    process has just made and must not leave (an import that failed)."""
    from fvmatch.gallery.milvus_indexes import collection_name

    config = team_config(gallery)
    db = connect_postgres(config.records, config.name)
    try:
        spaces = []
        if has_schema(db):
            row = db.execute("SELECT value FROM meta WHERE key = 'spaces'").fetchone()
            spaces = list(json.loads(row[0])) if row else []
        client = connect_milvus(config)
        try:
            for space in spaces:
                for modality in ("face", "voice"):
                    if client.has_collection(collection_name(config.prefix, space, modality)):
                        client.drop_collection(collection_name(config.prefix, space, modality))
        finally:
            client.close()
        drop_schema(db)
    finally:
        db.conn.close()
