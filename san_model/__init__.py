"""The Semantic Attention Network (SAN) person-image generator: tensors in, tensors out.

Main entry points: :class:`SANConfig` (settings and the paper's presets), :func:`build_generator`
/ :func:`generate` (inference on stored uint8 arrays), :func:`train_san` (training on in-memory
arrays) and :func:`load_generator` (a trained generator from a run folder or checkpoint).
"""

from .checkpoint import load_generator
from .config import SANConfig
from .discriminator import build_discriminator
from .generator import build_generator, generate
from .train import SANTrainData, TrainResult, train_san

__all__ = [
    "SANConfig",
    "SANTrainData",
    "TrainResult",
    "build_discriminator",
    "build_generator",
    "generate",
    "load_generator",
    "train_san",
]
