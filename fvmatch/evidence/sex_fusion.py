"""A joint space trained on real pairs, fused with the sex evidence into one likelihood ratio (ARCHITECTURE.md
section 6; issue 29).

A laboratory's joint checkpoint (trained on real face-voice pairs and calibrated with `fvmatch calibrate`) and the
sex read from each side (fvmatch.evidence.attributes) are not independent: a joint space learns sex too. Their LRs are
therefore never multiplied. `calibrate` fits, on the same face-voice calibration trials, a logistic regression on
both (the joint cosine and the sex evidence's log10 LR) and keeps its ratio as the fused score

    fused score = joint cosine + sex_weight * sex log10 LR

which is then calibrated like any score (`fvmatch.calibration.fitting.fit`: the LR map, its bounds, operating points), in
an entry of its own (space JOINT_SEX) that names both: the joint model id and the sex heads' model id, and the
correlation of the two on those trials. `verify` of a face and a voice and `identify` across modalities report the
fused score where the card holds that entry and the shipped sex heads are the ones it was fitted with; `identify`
takes the joint search's top identities and re-ranks them by it (as a pair encoder's fused score is used).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np

from fvmatch.errors import BadArgument

JOINT_SEX = "joint+sex"  # the fused score's name in results and in the calibration
DEFAULT_RESCORE_TOP = 50  # identities of the joint search re-ranked by the fused score
ABOUT = ("the joint cosine plus the sex evidence's log10 LR, weighted by a logistic regression fitted on the same "
         "calibration trials (not a product of two LRs: the two are not independent)")


def fusion_weight(joint_same: np.ndarray, joint_different: np.ndarray, sex_same: np.ndarray,
                  sex_different: np.ndarray) -> float:
    """The sex evidence's weight against the joint cosine's, from a logistic regression on both features of the
    same trials (BadArgument when the joint cosine carries no weight beside sex: nothing to fuse)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    features = np.c_[np.r_[joint_same, joint_different], np.r_[sex_same, sex_different]].astype(np.float64)
    labels = np.r_[np.ones(len(joint_same)), np.zeros(len(joint_different))]
    centre, spread = features.mean(axis=0), features.std(axis=0)
    spread[spread == 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=np.inf, tol=1e-10, max_iter=1000).fit((features - centre) / spread, labels)
    joint_weight, sex_weight = model.coef_[0] / spread
    if joint_weight <= 0:
        raise BadArgument("calibration", "the joint cosine carries no weight beside the sex evidence on these trials: "
                                         "the joint space adds nothing to fuse")
    return float(max(sex_weight, 0.0) / joint_weight)


def fusion_entry(joint: tuple[np.ndarray, np.ndarray, int], sex: tuple[np.ndarray, np.ndarray, int],
                 joint_model_id: str, sex_model_id: str, fit) -> dict:
    """The calibration entry of the fused score: `fit` (fvmatch.calibration.fitting.fit) of joint + weight * sex on the same
    trials (`joint` and `sex`: (same scores, different scores, people) of identical pairs), with what it rests on."""
    (joint_same, joint_different, people), (sex_same, sex_different, _) = joint, sex
    weight = fusion_weight(joint_same, joint_different, sex_same, sex_different)
    entry = fit(joint_same + weight * sex_same, joint_different + weight * sex_different, people)
    both = np.r_[joint_same, joint_different], np.r_[sex_same, sex_different]
    correlation = float(np.corrcoef(*both)[0, 1]) if both[1].std() > 0 and both[0].std() > 0 else None
    return {**entry, "space": JOINT_SEX, "space_model_id": joint_model_id, "sex_weight": round(weight, 6),
            "sex_model_id": sex_model_id, "fusion": f"joint cosine + {weight:.4f} x sex log10 LR: {ABOUT}",
            "correlation": None if correlation is None else round(correlation, 4)}


def fusion_of(calibration: dict | None, joint_model_id: str) -> dict | None:
    """The card's fused entry, where it was fitted with this joint model and the sex heads shipped now."""
    from fvmatch.evidence.attributes import attributes_model_id, sex_heads
    from fvmatch.calibration.scoring import calibration_key

    entry = (calibration or {}).get(calibration_key(JOINT_SEX, "face-voice"))
    if entry is None or not sex_heads() or entry.get("space_model_id") != joint_model_id:
        return None
    return entry if entry.get("sex_model_id") == attributes_model_id() else None


