"""Re-ID networks: shapes, one interface, gradients, ImageNet loading in torchvision's format."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torchvision.models import resnet18

from foundation.weights import MissingWeightsError
from reid.models import IDENet, ReIDModelConfig, SiameseNet, build_reid_model

SMALL = ReIDModelConfig(arch="resnet18", pretrained=False)


@pytest.mark.parametrize("bottleneck_dim", [None, 16])
def test_ide_shapes_and_gradients(bottleneck_dim):
    torch.manual_seed(0)
    config = ReIDModelConfig(arch="resnet18", pretrained=False, bottleneck_dim=bottleneck_dim)
    model = build_reid_model(config=config, num_classes=5)
    assert type(model) is IDENet
    x = torch.randn(3, 3, 64, 32)
    features = model.forward_features(x)
    assert features.shape == (3, config.feature_dim) == (3, 512)
    logits = model.forward_head(features)
    assert logits.shape == (3, 5) and torch.isfinite(logits).all()
    logits.sum().backward()
    assert model.backbone.conv1.weight.grad is not None
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    model.eval()
    torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


def test_siamese_verification_is_symmetric():
    torch.manual_seed(0)
    model = build_reid_model(
        config=ReIDModelConfig(arch="resnet18", pretrained=False, kind="siamese"), num_classes=4
    ).eval()
    assert isinstance(model, SiameseNet)
    a, b = torch.randn(2, 512), torch.randn(2, 512)
    out = model.forward_verification(a, b)
    assert out.shape == (2, 2)
    torch.testing.assert_close(out, model.forward_verification(b, a))


def test_siamese_verification_dropout_is_the_reference_0_9():
    model = build_reid_model(config=dataclasses.replace(SMALL, kind="siamese"), num_classes=4)
    assert isinstance(model, SiameseNet) and model.verifier[0].p == 0.9
    linear = model.verifier[1]
    with torch.no_grad():  # logit 1 = the first squared difference, nothing else
        linear.weight.zero_()
        linear.weight[1, 0] = 1.0
        linear.bias.zero_()
    first, second = torch.zeros(4000, 512), torch.zeros(4000, 512)
    first[:, 0] = 1.0  # (1 - 0)^2 = 1 in dimension 0
    torch.manual_seed(0)
    kept = model.train().forward_verification(first, second)[:, 1].detach()
    # Training: kept with probability 0.1 and scaled by 1 / (1 - 0.9) = 10, else 0.
    assert set(kept.unique().tolist()) == {0.0, 10.0}
    assert 0.08 < float((kept == 10.0).float().mean()) < 0.12
    assert model.eval().forward_verification(first, second)[:, 1].eq(1.0).all()


def test_last_stride_one_doubles_the_final_map():
    config = ReIDModelConfig(arch="resnet50", pretrained=False, last_stride=1)
    model = build_reid_model(config=config, num_classes=3)
    net = model.backbone
    x = torch.randn(1, 3, 64, 32)
    stem = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))))
    assert net.layer4(stem).shape[-2:] == stem.shape[-2:]  # no downsampling in layer4
    assert model.forward_features(x).shape == (1, 2048)


def test_pretrained_loads_official_format(tmp_path, monkeypatch):
    reference = resnet18(weights=None)  # an "official" file: torchvision keys, fc included
    torch.save(reference.state_dict(), tmp_path / "resnet18-f37072fd.pth")
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path))
    model = build_reid_model(config=ReIDModelConfig(arch="resnet18"), num_classes=3, download=False)
    torch.testing.assert_close(
        model.backbone.layer3[0].conv1.weight, reference.layer3[0].conv1.weight
    )
    torch.testing.assert_close(model.backbone.bn1.running_var, reference.bn1.running_var)


def test_missing_weights_error_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    with pytest.raises(MissingWeightsError, match="resnet50-0676ba61.pth"):
        build_reid_model(config=ReIDModelConfig(), num_classes=3, download=False)


def test_invalid_configs():
    with pytest.raises(ValueError, match="2 identities"):
        build_reid_model(config=SMALL, num_classes=1)
    with pytest.raises(ValueError, match="last_stride"):
        build_reid_model(
            config=ReIDModelConfig(arch="resnet18", pretrained=False, last_stride=3), num_classes=2
        )


def test_seeded_dropout_draws_from_its_generator_only():
    from reid.models import SeededDropout, set_dropout_generator

    layer = SeededDropout(0.5)
    x = torch.ones(4, 1000)
    set_dropout_generator(torch.nn.Sequential(layer), torch.Generator().manual_seed(0))
    first = layer(x)
    layer.generator = torch.Generator().manual_seed(0)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(layer(x), first)
    assert set(first.unique().tolist()) == {0.0, 2.0}  # kept values scaled by 1 / (1 - p)
    assert 0.45 < (first == 0).float().mean() < 0.55
    assert torch.equal(layer.eval()(x), x)


def test_bot_bnneck_feeds_the_classifier_and_is_the_descriptor():
    model = build_reid_model(
        config=ReIDModelConfig(kind="bot", arch="resnet18", pretrained=False, last_stride=1),
        num_classes=5,
    )
    neck, classifier = model.head
    assert isinstance(neck, torch.nn.BatchNorm1d) and not neck.bias.requires_grad
    assert classifier.bias is None
    assert sorted(k for k in model.state_dict() if not k.startswith("backbone.")) == [
        "head.0.bias",
        "head.0.num_batches_tracked",
        "head.0.running_mean",
        "head.0.running_var",
        "head.0.weight",
        "head.1.weight",
    ]
    images = torch.randn(4, 3, 64, 32)
    model.train()
    features = model.forward_features(images)
    assert model.forward_head(features).shape == (4, 5)
    model.eval()
    torch.testing.assert_close(model.embed(images), neck(model.forward_features(images)))
