"""The wen2021 and xiong2019 objectives against slow loop references (float64), with their edge cases: the identity
reweighting's filtering and schedule, the norm constraint."""
from __future__ import annotations

import math

import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
import torch.nn.functional as F

from fvmatch.training.losses import TERM_NAMES
from fvmatch.training.losses_wen2021 import (Wen2021Loss, global_alignment_terms, local_alignment_terms,
                                             next_identity_weights, npair_terms, sample_weights, updated_difficulty,
                                             weighted_ratio)
from fvmatch.training.losses_xiong2019 import (Xiong2019Loss, norm_constrained, voice_anchored_triplet_loss,
                                               voice_anchored_triplet_terms)

SHAPES = [(2, 3), (5, 8), (16, 4)]


def randn(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def unit_rows(batch: int, dim: int, seed: int) -> torch.Tensor:
    return F.normalize(randn(batch, dim, seed=seed), dim=1)


# Slow references: Python loops over the batch, float64.


def ref_npair(anchors, candidates, scale) -> list[float]:
    a, c = anchors.double(), candidates.double()
    out = []
    for i in range(len(a)):
        positive = scale * float(a[i] @ c[i])
        out.append(math.log(1 + sum(math.exp(scale * float(a[i] @ c[j]) - positive) for j in range(len(c)) if j != i)))
    return out


def ref_cross_entropy(logits, labels) -> list[float]:
    out = []
    for row, label in zip(logits.double(), labels.tolist()):
        out.append(-(float(row[label]) - math.log(sum(math.exp(float(x)) for x in row))))
    return out


def ref_sample_weights(identity_weights, labels) -> list[float]:
    total = sum(identity_weights.tolist())
    return [identity_weights[label].item() * len(identity_weights) / total for label in labels.tolist()]


def ref_wen_total(faces, voices, face_logits, voice_logits, labels, identity_weights, scale) -> float:
    weights = ref_sample_weights(identity_weights, labels) if identity_weights is not None else [1.0] * len(labels)
    face_ce, voice_ce = ref_cross_entropy(face_logits, labels), ref_cross_entropy(voice_logits, labels)
    f2v, v2f = ref_npair(faces, voices, scale), ref_npair(voices, faces, scale)
    return sum(w * (fc + vc + 0.5 * (a + b)) for w, fc, vc, a, b in zip(weights, face_ce, voice_ce, f2v, v2f)) / len(labels)


def ref_triplet(voices, faces, norm, margin) -> list[float]:
    v = [norm * row / row.norm() for row in voices.double()]
    f = [norm * row / row.norm() for row in faces.double()]
    out = []
    for i in range(len(v)):
        positive = float(((v[i] - f[i]) ** 2).sum())
        hinges = [max(0.0, positive - float(((v[i] - f[j]) ** 2).sum()) + margin) for j in range(len(f)) if j != i]
        out.append(sum(hinges) / len(hinges))
    return out


def ref_schedule_update(weights: list[float], difficulty: list[float], initial_ratio, add_ratio, decay) -> list[float]:
    count = len(weights)
    unweighted = sorted((d, i) for i, (w, d) in enumerate(zip(weights, difficulty)) if w == 0)
    if all(w == 0 for w in weights):
        admitted, new = max(1, int(initial_ratio * count)), [0.0] * count
    else:
        admitted, new = max(1, int(add_ratio * count)), [w * decay for w in weights]
    for _, i in unweighted[:admitted]:
        new[i] = 1.0
    return new


# wen2021


@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 10.0, 64.0])
def test_npair_terms_match_the_loop_reference(batch, dim, scale):
    anchors, candidates = unit_rows(batch, dim, 0), unit_rows(batch, dim, 1)
    expected = torch.tensor(ref_npair(anchors, candidates, scale), dtype=torch.float64)
    torch.testing.assert_close(npair_terms(anchors, candidates, scale).double(), expected, rtol=1e-5, atol=1e-5)
    face_to_voice, voice_to_face = local_alignment_terms(anchors, candidates, scale)
    torch.testing.assert_close(voice_to_face.double(), torch.tensor(ref_npair(candidates, anchors, scale), dtype=torch.float64),
                               rtol=1e-5, atol=1e-5)


def test_npair_is_log2_for_two_identities_at_equal_similarity_and_falls_as_the_pair_separates():
    same = F.normalize(torch.tensor([[1.0, 0.0], [1.0, 0.0]]), dim=1)
    assert npair_terms(same, same, 10.0).tolist() == pytest.approx([math.log(2)] * 2)
    apart = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    assert npair_terms(apart, apart, 10.0).tolist() == pytest.approx([math.log(1 + math.exp(-10))] * 2, rel=1e-3)


