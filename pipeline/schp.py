"""SCHP human parsing network (Li et al., "Self-Correction for Human Parsing", TPAMI 2020).

A pure-torch re-implementation of the official "AugmentCE2P" model (a CE2P network: ResNet-101
backbone, PSP context module, edge branch, decoder and fusion head) whose parameter and buffer
names match the official checkpoint ``exp-schp-201908261155-lip.pth`` exactly, so it loads with
``strict=True`` after stripping the ``module.`` (DataParallel) prefix. The official code needs the
compiled InPlaceABN extension; :class:`InPlaceABN` below computes the same inference-time
function in plain torch.

Only inference is supported: every normalisation layer uses its running statistics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from foundation.weights import (
    WeightsFile,
    check_fits,
    load_into,
    load_state_dict,
    resolve_weights,
    state_dict_of,
)
from storage import LIP_LABELS


@dataclass(frozen=True)
class SCHPWeights:
    """An official SCHP checkpoint and the preprocessing it was trained with.

    Attributes:
        file: file name and publication page (Google Drive: no direct download link).
        labels: class names, index = label value.
        input_size: (height, width) the whole image is letterboxed into.
        mean, std: per-channel normalisation, in the network's (BGR) channel order.
        bgr: the network expects BGR input (the official code reads images with OpenCV).
        flip_pairs: (left, right) label pairs swapped when the image is mirrored.
    """

    file: WeightsFile
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    bgr: bool
    flip_pairs: tuple[tuple[int, int], ...]


SCHP_LIP = SCHPWeights(
    file=WeightsFile(
        file_name="exp-schp-201908261155-lip.pth",
        url="https://drive.google.com/file/d/1k4dllHpu0bdx38J7H28rVVLpU-kOHmnH/view?usp=sharing",
    ),
    labels=LIP_LABELS,
    input_size=(473, 473),
    mean=(0.406, 0.456, 0.485),
    std=(0.225, 0.224, 0.229),
    bgr=True,
    flip_pairs=((14, 15), (16, 17), (18, 19)),
)

SCHP_NETWORK = "SCHP ResNet-101 (LIP)"


@dataclass(frozen=True)
class SCHPConfig:
    """Architecture settings; the defaults are those of the official LIP model."""

    num_classes: int = 20  # LIP labels
    layers: tuple[int, int, int, int] = (3, 4, 23, 3)  # ResNet-101 bottleneck counts
    layer4_dilation: int = 2  # layer4 keeps stride 16 with dilated 3x3 convs (CE2P / DeepLab)


class InPlaceABN(nn.Module):
    """Inference-time InPlace Activated BatchNorm (Rota Bulo et al., CVPR 2018).

    ``y = act((x - running_mean) / sqrt(running_var + eps) * (|weight| + eps) + bias)``.
    InPlaceABN keeps the scale strictly positive (``|weight| + eps``) so that the activation can
    be inverted in the backward pass; a checkpoint trained with it may hold negative weights,
    where ``nn.BatchNorm2d`` would flip the sign of the channel. Parameters and buffers are
    ``weight``, ``bias``, ``running_mean`` and ``running_var`` only: the official checkpoint has
    no ``num_batches_tracked``.

    Args:
        num_features: channels C.
        activation: ``"leaky_relu"`` (the official default, used in all heads) or
            ``"identity"`` (the backbone, which applies ReLU explicitly).
        slope: leaky ReLU negative slope.
        eps: added to the variance and to ``|weight|``.

    Shape: ``[B, C, H, W]`` float in, same shape out.
    """

    running_mean: Tensor
    running_var: Tensor

    def __init__(
        self,
        num_features: int,
        *,
        activation: Literal["leaky_relu", "identity"] = "leaky_relu",
        slope: float = 0.01,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.activation = activation
        self.slope = slope
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x: Tensor) -> Tensor:
        y = F.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight.abs() + self.eps,
            self.bias,
            training=False,
            eps=self.eps,
        )
        if self.activation == "leaky_relu":
            return F.leaky_relu(y, self.slope)
        return y


def _backbone_norm(channels: int) -> InPlaceABN:
    return InPlaceABN(channels, activation="identity")


def _conv_abn(in_channels: int, out_channels: int, kernel_size: int = 1) -> nn.Sequential:
    """Conv (no bias) + InPlaceABN with leaky ReLU: keys ``0.weight`` and ``1.*``."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
    return nn.Sequential(conv, InPlaceABN(out_channels))


