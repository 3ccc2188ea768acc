"""Shared test helpers: small real media, and the CLI run as a user runs it."""
from __future__ import annotations

import subprocess
import sys

import numpy as np


def run_cli(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`fvmatch ARGS` in a fresh process (so start-up, exit codes and stdout/stderr are the real ones)."""
    return subprocess.run([sys.executable, "-m", "fvmatch.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


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
