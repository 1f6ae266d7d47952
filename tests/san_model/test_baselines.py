"""The paint-by-parts baseline on hand-built images with known answers."""

from __future__ import annotations

import pytest
import torch

from san_model.baselines import paint_by_parts
from san_model.metrics import part_colour_error


def _signed(levels: list[list[tuple[int, int, int]]]) -> torch.Tensor:
    """Rows of RGB grey levels -> [1, 3, H, W] in [-1, 1]."""
    return torch.tensor(levels, dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1


def _levels(image: torch.Tensor) -> torch.Tensor:
    return ((image + 1) * 127.5).round()


def test_paint_by_parts_fills_target_parts_with_source_means() -> None:
    # Source 3x2: hair (2) on row 0, upper clothes (5) on rows 1-2 in two shades, no pants.
    source = _signed(
        [
            [(10, 10, 10), (30, 30, 30)],
            [(100, 0, 0), (200, 0, 0)],
            [(100, 0, 0), (200, 0, 0)],
        ]
    )
    source_parsing = torch.tensor([[[2, 2], [5, 5], [5, 5]]])
    # Target: upper clothes top-left, pants (9, absent in the source) bottom-left, background right.
    target_parsing = torch.tensor([[[5, 0], [0, 0], [9, 0]]])
    painted = _levels(paint_by_parts(source, source_parsing, target_parsing))[0]
    assert painted[:, 0, 0].tolist() == [150, 0, 0]  # mean of the source's upper clothes
    # Pants: absent in the source, so the mean colour of its whole person (6 pixels).
    assert painted[:, 2, 0].tolist() == [round(640 / 6), round(40 / 6), round(40 / 6)]
    # Background: the source image's own pixels.
    assert torch.equal(painted[:, :, 1], _levels(source)[0, :, :, 1])
    assert painted[:, 1, 0].tolist() == [100, 0, 0]


def test_paint_by_parts_reaches_zero_part_colour_error_on_a_recoloured_pose() -> None:
    # The target is the same flat-coloured person in another place: painting is exact there.
    source = _signed([[(50, 60, 70), (0, 0, 0)], [(5, 5, 5), (0, 0, 0)]])
    source_parsing = torch.tensor([[[5, 0], [9, 0]]])
    target = _signed([[(0, 0, 0), (50, 60, 70)], [(0, 0, 0), (5, 5, 5)]])
    target_parsing = torch.tensor([[[0, 5], [0, 9]]])
    painted = paint_by_parts(source, source_parsing, target_parsing)
    assert part_colour_error(painted, target, target_parsing).item() == pytest.approx(0, abs=1e-4)
    assert part_colour_error(source, target, target_parsing).item() > 10  # copying is wrong


def test_paint_by_parts_without_a_source_person_returns_the_source() -> None:
    source = _signed([[(1, 2, 3), (4, 5, 6)]])
    painted = paint_by_parts(source, torch.zeros(1, 1, 2, dtype=torch.long), torch.ones(1, 1, 2))
    assert torch.equal(painted, source)
