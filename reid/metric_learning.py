"""Metric learning on Re-ID features: Euclidean, XQDA and KISSME, trained as the IDE baseline.

All three share one interface, ``fit(features, labels, cameras)`` then ``distance(qf, gf)``, so
the evaluation code does not branch on the method. Fitting works in float64 (covariances of
2,048-d features lose precision in float32); distances come back in the features' dtype.

Training follows the IDE-baseline repository (zhunzhong07/IDE-baseline-Market-1501,
``baseline_evaluation_IDE.m``): features L2-normalised first (the Re-ID stage does it for all
three metrics); XQDA on cross-camera positive pairs (``gen_train_sample_xqda.m``); KISSME after
PCA to 200 dimensions on every cross-camera positive pair plus as many random cross-camera
negatives (``gen_train_sample_kissme.m``). The draws come from a numpy Generator seeded by the
learner's ``seed``, never from global random state, so a fit is a pure function of its inputs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol

import numpy as np
import torch

from foundation.errors import SettingsError
from reid.evaluate import compute_distance

METRIC_NAMES = ("euclidean", "xqda", "kissme")
# KISSME's PCA size in the IDE baseline (``numCoeffs``).
KISSME_PCA_DIM = 200


class UnfittableMetricError(SettingsError):
    """A metric that cannot be fitted on the training features it would get."""


class MetricLearner(Protocol):
    """A distance learned from labelled training features."""

    def fit(
        self, features: torch.Tensor, labels: torch.Tensor, cameras: torch.Tensor
    ) -> MetricLearner: ...

    def distance(self, qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor: ...


def xqda_training_pairs(
    labels: np.ndarray, cameras: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """XQDA's two training sets, as ``gen_train_sample_xqda.m``.

    For each identity (ascending label) its images are shuffled and split into two halves of
    ``k // 2`` (an odd image out is left over); the i-th image of the first half pairs with the
    i-th of the second, and pairs taken by one camera are dropped.

    Args:
        labels: int [N] identity of each row; cameras: int [N] camera of each row.
        rng: the only source of randomness.
    Returns:
        (first, second): int64 [P] rows; ``labels[first] == labels[second]`` and
        ``cameras[first] != cameras[second]`` pairwise, no row used twice.
    """
    first, second = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        half = len(rows) // 2
        shuffled = rows[rng.permutation(len(rows))]
        a, b = shuffled[:half], shuffled[half : 2 * half]
        keep = cameras[a] != cameras[b]
        first.append(a[keep])
        second.append(b[keep])
    return np.concatenate(first).astype(np.int64), np.concatenate(second).astype(np.int64)


def kissme_training_pairs(
    labels: np.ndarray,
    cameras: np.ndarray,
    rng: np.random.Generator,
    *,
    draws: int = 150_000,
    max_rounds: int = 100,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """KISSME's similar and dissimilar pairs, as ``gen_train_sample_kissme.m``.

    Positives: every unordered pair (i < j) of images of one identity taken by different
    cameras, identities ascending. Negatives: as many pairs (i, j) drawn uniformly with
    replacement, ``draws`` at a time, keeping in draw order those of different identities and
    different cameras (the reference draws 150,000 once).

    Args:
        labels: int [N]; cameras: int [N]; rng: the only source of randomness.
    Returns:
        (first, second): int64 [2P] rows, ``same``: bool [2P]; P positives, then P negatives.
    Raises:
        ValueError: no cross-camera positive pair, or too few negatives after ``max_rounds``.
    """
    first, second = [], []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        i, j = np.triu_indices(len(rows), k=1)  # nchoosek order: (1,2), (1,3), ..., (2,3)
        first.append(rows[i])
        second.append(rows[j])
    pos_a, pos_b = np.concatenate(first), np.concatenate(second)
    cross = cameras[pos_a] != cameras[pos_b]
    pos_a, pos_b = pos_a[cross], pos_b[cross]
    count = len(pos_a)
    if count == 0:
        raise ValueError("KISSME: no identity has two images from different cameras")
    negatives, found = [], 0
    for _ in range(max_rounds):
        drawn = rng.integers(0, len(labels), size=(draws, 2))
        a, b = drawn[:, 0], drawn[:, 1]
        ok = (labels[a] != labels[b]) & (cameras[a] != cameras[b])
        negatives.append(drawn[ok])
        found += int(ok.sum())
        if found >= count:
            break
    if found < count:
        raise ValueError(f"KISSME: found {found} cross-camera negative pairs, need {count}")
    neg = np.concatenate(negatives)[:count]
    same = np.concatenate([np.ones(count, bool), np.zeros(count, bool)])
    rows_a = np.concatenate([pos_a, neg[:, 0]]).astype(np.int64)
    rows_b = np.concatenate([pos_b, neg[:, 1]]).astype(np.int64)
    return rows_a, rows_b, same


def cross_set_covariances(
    first: torch.Tensor,
    second: torch.Tensor,
    first_labels: torch.Tensor,
    second_labels: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (x - y)(x - y)' over all (x in ``first``, y in ``second``), split by label.

    This is XQDA.m's intra/extra-personal covariance of its two sets (before the ridge), in
    closed form from class statistics instead of the n * m pairs:
    sum over same-label pairs = sum_i m_c(i) x_i x_i' + sum_j n_c(j) y_j y_j' - sum_c (Sx_c Sy_c'
    + Sy_c Sx_c'), and over all pairs = m X'X + n Y'Y - sx sy' - sy sx'.

    Args:
        first: float [n, D], second: float [m, D]; first_labels: int [n], second_labels: int [m].
    Returns:
        (sigma_intra, sigma_extra): float64 [D, D].
    Raises:
        ValueError: no same-label or no different-label pair between the sets.
    """
    x, y = first.to(torch.float64), second.to(torch.float64)
    shift = torch.cat([x, y]).mean(0, keepdim=True)  # differences ignore it; less cancellation
    x, y = x - shift, y - shift
    classes, inverse = torch.unique(
        torch.cat([first_labels, second_labels]).cpu(), return_inverse=True
    )
    inv_x, inv_y = inverse[: len(x)].to(x.device), inverse[len(x) :].to(x.device)
    n_c = torch.bincount(inv_x, minlength=len(classes)).to(x)  # [C] class sizes in first
    m_c = torch.bincount(inv_y, minlength=len(classes)).to(x)
    sum_x = torch.zeros(len(classes), x.shape[1], dtype=x.dtype, device=x.device)
    sum_y = torch.zeros_like(sum_x)
    sum_x.index_add_(0, inv_x, x)  # [C, D]
    sum_y.index_add_(0, inv_y, y)
    pairs_intra = float((n_c * m_c).sum())
    pairs_extra = len(x) * len(y) - pairs_intra
    if pairs_intra <= 0 or pairs_extra <= 0:
        raise ValueError("need same-identity and different-identity pairs between the two sets")
    cross = sum_x.T @ sum_y
    intra = (x * m_c[inv_x, None]).T @ x + (y * n_c[inv_y, None]).T @ y - cross - cross.T
    total_cross = torch.outer(x.sum(0), y.sum(0))
    total = len(y) * (x.T @ x) + len(x) * (y.T @ y) - total_cross - total_cross.T
    return intra / pairs_intra, (total - intra) / pairs_extra


