"""What one SAN training run costs: parameters, FLOPs per step, total FLOPs (``train --dry-run``).

The step counted is :func:`san_model.train.train_step` itself (G update through D and the
perceptual network, then D on real and on generated pairs), on the real generator,
discriminator and perceptual network of the config, built on the ``meta`` device (shapes only:
nothing is allocated or computed) with one global batch of ``config.batch_size`` pairs. So the
count follows every change of the architecture or the step, and equals what torch's counter
reports for the same step on real tensors. Each network's own forward and backward pass is also
counted alone, per image or pair, to compare with published model sizes.
"""

from __future__ import annotations

import torch

from foundation.cost import TrainingCost, count_flops

from .config import SANConfig
from .discriminator import build_discriminator
from .generator import build_generator
from .image_pool import ImagePool
from .losses import build_perceptual_loss
from .train import ModelBatch, train_step


def training_cost(
    config: SANConfig, *, max_steps: int | None = None, device: str = "meta"
) -> TrainingCost:
    """Count one training step of ``config`` and scale it to the run.

    Args:
        max_steps: the run stops there (default: ``config.total_steps``).
        device: ``"meta"`` (shapes only, instant) or ``"cpu"`` (real arithmetic; tests).
    """
    with torch.device(device):
        generator = build_generator(config=config)
        discriminator = build_discriminator(config=config)
        perceptual = build_perceptual_loss(config=config, pretrained=False)
    batch, (height, width) = config.batch_size, config.image_size
    gen = torch.Generator().manual_seed(config.seed)

    def tensor(channels: int) -> torch.Tensor:  # [B, C, H, W]; values do not change the count
        return torch.rand(batch, channels, height, width, generator=gen).to(device)

    inputs = ModelBatch(
        tensor(3), tensor(1), tensor(config.parsing_classes),
        tensor(3), tensor(1), tensor(config.parsing_classes),
    )  # fmt: skip
    opt_g = torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas)
    step_flops = count_flops(
        lambda: train_step(
            generator=generator,
            discriminator=discriminator,
            perceptual=perceptual,
            opt_g=opt_g,
            opt_d=opt_d,
            batch=inputs,
            config=config,
            pool=ImagePool(0, seed=0),  # the pool only swaps images: no FLOPs
        )
    )
    b = inputs

    def generated() -> torch.Tensor:  # [B, 3, H, W]
        return generator(
            b.source_image, b.source_mask, b.source_parsing, b.target_mask, b.target_parsing
        )

    networks = {
        "generator": count_flops(lambda: generated().sum().backward()),
        "discriminator": count_flops(
            lambda: discriminator(b.source_image, b.target_image).sum().backward()
        ),
    }
    parameters = {
        "generator": sum(p.numel() for p in generator.parameters()),
        "discriminator": sum(p.numel() for p in discriminator.parameters()),
    }
    if perceptual is not None:
        image = b.target_image.clone().requires_grad_(True)
        networks["perceptual"] = count_flops(lambda: perceptual(image, b.target_image).backward())
        parameters["perceptual"] = sum(p.numel() for p in perceptual.parameters())
    steps = config.total_steps if max_steps is None else min(max_steps, config.total_steps)
    return TrainingCost(
        parameters=parameters,
        step_flops=step_flops,
        networks={name: flops // batch for name, flops in networks.items()},
        steps=steps,
        batch_size=batch,
    )
