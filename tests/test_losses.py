"""Training losses: slow loop references, hand-made cases with known values, gradients."""
from __future__ import annotations

import math

import pytest
pytest.importorskip("torch", reason="needs the training extra (torch): pip install 'fvmatch[train]'")
import torch
import torch.nn.functional as F

from fvmatch.training.losses import (
    CenterLoss,
    JointLoss,
    bidirectional_ranking_loss,
    hardest_negatives,
    identity_cross_entropy,
    ranking_terms,
)

SHAPES = [(b, d) for b in (2, 5, 16) for d in (3, 8)]
SEEDS = [0, 1, 2]


def unit_rows(batch: int, dim: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(batch, dim, generator=generator), dim=1)


def unit_vectors_at(*degrees: float) -> torch.Tensor:
    return torch.tensor([[math.cos(math.radians(a)), math.sin(math.radians(a))] for a in degrees])


# Slow, obviously correct references: Python loops over the batch, float64.


def ref_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.sqrt(((a - b) ** 2).sum())


def ref_hardest(anchors: torch.Tensor, candidates: torch.Tensor) -> list[int]:
    chosen = []
    for i in range(len(anchors)):
        best, best_distance = None, math.inf
        for j in range(len(candidates)):
            distance = ref_distance(anchors[i], candidates[j]).item()
            if j != i and distance < best_distance:  # strict: the first one on ties
                best, best_distance = j, distance
        chosen.append(best)
    return chosen


def ref_hinge_mean(anchors, candidates, positives, margin) -> torch.Tensor:
    total = torch.tensor(0.0, dtype=torch.float64)
    for i, j in enumerate(ref_hardest(anchors, candidates)):
        positive = ref_distance(anchors[i], positives[i])
        hinge = margin + positive - ref_distance(anchors[i], candidates[j])
        if hinge > 0:
            total = total + hinge
    return total / len(anchors)


def ref_ranking(faces, voices, margin_cross, margin_within, weight_within) -> torch.Tensor:
    return (
        ref_hinge_mean(faces, voices, voices, margin_cross)
        + ref_hinge_mean(voices, faces, faces, margin_cross)
        + weight_within * ref_hinge_mean(faces, faces, voices, margin_within)
        + weight_within * ref_hinge_mean(voices, voices, faces, margin_within)
    )


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_hardest_negative_is_the_closest_other_identity_in_each_direction(seed, batch, dim):
    faces, voices = unit_rows(batch, dim, seed), unit_rows(batch, dim, seed + 100)
    f64, v64 = faces.double(), voices.double()
    for anchors, candidates, ref_anchors, ref_candidates in [
        (faces, voices, f64, v64),
        (voices, faces, v64, f64),
        (faces, faces, f64, f64),
        (voices, voices, v64, v64),
    ]:
        chosen = hardest_negatives(anchors, candidates)
        assert chosen.dtype == torch.long
        assert chosen.tolist() == ref_hardest(ref_anchors, ref_candidates)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("batch,dim", SHAPES)
