"""Image-quality metrics of the paper's table 1: FID, LPIPS, mask-LPIPS; and pixel metrics.

Pure functions of tensors (images ``[B, 3, H, W]`` float in [-1, 1], the generator's range).
The protocol is GFLA's evaluation script (``script/metrics.py``), which produced the comparison
numbers:

* FID: features of the generated test images against those of the whole training set, from the
  Inception variant named in every result (:mod:`san_model.fid_inception`).
* LPIPS: ``lpips`` package, AlexNet trunk, version 0.1, images in [-1, 1] at native size,
  averaged over the test pairs.
* mask-LPIPS: LPIPS after multiplying both images by a person mask of the target. GFLA draws that
  mask from the target's keypoints; we use the target's binary segmentation mask (a deviation).
  Like GFLA we multiply in [-1, 1] space, so the background becomes 0 (mid grey), not black.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import lpips
import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torchvision.models import AlexNet_Weights

from foundation.weights import WeightsFile, WrongNetworkError, load_state_dict, resolve_weights
from san_model.fid_inception import (
    FEATURE_DIM,
    FIDVariant,
    InceptionFeatures,
    build_fid_extractor,
)

ALEXNET_WEIGHTS = WeightsFile(
    file_name="alexnet-owt-7be5be79.pth",
    url=AlexNet_Weights.IMAGENET1K_V1.url,
    sha256_prefix="7be5be79",
)


# ----------------------------------------------------------------------------- FID


@dataclass(frozen=True)
class FeatureStatistics:
    """Gaussian summary of a set's Inception features.

    Attributes:
        mu: [D] float64 mean.
        sigma: [D, D] float64 covariance (unbiased, divisor n - 1, as ``np.cov``).
        n: number of images summarised.
        variant: the Inception variant that produced the features.
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    variant: FIDVariant


@dataclass(frozen=True)
class FIDResult:
    """A FID value and what it was computed from.

    Attributes:
        value: the Frechet distance (>= 0 up to rounding).
        variant: the Inception variant; values of different variants are not comparable.
        n_real: images in the real set (the training set in the paper's protocol).
        n_fake: generated images.
    """

    value: float
    variant: FIDVariant
    n_real: int
    n_fake: int


