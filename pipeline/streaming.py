"""Generator training pairs streamed from a store that need not fit in memory decoded.

:class:`StreamingPairSampler` is a :class:`san_model.batches.RandomPairs` like the in-memory
:class:`san_model.batches.PairSampler` (``next_pairs``, ``gather``, the ``generator`` whose state
a checkpoint keeps) and draws the same pairs from the same seed, but decodes each batch's rows
on demand from the store's encoded elements instead of indexing arrays held decoded in memory.
Encoded chunks stay cached up to ``cache_bytes`` (Market-1501's images, masks and parsing are
about 100 MB encoded, 1.3 GB decoded; DeepFashion at 256x256 about 17 GB decoded): with a cache
smaller than the store, chunks are read again as batches need them. Throughput: BENCHMARKS.md,
"Storage".
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from san_model.batches import RandomPairs
from storage import PersonStore

ARRAYS = ("images", "masks", "parsing")


class StreamingPairSampler(RandomPairs):
    """Uniform random pairs (with replacement, as PATN), decoded per batch from the store.

    Args:
        store: a format-2 store (format-1 arrays are read uncached, row by row).
        pairs: int64 [P, 2] (source, target) store rows, e.g. the ``pairs_train`` table.
        batch_size, seed, rank, world_size: as :class:`san_model.batches.RandomPairs`; the same
            seed draws the same pairs as the in-memory sampler.
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
        super().__init__(pairs, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size)
        self.reader = store.reader(ARRAYS, cache_bytes=cache_bytes, threads=threads)

    def rows(self, index: np.ndarray) -> tuple[Mapping[str, np.ndarray], np.ndarray]:
        """Decodes each distinct row of ``index`` once."""
        rows, inverse = np.unique(index, return_inverse=True)
        return self.reader.read(rows), inverse
