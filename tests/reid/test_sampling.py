"""Batch sampling of the Re-ID trainer: random, Siamese pairs, PK; pure functions of the step."""

from __future__ import annotations

import pytest
import torch

from reid.sampling import BatchSampler


def test_siamese_sampler_pairs():
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    sampler = BatchSampler(targets, batch_size=24, seed=0, mode="siamese", positive_fraction=0.5)
    indices, same = sampler(0)
    assert same is not None and len(indices) == 2 * len(same) == 24
    anchors, partners = indices[:12], indices[12:]
    assert sorted(anchors.tolist()) == list(range(12))  # one epoch = every image as an anchor
    assert torch.equal(targets[anchors] == targets[partners], same)
    assert bool((anchors[same] != partners[same]).all())  # positives are other images
    assert 0 < int(same.sum()) < 12
    again, _ = sampler(0)
    assert torch.equal(again, indices)  # a pure function of (seed, step)


def test_pk_batches_hold_p_distinct_identities_with_k_images_each():
    targets = torch.tensor([0] * 6 + [1] * 2 + [2] * 5 + [3] * 4 + [4] * 7)
    sampler = BatchSampler(targets, batch_size=12, seed=0, mode="pk", instances_per_id=4)
    assert sampler.steps_per_epoch == len(targets) // 12
    seen = set()
    for step in range(20):
        indices, same = sampler(step)
        assert same is None and len(indices) == 12
        groups = targets[indices].view(3, 4)  # P = 3 identities, K = 4 images in a row
        assert bool((groups == groups[:, :1]).all())
        assert len(set(groups[:, 0].tolist())) == 3
        for identity, rows in zip(groups[:, 0].tolist(), indices.view(3, 4), strict=True):
            if int((targets == identity).sum()) >= 4:  # enough images: no repeats
                assert len(set(rows.tolist())) == 4
        seen |= set(groups[:, 0].tolist())
    assert seen == {0, 1, 2, 3, 4}
    assert torch.equal(sampler(7)[0], BatchSampler(targets, batch_size=12, seed=0, mode="pk")(7)[0])
    with pytest.raises(ValueError, match="multiple of instances_per_id"):
        BatchSampler(targets, batch_size=10, seed=0, mode="pk", instances_per_id=4)
    with pytest.raises(ValueError, match="needs 8 identities"):
        BatchSampler(targets, batch_size=24, seed=0, mode="pk", instances_per_id=3)