def frechet_distance(
    mu1: np.ndarray | torch.Tensor,
    sigma1: np.ndarray | torch.Tensor,
    mu2: np.ndarray | torch.Tensor,
    sigma2: np.ndarray | torch.Tensor,
    *,
    eps: float = 1e-6,
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``||mu1 - mu2||^2 + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^(1/2))`` (Heusel et al. 2017).
    When the product is near-singular (a rank-deficient covariance from few samples) and
    ``sqrtm`` returns non-finite values, ``eps * I`` is added to both covariances, as in the
    reference TTUR/pytorch-fid code.

    Args:
        mu1, mu2: [D] means.
        sigma1, sigma2: [D, D] covariances (symmetric positive semi-definite).
        eps: diagonal offset used only for a near-singular product.

    Raises:
        ValueError: shapes disagree, or the square root has a large imaginary part (the inputs
            are not covariances).
    """
    m1, m2 = (np.atleast_1d(_as_float64(m)) for m in (mu1, mu2))
    s1, s2 = (np.atleast_2d(_as_float64(s)) for s in (sigma1, sigma2))
    if m1.shape != m2.shape or s1.shape != s2.shape or s1.shape != (m1.size, m1.size):
        raise ValueError(
            f"shape mismatch: mu {m1.shape} / {m2.shape}, sigma {s1.shape} / {s2.shape}"
        )
    root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.isfinite(root).all():
        offset = np.eye(m1.size) * eps
        root = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(root):
        if not np.allclose(np.diagonal(root).imag, 0.0, atol=1e-3):
            raise ValueError(
                f"sqrtm(sigma1 @ sigma2) has imaginary part up to {np.abs(root.imag).max():.3g}"
            )
        root = root.real
    diff = m1 - m2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root))


def _as_float64(array: np.ndarray | torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of an array or tensor (any device)."""
    if isinstance(array, torch.Tensor):
        return array.detach().to("cpu", torch.float64).numpy()
    return np.asarray(array, dtype=np.float64)


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of features held in memory.

    Args:
        features: [N, D] float, N >= 2.

    Returns:
        mu [D] and sigma [D, D], float64 (``np.mean(axis=0)``, ``np.cov(rowvar=False)``).
    """
    values = _as_float64(features)
    return values.mean(axis=0), np.cov(values, rowvar=False)


class FeatureAccumulator:
    """Streaming mean and covariance of features, so a large set (12,936 Market training images)
    never sits in memory as one feature matrix.

    Batches are merged with Chan et al.'s pairwise update (mean and centred scatter matrix),
    in float64 on the device of the first batch; the result equals :func:`feature_statistics`
    on the concatenated features up to float64 rounding.

    Args:
        variant: the Inception variant producing the features (carried into the result).
        dim: feature width.
    """

    def __init__(self, *, variant: FIDVariant, dim: int = FEATURE_DIM) -> None:
        self.variant: FIDVariant = variant
        self.dim = dim
        self.count = 0
        self._mean: torch.Tensor | None = None  # [D] float64
        self._scatter: torch.Tensor | None = None  # [D, D] float64, sum of centred outer products

    def update(self, features: torch.Tensor) -> None:
        """Add a batch: ``features`` [B, D] float (B >= 1)."""
        if features.ndim != 2 or features.shape[0] == 0 or features.shape[1] != self.dim:
            raise ValueError(f"expected features [B, {self.dim}], got {tuple(features.shape)}")
        batch = features.detach().to(torch.float64)
        n_batch = batch.shape[0]
        batch_mean = batch.mean(dim=0)
        centred = batch - batch_mean
        batch_scatter = centred.T @ centred
        if self._mean is None or self._scatter is None:
            self._mean, self._scatter = batch_mean, batch_scatter
        else:
            total = self.count + n_batch
            delta = batch_mean.to(self._mean.device) - self._mean
            self._scatter += batch_scatter.to(self._scatter.device) + torch.outer(delta, delta) * (
                self.count * n_batch / total
            )
            self._mean += delta * (n_batch / total)
        self.count += n_batch

    def statistics(self) -> FeatureStatistics:
        """The summary so far (needs at least two features)."""
        if self._mean is None or self._scatter is None or self.count < 2:
            raise ValueError(f"need at least 2 features for a covariance, have {self.count}")
        return FeatureStatistics(
            mu=_as_float64(self._mean),
            sigma=_as_float64(self._scatter / (self.count - 1)),
            n=self.count,
            variant=self.variant,
        )


def fid_from_statistics(real: FeatureStatistics, fake: FeatureStatistics) -> FIDResult:
    """FID between a real and a generated set summarised by the same Inception variant.

    Raises:
        ValueError: the two summaries come from different variants.
    """
    if real.variant != fake.variant:
        raise ValueError(f"FID across variants: real {real.variant!r}, fake {fake.variant!r}")
    value = frechet_distance(real.mu, real.sigma, fake.mu, fake.sigma)
    return FIDResult(value=value, variant=real.variant, n_real=real.n, n_fake=fake.n)


# ----------------------------------------------------------------------------- LPIPS


def build_lpips(
    *, pretrained: bool = True, weights_path: str | Path | None = None, download: bool = True
) -> lpips.LPIPS:
    """LPIPS v0.1 with the AlexNet trunk, frozen, in eval mode, on the CPU.

    The calibrated linear heads always come from the ``lpips`` package (it ships them). The
    AlexNet trunk is loaded here from torchvision's ImageNet file through
    :func:`foundation.weights.resolve_weights`, so a missing file gives a clear error
    instead of the package's own download attempt.

    Args:
        pretrained: load the ImageNet AlexNet trunk; ``False`` keeps a randomly initialised
            trunk (seeded, identical across calls) for tests and the declared offline mode,
            whose LPIPS values mean nothing outside that mode.
        weights_path: ``alexnet-owt-7be5be79.pth`` or a folder holding it; default: the weights
            folder, then torch's hub cache.
        download: fetch the file from its official URL when it is nowhere on disk.

    Raises:
        MissingWeightsError: ``pretrained`` and the AlexNet file is missing.
    """
    path = (
        resolve_weights(ALEXNET_WEIGHTS, path=weights_path, download=download)
        if pretrained
        else None
    )
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        torch.manual_seed(0)
        # lpips calls torchvision's deprecated ``alexnet(pretrained=False)``.
        warnings.simplefilter("ignore", UserWarning)
        net = lpips.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False)
    if path is not None:
        official = load_state_dict(path)
        # lpips splits ``features`` into slice1..slice5 but keeps torchvision's layer indices:
        # ``slice2.3.weight`` is ``features.3.weight``.
        trunk: dict[str, torch.Tensor] = {}
        for name in net.net.state_dict():
            key = "features." + name.split(".", 1)[1]
            if key not in official:
                raise WrongNetworkError(
                    f"weights file {path} is not an AlexNet (ImageNet) file: it has no {key}; "
                    "give the official file of this network"
                )
            trunk[name] = official[key]
        net.net.load_state_dict(trunk, strict=True)
    return net.requires_grad_(False).eval()


@torch.no_grad()
def lpips_distance(net: lpips.LPIPS, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """LPIPS distance per image pair.

    Args:
        net: from :func:`build_lpips`, on the images' device.
        a, b: [B, 3, H, W] float in [-1, 1], native size (no resizing).

    Returns:
        [B] float32 distances (0 for identical images).
    """
    return net(a, b).flatten()  # [B, 1, 1, 1] -> [B]


def masked_lpips(
    net: lpips.LPIPS, a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor
) -> torch.Tensor:
    """LPIPS after masking both images with the target person's mask (paper's mask-LPIPS).

    Multiplication happens in [-1, 1] space, as GFLA's ``calculate_mask_lpips`` does, so masked
    pixels become 0 (mid grey). GFLA's mask is drawn from the target keypoints; ours is the
    target's binary segmentation mask.

    Args:
        net: from :func:`build_lpips`.
        a: generated images [B, 3, H, W] float in [-1, 1].
        b: target images [B, 3, H, W] float in [-1, 1].
        mask: target person mask [B, 1, H, W] (or [B, H, W]), bool or float in {0, 1}.

    Returns:
        [B] float32 distances.
    """
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)  # [B, H, W] -> [B, 1, H, W]
    weight = mask.to(a.dtype)
    return lpips_distance(net, a * weight, b * weight)


# ----------------------------------------------------------------------------- pixel metrics


def _to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1], float32."""
    return (images.float() + 1.0) / 2.0


