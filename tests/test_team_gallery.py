"""Team galleries: the records in PostgreSQL, the vectors in Milvus, every command as on a directory gallery.

Real servers (tests/team_servers.py: a PostgreSQL cluster from the system's packages, Milvus Lite's gRPC server,
the API a Milvus cluster answers) and the real CLI with the embeddings of a real enrolment replayed
(tests/replay_cli.py), so that a command starts in about a second and can be killed anywhere.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from replay_cli import build_reference, replay_command

from fvmatch.audit.trail import audit_rows, verify_chain
from fvmatch.gallery import Gallery

pytest.importorskip("torch", reason="tests/replay_cli.py replays joint vectors: needs torch (fvmatch[train])")

BATCH = 3
FIRST, SECOND = ("id00000", "id00001", "id00002"), ("id00003", "id00004", "id00005")
MODALITIES = ("face", "voice")
SEED = 20261207


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build_reference(tmp_path_factory)


def replay(reference, *args, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    return subprocess.run(replay_command(reference.table, *args), capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "REPLAY_BATCH": str(BATCH), **env})


def enroll(reference, gallery, identities, name: str, **env) -> subprocess.CompletedProcess:
    return replay(reference, "enroll", "--manifest", reference.manifest(name, identities), "--gallery", gallery,
                  "--json", **env)


def first_item(reference, modality: str, identity: str = "id00001") -> Path:
    return reference.corpus / next(rel for i, m, rel, _ in reference.rows if i == identity and m == modality)


def without_paths(answer):
    """An answer without the gallery's name and the times of creation (what two galleries of the same items differ
    by)."""
    if isinstance(answer, dict):
        return {key: without_paths(value) for key, value in answer.items() if key not in ("gallery", "created")}
    if isinstance(answer, list):
        return [without_paths(value) for value in answer]
    return answer


def stored(gallery: Path) -> set[tuple[str, str, str]]:
    with Gallery.open(gallery, read_only=True) as opened:
        return set(opened.db.execute("SELECT identities.label, media.modality, media.sha256 FROM media"
                                     " JOIN identities ON identities.id = media.identity_id").fetchall())


def check_team_gallery(gallery: Path, reference) -> int:
    """What must hold on a team gallery after any kill; the number of items stored."""
    if not Gallery.exists(gallery):
        return 0  # killed before the gallery was pinned: nothing was enrolled
    with Gallery.open(gallery) as opened:
        rows = opened.db.execute("SELECT media.id, identities.label, media.modality, media.sha256 FROM media"
                                 " JOIN identities ON identities.id = media.identity_id").fetchall()
        spaces = {modality: len([key for key in opened.index_keys() if key[1] == modality]) for modality in MODALITIES}
        for media_id, _, modality, _ in rows:  # every item has its vector in each space of its modality
            assert opened.db.execute("SELECT count(*) FROM vectors WHERE media_id = ?",
                                     [media_id]).fetchone()[0] == spaces[modality]
        assert opened.db.execute("SELECT count(*) FROM identities WHERE id NOT IN (SELECT identity_id FROM media)"
                                 ).fetchone()[0] == 0
        recorded = {media_id for (result,) in opened.db.execute("SELECT result FROM audit WHERE command = 'enroll batch'")
                    for media_id in json.loads(result)["media_ids"]}
        assert {row[0] for row in rows} <= recorded  # each item's batch row committed with it
        assert verify_chain(opened).ok
        for modality in MODALITIES:  # the collection, once opened, holds exactly the stored items
            assert opened.index(modality).ids() == {row[0] for row in rows if row[2] == modality}
        for media_id, label, modality, sha256 in rows:
            assert (label, modality, sha256) in reference.stored()
            best = opened.search(np.frombuffer(reference.embeddings[(modality, sha256)], np.float32), [modality], 1)[0]
            assert (best.media_id, best.identity, round(best.score, 4)) == (media_id, label, 1.0)
    return len(rows)


def test_every_command_answers_on_a_team_gallery_as_on_a_directory_gallery(reference, team_gallery, tmp_path):
    directory = tmp_path / "directory"
    for gallery in (team_gallery, directory):
        result = enroll(reference, gallery, reference.identities, "team-all.csv")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["enrolled"] == 24
    face, voice = first_item(reference, "face"), first_item(reference, "voice")
    # (the replayed embedder answers the face space and the joint space: voices are asked in the joint space)
    for command in (("identify", "--face", face), ("identify", "--voice", voice, "--against", "voice", "--space", "joint"),
                    ("identify", "--voice", voice, "--against", "face", "--space", "joint"),
                    ("gallery", "list")):
        team, folder = (replay(reference, *command, "--gallery", gallery, "--json") for gallery in (team_gallery,
                                                                                                    directory))
        assert (team.returncode, team.stderr) == (folder.returncode, folder.stderr), command
        assert without_paths(json.loads(team.stdout)) == without_paths(json.loads(folder.stdout)), command
    info = json.loads(replay(reference, "gallery", "info", "--gallery", team_gallery, "--json").stdout)
    assert info["counts"] == {"identities": 6, "face": 12, "voice": 12}
    assert (info["team"]["role"], info["team"]["collection_prefix"]) == ("fvmatch_owner",
                                                                          team_gallery_database(team_gallery))
    assert all(index["agrees_with_database"] and index["live_items"] == 12 for index in info["indexes"].values())
    check = json.loads(replay(reference, "audit", "log", "--verify", "--gallery", team_gallery, "--json").stdout)
    rows = json.loads(replay(reference, "audit", "log", "--gallery", team_gallery, "--json").stdout)
    commands = [row["command"] for row in rows]
    assert check["ok"] and check["rows"] == len(rows)
    assert commands == ["enroll batch"] * 8 + ["enroll", "identify", "identify", "identify", "gallery list",
                                               "gallery info"]
    assert all(row["user"].endswith(" as database role fvmatch_owner") for row in rows)


def test_a_read_only_role_reads_and_every_change_is_refused_by_the_database(reference, team_servers, team_gallery,
                                                                            tmp_path):
    import psycopg
    from mediagen import run_cli_here

    postgres, _ = team_servers
    assert enroll(reference, team_gallery, FIRST, "team-first.csv").returncode == 0
    reader = f"reader_{team_gallery.parent.name[-12:].lower().replace('-', '_')}"
    postgres.sql(f"CREATE ROLE {reader} LOGIN")
    granted = run_cli_here("gallery", "grant", reader, "--read-only", "--gallery", team_gallery)
    assert granted.returncode == 0, granted.stderr
    settings = team_gallery.read_text()
    as_reader = tmp_path / "reader.toml"
    as_reader.write_text(settings.replace("fvmatch_owner@", f"{reader}@"))
    before = stored(team_gallery)

    face = first_item(reference, "face")
    owner_answer = json.loads(replay(reference, "identify", "--face", face, "--gallery", team_gallery, "--json").stdout)
    log = tmp_path / "reader-audit.jsonl"
    read = replay(reference, "--audit-log", log, "identify", "--face", face, "--gallery", as_reader, "--json")
    assert read.returncode == 0, read.stderr
    assert json.loads(read.stdout)["candidates"] == owner_answer["candidates"]
    assert f"as database role {reader}" in log.read_text()
    for command in (("enroll", "--manifest", reference.manifest("team-second.csv", SECOND)),
                    ("gallery", "remove", "--identity", "id00001"), ("gallery", "reindex"),
                    ("identify", "--face", face)):  # a query records its row: without --audit-log, refused
        refused = run_cli_here(*command, "--gallery", as_reader)  # refused before any embedding
        assert refused.returncode == 2, (command, refused.stderr)
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and f"database role {reader} may only read it" in lines[0], (command, lines)
    assert stored(team_gallery) == before
    with psycopg.connect(postgres.url(team_gallery_database(team_gallery), reader), autocommit=True) as connection:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            connection.execute("DELETE FROM audit")
        assert connection.execute("SELECT count(*) FROM media").fetchone()[0] == 12  # 3 people, 2 faces, 2 voices
    made_writer = run_cli_here("gallery", "grant", reader, "--write", "--gallery", team_gallery)
    assert made_writer.returncode == 0, made_writer.stderr
    assert enroll(reference, as_reader, SECOND, "team-second.csv").returncode == 0
    assert stored(team_gallery) == reference.stored()


def team_gallery_database(gallery: Path) -> str:
    return team_gallery_settings(gallery)["records"].rsplit("/", 1)[1]


def team_gallery_settings(gallery: Path) -> dict:
    import tomllib

    return tomllib.loads(gallery.read_text())


def test_a_gallery_moves_from_a_folder_to_a_team_database_and_back_with_every_row_and_hash_kept(reference,
                                                                                                team_gallery, tmp_path):
    from mediagen import run_cli_here

    source = tmp_path / "source"
    shutil.copytree(reference.gallery, source)
    first, second, back = tmp_path / "export-1", tmp_path / "export-2", tmp_path / "back"
    for command in (("gallery", "export", "--to", first, "--gallery", source), ("gallery", "import", first, "--gallery",
                                                                        team_gallery),
                    ("gallery", "export", "--to", second, "--gallery", team_gallery),
                    ("gallery", "import", second, "--gallery", back)):
        outcome = run_cli_here(*command, "--json")
        assert outcome.returncode == 0, (command, outcome.stderr)
    for name in ("identities.jsonl", "media.jsonl", *sorted(p.name for p in first.glob("vectors-*"))):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    moved = (second / "audit.jsonl").read_text().splitlines()
    assert moved[:-1] == (first / "audit.jsonl").read_text().splitlines()  # and the import's own row after them
    assert json.loads(moved[-1])["command"] == "gallery import"
    assert stored(back) == stored(team_gallery) == reference.stored()
    with Gallery.open(back) as opened:
        assert verify_chain(opened).ok
        assert opened.meta("model_id") == reference.model_id
    again = run_cli_here("gallery", "import", first, "--gallery", team_gallery)  # a database holds one gallery
    assert again.returncode == 2 and "a gallery is imported into a team database that holds none yet" in again.stderr


def test_an_import_that_fails_leaves_no_gallery_in_the_team_database(reference, team_gallery, tmp_path):
    from mediagen import run_cli_here

    source, export = tmp_path / "source", tmp_path / "export"
    shutil.copytree(reference.gallery, source)  # (an export records its row on the trail)
    assert run_cli_here("gallery", "export", "--to", export, "--gallery", source, "--json").returncode == 0
    manifest = json.loads((export / "manifest.json").read_text())
    manifest["counts"]["face"] += 1  # a manifest that disagrees with its rows: found once they are all in
    (export / "manifest.json").write_text(json.dumps(manifest))
    outcome = run_cli_here("gallery", "import", export, "--gallery", team_gallery)
    assert outcome.returncode == 2 and "are not the manifest's" in outcome.stderr
    assert not Gallery.exists(team_gallery)
    with Gallery.open(team_gallery, create=True, model_id="m", embedding_dim=4) as made:  # the database is as new
        assert made.counts() == {"identities": 0, "face": 0, "voice": 0}


def test_a_collection_behind_the_database_or_lost_is_mended_from_it_on_open(reference, team_gallery):
    assert enroll(reference, team_gallery, FIRST, "team-first.csv").returncode == 0
    with Gallery.open(team_gallery) as opened:
        faces = opened.index("face")
        held = sorted(faces.ids())
        faces.delete(held[:2])  # as if two items' vectors never reached Milvus (a client died between the two)
        opened.db.execute("UPDATE meta SET value = '0' WHERE key LIKE 'milvus_sync:%:joint:face'")
        opened.indexes.client.drop_collection(opened.index("voice").name)  # and one collection lost
    with Gallery.open(team_gallery) as opened:
        health = opened.info()["indexes"]
        assert (health["joint face"]["state"], health["joint face"]["detail"]) == (
            "repaired", "2 added, 0 removed to match the database")
        assert (health["joint voice"]["state"], health["joint voice"]["detail"]) == ("rebuilt", "no collection in Milvus")
        assert all(index["agrees_with_database"] for index in health.values())
        assert sorted(opened.index("face").ids()) == held
    assert check_team_gallery(team_gallery, reference) == 12
    removed = replay(reference, "gallery", "remove", "--identity", FIRST[0], "--gallery", team_gallery, "--json")
    assert removed.returncode == 0, removed.stderr
    rebuilt = replay(reference, "gallery", "reindex", "--gallery", team_gallery, "--json")
    assert rebuilt.returncode == 0, rebuilt.stderr
    with Gallery.open(team_gallery) as opened:
        assert {(key, index["state"], index["live_items"]) for key, index in opened.info()["indexes"].items()
                if key.startswith("joint")} == {("joint face", "ok", 4), ("joint voice", "ok", 4)}
    assert stored(team_gallery) == reference.stored(FIRST[1:])


# (kill point, items the killed run leaves): 12 items in batches of 3, so four commits
NAMED_KILLS = [("before-commit:2", 3), ("before-milvus:2", 6)]  # (and after a batch: the two-client test's)
LINE_KILLS = [round(random.Random(SEED).random(), 4)]


@pytest.fixture(scope="module")
def lines_of_a_team_enrolment(reference, team_servers, tmp_path_factory) -> int:
    """How many lines of storage code an unkilled enrolment of FIRST into a new team gallery runs."""
    postgres, milvus = team_servers
    database = postgres.new_database()
    gallery = tmp_path_factory.mktemp("counted") / "team.toml"
    gallery.write_text(f'records = "{postgres.url(database)}"\nvectors = "{milvus.uri}"\nprefix = "{database}"\n')
    result = enroll(reference, gallery, FIRST, "team-first.csv", REPLAY_COUNT_LINES="1")
    assert result.returncode == 0, result.stderr
    return int(result.stderr.rsplit("replay-lines ", 1)[1].split()[0])


@pytest.mark.parametrize("kill, rows", NAMED_KILLS + [(f"line:{fraction}", None) for fraction in LINE_KILLS],
                         ids=[kill for kill, _ in NAMED_KILLS] + [f"line-{fraction}" for fraction in LINE_KILLS])
def test_an_enrolment_killed_anywhere_keeps_what_it_committed_and_a_rerun_completes_it(
        reference, team_gallery, lines_of_a_team_enrolment, kill, rows):
    if kill.startswith("line:"):
        kill = f"line:{max(1, int(float(kill[5:]) * lines_of_a_team_enrolment))}"
    result = enroll(reference, team_gallery, FIRST, "team-first.csv", REPLAY_KILL=kill)
    assert result.returncode == -signal.SIGKILL, result.stderr
    left = check_team_gallery(team_gallery, reference)
    assert left == rows if rows is not None else left in (0, 3, 6, 9, 12)
    rerun = enroll(reference, team_gallery, FIRST, "team-first.csv")
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["enrolled"] == 12 - left
    assert check_team_gallery(team_gallery, reference) == 12
    assert stored(team_gallery) == reference.stored(FIRST)


def test_two_clients_enrol_and_others_identify_at_once_and_a_killed_one_loses_nothing(reference, team_gallery):
    assert enroll(reference, team_gallery, FIRST[:1], "team-base.csv").returncode == 0
    writers = [subprocess.Popen(replay_command(reference.table, "enroll", "--manifest", reference.manifest(name, group),
                                               "--gallery", team_gallery, "--json"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "REPLAY_BATCH": "2", "REPLAY_DELAY": "0.05", **kill})
               for name, group, kill in (("team-a.csv", FIRST[1:], {}),
                                         ("team-b.csv", SECOND, {"REPLAY_KILL": "before-milvus:3"}))]
    queries = [(modality, reference.corpus / relative, identity) for identity, modality, relative, _ in reference.rows
               if identity == FIRST[0]]
    answered = 0
    while any(writer.poll() is None for writer in writers) or answered < 2:
        modality, path, identity = queries[answered % len(queries)]
        reader = replay(reference, "identify", f"--{modality}", path, "--against", modality, "--space", "joint",
                        "--gallery", team_gallery, "--json")
        assert reader.returncode == 0, reader.stderr  # readers never wait for the writers, nor see a torn state
        top = json.loads(reader.stdout)["candidates"][0]
        assert (top["identity"], round(top["score"], 4)) == (identity, 1.0)
        answered += 1
    first, second = (writer.communicate(timeout=120) for writer in writers)
    assert writers[0].returncode == 0, first[1]
    assert json.loads(first[0])["enrolled"] == 8
    assert writers[1].returncode == -signal.SIGKILL, second[1]
    assert check_team_gallery(team_gallery, reference) == 4 + 8 + 6  # the killed one's first three batches of two
    rerun = enroll(reference, team_gallery, SECOND, "team-b.csv")
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["enrolled"] == 6, rerun.stderr
    assert check_team_gallery(team_gallery, reference) == 24
    assert stored(team_gallery) == reference.stored()


def test_a_team_gallery_named_by_url_answers_and_a_bad_one_is_refused_in_one_line(reference, team_servers,
                                                                                  team_gallery, tmp_path):
    from mediagen import run_cli_here

    from team_servers import free_port

    postgres, milvus = team_servers
    database = team_gallery_database(team_gallery)
    assert enroll(reference, team_gallery, FIRST[:1], "team-base.csv").returncode == 0
    url = f"{postgres.url(database)}?vectors={milvus.uri}&prefix={database}"
    info = run_cli_here("gallery", "info", "--gallery", url, "--json")
    assert info.returncode == 0, info.stderr
    assert json.loads(info.stdout)["counts"] == {"identities": 1, "face": 2, "voice": 2}
    broken = tmp_path / "broken.toml"
    cases = {
        "records = [unclosed": "not a readable team gallery file",
        f'records = "postgresql://fvmatch_owner:secret@127.0.0.1/{database}"\nvectors = "{milvus.uri}"':
            "holds a password: give it to libpq (PGPASSWORD, ~/.pgpass), never in this file",
        f'records = "{postgres.url(database)}"': "names no vectors",
        f'records = "postgresql://fvmatch_owner@127.0.0.1:{free_port()}/{database}"\nvectors = "{milvus.uri}"':
            "cannot connect to the gallery's database: connection failed",
        f'records = "{postgres.url(database)}"\nvectors = "http://127.0.0.1:{free_port()}"\nprefix = "{database}"':
            "cannot connect to the gallery's vectors at http://127.0.0.1:",
    }
    for text, problem in cases.items():
        broken.write_text(text)
        outcome = run_cli_here("gallery", "list", "--gallery", broken)
        assert outcome.returncode == 2, (text, outcome.stderr)
        assert outcome.stderr.startswith(f"fvmatch: error: {broken}: ") and problem in outcome.stderr, outcome.stderr
        assert len(outcome.stderr.splitlines()) == 1, outcome.stderr
    missing = run_cli_here("gallery", "list", "--gallery", f"{postgres.url(postgres.new_database())}?vectors={milvus.uri}")
    assert missing.returncode == 2 and "no gallery in this database yet" in missing.stderr


def test_the_real_model_enrols_and_answers_reports_and_audit_runs_on_a_team_gallery(team_gallery, grace_hopper,
                                                                                    media_dir, tmp_path):
    from mediagen import run_cli_here

    enrolled = run_cli_here("enroll", "--identity", "grace", "--face", grace_hopper, "--voice", media_dir / "speech.wav",
                            "--gallery", team_gallery, "--json")
    assert enrolled.returncode == 0, enrolled.stderr
    assert json.loads(enrolled.stdout)["gallery_counts"] == {"identities": 1, "face": 1, "voice": 1}
    queries = tmp_path / "queries.csv"
    queries.write_text(f"query_id,modality,path,claimed_identity\nq1,face,{grace_hopper},\nq2,face,{grace_hopper},grace\n")
    run = run_cli_here("audit", "run", "--queries", queries, "--out", tmp_path / "results.jsonl", "--gallery",
                       team_gallery)
    assert run.returncode == 0, run.stderr
    answers = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [answer["query_id"] for answer in answers] == ["q1", "q2"] and all(a["status"] == "ok" for a in answers)
    report = run_cli_here("report", "--face", grace_hopper, "--out", tmp_path / "report.html", "--gallery",
                          team_gallery, "--json")
    assert report.returncode == 0, report.stderr
    assert "grace" in (tmp_path / "report.html").read_text()
    with Gallery.open(team_gallery) as opened:
        assert [row["command"] for row in audit_rows(opened)] == ["enroll batch", "enroll", "audit run", "report query", "report"]
