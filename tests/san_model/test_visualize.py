"""Sample grids: layout and the fixed LIP palette."""

from pathlib import Path

import numpy as np
from PIL import Image

from san_model.visualize import LIP_PALETTE, MASK_FLOOR, colorize_pose, sample_grid, save_png


def test_palette_is_fixed_and_distinct() -> None:
    assert LIP_PALETTE.shape == (20, 3) and LIP_PALETTE.dtype == np.uint8
    assert len({tuple(colour) for colour in LIP_PALETTE}) == 20
    assert tuple(LIP_PALETTE[0]) == (0, 0, 0) and tuple(LIP_PALETTE[5]) == (128, 0, 128)


def test_pose_colours_mark_mask_and_parsing() -> None:
    masks = np.array([[[0, 1, 1]]], dtype=np.uint8)
    parsing = np.array([[[0, 0, 13]]], dtype=np.uint8)
    colours = colorize_pose(masks, parsing)
    assert colours.tolist() == [[[[0, 0, 0], [MASK_FLOOR] * 3, [192, 64, 128]]]]


def test_grid_layout_and_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (3, 8, 4, 3), dtype=np.uint8) for _ in range(3)]
    masks = rng.integers(0, 2, (3, 8, 4), dtype=np.uint8)
    parsing = rng.integers(0, 20, (3, 8, 4), dtype=np.uint8)
    grid = sample_grid(images[0], masks, parsing, images[1], images[2])
    assert grid.shape == (24, 16, 3) and grid.dtype == np.uint8
    row = 1  # second pair: rows 8..15, panels of width 4
    assert np.array_equal(grid[8:16, 0:4], images[0][row])
    assert np.array_equal(grid[8:16, 4:8], colorize_pose(masks, parsing)[row])
    assert np.array_equal(grid[8:16, 8:12], images[1][row])
    assert np.array_equal(grid[8:16, 12:16], images[2][row])
    path = save_png(grid, tmp_path / "samples" / "grid.png")
    assert np.array_equal(np.asarray(Image.open(path)), grid)
