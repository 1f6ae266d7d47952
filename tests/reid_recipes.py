"""Re-ID recipes small enough for tests on the CPU (imported as ``tests.reid_recipes``)."""

from __future__ import annotations

import dataclasses
from typing import Any

from reid.config import TrainConfig
from reid.models import ReIDModelConfig

# The input size of the stores of tests/conftest.py, and of the training loop's toy images
# (with 2-pixel crop jitter and batch 8).
STORE_INPUT: dict[str, Any] = {"height": 64, "width": 32}
TOY_INPUT: dict[str, Any] = {"height": 32, "width": 16, "pad": 2, "batch_size": 8}


def tiny_recipe(**changes: Any) -> TrainConfig:
    """ResNet-18 from random weights for one epoch at 64x32, batch 8, without random erasing
    (the stores of tests/conftest.py); ``changes`` replace any field."""
    base = TrainConfig(
        model=ReIDModelConfig(arch="resnet18", pretrained=False),
        **STORE_INPUT,
        batch_size=8,
        epochs=1,
        random_erasing=0.0,
    )
    return dataclasses.replace(base, **changes)
