"""The sex evidence (fvmatch.evidence.attributes) measured with the seed protocols: face-voice verification, 1:2, 1:N and
retrieval, unstratified (U) and within strata (G: both people of one gender; N, A, GNA likewise).

Sex read from a face and from a voice separates people of different sex and nothing else: unstratified it reads
well above chance where the population mixes the sexes, and within one sex (G) it must read about 0.5. Both are
reported side by side so that nobody takes it for identity evidence.

The readings are scored with the evaluation's own machinery (`evaluate`): each face becomes the one-hot vector of
the sex it reads as and each voice the column of the log10 LR table for its reading, so that a trial's dot product
is exactly the pair's log10 LR (fvmatch.evidence.attributes.log10_lr, with the population given).
"""
from __future__ import annotations

import numpy as np

from fvmatch.evaluation import EmbeddedCorpus, ItemSet, as_corpora, evaluate, make_trials
from fvmatch.evaluation.trials import TrialList, trial_type_of

FACE_SPACE, VOICE_SPACE = "dlib-face", "ge2e-voice"  # the spaces the sex heads read (fvmatch.analysis.matching.HEAD_SPACE)
NOTE = ("sex evidence: the sex read from each face and voice (fvmatch.evidence.attributes), scored as the pair's log10 LR. It "
        "separates people of different sex only: the G rows (both people of one gender) read about chance (50%) by "
        "design; U reads above chance only as far as the population mixes the sexes. Not identity evidence.")


def sex_corpus(embedded, population: dict | None = None) -> tuple[EmbeddedCorpus | None, str | None]:
    """The corpus's faces (of `dlib-face`) and voices (of `ge2e-voice`) as sex readings, or None and why not."""
    from fvmatch.evidence.attributes import (ATTRIBUTE_SPACE, DEFAULT_POPULATION, HEAD_OF, SEXES, attributes_model_id,
                                             log10_lr_of, readings_of, sex_heads)

    corpora = as_corpora(embedded)
    heads = sex_heads()
    if not heads:
        return None, "this installation ships no sex heads"
    faces, voices = corpora.get(FACE_SPACE), corpora.get(VOICE_SPACE)
    if faces is None or voices is None:
        return None, f"needs the items embedded in {FACE_SPACE} and {VOICE_SPACE}, the spaces the sex heads read"
    for corpus, modality in ((faces, "face"), (voices, "voice")):
        if corpus.model_id != heads[HEAD_OF[modality]]["space_model_id"]:
            return None, f"the {corpus.space} vectors come from another model than its sex head was trained on"
    people = sorted({p["identity"]: p for corpus in (faces, voices) for p in corpus.identities}.values(),
                    key=lambda person: person["identity"])
    row_of = {person["identity"]: row for row, person in enumerate(people)}
    population = population or DEFAULT_POPULATION
    face_reads = readings_of("face", faces.faces.vectors) if len(faces.faces) else []
    voice_reads = readings_of("voice", voices.voices.vectors) if len(voices.voices) else []
    one_hot = np.array([[1.0 if reading.sex == sex else 0.0 for sex in SEXES] for reading in face_reads])
    # the LR table's column for each voice's reading: row s is log10 LR(face read s, this voice)
    columns = np.array([[log10_lr_of(sex, reading.sex, population) for sex in SEXES] for reading in voice_reads])

    def items(corpus: EmbeddedCorpus, modality: str, vectors: np.ndarray) -> ItemSet:
        found = corpus.items(modality)
        owners = np.array([row_of[corpus.identities[owner]["identity"]] for owner in found.owners], dtype=np.int64)
        return ItemSet(list(found.paths), owners, vectors.reshape(len(found), len(SEXES)))

    return EmbeddedCorpus(faces.data, faces.split, attributes_model_id(), people, items(faces, "face", one_hot),
                          items(voices, "voice", columns), space=ATTRIBUTE_SPACE, layout=faces.layout), None


def evaluate_sex(embedded, seed: int = 0, trials: TrialList | None = None, population: dict | None = None) -> dict:
    """The sex evidence's figures on an embedded split (fvmatch.evaluation.evaluate's results, face-voice blocks
    only, space "sex"), with `note`; or {"why_not": why} where it cannot be measured. `trials`: a list given
    to the evaluation (its face-voice trials are used), else drawn from `seed` as the evaluation draws its own."""
    corpus, why_not = sex_corpus(embedded, population)
    if corpus is None:
        return {"why_not": why_not}
    if trials is None:
        trials = make_trials(corpus.identities, corpus.items_of("face"), corpus.items_of("voice"), seed,
                             trial_types=["face-voice"], stratified=corpus.layout == "meta")
    else:
        trials = TrialList([t for t in trials.trials if trial_type_of(t.protocol, t.direction) == "face-voice"],
                           seed=trials.seed, counts=trials.counts, source=trials.source,
                           shortfalls=list(trials.shortfalls), list_format=trials.list_format)
    if not trials.trials:
        return {"why_not": "no face-voice trials to score (" + ("; ".join(trials.shortfalls) or "none drawn")
                                 + ")"}
    results = evaluate({corpus.space: corpus}, seed=seed, trials=trials, keep_scores=False)
    results["spaces"][corpus.space]["trial_types"] = ["face-voice"]
    return {**results, "note": NOTE}