def _resize(x: Tensor, size: tuple[int, int]) -> Tensor:
    # The official model resizes every feature map with align_corners=True.
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1, 3x3, 1x1; expansion 4) with identity-activation norms + ReLU."""

    expansion = 4

    def __init__(
        self, in_channels: int, planes: int, *, stride: int = 1, dilation: int = 1
    ) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = _backbone_norm(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = _backbone_norm(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = _backbone_norm(out_channels)
        self.downsample: nn.Sequential | None = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                _backbone_norm(out_channels),
            )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return F.relu(out + shortcut)


class PSPModule(nn.Module):
    """Pyramid pooling (Zhao et al., PSPNet, CVPR 2017): bins 1, 2, 3, 6 + 3x3 bottleneck."""

    def __init__(self, in_channels: int = 2048, out_channels: int = 512) -> None:
        super().__init__()
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(size),
                nn.Conv2d(in_channels, out_channels, 1, bias=False),
                InPlaceABN(out_channels),
            )
            for size in (1, 2, 3, 6)
        )
        self.bottleneck = _conv_abn(in_channels + 4 * out_channels, out_channels, kernel_size=3)

    def forward(self, x: Tensor) -> Tensor:
        size = (x.shape[2], x.shape[3])
        pyramid = [_resize(stage(x), size) for stage in self.stages]
        return self.bottleneck(torch.cat([*pyramid, x], dim=1))


class EdgeModule(nn.Module):
    """CE2P edge branch: one shared 3x3 edge classifier on layer1-3 features.

    Returns edge logits ``[B, 2, H1, W1]`` and the concatenated edge features
    ``[B, 768, H1, W1]`` at layer1 resolution (the fusion head consumes the features).
    """

    def __init__(
        self, in_channels: tuple[int, int, int] = (256, 512, 1024), mid: int = 256
    ) -> None:
        super().__init__()
        self.conv1 = _conv_abn(in_channels[0], mid)
        self.conv2 = _conv_abn(in_channels[1], mid)
        self.conv3 = _conv_abn(in_channels[2], mid)
        self.conv4 = nn.Conv2d(mid, 2, 3, padding=1)
        self.conv5 = nn.Conv2d(2 * 3, 2, 1)

    def forward(self, x1: Tensor, x2: Tensor, x3: Tensor) -> tuple[Tensor, Tensor]:
        size = (x1.shape[2], x1.shape[3])
        features = [self.conv1(x1), self.conv2(x2), self.conv3(x3)]
        edges = [_resize(self.conv4(f), size) for f in features]
        features = [_resize(f, size) for f in features]
        return self.conv5(torch.cat(edges, dim=1)), torch.cat(features, dim=1)


class DecoderModule(nn.Module):
    """CE2P parsing decoder: context features upsampled to layer1 resolution + 48 low-level
    channels. Returns parsing logits ``[B, K, H1, W1]`` and features ``[B, 256, H1, W1]``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.conv1 = _conv_abn(512, 256)
        self.conv2 = _conv_abn(256, 48)
        self.conv3 = nn.Sequential(*_conv_abn(256 + 48, 256), *_conv_abn(256, 256))
        self.conv4 = nn.Conv2d(256, num_classes, 1)

    def forward(self, context: Tensor, low: Tensor) -> tuple[Tensor, Tensor]:
        size = (low.shape[2], low.shape[3])
        x = torch.cat([_resize(self.conv1(context), size), self.conv2(low)], dim=1)
        features = self.conv3(x)
        return self.conv4(features), features


class SCHPOutput(NamedTuple):
    """Logits of the three heads, all at 1/4 of the input resolution (layer1's stride).

    ``fusion`` is the final prediction the official extractor uses.
    """

    parsing: Tensor  # [B, K, H/4, W/4]
    fusion: Tensor  # [B, K, H/4, W/4]
    edge: Tensor  # [B, 2, H/4, W/4]


