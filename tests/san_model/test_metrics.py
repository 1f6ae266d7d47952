"""Tests for san_model.metrics and san_model.fid_inception (random weights, tiny CPU inputs)."""

from __future__ import annotations

import math
from pathlib import Path

import lpips
import numpy as np
import pytest
import torch
import torchvision
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

from foundation.weights import MissingWeightsError, WrongNetworkError
from san_model.fid_inception import FID_INCEPTION_SPECS, InceptionFeatures
from san_model.metrics import (
    ALEXNET_WEIGHTS,
    FeatureAccumulator,
    FeatureStatistics,
    build_fid_extractor,
    build_lpips,
    feature_statistics,
    fid_from_statistics,
    frechet_distance,
    l1_distance,
    lpips_distance,
    masked_l1,
    masked_lpips,
    part_colour_error,
    psnr,
    ssim,
)

# ----------------------------------------------------------------------------- Frechet distance


def _reference_frechet(mu1, sigma1, mu2, sigma2) -> float:
    """Independent route: Tr((s1 s2)^(1/2)) is the sum of square roots of the eigenvalues of
    s1 s2 (real and non-negative for covariances)."""
    eigenvalues = np.linalg.eigvals(sigma1 @ sigma2).real.clip(min=0.0)
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.sqrt(eigenvalues).sum())


def _gaussian_sample_stats(rng, n: int, dim: int, scale: float, shift: float):
    samples = rng.normal(size=(n, dim)) * scale + shift
    return samples.mean(axis=0), np.cov(samples, rowvar=False)


@pytest.mark.parametrize("n_samples", [200, 6], ids=["full-rank", "rank-deficient"])
def test_frechet_matches_independent_reference(n_samples):
    rng = np.random.default_rng(0)
    mu1, sigma1 = _gaussian_sample_stats(rng, n_samples, 16, 1.0, 0.0)
    mu2, sigma2 = _gaussian_sample_stats(rng, n_samples, 16, 1.5, 0.3)
    if n_samples < 16:
        assert np.linalg.matrix_rank(sigma1) < 16
    expected = _reference_frechet(mu1, sigma1, mu2, sigma2)
    assert frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-6)
    # Tensors (float32) are accepted and promoted to float64.
    as_tensors = [torch.from_numpy(v) for v in (mu1, sigma1, mu2, sigma2)]
    assert frechet_distance(*as_tensors) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("n_samples", [200, 6], ids=["full-rank", "rank-deficient"])
def test_frechet_identical_sets_is_zero(n_samples):
    mu, sigma = _gaussian_sample_stats(np.random.default_rng(1), n_samples, 16, 2.0, 1.0)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) <= 1e-6 * np.trace(sigma)


def test_frechet_diagonal_hand_computed():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    # ||mu1 - mu2||^2 = 1 + 0 + 4; per dimension s1 + s2 - 2 sqrt(s1 s2) = (sqrt s1 - sqrt s2)^2
    expected = 5.0 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 0.5) ** 2
    assert frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)) == pytest.approx(expected)


def test_frechet_rejects_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))
    # A "covariance" with a negative variance has an imaginary square root.
    with pytest.raises(ValueError, match="imaginary"):
        frechet_distance(np.zeros(2), np.diag([1.0, -4.0]), np.zeros(2), np.eye(2))


