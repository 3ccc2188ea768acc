"""Crash safety: batch enrolment SIGKILLed anywhere loses nothing it committed, and a re-run completes it.

Each case starts from no gallery or from one already holding three identities, runs `fvmatch enroll --manifest`
(tests/replay_cli.py: the real command, with the embeddings of a real run replayed) in batches of 3, and kills it:
at named points (a batch committed or about to commit, the new database built but not yet in place, and the index
save: temporary files written, a torn temporary index, the index renamed without its sidecar), before a random
line of the storage code, or after a random delay. After each kill: SQLite's integrity check passes, every stored
item is found by its own embedding and named by an audit row committed with it, no index entry lacks its database
row, the audit chain verifies, and running the same manifest again
ends with exactly the rows of the never-killed reference run (the real CLI with the real model).

The default run makes 26 kills; `pytest -m long tests/test_crash_safety.py -s` runs the long campaign (some
hundreds, chained kills during the re-runs, and kills of the real CLI with the real model) and prints a summary.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from replay_cli import build_reference, replay_command

from fvmatch.audit.trail import verify_chain
from fvmatch.gallery import Gallery
from fvmatch.gallery.index import ModalityIndex, index_path
from fvmatch.spaces import reference_spaces
pytest.importorskip("torch",
                    reason="tests/replay_cli.py replays joint vectors: needs torch (fvmatch[train])")

BATCH = 3  # eight commits in a 24-item run, so kills fall between many of them
FIRST = ("id00000", "id00001", "id00002")
SEED = 20240507
MODALITIES = ("face", "voice")

# (kill point, start, media rows the kill must leave): index saves come after the last batch, face then voice
NAMED_KILLS = [
    ("created", "empty", 0),
    ("before-commit:1", "empty", 0),
    ("added:1", "empty", 3),
    ("added:4", "empty", 12),
    ("before-commit:3", "first", 12 + 6),
    ("added:2", "first", 12 + 6),
    ("index-temp:1", "empty", 24),
    ("index-temp:2", "first", 24),
    ("index-torn:1", "first", 24),
    ("index-torn:2", "empty", 24),
    ("index-renamed:1", "first", 24),
    ("index-renamed:2", "empty", 24),
]
LINE_KILLS = [(("empty", "first")[i % 2], round(random.Random(SEED + i).random(), 4)) for i in range(10)]
TIMED_KILLS = [(("empty", "first")[i % 2], round(random.Random(SEED - i).random(), 4)) for i in range(4)]


@dataclass
class Start:
    """A state a killed run starts from: its gallery (None: none yet), the storage-code lines an unkilled run
    executes from it, and how long that run's work after start-up takes."""

    source: Path | None
    lines: int
    window_seconds: float


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build_reference(tmp_path_factory)


@pytest.fixture(scope="module")
def manifest(reference) -> Path:
    return reference.manifest("crash-all.csv", reference.identities)


def enroll_command(reference, manifest: Path, gallery: Path) -> list[str]:
    return replay_command(reference.table, "enroll", "--manifest", manifest, "--gallery", gallery, "--json")


def replay_env(**settings) -> dict:
    return {**os.environ, "REPLAY_BATCH": str(BATCH), **settings}


def run_enroll(reference, manifest: Path, gallery: Path, **settings) -> subprocess.CompletedProcess:
    return subprocess.run(enroll_command(reference, manifest, gallery), capture_output=True, text=True,
                          env=replay_env(**settings), timeout=120)


