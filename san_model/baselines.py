"""Baselines a generator must beat on held-out pairs (BENCHMARKS.md, the report).

Neither learns anything. "Copy the source image" is the source image itself (the target pose
ignored). "Paint by parts", built here, fills each part of the target's parsing with the
source's mean colour of that part and keeps the source image as background. With the target
camera's lighting unknown it is close to the best part-colour error any method can reach, but
it has no texture, shading or outline, which a generator that learned shape and texture draws.
"""

from __future__ import annotations

import torch

from .metrics import part_mean_colours


def paint_by_parts(
    source_image: torch.Tensor, source_parsing: torch.Tensor, target_parsing: torch.Tensor
) -> torch.Tensor:
    """Fill the target's parts with the source's mean part colours.

    A part the source does not show (e.g. a hand hidden from behind) gets the mean colour of
    the source's whole person; a source without any person leaves the target's parts as the
    source image's pixels.

    Args:
        source_image: [B, 3, H, W] float in [-1, 1].
        source_parsing, target_parsing: [B, H, W] LIP labels 0..19 (0 = background).

    Returns:
        [B, 3, H, W] float32 in [-1, 1].
    """
    colours, counts = part_mean_colours(source_image, source_parsing)  # [B, L, 3], [B, L]
    person = counts[:, 1:].sum(dim=1)  # [B] pixels of the source person
    person_colour = (colours[:, 1:] * counts[:, 1:, None]).sum(dim=1) / person.clamp(min=1)[:, None]
    fill = torch.where((counts > 0)[..., None], colours, person_colour[:, None])  # [B, L, 3]
    labels = target_parsing.long()
    painted = torch.gather(fill, 1, labels.flatten(1)[..., None].expand(-1, -1, 3))  # [B, H * W, 3]
    painted = painted.view(*labels.shape, 3).permute(0, 3, 1, 2) / 127.5 - 1.0
    keep_source = ((labels == 0) | (person == 0)[:, None, None])[:, None]  # [B, 1, H, W]
    return torch.where(keep_source, source_image.float(), painted)