def test_accumulator_matches_in_memory_statistics():
    features = torch.randn(37, 5) * 3 + 10  # large mean: the streaming merge must stay exact
    accumulator = FeatureAccumulator(variant="tf-fid", dim=5)
    for chunk in torch.split(features, [1, 16, 7, 13]):
        accumulator.update(chunk)
    stats = accumulator.statistics()
    mu, sigma = feature_statistics(features)
    assert stats.n == 37 and stats.variant == "tf-fid"
    assert stats.mu.dtype == np.float64 and stats.sigma.shape == (5, 5)
    np.testing.assert_allclose(stats.mu, mu, rtol=1e-12)
    np.testing.assert_allclose(stats.sigma, sigma, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(mu, features.double().numpy().mean(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="features"):
        accumulator.update(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureAccumulator(variant="tf-fid", dim=5).statistics()


def test_fid_from_statistics_names_variant_and_counts():
    mu, sigma = np.zeros(3), np.eye(3)
    real = FeatureStatistics(mu=mu, sigma=sigma, n=100, variant="torchvision")
    fake = FeatureStatistics(mu=mu + 1, sigma=sigma, n=10, variant="torchvision")
    result = fid_from_statistics(real, fake)
    assert result.value == pytest.approx(3.0)
    assert (result.variant, result.n_real, result.n_fake) == ("torchvision", 100, 10)
    with pytest.raises(ValueError, match="variants"):
        fid_from_statistics(real, FeatureStatistics(mu=mu, sigma=sigma, n=10, variant="tf-fid"))


# ----------------------------------------------------------------------------- FID extractors


@pytest.fixture(scope="module")
def extractors() -> dict[str, InceptionFeatures]:
    return {v: build_fid_extractor(variant=v, pretrained=False) for v in ("torchvision", "tf-fid")}


@pytest.mark.parametrize("variant", ["torchvision", "tf-fid"])
def test_extractor_shapes_and_uint8_input(extractors, variant):
    extractor = extractors[variant]
    assert extractor.variant == variant and not extractor.training
    assert not any(p.requires_grad for p in extractor.parameters())
    pixels = torch.randint(0, 256, (2, 3, 128, 64), dtype=torch.uint8)
    with torch.no_grad():
        from_float = extractor(pixels.float() / 127.5 - 1.0)
        from_uint8 = extractor(pixels)
    assert from_float.shape == (2, 2048) and from_float.dtype == torch.float32
    assert torch.isfinite(from_float).all() and (from_float >= 0).all()
    torch.testing.assert_close(from_uint8, from_float, rtol=1e-4, atol=1e-5)


def _official_reference_keys(variant: str) -> dict[str, torch.Size]:
    """Key names and shapes of the official files, from the networks they were saved from:
    torchvision's inception_v3 (with the auxiliary classifier), and pytorch-fid's FID Inception,
    which is torchvision's Inception3(num_classes=1008, aux_logits=False) with patched blocks
    that keep torchvision's parameter names."""
    if variant == "torchvision":
        net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    else:
        net = Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    return {k: v.shape for k, v in net.state_dict().items()}


@pytest.mark.parametrize("variant", ["torchvision", "tf-fid"])
def test_extractor_keys_match_official_files(extractors, variant):
    ours = {k: v.shape for k, v in extractors[variant].net.state_dict().items()}
    assert ours == _official_reference_keys(variant)
    fc_classes = {"torchvision": 1000, "tf-fid": 1008}[variant]
    assert ours["fc.weight"] == (fc_classes, 2048)
    assert ours["Mixed_7c.branch_pool.conv.weight"] == (192, 2048, 1, 1)
    assert ours["Mixed_6e.branch7x7dbl_5.conv.weight"] == (192, 192, 1, 7)
    assert ("AuxLogits.fc.weight" in ours) == (variant == "torchvision")


@pytest.mark.parametrize("variant", ["torchvision", "tf-fid"])
def test_extractor_strict_load_round_trip(extractors, variant, tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path))
    # Shifted copy of the random weights, so a load that silently did nothing would be caught;
    # num_batches_tracked dropped as in files saved by older torch (still a strict load).
    official = {
        k: v + 1 if v.is_floating_point() else v
        for k, v in extractors[variant].net.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    torch.save(official, tmp_path / FID_INCEPTION_SPECS[variant].weights.file_name)
    loaded = build_fid_extractor(variant=variant, download=False)
    state = loaded.net.state_dict()
    for key, value in official.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0)
    unexpected = dict(official, **{"extra.weight": torch.zeros(1)})
    torch.save(unexpected, tmp_path / "bad.pth")
    with pytest.raises(WrongNetworkError, match=r"bad.pth is not a FID .*\(extra.weight"):
        build_fid_extractor(variant=variant, weights_path=tmp_path / "bad.pth")


@pytest.mark.parametrize("variant", ["torchvision", "tf-fid"])
def test_extractor_missing_weights_names_file(variant, tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    spec = FID_INCEPTION_SPECS[variant].weights
    with pytest.raises(MissingWeightsError) as caught:
        build_fid_extractor(variant=variant, download=False)
    assert spec.file_name in str(caught.value) and spec.url in str(caught.value)


def _interior_close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1])


@pytest.mark.parametrize(
    ("block", "reference", "in_channels", "pool_is_max"),
    [
        ("Mixed_5b", InceptionA(192, pool_features=32), 192, False),
        ("Mixed_6b", InceptionC(768, channels_7x7=128), 768, False),
        ("Mixed_7b", InceptionE(1280), 1280, False),
        ("Mixed_7c", InceptionE(2048), 2048, True),
    ],
)
def test_tf_fid_blocks_differ_from_torchvision_only_in_pooling(
    extractors, block, reference, in_channels, pool_is_max
):
    """Same weights: TF blocks equal torchvision's away from the border (where count_include_pad
    does not matter); Mixed_7c's max-pooled branch (last 192 channels) differs everywhere."""
    ours = getattr(extractors["tf-fid"].net, block)
    reference.load_state_dict(ours.state_dict())
    reference.eval()
    x = torch.randn(1, in_channels, 7, 7)
    with torch.no_grad():
        out, ref = ours(x), reference(x)
    assert out.shape == ref.shape
    if pool_is_max:
        _interior_close(out[:, :-192], ref[:, :-192])
        assert not torch.allclose(out[:, -192:], ref[:, -192:])
    else:
        _interior_close(out, ref)
        assert not torch.allclose(out, ref)  # the border average pool does differ


# ----------------------------------------------------------------------------- LPIPS


@pytest.fixture(scope="module")
def lpips_net() -> lpips.LPIPS:
    return build_lpips(pretrained=False)


def test_lpips_random_trunk_identical_zero_different_positive(lpips_net):
    torch.manual_seed(0)
    a = torch.rand(2, 3, 128, 64) * 2 - 1
    b = torch.rand(2, 3, 128, 64) * 2 - 1
    same = lpips_distance(lpips_net, a, a)
    different = lpips_distance(lpips_net, a, b)
    assert same.shape == (2,) and different.shape == (2,)
    assert torch.all(same.abs() < 1e-6) and torch.all(different > 0)


def test_lpips_offline_build_is_deterministic_and_keeps_package_heads(lpips_net):
    again = build_lpips(pretrained=False)
    for (name, ours), theirs in zip(
        lpips_net.state_dict().items(), again.state_dict().values(), strict=True
    ):
        assert torch.equal(ours, theirs), name
    heads = torch.load(
        Path(lpips.__file__).parent / "weights/v0.1/alex.pth", map_location="cpu", weights_only=True
    )
    for key, value in heads.items():
        assert torch.equal(lpips_net.state_dict()[key], value), key


def test_masked_lpips_ignores_differences_outside_mask(lpips_net):
    torch.manual_seed(1)
    target = torch.rand(2, 3, 128, 64) * 2 - 1
    mask = torch.zeros(2, 1, 128, 64, dtype=torch.bool)
    mask[:, :, 32:96, 16:48] = True
    outside = torch.where(mask, target, torch.rand_like(target) * 2 - 1)
    inside = torch.where(mask, torch.rand_like(target) * 2 - 1, target)
    assert torch.all(masked_lpips(lpips_net, outside, target, mask) == 0)
    assert torch.all(masked_lpips(lpips_net, inside, target, mask[:, 0]) > 0)
    assert torch.all(lpips_distance(lpips_net, outside, target) > 0)


def test_lpips_loads_official_alexnet_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path))
    # The convolutional part of the official file (the loader reads only ``features.*``; the
    # 58M-parameter classifier would only slow the test down).
    with torch.device("meta"):
        shapes = {
            k: v.shape for k, v in torchvision.models.alexnet(weights=None).state_dict().items()
        }
    official = {k: torch.randn(shape) for k, shape in shapes.items() if k.startswith("features.")}
    torch.save(official, tmp_path / ALEXNET_WEIGHTS.file_name)
    net = build_lpips(download=False)
    torch.testing.assert_close(net.net.slice1[0].weight, official["features.0.weight"])
    torch.testing.assert_close(getattr(net.net.slice5, "10").bias, official["features.10.bias"])
    assert not any(p.requires_grad for p in net.parameters())


