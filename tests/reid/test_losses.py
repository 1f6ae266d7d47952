"""Identification / verification losses: golden values."""

from __future__ import annotations

import math

import pytest
import torch

from reid.losses import identification_loss, verification_loss


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
