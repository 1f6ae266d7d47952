"""Identification / verification losses: golden values."""

from __future__ import annotations

import math

import pytest
import torch

from reid.losses import batch_hard_triplet_loss, identification_loss, verification_loss


def test_identification_loss_golden():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]])
    assert identification_loss(logits, torch.tensor([2])).item() == pytest.approx(math.log(4))
    confident = torch.tensor([[10.0, 0.0]])
    plain = identification_loss(confident, torch.tensor([0]))
    smoothed = identification_loss(confident, torch.tensor([0]), label_smoothing=0.2)
    # Smoothing puts 0.1 of the target mass on the wrong class: -0.9 log p0 - 0.1 log p1.
    log_p = torch.log_softmax(confident, 1)[0]
    assert smoothed.item() == pytest.approx(-(0.9 * log_p[0] + 0.1 * log_p[1]).item())
    assert smoothed > plain


def test_verification_loss_prefers_correct_pairs():
    logits = torch.tensor([[2.0, -2.0], [-2.0, 2.0]])  # says: different, same
    right = verification_loss(logits, torch.tensor([False, True]))
    wrong = verification_loss(logits, torch.tensor([True, False]))
    assert right.item() == pytest.approx(math.log1p(math.exp(-4.0)), rel=1e-5)
    assert wrong > right


def test_batch_hard_triplet_loss_hand_case():
    # Identity 0 at x = 0 and 3, identity 1 at x = 4 and 10 (one-dimensional features).
    features = torch.tensor([[0.0], [3.0], [4.0], [10.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1])
    # Hardest positive / negative per anchor: 0: 3 / 4; 3: 3 / 1; 4: 6 / 1; 10: 6 / 7.
    expected = (max(0, 3 - 4 + 0.3) + max(0, 3 - 1 + 0.3) + max(0, 6 - 1 + 0.3) + 0) / 4
    loss = batch_hard_triplet_loss(features, labels, margin=0.3)
    assert loss.item() == pytest.approx(expected, abs=1e-5)
    loss.backward()
    assert torch.isfinite(features.grad).all()
    # An image drawn twice (zero distance) still has a finite gradient.
    twice = torch.tensor([[1.0], [1.0], [5.0]], requires_grad=True)
    batch_hard_triplet_loss(twice, torch.tensor([0, 0, 1])).backward()
    assert torch.isfinite(twice.grad).all()
    # No anchor with both a positive and a negative: zero, not NaN.
    lonely = batch_hard_triplet_loss(torch.randn(3, 4), torch.tensor([0, 1, 2]))
    assert lonely.item() == 0.0
