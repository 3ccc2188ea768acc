"""Shared fixtures: real photos and generated media, built once per session."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mediagen import speech_clip


@pytest.fixture(scope="session")
def grace_hopper() -> Path:
    """A real photograph that matplotlib ships (one face, 512x600)."""
    import matplotlib.cbook

    return Path(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


@pytest.fixture(scope="session")
def embedder():
    from fvmatch.analysis.embedder import Embedder

    return Embedder.load()


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    """Small real media files: a speech WAV, a silent WAV, a 0.3 s WAV, a faceless image, bad files."""
    import soundfile
    from PIL import Image

    root = tmp_path_factory.mktemp("media")
    soundfile.write(root / "speech.wav", speech_clip(5.0), 16000, subtype="PCM_16")
    soundfile.write(root / "silence.wav", np.zeros(16000 * 3, np.float32), 16000, subtype="PCM_16")
    soundfile.write(root / "short.wav", speech_clip(4.0)[: int(0.3 * 16000)], 16000, subtype="PCM_16")
    Image.new("RGB", (256, 256), (128, 140, 150)).save(root / "noface.jpg")
    (root / "text.jpg").write_text("this is not an image\n")
    (root / "text.wav").write_text("this is not audio\n")
    return root


@pytest.fixture(scope="session")
def team_servers():
    """A PostgreSQL cluster and a Milvus Lite server for the team gallery tests (tests/team_servers.py), started once.
    Missing PostgreSQL or the team extra: skipped on a workstation, saying why; a failure under CI."""
    import importlib.util
    import os

    from team_servers import MilvusServer, PostgresServer, postgres_binaries

    missing = None
    if postgres_binaries() is None:
        missing = "PostgreSQL's initdb and pg_ctl are not installed (bash .ci/postgres installs them)"
    elif not all(importlib.util.find_spec(name) for name in ("psycopg", "pymilvus", "milvus_lite")):
        missing = "the team extra is not installed (pip install '.[team]')"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"team gallery tests: {missing}")
        pytest.skip(f"team gallery tests: {missing}")
    postgres = PostgresServer()
    try:
        milvus = MilvusServer()
    except BaseException:
        postgres.stop()
        raise
    yield postgres, milvus
    milvus.stop()
    postgres.stop()


@pytest.fixture
def team_gallery(team_servers, tmp_path) -> Path:
    """A team gallery file naming a fresh database and collections of its own (nothing enrolled yet)."""
    postgres, milvus = team_servers
    database = postgres.new_database()
    path = tmp_path / "team.toml"
    path.write_text(f'records = "{postgres.url(database)}"\nvectors = "{milvus.uri}"\nprefix = "{database}"\n')
    return path
