"""The SAN discriminator (paper section 3.2): conditional on the source image.

Two stride-2 convolutions, three residual blocks, then a sigmoid: it returns probabilities
(a patch map), not hard labels, which the paper found keeps the D loss from collapsing to 0.
"""

from __future__ import annotations

import torch
from torch import nn

from .blocks import (
    DISCRIMINATOR_STREAM,
    ResidualBlock,
    conv_bn_act,
    derived_seed,
    init_gan_weights,
)
from .config import SANConfig


class SANDiscriminator(nn.Module):
    """D(I_ps, I): how likely ``candidate`` shows the person of ``source`` (eq. 4).

    Layout: 7x7 stem (``ndf``), two stride-2 3x3 convs (``2 ndf``, ``4 ndf``), three residual
    blocks at ``4 ndf``, a 3x3 conv to one channel, sigmoid.
    """

    def __init__(self, config: SANConfig) -> None:
        super().__init__()
        ndf = config.ndf
        self.body = nn.Sequential(
            conv_bn_act(6, ndf, kernel_size=7),
            conv_bn_act(ndf, 2 * ndf, stride=2),
            conv_bn_act(2 * ndf, 4 * ndf, stride=2),
            *(ResidualBlock(4 * ndf) for _ in range(3)),
            nn.Conv2d(4 * ndf, 1, kernel_size=3, padding=1),
        )
        init_gan_weights(self, seed=derived_seed(config.seed, DISCRIMINATOR_STREAM))

    def forward(self, source: torch.Tensor, candidate: torch.Tensor) -> torch.Tensor:
        """Patch probabilities that ``candidate`` is the real target of ``source``.

        Args:
            source: ``[B, 3, H, W]`` float in [-1, 1], the condition I_ps.
            candidate: ``[B, 3, H, W]`` float in [-1, 1], the real I_pt or a generated image.

        Returns:
            ``[B, 1, H/4, W/4]`` float32 in (0, 1).
        """
        logits = self.body(torch.cat([source, candidate], dim=1))
        # Sigmoid in float32: under bf16 autocast a bf16 probability has ~3 digits, too coarse
        # near 0 and 1 for the log terms of eq. 4.
        return torch.sigmoid(logits.float())


def build_discriminator(*, config: SANConfig) -> SANDiscriminator:
    """Build a randomly initialised discriminator for ``config``."""
    return SANDiscriminator(config)
