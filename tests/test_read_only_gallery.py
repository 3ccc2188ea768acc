"""A write-protected gallery is read without changing a byte of it.

Each reading command runs as it would for an examiner without root's override of file permissions (a fresh
process as `nobody` when these tests run as root) on a copy of a small gallery made `chmod -R a+rX,a-w`, and every
file of the gallery (name, mode, sha256) is compared before and after. Queries record their audit rows in the file
given with `fvmatch --audit-log FILE` (hash-chained, each naming the gallery's trail head), and are refused in one
line before any work without it; pure reads record nothing; commands that change the gallery are refused; an older
format is read through an upgrade in memory.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mediagen import Outcome, run_cli_here

REFUSED = ("read-only gallery (its folder cannot be written): give --audit-log FILE to record this query's audit row "
           "elsewhere (or work on a writable copy)")


# ----- running as a user without root's override -----------------------------------------------------------------
def _drop_to_nobody() -> None:
    user = pwd.getpwnam("nobody")
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)


# ways to run a child without root's override of file permissions, tried in order: as `nobody` (switching in the
# child, or through setpriv, which also reaches an interpreter installed under a folder `nobody` cannot enter), or
# as root with every capability dropped (its writes then obey the permission bits like anyone's)
_SETPRIV = shutil.which("setpriv") or "setpriv"
WAYS = {"nobody": ([], _drop_to_nobody),
        "setpriv nobody": ([_SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"], None),
        "root without capabilities": ([_SETPRIV, "--bounding-set", "-all", "--inh-caps", "-all", "--"], None)}


PROBE = """
import sys
import fvmatch.cli
try:
    open(sys.argv[1], "a")
except PermissionError:
    print("refused")
