"""fvmatch: forensic face-voice matching (Wang et al., SIGIR 2020 joint embedding).

The calls a script needs: `load_model`, `embed_face`, `embed_voice` (and, as they land, `Gallery`).
They are imported lazily so that `import fvmatch` (and the CLI's --help) stays free of torch.
"""
from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["load_model", "embed_face", "embed_voice", "Embedder", "Embedding"]


def __getattr__(name: str):
    if name in __all__:
        from fvmatch.analysis import embedder

        return getattr(embedder, name)
    raise AttributeError(f"module 'fvmatch' has no attribute {name!r}")
