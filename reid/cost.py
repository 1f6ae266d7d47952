"""What one Re-ID training run costs: parameters, FLOPs per step, total FLOPs
(``reid train --dry-run``).

The step counted is the training objective of :mod:`reid.train` (backbone, head, identification
and, for Siamese, verification loss), forward and backward, on the real network of the config
built on the ``meta`` device (shapes only) with one global batch at the recipe's input size.
Bag of Tricks' batch-hard triplet term is left out of the count: it branches on its values,
which meta tensors do not have, and its [B, B] distances are a few MFLOP beside the backbone's
TFLOPs.
"""

from __future__ import annotations

import dataclasses

import torch

from foundation.cost import TrainingCost, count_flops
from reid.config import TrainConfig
from reid.models import build_reid_model
from reid.train import _Objective, batch_sampler


def training_cost(
    config: TrainConfig,
    labels: torch.Tensor,
    *,
    max_steps: int | None = None,
    device: str = "meta",
) -> TrainingCost:
    """Count one training step of ``config`` and scale it to the run on ``labels``.

    Args:
        labels: int64 ``[N]`` identity of each training image (real and generated): they give
            the number of classes and, through the recipe's batch sampler, the steps per epoch.
        max_steps: the run stops there (default: ``epochs`` full epochs).
        device: ``"meta"`` (shapes only, instant) or ``"cpu"`` (real arithmetic; tests).

    Raises:
        ValueError: the images cannot fill one batch of the recipe.
    """
    classes, _, sampler = batch_sampler(config, labels)
    siamese = config.model.kind == "siamese"
    total = config.epochs * sampler.steps_per_epoch
    counted = dataclasses.replace(config, triplet_weight=0.0)
    with torch.device(device):
        model = build_reid_model(
            config=dataclasses.replace(config.model, pretrained=False), num_classes=len(classes)
        )
        objective = _Objective(model, counted)
        gen = torch.Generator().manual_seed(config.seed)
        b = config.batch_size
        images = torch.rand(b, 3, config.height, config.width, generator=gen).to(device)
        ids = torch.randint(len(classes), (b,), generator=gen).to(device)
        same = (torch.rand(b // 2, generator=gen) < 0.5).float().to(device) if siamese else None
    step_flops = count_flops(lambda: objective(images, ids, same).backward())
    return TrainingCost(
        parameters={"model": sum(p.numel() for p in model.parameters())},
        step_flops=step_flops,
        networks={"model": step_flops // b},
        steps=total if max_steps is None else min(max_steps, total),
        batch_size=config.batch_size,
    )
