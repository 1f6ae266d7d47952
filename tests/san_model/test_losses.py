"""SAN losses: eq. 4-7, the VGG-19 perceptual loss and its weight file handling."""

import math
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision.models.vgg
from torchvision.models.vgg import cfgs, make_layers

from foundation.weights import MissingWeightsError
from san_model.config import SANConfig
from san_model.losses import (
    VGGPerceptualLoss,
    build_perceptual_loss,
    discriminator_loss,
    generator_loss,
)


@pytest.fixture
def offline_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights folder and TORCH_HOME; downloads fail as they do offline."""
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def no_network(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "weights"


def test_perceptual_is_zero_for_identical_and_positive_for_different_images() -> None:
    torch.manual_seed(0)
    loss = VGGPerceptualLoss(pretrained=False)
    images = torch.rand(2, 3, 64, 32) * 2 - 1
    assert loss(images, images.clone()).item() == 0.0
    assert loss(images, images.flip(0)).item() > 0


def test_perceptual_matches_eq6_by_hand() -> None:
    torch.manual_seed(0)
    loss = VGGPerceptualLoss(layer="relu2_1", pretrained=False)
    a, b = (torch.rand(2, 1, 3, 32, 32) * 2 - 1).unbind(0)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    phi_a = loss.features(((a + 1) / 2 - mean) / std)
    phi_b = loss.features(((b + 1) / 2 - mean) / std)
    channels, height, width = phi_a.shape[1:]
    expected = ((phi_a - phi_b) ** 2).sum() / (channels * height * width)  # eq. 6, one image
    assert torch.allclose(loss(a, b), expected)
    # PATN's code (and the paper's "perceptual l1" wording): absolute differences instead.
    l1 = VGGPerceptualLoss(layer="relu2_1", distance="l1", pretrained=False)
    expected_l1 = (phi_a - phi_b).abs().sum() / (channels * height * width)
    assert torch.allclose(l1(a, b), expected_l1)
    assert SANConfig.market1501().perceptual_distance == "l2"
    with pytest.raises(ValueError, match="perceptual_distance"):
        SANConfig.market1501(perceptual_distance="l3")


@pytest.mark.parametrize(("layer", "depth", "channels"), [("relu1_2", 4, 64), ("relu4_1", 21, 512)])
def test_vgg_is_cut_after_the_configured_relu(layer: str, depth: int, channels: int) -> None:
    loss = VGGPerceptualLoss(layer=layer, pretrained=False)
    assert len(loss.features) == depth
    assert isinstance(loss.features[-1], torch.nn.ReLU)
    assert loss.activations(torch.zeros(1, 3, 32, 32)).shape[1] == channels


def test_vgg_is_frozen_and_stays_in_eval_mode() -> None:
    loss = VGGPerceptualLoss(pretrained=False).train()
    assert not loss.training and not loss.features.training
    generated = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_()
    loss(generated, torch.zeros(1, 3, 32, 32)).backward()
    assert generated.grad is not None and generated.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in loss.parameters())


def test_missing_vgg_weights_error_names_the_file(offline_weights: Path) -> None:
    with pytest.raises(MissingWeightsError) as error:
        VGGPerceptualLoss(pretrained=True)
    message = str(error.value)
    assert "vgg19-dcbfe2b4.pth" in message
    assert "https://download.pytorch.org/models/vgg19-dcbfe2b4.pth" in message
    assert str(offline_weights) in message


def test_pretrained_weights_load_from_the_weights_folder(offline_weights: Path) -> None:
    torch.manual_seed(1)
    features = make_layers(cfgs["E"])
    official = {f"features.{k}": v for k, v in features.state_dict().items()}
    # Only the layers relu1_2 needs, under torchvision's key names, keeps the file small.
    kept = {k: v for k, v in official.items() if k.split(".")[1] in ("0", "2")}
    offline_weights.mkdir(parents=True)
    torch.save(kept, offline_weights / "vgg19-dcbfe2b4.pth")
    loss = VGGPerceptualLoss(layer="relu1_2", pretrained=True)
    assert torch.equal(loss.features[0].weight, official["features.0.weight"])
    assert torch.equal(loss.features[2].bias, official["features.2.bias"])


def test_no_perceptual_ablation_never_builds_vgg(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("VGG-19 built although use_perceptual=False")

    monkeypatch.setattr(torchvision.models.vgg, "make_layers", forbidden)
    assert build_perceptual_loss(config=SANConfig.tiny(use_perceptual=False)) is None
    with pytest.raises(AssertionError, match="VGG-19 built"):
        build_perceptual_loss(config=SANConfig.tiny(), pretrained=False)


def test_generator_loss_weights_the_terms_as_eq7() -> None:
    config = SANConfig.market1501()
    generated = torch.zeros(2, 3, 8, 4, requires_grad=True)
    target = torch.full((2, 3, 8, 4), 0.5)
    terms = generator_loss(
        fake_probability=torch.full((2, 1, 2, 1), 0.5),
        generated=generated,
        target=target,
        config=config,
        perceptual=None,
    )
    assert math.isclose(terms.adversarial.item(), math.log(2), rel_tol=1e-6)
    assert math.isclose(terms.l1.item(), 0.5, rel_tol=1e-6)
    assert terms.perceptual.item() == 0.0
    expected = 10 * math.log(2) + 15 * 0.5
    assert math.isclose(terms.total.item(), expected, rel_tol=1e-6)
    terms.total.backward()
    assert generated.grad is not None and torch.allclose(
        generated.grad, torch.full_like(generated, -15 / generated.numel())
    )


def test_generator_loss_includes_gamma_times_perceptual() -> None:
    torch.manual_seed(0)
    config = SANConfig.deepfashion()
    perceptual = VGGPerceptualLoss(pretrained=False)
    generated, target = (torch.rand(2, 2, 3, 32, 32) * 2 - 1).unbind(0)
    probability = torch.full((2, 1, 8, 8), 0.9)
    terms = generator_loss(
        fake_probability=probability,
        generated=generated,
        target=target,
        config=config,
        perceptual=perceptual,
    )
    expected = 15 * -math.log(0.9) + 1 * terms.l1 + 5 * perceptual(generated, target)
    assert torch.allclose(terms.total, expected)


def test_discriminator_loss_golden_values_and_saturation() -> None:
    half = torch.full((4, 1, 2, 2), 0.5)
    both = discriminator_loss(half, real=True) + discriminator_loss(half, real=False)
    assert math.isclose(both.item(), math.log(2), rel_tol=1e-6)
    fooled = discriminator_loss(torch.full((3,), 0.9), real=False)
    assert math.isclose(fooled.item(), -0.5 * math.log(0.1), rel_tol=1e-5)
    perfect = discriminator_loss(torch.ones(4), real=True) + discriminator_loss(
        torch.zeros(4), real=False
    )
    wrong = discriminator_loss(torch.zeros(4), real=True) + discriminator_loss(
        torch.ones(4), real=False
    )
    assert 0 <= perfect.item() < 1e-5
    assert torch.isfinite(wrong) and wrong.item() > 10  # clamped log: large but finite
