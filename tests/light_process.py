"""Commands run as in an analyst's install (`pip install fvmatch`, no training extra): in fresh processes in which the
training extra's packages cannot be found."""
from __future__ import annotations

import subprocess
import sys
import tempfile

TRAIN_ONLY = ("torch", "torchaudio", "torchvision", "facenet_pytorch", "resemblyzer", "silero_vad")
# the training extra's packages made unfindable (find_spec gives None, import fails, as where they are not
# installed), then the real entry point
WITHOUT_TRAIN_EXTRA = f"""
import sys
from importlib.machinery import PathFinder

class WithoutTrainExtra(PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        return None if name.partition(".")[0] in {TRAIN_ONLY!r} else super().find_spec(name, path, target)

sys.meta_path = [WithoutTrainExtra if finder is PathFinder else finder for finder in sys.meta_path]
from fvmatch import cli
sys.argv = ["fvmatch", *sys.argv[1:]]
cli.main()
"""
JOINT_REFUSAL = "fvmatch: error: --space joint needs the training extra: pip install 'fvmatch[train]'"


def run_light(*args) -> subprocess.CompletedProcess:
    # run outside the repository, whose fvmatch/ would shadow a non-editable install
    return subprocess.run([sys.executable, "-c", WITHOUT_TRAIN_EXTRA, *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=tempfile.gettempdir())
