"""Writing a report page: checked before the work, written atomically (temporary file, fsync, rename), owner-only."""
from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from fvmatch.errors import BadArgument
from fvmatch.gallery.files import fsync_path


def check_out(out: str | Path) -> None:
    """BadArgument unless a report can be written at `out` (checked before the work, and again when writing)."""
    out = Path(out)
    if out.exists() and not out.is_file():
        raise BadArgument(out, "exists and is not a regular file")
    if not out.parent.is_dir():
        raise BadArgument(out, "its directory does not exist")


def write_report(page: str, out: str | Path) -> tuple[str, int]:
    """Write the page atomically (temporary file, fsync, rename), readable by its owner only; (sha256, bytes)."""
    out = Path(out)
    data = page.encode("utf-8")
    check_out(out)
    try:
        descriptor, temporary = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")  # mode 0600
    except OSError as error:
        raise BadArgument(out, f"cannot write the report ({error.strerror or error})") from None
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, out)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise BadArgument(out, f"cannot write the report ({error.strerror or error})") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    fsync_path(out.parent)
    return hashlib.sha256(data).hexdigest(), len(data)
