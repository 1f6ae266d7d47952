"""SCHP network: InPlaceABN semantics, official key names and shapes, checkpoint loading."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from foundation.weights import MissingWeightsError
from pipeline.schp import SCHP_LIP, InPlaceABN, SCHPNet, build_schp, strip_module_prefix

# Verified against networks/AugmentCE2P.py of GoGoDuck912/Self-Correction-Human-Parsing
# (the official model built with its own InPlaceABNSync stub has the same 603 keys).
OFFICIAL_SHAPES = {
    "conv1.weight": (64, 3, 3, 3),
    "conv3.weight": (128, 64, 3, 3),
    "layer1.0.downsample.0.weight": (256, 128, 1, 1),
    "layer3.22.conv3.weight": (1024, 256, 1, 1),
    "layer4.0.downsample.1.running_var": (2048,),
    "layer4.2.conv2.weight": (512, 512, 3, 3),
    "context_encoding.stages.3.1.weight": (512, 2048, 1, 1),
    "context_encoding.stages.3.2.running_mean": (512,),
    "context_encoding.bottleneck.0.weight": (512, 4096, 3, 3),
    "edge.conv3.0.weight": (256, 1024, 1, 1),
    "edge.conv4.weight": (2, 256, 3, 3),
    "edge.conv5.weight": (2, 6, 1, 1),
    "decoder.conv2.1.bias": (48,),
    "decoder.conv3.0.weight": (256, 304, 1, 1),
    "decoder.conv3.3.weight": (256,),
    "decoder.conv4.bias": (20,),
    "fushion.0.weight": (256, 1024, 1, 1),
    "fushion.1.running_var": (256,),
    "fushion.3.weight": (20, 256, 1, 1),
    "fushion.3.bias": (20,),
}
OFFICIAL_KEYS = 603
OFFICIAL_PARAMETERS = 66_723_928


def _meta_model() -> SCHPNet:
    with torch.device("meta"):  # shapes and names only, no memory
        return SCHPNet()


def _reference_abn(x, weight, bias, mean, var, eps, slope):
    scale = (weight.abs() + eps) / torch.sqrt(var + eps)
    y = (x - mean[None, :, None, None]) * scale[None, :, None, None] + bias[None, :, None, None]
    return y if slope is None else torch.where(y >= 0, y, slope * y)


@pytest.mark.parametrize("activation", ["leaky_relu", "identity"])
def test_inplace_abn_matches_formula_with_negative_weights(activation):
    generator = torch.Generator().manual_seed(0)
    norm = InPlaceABN(6, activation=activation)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([-2.0, -0.5, 0.0, 0.3, 1.0, -1e-3]))
        norm.bias.copy_(torch.randn(6, generator=generator))
        norm.running_mean.copy_(torch.randn(6, generator=generator))
        norm.running_var.copy_(torch.rand(6, generator=generator) + 0.1)
    x = torch.randn(3, 6, 5, 4, generator=generator)
    slope = 0.01 if activation == "leaky_relu" else None
    expected = _reference_abn(
        x, norm.weight, norm.bias, norm.running_mean, norm.running_var, 1e-5, slope
    )
    torch.testing.assert_close(norm.eval()(x), expected)
    torch.testing.assert_close(norm.train()(x), expected)  # inference-only: running stats

    batchnorm = nn.BatchNorm2d(6).eval()
    batchnorm.load_state_dict(norm.state_dict(), strict=False)
    plain = batchnorm(x)
    if slope is not None:
        plain = nn.functional.leaky_relu(plain, slope)
    negative = norm.weight < 0
    assert not torch.allclose(plain[:, negative], expected[:, negative], atol=1e-3)


def test_norm_has_no_num_batches_tracked():
    assert set(InPlaceABN(4).state_dict()) == {"weight", "bias", "running_mean", "running_var"}


def test_official_key_names_shapes_and_size():
    state = _meta_model().state_dict()
    assert len(state) == OFFICIAL_KEYS
    assert not any("num_batches_tracked" in key for key in state)
    for key, shape in OFFICIAL_SHAPES.items():
        assert tuple(state[key].shape) == shape, key
    parameters = sum(p.numel() for p in _meta_model().parameters())
    assert parameters == OFFICIAL_PARAMETERS  # "66.7M"


def test_layer4_is_dilated_and_output_stride_is_four():
    model = _meta_model()
    conv = model.layer4[1].conv2
    assert conv.dilation == (2, 2) and conv.padding == (2, 2) and conv.stride == (1, 1)
    assert model.layer4[0].downsample is not None and model.layer4[0].conv2.stride == (1, 1)
    out = build_schp(pretrained=False)(torch.randn(1, 3, 65, 49))
    assert out.fusion.shape == (1, 20, 17, 13) == out.parsing.shape
    assert out.edge.shape == (1, 2, 17, 13)
    assert torch.isfinite(out.fusion).all()


def test_official_format_checkpoint_loads_strictly(tmp_path):
    generator = torch.Generator().manual_seed(1)
    state = {}
    for key, value in _meta_model().state_dict().items():
        if key.endswith("running_var"):
            tensor = torch.rand(value.shape, generator=generator) + 0.5
        else:  # norm weights come out negative about half the time
            tensor = torch.randn(value.shape, generator=generator)
        state[f"module.{key}"] = tensor
    path = tmp_path / SCHP_LIP.file.file_name
    torch.save({"state_dict": state, "epoch": 150}, path)

    model = build_schp(weights=tmp_path)  # a folder holding the official file name
    loaded = model.state_dict()
    for key in ("fushion.1.weight", "layer2.3.bn2.weight", "conv1.weight"):
        assert torch.equal(loaded[key], state[f"module.{key}"])
    assert (loaded["fushion.1.weight"] < 0).any()
    assert not model.training
    with pytest.raises(RuntimeError, match="num_batches_tracked"):
        extra = {**strip_module_prefix(state), "bn1.num_batches_tracked": torch.tensor(0)}
        _meta_model().load_state_dict(extra, strict=True, assign=True)


def test_missing_checkpoint_names_file_and_drive_link(tmp_path, monkeypatch):
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError) as error:
        build_schp()
    message = str(error.value)
    assert "exp-schp-201908261155-lip.pth" in message
    assert "drive.google.com/file/d/1k4dllHpu0bdx38J7H28rVVLpU-kOHmnH" in message
    with pytest.raises(MissingWeightsError, match="exp-schp-201908261155-lip.pth"):
        build_schp(weights=tmp_path / "nowhere.pth")
