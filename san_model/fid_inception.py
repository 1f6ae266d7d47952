"""Inception-v3 pool features for FID, in the two published flavours.

* ``"torchvision"``: the protocol behind the paper's table (GFLA's ``script/metrics.py`` with its
  ``script/inception.py``, inherited from Pose-Transfer): torchvision's ImageNet Inception-v3
  (``inception_v3_google-0cc3c7bd.pth``), images in [0, 1] resized bilinearly to 299x299, then
  the per-channel affine map GFLA applies, ``x * (std / 0.5) + (mean - 0.5) / 0.5`` with the
  ImageNet mean/std. That map is torchvision's ``transform_input`` formula applied to [0, 1]
  images, not ``(x - mean) / std``; we reproduce it as written because the published numbers
  came from it.
* ``"tf-fid"``: the TensorFlow FID Inception ported by pytorch-fid
  (``pt_inception-2015-12-05-6726825d.pth``), the network behind pytorch-fid / TTUR numbers:
  images resized to 299x299 and scaled to [-1, 1]. Its architecture differs from torchvision's
  in four places (below), and its classifier has 1008 classes.

Both give the 2048-d output of the final average pool (before dropout and ``fc``). A FID value
computed with one variant is not comparable with one computed with the other.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models import Inception_V3_Weights
from torchvision.models.inception import Inception3, InceptionA, InceptionC, InceptionE

from foundation.weights import WeightsFile, load_into, load_state_dict, resolve_weights

FIDVariant = Literal["torchvision", "tf-fid"]

FEATURE_DIM = 2048  # channels of Mixed_7c, i.e. of the final average pool
INPUT_SIZE = 299  # both networks were trained at 299x299


@dataclass(frozen=True)
class FIDInceptionSpec:
    """A FID network's weights and the preprocessing that goes with them.

    Attributes:
        weights: the official weight file.
        num_classes: classifier width in that file (needed for a strict load).
        aux_logits: whether the file holds the auxiliary classifier (needed for a strict load).
        input_scale, input_shift: per-channel affine applied to the resized [0, 1] image.
    """

    weights: WeightsFile
    num_classes: int
    aux_logits: bool
    input_scale: tuple[float, float, float]
    input_shift: tuple[float, float, float]


_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)

FID_INCEPTION_SPECS: dict[FIDVariant, FIDInceptionSpec] = {
    "torchvision": FIDInceptionSpec(
        weights=WeightsFile(
            file_name="inception_v3_google-0cc3c7bd.pth",
            url=Inception_V3_Weights.IMAGENET1K_V1.url,
            sha256_prefix="0cc3c7bd",
        ),
        num_classes=1000,
        aux_logits=True,
        # GFLA script/inception.py: x * (std / 0.5) + (mean - 0.5) / 0.5 on [0, 1] images.
        input_scale=(_IMAGENET_STD[0] / 0.5, _IMAGENET_STD[1] / 0.5, _IMAGENET_STD[2] / 0.5),
        input_shift=(
            (_IMAGENET_MEAN[0] - 0.5) / 0.5,
            (_IMAGENET_MEAN[1] - 0.5) / 0.5,
            (_IMAGENET_MEAN[2] - 0.5) / 0.5,
        ),
    ),
    "tf-fid": FIDInceptionSpec(
        weights=WeightsFile(
            file_name="pt_inception-2015-12-05-6726825d.pth",
            url="https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            sha256_prefix="6726825d",
        ),
        num_classes=1008,  # the 2015 TF graph's softmax has 1008 outputs
        aux_logits=False,
        input_scale=(2.0, 2.0, 2.0),  # [0, 1] -> [-1, 1]
        input_shift=(-1.0, -1.0, -1.0),
    ),
}


def _tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3/1 "SAME" average pool as TensorFlow computes it: border windows average only the real
    pixels (``count_include_pad=False``), where torchvision's blocks divide by 9."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _tf_max_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3/1 "SAME" max pool: the TF graph's last block (Mixed_7c) pools with max, not average."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class _TFInceptionA(InceptionA):
    """torchvision's InceptionA (same parameters and key names) with TF's average pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        five = self.branch5x5_2(self.branch5x5_1(x))
        double = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pooled = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), five, double, pooled], dim=1)


