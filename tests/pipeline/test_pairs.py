"""Pair sampling: same identity, distinct images, disjoint splits, determinism, counts."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline.pairs import (
    NotEnoughPairsError,
    PairsConfig,
    all_ordered_pairs,
    draw_pairs,
    sample_pairs,
)
from storage import create_store


def test_all_ordered_pairs_matches_brute_force():
    rng = np.random.default_rng(1)
    person_ids = rng.integers(1, 6, 30)
    rows = rng.permutation(100)[:30]
    pairs = {tuple(p) for p in all_ordered_pairs(rows, person_ids).tolist()}
    expected = {
        (int(rows[i]), int(rows[j]))
        for i, j in itertools.permutations(range(30), 2)
        if person_ids[i] == person_ids[j]
    }
    assert pairs == expected
    assert len(all_ordered_pairs(rows, person_ids)) == len(expected)


def test_draw_is_deterministic_distinct_and_bounded():
    person_ids = np.repeat(np.arange(1, 11), 5)
    rows = np.arange(50)
    first = draw_pairs(rows, person_ids, 150, np.random.default_rng(3), label="t")
    again = draw_pairs(rows, person_ids, 150, np.random.default_rng(3), label="t")
    np.testing.assert_array_equal(first, again)
    assert len({tuple(p) for p in first.tolist()}) == 150
    assert (person_ids[first[:, 0]] == person_ids[first[:, 1]]).all()
    assert (first[:, 0] != first[:, 1]).all()
    with pytest.raises(NotEnoughPairsError, match="supply only 200 distinct"):
        draw_pairs(rows, person_ids, 201, np.random.default_rng(0), label="t")


def _store(tmp_path):
    pids = [1, 1, 1, 2, 2, 3, 3, 3, 0, -1, 3, 4, 4, 4]
    splits = ["train"] * 5 + ["gallery"] * 5 + ["query"] + ["train"] * 3
    index = pd.DataFrame(
        {
            "person_id": pids,
            "camera": [1] * 14,
            "split": splits,
            "filename": [f"{i}.jpg" for i in range(14)],
        }
    )
    store = create_store(str(tmp_path / "s"), index=index, height=2, width=2, block_size=4)
    with store.stage("ingest", config={}) as run:
        for block in run.pending_blocks():
            run.mark_done(block)
        run.finish(counts={})
    return store


def test_sample_pairs_stage(tmp_path):
    store = _store(tmp_path)
    stamp = sample_pairs(store, PairsConfig(train_pairs=None, test_pairs=10, seed=0))
    train, test = store.read_table("pairs_train"), store.read_table("pairs_test")
    assert len(train) == 3 * 2 + 2 * 1 + 3 * 2 and len(test) == 10
    assert set(train["person_id"]) == {1, 2, 4} and set(test["person_id"]) == {3}
    assert {8, 9}.isdisjoint(set(test["source"]) | set(test["target"]))  # distractor, junk
    assert stamp.counts == {"train_pairs": 14, "test_pairs": 10, "train_ids": 3, "test_ids": 1}
    with pytest.raises(NotEnoughPairsError, match="test pairs"):
        sample_pairs(store, PairsConfig(test_pairs=13))


def test_empty_masks_are_left_out(tmp_path):
    store = _store(tmp_path)
    masks = np.ones((14, 2, 2), np.uint8)
    masks[0] = 0
    with store.stage("masks", config={}) as run:
        for block in run.pending_blocks():
            run.write("masks", block, masks[store.block_slice(block)])
            run.mark_done(block)
        run.finish(counts={})
    sample_pairs(store, PairsConfig(test_pairs=None))
    train = store.read_table("pairs_train")
    assert 0 not in set(train["source"]) | set(train["target"])
    assert "masks" in store.stamp("pairs").inputs


def test_overlapping_identities_are_refused(tmp_path):
    index = pd.DataFrame(
        {
            "person_id": [1, 1, 1, 1],
            "camera": [1, 2, 1, 2],
            "split": ["train", "train", "gallery", "query"],
            "filename": ["a", "b", "c", "d"],
        }
    )
    store = create_store(str(tmp_path / "s"), index=index, height=2, width=2)
    with store.stage("ingest", config={}, n_blocks=0) as run:
        run.finish(counts={})
    with pytest.raises(ValueError, match="overlap"):
        sample_pairs(store)


def test_market_sized_draw():
    rng = np.random.default_rng(0)
    person_ids = np.repeat(np.arange(1, 752), rng.integers(2, 33, 751))  # Market: 2-72 per id
    pairs = draw_pairs(np.arange(len(person_ids)), person_ids, 243_200, rng, label="market")
    assert pairs.shape == (243_200, 2)
    assert (person_ids[pairs[:, 0]] == person_ids[pairs[:, 1]]).all()


def test_a_rerun_asking_too_many_pairs_keeps_the_finished_stage(small_store, snapshot):
    sample_pairs(small_store, PairsConfig(test_pairs=None))
    before = snapshot(small_store)
    with pytest.raises(NotEnoughPairsError, match="asked for 100000 pairs"):
        sample_pairs(small_store, PairsConfig(train_pairs=100_000, test_pairs=None, seed=1))
    assert snapshot(small_store) == before