def test_lpips_missing_weights_names_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError) as caught:
        build_lpips(download=False)
    message = str(caught.value)
    assert "alexnet-owt-7be5be79.pth" in message
    assert "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth" in message


# ----------------------------------------------------------------------------- pixel metrics


def _naive_ssim(x: np.ndarray, y: np.ndarray, window: int = 11, sigma: float = 1.5) -> float:
    """Loop-by-loop SSIM of two [C, H, W] images in [0, 1] (Wang et al. 2004, valid windows)."""
    half = (window - 1) / 2
    g = np.array([math.exp(-((i - half) ** 2) / (2 * sigma**2)) for i in range(window)])
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - window + 1):
            for j in range(x.shape[2] - window + 1):
                px, py = x[c, i : i + window, j : j + window], y[c, i : i + window, j : j + window]
                mx, my = (w * px).sum(), (w * py).sum()
                vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
                cxy = (w * (px - mx) * (py - my)).sum()
                values.append(
                    (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
                )
    return float(np.mean(values))


def test_ssim_matches_naive_reference():
    torch.manual_seed(2)
    a = torch.rand(2, 3, 16, 13) * 2 - 1
    b = (a + 0.3 * torch.randn_like(a)).clamp(-1, 1)
    ours = ssim(a, b)
    assert ours.shape == (2,)
    for k in range(2):
        expected = _naive_ssim(((a[k] + 1) / 2).double().numpy(), ((b[k] + 1) / 2).double().numpy())
        assert ours[k].item() == pytest.approx(expected, abs=1e-5)


def test_pixel_metrics_identical_and_hand_values():
    a = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(ssim(a, a), torch.ones(2))
    assert torch.all(l1_distance(a, a) == 0)
    assert torch.all(torch.isinf(psnr(a, a)))
    black, grey = -torch.ones(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)  # 0 and 0.5 in [0, 1]
    assert l1_distance(black, grey).item() == pytest.approx(0.5)
    assert psnr(black, grey).item() == pytest.approx(10 * math.log10(4.0))


def _levels(rgb: tuple[int, int, int], height: int = 4, width: int = 2) -> torch.Tensor:
    """A [1, 3, H, W] image of one colour given in grey levels, in the [-1, 1] layout."""
    return (
        torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1).expand(1, 3, height, width) / 127.5
        - 1
    )


