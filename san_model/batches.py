"""Training batches of the SAN generator: the in-memory arrays, random pairs and their layouts.

A batch travels in two layouts: :class:`PairBatch`, the stored uint8 arrays gathered by a
sampler (moved to the training device as uint8, 4x less than float), and :class:`ModelBatch`,
the model's float / one-hot tensors (see :mod:`san_model.generator`), converted on the device.
:class:`RandomPairs` draws the pairs; :class:`PairSampler` gathers them from arrays held in
memory, :class:`pipeline.streaming.StreamingPairSampler` decodes them from a store.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from .generator import images_to_tensor, masks_to_tensor, parsing_to_one_hot


@dataclass(frozen=True)
class SANTrainData:
    """All training arrays, in memory (numpy arrays or CPU tensors).

    Attributes:
        images: uint8 ``[N, H, W, 3]`` RGB.
        masks: uint8 ``[N, H, W]``, non-zero = person.
        parsing: uint8 ``[N, H, W]``, LIP labels 0..19.
        pairs: int64 ``[P, 2]``, rows of (source index, target index) into the arrays above.
    """

    images: np.ndarray | torch.Tensor
    masks: np.ndarray | torch.Tensor
    parsing: np.ndarray | torch.Tensor
    pairs: np.ndarray | torch.Tensor

    def __post_init__(self) -> None:
        n = self.images.shape[0]
        if tuple(self.images.shape[3:]) != (3,) or len(self.images.shape) != 4:
            raise ValueError(f"images must be [N, H, W, 3], got {tuple(self.images.shape)}")
        for name in ("masks", "parsing"):
            shape = tuple(getattr(self, name).shape)
            if shape != tuple(self.images.shape[:3]):
                raise ValueError(f"{name} must be [N, H, W] = {self.images.shape[:3]}, got {shape}")
        if len(self.pairs.shape) != 2 or self.pairs.shape[1] != 2 or self.pairs.shape[0] == 0:
            raise ValueError(
                f"pairs must be a non-empty [P, 2] table, got {tuple(self.pairs.shape)}"
            )
        pairs = torch.as_tensor(self.pairs)
        if int(pairs.min()) < 0 or int(pairs.max()) >= n:
            raise ValueError(f"pair indices must lie in [0, {n})")
        for name in ("images", "masks", "parsing"):
            dtype = torch.as_tensor(getattr(self, name)[:1]).dtype
            if dtype != torch.uint8:
                raise ValueError(f"{name} must be uint8, got {dtype}")


@dataclass(frozen=True)
class PairBatch:
    """One batch in the stored layout, uint8 tensors on the training device."""

    source_image: torch.Tensor  # [B, H, W, 3]
    source_mask: torch.Tensor  # [B, H, W]
    source_parsing: torch.Tensor  # [B, H, W]
    target_image: torch.Tensor  # [B, H, W, 3]
    target_mask: torch.Tensor  # [B, H, W]
    target_parsing: torch.Tensor  # [B, H, W]


class RandomPairs(ABC):
    """Draws random pairs (PATN: uniform, with replacement) and gathers their rows.

    Every rank holds an identically seeded generator and draws the same global batch of
    ``batch_size`` pairs, then keeps rows ``rank::world_size``: ranks never overlap and the
    sampler's state is the same everywhere, so rank 0's checkpoint restores all ranks.
    Subclasses say where the rows come from (:meth:`rows`).

    Args:
        pairs: int64 [P, 2] (source, target) rows, a non-empty table.
        batch_size: global pairs per step, over all ranks.
        seed: seeds :attr:`generator`, whose state a checkpoint keeps.
    """

    def __init__(
        self,
        pairs: np.ndarray | torch.Tensor,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} not divisible by world size {world_size}")
        self.pairs = torch.from_numpy(np.array(pairs, dtype=np.int64))
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2 or len(self.pairs) == 0:
            raise ValueError(f"pairs must be a non-empty [P, 2] table, got {tuple(pairs.shape)}")
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_pairs(self) -> torch.Tensor:
        """This rank's ``[batch_size / world_size, 2]`` rows of the next global batch."""
        rows = torch.randint(len(self.pairs), (self.batch_size,), generator=self.generator)
        return self.pairs[rows[self.rank :: self.world_size]]

    @abstractmethod
    def rows(self, index: np.ndarray) -> tuple[Mapping[str, np.ndarray], np.ndarray]:
        """Arrays ``images`` [M, H, W, 3], ``masks`` and ``parsing`` [M, H, W] holding the rows
        ``index`` int [N], and the position of each of those rows in them, int [N] (in memory:
        :class:`PairSampler`; from the store: ``pipeline.streaming.StreamingPairSampler``)."""

    def gather(self, pairs: torch.Tensor, device: torch.device) -> PairBatch:
        """The rows of ``pairs`` ``[B, 2]`` as a uint8 batch on ``device``."""
        arrays, position = self.rows(pairs.numpy().reshape(-1))
        source, target = position.reshape(-1, 2).T

        def take(name: str, index: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(arrays[name][index]).to(device, non_blocking=True)

        return PairBatch(
            take("images", source),
            take("masks", source),
            take("parsing", source),
            take("images", target),
            take("masks", target),
            take("parsing", target),
        )


class PairSampler(RandomPairs):
    """:class:`RandomPairs` gathered from the in-memory arrays of ``data``."""

    def __init__(
        self, data: SANTrainData, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        super().__init__(
            data.pairs, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size
        )
        # Gathered with numpy: its fancy indexing copies whole rows in one thread, while
        # torch's indexing kernels spin OpenMP threads and slow down 10-100x on a busy machine.
        self.arrays = {
            name: np.asarray(getattr(data, name)) for name in ("images", "masks", "parsing")
        }

    def rows(self, index: np.ndarray) -> tuple[Mapping[str, np.ndarray], np.ndarray]:
        return self.arrays, index


@dataclass(frozen=True)
class ModelBatch:
    """A batch in model layout (see :mod:`san_model.generator`), float tensors."""

    source_image: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    source_mask: torch.Tensor  # [B, 1, H, W] in {0, 1}
    source_parsing: torch.Tensor  # [B, L, H, W] one-hot
    target_image: torch.Tensor  # [B, 3, H, W] in [-1, 1]
    target_mask: torch.Tensor  # [B, 1, H, W] in {0, 1}
    target_parsing: torch.Tensor  # [B, L, H, W] one-hot

    @classmethod
    def from_pairs(
        cls, batch: PairBatch, *, num_classes: int, channels_last: bool = False
    ) -> ModelBatch:
        """Convert on the batch's device (uint8 travels to the GPU, 4x less than float)."""
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def convert(t: torch.Tensor) -> torch.Tensor:
            return t.contiguous(memory_format=fmt)

        return cls(
            convert(images_to_tensor(batch.source_image)),
            convert(masks_to_tensor(batch.source_mask)),
            convert(parsing_to_one_hot(batch.source_parsing, num_classes)),
            convert(images_to_tensor(batch.target_image)),
            convert(masks_to_tensor(batch.target_mask)),
            convert(parsing_to_one_hot(batch.target_parsing, num_classes)),
        )