def l1_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference per image on the [0, 1] scale (GFLA's ``compare_l1``).

    Args:
        a, b: [B, 3, H, W] float in [-1, 1].

    Returns:
        [B] float32 in [0, 1].
    """
    return (_to_unit(a) - _to_unit(b)).abs().flatten(1).mean(dim=1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image on the [0, 1] scale (data range 1), in dB.

    Args:
        a, b: [B, 3, H, W] float in [-1, 1].

    Returns:
        [B] float32; ``inf`` for identical images.
    """
    mse = (_to_unit(a) - _to_unit(b)).pow(2).flatten(1).mean(dim=1)
    return 10.0 * torch.log10(1.0 / mse)


def _gaussian_window(size: int, sigma: float, device: torch.device) -> torch.Tensor:
    """Normalised 1-D Gaussian [size] float32."""
    offsets = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    return weights / weights.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), on the [0, 1] scale.

    Gaussian window (11, sigma 1.5), K1 = 0.01, K2 = 0.03, data range 1, population (not
    sample) local statistics, computed per channel over "valid" window positions only, then
    averaged over positions and channels.

    Args:
        a, b: [B, 3, H, W] float in [-1, 1], H and W >= ``window``.

    Returns:
        [B] float32, 1 for identical images.
    """
    x, y = _to_unit(a), _to_unit(b)
    channels = x.shape[1]
    g = _gaussian_window(window, sigma, x.device)
    kernel = torch.outer(g, g).expand(channels, 1, window, window)  # depthwise [C, 1, k, k]

    def local_mean(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, kernel, groups=channels)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov = local_mean(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    )
    return index.flatten(1).mean(dim=1)


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference inside a person mask, on the [0, 1] scale.

    The target's background cannot be known from the generator's inputs (another camera, other
    clutter) and dominates whole-image L1 on 128x64 crops; this counts the person alone.

    Args:
        a, b: [B, 3, H, W] float in [-1, 1].
        mask: [B, 1, H, W] or [B, H, W], non-zero = person (the target's mask).

    Returns:
        [B] float32 in [0, 1]; NaN where the mask is empty.
    """
    if mask.ndim == 3:
        mask = mask.unsqueeze(1)  # [B, H, W] -> [B, 1, H, W]
    weight = (mask != 0).float()
    total = ((_to_unit(a) - _to_unit(b)).abs() * weight).flatten(1).sum(dim=1)
    return total / (3.0 * weight.flatten(1).sum(dim=1))