def test_part_colour_error_golden_values() -> None:
    # Target: rows 0-1 part 5 (upper clothes), rows 2-3 part 9 (pants); column 1 background.
    parsing = torch.tensor([[[5, 0], [5, 0], [9, 0], [9, 0]]])
    truth = _levels((100, 100, 100)).clone()
    truth[:, :, 2:, 0] = 200 / 127.5 - 1  # pants are lighter
    generated = _levels((110, 100, 90)).clone()  # upper clothes off by (10, 0, 10): error 20/3
    generated[:, :, 2:, 0] = 170 / 127.5 - 1  # pants off by 30 on every channel: error 30
    generated[:, :, :, 1] = -1  # background is not measured
    error = part_colour_error(generated, truth, parsing)
    assert error.shape == (1,)
    assert error.item() == pytest.approx((20 / 3 + 30) / 2, abs=1e-4)
    # Only the mean colour inside a part counts: a part's pixels may swap among themselves.
    swapped = truth.clone()
    swapped[:, :, 0, 0], swapped[:, :, 1, 0] = 90 / 127.5 - 1, 110 / 127.5 - 1
    assert part_colour_error(swapped, truth, parsing).item() == pytest.approx(0.0, abs=1e-4)
    assert part_colour_error(truth, truth, parsing).item() == 0.0


def test_part_colour_error_undefined_without_parts() -> None:
    image = _levels((10, 20, 30))
    assert torch.isnan(part_colour_error(image, image, torch.zeros(1, 4, 2, dtype=torch.long)))


def test_masked_l1_counts_only_the_mask() -> None:
    truth = _levels((0, 0, 0))
    generated = truth.clone()
    generated[:, :, :, 1] = 1.0  # wrong (white) outside the mask only
    mask = torch.tensor([[[1, 0], [1, 0], [1, 0], [1, 0]]], dtype=torch.uint8)
    assert masked_l1(generated, truth, mask).item() == 0.0
    generated[:, 0, 0, 0] = 1.0  # one channel of one masked pixel: 1 / (4 pixels * 3)
    assert masked_l1(generated, truth, mask).item() == pytest.approx(1 / 12)
    assert masked_l1(generated, truth, mask[:, None]).item() == pytest.approx(1 / 12)
    assert torch.isnan(masked_l1(generated, truth, torch.zeros_like(mask)))
