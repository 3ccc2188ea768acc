"""Disk full and read-only storage: enrolment fails in one line (exit 2, naming the file) and writes nothing half.

Where this process may mount (root, or a user namespace), the faults are real: a small tmpfs filled to its last
block (or to its last few), and a read-only bind mount, each in a private mount namespace (`unshare --mount`) so
nothing outlives the test. Without that, a read-only gallery is made with chmod (a real EACCES for a non-root
user). Always, SQLite is also made to report a full disk in-process (max_page_count pinned), and hnswlib's
unchecked short write of an index file (what it does on a full disk) is injected. Each case runs the real enroll
command with replayed embeddings (tests/replay_cli.py), on a new gallery and on an existing one; afterwards the
gallery opens, passes SQLite's integrity check and holds exactly what it held before.

Also here: every file of a gallery is its owner's only (directory 0700, files 0600), whatever the umask; and an
index too big for the memory a process may have fails in one line, without a rebuild (which would need more).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_cli import build_reference, replay_command, replayed_gallery

from fvmatch.gallery import Gallery, NewItem
pytest.importorskip("torch",
                    reason="tests/replay_cli.py replays joint vectors: needs torch (fvmatch[train])")

BASE = ("id00000", "id00001")
LATER = ("id00002", "id00003")
PAGE = 4096


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build_reference(tmp_path_factory)


@pytest.fixture(scope="module")
def manifest(reference) -> Path:
    return reference.manifest("disk-later.csv", LATER)


@pytest.fixture(scope="module")
def base_gallery(reference, tmp_path_factory) -> Path:
    return replayed_gallery(reference, tmp_path_factory.mktemp("disk") / "base", "disk-base.csv", BASE)


@functools.cache
def can_mount() -> bool:
    """Whether a tmpfs can be mounted in a private mount namespace here (root, or unprivileged user namespaces)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "mount", "-t", "tmpfs", "-o",
                            "size=64k", "tmpfs", "/tmp"], capture_output=True)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not can_mount(), reason="cannot mount a tmpfs in a private namespace here")


def gallery_state(directory: Path) -> dict:
    """Every row of every table, and the index files' bytes: what a failed enrolment must leave alone."""
    connection = sqlite3.connect(directory / "gallery.db")
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    rows = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
            for table in ("identities", "media", "meta", "audit")}
    connection.close()
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.hnsw*"))}
    return {"rows": rows, "index_files": files}


def enroll_command(reference, manifest: Path, gallery: Path) -> list[str]:
    return replay_command(reference.table, "enroll", "--manifest", manifest, "--gallery", gallery, "--json")


def the_one_error(stderr: str) -> str:
    """The run's stderr must be one error line (besides the driver's start marker and blank progress lines)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip() and line != "replay-start"]
    assert len(lines) == 1 and lines[0].startswith("fvmatch: error: "), stderr
    return lines[0]


def run_in_namespace(script: str, out: Path, **env) -> tuple[int, str, str]:
    """Run `script` (sh) in a private mount namespace; the command under test writes rc, stdout, stderr to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    setup = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-euc", script],
                           capture_output=True, text=True, timeout=300,
                           env={**os.environ, "OUT": str(out), **{k: str(v) for k, v in env.items()}})
    assert setup.returncode == 0, setup.stderr
    return int((out / "rc").read_text()), (out / "stdout").read_text(), (out / "stderr").read_text()


RUN_UNDER_TEST = '''
set +e
"$@" >"$OUT/stdout" 2>"$OUT/stderr"
echo $? >"$OUT/rc"
set -e
'''

FULL_DISK = '''
mount -t tmpfs -o size=1m tmpfs "$MNT"
if [ -n "$BASE" ]; then cp -a "$BASE" "$MNT/gallery"; fi
dd if=/dev/zero of="$MNT/filler" bs=4096 2>/dev/null || true
truncate -s "-$FREE" "$MNT/filler"
set -- "$@"
''' + RUN_UNDER_TEST + '''
rm "$MNT/filler"
if [ -d "$MNT/gallery" ]; then cp -a "$MNT/gallery" "$OUT/after"; fi
'''


def check_left_as_before(after: Path, before: dict | None, reference, manifest: Path) -> None:
    """The gallery a failed enrolment left: as it was (or, for a new one, no gallery at all), and usable."""
    names = sorted(p.name for p in after.iterdir())
    assert [name for name in names if ".tmp" in name or ".new-" in name] == []
    if before is None:
        assert "gallery.db" not in names
    else:
        assert gallery_state(after) == before
        with Gallery.open(after) as gallery:
            assert gallery.counts() == {"identities": 2, "face": 4, "voice": 4}
    again = subprocess.run(enroll_command(reference, manifest, after), capture_output=True, text=True, timeout=60)
    assert again.returncode == 0, again.stderr  # once there is room (or write permission), the same run completes
    assert json.loads(again.stdout)["enrolled"] == 8


