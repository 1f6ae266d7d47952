"""PATN's pool of past fakes (pix2pix ``ImagePool``): D also sees older generator outputs.

The discriminator is conditional, so the pool keeps whole D inputs: (source, generated) pairs
stacked on channels, ``[6, H, W]`` each. Draws come from the pool's own ``torch.Generator``, and
:meth:`ImagePool.state_dict` holds its images and generator state, so a resumed run continues
exactly. Under DDP every rank keeps its own pool; rank 0's is the one checkpointed.
"""

from __future__ import annotations

import torch


class ImagePool:
    """Up to ``size`` past D inputs; ``size = 0`` passes every batch through unchanged."""

    def __init__(self, size: int, *, seed: int) -> None:
        if size < 0:
            raise ValueError(f"pool size must be >= 0, got {size}")
        self.size = size
        self.images: torch.Tensor | None = None  # [n, C, H, W], n <= size
        self.generator = torch.Generator().manual_seed(seed)

    def query(self, batch: torch.Tensor) -> torch.Tensor:
        """Return a batch for D, shape and device of ``batch`` ``[B, C, H, W]`` (detached).

        While the pool fills, every image is stored and returned. Once it is full, each image
        is, with probability 1/2, returned as is, or else swapped for a random stored one,
        which it replaces (pix2pix/PATN ``ImagePool.query``).
        """
        batch = batch.detach()
        if self.size == 0:
            return batch
        out = []
        for image in batch:
            image = image.unsqueeze(0)
            if self.images is None or len(self.images) < self.size:
                stored = image.clone()
                self.images = stored if self.images is None else torch.cat([self.images, stored])
                out.append(image)
                continue
            swap = float(torch.rand((), generator=self.generator)) > 0.5
            slot = int(torch.randint(self.size, (), generator=self.generator))
            if swap:
                out.append(self.images[slot : slot + 1].clone())
                self.images[slot] = image[0]
            else:
                out.append(image)
        return torch.cat(out)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors only (loads under ``weights_only=True``); a copy of the images, on the CPU."""
        images = self.images if self.images is not None else torch.empty(0)
        return {
            "images": images.detach().to("cpu", copy=True),
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        images = state["images"]
        self.images = images.to(device, copy=True) if images.numel() else None
        self.generator.set_state(state["generator"])
