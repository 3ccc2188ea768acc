"""The synthetic paired face-voice corpus (ARCHITECTURE.md section 9): shared hidden traits, real files."""
from fvmatch.synth.corpus import CorpusSpec, write_corpus

__all__ = ["CorpusSpec", "write_corpus"]
