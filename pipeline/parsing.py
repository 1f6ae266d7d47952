"""Human parsing with SCHP: the official extractor's preprocessing, batched, in torch.

The official ``simple_extractor.py`` reads an image with OpenCV (BGR), letterboxes the whole image
into 473x473 with an affine warp (bilinear, black border), normalises it, runs the network,
upsamples the fusion logits to 473x473 (``align_corners=True``), warps them back to the image
size and takes the argmax. The warp has no rotation, so every step is a separable linear map:
here each one is a small ``[out, in]`` interpolation matrix per axis, applied to the whole batch
with one ``einsum``. The upsample and the warp back are folded into one matrix product, which is
the same linear map as doing them in turn but never materialises the ``[B, 20, 473, 473]``
logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from foundation.weights import resolve_weights, sha256_of
from pipeline.fanout import FanOut
from pipeline.schp import SCHP_LIP, SCHPNet, SCHPWeights, build_schp, check_schp_weights
from pipeline.segmentation import (
    ImageModel,
    ModelBlocks,
    Progress,
    run_image_stage,
)
from storage import PersonStore, StageRun, StageStamp


@dataclass(frozen=True)
class Letterbox:
    """The official SCHP affine warp of a whole image into the network input.

    Pixel centre ``(y, x)`` of the image maps to ``scale * ((y, x) - center) + target_center``
    in the input: the image is scaled uniformly so that its longer side (relative to the input's
    aspect ratio) spans the input, centred, with black bars on the other axis. As in the official
    code the extents are measured between pixel centres (``w - 1``, ``h - 1``).
    """

    scale: float
    center: tuple[float, float]  # (y, x) in image pixels
    target_center: tuple[float, float]  # (y, x) in input pixels

    @classmethod
    def fit(cls, image_size: tuple[int, int], input_size: tuple[int, int]) -> Letterbox:
        """Letterbox for an image of ``(height, width)`` into an input of ``(height, width)``."""
        (height, width), (in_height, in_width) = image_size, input_size
        # SCHP's _xywh2cs on the box [0, 0, w-1, h-1], then get_affine_transform: the box is
        # widened or heightened to the input's aspect ratio and its width mapped to in_width-1.
        aspect = in_width / in_height
        box_width = max(width - 1, aspect * (height - 1), 1e-6)
        return cls(
            scale=(in_width - 1) / box_width,
            center=((height - 1) / 2, (width - 1) / 2),
            target_center=((in_height - 1) / 2, (in_width - 1) / 2),
        )


def bilinear_matrix(coords: Tensor, size: int) -> Tensor:
    """Linear interpolation weights for sampling a length-``size`` axis at ``coords``.

    Args:
        coords: ``[n]`` float sample positions in pixel-centre units (0 = first pixel centre).
        size: length of the sampled axis.

    Returns:
        ``[n, size]`` float64 matrix ``M`` such that ``M @ signal`` is the bilinear sample. A
        neighbour outside ``[0, size - 1]`` contributes zero, as OpenCV's constant black border
        and ``grid_sample(padding_mode="zeros")`` do.
    """
    coords = coords.to(torch.float64)
    low = torch.floor(coords)
    frac = coords - low
    matrix = torch.zeros(coords.shape[0], size, dtype=torch.float64)
    rows = torch.arange(coords.shape[0])
    for index, weight in ((low, 1.0 - frac), (low + 1, frac)):
        inside = (index >= 0) & (index <= size - 1)
        matrix.index_put_((rows[inside], index[inside].long()), weight[inside], accumulate=True)
    return matrix


def warp_in_matrices(
    image_size: tuple[int, int], input_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Per-axis matrices ``([in_h, h], [in_w, w])`` letterboxing an image into the input."""
    box = Letterbox.fit(image_size, input_size)
    matrices = []
    for axis in (0, 1):
        target = torch.arange(input_size[axis], dtype=torch.float64)
        source = (target - box.target_center[axis]) / box.scale + box.center[axis]
        matrices.append(bilinear_matrix(source, image_size[axis]))
    return matrices[0], matrices[1]