def part_mean_colours(
    images: torch.Tensor, parsing: torch.Tensor, num_classes: int = 20
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean colour of each parsing label's region, in grey levels.

    Args:
        images: [B, 3, H, W] float in [-1, 1].
        parsing: [B, H, W] integer labels in [0, num_classes).
        num_classes: L, the number of labels (LIP: 20).

    Returns:
        ``(colours, counts)``: colours [B, L, 3] float32 in [0, 255] (0 where a label is
        absent), counts [B, L] float32, the pixels of each label.
    """
    one_hot = F.one_hot(parsing.long(), num_classes).float()  # [B, H, W, L]
    levels = (images.float() + 1.0) * 127.5  # [B, 3, H, W] in [0, 255]
    counts = one_hot.sum(dim=(1, 2))  # [B, L]
    sums = torch.einsum("bchw,bhwl->blc", levels, one_hot)  # [B, L, 3]
    return sums / counts.clamp(min=1.0).unsqueeze(-1), counts


def part_colour_error(
    generated: torch.Tensor, target: torch.Tensor, target_parsing: torch.Tensor
) -> torch.Tensor:
    """Whether each garment's colour went to the right place (issue 11's part-colour error).

    For every body part (LIP labels 1..19) present in the target's parsing: the mean colour of
    ``generated`` inside that part's region against the mean colour of ``target`` there, as the
    mean absolute difference over R, G, B. Averaged over the target's parts, per pair.

    Args:
        generated: [B, 3, H, W] float in [-1, 1].
        target: [B, 3, H, W] float in [-1, 1], the ground truth.
        target_parsing: [B, H, W] LIP labels 0..19 of the target (0 = background, skipped).

    Returns:
        [B] float32 in grey levels [0, 255]; NaN where the target has no body part.
    """
    ours, counts = part_mean_colours(generated, target_parsing)
    truth, _ = part_mean_colours(target, target_parsing)
    present = (counts[:, 1:] > 0).float()  # [B, L - 1], background left out
    error = (ours - truth)[:, 1:].abs().mean(dim=2)  # [B, L - 1]
    return (error * present).sum(dim=1) / present.sum(dim=1)


__all__ = [
    "ALEXNET_WEIGHTS",
    "FIDResult",
    "FeatureAccumulator",
    "FIDVariant",
    "FeatureStatistics",
    "InceptionFeatures",
    "build_fid_extractor",
    "build_lpips",
    "feature_statistics",
    "fid_from_statistics",
    "frechet_distance",
    "l1_distance",
    "lpips_distance",
    "masked_l1",
    "masked_lpips",
    "part_colour_error",
    "part_mean_colours",
    "psnr",
    "ssim",
]