"""


@functools.cache
def _unprivileged() -> tuple[list[str], object, str]:
    """(command prefix, preexec_fn) that make a child process a user whose writes the permissions refuse ([], None
    when this process is one already), and why that is impossible here ("" when it is not)."""
    if os.geteuid() != 0:
        return [], None, ""
    directory = Path(tempfile.mkdtemp(prefix="fvmatch-probe-"))
    tried = []
    try:
        directory.chmod(0o755)
        probe = directory / "protected"
        probe.write_text("")
        probe.chmod(0o444)
        for name, (prefix, preexec) in WAYS.items():
            try:
                child = subprocess.run([*prefix, sys.executable, "-c", PROBE, str(probe)],
                                       capture_output=True, text=True, preexec_fn=preexec, timeout=120, cwd=directory)
            except OSError as error:
                tried.append(f"{name}: {error}")
                continue
            if child.stdout.strip() == "refused":
                return prefix, preexec, ""
            tried.append(f"{name}: {(child.stderr.strip() or child.stdout.strip())[-200:]}")
    finally:
        shutil.rmtree(directory)
    return [], None, "cannot run fvmatch here with its writes refused by permissions (" + "; ".join(tried) + ")"


@pytest.fixture(scope="module")
def workspace():
    """A folder every user may read (pytest's own are its owner's only): evidence, galleries and the examiner's
    own writable folder (audit logs, reports, a home)."""
    *_, why_not = _unprivileged()
    if why_not:
        pytest.skip(why_not)
    root = Path(tempfile.mkdtemp(prefix="fvmatch-read-only-"))
    root.chmod(0o755)
    examiner = root / "examiner"
    examiner.mkdir()
    examiner.chmod(0o777)
    yield root
    for path in [root, *root.rglob("*")]:  # a non-root owner needs its write bits back to delete
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o700)
    shutil.rmtree(root)


def run_unprivileged(workspace: Path, *args) -> Outcome:
    """`fvmatch ARGS` in a fresh process as a user whose writes the permissions refuse."""
    examiner = workspace / "examiner"
    env = {**os.environ, "HOME": str(examiner), "MPLCONFIGDIR": str(examiner / "matplotlib")}
    env.pop("FVMATCH_AUDIT_LOG", None)
    prefix, preexec, _ = _unprivileged()
    result = subprocess.run([*prefix, sys.executable, "-m", "fvmatch.cli", *map(str, args)], capture_output=True,
                            text=True, timeout=300, cwd=examiner, env=env, preexec_fn=preexec)
    return Outcome(result.returncode, result.stdout, result.stderr)


def write_protect(directory: Path) -> None:
    """chmod -R a+rX,a-w: everyone may read it, no one (short of root) may write it."""
    for path in [directory, *directory.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)


def snapshot(directory: Path) -> dict[str, tuple[str, str]]:
    """Every entry of the gallery: its mode and, for a file, its sha256."""
    entries = {".": (oct(directory.stat().st_mode), "")}
    for path in sorted(directory.rglob("*")):
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        entries[str(path.relative_to(directory))] = (oct(path.stat().st_mode), digest)
    return entries


def trail_head(directory: Path) -> dict | None:
    """The gallery's audit head, read without writing anything."""
    connection = sqlite3.connect(f"{(directory / 'gallery.db').as_uri()}?mode=ro&immutable=1", uri=True)
    row = connection.execute("SELECT value FROM meta WHERE key = 'audit_head'").fetchone()
    connection.close()
    return None if row is None else json.loads(row[0])


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ----- the evidence and the gallery -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def evidence(workspace):
    """Three synthetic people (faces and voices) and one person in two videos."""
    from fvmatch.synth import CorpusSpec, write_corpus
    from fvmatch.synth.identity import draw_identity
    from fvmatch.synth.video import OnScreen, write_talking_head

    root = workspace / "evidence"
    write_corpus(root / "corpus", CorpusSpec(identities=3, seed=5, faces_per_identity=2, clips_per_identity=2,
                                             clip_seconds=2.0), workers=1)
    person = draw_identity("on-video", np.random.default_rng(31))
    write_talking_head(root / "enrolled.mp4", [OnScreen(person)], 3.0, seed=1)
    write_talking_head(root / "questioned.mp4", [OnScreen(person)], 3.0, seed=2)
    from PIL import Image

    Image.new("RGB", (256, 256), (128, 140, 150)).save(root / "noface.jpg")
    for path in [root, *root.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return root


def item(evidence: Path, modality: str, identity: str, take: int) -> Path:
    folder, suffix = ("faces", "jpg") if modality == "face" else ("voices", "wav")
    return evidence / "corpus" / folder / identity / f"v{take}" / f"{take:05d}.{suffix}"


@pytest.fixture(scope="module")
def base_gallery(workspace, evidence):
    """The first take of each person's face and voice, and the person on video, enrolled (a writable gallery)."""
    manifest = workspace / "evidence" / "manifest.csv"
    rows = [f"{identity},{modality},{item(evidence, modality, identity, 0)}"
            for identity in ("id00000", "id00001", "id00002") for modality in ("face", "voice")]
    manifest.write_text("identity,modality,path\n" + "\n".join(rows) + "\n")
    directory = workspace / "base"
    for arguments in (["--manifest", manifest], ["-i", "on-video", "--video", evidence / "enrolled.mp4"]):
        outcome = run_cli_here("enroll", *arguments, "--gallery", directory, "--json")
        assert outcome.returncode == 0, outcome.stderr
    return directory


@pytest.fixture
def protected(workspace, base_gallery, request):
    """A write-protected copy of the gallery, and the examiner's audit log beside (not yet there)."""
    directory = workspace / f"protected-{request.node.name.replace('[', '-').rstrip(']')}"
    shutil.copytree(base_gallery, directory)
    write_protect(directory)
    return directory, workspace / "examiner" / f"{directory.name}.jsonl"


# ----- queries: answered, nothing changed, their rows in the audit log --------------------------------------------
@pytest.mark.parametrize("modality, identity", [("face", "id00001"), ("voice", "id00002")])
def test_identify_on_a_write_protected_gallery_answers_changes_no_byte_and_logs_the_query_elsewhere(
        workspace, evidence, protected, modality, identity):
    from fvmatch.audit.trail import log_rows, verify_log

    gallery, log = protected
    query = item(evidence, modality, identity, 1)
    before = snapshot(gallery)
    outcome = run_unprivileged(workspace, "--audit-log", log, "identify", f"--{modality}", query, "--gallery", gallery,
                               "--json")
    assert outcome.returncode in (0, 1), outcome.stderr
    same_modality = next(trial for trial in json.loads(outcome.stdout)["trials"]
                         if trial["trial_type"] == f"{modality}-{modality}")
    assert same_modality["candidates"][0]["identity"] == identity
    assert snapshot(gallery) == before
    [row] = log_rows(log)
    assert (row["id"], row["command"], row["gallery"]) == (1, "identify", str(gallery.resolve()))
    assert row["gallery_audit_head"] == trail_head(gallery)  # pinned to the trail it read
    assert row["inputs"] == [{"path": str(query.resolve()), "sha256": sha256_of(query)}]
    logged = next(trial for trial in row["result"]["trials"] if trial["trial_type"] == f"{modality}-{modality}")
    assert logged["candidates"][0]["identity"] == identity
    assert verify_log(log).ok and oct(log.stat().st_mode & 0o777) == "0o600"


def test_a_query_without_audit_log_is_refused_in_one_line_before_any_work(workspace, evidence, protected):
    gallery, _ = protected
    before = snapshot(gallery)
    # a faceless image: had the query been embedded, the error would be that no face was found
    outcome = run_unprivileged(workspace, "identify", "--face", evidence / "noface.jpg", "--gallery", gallery)
    assert (outcome.returncode, outcome.stdout) == (2, "")
    assert outcome.stderr == f"fvmatch: error: {gallery}: {REFUSED}\n"
    report = workspace / "examiner" / "refused.html"
    outcome = run_unprivileged(workspace, "report", "--face", item(evidence, "face", "id00000", 1), "--out", report,
                               "--gallery", gallery)
    assert (outcome.returncode, outcome.stderr) == (2, f"fvmatch: error: {gallery}: {REFUSED}\n")
    assert not report.exists()
    assert snapshot(gallery) == before


def test_verify_a_video_against_a_claimed_identity_changes_no_byte(workspace, evidence, protected):
    from fvmatch.audit.trail import log_rows

    gallery, log = protected
    before = snapshot(gallery)
    outcome = run_unprivileged(workspace, "--audit-log", log, "verify", "--video", evidence / "questioned.mp4",
                               "--claim", "on-video", "--gallery", gallery, "--json")
    assert outcome.returncode in (0, 1), outcome.stderr
    trials = json.loads(outcome.stdout)["trials"]
    assert {(t["query"], t["identity"]) for t in trials} == {("face track", "on-video"), ("soundtrack", "on-video")}
    assert snapshot(gallery) == before
    assert [(row["command"], row["result"]["claimed_identity"]) for row in log_rows(log)] == [("verify", "on-video")]


# ----- pure reads -------------------------------------------------------------------------------------------------
def test_gallery_info_list_and_audit_log_verify_read_it_and_record_no_row_without_audit_log(
        workspace, base_gallery, protected):
    pytest.importorskip("torch",
                        reason="joint vectors and indexes exist only with the training extra (torch): fvmatch[train]")
    gallery, log = protected
    before = snapshot(gallery)
    info = run_unprivileged(workspace, "gallery", "info", "--gallery", gallery, "--json")
    assert info.returncode == 0, info.stderr
    document = json.loads(info.stdout)
    assert (document["read_only"], document["upgraded_in_memory"]) == ("its folder cannot be written", [])
    assert document["counts"] == {"identities": 4, "face": 4, "voice": 4}
    assert {health["state"] for health in document["indexes"].values()} == {"ok"}
    listed = run_unprivileged(workspace, "gallery", "list", "--gallery", gallery, "--json")
    assert [row["identity"] for row in json.loads(listed.stdout)] == ["id00000", "id00001", "id00002", "on-video"]
    verified = run_unprivileged(workspace, "audit", "log", "--verify", "--gallery", gallery, "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout) == {"ok": True, "rows": trail_head(gallery)["id"], "first_bad_id": None,
                                           "problem": ""}
    assert snapshot(gallery) == before
    assert not log.exists()  # nothing recorded anywhere: info and list only read


def test_audit_log_verify_checks_the_trail_and_the_audit_log_and_names_an_altered_row(workspace, protected):
    gallery, log = protected
    before = snapshot(gallery)
    for _ in range(2):  # info records its row in the audit log when one is given
        assert run_unprivileged(workspace, "--audit-log", log, "gallery", "info", "--gallery", gallery).returncode == 0
    verified = run_unprivileged(workspace, "--audit-log", log, "audit", "log", "--verify", "--gallery", gallery, "--json")
    assert json.loads(verified.stdout)["audit_log"] == {"path": str(log), "ok": True, "rows": 2, "first_bad_id": None,
                                                        "problem": ""}
    first, second = log.read_text().splitlines()
    log.chmod(0o666)
    log.write_text(first.replace('"gallery info"', '"gallery list"') + "\n" + second + "\n")
    broken = run_unprivileged(workspace, "--audit-log", log, "audit", "log", "--verify", "--gallery", gallery)
    assert broken.returncode == 2
    assert broken.stderr == (f"fvmatch: error: {log}: audit log broken: row 1 was altered (its content no longer "
                             "matches its hash)\n")
    assert snapshot(gallery) == before


# ----- report and audit run ---------------------------------------------------------------------------------------
def test_report_and_audit_run_write_elsewhere_and_their_rows_to_the_audit_log(workspace, evidence, protected):
    from fvmatch.audit.trail import log_rows, verify_log

    gallery, log = protected
    examiner = workspace / "examiner"
    before = snapshot(gallery)
    page = examiner / f"{gallery.name}-query.html"
    outcome = run_unprivileged(workspace, "--audit-log", log, "report", "--face", item(evidence, "face", "id00002", 1),
                               "--out", page, "--gallery", gallery, "--json")
    assert outcome.returncode == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert (document["audit_log"], document["audit_row"], document["sha256"]) == (str(log), 2, sha256_of(page))

    queries = examiner / f"{gallery.name}-queries.csv"
    queries.write_text(f"query_id,modality,path\nq1,face,{item(evidence, 'face', 'id00000', 1)}\n"
                       f"q2,voice,{item(evidence, 'voice', 'id00001', 1)}\n")
    results = examiner / f"{gallery.name}-results.jsonl"
    run = run_unprivileged(workspace, "--audit-log", log, "audit", "run", "--queries", queries, "--out", results,
                           "--gallery", gallery, "--json")
    assert run.returncode == 0, run.stderr
    # the run's row is in the audit log, where the report of its results finds it
    run_page = examiner / f"{gallery.name}-run.html"
    outcome = run_unprivileged(workspace, "--audit-log", log, "report", "--results", results, "--out", run_page,
                               "--gallery", gallery, "--json")
    assert outcome.returncode == 0, outcome.stderr
    assert json.loads(outcome.stdout)["audit_rows_shown"] == [3]
    assert [row["command"] for row in log_rows(log)] == ["report query", "report", "audit run", "report"]
    assert verify_log(log).ok
    assert snapshot(gallery) == before


# ----- changes refused --------------------------------------------------------------------------------------------
def test_commands_that_change_it_are_refused_and_change_nothing(workspace, protected):
    gallery, _ = protected
    before = snapshot(gallery)
    outcome = run_unprivileged(workspace, "gallery", "remove", "--identity", "id00000", "--gallery", gallery)
    assert (outcome.returncode, outcome.stderr) == (2, f"fvmatch: error: {gallery}: read-only gallery (its folder "
                                                       "cannot be written): this command changes it; work on a "
                                                       "writable copy\n")
    assert snapshot(gallery) == before


def test_read_only_asked_for_on_a_writable_gallery_adds_no_file_and_holds_writers_off(base_gallery, tmp_path):
    from fvmatch.gallery import Gallery, GalleryLocked, GalleryUnwritable
    from fvmatch.gallery.lock import WriteLock

    copy = tmp_path / "copy"
    shutil.copytree(base_gallery, copy)
    before = snapshot(copy)
    with Gallery.open(copy, read_only=True) as gallery:
        assert gallery.read_only == "opened read-only"
        assert gallery.search(np.ones(128, np.float32) / np.sqrt(128), ["face"], space="dlib-face")
        with pytest.raises(GalleryLocked):  # no writer may start under a reader of the file as it stands
            WriteLock(copy, timeout_seconds=0.2).acquire()
        with pytest.raises(GalleryUnwritable, match="read-only gallery \\(opened read-only\\): this command changes"):
            gallery.writer()
    assert snapshot(copy) == before  # no -wal, no -shm, no sidecar refreshed, no lock written
    with WriteLock(copy, timeout_seconds=0.2):
        pass
    refused = run_cli_here("--read-only", "enroll", "-i", "x", "--face", "x.jpg", "--gallery", copy)
    assert (refused.returncode, refused.stderr) == (2, "fvmatch: error: --read-only: enroll changes the gallery; "
                                                       "give --read-only to commands that read it\n")


def test_audit_log_takes_a_writable_gallery_s_rows_too_and_a_cut_log_is_refused_before_work(base_gallery, tmp_path):
    from fvmatch.audit.trail import log_rows

    copy, log = tmp_path / "copy", tmp_path / "queries.jsonl"
    shutil.copytree(base_gallery, copy)
    head = trail_head(copy)
    listed = run_cli_here("--audit-log", log, "gallery", "list", "--gallery", copy)
    assert listed.returncode == 0, listed.stderr
    [row] = log_rows(log)
    assert row["gallery_audit_head"] == {"id": head["id"] + 1, "hash": trail_head(copy)["hash"]}  # the trail's row
    log.write_bytes(log.read_bytes()[:-1])
    refused = run_cli_here("--audit-log", log, "gallery", "list", "--gallery", copy)
    assert refused.returncode == 2
    assert refused.stderr == (f"fvmatch: error: {log}: its last line is not a whole audit row (cut short, or not an "
                              "audit log); check it with `fvmatch --audit-log FILE audit log --verify`\n")
    assert trail_head(copy)["id"] == head["id"] + 1  # refused before it read: no row in the trail either
    inside = run_cli_here("--audit-log", copy / "log.jsonl", "gallery", "list", "--gallery", copy)
    assert inside.returncode == 2 and "must be outside the gallery's folder" in inside.stderr
    assert not (copy / "log.jsonl").exists()


# ----- older formats and a WAL left behind ------------------------------------------------------------------------
def test_a_format_1_gallery_copied_read_only_is_read_through_an_upgrade_in_memory(workspace, evidence, embedder):
    pytest.importorskip("torch",
                        reason="joint vectors and indexes exist only with the training extra (torch): fvmatch[train]")
    from test_gallery_spaces import version_1_gallery

    gallery, log = workspace / "format-1", workspace / "examiner" / "format-1.jsonl"
    version_1_gallery(gallery, evidence / "corpus", embedder)
    write_protect(gallery)
    before = snapshot(gallery)
    info = run_unprivileged(workspace, "gallery", "info", "--gallery", gallery, "--json")
    assert info.returncode == 0, info.stderr
    document = json.loads(info.stdout)
    assert document["upgraded_in_memory"] == ["m003_vectors_per_space", "m004_tallies"]
    assert document["counts"] == {"identities": 3, "face": 3, "voice": 3}
    assert {health["state"] for health in document["indexes"].values()} == {"rebuilt"}  # in memory: it had none
    # a face against faces needs vectors it lacks: the way to fill them says where
    refused = run_unprivileged(workspace, "--audit-log", log, "identify", "--face", item(evidence, "face", "id00001", 1),
                               "--gallery", gallery)
    assert refused.returncode == 2
    assert refused.stderr.endswith("fill them from their evidence files with `fvmatch gallery reindex` on a writable "
                                   "copy of this read-only gallery\n")
    joint = run_unprivileged(workspace, "--audit-log", log, "identify", "--face", item(evidence, "face", "id00001", 1),
                             "--against", "voice", "--space", "joint", "--gallery", gallery, "--json")
    assert joint.returncode in (0, 1), joint.stderr
    assert json.loads(joint.stdout)["trials"][0]["space"] == "joint"
    assert snapshot(gallery) == before


def test_an_old_gallery_too_large_to_upgrade_in_memory_is_refused_naming_the_way_out(evidence, embedder, tmp_path,
                                                                                     monkeypatch):
    pytest.importorskip("torch",
                        reason="joint vectors and indexes exist only with the training extra (torch): fvmatch[train]")
    from test_gallery_spaces import version_1_gallery

    from fvmatch.gallery import Gallery, GalleryUnwritable
    from fvmatch.gallery import database

    version_1_gallery(tmp_path / "old", evidence / "corpus", embedder)
    monkeypatch.setattr(database, "MAX_UPGRADE_IN_MEMORY_BYTES", 1024)
    with pytest.raises(GalleryUnwritable) as refused:
        Gallery.open(tmp_path / "old", read_only=True)
    assert str(refused.value).endswith("read-only gallery of an older format (m003_vectors_per_space, m004_tallies not "
                                       "applied) too large to upgrade in memory (0 MiB): copy the gallery and open "
                                       "the copy to upgrade it")


def test_a_wal_holding_changes_is_read_through_its_shm_and_refused_without_one(workspace, base_gallery):
    source = workspace / "wal-source"
    shutil.copytree(base_gallery, source)
    writer = sqlite3.connect(source / "gallery.db", isolation_level=None)
    writer.execute("PRAGMA wal_autocheckpoint=0")  # the change stays in gallery.db-wal, as after a crash
    writer.execute("INSERT INTO identities (label, created) VALUES ('added-late', 'now')")
    with_shm, without_shm = workspace / "wal-with-shm", workspace / "wal-without-shm"
    shutil.copytree(source, with_shm)
    shutil.copytree(source, without_shm)
    writer.close()
    (without_shm / "gallery.db-shm").unlink()
    for gallery in (with_shm, without_shm):
        write_protect(gallery)
    before = snapshot(with_shm)
    listed = run_unprivileged(workspace, "gallery", "list", "--gallery", with_shm, "--json")
    assert listed.returncode == 0, listed.stderr
    assert "added-late" in [row["identity"] for row in json.loads(listed.stdout)]
    assert snapshot(with_shm) == before
    before = snapshot(without_shm)
    refused = run_unprivileged(workspace, "gallery", "list", "--gallery", without_shm)
    assert refused.returncode == 2
    assert refused.stderr == (f"fvmatch: error: {without_shm}/gallery.db: read-only gallery whose gallery.db-wal holds "
                              "changes not yet in gallery.db (a writer stopped before it could fold them in), with no "
                              "gallery.db-shm to read them by: copy the gallery (its -wal too) and open the copy\n")
    assert snapshot(without_shm) == before