def warp_back_matrices(
    logits_size: tuple[int, int], image_size: tuple[int, int], input_size: tuple[int, int]
) -> tuple[Tensor, Tensor]:
    """Per-axis matrices ``([h, lh], [w, lw])`` from network logits to image pixels.

    Each is (warp back to the image) @ (upsample ``align_corners=True`` to the input size), the
    two bilinear steps of the official extractor composed exactly.
    """
    box = Letterbox.fit(image_size, input_size)
    matrices = []
    for axis in (0, 1):
        n_in, n_logits = input_size[axis], logits_size[axis]
        grid = torch.arange(n_in, dtype=torch.float64)
        step = (n_logits - 1) / (n_in - 1) if n_in > 1 else 0.0
        upsample = bilinear_matrix(grid * step, n_logits)  # [n_in, n_logits]
        pixels = torch.arange(image_size[axis], dtype=torch.float64)
        target = box.scale * (pixels - box.center[axis]) + box.target_center[axis]
        matrices.append(bilinear_matrix(target, n_in) @ upsample)
    return matrices[0], matrices[1]


def preprocess(
    images: Tensor, *, spec: SCHPWeights = SCHP_LIP, input_size: tuple[int, int] | None = None
) -> Tensor:
    """Letterbox and normalise a batch as the official extractor does.

    Args:
        images: ``[B, H, W, 3]`` uint8 RGB, on the device to compute on.
        spec: checkpoint metadata (channel order, mean, std, default input size).
        input_size: ``(height, width)`` of the network input; ``spec.input_size`` by default.

    Returns:
        ``[B, 3, in_h, in_w]`` float32, channels in the network's order, normalised; the black
        border is ``-mean / std`` (the border is black before normalisation, as in OpenCV).
    """
    size = input_size or spec.input_size
    image_size = (int(images.shape[1]), int(images.shape[2]))
    rows, cols = (m.to(images.device, torch.float32) for m in warp_in_matrices(image_size, size))
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    x = torch.einsum("iy,bcyx,jx->bcij", rows, x, cols)
    # OpenCV warps the uint8 image and rounds to uint8 before ToTensor.
    x = x.round().clamp(0, 255) / 255.0
    if spec.bgr:
        x = x.flip(1)
    mean = torch.tensor(spec.mean, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def unflip_logits(logits: Tensor, flip_pairs: tuple[tuple[int, int], ...]) -> Tensor:
    """Map logits computed on a mirrored input back to the original frame.

    Mirrors the width axis and swaps each (left, right) label pair, since a mirrored left arm
    is predicted as a right arm (official ``evaluate.py`` flip test).

    Args:
        logits: ``[B, K, h, w]`` from the mirrored input.
        flip_pairs: label pairs to swap, e.g. ``((14, 15), (16, 17), (18, 19))`` for LIP.

    Returns:
        ``[B, K, h, w]``.
    """
    order = list(range(logits.shape[1]))
    for left, right in flip_pairs:
        order[left], order[right] = right, left
    return logits[:, order].flip(-1)


def restore_logits(
    logits: Tensor, *, image_size: tuple[int, int], input_size: tuple[int, int]
) -> Tensor:
    """Network logits ``[B, K, lh, lw]`` -> ``[B, K, H, W]`` float32 logits on the image grid."""
    rows, cols = (
        m.to(logits.device, torch.float32)
        for m in warp_back_matrices((logits.shape[2], logits.shape[3]), image_size, input_size)
    )
    return torch.einsum("hy,bkyx,wx->bkhw", rows, logits.to(torch.float32), cols)


@torch.no_grad()
def parse_images(
    model: SCHPNet,
    images: Tensor,
    *,
    spec: SCHPWeights = SCHP_LIP,
    input_size: tuple[int, int] | None = None,
    flip: bool = False,
    amp: bool | None = None,
) -> Tensor:
    """Parse a batch of images into LIP label maps.

    Args:
        model: SCHP network in eval mode, on the device of ``images``.
        images: ``[B, H, W, 3]`` uint8 RGB.
        spec: checkpoint metadata (preprocessing, flip pairs).
        input_size: network input ``(height, width)``; the official 473x473 by default. Smaller
            sizes are for tests and benchmarks.
        flip: also run the mirrored image and average the logits (official flip test).
        amp: bfloat16 autocast for the network; default on for CUDA, off elsewhere.

    Returns:
        ``[B, H, W]`` uint8 labels in ``[0, K)``, on the device of ``images``.
    """
    size = input_size or spec.input_size
    x = preprocess(images, spec=spec, input_size=size)
    batch = x.shape[0]
    if flip:
        x = torch.cat([x, x.flip(-1)])
    use_amp = images.device.type == "cuda" if amp is None else amp
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=use_amp):
        fusion = model(x).fusion.float()
    if flip:
        # Averaged at the network's resolution, before upsampling, as the official evaluation.
        fusion = 0.5 * (fusion[:batch] + unflip_logits(fusion[batch:], spec.flip_pairs))
    logits = restore_logits(fusion, image_size=(images.shape[1], images.shape[2]), input_size=size)
    return logits.argmax(1).to(torch.uint8)


