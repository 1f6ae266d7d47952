"""Metric learning on Re-ID features: Euclidean, XQDA and KISSME.

All three share one interface, ``fit(features, labels)`` then ``distance(qf, gf)``, so the
evaluation code does not branch on the method. Fitting works in float64 (covariances of 2,048-d
features lose precision in float32); distances come back in the features' dtype.

Both learned metrics need the covariance of *pairwise differences* of same-identity (intra) and
different-identity (extra) pairs. Market-1501 training has 12,936 images: ~2.2e5 intra and 1.7e8
extra pairs, far too many to form. Over all ordered pairs the sums have closed forms in class
statistics (n_c = class size, s_c = class sum, X'X = sum of outer products):

    sum_{i,j in c} (x_i - x_j)(x_i - x_j)' = 2 n_c sum_{i in c} x_i x_i' - 2 s_c s_c'
    sum_{i,j}      (x_i - x_j)(x_i - x_j)' = 2 N X'X - 2 s s'

and the extra-personal sum is their difference (Liao et al. 2015 compute theirs the same way).
"""

from __future__ import annotations

from typing import Literal, Protocol

import torch

from reid.evaluate import compute_distance


class MetricLearner(Protocol):
    """A distance learned from labelled training features."""

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> MetricLearner: ...

    def distance(self, qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor: ...


def difference_covariances(
    features: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Covariances of intra- and extra-personal feature differences over all ordered pairs.

    Args:
        features: float [N, D]; labels: int [N] identity of each row (any integer values).

    Returns:
        (sigma_intra, sigma_extra): float64 [D, D], the mean of (x_i - x_j)(x_i - x_j)' over
        ordered pairs i != j with equal / different labels. Differences have zero mean by
        symmetry, so these are their covariances.

    Raises:
        ValueError: when there is no intra-personal pair (every identity has one image) or no
            extra-personal pair (a single identity).
    """
    x = features.to(torch.float64)
    # Differences ignore a common shift; centring avoids cancellation in 2 N X'X - 2 s s'.
    x = x - x.mean(0, keepdim=True)
    _, inverse, counts = torch.unique(labels.cpu(), return_inverse=True, return_counts=True)
    inverse, counts = inverse.to(x.device), counts.to(x.device, torch.float64)
    class_sums = torch.zeros(len(counts), x.shape[1], dtype=torch.float64, device=x.device)
    class_sums.index_add_(0, inverse, x)  # [C, D]
    n = float(x.shape[0])
    pairs_intra = float((counts * counts).sum()) - n
    pairs_extra = n * n - float((counts * counts).sum())
    if pairs_intra <= 0 or pairs_extra <= 0:
        raise ValueError("need at least two images of one identity and two identities")
    weighted = x * counts[inverse][:, None]  # row i scaled by the size of its class
    intra = 2.0 * (x.T @ weighted) - 2.0 * (class_sums.T @ class_sums)
    total = 2.0 * n * (x.T @ x) - 2.0 * torch.outer(x.sum(0), x.sum(0))
    return intra / pairs_intra, (total - intra) / pairs_extra


def _symmetric(matrix: torch.Tensor) -> torch.Tensor:
    return (matrix + matrix.T) / 2.0


class Euclidean:
    """Squared Euclidean distance: the IDE baseline's metric; ``fit`` learns nothing."""

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> Euclidean:
        return self

    def distance(self, qf: torch.Tensor, gf: torch.Tensor) -> torch.Tensor:
        """float [Q, D], [G, D] -> [Q, G] squared Euclidean distances."""
        return compute_distance(qf, gf)


class XQDA:
    """Cross-view Quadratic Discriminant Analysis (Liao et al., CVPR 2015, section 4).

    Finds the subspace W maximising the ratio of extra- to intra-personal variance (generalized
    eigenproblem Sigma_E w = lambda Sigma_I w), keeps directions with lambda > 1 (more spread
    across identities than within), and learns M = inv(W' Sigma_I W) - inv(W' Sigma_E W) there;
    the distance is (x - y)' W M W' (x - y).

    Args:
        reg: ridge added to Sigma_I's diagonal (the paper's 0.001) so it is invertible.
        max_dim: optional cap on the subspace dimension (None: every lambda > 1).

    Attributes (after ``fit``):
        projection: float64 [D, r] W; metric: float64 [r, r] M; eigenvalues: float64 [r],
        descending, all > 1 (one direction is kept even when none exceeds 1).
    """

    def __init__(self, *, reg: float = 1e-3, max_dim: int | None = None) -> None:
        self.reg = reg
        self.max_dim = max_dim
        self.projection: torch.Tensor | None = None
        self.metric: torch.Tensor | None = None
        self.eigenvalues: torch.Tensor | None = None

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> XQDA:
        """features float [N, D], labels int [N]."""
        sigma_i, sigma_e = difference_covariances(features, labels)
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
    clipping negative eigenvalues (paper section 3). Usually run after PCA (the paper reduces to
    a few dozen dimensions); the pairs are all same/different-label pairs, in closed form.

    Args:
        pca_dim: PCA dimension fitted on the training features first (None: no PCA).
        reg: ridge on Sigma_S relative to its mean eigenvalue, so it is invertible when the
            within-identity differences do not span every dimension.

    Attributes (after ``fit``): mean float64 [D]; projection float64 [D, p] (identity without
    PCA); metric float64 [p, p], symmetric PSD.
    """

    def __init__(self, *, pca_dim: int | None = None, reg: float = 1e-6) -> None:
        self.pca_dim = pca_dim
        self.reg = reg
        self.mean: torch.Tensor | None = None
        self.projection: torch.Tensor | None = None
        self.metric: torch.Tensor | None = None

    def fit(self, features: torch.Tensor, labels: torch.Tensor) -> KISSME:
        """features float [N, D], labels int [N]."""
        x = features.to(torch.float64)
        self.mean = x.mean(0)
        x = x - self.mean
        if self.pca_dim is not None and self.pca_dim < x.shape[1]:
            # Right singular vectors = principal axes, largest variance first.
            _, _, vh = torch.linalg.svd(x, full_matrices=False)
            self.projection = vh[: self.pca_dim].T.contiguous()
        else:
            self.projection = torch.eye(x.shape[1], dtype=torch.float64, device=x.device)
        sigma_s, sigma_d = difference_covariances(x @ self.projection, labels)
        ridge = self.reg * float(torch.diagonal(sigma_s).mean())
        sigma_s = sigma_s + ridge * torch.eye(len(sigma_s), dtype=x.dtype, device=x.device)
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
        raise ValueError(f"unknown metric {name!r}; choose from {sorted(learners)}")
    return learners[name](**options)
