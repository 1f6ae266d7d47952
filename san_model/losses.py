"""SAN losses (paper section 3.3, eq. 4-7).

Generator: ``alpha * L_adv + beta * L_l1 + gamma * L_perc`` (eq. 7). The adversarial terms work
on the discriminator's probabilities in float32 with clamped logs (``F.binary_cross_entropy``
refuses bf16 autocast, and its log would overflow at exactly 0 or 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .checkpoint import IMAGENET_MEAN, IMAGENET_STD, vgg19_imagenet_state_dict
from .config import VGG19_RELU_INDEX, SANConfig

# Probabilities are clamped into [EPS, 1 - EPS] before the log: a float32 sigmoid saturates.
EPS = 1e-6


class VGGPerceptualLoss(nn.Module):
    """Eq. 6: mean over (C, H, W) and batch of VGG-19 activation differences, squared (``l2``,
    the formula) or absolute (``l1``, PATN's code and the paper's wording).

    Inputs are images ``[B, 3, H, W]`` in [-1, 1]; they are mapped to [0, 1] and normalised with
    the ImageNet mean/std VGG-19 was trained with. The network is frozen and cut after the
    configured ReLU (torchvision ``features`` index), and always stays in eval mode.
    """

    def __init__(
        self,
        *,
        layer: str = "relu1_2",
        distance: Literal["l2", "l1"] = "l2",
        pretrained: bool = True,
        weights_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        self.distance = distance
        if layer not in VGG19_RELU_INDEX:
            raise ValueError(
                f"unknown VGG-19 layer {layer!r}; choose one of {sorted(VGG19_RELU_INDEX)}"
            )
        self.layer = layer
        self.pretrained = pretrained
        cut = VGG19_RELU_INDEX[layer] + 1
        # Imported here: torchvision pulls in torch._dynamo (5-8 s on a busy 2-core machine),
        # which the no-perceptual ablation, DDP workers and inference never need.
        from torchvision.models.vgg import cfgs, make_layers

        # Only torchvision's ``features`` stack (config "E" = VGG-19): building the whole
        # vgg19() would also initialise its 120M-parameter classifier, about 2 s for nothing.
        features = make_layers(cfgs["E"], batch_norm=False)[:cut]
        if pretrained:
            state = vgg19_imagenet_state_dict(path=weights_path, layer=layer)
            prefix = "features."
            kept = {
                key[len(prefix) :]: value
                for key, value in state.items()
                if key.startswith(prefix) and int(key.split(".")[1]) < cut
            }
            features.load_state_dict(kept, strict=True)
        else:  # torchvision's VGG init, from a fixed seed: the same random network every time
            generator = torch.Generator().manual_seed(0)
            for layer in features:
                if isinstance(layer, nn.Conv2d):
                    nn.init.kaiming_normal_(
                        layer.weight, mode="fan_out", nonlinearity="relu", generator=generator
                    )
                    nn.init.zeros_(layer.bias)
        features.requires_grad_(False)
        self.features = features.eval()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGPerceptualLoss:
        """Stay in eval mode: VGG-19 is a fixed feature extractor (no dropout/BN in features)."""
        return super().train(False)

    def activations(self, images: torch.Tensor) -> torch.Tensor:
        """phi_rho of eq. 6 for images ``[B, 3, H, W]`` in [-1, 1]."""
        normalised = ((images + 1.0) * 0.5 - self.mean) / self.std
        return self.features(normalised)

    def forward(self, generated: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Scalar: ``mean((phi(generated) - phi(target))^2)`` (``l2``) or ``mean(|...|)``
        (``l1``); no gradient flows to the target."""
        target_features = self.activations(target).detach().float()
        generated_features = self.activations(generated).float()
        if self.distance == "l1":
            return F.l1_loss(generated_features, target_features)
        return F.mse_loss(generated_features, target_features)


def build_perceptual_loss(
    *, config: SANConfig, pretrained: bool = True, weights_path: str | Path | None = None
) -> VGGPerceptualLoss | None:
    """The configured perceptual loss, or ``None`` when ``use_perceptual=False`` (no VGG built).

    ``pretrained=False`` keeps a randomly initialised VGG-19: only for tests and explicitly
    declared offline runs, never for results.
    """
    if not config.use_perceptual:
        return None
    return VGGPerceptualLoss(
        layer=config.perceptual_layer,
        distance=config.perceptual_distance,
        pretrained=pretrained,
        weights_path=weights_path,
    )


@dataclass(frozen=True)
class GeneratorLoss:
    """Eq. 7's terms; ``total`` carries the graph, the terms are for logging."""

    total: torch.Tensor
    adversarial: torch.Tensor
    l1: torch.Tensor
    perceptual: torch.Tensor


def _log(probabilities: torch.Tensor) -> torch.Tensor:
    return probabilities.float().clamp(EPS, 1.0 - EPS).log()


def generator_loss(
    *,
    fake_probability: torch.Tensor,
    generated: torch.Tensor,
    target: torch.Tensor,
    config: SANConfig,
    perceptual: VGGPerceptualLoss | None,
) -> GeneratorLoss:
    """Eq. 7 for the generator.

    Args:
        fake_probability: D(I_ps, generated), any shape, in (0, 1).
        generated: ``[B, 3, H, W]`` in [-1, 1], the generator output.
        target: ``[B, 3, H, W]`` in [-1, 1], the ground truth I_pt.
        config: supplies alpha, beta, gamma.
        perceptual: the eq. 6 module, ``None`` for the no-perceptual ablation (term is 0).

    L_adv is eq. 4's generator side in the usual non-saturating form ``-log D(I_ps, fake)``
    (minimising ``log(1 - D)`` has vanishing gradients early on). L_l1 is eq. 5 averaged per
    pixel.
    """
    adversarial = -_log(fake_probability).mean()
    l1 = F.l1_loss(generated.float(), target.float())
    if perceptual is None:
        perc = torch.zeros((), device=generated.device)
    else:
        perc = perceptual(generated, target)
    total = config.alpha * adversarial + config.beta * l1 + config.gamma * perc
    return GeneratorLoss(total=total, adversarial=adversarial, l1=l1, perceptual=perc)


def discriminator_loss(probability: torch.Tensor, *, real: bool) -> torch.Tensor:
    """One half of eq. 4's discriminator side, a scalar.

    ``-log D(real) / 2`` for a batch of real pairs, ``-log(1 - D(fake)) / 2`` for a batch of
    fakes; their sum is PATN's ``backward_D_basic`` loss. The two halves are separate because D
    sees real and fake pairs in separate forward passes (each BatchNorm batch is one kind), as
    in PATN. PATN also multiplies by the adversarial weight, which Adam's scale invariance makes
    irrelevant, so it is left out.

    Args:
        probability: D's output for one kind of pair, any shape, in (0, 1).
        real: whether the pairs were real.
    """
    target = probability if real else 1.0 - probability.float()
    return 0.5 * -_log(target).mean()