def test_global_terms_are_each_modalitys_cross_entropy_per_sample():
    face_logits, voice_logits, labels = randn(6, 9, seed=2), randn(6, 9, seed=3), torch.tensor([0, 3, 8, 1, 5, 2])
    face_ce, voice_ce = global_alignment_terms(face_logits, voice_logits, labels)
    torch.testing.assert_close(face_ce.double(), torch.tensor(ref_cross_entropy(face_logits, labels), dtype=torch.float64))
    torch.testing.assert_close(voice_ce.double(), torch.tensor(ref_cross_entropy(voice_logits, labels), dtype=torch.float64))


@pytest.mark.parametrize("with_weights", [False, True])
def test_wen2021_total_matches_the_loop_reference(with_weights):
    faces, voices = unit_rows(8, 5, 4), unit_rows(8, 5, 5)
    face_logits, voice_logits = randn(8, 12, seed=6), randn(8, 12, seed=7)
    labels = torch.tensor([11, 0, 4, 7, 2, 9, 5, 1])
    loss = Wen2021Loss()
    identity_weights = None
    if with_weights:
        identity_weights = torch.tensor([1.0, 0.99, 0.0, 0.98, 1.0, 0.5, 1.0, 0.0, 1.0, 0.97, 1.0, 0.9])
        loss.identity_weights = identity_weights
    total, terms = loss.on_device(faces, voices, face_logits, voice_logits, labels)
    expected = ref_wen_total(faces, voices, face_logits, voice_logits, labels, identity_weights, loss.local_scale)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    named = dict(zip(TERM_NAMES, terms.tolist()))
    assert named["center_face"] == named["center_voice"] == named["face_within"] == named["voice_within"] == 0.0
    weights = ref_sample_weights(identity_weights, labels) if with_weights else [1.0] * 8
    assert named["identity_face"] == pytest.approx(
        sum(w * x for w, x in zip(weights, ref_cross_entropy(face_logits, labels))) / 8, rel=1e-5)


def test_sample_weights_have_mean_one_over_identities_and_zero_for_the_filtered():
    identity_weights = torch.tensor([1.0, 0.0, 0.99, 0.0, 0.9801])
    labels = torch.tensor([4, 1, 0, 2, 3])
    got = sample_weights(identity_weights, labels)
    assert got.tolist() == pytest.approx(ref_sample_weights(identity_weights, labels))
    assert got[1] == 0 and got[4] == 0
    assert (identity_weights * 5 / identity_weights.sum()).mean().item() == pytest.approx(1.0)
    assert sample_weights(None, labels).tolist() == [1.0] * 5
    with pytest.raises(ValueError, match="every identity is filtered out"):
        sample_weights(torch.zeros(5), labels)


def test_a_filtered_identity_adds_nothing_as_an_anchor_but_is_still_a_negative():
    faces = unit_rows(4, 6, 8).requires_grad_()
    voices, face_logits, voice_logits = unit_rows(4, 6, 9), randn(4, 4, seed=10), randn(4, 4, seed=11)
    labels = torch.arange(4)
    loss = Wen2021Loss()
    loss.identity_weights = torch.tensor([1.0, 1.0, 0.0, 1.0])
    total, _ = loss.on_device(faces, voices, face_logits, voice_logits, labels)
    # the same total as the three weighted anchors' terms alone (weights 4/3 each), identity 2 a negative among them
    expected = ref_wen_total(faces.detach(), voices, face_logits, voice_logits, labels, loss.identity_weights,
                             loss.local_scale)
    assert total.item() == pytest.approx(expected, rel=1e-5)
    total.backward()
    assert faces.grad[2].abs().sum() > 0  # as a negative of the other voices' N-pair terms
    loss.identity_weights = torch.tensor([0.0, 0.0, 1.0, 0.0])
    faces.grad = None
    alone, _ = loss.on_device(faces, voices, face_logits, voice_logits, labels)
    # only anchor 2 weighted: its weight normalises to 4, the mean over 4 samples leaves its own terms
    face_ce, voice_ce = ref_cross_entropy(face_logits, labels), ref_cross_entropy(voice_logits, labels)
    f2v, v2f = ref_npair(faces.detach(), voices, 10.0), ref_npair(voices, faces.detach(), 10.0)
    assert alone.item() == pytest.approx(face_ce[2] + voice_ce[2] + 0.5 * (f2v[2] + v2f[2]), rel=1e-5)


def test_difficulty_is_a_moving_average_starting_at_the_first_loss():
    difficulty, seen = torch.zeros(5), torch.zeros(5, dtype=torch.bool)
    difficulty, seen = updated_difficulty(difficulty, seen, torch.tensor([3, 0]), torch.tensor([2.0, 8.0]))
    assert difficulty.tolist() == pytest.approx([8.0, 0, 0, 2.0, 0]) and seen.tolist() == [True, False, False, True, False]
    difficulty, seen = updated_difficulty(difficulty, seen, torch.tensor([0, 1]), torch.tensor([4.0, 1.0]))
    assert difficulty.tolist() == pytest.approx([0.9 * 8 + 0.1 * 4, 1.0, 0, 2.0, 0])