def fused_score(entry: dict, cosine: float | np.ndarray, sex_log10_lr: float | np.ndarray):
    return cosine + entry["sex_weight"] * np.asarray(sex_log10_lr, np.float64)


@dataclass
class SexFusion:
    """A joint search's candidates re-ranked by the fused score, for one question whose sex was read."""

    entry: dict
    rescore_top: int = DEFAULT_RESCORE_TOP
    population: dict | None = None
    question: object | None = None  # the question's fvmatch.evidence.attributes.SexReading (`for_query`)

    def for_query(self, embedding) -> "SexFusion":
        from fvmatch.evidence.attributes import read_sex

        reading = read_sex(embedding.modality, embedding.vectors, embedding.model_ids, embedding.quality)
        if reading is None:
            raise BadArgument(embedding.source, "its sex cannot be read for the joint+sex fused score: not embedded "
                                                "in the space its sex head reads")
        return replace(self, question=reading)

    def rescore(self, gallery, query_modality: str, query: np.ndarray, candidates: list) -> tuple[list, dict]:
        """The candidates (their best items) ranked by the fused score; the record a result shows."""
        from fvmatch.evidence.attributes import DEFAULT_POPULATION, HEAD_OF, log10_lr_of, readings_of, sex_heads

        target = "voice" if query_modality == "face" else "face"
        head = sex_heads()[HEAD_OF[target]]
        if head["space"] not in gallery.spaces or gallery.missing_count(head["space"], target):
            raise BadArgument(gallery.directory, f"its {target}s lack the {head['space']} vectors the joint+sex fused "
                                                 "score reads their sex from: fvmatch gallery reindex fills them")
        readings = readings_of(target, gallery._vectors([c.media_id for c in candidates], head["space"])) \
            if candidates else []
        population = self.population or DEFAULT_POPULATION
        sexes = [(self.question.sex, r.sex) if query_modality == "face" else (r.sex, self.question.sex)
                 for r in readings]
        evidence = [log10_lr_of(face, voice, population) for face, voice in sexes]
        fused = [float(fused_score(self.entry, c.score, value)) for c, value in zip(candidates, evidence)]
        order = sorted(range(len(candidates)), key=lambda i: (-fused[i], candidates[i].identity))
        rescored = [replace(candidates[i], rank=rank, score=fused[i]) for rank, i in enumerate(order, start=1)]
        return rescored, {"score": "joint+sex", "space": JOINT_SEX, "rescore_top": self.rescore_top,
                          "rescored": len(candidates), "cosines": [round(candidates[i].score, 6) for i in order],
                          "sex_log10_lr": [round(evidence[i], 4) for i in order],
                          "question": self.question.to_dict(), "about": ABOUT}


def sex_fusion(card: dict, model_id: str, rescore_top: int = DEFAULT_RESCORE_TOP,
               population: dict | None = None) -> SexFusion | None:
    """The card's fused scoring (None where it has no usable fused entry)."""
    entry = fusion_of(card.get("calibration"), model_id)
    return None if entry is None else SexFusion(entry, rescore_top, population)


def needs_sex_reading(embedder) -> bool:
    """Whether the card's joint+sex fusion applies (its face-voice trials then need each side's sex read too)."""
    return fusion_of(embedder.card.get("calibration"), embedder.model_id) is not None


def fused_pair_by_sex(embedder, pair, population: dict | None = None) -> tuple[float, str, dict] | None:
    """`fvmatch.evidence.fused_scores.fused_pair` for the joint+sex fusion: None where the card has none or a side's sex
    cannot be read."""
    from fvmatch.evidence.attributes import DEFAULT_POPULATION, log10_lr_of, read_sex

    entry = fusion_of(embedder.card.get("calibration"), embedder.model_id)
    if entry is None:
        return None
    face, voice = sorted(pair.embeddings, key=lambda embedding: embedding.modality != "face")
    readings = [read_sex(e.modality, e.vectors, e.model_ids, e.quality) for e in (face, voice)]
    if None in readings:
        return None
    # the sex part alone: the fusion was fitted on it (the age bands are not part of the fused score)
    evidence = log10_lr_of(readings[0].sex, readings[1].sex, population or DEFAULT_POPULATION)
    return float(fused_score(entry, pair.score, evidence)), JOINT_SEX, {
        "score": "joint+sex", "space": JOINT_SEX, "cosine": round(pair.score, 6), "sex_log10_lr": round(evidence, 4),
        "readings": {"face": readings[0].to_dict(), "voice": readings[1].to_dict()}, "about": ABOUT}


