"""The SAN generator (paper section 3.1, fig. 2) and the conversions from stored arrays.

Data layout at the boundary (as stored): images uint8 ``[B, H, W, 3]`` RGB, masks uint8
``[B, H, W]`` (any non-zero value is person), parsing uint8 ``[B, H, W]`` LIP labels 0..19.
Model layout: image float ``[B, 3, H, W]`` in [-1, 1], mask float ``[B, 1, H, W]`` in {0, 1},
parsing float one-hot ``[B, L, H, W]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from .blocks import (
    GENERATOR_STREAM,
    DownPyramid,
    PathwayEncoder,
    SemanticAttentionBlock,
    derived_seed,
    init_gan_weights,
    up_bn_act,
)
from .config import SANConfig


class SANGenerator(nn.Module):
    """Two pathway encoders, T attention blocks, Conv_A / Conv_S and a U-Net-like decoder.

    Shapes for an ``H x W`` image, ``c = 4 * ngf``, ``d = 8 * ngf``:
    encoders -> ``[B, c, H/4, W/4]``; T blocks keep that shape; Conv_A / Conv_S ->
    ``[B, d, H/8, W/8]``, ``[B, d, H/16, W/16]``, ``[B, d, H/32, W/32]``; the decoder climbs
    back, concatenating at each size the Conv_S feature with the Conv_A feature of that size
    (at ``H/4`` those are the final codes ``F_pt^T`` and ``F_ps^T`` that Conv_A / Conv_S read),
    then two more transposed convs to ``H x W`` and a 7x7 conv + tanh.
    """

    def __init__(self, config: SANConfig) -> None:
        super().__init__()
        self.config = config
        ngf = config.ngf
        code = 4 * ngf
        self.appearance_encoder = PathwayEncoder(config.appearance_channels, ngf)
        self.semantic_encoder = PathwayEncoder(config.semantic_channels, ngf)
        self.blocks = nn.ModuleList(SemanticAttentionBlock(code) for _ in range(config.num_blocks))
        self.conv_a = DownPyramid(code, 8 * ngf)
        self.conv_s = DownPyramid(code, 8 * ngf)
        w0, w1, w2, w3 = self.conv_a.widths  # channels at H/4, H/8, H/16, H/32
        self.up3 = up_bn_act(2 * w3, w2)  # H/32 -> H/16
        self.up2 = up_bn_act(w2 + 2 * w2, w1)  # H/16 -> H/8
        self.up1 = up_bn_act(w1 + 2 * w1, w0)  # H/8 -> H/4
        self.up0 = up_bn_act(w0 + 2 * w0, 2 * ngf)  # H/4 -> H/2
        self.up_image = up_bn_act(2 * ngf, ngf)  # H/2 -> H
        self.to_image = nn.Sequential(
            nn.Conv2d(ngf, 3, kernel_size=7, padding=3, padding_mode="reflect"), nn.Tanh()
        )
        init_gan_weights(self, seed=derived_seed(config.seed, GENERATOR_STREAM))

    def encode(
        self,
        source_image: torch.Tensor,
        source_mask: torch.Tensor,
        source_parsing: torch.Tensor,
        target_mask: torch.Tensor,
        target_parsing: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Stack each pathway's inputs on channels and encode: ``(F_ps^0, F_pt^0)``.

        Args:
            source_image: ``[B, 3, H, W]`` float in [-1, 1], the reference image I_ps.
            source_mask: ``[B, 1, H, W]`` float in {0, 1} (ignored when use_mask_inputs=False).
            source_parsing: ``[B, L, H, W]`` one-hot float.
            target_mask: ``[B, 1, H, W]`` float in {0, 1} (ignored when use_mask_inputs=False).
            target_parsing: ``[B, L, H, W]`` one-hot float.
        """
        if self.config.use_mask_inputs:
            appearance = torch.cat([source_image, source_mask, source_parsing], dim=1)
            semantic = torch.cat([target_mask, target_parsing], dim=1)
        else:  # ablation: no segmentation-mask channel in either pathway
            appearance = torch.cat([source_image, source_parsing], dim=1)
            semantic = target_parsing
        return self.appearance_encoder(appearance), self.semantic_encoder(semantic)

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Generate the source person in the target pose from :meth:`encode`'s five inputs
        (source image, mask and parsing; target mask and parsing).

        Returns:
            ``[B, 3, H, W]`` float in [-1, 1] (tanh), the generated image.
        """
        appearance, semantic = self.encode(*inputs)
        for block in self.blocks:  # eq. 1-3, T times
            appearance, semantic = block(appearance, semantic)
        a1, a2, a3 = self.conv_a(appearance)
        s1, s2, s3 = self.conv_s(semantic)
        x = self.up3(torch.cat([a3, s3], dim=1))
        x = self.up2(torch.cat([x, a2, s2], dim=1))
        x = self.up1(torch.cat([x, a1, s1], dim=1))
        x = self.up0(torch.cat([x, appearance, semantic], dim=1))
        return self.to_image(self.up_image(x))


def build_generator(
    *, config: SANConfig, weights: Mapping[str, torch.Tensor] | None = None
) -> SANGenerator:
    """Build the generator, randomly initialised or from a generator state dict.

    ``weights`` is a state dict such as :func:`san_model.checkpoint.read_generator_weights`
    returns; loading is strict so a config/weights mismatch fails loudly.
    """
    generator = SANGenerator(config)
    if weights is not None:
        generator.load_state_dict(weights, strict=True)
    return generator


def images_to_tensor(images: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]`` in [-1, 1] (on ``images``' device)."""
    return images.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def masks_to_tensor(masks: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W]`` (non-zero = person) -> float ``[B, 1, H, W]`` in {0, 1}."""
    return (masks != 0).unsqueeze(1).float()


def parsing_to_one_hot(labels: torch.Tensor, num_classes: int = 20) -> torch.Tensor:
    """Integer labels ``[B, H, W]`` in [0, num_classes) -> one-hot float ``[B, L, H, W]``.

    The range is checked with a clear message for CPU tensors only: on CUDA the check would
    synchronise every batch, and ``scatter_`` raises a device-side assert there anyway.
    """
    if labels.device.type == "cpu" and labels.numel() and int(labels.max()) >= num_classes:
        raise ValueError(f"parsing label {int(labels.max())} >= num_classes {num_classes}")
    batch, height, width = labels.shape
    one_hot = torch.zeros(batch, num_classes, height, width, device=labels.device)
    return one_hot.scatter_(1, labels.long().unsqueeze(1), 1.0)


def tensor_to_images(images: torch.Tensor) -> torch.Tensor:
    """float ``[B, 3, H, W]`` in [-1, 1] -> uint8 ``[B, H, W, 3]`` (rounded, clamped)."""
    scaled = (images.detach().float() + 1.0) * 127.5
    return scaled.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


@torch.no_grad()
def generate(
    generator: SANGenerator,
    source_images: torch.Tensor,
    source_masks: torch.Tensor,
    source_parsing: torch.Tensor,
    target_masks: torch.Tensor,
    target_parsing: torch.Tensor,
) -> torch.Tensor:
    """Inference on stored arrays: uint8 in, uint8 ``[B, H, W, 3]`` on the CPU out.

    Inputs are uint8 tensors in the stored layout (module docstring), on any device; they are
    moved to the generator's device. Uses bf16 autocast on CUDA (as in training); the caller
    puts the generator in eval mode (:func:`san_model.checkpoint.load_generator` does).
    """
    device = next(generator.parameters()).device
    classes = generator.config.parsing_classes
    inputs = (
        images_to_tensor(source_images.to(device)),
        masks_to_tensor(source_masks.to(device)),
        parsing_to_one_hot(source_parsing.to(device), classes),
        masks_to_tensor(target_masks.to(device)),
        parsing_to_one_hot(target_parsing.to(device), classes),
    )
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        output = generator(*inputs)
    return tensor_to_images(output).cpu()
