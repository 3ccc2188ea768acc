"""Published corpora laid out as fvmatch's corpus (fvmatch.corpus), with links to the release's own files."""
from __future__ import annotations

from fvmatch.importers.voxceleb1 import import_voxceleb1

__all__ = ["import_voxceleb1"]