def parsing_model(
    *,
    weights: Path | None,
    pretrained: bool,
    input_size: tuple[int, int],
    flip: bool,
    device: torch.device,
) -> ImageModel:
    """The parsing stage's model: ``[B, H, W, 3]`` uint8 RGB -> ``[B, H, W]`` uint8 LIP labels
    (built by :class:`pipeline.segmentation.ModelBlocks`, random weights from seed 0)."""
    network = build_schp(weights=weights, pretrained=pretrained).to(device)

    def model(images: np.ndarray) -> np.ndarray:
        batch = torch.from_numpy(np.ascontiguousarray(images)).to(device)
        return parse_images(network, batch, input_size=input_size, flip=flip).cpu().numpy()

    return model


def compute_parsing(
    store: PersonStore,
    *,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    weights: str | Path | None = None,
    flip: bool = False,
    input_size: int | tuple[int, int] = SCHP_LIP.input_size,
    pretrained: bool = True,
    progress: Progress | None = None,
    fan_out: FanOut | None = None,
) -> StageStamp:
    """The ``parsing`` stage: a 20-class LIP label map for every image of ``store``.

    Args:
        store, device, progress, fan_out: as :func:`pipeline.masks.compute_masks` (the SCHP
            network in place of the detector).
        batch_size: images per network call (doubled inside when ``flip``).
        weights: ``exp-schp-201908261155-lip.pth`` or its folder; ``None`` searches the
            weights folder (it cannot be downloaded automatically: Google Drive).
        flip: flip test-time augmentation.
        input_size: letterbox size, 473 as the official model; smaller only for tests.
        pretrained: ``False`` runs random weights (tests only).

    Returns:
        The stage stamp: ``counts["empty_parsings"]`` (all-background maps) and the per-label
        pixel fractions in ``report["label_fraction"]``.
    Raises:
        MissingWeightsError, UnreadableWeightsError: the SCHP file is missing, truncated,
            unsafe or another network's; checked under the stage's lock before anything is written.
    """
    device = torch.device(device)
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)

    def prepare(run: StageRun) -> ModelBlocks:
        # Under the stage's lock: the hash and the load check of a 255 MB file take a while.
        path = resolve_weights(SCHP_LIP.file, path=weights) if pretrained else None
        if path is not None:
            check_schp_weights(path)
        run.configure(
            {
                "model": "schp-resnet101-lip",
                "weights": sha256_of(path) if path else "random-init",
                "input_size": list(size),
                "flip": flip,
                # bfloat16 changes a few labels: part of the output's identity.
                "precision": "bf16" if device.type == "cuda" else "fp32",
            }
        )
        build = partial(
            parsing_model,
            weights=path,
            pretrained=pretrained,
            input_size=(size[0], size[1]),
            flip=flip,
            device=device,
        )
        return ModelBlocks("parsing", build, batch_size)

    return run_image_stage(
        store, kind="parsing", prepare=prepare, progress=progress, fan_out=fan_out
    )
