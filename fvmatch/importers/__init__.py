"""Published corpora and a laboratory's own paired data laid out as fvmatch's corpus (fvmatch.corpus), with links to
the source's own files."""
from __future__ import annotations

from fvmatch.importers.pairs import import_pairs
from fvmatch.importers.voxceleb1 import import_voxceleb1
from fvmatch.importers.voxceleb2 import import_voxceleb2

__all__ = ["import_pairs", "import_voxceleb1", "import_voxceleb2"]
