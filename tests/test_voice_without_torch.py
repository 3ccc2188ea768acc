"""A cold voice query (`fvmatch identify --voice Q -g G`) in a fresh process, through the real entry point: the
ge2e-voice space and silero-vad run in numpy; which of fvmatch's modules still import torch on the way."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from fvmatch.media.resample import resample
from mediagen import run_cli, speech_clip

ROOT = Path(__file__).resolve().parents[1]
PROBE = """
import builtins, contextlib, io, json, sys
importers = set()
original_import = builtins.__import__

def noting_import(name, globals=None, *args, **kwargs):
    if name.split(".")[0] in ("torch", "torchaudio", "silero_vad", "resemblyzer") and globals:
        importers.add(globals.get("__file__") or "?")
    return original_import(name, globals, *args, **kwargs)

builtins.__import__ = noting_import
from fvmatch import cli
sys.argv = ["fvmatch", *sys.argv[1:]]
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        cli.main()
        code = 0
    except SystemExit as exit:
        code = exit.code or 0
outcome = {"code": code, "out": out.getvalue(), "importers": sorted(importers), "torch": "torch" in sys.modules}
print(json.dumps(outcome))
"""


@pytest.fixture(scope="module")
def voice_gallery(tmp_path_factory) -> dict[str, Path]:
    """A gallery of two generated voices, and questions of the first: at 16 kHz and at 44.1 kHz (resampled)."""
    root = tmp_path_factory.mktemp("voices")
    for label, female, seed in (("ana", True, 21), ("bob", False, 22)):
        (root / "people" / label).mkdir(parents=True)
        soundfile.write(root / "people" / label / "reference.wav", speech_clip(4.0, seed=seed, female=female), 16000)
    question = speech_clip(4.0, seed=23, female=True)
    soundfile.write(root / "question16k.wav", question, 16000)
    soundfile.write(root / "question44k.flac", resample(question, 160, 441), 44100)
    enrolled = run_cli("enroll", "-g", root / "gallery", "--from-dir", root / "people")
    assert enrolled.returncode == 0, enrolled.stderr
    return {"gallery": root / "gallery", "16k": root / "question16k.wav", "44k": root / "question44k.flac"}


@pytest.fixture(scope="module")
def cold_voice_query(voice_gallery):
    """The outcome of a cold `identify --voice` of the question at a rate ("16k", "44k"), each run once."""
    outcomes: dict[str, dict] = {}

    def of(rate: str) -> dict:
        if rate not in outcomes:
            outcomes[rate] = _cold_voice_query(voice_gallery["gallery"], voice_gallery[rate])
        return outcomes[rate]

    return of


def _cold_voice_query(gallery: Path, question: Path) -> dict:
    command = [sys.executable, "-c", PROBE, "identify", "--voice", str(question), "-g", str(gallery), "--json"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    # fvmatch's own modules (torch's and the packages' modules import each other once one of them is in)
    outcome["importers"] = {str(Path(name).relative_to(ROOT)) for name in outcome["importers"]
                            if name.startswith(str(ROOT)) and "site-packages" not in name}
    return outcome


@pytest.mark.parametrize("rate", ["16k", "44k"])
def test_a_cold_voice_query_imports_no_torch(cold_voice_query, rate):
    """16 kHz is read as it is; 44.1 kHz is resampled (fvmatch.media.resample, torchaudio's resampler in numpy)."""
    outcome = cold_voice_query(rate)
    assert outcome["code"] in (0, 1), outcome  # 1: calibrated, nobody met the threshold
    results = json.loads(outcome["out"])
    assert "ge2e-voice" in outcome["out"] and {"ana", "bob"} <= set(json.dumps(results).split('"'))
    assert outcome["importers"] == set() and not outcome["torch"], outcome["importers"]
