"""Who in the gallery is this, and is it this claimed person: the query's trials, each scored in its own space.

A face query against faces is a face-face trial scored in the face space; against voices, a face-voice trial
scored in the joint space (`fvmatch.spaces.DEFAULT_SPACE`, or one space for all with `space`). Each trial type's
candidates form a group of their own: raw scores of different spaces are never ranked against each other.
Only when every group is calibrated are the candidates merged into one list, ranked by likelihood ratio.

A questioned voice measured narrowband or noisy is searched, by default, against the references brought to its
condition (`fvmatch.spaces.conditions`): the group names the condition, and its calibration is that condition's.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fvmatch.analysis.templates import TEMPLATE_MODALITIES, score_name, templated
from fvmatch.evidence.attributes import ATTRIBUTE_SPACE
from fvmatch.errors import BadArgument
from fvmatch.gallery.gallery import Candidate
from fvmatch.calibration.scoring import Judgement, judge
from fvmatch.quality.face import face_band
from fvmatch.spaces import (CONDITIONED_SPACES, FACE_SPACE, JOINT, VOICE_SPACE, condition_query_spaces, query_space,
                            space_for, trial_type)
from fvmatch.spaces.conditions import conditioned, reference_condition, split


HEAD_SPACE = {"face": FACE_SPACE, "voice": VOICE_SPACE}  # the space each modality's sex head reads
TEMPLATE_RERANK = 20  # identities found by their best item whose templates are scored (identify's over-fetch)


@dataclass
class TrialGroup:
    """The candidates of one trial type (the query's modality against `against`), scored in `space`."""

    trial_type: str
    space: str
    model_id: str
    against: str
    candidates: list[Candidate]
    judgements: list[Judgement]
    condition: dict | None = None  # the questioned item's condition and whether the references were brought to it
    scoring: dict | None = None  # fused scores (fvmatch.evidence.fused_scores): the kind, K re-scored, the cosines; None: cosine
    warning: str | None = None  # what the scores cannot show (fvmatch.evidence.rules.joint_label), said beside them

    def to_dict(self) -> dict:
        return {"trial_type": self.trial_type, "space": self.space, "model_id": self.model_id, "against": self.against,
                "condition": self.condition, "scoring": self.scoring or {"score": "cosine"}, "warning": self.warning,
                "candidates": [{**c.to_dict(), **j.to_dict()} for c, j in zip(self.candidates, self.judgements)]}


def query_spaces(modality: str, targets: Sequence[str], space: str | None = None,
                 cross_by: str | None = None, sex_fused: bool = False) -> list[str]:
    """The spaces a query may need to be embedded in to be compared with `targets` (BadArgument for a bad `space`):
    a voice against voices, by default, in the base space and in the one its reference conditions are searched from
    (`question_spaces` picks one of them from the question's measured quality); a face-voice trial scored by the sex
    readings (`cross_by` "sex") in the space its head reads, and so too, beside the joint space, one whose joint
    score is fused with them (`sex_fused`: fvmatch.evidence.sex_fusion)."""
    def conditions(target: str, chosen: str) -> list[str]:  # a voice's quality may pick a reference condition
        return condition_query_spaces(chosen) if space is None and modality == target == "voice" else []

    return _spaces_read(modality, targets, cross_by, sex_fused, lambda target: space_for(modality, target, space),
                        conditions)


def question_spaces(gallery, modality: str, targets: Sequence[str], space: str | None = None,
                    cross_by: str | None = None, sex_fused: bool = False) -> Callable[[dict], list[str]]:
    """For `Embedder.embed_voice(pick=)`: the spaces a question of a given measured quality is searched from in this
    gallery (reference_space), and those its sex is read from (as `query_spaces`), so that it is embedded in those
    alone."""
    def needed(quality: dict) -> list[str]:
        return _spaces_read(modality, targets, cross_by, sex_fused,
                            lambda target: _reference_space(gallery, modality, quality, target, space)[0])

    return needed


def _spaces_read(modality: str, targets: Sequence[str], cross_by: str | None, sex_fused: bool,
                 searched: Callable[[str], str], more: Callable[[str, str], list[str]] = lambda *_: []) -> list[str]:
    """Each target's searched space (`searched(target)`), `more` of it, and the sex head's space where the sex read
    from the question scores (`cross_by` "sex") or joins (`sex_fused`) its face-voice trial; each once."""
    names = []
    for target in targets:
        cross_modal = modality != target
        if cross_modal and cross_by == ATTRIBUTE_SPACE:
            names.append(HEAD_SPACE[modality])
            continue
        chosen = searched(target)
        names.append(query_space(chosen))
        if cross_modal and sex_fused and chosen == JOINT:
            names.append(HEAD_SPACE[modality])
        names.extend(more(target, chosen))
    return list(dict.fromkeys(names))


def by_template(modality: str, target: str, space: str) -> bool:
    """Whether a same-modality trial scores identities by their templates (fvmatch.analysis.templates): faces,
    in their own space."""
    return modality == target and target in TEMPLATE_MODALITIES and space == FACE_SPACE


def same_modality_first(modality: str, targets: Sequence[str]) -> list[str]:
    """The order groups are listed in: the same-modality trial before the cross-modal one."""
    return sorted(targets, key=lambda target: target != modality)


def check_gallery(gallery, modality: str, targets: Sequence[str], space: str | None = None,
                  cross_by: str | None = None) -> None:
    """Refuse before embedding: a target with no items, or items lacking the vectors of a space to be searched (for
    face-voice trials weighed by sex, `cross_by` "sex", the space its head reads)."""
    counts = gallery.counts()
    if not any(counts[target] for target in targets):
        raise BadArgument(gallery.directory, f"gallery holds no {' or '.join(targets)} items to search")
    for target in targets:
        if counts[target]:
            searched = (HEAD_SPACE[target] if cross_by == ATTRIBUTE_SPACE and modality != target
                        else space_for(modality, target, space))
            gallery.require_vectors(searched, [target])


def identify(gallery, embedding, targets: Sequence[str], top: int = 10, space: str | None = None,
             calibration: dict | None = None, fmr: float = 0.01, fused=None,
             joint_warning: str | None = None, cross_by: str | None = None,
             population: dict | None = None) -> list[TrialGroup]:
    """One group per target modality that holds items: the top identities by their best item in the trial's space
    (faces against faces: by their templates, fvmatch.analysis.templates, ranked by LR where calibrated).

    `fused` (fvmatch.evidence.fused_scores.rescorer's: a pair encoder, or the joint+sex fusion): a face-voice trial of the
    joint space takes the top `fused.rescore_top` identities of the cosine search and ranks them by its fused score.
    `joint_warning`: said with every group scored in the joint space (fvmatch.evidence.rules.joint_label). `cross_by`
    "sex": face-voice trials scored by the sex read from each side (`attribute_group`), in `population`."""
    counts = gallery.counts()
    groups = []
    for target in same_modality_first(embedding.modality, targets):
        if not counts[target]:
            continue
        if cross_by == ATTRIBUTE_SPACE and target != embedding.modality:
            groups.append(attribute_group(gallery, embedding, target, top, population))
            continue
        chosen, condition = reference_space(gallery, embedding, target, space)
        query = embedding.vectors[query_space(chosen)]
        rescore = fused is not None and chosen == JOINT and embedding.modality != target
        template = by_template(embedding.modality, target, chosen)
        fetch = max(top, fused.rescore_top) if rescore else max(top, TEMPLATE_RERANK) if template else top
        candidates = gallery.search(query, [target], top=fetch, space=chosen)
        if template:
            candidates = templated(gallery, query, candidates, chosen)
        scoring = None
        if rescore:
            candidates, scoring = fused.for_query(embedding).rescore(gallery, embedding.modality, query, candidates)
            candidates = candidates[:top]
            for key in ("cosines", "sex_log10_lr"):  # one entry a candidate, in rank order
                if key in scoring:
                    scoring[key] = scoring[key][:top]
        group = _group(gallery, embedding, target, chosen, candidates, calibration, fmr, condition, scoring,
                       joint_warning)
        group.candidates, group.judgements = group.candidates[:top], group.judgements[:top]  # templates over-fetched
        groups.append(group)
    return groups


def verify_claim(gallery, embedding, label: str, targets: Sequence[str], space: str | None = None,
                 calibration: dict | None = None, fmr: float = 0.01,
                 joint_warning: str | None = None, cross_by: str | None = None,
                 population: dict | None = None) -> list[TrialGroup]:
    """The claimed identity's best item of each target modality, scored exactly, or its template of faces
    (UnknownIdentity: no such label; an empty list: it has no item of those modalities)."""
    groups = []
    for target in same_modality_first(embedding.modality, targets):
        if cross_by == ATTRIBUTE_SPACE and target != embedding.modality:
            if not gallery.has_identity(label):
                from fvmatch.gallery.gallery import UnknownIdentity

                raise UnknownIdentity(label, "no such identity in the gallery")
            group = attribute_group(gallery, embedding, target, 1, population, label)
            if group.candidates:
                groups.append(group)
            continue
        chosen, condition = reference_space(gallery, embedding, target, space)
        query = embedding.vectors[query_space(chosen)]
        found = gallery.score_identity(query, label, [target], space=chosen)
        if found is not None and by_template(embedding.modality, target, chosen):
            (found,) = templated(gallery, query, [found], chosen)
        if found is not None:
            groups.append(_group(gallery, embedding, target, chosen, [found], calibration, fmr, condition,
                                 joint_warning=joint_warning))
    return groups


def attribute_group(gallery, embedding, target: str, top: int, population: dict | None = None,
                    identity: str | None = None) -> TrialGroup:
    """Face-voice trials scored by the sex (and age, where read) of each side (fvmatch.evidence.attributes): every `target` item of the
    gallery (of one `identity`, if given) read by its head, the identities ranked by their best item's LR, equal LRs
    by the probability of the item's reading. (Not by the joint space's cosine: it carries no weight on real people,
    and reading it would load torch and the joint model into every cold face query, seconds and hundreds of MB.)"""
    from fvmatch.evidence.attributes import (DEFAULT_POPULATION, HEAD_OF, attributes_model_id, judgement, read_sex,
                                             readings_of, sex_heads)
    from fvmatch.gallery.scan import ranked_by, stored_ages, stored_vectors

    population = population or DEFAULT_POPULATION
    question = read_sex(embedding.modality, embedding.vectors, embedding.model_ids, embedding.quality)
    if question is None:
        raise BadArgument(embedding.source, f"its sex cannot be read: no {HEAD_SPACE[embedding.modality]} vector "
                                            "of the model its head was trained on")
    head = sex_heads()[HEAD_OF[target]]
    if gallery.spaces.get(head["space"], {}).get("model_id") not in (None, head["space_model_id"]):
        raise BadArgument(gallery.directory, f"the gallery's {head['space']} vectors come from another model than the "
                                             "sex head's: fvmatch gallery reindex embeds them again")
    ids, vectors = stored_vectors(gallery, target, head["space"], identity)
    qualities = stored_ages(gallery, ids) if target == "face" else None  # a face's age was read when enrolled
    readings = readings_of(target, vectors, qualities) if len(ids) else []
    pairs = [(question, reading) if embedding.modality == "face" else (reading, question) for reading in readings]
    judged = [judgement(face, voice, population) for face, voice in pairs]
    keys = [(j.log10_lr, reading.probability) for j, reading in zip(judged, readings)]
    candidates = ranked_by(gallery, ids, keys, lambda key: key[0], ATTRIBUTE_SPACE, top)
    judgement_of = dict(zip(ids.tolist(), judged))
    return TrialGroup("face-voice", ATTRIBUTE_SPACE, attributes_model_id(), target, candidates,
                      [judgement_of[c.media_id] for c in candidates], None,
                      {"score": "sex evidence", "space": ATTRIBUTE_SPACE, "question": question.to_dict(),
                       "population": population, "ties": "ordered by the probability of the item's reading"})


def reference_space(gallery, embedding, target: str, space: str | None = None) -> tuple[str, dict | None]:
    """The space whose references the query is searched against, and the condition record of the result.

    `space` given: that space (a reference condition named by the analyst is used as is). Otherwise the trial type's
    space, or, for a voice against voices whose measured quality calls for it, the references of its condition when
    every reference has them (a gallery enrolled before conditions existed: `gallery reindex` fills them; until
    then the result says the condition was not matched, and why).
    """
    return _reference_space(gallery, embedding.modality, embedding.quality, target, space)


def _reference_space(gallery, modality: str, quality: dict, target: str, space: str | None) -> tuple[str, dict | None]:
    chosen = space_for(modality, target, space)
    if space is not None:
        condition = split(chosen)[1]
        return chosen, ({"questioned": reference_condition(quality), "references": condition,
                         "chosen_by": "--space"} if condition else None)
    wanted = reference_condition(quality) if modality == target == "voice" else None
    candidate = conditioned(chosen, wanted) if wanted else None
    if candidate not in CONDITIONED_SPACES:
        return chosen, None
    note = (f"references not brought to the {wanted} condition: the gallery lacks their {candidate} vectors "
            "(fvmatch gallery reindex fills them)")
    if candidate in gallery.spaces and not gallery.missing_count(candidate, target):
        recorded = gallery.spaces[candidate]["model_id"]
        if gallery.space_models is None or gallery.space_models(candidate) == recorded:
            return candidate, {"questioned": wanted, "references": wanted, "chosen_by": "measured quality"}
        note = (f"references not brought to the {wanted} condition: the gallery's {candidate} vectors come from an "
                f"older model ({recorded[:16]}; fvmatch gallery reindex embeds them again)")
    return chosen, {"questioned": wanted, "references": None, "chosen_by": "measured quality", "note": note}


@dataclass
class PairScore:
    """Two items scored: the space, its model, the condition record, and each item's embedding."""

    trial_type: str
    space: str
    model_id: str
    score: float
    condition: dict | None
    embeddings: list
    face_band: str | None = None  # a face pair's smaller face's size band: the calibration it is judged by


def score_pair(embedder, items: Sequence[tuple[str, object]], space: str | None = None,
               sex_fused: bool = False) -> PairScore:
    """Embed two (modality, path) items and score them in the trial type's space (`space` overrides it); with
    `sex_fused`, a face and a voice scored in the joint space are also embedded in the spaces their sex is read
    from (fvmatch.evidence.sex_fusion).

    Two voices of different conditions (one clean, one measured narrowband or noisy) are compared like with like:
    the clean one is embedded again brought to the other's condition, and the other is read as that condition's
    questions are (each voice is embedded once, in the space its own measured quality calls for). A reference
    condition named in `space` brings the second item to it.
    """
    (first, _), (second, _) = items
    chosen = space_for(first, second, space)
    base = query_space(chosen)
    voices = first == second == "voice"

    def embed(modality, path, names, pick=None):
        return (embedder.embed_face(path, spaces=names)[0] if modality == "face"
                else embedder.embed_voice(path, spaces=names, pick=pick))

    def own_space(quality: dict) -> list[str]:  # clean: the base space; else as its condition's questions are read
        wanted = reference_condition(quality)
        return [base if wanted is None else query_space(conditioned(base, wanted))]

    if voices and space is None:
        embeddings = [embed("voice", path, [base, *condition_query_spaces(base)], own_space) for _, path in items]
    else:
        read_sex_too = sex_fused and chosen == JOINT and first != second
        embeddings = [embed(modality, path, [base, *([HEAD_SPACE[modality]] if read_sex_too else [])])
                      for modality, path in items]
    condition, reference = None, None
    if voices:
        wanted = [reference_condition(embedding.quality) for embedding in embeddings]
        if chosen != base:  # named by the analyst
            reference, condition = 1, {"questioned": wanted[0], "references": split(chosen)[1], "chosen_by": "--space"}
        elif space is None and (wanted[0] is None) != (wanted[1] is None):
            reference = wanted.index(None)
            chosen = conditioned(base, wanted[1 - reference])
            condition = {"questioned": wanted[1 - reference], "references": wanted[1 - reference],
                         "chosen_by": "measured quality"}
    vectors = []
    for position, ((modality, path), embedding) in enumerate(zip(items, embeddings)):
        name = chosen if position == reference else query_space(chosen)
        if name not in embedding.vectors:  # the reference brought to the condition; or two voices both degraded,
            extra = embed(modality, path, [name])  # each read for its own condition, compared in the base space
            if position != reference:
                embedding.vectors.update(extra.vectors)
                embedding.model_ids.update(extra.model_ids)
            vectors.append(extra.vectors[name])
        else:
            vectors.append(embedding.vectors[name])
    return PairScore(trial_type(first, second), chosen, embedder.space(chosen).model_id,
                     float(vectors[0] @ vectors[1]), condition, embeddings, smaller_face_band(embeddings))


def smaller_face_band(embeddings) -> str | None:
    """The size band of the smaller face of a face-face pair (None for any other pair)."""
    if any(embedding.modality != "face" for embedding in embeddings):
        return None
    return face_band(min((embedding.quality for embedding in embeddings),
                         key=lambda quality: quality.get("eye_distance_px", float("inf"))))


def describe_condition(condition: dict | None) -> str:
    """One line for a result: the questioned item's condition and what the references were brought to."""
    if not condition:
        return "references as enrolled"
    if condition.get("references"):
        return (f"questioned item {condition.get('questioned') or 'clean'}: references brought to the "
                f"{condition['references']} condition (by {condition.get('chosen_by')})")
    return f"questioned item {condition.get('questioned')}: {condition.get('note', 'references as enrolled')}"


def _group(gallery, embedding, target: str, space: str, candidates: list[Candidate], calibration, fmr: float,
           condition: dict | None, scoring: dict | None = None, joint_warning: str | None = None) -> TrialGroup:
    kind = trial_type(embedding.modality, target)
    model_id = embedding.model_ids.get(space) or gallery.spaces[space]["model_id"]
    # a face question's size band picks its calibration (the references are enrolled, good photos: the question is
    # the smaller face of the pair)
    band = face_band(embedding.quality) if kind == "face-face" else None
    # a fused score is judged by the fused calibration alone; a template's by the map of templates of its size
    judgements = [judge(c.score, kind, calibration, fmr, scoring["space"] if scoring else score_name(space, c),
                        model_id, band) for c in candidates]
    if any(c.references for c in candidates) and all(j.log10_lr is not None for j in judgements):
        # templates of different sizes and single references score on different scales: ranked by their LRs
        pairs = sorted(zip(candidates, judgements), key=lambda pair: (-pair[1].log10_lr, -pair[0].score))
        candidates, judgements = [c for c, _ in pairs], [j for _, j in pairs]
        for rank, candidate in enumerate(candidates, start=1):
            candidate.rank = rank
    return TrialGroup(kind, space, model_id, target, candidates, judgements, condition, scoring,
                      joint_warning if space == JOINT else None)


def merged(groups: Sequence[TrialGroup]) -> bool:
    """Whether several groups can be ranked as one: every candidate of every group has a likelihood ratio of
    identity evidence (sex evidence, which cannot tell people of one sex apart, is never ranked among them)."""
    return len(groups) > 1 and all(j.log10_lr is not None for group in groups for j in group.judgements) and \
        all(group.space != ATTRIBUTE_SPACE for group in groups)


def ranked(groups: Sequence[TrialGroup]) -> list[tuple[Candidate, Judgement]]:
    """The candidates as one list: by log10 LR when `merged`, else group after group (each by its raw score)."""
    pairs = [(c, j) for group in groups for c, j in zip(group.candidates, group.judgements)]
    if merged(groups):
        return sorted(pairs, key=lambda pair: (-pair[1].log10_lr, pair[0].identity))
    return pairs