def add_sex_fusion(calibration: dict, embedded, seed: int = 0, max_trials: int | None = None) -> dict:
    """`calibration` (fvmatch.calibration.fitting.calibrate's, of these corpora) with the joint space's face-voice trials
    fused with the sex evidence, fitted on the same pairs, where the data were also embedded in the spaces the sex
    heads read; else with why not, under "joint+sex skipped". No joint face-voice entry: `calibration` as it is."""
    from fvmatch.evidence.attributes import attributes_model_id
    from fvmatch.calibration.fitting import MAX_TRIALS, fit, pair_scores, shortfall
    from fvmatch.evaluation import ItemSet, as_corpora
    from fvmatch.evaluation.attribute_evidence import sex_corpus
    from fvmatch.calibration.scoring import calibration_key
    from fvmatch.spaces import JOINT

    corpora = as_corpora(embedded)
    if "face-voice" not in calibration or JOINT not in corpora:
        return calibration
    sex, why_not = sex_corpus(corpora)
    if sex is None:
        return {**calibration, f"{JOINT_SEX} skipped": why_not}
    joint, rows = corpora[JOINT], {m: {p: i for i, p in enumerate(sex.items(m).paths)} for m in ("face", "voice")}

    def aligned(modality: str) -> tuple[ItemSet, ItemSet]:  # the same items, in one order, in both
        items = joint.items(modality)
        keep = [i for i, path in enumerate(items.paths) if path in rows[modality]]
        paths = [items.paths[i] for i in keep]
        return (ItemSet(paths, items.owners[keep], items.vectors[keep]),
                ItemSet(paths, items.owners[keep], sex.items(modality).vectors[[rows[modality][p] for p in paths]]))

    (joint_faces, sex_faces), (joint_voices, sex_voices) = aligned("face"), aligned("voice")
    # identical items, owners and seed draw identical pairs: each trial's joint cosine beside its sex log10 LR
    joint_trials = pair_scores(joint_faces, joint_voices, seed, max_trials or MAX_TRIALS)
    sex_trials = pair_scores(sex_faces, sex_voices, seed, max_trials or MAX_TRIALS)
    problem = shortfall(len(joint_trials[0]), len(joint_trials[1]), joint_trials[2])
    try:
        if problem:
            raise BadArgument("calibration", f"too few trials with both readings: {problem}")
        entry = fusion_entry(joint_trials, sex_trials, joint.model_id, attributes_model_id(), fit)
    except BadArgument as error:
        return {**calibration, f"{JOINT_SEX} skipped": error.problem}
    return {**calibration, calibration_key(JOINT_SEX, "face-voice"): {
        **entry, **{key: calibration[key] for key in ("data", "split", "created")}},
        "spaces": {**calibration["spaces"], JOINT_SEX: joint.model_id}}


def rescorer(embedder, rescore_top: int = DEFAULT_RESCORE_TOP, population: dict | None = None):
    """What re-ranks a joint search's face-voice candidates: the checkpoint's pair encoder
    (fvmatch.evidence.fused_scores), else the card's joint+sex fusion, else None."""
    from fvmatch.evidence.fused_scores import fused_scorer

    scorer = fused_scorer(embedder, rescore_top)
    return scorer if scorer is not None else sex_fusion(embedder.card, embedder.model_id, rescore_top, population)


def scored_pair(embedder, pair, population: dict | None = None) -> tuple[float, str, dict]:
    """(score, the space its calibration is looked up under, the record a result shows) of a scored pair
    (fvmatch.analysis.matching.PairScore): the joint+sex fused score of a face and a voice in the joint space where the card
    has that fusion (and both sides' sex can be read), else fvmatch.evidence.fused_scores.fused_pair's."""
    from fvmatch.evidence.fused_scores import fused_pair, has_pair_encoder
    from fvmatch.spaces import JOINT

    if pair.trial_type == "face-voice" and pair.space == JOINT and not has_pair_encoder(embedder.card):
        found = fused_pair_by_sex(embedder, pair, population)
        if found is not None:
            return found
    return fused_pair(embedder, pair)