@pytest.mark.parametrize("count", [3, 10, 50, 200])
def test_weight_schedule_matches_the_reference_and_filters_the_hardest(count):
    difficulty = randn(count, seed=count).abs()
    difficulty[0] = difficulty[1] = difficulty[2]  # ties go to the lower index
    weights, reference, updates = torch.zeros(count), [0.0] * count, 0
    while weighted_ratio(weights) < 0.9:
        weights = next_identity_weights(weights, difficulty, 0.5, 0.024, 0.99)
        reference = ref_schedule_update(reference, difficulty.tolist(), 0.5, 0.024, 0.99)
        updates += 1
        assert weights.tolist() == pytest.approx(reference)
    kept = int((weights > 0).sum())
    assert kept >= math.ceil(0.9 * count) and kept <= math.ceil(0.9 * count) + max(1, int(0.024 * count))
    # the filtered identities are exactly the hardest ones
    hardest = sorted(range(count), key=lambda i: (difficulty[i].item(), i))[kept:]
    assert sorted(torch.nonzero(weights == 0).squeeze(1).tolist()) == sorted(hardest)
    # identities admitted later (harder) weigh more than those admitted first
    if updates > 1:
        ranked = sorted(range(count), key=lambda i: (difficulty[i].item(), i))
        easiest, last_admitted = ranked[0], ranked[kept - 1]
        assert weights[last_admitted] == 1.0 and weights[easiest] == pytest.approx(0.99 ** (updates - 1))


def test_first_update_weights_the_easiest_half():
    weights = next_identity_weights(torch.zeros(6), torch.tensor([5.0, 1.0, 3.0, 0.5, 9.0, 2.0]))
    assert weights.tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


# xiong2019


@pytest.mark.parametrize("batch,dim", SHAPES)
@pytest.mark.parametrize("norm,margin", [(1.0, 0.2), (4.0, 6.4), (10.0, 50.0)])
def test_voice_anchored_triplet_matches_the_loop_reference(batch, dim, norm, margin):
    voices, faces = 3 * randn(batch, dim, seed=12), 0.1 * randn(batch, dim, seed=13)  # not unit: the constraint's job
    expected = ref_triplet(voices, faces, norm, margin)
    got = voice_anchored_triplet_terms(voices, faces, norm, margin)
    torch.testing.assert_close(got.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-4, atol=1e-4)
    assert voice_anchored_triplet_loss(voices, faces, norm, margin).item() == pytest.approx(sum(expected) / batch, rel=1e-4)


def test_norm_constraint_puts_every_row_on_the_sphere_and_ignores_input_scale():
    rows = randn(7, 5, seed=14) * torch.tensor([[0.01], [1], [3], [100], [0.5], [2], [7]])
    assert norm_constrained(rows, 4.0).norm(dim=1).tolist() == pytest.approx([4.0] * 7)
    voices, faces = randn(7, 5, seed=15), randn(7, 5, seed=16)
    assert voice_anchored_triplet_loss(voices * 25, faces * 0.02).item() == pytest.approx(
        voice_anchored_triplet_loss(F.normalize(voices, dim=1), F.normalize(faces, dim=1)).item(), rel=1e-5)


def test_triplet_on_hand_made_vectors_and_voice_anchoring():
    # radius 2: the voice at 0°, its face at 0° (distance 0), the other face at 90° (squared distance 8)
    voices = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    faces = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # the second face at 45° from its voice
    # anchor 0: max(0, 0 - 2·4·(1 - cos 45°) + m); anchor 1: max(0, 8(1 - cos45°) - 8 + m)
    margin = 3.0
    d45 = 8 * (1 - math.cos(math.pi / 4))
    expected = [max(0.0, 0 - d45 + margin), max(0.0, d45 - 8 + margin)]
    assert voice_anchored_triplet_terms(voices, faces, 2.0, margin).tolist() == pytest.approx(expected)
    # anchored on voices: exchanging the modalities asks another question
    assert voice_anchored_triplet_loss(faces, voices, 2.0, margin).item() != pytest.approx(sum(expected) / 2)


def test_xiong2019_objective_reports_its_loss_as_the_voice_to_face_term():
    faces, voices = unit_rows(6, 4, 17), unit_rows(6, 4, 18)
    total, terms = Xiong2019Loss().on_device(faces, voices, randn(6, 6, seed=19), randn(6, 6, seed=20), torch.arange(6))
    named = dict(zip(TERM_NAMES, terms.tolist()))
    assert named["voice_to_face"] == pytest.approx(total.item())
    assert sum(abs(v) for k, v in named.items() if k != "voice_to_face") == 0


@pytest.mark.parametrize("function", [voice_anchored_triplet_terms, npair_terms])
def test_batches_of_one_or_mismatched_shapes_are_refused(function):
    with pytest.raises(ValueError, match="at least 2 identities"):
        function(unit_rows(1, 3, 0), unit_rows(1, 3, 1))
    with pytest.raises(ValueError, match="same shape"):
        function(unit_rows(3, 3, 0), unit_rows(2, 3, 1))
