"""Concurrency: two enrolments and many identifications on one gallery at once.

Writers queue on the gallery's write lock (each says once on stderr who holds it, and gives up cleanly after
--lock-timeout); readers never wait for it and never see a torn state. The enrolments and identifications run the
real command with replayed embeddings (tests/replay_cli.py: a third of a second to start, so many processes
overlap on 2 cores); the wait message and the time-out are also checked with the real CLI and the real model.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from replay_cli import build_reference, replay_command, replayed_gallery

import fvmatch.gallery.index
from fvmatch.gallery import Gallery, NewItem
from fvmatch.gallery.index import ModalityIndex, index_path
from fvmatch.gallery.lock import WriteLock

BASE = ("id00000", "id00001")
FIRST_WRITER = ("id00002", "id00003")
SECOND_WRITER = ("id00004", "id00005")
HOLDER = "the concurrency test"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    return build_reference(tmp_path_factory)


@pytest.fixture(scope="module")
def base_gallery(reference, tmp_path_factory) -> Path:
    """A gallery holding the first two identities (faces and voices), made by the replayed command."""
    return replayed_gallery(reference, tmp_path_factory.mktemp("concurrency") / "base", "concurrency-base.csv", BASE)


class Lines:
    """A process's stderr lines, collected by a thread, so a test can wait for one with a deadline."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.process, self.seen, self._queue = process, [], queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no line with {text!r} on stderr; saw {self.seen}")

    def rest(self) -> list[str]:
        """All remaining lines (after the process ended)."""
        while (line := self._queue.get(timeout=60)) is not None:
            self.seen.append(line)
        return self.seen


def start(command: list[str], **env) -> subprocess.Popen:
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **env})


def identify(reference, gallery: Path, modality: str, relative: str) -> list[str]:
    return replay_command(reference.table, "identify", f"--{modality}", reference.corpus / relative,
                          "--against", modality, "--top", "6", "--space", "joint", "--gallery", gallery, "--json")


def test_two_enrolments_and_many_identifications_at_once_all_land_and_all_answer(reference, base_gallery, tmp_path):
    pytest.importorskip("torch",
                        reason="tests/replay_cli.py replays joint vectors: needs torch (fvmatch[train])")
    gallery = tmp_path / "gallery"
    shutil.copytree(base_gallery, gallery)
    vectors = {(m, str((reference.corpus / rel).resolve())): np.frombuffer(reference.embeddings[(m, s)], np.float32)
               for _, m, rel, s in reference.rows}
    queries = [(identity, modality, relative) for identity, modality, relative, _ in reference.rows]
    base_queries = [query for query in queries if query[0] in BASE]
    holder = WriteLock(gallery, description=HOLDER)
    holder.acquire()
    writers = [start(replay_command(reference.table, "enroll", "--manifest", reference.manifest(name, identities),
                                    "--gallery", gallery, "--json"), REPLAY_BATCH="1", REPLAY_DELAY="0.04")
               for name, identities in (("writer-1.csv", FIRST_WRITER), ("writer-2.csv", SECOND_WRITER))]
    writer_lines = [Lines(process) for process in writers]
    readers: list[tuple[tuple, subprocess.Popen, bool]] = []  # (query, process, started while the test held the lock)
    started_during_writes = 0
    for lines in writer_lines:
        lines.wait_for("waiting for the gallery's write lock")
    while len(readers) < 4:  # readers never wait for the write lock
        query = base_queries[len(readers) * 3 % len(base_queries)]
        readers.append((query, start(identify(reference, gallery, *query[1:])), True))
        readers[-1][1].wait(timeout=60)
    holder.release()
    while any(process.poll() is None for process in writers) or len(readers) < 12:
        running = [process for _, process, _ in readers if process.poll() is None]
        if len(running) < 3:
            query = queries[len(readers) * 7 % len(queries)]
            started_during_writes += any(process.poll() is None for process in writers)
            readers.append((query, start(identify(reference, gallery, *query[1:])), False))
        time.sleep(0.02)

    for process, lines in zip(writers, writer_lines):
        output = process.stdout.read()
        assert process.wait(timeout=60) == 0, lines.rest()
        assert json.loads(output)["enrolled"] == 8
        waits = [line for line in lines.rest() if "waiting for the gallery's write lock" in line]
        assert len(waits) == 1 and f"held by {HOLDER}" in waits[0]
    overlapped = 0
    for (identity, modality, relative), process, held in readers:
        output, errors = process.communicate(timeout=60)
        assert process.returncode == 0, errors  # uncalibrated: 0, whatever the gallery holds at that moment
        assert "error" not in errors
        answer = json.loads(output)
        query_vector = vectors[(modality, str((reference.corpus / relative).resolve()))]
        for candidate in answer["candidates"]:  # every score is the exact cosine with the item it names
            stored = vectors[(candidate["matched_modality"], candidate["source_path"])]
            assert candidate["score"] == pytest.approx(float(stored @ query_vector), abs=1e-5)
        top = answer["candidates"][0]
        if identity in BASE:  # enrolled before any writer ran: always found, first, by its own item
            assert (top["identity"], top["score"]) == (identity, pytest.approx(1.0, abs=1e-5))
        overlapped += not held
    assert overlapped >= 8 and sum(held for _, _, held in readers) == 4 and started_during_writes >= 2

    connection = sqlite3.connect(gallery / "gallery.db")
    assert connection.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    connection.close()
    with Gallery.open(gallery) as opened:
        assert opened.counts() == {"identities": 6, "face": 12, "voice": 12}
        for modality in ("face", "voice"):
            assert opened.index(modality).live_count == 12
    rows = sqlite3.connect(gallery / "gallery.db").execute(
        "SELECT label, modality, sha256 FROM media JOIN identities ON identities.id = media.identity_id").fetchall()
    assert set(rows) == reference.stored() and len(rows) == 24


