"""Who in the gallery is this, and is it this claimed person: the query's trials, each scored in its own space.

A face query against faces is a face-face trial scored in the face space; against voices, a face-voice trial
scored in the joint space (`fvmatch.spaces.DEFAULT_SPACE`, or one space for all with `space`). Each trial type's
candidates form a group of their own: raw scores of different spaces are never ranked against each other.
Only when every group is calibrated are the candidates merged into one list, ranked by likelihood ratio.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fvmatch.errors import BadArgument
from fvmatch.gallery.gallery import Candidate
from fvmatch.scoring import Judgement, judge, trial_type
from fvmatch.spaces import space_for


@dataclass
class TrialGroup:
    """The candidates of one trial type (the query's modality against `against`), scored in `space`."""

    trial_type: str
    space: str
    model_id: str
    against: str
    candidates: list[Candidate]
    judgements: list[Judgement]

    def to_dict(self) -> dict:
        return {"trial_type": self.trial_type, "space": self.space, "model_id": self.model_id, "against": self.against,
                "candidates": [{**c.to_dict(), **j.to_dict()} for c, j in zip(self.candidates, self.judgements)]}


def query_spaces(modality: str, targets: Sequence[str], space: str | None = None) -> list[str]:
    """The spaces a query must be embedded in to be compared with `targets` (BadArgument for a bad `space`)."""
    return list(dict.fromkeys(space_for(modality, target, space) for target in targets))


def same_modality_first(modality: str, targets: Sequence[str]) -> list[str]:
    """The order groups are listed in: the same-modality trial before the cross-modal one."""
    return sorted(targets, key=lambda target: target != modality)


def check_gallery(gallery, modality: str, targets: Sequence[str], space: str | None = None) -> None:
    """Refuse before embedding: a target with no items, or items lacking the vectors of a space to be searched."""
    counts = gallery.counts()
    if not any(counts[target] for target in targets):
        raise BadArgument(gallery.directory, f"gallery holds no {' or '.join(targets)} items to search")
    for target in targets:
        if counts[target]:
            gallery.require_vectors(space_for(modality, target, space), [target])


def identify(gallery, embedding, targets: Sequence[str], top: int = 10, space: str | None = None,
             calibration: dict | None = None, fmr: float = 0.01) -> list[TrialGroup]:
    """One group per target modality that holds items: the top identities by their best item in the trial's space."""
    counts = gallery.counts()
    groups = []
    for target in same_modality_first(embedding.modality, targets):
        if not counts[target]:
            continue
        chosen = space_for(embedding.modality, target, space)
        candidates = gallery.search(embedding.vectors[chosen], [target], top=top, space=chosen)
        groups.append(_group(embedding, target, chosen, candidates, calibration, fmr))
    return groups


def verify_claim(gallery, embedding, label: str, targets: Sequence[str], space: str | None = None,
                 calibration: dict | None = None, fmr: float = 0.01) -> list[TrialGroup]:
    """The claimed identity's best item of each target modality, scored exactly (UnknownIdentity: no such label;
    an empty list: it has no item of those modalities)."""
    groups = []
    for target in same_modality_first(embedding.modality, targets):
        chosen = space_for(embedding.modality, target, space)
        found = gallery.score_identity(embedding.vectors[chosen], label, [target], space=chosen)
        if found is not None:
            groups.append(_group(embedding, target, chosen, [found], calibration, fmr))
    return groups


def _group(embedding, target: str, space: str, candidates: list[Candidate], calibration, fmr: float) -> TrialGroup:
    kind = trial_type(embedding.modality, target)
    model_id = embedding.model_ids[space]
    return TrialGroup(kind, space, model_id, target, candidates,
                      [judge(c.score, kind, calibration, fmr, space, model_id) for c in candidates])


def merged(groups: Sequence[TrialGroup]) -> bool:
    """Whether several groups can be ranked as one: every candidate of every group has a likelihood ratio."""
    return len(groups) > 1 and all(j.log10_lr is not None for group in groups for j in group.judgements)


def ranked(groups: Sequence[TrialGroup]) -> list[tuple[Candidate, Judgement]]:
    """The candidates as one list: by log10 LR when `merged`, else group after group (each by its raw score)."""
    pairs = [(c, j) for group in groups for c, j in zip(group.candidates, group.judgements)]
    if merged(groups):
        return sorted(pairs, key=lambda pair: (-pair[1].log10_lr, pair[0].identity))
    return pairs
