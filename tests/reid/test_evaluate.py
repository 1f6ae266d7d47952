"""evaluate_ranking against a slow per-query reference (stable sort, the MATLAB AP loop)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid.evaluate import compute_distance, evaluate_ranking


def reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, ap):
    """Per query: stable argsort, drop junk, walk the list (trapezoid: compute_AP.m's loop)."""
    cmc_rows, aps = [], []
    for q in range(len(q_pids)):
        order = np.argsort(distmat[q], kind="stable")
        junk = ((g_pids[order] == q_pids[q]) & (g_cams[order] == q_cams[q])) | (g_pids[order] == -1)
        order = order[~junk]
        good = g_pids[order] == q_pids[q]
        if not good.any():
            aps.append(np.nan)
            continue
        n_good, hits, total = good.sum(), 0, 0.0
        old_recall, old_precision = 0.0, 1.0
        for j, is_good in enumerate(good):
            hits += int(is_good)
            precision = hits / (j + 1)
            if ap == "standard":
                total += precision if is_good else 0.0
            else:
                recall = hits / n_good
                total += (recall - old_recall) * (old_precision + precision) / 2
                old_recall, old_precision = recall, precision
            if hits == n_good:
                break
        aps.append(total / n_good if ap == "standard" else total)
        first = int(np.argmax(good))
        cmc_rows.append(np.arange(max_rank) >= first)
    return np.mean(cmc_rows, axis=0), np.array(aps)


def market_like(rng, num_q, num_g, num_ids):
    g_pids = rng.integers(0, num_ids, num_g)
    g_pids[rng.random(num_g) < 0.1] = -1  # junk
    q_pids = rng.integers(1, num_ids + 3, num_q)  # a few query ids absent from the gallery
    return q_pids, g_pids, rng.integers(1, 7, num_q), rng.integers(1, 7, num_g)


CASES = [
    ("float32", lambda rng, shape: rng.random(shape).astype(np.float32)),
    ("float64", lambda rng, shape: rng.standard_normal(shape)),
    ("int32_ties", lambda rng, shape: rng.integers(0, 4, shape).astype(np.int32)),
    ("int64_ties", lambda rng, shape: rng.integers(0, 3, shape)),
    ("float32_ties", lambda rng, shape: rng.integers(-2, 3, shape).astype(np.float32) * 0.5),
    ("float64_ties", lambda rng, shape: rng.integers(0, 5, shape).astype(np.float64)),
    # -0.0 and 0.0 compare equal: a tie broken by gallery index, as a stable argsort does.
    (
        "signed_zeros",
        lambda rng, shape: (
            (rng.integers(0, 3, shape) - 1).astype(np.float32)
            * rng.choice([0.0, -0.0], shape).astype(np.float32)
        ),
    ),
]


@pytest.mark.parametrize("ap", ["standard", "trapezoid"])
@pytest.mark.parametrize(("name", "make"), CASES, ids=[c[0] for c in CASES])
def test_matches_reference(name, make, ap):
    rng = np.random.default_rng(sum(map(ord, name)))
    q_pids, g_pids, q_cams, g_cams = market_like(rng, 37, 211, 12)
    distmat = make(rng, (37, 211))
    # A tiny chunk forces many chunks of different padding widths.
    result = evaluate_ranking(
        distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, ap=ap, chunk_elements=600
    )
    cmc, aps = reference(distmat, q_pids, g_pids, q_cams, g_cams, 20, ap)
    np.testing.assert_array_equal(result.cmc, cmc)
    np.testing.assert_allclose(result.per_query_ap, aps, rtol=1e-12, equal_nan=True)
    assert result.mAP == pytest.approx(np.nanmean(aps), rel=1e-12)
    assert result.num_valid_queries + result.num_queries_without_match == 37
    assert result.num_queries_without_match == int(np.isnan(aps).sum())


def test_torch_dtypes_equal_numpy():
    rng = np.random.default_rng(7)
    q_pids, g_pids, q_cams, g_cams = market_like(rng, 23, 97, 8)
    distmat = rng.integers(0, 6, (23, 97)).astype(np.float32) / 4  # exact in bfloat16
    expected = evaluate_ranking(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    for dtype in (torch.bfloat16, torch.float16, torch.float64):
        result = evaluate_ranking(
            torch.from_numpy(distmat).to(dtype), q_pids, g_pids, q_cams, g_cams, max_rank=10
        )
        np.testing.assert_array_equal(result.cmc, expected.cmc)
        np.testing.assert_array_equal(result.per_query_ap, expected.per_query_ap)


def test_real_market_sample(real_market):
    """Ranking of the real sample's queries (pid 1488 exists only as *.jpg.jpg files) by
    colour-histogram distances equals the per-query stable-argsort reference."""
    from PIL import Image

    from pipeline.datasets.market1501 import parse_market_name

    def load(folder):
        paths = sorted((real_market / folder).glob("*.jpg"))  # *.jpg.jpg included
        features = np.stack(
            [
                np.histogramdd(
                    np.asarray(Image.open(p).convert("RGB")).reshape(-1, 3) // 64,
                    bins=(4, 4, 4),
                    range=((0, 4),) * 3,
                )[0].ravel()
                for p in paths
            ]
        )
        names = [parse_market_name(p.name) for p in paths]
        return (
            features / features.sum(1, keepdims=True),
            np.array([n.person_id for n in names]),
            np.array([n.camera for n in names]),
        )

    qf, q_pids, q_cams = load("query")
    gf, g_pids, g_cams = load("bounding_box_test")
    assert len(qf) == 8 and len(gf) == 26 and (q_pids == 1488).sum() == 6
    distmat = ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1).astype(np.float32)
    for ap in ("standard", "trapezoid"):
        result = evaluate_ranking(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20, ap=ap)
        cmc, aps = reference(distmat, q_pids, g_pids, q_cams, g_cams, 20, ap)
        assert result.num_valid_queries == 8
        np.testing.assert_array_equal(result.cmc, cmc)
        np.testing.assert_allclose(result.per_query_ap, aps, rtol=1e-12)


def test_hand_built_case():
    # Query pid 1, camera 1. Gallery: [same id same cam (junk), distractor, same id cam 2,
    # pid -1 (junk), other id, same id cam 3]; distances put junk first.
    g_pids = np.array([1, 0, 1, -1, 2, 1])
    g_cams = np.array([1, 2, 2, 3, 4, 3])
    distmat = np.array([[0.0, 0.1, 0.2, 0.0, 0.3, 0.3]], dtype=np.float32)
    # Valid ranking: distractor (0.1), match (0.2), other (0.3, index 4), match (0.3, index 5).
    standard = evaluate_ranking(distmat, [1], g_pids, [1], g_cams, max_rank=4)
    assert standard.cmc.tolist() == [0.0, 1.0, 1.0, 1.0]
    assert standard.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    trapezoid = evaluate_ranking(distmat, [1], g_pids, [1], g_cams, max_rank=4, ap="trapezoid")
    # Recall steps of 1/2 at ranks 2 and 4: (1/2 + 0/1)/2 and (2/4 + 1/3)/2.
    assert trapezoid.mAP == pytest.approx(0.5 * (0.5 + 0.0) / 2 + 0.5 * (0.5 + 1 / 3) / 2)
    assert standard.rank1 == 0.0 and standard.rank(2) == 1.0


def test_torch_inputs_and_errors():
    distmat = torch.tensor([[1.0, 0.0]])
    result = evaluate_ranking(
        distmat,
        torch.tensor([3]),
        torch.tensor([3, 4]),
        torch.tensor([1]),
        torch.tensor([2, 2]),
        max_rank=2,
    )
    assert result.cmc.tolist() == [0.0, 1.0] and result.mAP == 0.5
    with pytest.raises(ValueError, match="NaN"):
        evaluate_ranking(torch.tensor([[np.nan, 0.0]]), [3], [3, 4], [1], [2, 2])
    with pytest.raises(ValueError, match="no query"):
        evaluate_ranking(distmat, [5], [3, 4], [1], [2, 2])
    with pytest.raises(ValueError, match="does not match"):
        evaluate_ranking(distmat, [3, 4], [3, 4], [1], [2, 2])
    with pytest.raises(ValueError, match="rank 10"):
        _ = result.rank10


def test_compute_distance_matches_explicit_differences():
    gen = torch.Generator().manual_seed(0)
    qf, gf = (
        torch.randn(5, 4, generator=gen, dtype=torch.float64),
        torch.randn(7, 4, generator=gen, dtype=torch.float64),
    )
    a = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    matrix = a @ a.T
    diff = qf[:, None, :] - gf[None, :, :]  # [Q, G, D]
    torch.testing.assert_close(compute_distance(qf, gf), (diff**2).sum(-1))
    torch.testing.assert_close(
        compute_distance(qf, gf, matrix=matrix), torch.einsum("qgd,de,qge->qg", diff, matrix, diff)
    )
    cosine = 1 - torch.nn.functional.cosine_similarity(qf[:, None], gf[None], dim=-1)
    torch.testing.assert_close(compute_distance(qf, gf, metric="cosine"), cosine)
