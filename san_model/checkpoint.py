"""Every file the SAN package reads or writes: VGG-19 weights and training checkpoints.

A checkpoint is one ``torch.save`` dict of tensors and plain Python values, so it loads with
``torch.load(weights_only=True)`` (no pickled code). Keys: ``config`` (dict), ``step`` (int),
``generator``, ``discriminator``, ``opt_g``, ``opt_d``, ``sched_g``, ``sched_d`` (state dicts),
``sampler_rng`` (uint8 tensor), ``image_pool`` (its past fakes and generator state) and
``run_tag`` (str or None: what the run was trained on, see :func:`san_model.train.train_san`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from foundation.weights import (
    WeightsFile,
    check_fits,
    load_state_dict,
    resolve_weights,
    state_dict_of,
)

from .config import VGG19_RELU_INDEX, SANConfig
from .generator import SANGenerator, build_generator

# torchvision's ImageNet VGG-19 (IMAGENET1K_V1), the network of eq. 6.
VGG19_WEIGHTS = WeightsFile(
    file_name="vgg19-dcbfe2b4.pth",
    url="https://download.pytorch.org/models/vgg19-dcbfe2b4.pth",
    sha256_prefix="dcbfe2b4",
)
# The normalisation VGG-19 was trained with: RGB in [0, 1], then (x - mean) / std.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

VGG19_NETWORK = "VGG-19 (ImageNet)"

CHECKPOINT_NAME = "latest.pt"


def vgg19_imagenet_state_dict(
    *, path: str | Path | None = None, download: bool = True, layer: str = "relu5_4"
) -> dict[str, torch.Tensor]:
    """The official VGG-19 ImageNet state dict (torchvision key names ``features.N.*``).

    Args:
        layer: the deepest layer used; the file must hold VGG-19's tensors up to it.
    Raises:
        foundation.weights.MissingWeightsError: naming ``vgg19-dcbfe2b4.pth`` and its URL
            when the file is neither on disk nor downloadable.
        foundation.weights.WrongNetworkError: the file holds no VGG-19 ``features`` up to
            ``layer``.
    """
    resolved = resolve_weights(VGG19_WEIGHTS, path=path, download=download)
    state = load_state_dict(resolved)
    check_fits(
        state,
        _vgg19_feature_shapes(layer),
        path=resolved,
        network=VGG19_NETWORK,
        official=VGG19_WEIGHTS.file_name,
        extra=True,
    )
    return state


def check_vgg19_weights(path: str | Path, *, layer: str) -> None:
    """Check that ``path`` loads and holds VGG-19's ``features`` tensors up to ``layer``,
    without reading them (the file is memory-mapped).

    Raises:
        foundation.weights.UnreadableWeightsError: truncated, unsafe or another network's.
    """
    check_fits(
        state_dict_of(path),
        _vgg19_feature_shapes(layer),
        path=path,
        network=VGG19_NETWORK,
        official=VGG19_WEIGHTS.file_name,
        extra=True,
    )


def _vgg19_feature_shapes(layer: str) -> dict[str, tuple[int, ...]]:
    """Name -> shape of torchvision VGG-19's ``features.N.*`` tensors up to ``layer`` (the
    deeper ones and the classifier's are never used)."""
    # Imported here: torchvision costs seconds to import, and only the perceptual loss needs it.
    from torchvision.models.vgg import cfgs, make_layers

    with torch.device("meta"):
        features = make_layers(cfgs["E"], batch_norm=False)[: VGG19_RELU_INDEX[layer] + 1]
    return {f"features.{name}": tuple(v.shape) for name, v in features.state_dict().items()}


def checkpoint_path(run_dir_or_ckpt: str | Path) -> Path:
    """The checkpoint file of a run folder (``checkpoints/latest.pt``), or the file itself."""
    path = Path(run_dir_or_ckpt)
    return path / "checkpoints" / CHECKPOINT_NAME if path.is_dir() else path


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` atomically: to a temporary file beside ``path``, then ``os.replace``.

    A crash mid-write leaves the previous checkpoint intact, so resume always finds a whole file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(run_dir_or_ckpt: str | Path) -> dict[str, Any]:
    """Read a checkpoint on the CPU with ``weights_only=True``."""
    path = checkpoint_path(run_dir_or_ckpt)
    if not path.is_file():
        raise FileNotFoundError(f"no SAN checkpoint at {path}")
    return torch.load(path, map_location="cpu", weights_only=True)


def read_generator_weights(
    run_dir_or_ckpt: str | Path,
) -> tuple[dict[str, torch.Tensor], SANConfig]:
    """The generator state dict and the config it was trained with."""
    state = load_checkpoint(run_dir_or_ckpt)
    return state["generator"], SANConfig.from_dict(state["config"])


def load_generator(
    run_dir_or_ckpt: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[SANGenerator, SANConfig]:
    """A trained generator in eval mode on ``device``, with its config (for synthesis/eval)."""
    weights, config = read_generator_weights(run_dir_or_ckpt)
    generator = build_generator(config=config, weights=weights)
    return generator.to(device).eval(), config
