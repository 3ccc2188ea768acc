"""gallery export / import: a gallery moved whole, every row, vector and audit hash checked, on real media."""
from __future__ import annotations

import json
import shutil
import sqlite3

import pytest

from mediagen import REALMEDIA, run_cli_here

FACES = REALMEDIA / "faces" / "fr_barack_obama"
VOICE = REALMEDIA / "voices" / "librispeech_1688" / "1688-142285-0000.flac"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two faces of one person and a voice of another, enrolled as analysts do."""
    if not FACES.is_dir() or not VOICE.is_file():
        pytest.skip(f"{REALMEDIA} is absent: the real photos and recordings are needed (CI always has them)")
    gallery = tmp_path_factory.mktemp("transfer") / "source"
    for args in (("--identity", "obama", "--face", FACES / "obama.jpg", "--face", FACES / "obama1.jpg"),
                 ("--identity", "speaker", "--voice", VOICE)):
        enrolled = run_cli_here("enroll", *args, "--gallery", gallery)
        assert enrolled.returncode == 0, enrolled.stderr
    return gallery


def rows(gallery, table: str) -> list[tuple]:
    with sqlite3.connect(gallery / "gallery.db") as db:
        return db.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()


def test_a_gallery_exported_and_imported_keeps_every_row_vector_and_audit_hash(source, tmp_path):
    before = rows(source, "audit")
    exported = run_cli_here("gallery", "export", "--to", tmp_path / "export", "--gallery", source, "--json")
    assert exported.returncode == 0, exported.stderr
    summary = json.loads(exported.stdout)
    assert summary["counts"] == {"identities": 2, "face": 2, "voice": 1} and summary["audit_rows"] == len(before)
    # the source's trail records the export after it, naming the manifest's sha256
    (row,) = rows(source, "audit")[len(before):]
    assert row[3] == "gallery export" and summary["manifest_sha256"] in row[6]
    imported = run_cli_here("gallery", "import", tmp_path / "export", "--gallery", tmp_path / "moved", "--json")
    assert imported.returncode == 0, imported.stderr
    result = json.loads(imported.stdout)
    assert result["manifest_sha256"] == summary["manifest_sha256"] and result["audit_rows_verified"] == len(before)
    for table in ("identities", "media", "vectors"):
        assert rows(tmp_path / "moved", table) == rows(source, table), table
    moved = rows(tmp_path / "moved", "audit")
    assert moved[: len(before)] == before  # every row as it was, ids and hashes kept
    assert moved[-1][3] == "gallery import" and moved[-1][8] == before[-1][9]  # chained to the exported head
    # the same question, the same answer (the indexes built from the vectors)
    answers = [json.loads(run_cli_here("identify", "--face", FACES / "obama2.jpg", "--gallery", gallery,
                                       "--json").stdout)["candidates"] for gallery in (source, tmp_path / "moved")]
    assert answers[0] == answers[1] and answers[0][0]["identity"] == "obama"


def test_an_altered_missing_or_extra_file_is_refused_and_leaves_no_gallery(source, tmp_path):
    export = tmp_path / "export"
    assert run_cli_here("gallery", "export", "--to", export, "--gallery", source).returncode == 0

    def refused(folder, target) -> str:
        result = run_cli_here("gallery", "import", folder, "--gallery", target)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert not target.exists() and not list(target.parent.glob(f".{target.name}.importing-*"))
        return result.stderr.strip()

    altered = tmp_path / "altered"
    shutil.copytree(export, altered)
    with open(altered / "vectors-0.f32", "r+b") as handle:  # one byte of one vector
        handle.seek(5)
        handle.write(b"\x7f")
    assert refused(altered, tmp_path / "a") == f"fvmatch: error: {altered / 'vectors-0.f32'}: altered: its sha256 is not the manifest's"
    extra = tmp_path / "extra"
    shutil.copytree(export, extra)
    (extra / "notes.txt").write_text("added later")
    assert "not in the manifest" in refused(extra, tmp_path / "b")
    missing = tmp_path / "missing"
    shutil.copytree(export, missing)
    (missing / "audit.jsonl").unlink()
    assert "missing from the export" in refused(missing, tmp_path / "c")
    assert "not a gallery export" in refused(tmp_path, tmp_path / "d")
    # a trail whose rows were rewritten with a manifest made to match: the chain itself refuses it
    forged = tmp_path / "forged"
    shutil.copytree(export, forged)
    lines = (forged / "audit.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["user"] = "someone else"
    (forged / "audit.jsonl").write_text("\n".join([json.dumps(first, sort_keys=True), *lines[1:]]) + "\n")
    from fvmatch.gallery.transfer import MANIFEST
    from fvmatch.paths import file_digest

    manifest = json.loads((forged / MANIFEST).read_text())
    manifest["files"]["audit.jsonl"].update(sha256=file_digest(forged / "audit.jsonl")[0],
                                            bytes=(forged / "audit.jsonl").stat().st_size)
    (forged / MANIFEST).write_text(json.dumps(manifest))
    assert "the audit trail does not verify: row 1 was altered" in refused(forged, tmp_path / "e")
    # rows of another schema (an export of another version), the manifest made to match
    renamed = tmp_path / "renamed"
    shutil.copytree(export, renamed)
    lines = [json.loads(line) for line in (renamed / "identities.jsonl").read_text().splitlines()]
    (renamed / "identities.jsonl").write_text("".join(json.dumps({("name" if k == "label" else k): v
                                                                    for k, v in row.items()}) + "\n" for row in lines))
    manifest = json.loads((renamed / MANIFEST).read_text())
    manifest["files"]["identities.jsonl"].update(sha256=file_digest(renamed / "identities.jsonl")[0],
                                                 bytes=(renamed / "identities.jsonl").stat().st_size)
    (renamed / MANIFEST).write_text(json.dumps(manifest))
    assert "its rows hold created, id, metadata, name; this fvmatch's identities holds created, id, label, metadata" \
        in refused(renamed, tmp_path / "f")
    # a target that holds something, and an export folder that does
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "x").write_text("x")
    taken = run_cli_here("gallery", "import", export, "--gallery", occupied)
    assert taken.returncode == 2 and "new or empty folder" in taken.stderr and (occupied / "x").exists()
    again = run_cli_here("gallery", "export", "--to", export, "--gallery", source)
    assert again.returncode == 2 and "must be new or empty" in again.stderr


def test_a_read_only_evidence_gallery_is_exported_without_a_byte_written(source, tmp_path):
    copy = tmp_path / "evidence"
    shutil.copytree(source, copy)
    state = {path.name: path.read_bytes() for path in copy.iterdir() if path.is_file()}
    exported = run_cli_here("--read-only", "gallery", "export", "--to", tmp_path / "export", "--gallery", copy)
    assert exported.returncode == 0, exported.stderr
    assert {path.name: path.read_bytes() for path in copy.iterdir() if path.is_file()} == state
    assert run_cli_here("gallery", "import", tmp_path / "export", "--gallery", tmp_path / "moved").returncode == 0