def test_ranking_loss_and_its_gradients_match_the_loop_reference(seed, batch, dim):
    faces = unit_rows(batch, dim, seed).requires_grad_()
    voices = unit_rows(batch, dim, seed + 100).requires_grad_()
    ref_faces = faces.detach().double().requires_grad_()
    ref_voices = voices.detach().double().requires_grad_()
    # margins wide enough that most hinges are active on random unit vectors
    loss = bidirectional_ranking_loss(
        faces, voices, margin_cross=1.0, margin_within=0.8, weight_within=0.5
    )
    expected = ref_ranking(ref_faces, ref_voices, 1.0, 0.8, 0.5)
    torch.testing.assert_close(loss.double(), expected, atol=1e-5, rtol=1e-5)
    loss.backward()
    expected.backward()
    torch.testing.assert_close(faces.grad.double(), ref_faces.grad, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(voices.grad.double(), ref_voices.grad, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seed", SEEDS)
def test_ranking_loss_defaults_are_the_papers_margins_and_weight(seed):
    faces, voices = unit_rows(5, 3, seed), unit_rows(5, 3, seed + 100)
    torch.testing.assert_close(
        bidirectional_ranking_loss(faces, voices).double(),
        ref_ranking(faces.double(), voices.double(), 0.6, 0.2, 0.1),
    )


def test_identical_positives_and_far_negatives_give_zero_loss_and_zero_gradients():
    faces = torch.eye(4, requires_grad=True)  # orthogonal identities: negatives at sqrt(2)
    voices = torch.eye(4, requires_grad=True)  # each voice on its face: positives at 0
    loss = bidirectional_ranking_loss(faces, voices)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(faces.grad, torch.zeros(4, 4))
    assert torch.equal(voices.grad, torch.zeros(4, 4))


def test_hardest_negative_closer_than_the_positive_gives_the_exact_hinge():
    # identity 0: face and voice opposite (positive distance 2); identity 1: face = voice.
    # Every negative lies at sqrt(2), so only the anchors of identity 0 violate their margins.
    faces = unit_vectors_at(0, 90).requires_grad_()
    voices = unit_vectors_at(180, 90).requires_grad_()
    terms = ranking_terms(faces, voices)
    torch.testing.assert_close(terms.face_to_voice, torch.tensor((0.6 + 2 - math.sqrt(2)) / 2))
    torch.testing.assert_close(terms.voice_to_face, torch.tensor((0.6 + 2 - math.sqrt(2)) / 2))
    torch.testing.assert_close(terms.face_within, torch.tensor((0.2 + 2 - math.sqrt(2)) / 2))
    torch.testing.assert_close(terms.voice_within, torch.tensor((0.2 + 2 - math.sqrt(2)) / 2))
    loss = bidirectional_ranking_loss(faces, voices)
    torch.testing.assert_close(loss, torch.tensor(2.6 - math.sqrt(2) + 0.1 * (2.2 - math.sqrt(2))))
    loss.backward()
    assert faces.grad.abs().sum() > 0 and voices.grad.abs().sum() > 0
    assert torch.isfinite(faces.grad).all() and torch.isfinite(voices.grad).all()


def test_nearest_of_several_negatives_is_chosen_and_only_its_margin_counts():
    # on the unit circle at 0, 30 and 180 degrees; each voice on its face
    faces = unit_vectors_at(0, 30, 180)
    voices = unit_vectors_at(0, 30, 180)
    assert hardest_negatives(faces, voices).tolist() == [1, 0, 1]
    assert hardest_negatives(voices, voices).tolist() == [1, 0, 1]
    near = 2 * math.sin(math.radians(15))  # 0.518 between 0 and 30 degrees: inside α = 0.6
    terms = ranking_terms(faces, voices)
    torch.testing.assert_close(terms.face_to_voice, torch.tensor(2 * (0.6 - near) / 3))
    torch.testing.assert_close(terms.voice_to_face, torch.tensor(2 * (0.6 - near) / 3))
    assert terms.face_within.item() == terms.voice_within.item() == 0.0  # outside β = 0.2


def test_one_identity_per_batch_is_refused():
    one = unit_rows(1, 8, 0)
    for call in (hardest_negatives, ranking_terms, bidirectional_ranking_loss):
        with pytest.raises(ValueError, match="at least 2 identities"):
            call(one, one)


def test_faces_and_voices_of_different_shapes_are_refused():
    with pytest.raises(ValueError, match="same shape"):
        bidirectional_ranking_loss(unit_rows(4, 8, 0), unit_rows(3, 8, 1))


def test_bf16_embeddings_give_float32_distances():
    faces, voices = unit_rows(5, 8, 0), unit_rows(5, 8, 1)
    loss = bidirectional_ranking_loss(faces.bfloat16(), voices.bfloat16())
    assert loss.dtype == torch.float32
    expected = bidirectional_ranking_loss(faces.bfloat16().float(), voices.bfloat16().float())
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_identity_cross_entropy_is_the_mean_negative_log_softmax(seed):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(6, 10, generator=generator)
    labels = torch.randint(0, 10, (6,), generator=generator)
    expected = 0.0
    for row, label in zip(logits.double(), labels):
        expected += -(row[label] - torch.log(sum(torch.exp(x) for x in row)))
    torch.testing.assert_close(identity_cross_entropy(logits, labels).double(), expected / 6)


def test_centers_are_a_buffer_not_a_parameter():
    center_loss = CenterLoss(n_identities=7, embedding_dim=4)
    assert list(center_loss.parameters()) == []
    assert center_loss.state_dict()["centers"].shape == (7, 4)


@pytest.mark.parametrize("seed", SEEDS)
def test_center_loss_is_half_the_mean_squared_distance_to_the_own_center(seed):
    generator = torch.Generator().manual_seed(seed)
    center_loss = CenterLoss(n_identities=5, embedding_dim=3)
    center_loss.centers.copy_(torch.randn(5, 3, generator=generator))
    embeddings = torch.randn(8, 3, generator=generator, requires_grad=True)
    labels = torch.randint(0, 5, (8,), generator=generator)
    expected = 0.0
    for x, label in zip(embeddings.double(), labels):
        expected += 0.5 * ((x - center_loss.centers[label].double()) ** 2).sum() / 8
    loss = center_loss(embeddings, labels)
    torch.testing.assert_close(loss.double(), expected)
    loss.backward()
    own_centers = center_loss.centers[labels]
    torch.testing.assert_close(embeddings.grad, (embeddings.detach() - own_centers) / 8)


@pytest.mark.parametrize("seed", SEEDS)
def test_center_update_follows_wen_et_al_and_leaves_absent_identities(seed):
    generator = torch.Generator().manual_seed(seed)
    center_loss = CenterLoss(n_identities=6, embedding_dim=3)
    center_loss.centers.copy_(torch.randn(6, 3, generator=generator))
    before = center_loss.centers.clone()
    embeddings = torch.randn(10, 3, generator=generator, requires_grad=True)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 4, 4, 4, 4])
    center_loss.update_centers(embeddings, labels, alpha=0.3)
    for j in range(6):
        members = [embeddings[i].detach() for i in range(10) if labels[i] == j]
        delta = sum((before[j] - x for x in members), torch.zeros(3)) / (1 + len(members))
        torch.testing.assert_close(center_loss.centers[j], before[j] - 0.3 * delta)
    torch.testing.assert_close(center_loss.centers[[3, 5]], before[[3, 5]])


