"""XQDA / KISSME: IDE-baseline training pairs, pair covariances, matrix properties, a win over
Euclidean."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.evaluate import evaluate_ranking
from reid.metric_learning import (
    KISSME,
    XQDA,
    Euclidean,
    UnfittableMetricError,
    build_metric,
    check_fittable,
    cross_set_covariances,
    kissme_max_dim,
    kissme_training_pairs,
    pair_scatter,
    xqda_training_pairs,
)


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
    train_cams = torch.arange(len(train_y)) % 6 + 1
    return train_x, train_y, train_cams, test_x, test_y, cams, query


# Identity 1: two cameras -> 1 pair. 2: one camera -> none. 3: one image -> none. 4: three
# cameras, 3 images -> 1 pair (one left over). 5: four cameras -> 2 pairs.
XQDA_LABELS = np.array([1, 1, 2, 2, 3, 4, 4, 4, 5, 5, 5, 5])
XQDA_CAMS = np.array([1, 2, 3, 3, 1, 1, 2, 3, 1, 2, 3, 4])


def test_xqda_training_pairs_hand_case():
    first, second = xqda_training_pairs(XQDA_LABELS, XQDA_CAMS, np.random.default_rng(0))
    assert len(first) == 4
    assert {int(first[0]), int(second[0])} == {0, 1}
    assert (XQDA_LABELS[first] == XQDA_LABELS[second]).all()
    assert (XQDA_CAMS[first] != XQDA_CAMS[second]).all()
    assert len(set(first) | set(second)) == 8  # no image used twice
    assert XQDA_LABELS[first].tolist() == [1, 4, 5, 5]
    again = xqda_training_pairs(XQDA_LABELS, XQDA_CAMS, np.random.default_rng(0))
    assert np.array_equal(again[0], first) and np.array_equal(again[1], second)
    draws = {
        tuple(xqda_training_pairs(XQDA_LABELS, XQDA_CAMS, np.random.default_rng(s))[0])
        for s in range(10)
    }
    assert len(draws) > 1, "the shuffle depends on the generator"


def test_kissme_training_pairs_hand_case():
    labels = np.array([5, 5, 5, 7, 7, 9])
    cams = np.array([1, 2, 1, 1, 3, 2])
    first, second, same = kissme_training_pairs(labels, cams, np.random.default_rng(0))
    # Positives: (0,1) cameras 1/2, (0,2) dropped (camera 1 twice), (1,2), (3,4).
    assert first[:3].tolist() == [0, 1, 3] and second[:3].tolist() == [1, 2, 4]
    assert same.tolist() == [True] * 3 + [False] * 3
    a, b = first[3:], second[3:]
    assert (labels[a] != labels[b]).all() and (cams[a] != cams[b]).all()
    again = kissme_training_pairs(labels, cams, np.random.default_rng(0))
    assert all(np.array_equal(x, y) for x, y in zip(again, (first, second, same), strict=True))
    with pytest.raises(ValueError, match="no identity has two images from different cameras"):
        kissme_training_pairs(labels, np.ones(6, int), np.random.default_rng(0))
    with pytest.raises(ValueError, match="found 0 cross-camera negative pairs, need 1"):
        kissme_training_pairs(
            np.array([1, 1]), np.array([1, 2]), np.random.default_rng(0), draws=8, max_rounds=2
        )


def test_cross_set_covariances_hand_case():
    # Same label: 0-1 and 2-5 -> (1 + 9) / 2. Different: 0-5 and 2-1 -> (25 + 1) / 2.
    intra, extra = cross_set_covariances(
        torch.tensor([[0.0], [2.0]]),
        torch.tensor([[1.0], [5.0]]),
        torch.tensor([1, 2]),
        torch.tensor([1, 2]),
    )
    assert intra.item() == pytest.approx(5.0) and extra.item() == pytest.approx(13.0)
    with pytest.raises(ValueError, match="different-identity"):
        cross_set_covariances(
            torch.zeros(1, 1), torch.ones(1, 1), torch.tensor([1]), torch.tensor([1])
        )


def test_cross_set_covariances_match_explicit_pairs():
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(7, 3, generator=gen, dtype=torch.float64) + 5.0
    y = torch.randn(6, 3, generator=gen, dtype=torch.float64) - 2.0
    lx = torch.tensor([5, 5, 7, 9, 2, 2, 8])
    ly = torch.tensor([5, 7, 7, 2, 3, 5])
    diff = x[:, None, :] - y[None, :, :]  # [7, 6, D]
    outer = diff[..., :, None] * diff[..., None, :]  # [7, 6, D, D]
    same = lx[:, None] == ly[None, :]
    intra, extra = cross_set_covariances(x, y, lx, ly)
    torch.testing.assert_close(intra, outer[same].mean(0))
    torch.testing.assert_close(extra, outer[~same].mean(0))


def test_pair_scatter_hand_case():
    x = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, 1.0]], dtype=torch.float64)
    # Differences (-1, -2) and (2, -1): outer products [[1, 2], [2, 4]] + [[4, -2], [-2, 1]].
    scatter = pair_scatter(x, np.array([0, 2]), np.array([1, 1]), chunk=1)
    torch.testing.assert_close(scatter, torch.tensor([[2.5, 0.0], [0.0, 2.5]], dtype=torch.float64))


def test_kissme_is_the_likelihood_ratio_of_its_pairs(data):
    train_x, train_y, train_cams = data[:3]
    kissme = KISSME(pca_dim=None, seed=3).fit(train_x, train_y, train_cams)
    first, second, same = kissme_training_pairs(
        train_y.numpy(), train_cams.numpy(), np.random.default_rng(3)
    )
    x = train_x.double().numpy()
    d = x[first] - x[second]
    sigma_s = d[same].T @ d[same] / same.sum()
    sigma_d = d[~same].T @ d[~same] / (~same).sum()
    sigma_s += 1e-6 * np.diag(sigma_s).mean() * np.eye(len(sigma_s))
    values, vectors = np.linalg.eigh(np.linalg.inv(sigma_s) - np.linalg.inv(sigma_d))
    expected = (vectors * values.clip(min=0.0)) @ vectors.T
    np.testing.assert_allclose(kissme.metric.numpy(), expected, rtol=1e-6, atol=1e-9)


def test_xqda_uses_its_cross_camera_sets(data):
    train_x, train_y, train_cams = data[:3]
    xqda = XQDA(seed=5).fit(train_x, train_y, train_cams)
    first, second = xqda_training_pairs(
        train_y.numpy(), train_cams.numpy(), np.random.default_rng(5)
    )
    sigma_i, _ = cross_set_covariances(
        train_x[first], train_x[second], train_y[first], train_y[second]
    )
    w = xqda.projection
    eye = torch.eye(w.shape[1], dtype=torch.float64)
    torch.testing.assert_close(w.T @ (sigma_i + 1e-3 * torch.eye(24).double()) @ w, eye)


def ranking(metric, data):
    train_x, train_y, train_cams, test_x, test_y, cams, query = data
    metric.fit(train_x, train_y, train_cams)
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
    train_x, train_y, train_cams = data[:3]
    xqda = XQDA().fit(train_x, train_y, train_cams)
    assert xqda.eigenvalues is not None and xqda.metric is not None
    assert bool((xqda.eigenvalues > 1).all())
    assert bool((xqda.eigenvalues[:-1] >= xqda.eigenvalues[1:]).all())
    # The 4 identity dims spread far more across identities than within: they lead by far.
    # The nuisance dims have equal spread within and across: near 1 (sampling noise of the
    # 360 intra pairs lifts some just above 1), most dropped.
    assert float(xqda.eigenvalues[3]) > 5.0 and bool((xqda.eigenvalues[4:] < 1.5).all())
    assert 4 <= len(xqda.eigenvalues) < 16
    torch.testing.assert_close(xqda.metric, xqda.metric.T)
    assert len(XQDA(max_dim=2).fit(train_x, train_y, train_cams).eigenvalues) == 2


def test_kissme_properties(data):
    train_x, train_y, train_cams = data[:3]
    assert KISSME().pca_dim == 200  # IDE baseline numCoeffs
    kissme = KISSME(pca_dim=None).fit(train_x, train_y, train_cams)
    torch.testing.assert_close(kissme.metric, kissme.metric.T)
    assert float(torch.linalg.eigvalsh(kissme.metric).min()) > -1e-10
    pca = KISSME(pca_dim=6).fit(train_x, train_y, train_cams)
    assert pca.metric.shape == (6, 6)
    dist = pca.distance(train_x[:3], train_x)
    assert dist.shape == (3, len(train_x)) and bool((dist >= 0).all())
    assert torch.allclose(dist[torch.arange(3), torch.arange(3)], torch.zeros(3), atol=1e-3)


def test_build_metric_and_errors():
    assert isinstance(build_metric("kissme", pca_dim=8, seed=1), KISSME)
    with pytest.raises(ValueError, match="unknown metric"):
        build_metric("lmnn")
    with pytest.raises(RuntimeError, match="before fit"):
        XQDA().distance(torch.zeros(1, 2), torch.zeros(1, 2))
    labels, one_camera = torch.tensor([0, 0, 1, 1]), torch.ones(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="XQDA: no identity has two images from different"):
        XQDA().fit(torch.randn(4, 2), labels, one_camera)
    with pytest.raises(ValueError, match="KISSME: no identity has two images from different"):
        KISSME().fit(torch.randn(4, 2), labels, one_camera)


def test_kissme_bound_is_the_rank_of_its_dissimilar_pairs():
    """At kissme_max_dim Sigma_D has full rank; one dimension more and it is singular, which
    is what made KISSME's distances explode: check_fittable refuses exactly there."""
    gen = np.random.default_rng(0)
    labels, cams = np.repeat(np.arange(4), 4), np.tile([1, 2, 3, 4], 4)
    x = torch.from_numpy(gen.normal(size=(16, 64)))
    limit = kissme_max_dim(labels, cams)
    assert 0 < limit <= 15
    first, second, same = kissme_training_pairs(labels, cams, np.random.default_rng(0))
    centred = x - x.mean(0)
    axes = torch.linalg.svd(centred, full_matrices=False).Vh
    for size, rank in ((limit, limit), (limit + 1, limit)):
        sigma_d = pair_scatter(centred @ axes[:size].T, first[~same], second[~same])
        assert int(torch.linalg.matrix_rank(sigma_d)) == rank
    options = {"kissme": {"pca_dim": limit}}
    check_fittable(["kissme"], options, labels=labels, cameras=cams, feature_dim=64)
    fitted = KISSME(pca_dim=limit).fit(x, torch.from_numpy(labels), torch.from_numpy(cams))
    assert torch.isfinite(fitted.distance(x.float(), x.float())).all()
    for too_big in ({"pca_dim": limit + 1}, {"pca_dim": None}, {}):
        with pytest.raises(UnfittableMetricError, match=f"use --kissme-pca {limit} or less"):
            check_fittable(
                ["euclidean", "kissme"],
                {"kissme": too_big},
                labels=labels,
                cameras=cams,
                feature_dim=64,
            )


def test_metrics_without_cross_camera_pairs_are_refused():
    labels, one_camera = np.repeat(np.arange(3), 4), np.ones(12, int)
    for metric in ("xqda", "kissme"):
        with pytest.raises(UnfittableMetricError, match=r"leave it out \(--metrics euclidean\)"):
            check_fittable([metric], {}, labels=labels, cameras=one_camera, feature_dim=8)
    check_fittable(["euclidean"], {}, labels=labels, cameras=one_camera, feature_dim=8)
