"""Building blocks of the SAN generator and discriminator (paper section 3).

All blocks take and return float feature maps ``[B, C, H, W]``. Convolutions that feed a
BatchNorm carry no bias (the norm's shift replaces it).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import nn

# LeakyReLU slope: the paper does not give one; 0.2 is the pix2pix/PATN value.
LEAKY_SLOPE = 0.2


def conv_bn_act(
    in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1
) -> nn.Sequential:
    """Conv + BatchNorm + LeakyReLU, the unit the paper uses everywhere in the encoders.

    Spatial size is kept for ``stride=1`` and halved for ``stride=2``. 7x7 convolutions pad by
    reflection (as PATN) so the image border does not read as a dark frame.
    """
    padding_mode: Literal["reflect", "zeros"] = "reflect" if kernel_size >= 7 else "zeros"
    return nn.Sequential(
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=kernel_size // 2,
            padding_mode=padding_mode,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
    )


def up_bn_act(in_channels: int, out_channels: int) -> nn.Sequential:
    """Transposed conv (x2 upsampling) + BatchNorm + ReLU: one decoder step (section 3.1.3).

    ReLU rather than LeakyReLU as in the U-Net/PATN decoders; the paper leaves it open.
    """
    return nn.Sequential(
        nn.ConvTranspose2d(
            in_channels,
            out_channels,
            kernel_size=3,
            stride=2,
            padding=1,
            output_padding=1,
            bias=False,
        ),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class PathwayEncoder(nn.Module):
    """One input pathway's encoder (section 3.1.1): 7x7 conv, then two stride-2 3x3 convs.

    Input ``[B, in_channels, H, W]``; output ``[B, 4 * width, H / 4, W / 4]``.
    """

    def __init__(self, in_channels: int, width: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            conv_bn_act(in_channels, width, kernel_size=7),
            conv_bn_act(width, 2 * width, stride=2),
            conv_bn_act(2 * width, 4 * width, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SemanticAttentionBlock(nn.Module):
    """One Semantic Attention Block (section 3.1.2, fig. 3).

    Both codes are ``[B, C, h, w]``. The attention ``M_t`` comes from three convs on the semantic
    code, the first two with BatchNorm + LeakyReLU, then an element-wise sigmoid (eq. 1; the
    paper writes ``1 / (1 + e^x)``, i.e. sigmoid(-x): the sign is absorbed by the learned last
    conv).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.attention_layers = nn.Sequential(
            conv_bn_act(channels, channels),
            conv_bn_act(channels, channels),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1),
        )
        # Eq. 3's "Conv" over the concatenated codes, with the paper's usual BN + LeakyReLU so
        # the semantic code stays normalised across the T blocks.
        self.semantic_update = conv_bn_act(2 * channels, channels)

    def attention(self, semantic: torch.Tensor) -> torch.Tensor:
        """``M_t`` of eq. 1: ``[B, C, h, w]`` in [0, 1], computed from ``F_pt^{t-1}``."""
        return torch.sigmoid(self.attention_layers(semantic))

    def forward(
        self, appearance: torch.Tensor, semantic: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Update ``(F_ps^{t-1}, F_pt^{t-1})`` to ``(F_ps^t, F_pt^t)``, shapes unchanged."""
        # Eq. 2: attended semantic code added to the appearance code (residual connection).
        appearance = self.attention(semantic) * semantic + appearance
        # Eq. 3: F_pt^t = Conv(F_pt^{t-1} || F_ps^t), concatenation along channels.
        semantic = self.semantic_update(torch.cat([semantic, appearance], dim=1))
        return appearance, semantic


class DownPyramid(nn.Module):
    """Conv_A / Conv_S (section 3.1.2): three stride-2 conv + BN + LeakyReLU sub-networks.

    Input ``[B, C, h, w]``; returns the three outputs ``[B, C_k, h / 2^k, w / 2^k]`` for
    k = 1, 2, 3 (channels double once, capped at ``max_channels``) for the decoder's skips.
    """

    def __init__(self, in_channels: int, max_channels: int) -> None:
        super().__init__()
        widths = [in_channels]
        for _ in range(3):
            widths.append(min(2 * widths[-1], max_channels))
        self.widths = widths
        self.stages = nn.ModuleList(
            conv_bn_act(widths[k], widths[k + 1], stride=2) for k in range(3)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


class ResidualBlock(nn.Module):
    """``x + BN(conv(LeakyReLU(BN(conv(x)))))``, shape preserving: the discriminator's body."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(LEAKY_SLOPE, inplace=True),
            nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


# Streams of derived_seed(config.seed, stream, ...): one per consumer of randomness.
GENERATOR_STREAM, DISCRIMINATOR_STREAM, POOL_STREAM = 0, 1, 2


def derived_seed(*key: int) -> int:
    """A 63-bit seed for ``torch.Generator.manual_seed`` from integers (numpy SeedSequence).

    Distinct keys give independent streams, e.g. ``(config.seed, stream, rank)``.
    """
    return int(np.random.SeedSequence(list(key)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def init_gan_weights(module: nn.Module, *, seed: int) -> None:
    """DCGAN/PATN initialisation: conv weights N(0, 0.02), BatchNorm scale N(1, 0.02), bias 0.

    Every weight is drawn from a generator seeded with ``seed`` (torch's global RNG is left
    alone), so the same seed gives the same network in any thread or process.
    """
    generator = torch.Generator().manual_seed(seed)
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(layer.weight, 0.0, 0.02, generator=generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.normal_(layer.weight, 1.0, 0.02, generator=generator)
            nn.init.zeros_(layer.bias)