def pair_scatter(
    x: torch.Tensor, first: np.ndarray, second: np.ndarray, *, chunk: int = 1 << 16
) -> torch.Tensor:
    """Mean (x_a - x_b)(x_a - x_b)' over the pairs (first[p], second[p]) (KISSME's eq. 12-13).

    Args:
        x: float64 [N, D]; first, second: int [P] rows, P >= 1.
    Returns:
        float64 [D, D]; chunks of ``chunk`` pairs bound the memory.
    """
    scatter = torch.zeros(x.shape[1], x.shape[1], dtype=x.dtype, device=x.device)
    for start in range(0, len(first), chunk):
        a = torch.from_numpy(first[start : start + chunk]).to(x.device)
        b = torch.from_numpy(second[start : start + chunk]).to(x.device)
        diff = x[a] - x[b]  # [chunk, D]
        scatter += diff.T @ diff
    return scatter / len(first)


def _symmetric(matrix: torch.Tensor) -> torch.Tensor:
    return (matrix + matrix.T) / 2.0


def _numpy(values: torch.Tensor) -> np.ndarray:
    return values.cpu().numpy().astype(np.int64)


class Euclidean:
    """Squared Euclidean distance: the IDE baseline's metric; ``fit`` learns nothing."""

    def fit(self, features: torch.Tensor, labels: torch.Tensor, cameras: torch.Tensor) -> Euclidean:
        return self

    def distance(self, qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor:
        """float [Q, D], [G, D] -> [Q, G] squared Euclidean distances."""
        return compute_distance(qf, gf)


class XQDA:
    """Cross-view Quadratic Discriminant Analysis (Liao et al., CVPR 2015, section 4).

    Trained on the two sets of :func:`xqda_training_pairs`; their covariances
    (:func:`cross_set_covariances`) give the subspace W maximising the ratio of extra- to
    intra-personal variance (generalized eigenproblem Sigma_E w = lambda Sigma_I w), keeping
    directions with lambda > 1, and M = inv(W' Sigma_I W) - inv(W' Sigma_E W) there; the
    distance is (x - y)' W M W' (x - y).

    Args:
        reg: ridge added to Sigma_I's diagonal (the paper's 0.001) so it is invertible.
        max_dim: optional cap on the subspace dimension (None: every lambda > 1).
        seed: seeds the pair draw.

    Attributes (after ``fit``):
        projection: float64 [D, r] W; metric: float64 [r, r] M; eigenvalues: float64 [r],
        descending, all > 1 (one direction is kept even when none exceeds 1).
    """

    def __init__(self, *, reg: float = 1e-3, max_dim: int | None = None, seed: int = 0) -> None:
        self.reg = reg
        self.max_dim = max_dim
        self.seed = seed
        self.projection: torch.Tensor | None = None
        self.metric: torch.Tensor | None = None
        self.eigenvalues: torch.Tensor | None = None

    def fit(self, features: torch.Tensor, labels: torch.Tensor, cameras: torch.Tensor) -> XQDA:
        """features float [N, D], labels int [N], cameras int [N]."""
        rng = np.random.default_rng(self.seed)
        first, second = xqda_training_pairs(_numpy(labels), _numpy(cameras), rng)
        if len(first) == 0:
            raise ValueError("XQDA: no identity has two images from different cameras")
        a, b = torch.from_numpy(first), torch.from_numpy(second)
        sigma_i, sigma_e = cross_set_covariances(
            features[a.to(features.device)], features[b.to(features.device)], labels[a], labels[b]
        )
        sigma_i = sigma_i + self.reg * torch.eye(
            len(sigma_i), dtype=sigma_i.dtype, device=sigma_i.device
        )
        # Generalized symmetric eigenproblem via Cholesky: with Sigma_I = L L', the eigenvectors
        # V of L^-1 Sigma_E L^-T give W = L^-T V, normalised so that W' Sigma_I W = I.
        chol = torch.linalg.cholesky(sigma_i)
        half = torch.linalg.solve_triangular(chol, sigma_e, upper=False)  # L^-1 Sigma_E
        reduced = torch.linalg.solve_triangular(chol, half.T, upper=False)  # L^-1 Sigma_E L^-T
        values, vectors = torch.linalg.eigh(_symmetric(reduced))
        values, vectors = values.flip(0), vectors.flip(1)  # descending
        keep = max(1, int((values > 1.0).sum()))
        if self.max_dim is not None:
            keep = min(keep, self.max_dim)
        w = torch.linalg.solve_triangular(chol.T, vectors[:, :keep], upper=True)  # [D, r]
        inner_i, inner_e = w.T @ sigma_i @ w, w.T @ sigma_e @ w
        self.metric = _symmetric(torch.linalg.inv(inner_i) - torch.linalg.inv(inner_e))
        self.projection, self.eigenvalues = w, values[:keep]
        return self

    def distance(self, qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor:
        """float [Q, D], [G, D] -> [Q, G] squared Mahalanobis distances in the XQDA subspace."""
        if self.projection is None or self.metric is None:
            raise RuntimeError("XQDA.distance called before fit")
        w = self.projection.to(qf)
        return compute_distance(qf @ w, gf @ w, matrix=self.metric.to(qf))


class KISSME:
    """KISSME, "keep it simple and straightforward" (Koestinger et al., CVPR 2012).

    A likelihood-ratio test between zero-mean Gaussians of similar and dissimilar pair
    differences gives M = inv(Sigma_S) - inv(Sigma_D), re-projected onto the PSD cone by
    clipping negative eigenvalues (paper section 3). Fitted after PCA on the pairs of
    :func:`kissme_training_pairs`.

    Args:
        pca_dim: PCA dimension fitted on the training features first (IDE baseline
            ``numCoeffs = 200``; None: no PCA). At most min(N, D) components exist.
        reg: ridge on Sigma_S relative to its mean eigenvalue, so it is invertible when the
            within-identity differences do not span every dimension.
        seed: seeds the negative-pair draw.

    Attributes (after ``fit``): mean float64 [D]; projection float64 [D, p] (identity without
    PCA); metric float64 [p, p], symmetric PSD.
    """

    def __init__(
        self, *, pca_dim: int | None = KISSME_PCA_DIM, reg: float = 1e-6, seed: int = 0
    ) -> None:
        self.pca_dim = pca_dim
        self.reg = reg
        self.seed = seed
        self.mean: torch.Tensor | None = None
        self.projection: torch.Tensor | None = None
        self.metric: torch.Tensor | None = None

    def fit(self, features: torch.Tensor, labels: torch.Tensor, cameras: torch.Tensor) -> KISSME:
        """features float [N, D], labels int [N], cameras int [N]."""
        rng = np.random.default_rng(self.seed)
        first, second, same = kissme_training_pairs(_numpy(labels), _numpy(cameras), rng)
        x = features.to(torch.float64)
        self.mean = x.mean(0)
        x = x - self.mean
        if self.pca_dim is not None and self.pca_dim < x.shape[1]:
            # Right singular vectors = principal axes, largest variance first.
            _, _, vh = torch.linalg.svd(x, full_matrices=False)
            self.projection = vh[: self.pca_dim].T.contiguous()
        else:
            self.projection = torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
        z = x @ self.projection  # [N, p]
        sigma_s = pair_scatter(z, first[same], second[same])
        sigma_d = pair_scatter(z, first[~same], second[~same])
        ridge = self.reg * float(torch.diagonal(sigma_s).mean())
        sigma_s = sigma_s + ridge * torch.eye(len(sigma_s), dtype=z.dtype, device=z.device)
        metric = _symmetric(torch.linalg.inv(sigma_s) - torch.linalg.inv(sigma_d))
        values, vectors = torch.linalg.eigh(metric)
        self.metric = _symmetric((vectors * values.clamp(min=0.0)) @ vectors.T)
        return self

    def distance(self, qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor:
        """float [Q, D], [G, D] -> [Q, G] squared Mahalanobis distances (after the PCA)."""
        if self.mean is None or self.projection is None or self.metric is None:
            raise RuntimeError("KISSME.distance called before fit")
        p = self.projection.to(qf)
        mean = self.mean.to(qf)
        return compute_distance((qf - mean) @ p, (gf - mean) @ p, matrix=self.metric.to(qf))


def build_metric(
    name: Literal["euclidean", "xqda", "kissme"], **options: float | int | None
) -> MetricLearner:
    """A metric learner by name; ``options`` go to its constructor (e.g. ``pca_dim=128``)."""
    learners: dict[str, type] = {"euclidean": Euclidean, "xqda": XQDA, "kissme": KISSME}
    if name not in learners:
        raise ValueError(f"unknown metric {name!r}; choose from {list(METRIC_NAMES)}")
    return learners[name](**options)


def kissme_max_dim(labels: np.ndarray, cameras: np.ndarray, *, seed: int = 0) -> int:
    """The largest space KISSME can be fitted in on these training rows (0: none).

    Sigma_D, the scatter of the dissimilar pairs' differences x_a - x_b, must be invertible
    (Sigma_S has a ridge; Sigma_D none). Seen as edges of a graph on the rows, the differences
    of a connected component of k rows span k - 1 dimensions (a spanning tree's edges are
    independent, any other edge is a sum of tree edges), so their span has dimension
    (rows touched) - (components) for features in general position, and no PCA size above
    it can work. The pairs are :func:`kissme_training_pairs`'s with the same seed, so they
    are the fit's own.

    Args:
        labels: int [N] identity of each training feature; cameras: int [N].
        seed: the learner's seed.
    Returns:
        The bound on the PCA size (or on the feature dimension without PCA); 0 when no pairs
        can be drawn at all.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    try:
        first, second, same = kissme_training_pairs(labels, cameras, np.random.default_rng(seed))
    except ValueError:
        return 0
    a, b = first[~same], second[~same]
    touched, edges = np.unique(np.concatenate([a, b]), return_inverse=True)
    graph = coo_matrix(
        (np.ones(len(a)), (edges[: len(a)], edges[len(a) :])), shape=(len(touched),) * 2
    )
    components, _ = connected_components(graph, directed=False)
    return int(len(touched) - components)


def check_fittable(
    metrics: Sequence[str],
    options: Mapping[str, Mapping[str, Any]],
    *,
    labels: np.ndarray,
    cameras: np.ndarray,
    feature_dim: int,
) -> None:
    """Refuse, before any training, a metric that cannot be fitted on these training rows.

    Args:
        metrics: names of :func:`build_metric`; options: per-metric constructor options, as
            given to it (``{"kissme": {"pca_dim": 64}}``).
        labels: int [N] identities of the features the metrics are fitted on; cameras: int [N].
        feature_dim: D, the dimension of those features.
    Raises:
        UnfittableMetricError: XQDA without two identities seen by two cameras in its pairs;
            KISSME without cross-camera pairs, or with a PCA size (or D) above
            :func:`kissme_max_dim`, naming the sizes that work.
        ValueError: an unknown metric name.
    """
    labels, cameras = np.asarray(labels, np.int64), np.asarray(cameras, np.int64)
    for name in metrics:
        if name not in METRIC_NAMES:
            raise ValueError(f"unknown metric {name!r}; choose from {list(METRIC_NAMES)}")
        chosen = options.get(name, {})
        others = ",".join(m for m in metrics if m != name) or "euclidean"
        if name == "xqda":
            rng = np.random.default_rng(int(chosen.get("seed", 0)))
            first, _ = xqda_training_pairs(labels, cameras, rng)
            if len(np.unique(labels[first])) < 2:
                raise UnfittableMetricError(
                    f"XQDA cannot be fitted on {len(labels)} training images of "
                    f"{len(np.unique(labels))} identities: its pairs need two identities "
                    f"with images from two cameras; leave it out (--metrics {others})"
                )
        if name == "kissme":
            limit = kissme_max_dim(labels, cameras, seed=int(chosen.get("seed", 0)))
            pca = chosen.get("pca_dim", KISSME_PCA_DIM)
            size = feature_dim if pca is None or pca >= feature_dim else min(pca, len(labels))
            if size > min(limit, feature_dim):
                works = (
                    f"use --kissme-pca {min(limit, feature_dim)} or less, or"
                    if limit >= 1
                    else "no PCA size works here (no identity has images from two cameras);"
                )
                raise UnfittableMetricError(
                    f"KISSME cannot be fitted in {size} dimensions (PCA size {pca}) on "
                    f"{len(labels)} training images of {len(np.unique(labels))} identities: "
                    f"its dissimilar-pair covariance has rank at most {limit}; {works} leave "
                    f"it out (--metrics {others})"
                )
