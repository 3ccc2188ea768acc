"""The user-facing failures of fvmatch: one exception type per kind, each naming the item and the problem.

Library code raises these; only the CLI prints them, as one line, with the exit code below
(ARCHITECTURE.md section 10).
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_NO_MATCH = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3


class FvmatchError(Exception):
    """Base class: a failure the user can act on; `str()` is the one-line message."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, item: object, problem: str) -> None:
        self.item = str(item)
        self.problem = problem
        super().__init__(f"{self.item}: {problem}")


class UnreadableMedia(FvmatchError):
    """The file is missing, empty, truncated or not an image/audio file we can decode."""


class NoFaceFound(FvmatchError):
    """The face detector found no face in the image."""


class TooLittleSpeech(FvmatchError):
    """The recording holds less detected speech than the configured minimum."""


class PoorQuality(FvmatchError):
    """The item's measured quality is under a minimum the analyst set (--min-face-px, --min-snr, --min-bandwidth)."""


class InvalidCheckpoint(FvmatchError):
    """The file is not an fvmatch checkpoint, or its model card does not match its weights."""


class ModelMismatch(FvmatchError):
    """A gallery is pinned to one model and a different one was given."""


class BadArgument(FvmatchError):
    """A command-line value or input row that makes no sense."""
