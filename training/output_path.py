"""The checkpoint path a run will write, checked before any hour is spent (no torch: the CLI checks it first)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fvmatch.errors import BadArgument


def check_output_path(out: str | Path) -> Path:
    """`out` as a Path once its folder exists and takes a new file; BadArgument naming the path otherwise.

    A run writes `out` and `out`.trainer.safetensors after each epoch: a missing or read-only folder found then
    would throw the epoch away.
    """
    out = Path(out)
    folder = out.parent
    if out.is_dir():
        raise BadArgument(out, "is a folder; give the checkpoint file to write (e.g. model.safetensors)")
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "no such folder"
        raise BadArgument(folder, f"{what}: the checkpoint {out.name} cannot be written there (create the folder "
                                  "first)")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{out.name}.", suffix=".probe"):
            pass
    except OSError as error:
        raise BadArgument(folder, f"cannot write here ({error.strerror or error}): the checkpoint {out.name} "
                                  "would be lost") from None
    if out.exists() and not os.access(out, os.W_OK):
        raise BadArgument(out, "exists and cannot be replaced (no write permission)")
    return out