def test_center_update_moves_a_center_a_quarter_of_the_way_to_its_one_sample():
    center_loss = CenterLoss(n_identities=2, embedding_dim=2)
    sample = torch.tensor([[4.0, -2.0]])
    center_loss.update_centers(sample, torch.tensor([1]), alpha=0.5)
    # alpha * (c - x) / (1 + 1) with c = 0: a quarter of the way from the origin
    torch.testing.assert_close(center_loss.centers, torch.tensor([[0.0, 0.0], [1.0, -0.5]]))
    center_loss.update_centers(sample, torch.tensor([1]), alpha=0.5)
    torch.testing.assert_close(center_loss.centers[1], torch.tensor([1.75, -0.875]))


def test_joint_loss_has_the_papers_weights():
    loss = JointLoss()
    assert (loss.identity_weight, loss.center_weight, loss.within_weight) == (1.0, 0.001, 0.1)
    assert (loss.margin_cross, loss.margin_within) == (0.6, 0.2)


def test_joint_loss_is_the_weighted_sum_of_its_terms_and_trains_everything():
    generator = torch.Generator().manual_seed(0)
    faces = unit_rows(5, 8, 0).requires_grad_()
    voices = unit_rows(5, 8, 1).requires_grad_()
    face_logits = torch.randn(5, 11, generator=generator, requires_grad=True)
    voice_logits = torch.randn(5, 11, generator=generator, requires_grad=True)
    labels = torch.tensor([3, 0, 10, 7, 5])
    center_loss = CenterLoss(n_identities=11, embedding_dim=8)
    center_loss.centers.copy_(torch.randn(11, 8, generator=generator))
    weights = JointLoss(
        identity_weight=0.5, center_weight=0.25, within_weight=0.3,
        margin_cross=1.0, margin_within=0.7,
    )

    total, terms = weights(faces, voices, face_logits, voice_logits, labels, center_loss)

    ranking = ranking_terms(faces, voices, 1.0, 0.7)
    expected_terms = {
        "identity_face": identity_cross_entropy(face_logits, labels),
        "identity_voice": identity_cross_entropy(voice_logits, labels),
        "center_face": center_loss(faces, labels),
        "center_voice": center_loss(voices, labels),
        "face_to_voice": ranking.face_to_voice,
        "voice_to_face": ranking.voice_to_face,
        "face_within": ranking.face_within,
        "voice_within": ranking.voice_within,
    }
    assert terms.keys() == expected_terms.keys()
    assert all(type(value) is float for value in terms.values())
    for name, value in expected_terms.items():
        assert terms[name] == pytest.approx(value.item(), rel=1e-6)
    expected_total = (
        0.5 * (expected_terms["identity_face"] + expected_terms["identity_voice"])
        + 0.25 * (expected_terms["center_face"] + expected_terms["center_voice"])
        + ranking.face_to_voice
        + ranking.voice_to_face
        + 0.3 * (ranking.face_within + ranking.voice_within)
    )
    torch.testing.assert_close(total, expected_total)
    centers_before = center_loss.centers.clone()
    total.backward()
    for tensor in (faces, voices, face_logits, voice_logits):
        assert tensor.grad is not None and tensor.grad.abs().sum() > 0
    assert torch.equal(center_loss.centers, centers_before)  # only update_centers moves them
