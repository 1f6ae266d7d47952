"""XQDA / KISSME: closed-form pair covariances, matrix properties, and a win over Euclidean."""

from __future__ import annotations

import pytest
import torch

from reid.evaluate import evaluate_ranking
from reid.metric_learning import KISSME, XQDA, Euclidean, build_metric, difference_covariances


def buried_classes(gen, num_ids, per_id, rotation, centers):
    """Identity lives in 4 of 24 dims (small spread); 20 nuisance dims have std 6, then a
    random rotation mixes all dims so no axis-aligned trick works."""
    labels = torch.arange(num_ids).repeat_interleave(per_id)
    signal = centers[labels] + 0.3 * torch.randn(len(labels), 4, generator=gen)
    nuisance = 6.0 * torch.randn(len(labels), 20, generator=gen)
    return torch.cat([signal, nuisance], 1) @ rotation, labels


@pytest.fixture(scope="module")
def data():
    gen = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(24, 24, generator=gen)).Q
    train_x, train_y = buried_classes(gen, 40, 6, rotation, torch.randn(40, 4, generator=gen))
    test_x, test_y = buried_classes(gen, 30, 6, rotation, torch.randn(30, 4, generator=gen))
    cams = torch.arange(len(test_y)) % 6 + 1  # each identity seen once by each camera
    query = torch.arange(len(test_y)) % 6 == 0
    return train_x, train_y, test_x, test_y, cams, query


def test_difference_covariances_match_explicit_pairs():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(13, 3, generator=gen, dtype=torch.float64)
    y = torch.tensor([5, 5, 7, 7, 7, 9, 2, 2, 2, 2, 9, 5, 8])
    diff = x[:, None, :] - x[None, :, :]  # [N, N, D]
    outer = diff[..., :, None] * diff[..., None, :]  # [N, N, D, D]
    same = (y[:, None] == y[None, :]) & ~torch.eye(13, dtype=torch.bool)
    other = y[:, None] != y[None, :]
    intra, extra = difference_covariances(x, y)
    torch.testing.assert_close(intra, outer[same].mean(0))
    torch.testing.assert_close(extra, outer[other].mean(0))


def ranking(metric, data):
    train_x, train_y, test_x, test_y, cams, query = data
    metric.fit(train_x, train_y)
    dist = metric.distance(test_x[query], test_x[~query])
    return evaluate_ranking(dist, test_y[query], test_y[~query], cams[query], cams[~query])


def test_learned_metrics_beat_euclidean(data):
    base = ranking(Euclidean(), data)
    xqda = ranking(XQDA(), data)
    kissme = ranking(KISSME(), data)
    assert base.mAP < 0.4  # the nuisance dims dominate plain distances
    for learned in (xqda, kissme):
        assert learned.rank1 > base.rank1 + 0.3
        assert learned.mAP > base.mAP + 0.3


def test_xqda_properties(data):
    train_x, train_y = data[0], data[1]
    xqda = XQDA().fit(train_x, train_y)
    assert xqda.eigenvalues is not None and xqda.metric is not None
    assert bool((xqda.eigenvalues > 1).all())
    assert bool((xqda.eigenvalues[:-1] >= xqda.eigenvalues[1:]).all())
    # The 4 identity dims spread far more across identities than within: all are kept; the
    # nuisance dims have equal spread within and across and are dropped.
    assert 4 <= len(xqda.eigenvalues) < 12
    torch.testing.assert_close(xqda.metric, xqda.metric.T)
    assert len(XQDA(max_dim=2).fit(train_x, train_y).eigenvalues) == 2


def test_kissme_properties(data):
    train_x, train_y = data[0], data[1]
    kissme = KISSME().fit(train_x, train_y)
    torch.testing.assert_close(kissme.metric, kissme.metric.T)
    assert float(torch.linalg.eigvalsh(kissme.metric).min()) > -1e-10
    pca = KISSME(pca_dim=6).fit(train_x, train_y)
    assert pca.metric.shape == (6, 6)
    dist = pca.distance(train_x[:3], train_x)
    assert dist.shape == (3, len(train_x)) and bool((dist >= 0).all())
    assert torch.allclose(dist[torch.arange(3), torch.arange(3)], torch.zeros(3), atol=1e-3)


def test_build_metric_and_errors():
    assert isinstance(build_metric("kissme", pca_dim=8), KISSME)
    with pytest.raises(ValueError, match="unknown metric"):
        build_metric("lmnn")
    with pytest.raises(RuntimeError, match="before fit"):
        XQDA().distance(torch.zeros(1, 2), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="two images"):
        difference_covariances(torch.randn(3, 2), torch.tensor([0, 1, 2]))