@needs_mount
@pytest.mark.parametrize("gallery, free_pages", [("existing", 0), ("existing", 9), ("new", 0)])
def test_enroll_on_a_full_disk_fails_in_one_line_and_leaves_the_gallery_as_it_was(gallery, free_pages, reference,
                                                                                    manifest, base_gallery, tmp_path):
    mount = tmp_path / "mnt"
    mount.mkdir()
    out = tmp_path / "out"
    script = FULL_DISK.replace('set -- "$@"', "set -- " + " ".join(
        f"'{part}'" for part in enroll_command(reference, manifest, mount / "gallery")))
    rc, stdout, stderr = run_in_namespace(script, out, MNT=mount, FREE=free_pages * PAGE,
                                          BASE=base_gallery if gallery == "existing" else "")
    assert rc == 2 and stdout == ""
    error = the_one_error(stderr)
    assert error.startswith(f"fvmatch: error: {mount}/gallery/")
    assert "cannot write to the gallery: " in error
    assert error.endswith(("database or disk is full", "disk I/O error (disk full)"))
    check_left_as_before(out / "after", gallery_state(base_gallery) if gallery == "existing" else None,
                         reference, manifest)


READ_ONLY = '''
mount --bind "$SOURCE" "$MNT"
mount -o remount,bind,ro "$MNT"
set -- "$@"
''' + RUN_UNDER_TEST


@pytest.mark.parametrize("gallery", ["existing", "new"])
def test_enroll_on_read_only_storage_fails_in_one_line_and_changes_nothing(gallery, reference, manifest, base_gallery,
                                                                          tmp_path):
    source = tmp_path / "source"
    if gallery == "existing":
        shutil.copytree(base_gallery, source)
    else:
        source.mkdir()
    before = gallery_state(source) if gallery == "existing" else None
    target = (tmp_path / "mnt") if can_mount() else source
    command = enroll_command(reference, manifest, target if gallery == "existing" else target / "new")
    if can_mount():  # a read-only file system: EROFS
        target.mkdir()
        script = READ_ONLY.replace('set -- "$@"', "set -- " + " ".join(f"'{part}'" for part in command))
        rc, stdout, stderr = run_in_namespace(script, tmp_path / "out", MNT=target, SOURCE=source)
        reason = "Read-only file system"
    elif os.geteuid() != 0:  # no write permission: EACCES
        for path in [source, *source.iterdir()]:
            path.chmod(0o500 if path.is_dir() else 0o400)
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        rc, stdout, stderr = result.returncode, result.stdout, result.stderr
        for path in [source, *source.iterdir()]:
            path.chmod(0o700 if path.is_dir() else 0o600)
        reason = "Permission denied"
    else:
        pytest.skip("root without mount: neither a read-only mount nor permissions can refuse a write")
    assert rc == 2 and stdout == ""
    error = the_one_error(stderr)
    where = f"{target}/write.lock" if gallery == "existing" else f"{target}/new"
    assert error == f"fvmatch: error: {where}: cannot write to the gallery: {reason}"
    check_left_as_before(source if gallery == "existing" else source, before, reference, manifest)


@pytest.mark.parametrize("gallery", ["existing", "new"])
def test_sqlite_reporting_a_full_disk_fails_the_enrolment_in_one_line_and_rolls_back(gallery, reference, manifest,
                                                                                      base_gallery, tmp_path):
    directory = tmp_path / "gallery"
    if gallery == "existing":
        shutil.copytree(base_gallery, directory)
    before = gallery_state(directory) if gallery == "existing" else None
    result = subprocess.run(enroll_command(reference, manifest, directory), capture_output=True, text=True,
                            timeout=60, env={**os.environ, "REPLAY_FAULT": "db-full"})
    assert result.returncode == 2 and result.stdout == ""
    assert the_one_error(result.stderr) == (f"fvmatch: error: {directory}/gallery.db: cannot write to the gallery: "
                                            "database or disk is full")
    check_left_as_before(directory, before, reference, manifest)


