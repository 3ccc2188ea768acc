"""Shared test helpers: small real media, and the CLI run as a user runs it."""
from __future__ import annotations

import io
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import numpy as np


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`fvmatch ARGS` in a fresh process (so start-up, exit codes and stdout/stderr are the real ones)."""
    return subprocess.run([sys.executable, "-m", "fvmatch.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


def run_cli_here(*args) -> Outcome:
    """`fvmatch ARGS` through the real entry point (argument parsing, error mapping, exit code), in this process:
    the model and torch stay loaded between calls, so a test takes seconds, not a fresh interpreter each."""
    from fvmatch import cli

    saved, out, err = sys.argv, io.StringIO(), io.StringIO()
    sys.argv = ["fvmatch", *map(str, args)]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            try:
                cli.main()
                code = 0
            except SystemExit as exit:
                code = exit.code or 0
    finally:
        sys.argv = saved
    return Outcome(int(code), out.getvalue(), err.getvalue())


def speech_clip(seconds: float = 4.0, seed: int = 0, female: bool = False) -> np.ndarray:
    """Formant-synthesised speech at 16 kHz that silero-vad accepts (fvmatch.synth.voices)."""
    from fvmatch.synth.voices import VoiceTraits, render_voice

    traits = VoiceTraits(female=female, age_years=40.0, size=0.5, tone=0.5, pitch=0.5, rate=0.5, breathiness=0.3)
    return render_voice(traits, np.random.default_rng(seed), seconds=seconds)


def gallery_state(directory) -> dict:
    """What a refused command must leave alone: identities, media and meta rows (not the audit trail, which records
    the attempt, nor the audit head), and the index files' bytes."""
    import hashlib
    import sqlite3

    connection = sqlite3.connect(directory / "gallery.db")
    rows = {table: connection.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall() for table in ("identities", "media")}
    rows["meta"] = connection.execute("SELECT * FROM meta WHERE key != 'audit_head' ORDER BY 1").fetchall()
    connection.close()
    files = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.glob("*.hnsw*"))}
    return {"rows": rows, "index_files": files}


REALMEDIA = Path(__file__).resolve().parents[2] / "shared" / "realmedia"


def librispeech_clip(name: str) -> tuple[np.ndarray, int]:
    """(samples, rate) of a LibriSpeech clip of ../shared/realmedia/voices (16 kHz) by its utterance id; the test
    skips, saying why, where that folder is absent."""
    import pytest
    import soundfile

    path = REALMEDIA / "voices" / f"librispeech_{name.split('-')[0]}" / f"{name}.flac"
    if not path.is_file():
        pytest.skip(f"../shared/realmedia is absent: no {path} (real recordings are not part of the repository)")
    samples, rate = soundfile.read(path, dtype="float32")
    return samples, rate
