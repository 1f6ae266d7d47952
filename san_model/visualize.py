"""Sample grids for watching training: source | target pose | generated | ground truth.

Arrays in, a uint8 array out; :func:`save_png` is the only function that touches a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

# The 20 LIP labels in the colours SCHP's extractor writes (the PASCAL VOC bit palette):
# background, hat, hair, glove, sunglasses, upper-clothes, dress, coat, socks, pants,
# jumpsuits, scarf, skirt, face, left-arm, right-arm, left-leg, right-leg, left-shoe, right-shoe.
LIP_PALETTE = np.array(
    [
        (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128),
        (128, 0, 128), (0, 128, 128), (128, 128, 128), (64, 0, 0), (192, 0, 0),
        (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128), (64, 128, 128),
        (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0),
    ],
    dtype=np.uint8,
)  # fmt: skip

# Person pixels (mask) get a grey floor so body parts labelled "background" still show the
# mask's outline; the difference between mask and parsing is what we want to see.
MASK_FLOOR = 64


def colorize_pose(masks: np.ndarray, parsing: np.ndarray) -> np.ndarray:
    """Mask + parsing as one colour image.

    Args:
        masks: uint8 ``[B, H, W]``, non-zero = person.
        parsing: uint8 ``[B, H, W]`` LIP labels 0..19.

    Returns:
        uint8 ``[B, H, W, 3]``: palette colour per label, at least ``MASK_FLOOR`` grey inside the
        mask, black outside both.
    """
    colours = LIP_PALETTE[parsing]
    inside = (masks != 0)[..., None]
    return np.where(inside, np.maximum(colours, MASK_FLOOR), colours).astype(np.uint8)


def sample_grid(
    source: np.ndarray,
    target_mask: np.ndarray,
    target_parsing: np.ndarray,
    generated: np.ndarray,
    target: np.ndarray,
    *,
    baselines: Sequence[np.ndarray] = (),
) -> np.ndarray:
    """One row per pair: source | target mask+parsing | baselines... | generated | ground truth.

    Args:
        source, generated, target: uint8 ``[B, H, W, 3]``.
        target_mask, target_parsing: uint8 ``[B, H, W]``.
        baselines: further uint8 ``[B, H, W, 3]`` outputs shown before the generated one
            (e.g. paint by parts), so a reader compares them side by side.

    Returns:
        uint8 ``[B * H, (4 + len(baselines)) * W, 3]``.
    """
    pose = colorize_pose(target_mask, target_parsing)
    panels = [source, pose, *baselines, generated, target]
    rows = np.concatenate(panels, axis=2)  # [B, H, K * W, 3]
    batch, height, width, _ = rows.shape
    return rows.reshape(batch * height, width, 3)


def save_png(grid: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 ``[H, W, 3]`` array as PNG, creating the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return path