class _TFInceptionC(InceptionC):
    """torchvision's InceptionC (same parameters and key names) with TF's average pool."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for conv in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = conv(double)
        pooled = self.branch_pool(_tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), seven, double, pooled], dim=1)


class _TFInceptionE(InceptionE):
    """torchvision's InceptionE (same parameters and key names) with TF's pooling.

    Args:
        in_channels: input channels (1280 for Mixed_7b, 2048 for Mixed_7c).
        max_pool: pool with max instead of average (Mixed_7c of the TF graph).
    """

    def __init__(self, in_channels: int, *, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = self.branch3x3_1(x)
        three = torch.cat([self.branch3x3_2a(split), self.branch3x3_2b(split)], dim=1)
        split = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        double = torch.cat([self.branch3x3dbl_3a(split), self.branch3x3dbl_3b(split)], dim=1)
        pooled = self.branch_pool(_tf_max_pool(x) if self.max_pool else _tf_avg_pool(x))
        return torch.cat([self.branch1x1(x), three, double, pooled], dim=1)


def _inception(variant: FIDVariant) -> Inception3:
    """An untrained network whose ``state_dict`` keys and shapes are those of the official file.

    PyTorch's default initialisation (``init_weights=False``): random weights only serve tests and
    the declared offline mode, so torchvision's slower truncated-normal init buys nothing.
    """
    spec = FID_INCEPTION_SPECS[variant]
    net = Inception3(
        num_classes=spec.num_classes,
        aux_logits=spec.aux_logits,
        transform_input=False,  # the input map is ours (FIDInceptionSpec), applied explicitly
        init_weights=False,
    )
    if variant == "tf-fid":
        net.Mixed_5b = _TFInceptionA(192, pool_features=32)
        net.Mixed_5c = _TFInceptionA(256, pool_features=64)
        net.Mixed_5d = _TFInceptionA(288, pool_features=64)
        net.Mixed_6b = _TFInceptionC(768, channels_7x7=128)
        net.Mixed_6c = _TFInceptionC(768, channels_7x7=160)
        net.Mixed_6d = _TFInceptionC(768, channels_7x7=160)
        net.Mixed_6e = _TFInceptionC(768, channels_7x7=192)
        net.Mixed_7b = _TFInceptionE(1280, max_pool=False)
        net.Mixed_7c = _TFInceptionE(2048, max_pool=True)
    return net


# Inception3 layers from the input to the final average pool (AuxLogits, dropout, fc unused).
_TRUNK = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
    "Mixed_7a",
    "Mixed_7b",
    "Mixed_7c",
    "avgpool",
)


class InceptionFeatures(nn.Module):
    """Frozen Inception-v3 mapping images to 2048-d pool features, one FID variant.

    ``net`` keeps the whole official network (auxiliary classifier and ``fc`` included) so that
    ``net.state_dict()`` has exactly the official file's keys; only the trunk runs.

    Args:
        net: the Inception3 from :func:`_inception` for ``variant``, weights loaded or random.
        variant: which FID network and preprocessing this is.
    """

    input_scale: torch.Tensor  # [1, 3, 1, 1] buffer
    input_shift: torch.Tensor  # [1, 3, 1, 1] buffer

    def __init__(self, net: Inception3, variant: FIDVariant) -> None:
        super().__init__()
        spec = FID_INCEPTION_SPECS[variant]
        self.variant: FIDVariant = variant
        self.net = net
        self.register_buffer(
            "input_scale", torch.tensor(spec.input_scale).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer(
            "input_shift", torch.tensor(spec.input_shift).view(1, 3, 1, 1), persistent=False
        )
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pool features of a batch.

        Args:
            images: [B, 3, H, W], float in [-1, 1] or uint8 in [0, 255]; any H, W.

        Returns:
            [B, 2048] float32 features (non-negative: the pool follows a ReLU).
        """
        if images.dtype == torch.uint8:
            unit = images.float() / 255.0
        else:
            unit = (images.float() + 1.0) / 2.0
        # Both protocols resize the [0, 1] image first, then apply their affine input map.
        x = F.interpolate(unit, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        x = x * self.input_scale + self.input_shift
        for name in _TRUNK:
            x = getattr(self.net, name)(x)
        return x.flatten(1)  # [B, 2048, 1, 1] -> [B, 2048]


def build_fid_extractor(
    *,
    variant: FIDVariant,
    pretrained: bool = True,
    weights_path: str | Path | None = None,
    download: bool = True,
) -> InceptionFeatures:
    """Build the frozen FID feature extractor of one variant (eval mode, no gradients, CPU).

    Args:
        variant: ``"torchvision"`` (GFLA protocol, the paper's table) or ``"tf-fid"``
            (pytorch-fid's TF Inception).
        pretrained: load the official weights; ``False`` gives a randomly initialised network
            (seeded, so identical across calls) for tests and the declared offline mode, whose
            FID values mean nothing outside that mode.
        weights_path: the weight file, or a folder holding it; default: the weights folder, then
            torch's hub cache (see :func:`foundation.weights.resolve_weights`).
        download: fetch the file from its official URL when it is nowhere on disk.

    Raises:
        MissingWeightsError: ``pretrained`` and the file is missing (the message names it and
            its URL).
    """
    spec = FID_INCEPTION_SPECS[variant]
    if not pretrained:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return InceptionFeatures(_inception(variant), variant)
    path = resolve_weights(spec.weights, path=weights_path, download=download)
    net = _inception(variant)
    load_into(net, load_state_dict(path), path=path, network=f"FID Inception-v3 ({variant})")
    return InceptionFeatures(net, variant)
