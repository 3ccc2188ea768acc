"""The fvmatch command line: parse arguments, call the library, render a rich table or JSON.

The commands live in `fvmatch.commands` (one module per audience); this module assembles them and maps errors
to exit codes. Heavy libraries (torch, facenet-pytorch) are imported inside the commands that need them, so that
`fvmatch --help` and usage errors stay fast. Errors: see `main` and ARCHITECTURE.md section 10.
"""
from __future__ import annotations

import os
import sys

from fvmatch.commands import analyst, audit, evaluation, gallery, importing, media, report, training
from fvmatch.commands.common import app, say_line, stderr
from fvmatch.errors import EXIT_INTERNAL, FvmatchError

# importing a command module registers its commands on `app`
COMMAND_MODULES = (media, analyst, gallery, audit, report, training, evaluation, importing)

def main() -> None:
    """Entry point: run the app; a user mistake becomes one line on stderr and its exit code, never a traceback."""
    # torch's OpenMP threads otherwise spin while they wait for each other; on a machine whose cores are busy the
    # spinning starves the thread waited for (MTCNN on one photo, 2 busy cores: 5 s instead of 0.6 s). Results are
    # unchanged: only the waiting is. OpenMP reads it when torch loads, after this; an explicit setting is kept.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        app()
    except FvmatchError as error:
        say_line(stderr, f"fvmatch: error: {error}")
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        stderr.print("fvmatch: interrupted", highlight=False)
        sys.exit(130)
    except Exception as error:  # the last line of defence: an internal failure still gets one line and exit 3
        if os.environ.get("FVMATCH_DEBUG"):
            raise
        say_line(stderr, f"fvmatch: internal error: {type(error).__name__}: {error} (set FVMATCH_DEBUG=1 for a traceback)")
        sys.exit(EXIT_INTERNAL)


if __name__ == "__main__":
    main()
