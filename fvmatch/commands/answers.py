"""How an analyst's answer prints: trial groups as tables, the notes beneath them, sex evidence in words.

Shared by the photo and recording commands (analyst.py) and the video ones (video.py).
"""
from __future__ import annotations

from fvmatch.commands.common import ShortPath, say_line, stdout


def print_group(query: str, group) -> None:
    """One trial group as a table titled with what scored it, its warning (if any) beneath."""
    from fvmatch.analysis.matching import describe_condition

    scored = ("weighed by the sex and age read from each side (attribute estimators" if group.space == "sex"
              else f"in the {group.space} space (model")
    _print_candidates(f"{query}: {group.trial_type} trials {scored} {group.model_id[:16]}), {scores_shown(group)}; "
                      f"{describe_condition(group.condition)}", group.candidates, group.judgements)
    top = group.judgements[0] if group.judgements else None
    if top is not None and top.log10_lr is not None:
        say_line(stdout, f"rank 1, {group.candidates[0].identity}: log10 LR {top.log10_lr:+.2f}, {top.verbal} "
                         f"({top.calibration})")
    if group.candidates and group.candidates[0].references:
        say_line(stdout, f"rank 1, {group.candidates[0].identity}: {_template_words(group.candidates[0])}")
    if group.warning:
        say_line(stdout, f"WARNING: {group.warning}")


def item_notes(items, embeddings) -> list[str]:
    """The odd-input lines of each (modality, path) item's embedding (fvmatch.quality.notes), naming its file."""
    from fvmatch.quality.notes import input_notes

    return [f"{path}: {note}" for (_, path), embedding in zip(items, embeddings)
            for note in input_notes(embedding.quality)]


def print_notes(notes) -> None:
    """The notes of an answer, each once, one line each."""
    for note in dict.fromkeys(notes):
        say_line(stdout, f"note: {note}")


def scores_shown(group) -> str:
    """What a group's scores are, for its table's title."""
    if not group.scoring:
        templates = any(candidate.references for candidate in group.candidates)
        return ("cosine scores (\"N faces\": with the template of the identity's first N faces)" if templates
                else "cosine scores")
    from fvmatch.evidence.attributes import reading_words

    if group.scoring["score"] == "sex evidence":
        question = group.scoring["question"]
        return (f"the query reads {reading_words(question)}, population "
                f"{group.scoring['population']['female']:.0%} female; score: each item's reading (sex / age band); "
                "equal LRs by the reading's probability")
    if group.scoring["score"] == "joint+sex":
        return (f"joint cosine fused with the sex evidence (the query reads {reading_words(group.scoring['question'])})"
                f" for the top {group.scoring['rescore_top']} by cosine, re-ranked")
    return f"fused scores (pair encoder) of the top {group.scoring['rescore_top']} by cosine, re-ranked"


def _print_candidates(title: str, candidates, judgements) -> None:
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text(title))
    for column in ("rank", "identity", "score", "log10 LR", "decision", "matched", "source file"):
        table.add_column(column, justify="right" if column in ("rank", "score", "log10 LR") else "left",
                         no_wrap=column != "source file")
    for candidate, judgement in zip(candidates, judgements):
        reading = (judgement.readings or {}).get(candidate.modality)  # sex evidence: the item's reading, not a cosine
        # Text(): labels and paths are data, never rich markup ("[/]" in a label must print as it is)
        table.add_row(str(candidate.rank), Text(candidate.identity),
                      _reading_cell(reading) if reading else f"{candidate.score:.4f}",
                      "-" if judgement.log10_lr is None else f"{judgement.log10_lr:+.2f}",
                      judgement.decision or "-", _matched_cell(candidate), ShortPath(candidate.source_path))
    stdout.print(table)


def _matched_cell(candidate) -> str:
    """The matched item's modality; for a template (fvmatch.analysis.templates), how many faces made it: "3 faces"."""
    return f"{len(candidate.references)} {candidate.modality}s" if candidate.references else candidate.modality


def _template_words(candidate) -> str:
    """Which references carried a template's score: each one's own cosine, the best first."""
    return (f"scored by the template of its first {len(candidate.references)} faces, whose own cosines are "
            + ", ".join(f"{reference['score']:.4f} ({reference['source_path']})"
                        for reference in candidate.references))


def _reading_cell(reading: dict) -> str:
    """An item's attribute reading in a table cell: 'female 0.97', with its age band where read: '/ 30-49 0.66'."""
    age = reading.get("age")
    return f"{reading['sex']} {reading['probability']:.2f}" + (f" / {age['band']} {age['probability']:.2f}" if age else "")


def sex_evidence_words(judgement) -> str:
    """A face-voice judgement of attribute evidence in one phrase: both readings, the LR and its words, what it rests
    on (sex, and age where both sides' were read), no decision."""
    from fvmatch.evidence.attributes import reading_words

    face, voice = judgement.readings["face"], judgement.readings["voice"]
    attributes = "sex and age" if face.get("age") and voice.get("age") else "sex"
    return (f"{attributes} evidence: the face reads {reading_words(face)}, the voice {reading_words(voice)}: log10 LR "
            f"{judgement.log10_lr:+.2f} ({judgement.verbal}); no decision ({attributes} never say \"same person\")")