def test_a_waiting_writer_says_who_holds_the_lock_and_a_short_timeout_exits_2_in_one_line(reference, base_gallery,
                                                                                          tmp_path):
    pytest.importorskip("torch",
                        reason="tests/replay_cli.py replays joint vectors: needs torch (fvmatch[train])")
    gallery = tmp_path / "gallery"
    shutil.copytree(base_gallery, gallery)
    before = sqlite3.connect(gallery / "gallery.db").execute("SELECT count(*) FROM media").fetchone()[0]
    voices = [reference.corpus / rel for identity, modality, rel, _ in reference.rows
              if identity == "id00002" and modality == "voice"]
    real = [sys.executable, "-m", "fvmatch.cli", "enroll", "--identity", "id00002", "--gallery", str(gallery), "--json"]
    with WriteLock(gallery, description=HOLDER):
        patient = start(real + ["--voice", str(voices[0])])
        hasty = start(real + ["--voice", str(voices[1]), "--lock-timeout", "1"])
        patient_lines = Lines(patient)
        hasty_output, hasty_errors = hasty.communicate(timeout=120)
        patient_lines.wait_for(f"waiting for the gallery's write lock, held by {HOLDER}", timeout=120)
        assert patient.poll() is None  # still waiting while the lock is held
    assert hasty.returncode == 2 and hasty_output == ""
    assert "Traceback" not in hasty_errors
    error_lines = [line for line in hasty_errors.splitlines() if line.startswith("fvmatch: error:")]
    assert error_lines == [f"fvmatch: error: {gallery}: another writer ({HOLDER}) still holds the write lock "
                           "after 1 s; try again later"]
    assert [line for line in hasty_errors.splitlines() if line.strip() and line not in error_lines] == [
        f"fvmatch: waiting for the gallery's write lock, held by {HOLDER} ..."]

    output = patient.stdout.read()
    assert patient.wait(timeout=120) == 0, patient_lines.rest()
    assert json.loads(output)["enrolled"] == 1
    assert sum("waiting for the gallery's write lock" in line for line in patient_lines.rest()) == 1
    after = sqlite3.connect(gallery / "gallery.db").execute("SELECT count(*) FROM media").fetchone()[0]
    assert after == before + 1  # the patient writer's item, not the one that gave up


def test_a_reader_never_loads_one_index_file_with_the_deleted_labels_of_another(tmp_path, monkeypatch):
    """A writer saves a new index (an identity removed) between a reader's hash check and its load: the reader
    reads sidecar and file again, instead of loading the new file with the old sidecar's deleted labels."""
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(6, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    writer = Gallery.open(tmp_path / "gallery", create=True, model_id="model", embedding_dim=8)
    with writer.writer():
        ids = writer.add([NewItem(f"person{i}", "face", f"/faces/{i}.jpg", f"sha{i}", 1, 0.9, vectors[i])
                          for i in range(6)])
        writer.flush()
    digest, saved = hashlib.file_digest, []

    def digest_then_a_writer_saves(handle, name):
        result = digest(handle, name)
        if not saved:
            saved.append(True)
            with writer.writer():
                writer.remove_identity("person0")
                writer.flush()
        return result

    monkeypatch.setattr(fvmatch.gallery.index.hashlib, "file_digest", digest_then_a_writer_saves)
    reader = ModalityIndex(index_path(tmp_path / "gallery", "joint", "face"), 8)
    assert reader.load_checked({"space": "joint", "model_id": "model"}) is None
    assert saved and reader.deleted == {ids[0]}
    assert set(reader.index.get_ids_list()) - reader.deleted == set(ids[1:])
    reader.reconcile(np.array(ids[1:]), lambda wanted: vectors[[ids.index(i) for i in wanted]])
    assert reader.health.state == "ok"
    writer.close()
