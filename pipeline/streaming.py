"""Generator training pairs streamed from a store that need not fit in memory decoded.

:class:`StreamingPairSampler` has the interface of :class:`san_model.train.PairSampler`
(``next_pairs``, ``gather``, the ``generator`` whose state a checkpoint keeps) and draws the
same pairs from the same seed, but decodes each batch's rows on demand from the store's encoded
elements instead of indexing arrays held decoded in memory. Encoded chunks stay cached up to
``cache_bytes`` (Market-1501's images, masks and parsing are about 100 MB encoded, 1.3 GB
decoded; DeepFashion at 256x256 about 17 GB decoded): with a cache smaller than the store,
chunks are read again as batches need them. Throughput: BENCHMARKS.md, "Storage".
"""

from __future__ import annotations

import numpy as np
import torch

from san_model.train import PairBatch
from storage import PersonStore

ARRAYS = ("images", "masks", "parsing")


class StreamingPairSampler:
    """Uniform random pairs (with replacement, as PATN), decoded per batch from the store.

    Args:
        store: a format-2 store (format-1 arrays are read uncached, row by row).
        pairs: int64 [P, 2] (source, target) store rows, e.g. the ``pairs_train`` table.
        batch_size, seed, rank, world_size: as :class:`san_model.train.PairSampler`; the same
            seed draws the same pairs.
        cache_bytes: encoded chunks kept in memory.
        threads: decoding threads per batch.
    """

    def __init__(
        self,
        store: PersonStore,
        pairs: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        cache_bytes: int = 1 << 30,
        threads: int = 2,
    ) -> None:
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} not divisible by world size {world_size}")
        self.pairs = torch.from_numpy(np.array(pairs, dtype=np.int64))
        if self.pairs.ndim != 2 or self.pairs.shape[1] != 2 or len(self.pairs) == 0:
            raise ValueError(f"pairs must be a non-empty [P, 2] table, got {tuple(pairs.shape)}")
        self.reader = store.reader(ARRAYS, cache_bytes=cache_bytes, threads=threads)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.generator = torch.Generator().manual_seed(seed)

    def next_pairs(self) -> torch.Tensor:
        """This rank's ``[batch_size / world_size, 2]`` rows of the next global batch."""
        rows = torch.randint(len(self.pairs), (self.batch_size,), generator=self.generator)
        return self.pairs[rows[self.rank :: self.world_size]]

    def gather(self, pairs: torch.Tensor, device: torch.device) -> PairBatch:
        """Decode the rows of ``pairs`` ``[B, 2]`` (each distinct row once) and move the uint8
        batch to ``device``."""
        rows, inverse = np.unique(pairs.numpy().reshape(-1), return_inverse=True)
        decoded = self.reader.read(rows)
        source, target = inverse.reshape(-1, 2).T

        def take(name: str, index: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(decoded[name][index]).to(device, non_blocking=True)

        return PairBatch(
            take("images", source),
            take("masks", source),
            take("parsing", source),
            take("images", target),
            take("masks", target),
            take("parsing", target),
        )
