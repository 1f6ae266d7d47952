"""Re-ID networks: IDE (ResNet classifier) and the Siamese identification + verification net.

IDE ("ID-discriminative embedding", Zheng et al. 2016, "Person Re-identification: Past, Present
and Future", section 5.2): an ImageNet ResNet-50 fine-tuned as a classifier over the training
identities; at test time the pooled 2,048-d features are compared. Siamese (Zheng et al. 2017,
"A Discriminatively Learned CNN Embedding for Person Re-identification"): the same backbone
shared by two images, an identification head per image and a verification head on the squared
feature difference (same / different identity).

One interface, no mode-dependent return types: ``forward_features`` -> embeddings,
``forward_head`` -> identity logits, ``forward_verification`` -> pair logits. Losses live in
:mod:`reid.losses`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import resnet18, resnet50

from foundation.weights import check_fits, state_dict_of
from reid.checkpoint import IMAGENET_WEIGHTS, imagenet_state_dict
from reid.config import FEATURE_DIMS, ReIDModelConfig


class SeededDropout(nn.Module):
    """Dropout whose masks come from :attr:`generator`, not torch's global RNG.

    Stages run as threads of one process; a global-RNG dropout would make a run's numbers
    depend on what runs beside it. :func:`reid.train.train_reid` sets :attr:`generator` (on
    the activations' device) before each step; without one it is plain ``F.dropout``.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:  # outside train_reid: plain dropout
            return F.dropout(x, self.p, training=True)
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def set_dropout_generator(model: nn.Module, generator: torch.Generator) -> None:
    """Give every :class:`SeededDropout` of ``model`` the generator of the next step."""
    for module in model.modules():
        if isinstance(module, SeededDropout):
            module.generator = generator


class IDENet(nn.Module):
    """ResNet backbone + identity classifier.

    Args:
        backbone: maps [B, 3, H, W] images to pooled [B, feature_dim] features.
        feature_dim: D; num_classes: C training identities.
        bottleneck_dim, dropout: see :class:`ReIDModelConfig`.
        generator: draws the new layers' initial weights (:func:`build_reid_model` passes a
            seeded one, so torch's global RNG is left alone; None: the global one).
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        bottleneck_dim: int | None,
        dropout: float,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        layers: list[nn.Module] = []
        width = feature_dim
        if bottleneck_dim is not None:
            linear = nn.Linear(feature_dim, bottleneck_dim)
            nn.init.kaiming_normal_(linear.weight, mode="fan_out", generator=generator)
            nn.init.zeros_(linear.bias)
            layers += [linear, nn.BatchNorm1d(bottleneck_dim)]
            width = bottleneck_dim
        classifier = nn.Linear(width, num_classes)
        # Small initial logits: uniform predictions at the start of fine-tuning.
        nn.init.normal_(classifier.weight, std=0.001, generator=generator)
        nn.init.zeros_(classifier.bias)
        self.head = nn.Sequential(*layers, SeededDropout(dropout), classifier)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """images float [B, 3, H, W] (ImageNet-normalised) -> features float [B, D]."""
        return self.backbone(images)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """features float [B, D] -> identity logits float [B, C]."""
        return self.head(features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images float [B, 3, H, W] -> identity logits float [B, C]."""
        return self.forward_head(self.forward_features(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The test-time descriptor, float [B, D]: pool5 for IDE and Siamese."""
        return self.forward_features(images)


class SiameseNet(IDENet):
    """IDE network plus the verification head of Zheng et al. 2017 (section 3.2).

    The "square layer" f_s = (f_1 - f_2)^2 is symmetric in the two images; a linear 2-way
    classifier on it (the paper's 1x1 convolution) predicts same / different identity.

    Args:
        verification_dropout: see :class:`ReIDModelConfig`.
        generator, ide: as :class:`IDENet` (the verifier's weights are drawn after its own).
    """

    def __init__(
        self, *, verification_dropout: float, generator: torch.Generator | None = None, **ide: Any
    ) -> None:
        super().__init__(generator=generator, **ide)
        verifier = nn.Linear(ide["feature_dim"], 2)
        nn.init.normal_(verifier.weight, std=0.001, generator=generator)
        nn.init.zeros_(verifier.bias)
        self.verifier = nn.Sequential(SeededDropout(verification_dropout), verifier)

    def forward_verification(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """features float [P, D] of both images of P pairs -> logits float [P, 2] (1 = same)."""
        return self.verifier((first - second).pow(2))


class BoTNet(IDENet):
    """The Bag of Tricks network (Luo et al. 2019): ResNet + BNNeck + bias-free classifier.

    BNNeck: the pooled feature f_t (what the triplet loss sees) goes through a BatchNorm whose
    shift is frozen at 0, giving f_i, which the identity classifier (no bias) reads and which
    is the test-time descriptor (:meth:`embed`). The two losses then act on differently
    normalised features instead of pulling one feature two ways.
    """

    def __init__(
        self,
        *,
        backbone: nn.Module,
        feature_dim: int,
        num_classes: int,
        generator: torch.Generator | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self.backbone = backbone
        neck = nn.BatchNorm1d(feature_dim)
        neck.bias.requires_grad_(False)  # BNNeck: scale learns, shift stays 0
        classifier = nn.Linear(feature_dim, num_classes, bias=False)
        nn.init.normal_(classifier.weight, std=0.001, generator=generator)
        self.head = nn.Sequential(neck, classifier)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """f_i: the BNNeck feature, float [B, D]."""
        return self.head[0](self.forward_features(images))


def _backbone(arch: str, last_stride: int) -> nn.Module:
    """torchvision ResNet with the classifier removed: its forward returns pooled features."""
    net = resnet50(weights=None) if arch == "resnet50" else resnet18(weights=None)
    if last_stride not in (1, 2):
        raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
    first = net.layer4[0]
    # The stride of the first layer4 block sits on conv2 in Bottleneck, conv1 in BasicBlock.
    strided = first.conv2 if arch == "resnet50" else first.conv1
    strided.stride = (last_stride, last_stride)
    first.downsample[0].stride = (last_stride, last_stride)
    net.fc = nn.Identity()
    return net


def check_backbone_weights(arch: str, path: str | Path) -> None:
    """Check that ``path`` loads and holds the ImageNet ResNet ``arch``'s tensors (its ``fc``
    classifier aside), without reading them (memory-mapped; the network built on meta).

    Raises:
        UnreadableWeightsError: the file is truncated, unsafe or another network's.
    """
    with torch.device("meta"):
        expected = {name: tuple(v.shape) for name, v in _backbone(arch, 2).state_dict().items()}
    state = {k: v for k, v in state_dict_of(path).items() if not k.startswith("fc.")}
    check_fits(
        state,
        expected,
        path=path,
        network=f"ImageNet {arch}",
        official=IMAGENET_WEIGHTS[arch].file_name,
    )


def build_reid_model(
    *,
    config: ReIDModelConfig,
    num_classes: int,
    weights: str | Path | None = None,
    download: bool = True,
    seed: int = 0,
) -> IDENet:
    """Build an IDE or Siamese network.

    Args:
        config: the architecture.
        num_classes: number of training identities C (>= 2).
        weights: explicit ImageNet weight file or folder when ``config.pretrained``; otherwise
            the weights folder / torch hub cache are searched (see :mod:`reid.checkpoint`).
        download: allow downloading the official ImageNet file when it is not found locally.
        seed: every randomly initialised weight (new layers, and the backbone when not
            pretrained) is drawn from a generator with this seed, never torch's global RNG.

    Returns:
        :class:`IDENet` (``kind="ide"``), :class:`SiameseNet` (``kind="siamese"``) or
        :class:`BoTNet` (``kind="bot"``), in
        training mode, on the CPU.

    Raises:
        MissingWeightsError: ``pretrained`` and the ImageNet file is unavailable.
    """
    if config.arch not in FEATURE_DIMS:
        raise ValueError(f"unknown arch {config.arch!r}; choose from {sorted(FEATURE_DIMS)}")
    if num_classes < 2:
        raise ValueError(f"need at least 2 identities, got {num_classes}")
    generator = torch.Generator().manual_seed(seed)
    backbone = _backbone(config.arch, config.last_stride)
    if config.pretrained:
        backbone.load_state_dict(imagenet_state_dict(config.arch, path=weights, download=download))
    else:  # torchvision's ResNet initialisation, drawn from the seeded generator
        for module in backbone.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(
                    module.weight, mode="fan_out", nonlinearity="relu", generator=generator
                )
    network: dict[str, Any] = {
        "backbone": backbone,
        "feature_dim": config.feature_dim,
        "num_classes": num_classes,
        "generator": generator,
    }
    if config.kind == "bot":
        return BoTNet(**network)
    if config.kind not in ("ide", "siamese"):
        raise ValueError(f"unknown model kind {config.kind!r}")
    network.update(bottleneck_dim=config.bottleneck_dim, dropout=config.dropout)
    if config.kind == "siamese":
        return SiameseNet(verification_dropout=config.verification_dropout, **network)
    return IDENet(**network)