class SCHPNet(nn.Module):
    """AugmentCE2P with a ResNet-101 backbone (3-conv stem, dilated layer4, output stride 16).

    Input: ``[B, 3, H, W]`` float, BGR, normalised with :data:`SCHP_LIP` mean/std.
    Output: :class:`SCHPOutput` of logits (``H/4`` rounded up by the strided convs).
    """

    def __init__(self, config: SCHPConfig = SCHPConfig()) -> None:
        super().__init__()
        # Deep stem of three 3x3 convs (as in PSPNet/CE2P) instead of one 7x7 conv.
        self.conv1 = nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False)
        self.bn1 = _backbone_norm(64)
        self.conv2 = nn.Conv2d(64, 64, 3, padding=1, bias=False)
        self.bn2 = _backbone_norm(64)
        self.conv3 = nn.Conv2d(64, 128, 3, padding=1, bias=False)
        self.bn3 = _backbone_norm(128)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        blocks = config.layers
        self.layer1 = self._make_layer(128, 64, blocks[0])
        self.layer2 = self._make_layer(256, 128, blocks[1], stride=2)
        self.layer3 = self._make_layer(512, 256, blocks[2], stride=2)
        self.layer4 = self._make_layer(1024, 512, blocks[3], dilation=config.layer4_dilation)
        self.context_encoding = PSPModule(2048, 512)
        self.edge = EdgeModule()
        self.decoder = DecoderModule(config.num_classes)
        # The official attribute name is misspelt "fushion"; it is kept so checkpoint keys match.
        # The dropout layer (index 2) is inert at inference but holds the index of the classifier.
        self.fushion = nn.Sequential(
            *_conv_abn(256 + 3 * 256, 256),
            nn.Dropout2d(0.1),
            nn.Conv2d(256, config.num_classes, 1),
        )

    @staticmethod
    def _make_layer(
        in_channels: int, planes: int, blocks: int, *, stride: int = 1, dilation: int = 1
    ) -> nn.Sequential:
        layers = [Bottleneck(in_channels, planes, stride=stride, dilation=dilation)]
        layers += [
            Bottleneck(planes * Bottleneck.expansion, planes, dilation=dilation)
            for _ in range(blocks - 1)
        ]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> SCHPOutput:
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        x = self.maxpool(F.relu(self.bn3(self.conv3(x))))
        x1 = self.layer1(x)  # stride 4, 256 channels
        x2 = self.layer2(x1)  # stride 8, 512
        x3 = self.layer3(x2)  # stride 16, 1024
        x4 = self.layer4(x3)  # stride 16 (dilated), 2048
        parsing, parsing_features = self.decoder(self.context_encoding(x4), x1)
        edge, edge_features = self.edge(x1, x2, x3)
        fusion = self.fushion(torch.cat([parsing_features, edge_features], dim=1))
        return SCHPOutput(parsing=parsing, fusion=fusion, edge=edge)


def strip_module_prefix(state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    """Drop the ``module.`` prefix that ``nn.DataParallel`` puts on every official key."""
    prefix = "module."
    return {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state_dict.items()}


def build_schp(
    *,
    config: SCHPConfig = SCHPConfig(),
    weights: str | Path | None = None,
    pretrained: bool = True,
    spec: SCHPWeights = SCHP_LIP,
) -> SCHPNet:
    """Build the SCHP network in eval mode on the CPU.

    Args:
        config: architecture settings (official LIP model by default).
        weights: an explicit checkpoint file, or a folder holding ``spec.file.file_name``;
            ``None`` searches the weights folders (see :mod:`foundation.weights`).
        pretrained: ``False`` returns randomly initialised weights (tests, benchmarks).
        spec: which official checkpoint to look for.

    Raises:
        MissingWeightsError: ``pretrained`` and the checkpoint is nowhere on disk; the message
            names the file and its Google Drive page.
        WrongNetworkError: the checkpoint holds another network's tensors.
    """
    if not pretrained:
        return SCHPNet(config).eval()
    path = resolve_weights(spec.file, path=weights)
    state_dict = strip_module_prefix(load_state_dict(path))
    # Build on the meta device and adopt the checkpoint's tensors: no second 267 MB allocation.
    with torch.device("meta"):
        model = SCHPNet(config)
    load_into(
        model,
        state_dict,
        path=path,
        network=SCHP_NETWORK,
        official=spec.file.file_name,
        assign=True,
    )
    return model.eval()


def check_schp_weights(path: Path, config: SCHPConfig = SCHPConfig()) -> None:
    """Check that ``path`` loads and holds :func:`build_schp`'s tensors, without reading them
    (the file is memory-mapped; the network is built on the meta device).

    Raises:
        UnreadableWeightsError: the file is truncated, unsafe or another network's.
    """
    with torch.device("meta"):
        expected = {name: tuple(v.shape) for name, v in SCHPNet(config).state_dict().items()}
    state = strip_module_prefix(state_dict_of(path))
    check_fits(state, expected, path=path, network=SCHP_NETWORK, official=SCHP_LIP.file.file_name)
