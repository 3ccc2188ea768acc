"""One trial of an evaluation protocol: a probe, its candidates and which of them is the probe's person.

Below both the trial lists (trials.py) and the readers of published lists (published_trials.py), which make them.
"""
from __future__ import annotations

from dataclasses import dataclass

MODALITY_OF = {"F": "face", "V": "voice"}


@dataclass(frozen=True)
class Trial:
    protocol: str
    direction: str
    stratum: str
    probe: str
    candidates: tuple[str, ...]
    target: int

    @property
    def probe_modality(self) -> str:
        return MODALITY_OF[self.direction[0]]

    @property
    def candidate_modality(self) -> str:
        return MODALITY_OF[self.direction[-1]]
