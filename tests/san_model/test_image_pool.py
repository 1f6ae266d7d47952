"""PATN's pool of past fakes: filling, swapping, pass-through and exact state round trip."""

from __future__ import annotations

import pytest
import torch

from san_model.image_pool import ImagePool


def batch(start: int, size: int = 4) -> torch.Tensor:
    """[size, 2, 1, 1] images whose value is their running number."""
    return (
        torch.arange(start, start + size, dtype=torch.float32)
        .view(size, 1, 1, 1)
        .repeat(1, 2, 1, 1)
    )


def test_size_zero_passes_batches_through() -> None:
    pool = ImagePool(0, seed=0)
    images = batch(0).requires_grad_()
    out = pool.query(images)
    assert torch.equal(out, images) and not out.requires_grad
    assert pool.state_dict()["images"].numel() == 0


def test_filling_returns_the_batch_and_stores_it() -> None:
    pool = ImagePool(6, seed=0)
    assert torch.equal(pool.query(batch(0)), batch(0))
    assert torch.equal(pool.query(batch(4)), batch(4))  # 2 stored, 2 over: still the batch
    assert pool.state_dict()["images"].shape == (6, 2, 1, 1)


def test_full_pool_swaps_about_half_for_stored_images() -> None:
    pool = ImagePool(8, seed=0)
    pool.query(batch(0, 8))
    swapped = []
    for k in range(50):
        images = batch(100 + 8 * k, 8)
        returned = pool.query(images)[:, 0, 0, 0].int().tolist()
        for value, new in zip(returned, images[:, 0, 0, 0].int().tolist(), strict=True):
            assert value <= new  # the image itself, or one stored before it (numbers grow)
            swapped.append(value != new)
    assert 0.4 < sum(swapped) / len(swapped) < 0.6  # probability 1/2
    assert pool.state_dict()["images"].shape[0] == 8


def test_state_round_trip_continues_identically() -> None:
    pool = ImagePool(4, seed=3)
    pool.query(batch(0))
    pool.query(batch(10))
    restored = ImagePool(4, seed=99)
    restored.load_state_dict(pool.state_dict(), torch.device("cpu"))
    for k in range(5):
        assert torch.equal(pool.query(batch(20 + 4 * k)), restored.query(batch(20 + 4 * k)))


def test_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="pool size"):
        ImagePool(-1, seed=0)
