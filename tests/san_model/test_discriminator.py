"""SAN discriminator: structure of section 3.2, probabilities, conditioning, gradients."""

import pytest
import torch
from torch import nn

from san_model.blocks import ResidualBlock
from san_model.config import SANConfig
from san_model.discriminator import build_discriminator


@pytest.mark.parametrize("size", [(128, 64), (256, 256)])
def test_patch_probabilities_shape_and_range(size: tuple[int, int]) -> None:
    discriminator = build_discriminator(config=SANConfig.tiny(image_size=size))
    source, candidate = (torch.rand(2, 2, 3, *size) * 2 - 1).unbind(0)
    probabilities = discriminator(source, candidate)
    assert probabilities.shape == (2, 1, size[0] // 4, size[1] // 4)
    assert probabilities.dtype == torch.float32
    assert (probabilities > 0).all() and (probabilities < 1).all()


def test_two_downsampling_convs_then_three_residual_blocks() -> None:
    discriminator = build_discriminator(config=SANConfig.tiny())
    convs = [m for m in discriminator.body.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].in_channels == 6  # source image || candidate image
    assert sum(conv.stride == (2, 2) for conv in convs) == 2
    layers = list(discriminator.body)
    residual_positions = [i for i, m in enumerate(layers) if isinstance(m, ResidualBlock)]
    assert residual_positions == [3, 4, 5]


def test_output_depends_on_the_source_condition() -> None:
    discriminator = build_discriminator(config=SANConfig.tiny()).eval()
    source, other, candidate = (torch.rand(3, 2, 3, 64, 32) * 2 - 1).unbind(0)
    with torch.no_grad():
        assert not torch.allclose(discriminator(source, candidate), discriminator(other, candidate))


def test_gradients_reach_every_parameter() -> None:
    discriminator = build_discriminator(config=SANConfig.tiny())
    source, candidate = (torch.rand(2, 2, 3, 64, 32) * 2 - 1).unbind(0)
    discriminator(source, candidate).log().mean().backward()
    for name, parameter in discriminator.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_residual_block_is_identity_plus_body() -> None:
    block = ResidualBlock(4).eval()
    x = torch.randn(2, 4, 5, 3)
    with torch.no_grad():
        assert torch.allclose(block(x), x + block.body(x))
