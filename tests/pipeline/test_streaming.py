"""Streamed pairs equal the in-memory sampler's, batch for batch, with any cache size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.pairs import PairsConfig, sample_pairs
from pipeline.streaming import StreamingPairSampler
from pipeline.train_generator import load_training_data
from san_model.train import PairSampler


@pytest.mark.parametrize("cache_bytes", [1 << 30, 1])  # everything cached / every chunk re-read
def test_streamed_batches_equal_the_in_memory_sampler(small_store, cache_bytes):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    table = small_store.read_table("pairs_train")[["source", "target"]].to_numpy(np.int64)
    memory = PairSampler(load_training_data(small_store), batch_size=6, seed=3)
    streamed = StreamingPairSampler(
        small_store, table, batch_size=6, seed=3, cache_bytes=cache_bytes, threads=2
    )
    cpu = torch.device("cpu")
    for _ in range(4):
        expected = memory.gather(memory.next_pairs(), cpu)
        got = streamed.gather(streamed.next_pairs(), cpu)
        for field in ("source_image", "source_mask", "source_parsing", "target_image"):
            torch.testing.assert_close(getattr(got, field), getattr(expected, field))
        torch.testing.assert_close(got.target_parsing, expected.target_parsing)
    assert torch.equal(streamed.generator.get_state(), memory.generator.get_state())


def test_rank_slices_and_bad_tables(small_store):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    table = small_store.read_table("pairs_train")[["source", "target"]].to_numpy(np.int64)
    whole = StreamingPairSampler(small_store, table, batch_size=4, seed=0)
    rank1 = StreamingPairSampler(small_store, table, batch_size=4, seed=0, rank=1, world_size=2)
    assert torch.equal(whole.next_pairs()[1::2], rank1.next_pairs())
    with pytest.raises(ValueError, match="divisible"):
        StreamingPairSampler(small_store, table, batch_size=3, seed=0, world_size=2)
    with pytest.raises(ValueError, match="non-empty"):
        StreamingPairSampler(small_store, table[:0], batch_size=2, seed=0)
