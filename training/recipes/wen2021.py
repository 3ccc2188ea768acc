"""The wen2021 recipe: Wen et al., CVPR 2021 ("Seeking the Shape of Sound"): two-level modality alignment (the
shared identity classifier's global term and an N-pair local term) with identities reweighted by difficulty
(training/losses_wen2021.py), on either kind of model (training/recipes/xiong2019.py's EitherInputRecipe).

The paper trains in three stages: a warm-up, identity weight learning, and the final model retrained from scratch
with the learned weights fixed. Here `data()` runs the first two (a short run of its own, on the CPU, with the
settings of `Wen2021Loss`: warm-up and update intervals in passes over the training identities, batch size,
learning rate, seed 0) and caches the weights beside the shards:

    CACHE/wen2021/weights-<key[:16]>.json    the training identities, their difficulty and weight, the steps run

keyed by the model config, the objective's settings and the training identities, so a resumed run (and any run
on the same corpus) reads the same weights; the trainer then trains the final model with them. The card records
how many identities were weighted and which were filtered out.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict

import numpy as np
import torch

from fvmatch.models.config import JointModelConfig
from fvmatch.models.joint import IdentityClassifier, build_model

from ..data import PreparedCorpus
from ..losses_wen2021 import (Wen2021Loss, next_identity_weights, sample_weights, updated_difficulty,
                              weighted_ratio)
from .xiong2019 import EitherInputRecipe

WEIGHTING_SEED = 0


class Wen2021Recipe(EitherInputRecipe):
    name = "wen2021"
    description = ("Wen et al., CVPR 2021: shared identity classifier (global) + N-pair (local) alignment, "
                   "identities reweighted by difficulty and the hardest filtered out")
    default_config = "experts"

    def __init__(self) -> None:
        self.weighting: dict | None = None  # what data() learned: set once per run (get_recipe gives a new instance)

    def data(self, corpus: PreparedCorpus, config: JointModelConfig):
        data = super().data(corpus, config)
        train_ids = self.usable(data, corpus.split("train"))
        if len(train_ids) >= 2:
            self.weighting = learned_weights(self, corpus, data, config, train_ids, Wen2021Loss())
        return data

    def objective(self) -> Wen2021Loss:
        objective = Wen2021Loss()
        if self.weighting is not None:
            objective.identity_weights = torch.tensor(self.weighting["weights"], dtype=torch.float32)
        return objective

    def card(self) -> dict:
        """What the model card adds about this run: the weight-learning stage's outcome."""
        if self.weighting is None:
            return {}
        keys = ("identities", "weighted", "filtered", "filtered_identities", "steps", "updates", "seconds", "cache")
        return {"identity_weighting": {key: self.weighting[key] for key in keys}}


def learned_weights(recipe: EitherInputRecipe, corpus: PreparedCorpus, data, config: JointModelConfig,
                    train_ids: list[int], objective: Wen2021Loss) -> dict:
    """The identity weights of the weight-learning stage, from the cache or computed (then cached)."""
    key_source = {"config": config.to_dict(), "objective": asdict(objective), "identities": sorted(train_ids),
                  "seed": WEIGHTING_SEED, "experts": data.description["model_ids"] if config.experts else None}
    key = hashlib.sha256(json.dumps(key_source, sort_keys=True).encode()).hexdigest()
    path = corpus.cache / "wen2021" / f"weights-{key[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    weighting = learn_identity_weights(recipe, data, config, sorted(train_ids), objective)
    labels = [corpus.identities[i]["identity"] for i in sorted(train_ids)]
    weighting["filtered_identities"] = [label for label, w in zip(labels, weighting["weights"]) if w == 0]
    weighting["cache"] = str(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(weighting))
    os.replace(temporary, path)
    return weighting


def learn_identity_weights(recipe: EitherInputRecipe, data, config: JointModelConfig, train_ids: list[int],
                           objective: Wen2021Loss) -> dict:
    """Warm-up, then identity weight learning (losses_wen2021.py), on the CPU from seed 0: a fresh model trained
    with the objective under the current weights, the difficulty of each identity tracked, the weights updated every
    `update_passes` passes after `warmup_passes`, until `final_ratio` of the identities are weighted."""
    from ..train_net import TrainNet, TrainSettings

    settings = TrainSettings(recipe=recipe.name, config=config.name, batch_size=objective.weighting_batch_size,
                             lr_start=objective.weighting_lr, lr_end=objective.weighting_lr, seed=WEIGHTING_SEED)
    device = torch.device("cpu")  # deterministic: every rank of a torchrun run, and a resumed run, agree
    torch.manual_seed(WEIGHTING_SEED)
    net = TrainNet(build_model(config), IdentityClassifier(config.embedding_dim, len(train_ids))).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=settings.lr_start, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)
    count = len(train_ids)
    weights = torch.zeros(count)  # all 0 until the first update: no weights yet (sample_weights(None) is uniform)
    difficulty, seen = torch.zeros(count), torch.zeros(count, dtype=torch.bool)
    steps_per_pass = len(recipe.batches(data, train_ids, settings, 0, 0, 1))
    warmup, interval = objective.warmup_passes * steps_per_pass, max(1, objective.update_passes * steps_per_pass)
    step, updates, started = 0, 0, time.perf_counter()
    epoch = 0
    while True:
        batches = recipe.batches(data, train_ids, settings, epoch, 0, 1)
        net.train()
        for k in range(len(batches)):
            batch = batches[k]
            face_inputs, voice_inputs = recipe.inputs(batch, device, settings)
            face_vectors, voice_vectors, face_logits, voice_logits = net(face_inputs, voice_inputs)
            terms = objective.per_sample(face_vectors, voice_vectors, face_logits, voice_logits, batch.labels)
            loss, _ = objective.weighted(terms, sample_weights(weights if updates else None, batch.labels))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"the wen2021 weight-learning stage's loss became NaN or infinite at step "
                                         f"{step + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            difficulty, seen = updated_difficulty(difficulty, seen, batch.labels,
                                                  terms["identity_face"] + terms["identity_voice"],
                                                  objective.difficulty_momentum)
            step += 1
            if step >= warmup and (step - warmup) % interval == 0:
                weights = next_identity_weights(weights, difficulty, objective.initial_ratio, objective.add_ratio,
                                                objective.decay)
                updates += 1
                if weighted_ratio(weights) >= objective.final_ratio:
                    return {"identities": count, "weighted": int((weights > 0).sum()),
                            "filtered": int((weights == 0).sum()), "steps": step, "updates": updates,
                            "seconds": round(time.perf_counter() - started, 1),
                            "weights": weights.tolist(), "difficulty": np.round(difficulty.numpy(), 6).tolist()}
        epoch += 1