def test_an_index_file_written_short_is_reported_and_never_vouched_for(reference, manifest, base_gallery, tmp_path):
    directory = tmp_path / "gallery"
    shutil.copytree(base_gallery, directory)
    before = gallery_state(directory)
    result = subprocess.run(enroll_command(reference, manifest, directory), capture_output=True, text=True,
                            timeout=60, env={**os.environ, "REPLAY_FAULT": "index-short"})
    assert result.returncode == 2 and result.stdout == ""
    error = the_one_error(result.stderr)
    # (the first index saved: the face space's)
    assert error.startswith(f"fvmatch: error: {directory}/dlib-face-face.hnsw: cannot write to the gallery: index "
                            "written incompletely (")
    assert error.endswith(" bytes; disk full?)")
    after = gallery_state(directory)
    # the database committed the batches; the index files in place are the old ones, vouched for by their sidecars
    assert after["index_files"] == before["index_files"]
    assert len(after["rows"]["media"]) == len(before["rows"]["media"]) + 8
    assert [p.name for p in directory.iterdir() if ".tmp" in p.name] == []
    with Gallery.open(directory) as gallery:  # opening repairs the stale indexes from the database
        for modality in ("face", "voice"):
            index = gallery.index(modality)
            assert (index.health.state, index.health.added, index.live_count) == ("repaired", 4, 8)


def test_the_real_cli_on_a_read_only_gallery_fails_in_one_line(reference, manifest, base_gallery, tmp_path):
    """The same refusal through the real command with the real model (not the replay)."""
    if not can_mount():
        pytest.skip("needs a read-only mount")
    source, target = tmp_path / "source", tmp_path / "mnt"
    shutil.copytree(base_gallery, source)
    target.mkdir()
    before = gallery_state(source)
    voice = next(reference.corpus / rel for identity, modality, rel, _ in reference.rows
                 if identity == "id00002" and modality == "voice")
    command = [sys.executable, "-m", "fvmatch.cli", "enroll", "--identity", "id00002", "--voice", str(voice),
               "--gallery", str(target)]
    script = READ_ONLY.replace('set -- "$@"', "set -- " + " ".join(f"'{part}'" for part in command))
    rc, stdout, stderr = run_in_namespace(script, tmp_path / "out", MNT=target, SOURCE=source)
    assert rc == 2 and stdout == ""
    assert the_one_error(stderr) == (f"fvmatch: error: {target}/write.lock: cannot write to the gallery: "
                                     "Read-only file system")
    assert gallery_state(source) == before


def test_every_gallery_file_is_readable_by_its_owner_only_whatever_the_umask(reference, manifest, tmp_path):
    directory = tmp_path / "gallery"
    directory.mkdir()
    directory.chmod(0o777)  # made beforehand by a careless hand: creating the gallery takes the others' bits off

    def enroll(manifest: Path, **env) -> subprocess.CompletedProcess:
        return subprocess.run(enroll_command(reference, manifest, directory), capture_output=True, text=True,
                              timeout=60, preexec_fn=lambda: os.umask(0), env={**os.environ, **env})

    assert enroll(reference.manifest("disk-base.csv", BASE)).returncode == 0
    # killed while saving its second index (the voice space's): the database's -wal and -shm and the temporary
    # files are all there
    killed = enroll(manifest, REPLAY_KILL="index-temp:2")
    assert killed.returncode == -signal.SIGKILL
    names = {p.name for p in directory.iterdir()}
    indexes = {f"{name}{suffix}" for name in ("face.hnsw", "voice.hnsw", "dlib-face-face.hnsw", "ge2e-voice-voice.hnsw")
               for suffix in ("", ".json")}
    assert {"gallery.db", "gallery.db-wal", "gallery.db-shm", "write.lock", *indexes} < names
    assert any(name.startswith("ge2e-voice-voice.hnsw.tmp") for name in names)
    assert any(name.startswith("ge2e-voice-voice.hnsw.json.tmp") for name in names)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()}
    assert modes == {name: 0o600 for name in names}


def test_an_index_too_big_for_the_memory_at_hand_fails_in_one_line_without_a_rebuild(reference, tmp_path):
    directory = tmp_path / "gallery"
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(16_000, 256)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    with Gallery.open(directory, create=True, model_id=reference.model_id, embedding_dim=256) as gallery, \
            gallery.writer():
        gallery.add([NewItem(f"person{i // 4}", "face", f"/faces/{i}.jpg", f"{i:064x}", 1, 0.99, vectors[i])
                     for i in range(len(vectors))])  # an index of about 20 MB
        gallery.flush()
    before = gallery_state(directory)
    voice = next(reference.corpus / rel for _, modality, rel, _ in reference.rows if modality == "voice")
    # (the joint space named: only its index, of 16,000 faces, is too big here)
    result = subprocess.run(replay_command(reference.table, "identify", "--voice", voice, "--against", "face", "--space",
                                           "joint", "--gallery", directory),
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "REPLAY_MEMORY_MARGIN_MB": "8"})
    assert result.returncode == 2 and result.stdout == ""
    assert the_one_error(result.stderr) == (f"fvmatch: error: {directory}/face.hnsw: not enough memory for this index "
                                            "of 16,000 items (it needs about 21 MiB; see docs/gallery.md, Limits)")
    assert gallery_state(directory) == before  # nothing rebuilt or rewritten