def start_enroll(command: list[str], env: dict) -> subprocess.Popen:
    """Start an enrolment; return once its command begins (start-up done), so a delay measures gallery work."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    line = process.stderr.readline()
    assert line.strip() == "replay-start", line
    return process


@pytest.fixture(scope="module")
def starts(reference, manifest, tmp_path_factory) -> dict[str, Start]:
    root = tmp_path_factory.mktemp("starts")
    first = root / "first"
    assert run_enroll(reference, reference.manifest("crash-first.csv", FIRST), first).returncode == 0
    found = {}
    for name, source in (("empty", None), ("first", first)):
        counted, timed = root / f"{name}-counted", root / f"{name}-timed"
        for directory in (counted, timed):
            if source:
                shutil.copytree(source, directory)
        result = run_enroll(reference, manifest, counted, REPLAY_COUNT_LINES="1")
        assert result.returncode == 0, result.stderr
        lines = int(result.stderr.rsplit("replay-lines ", 1)[1].split()[0])
        process = start_enroll(enroll_command(reference, manifest, timed), replay_env())
        began = time.perf_counter()
        process.communicate()
        window = time.perf_counter() - began
        assert process.returncode == 0
        # a never-killed replayed run gives the real run's gallery exactly
        for directory in (counted, timed):
            assert stored(directory) == reference.stored()
        found[name] = Start(source, lines, window)
    return found


def fresh(start: Start, directory: Path) -> Path:
    if start.source is not None:
        shutil.copytree(start.source, directory)
    return directory


def stored(directory: Path) -> set[tuple[str, str, str]]:
    connection = sqlite3.connect(directory / "gallery.db")
    rows = connection.execute("SELECT identities.label, media.modality, media.sha256 FROM media"
                              " JOIN identities ON identities.id = media.identity_id").fetchall()
    connection.close()
    return set(rows)


def live_labels(index: ModalityIndex) -> set[int]:
    return set(int(label) for label in index.index.get_ids_list()) - index.deleted


def check_gallery(directory: Path, reference) -> int:
    """What must hold after any kill; returns the number of media rows stored."""
    if not (directory / "gallery.db").exists():
        return 0  # killed before the gallery existed: nothing was committed
    connection = sqlite3.connect(directory / "gallery.db")
    try:
        assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]  # (a)
        assert connection.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = connection.execute("SELECT media.id, identities.label, media.modality, media.sha256, vectors.embedding"
                                  " FROM media JOIN identities ON identities.id = media.identity_id"
                                  " LEFT JOIN vectors ON vectors.media_id = media.id AND vectors.space = 'joint'").fetchall()
        # every stored item has its vector in each space of its modality: joint and one pretrained space, and for a
        # voice its reference conditions too
        assert connection.execute("SELECT count(*) FROM media WHERE (SELECT count(*) FROM vectors WHERE"
                                  " vectors.media_id = media.id) != CASE media.modality WHEN 'voice' THEN ? ELSE ? END",
                                  [len(reference_spaces("voice")), len(reference_spaces("face"))]).fetchone() == (0,)
        # an identity is created only with its first stored item
        assert connection.execute("SELECT count(*) FROM identities"
                                  " WHERE id NOT IN (SELECT identity_id FROM media)").fetchone() == (0,)
        # (e) every stored item is on the audit trail: its batch's row committed with it
        recorded = {media_id for (result,) in connection.execute("SELECT result FROM audit WHERE command = 'enroll batch'")
                    for media_id in json.loads(result)["media_ids"]}
        assert {row[0] for row in rows} <= recorded
    finally:
        connection.close()
    for _, label, modality, sha256, embedding in rows:  # only the reference's items, each with its own embedding
        assert (label, modality, sha256) in reference.stored()
        expected = np.frombuffer(reference.embeddings[(modality, sha256)], np.float32)
        assert np.allclose(np.frombuffer(embedding, np.float32), expected, atol=1e-5)
    ids = {modality: {row[0] for row in rows if row[2] == modality} for modality in MODALITIES}
    for modality in MODALITIES:  # (c) on disk, before opening repairs anything
        on_disk = ModalityIndex(index_path(directory, "joint", modality), 256)
        if on_disk.load_checked({"space": "joint", "model_id": reference.model_id}) is None:
            assert live_labels(on_disk) <= ids[modality]
    with Gallery.open(directory) as gallery:
        for modality in MODALITIES:  # (c) as served: exactly the stored items
            assert live_labels(gallery.index(modality)) == ids[modality]
        for media_id, label, modality, _, embedding in rows:  # (b)
            best = gallery.search(np.frombuffer(embedding, np.float32), [modality], top=1)[0]
            assert (best.media_id, best.identity) == (media_id, label)
            assert best.score == pytest.approx(1.0, abs=1e-5)
        assert verify_chain(gallery).ok
    return len(rows)


def complete(directory: Path, reference, manifest: Path, command: list[str] | None = None) -> None:
    """(d) Enrolling the same manifest again ends exactly where a never-killed run does."""
    if command is None:
        result = run_enroll(reference, manifest, directory)
    else:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["failed"] == 0 and report["enrolled"] + report["skipped"] == len(reference.rows)
    assert check_gallery(directory, reference) == len(reference.rows)
    assert stored(directory) == reference.stored()
    assert leftovers(directory) == []


def leftovers(directory: Path) -> list[str]:
    """Temporary files of an interrupted save or creation (a later writer removes them)."""
    return sorted(p.name for p in directory.iterdir() if ".tmp" in p.name or ".new-" in p.name)


@pytest.mark.parametrize("kill, start, rows", NAMED_KILLS, ids=[f"{k}-from-{s}" for k, s, _ in NAMED_KILLS])
def test_enrolment_killed_at_a_named_point_keeps_exactly_what_it_committed(kill, start, rows, reference, manifest,
                                                                            starts, tmp_path):
    directory = fresh(starts[start], tmp_path / "gallery")
    result = run_enroll(reference, manifest, directory, REPLAY_KILL=kill)
    assert result.returncode == -signal.SIGKILL, result.stderr
    assert check_gallery(directory, reference) == rows
    complete(directory, reference, manifest)


@pytest.mark.parametrize("start, fraction", LINE_KILLS, ids=[f"{s}-{f}" for s, f in LINE_KILLS])
def test_enrolment_killed_before_a_random_line_of_storage_code_loses_nothing(start, fraction, reference, manifest,
                                                                             starts, tmp_path):
    directory = fresh(starts[start], tmp_path / "gallery")
    line = 1 + int(fraction * starts[start].lines)
    result = run_enroll(reference, manifest, directory, REPLAY_KILL=f"line:{line}")
    assert result.returncode == -signal.SIGKILL, result.stderr
    check_gallery(directory, reference)
    complete(directory, reference, manifest)


@pytest.mark.parametrize("start, fraction", TIMED_KILLS, ids=[f"{s}-{f}" for s, f in TIMED_KILLS])
def test_enrolment_killed_after_a_random_delay_loses_nothing(start, fraction, reference, manifest, starts, tmp_path):
    directory = fresh(starts[start], tmp_path / "gallery")
    process = start_enroll(enroll_command(reference, manifest, directory), replay_env())
    time.sleep(fraction * starts[start].window_seconds)
    process.kill()  # SIGKILL; had the run already finished, the checks below hold all the same
    process.communicate()
    check_gallery(directory, reference)
    complete(directory, reference, manifest)


LONG_REPLAYED_TRIALS = 160
LONG_REAL_TRIALS = 8


@pytest.mark.long
def test_long_kill_campaign(reference, manifest, starts, tmp_path):
    """Hundreds of kills at random lines and times, some during the re-run of a killed run, and kills of the real
    CLI with the real model; prints how many kills landed and how many committed rows were lost (must be 0)."""
    rng = random.Random(SEED)
    tally = Counter()
    for trial in range(LONG_REPLAYED_TRIALS):
        start = starts[rng.choice(("empty", "first"))]
        directory = fresh(start, tmp_path / f"trial{trial}")
        for _ in range(1 + (rng.random() < 0.4)):  # sometimes kill the re-run as well
            before = check_gallery(directory, reference)
            if rng.random() < 0.75:
                way = "line"
                result = run_enroll(reference, manifest, directory, REPLAY_KILL=f"line:{rng.randint(1, start.lines)}")
                killed = result.returncode == -signal.SIGKILL
            else:
                way = "timed"
                process = start_enroll(enroll_command(reference, manifest, directory), replay_env())
                time.sleep(rng.random() * start.window_seconds)
                process.kill()
                process.communicate()
                killed = process.returncode == -signal.SIGKILL
            after = check_gallery(directory, reference)
            tally[f"{way} kills"] += killed
            tally["rows lost"] += max(0, before - after)
        complete(directory, reference, manifest)
    real = [sys.executable, "-m", "fvmatch.cli", "enroll", "--manifest", str(manifest), "--json"]
    began = time.perf_counter()
    assert subprocess.run(real + ["--gallery", str(tmp_path / "real-timing")], capture_output=True).returncode == 0
    real_seconds = time.perf_counter() - began
    for trial in range(LONG_REAL_TRIALS):
        directory = tmp_path / f"real{trial}"
        process = subprocess.Popen(real + ["--gallery", str(directory)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, 1.0) * real_seconds)  # the first ~30% is start-up (imports, model)
        process.kill()
        process.wait()
        tally["real-model kills"] += process.returncode == -signal.SIGKILL
        check_gallery(directory, reference)
        complete(directory, reference, manifest, real + ["--gallery", str(directory)])
    print(f"\nkill campaign: {dict(tally)}")
    assert tally["rows lost"] == 0
    assert tally["line kills"] + tally["timed kills"] + tally["real-model kills"] >= LONG_REPLAYED_TRIALS
