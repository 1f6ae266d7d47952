"""Pair sampling: same identity, distinct images, disjoint splits, determinism, counts."""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pandas as pd
import pytest

from pipeline.pairs import (
    NotEnoughPairsError,
    PairsConfig,
    PairsFileError,
    all_ordered_pairs,
    draw_pairs,
    read_pairs_file,
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
    stamp = sample_pairs(
        store, PairsConfig(train_pairs=None, test_pairs=10, seed=0, test_from="gallery+query")
    )
    train, test = store.read_table("pairs_train"), store.read_table("pairs_test")
    assert len(train) == 3 * 2 + 2 * 1 + 3 * 2 and len(test) == 10
    assert set(train["person_id"]) == {1, 2, 4} and set(test["person_id"]) == {3}
    assert {8, 9}.isdisjoint(set(test["source"]) | set(test["target"]))  # distractor, junk
    assert stamp.counts == {"train_pairs": 14, "test_pairs": 10, "train_ids": 3, "test_ids": 1}
    with pytest.raises(NotEnoughPairsError, match="test pairs"):
        sample_pairs(store, PairsConfig(test_pairs=13, test_from="gallery+query"))


def test_drawn_test_pairs_come_from_the_gallery_only(tmp_path):
    store = _store(tmp_path)
    sample_pairs(store, PairsConfig(test_pairs=None))
    test = store.read_table("pairs_test")
    # pid 3: gallery rows 5, 6, 7 give 3 * 2 ordered pairs; query row 10 takes no part.
    assert sorted(map(tuple, test[["source", "target"]].to_numpy().tolist())) == [
        (5, 6),
        (5, 7),
        (6, 5),
        (6, 7),
        (7, 5),
        (7, 6),
    ]
    with pytest.raises(NotEnoughPairsError, match="asked for 7 pairs"):
        sample_pairs(store, PairsConfig(test_pairs=7))
    assert len(store.read_table("pairs_test")) == 6  # the finished stage is kept


def _list(path, lines):
    path.write_text("from,to\n" + "".join(f"{a},{b}\n" for a, b in lines))
    return str(path)


def test_published_lists_are_used_exactly_as_given(tmp_path):
    store = _store(tmp_path)
    # Order and repeats kept; a query image may appear in a published list.
    test_lines = [("7.jpg", "5.jpg"), ("10.jpg", "6.jpg"), ("7.jpg", "5.jpg")]
    train_lines = [("13.jpg", "11.jpg"), ("0.jpg", "2.jpg")]
    config = PairsConfig(
        train_pairs_file=_list(tmp_path / "train.csv", train_lines),
        test_pairs_file=_list(tmp_path / "test.csv", test_lines),
    )
    stamp = sample_pairs(store, config)
    test = store.read_table("pairs_test")
    assert test[["source", "target"]].to_numpy().tolist() == [[7, 5], [10, 6], [7, 5]]
    assert test["person_id"].tolist() == [3, 3, 3]
    train = store.read_table("pairs_train")
    assert train[["source", "target"]].to_numpy().tolist() == [[13, 11], [0, 2]]
    digest = hashlib.sha256((tmp_path / "test.csv").read_bytes()).hexdigest()
    assert stamp.config["test_pairs_sha256"] == digest
    assert stamp.counts == {"train_pairs": 2, "test_pairs": 3, "train_ids": 2, "test_ids": 1}


def test_a_list_for_one_side_and_a_draw_for_the_other(tmp_path):
    store = _store(tmp_path)
    listed = _list(tmp_path / "test.csv", [("5.jpg", "6.jpg")])
    sample_pairs(store, PairsConfig(train_pairs=None, test_pairs_file=listed))
    assert store.read_table("pairs_test")[["source", "target"]].to_numpy().tolist() == [[5, 6]]
    assert len(store.read_table("pairs_train")) == 14  # every ordered training pair
    assert "train_pairs_sha256" not in store.stamp("pairs").config


def _ingested(tmp_path, person_ids: list[int], splits: list[str], filenames: list[str]):
    """A store of four 2x2 images from cameras 1, 2, 1, 2, with ingest stamped."""
    index = pd.DataFrame(
        {"person_id": person_ids, "camera": [1, 2, 1, 2], "split": splits, "filename": filenames}
    )
    store = create_store(str(tmp_path / "s"), index=index, height=2, width=2)
    with store.stage("ingest", config={}, n_blocks=0) as run:
        run.finish(counts={})
    return store


def test_list_names_match_a_double_suffix_by_stem(tmp_path):
    splits = ["train", "train", "gallery", "gallery"]
    store = _ingested(tmp_path, [1, 1, 2, 2], splits, ["a.jpg", "b.jpg", "c.jpg.jpg", "d.jpg"])
    listed = _list(tmp_path / "test.csv", [("c.jpg", "d.jpg"), ("d.jpg.jpg", "c.jpg.jpg")])
    sample_pairs(store, PairsConfig(test_pairs_file=listed))
    assert store.read_table("pairs_test")[["source", "target"]].to_numpy().tolist() == [
        [2, 3],
        [3, 2],
    ]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            [("5.jpg", "6.jpg"), ("5.jpg", "nope.jpg"), ("0.jpg", "1.jpg")],
            r"test.csv, line 3: test pair 5.jpg -> nope.jpg: nope.jpg is not in the store",
        ),
        (
            [("5.jpg", "6.jpg"), ("5.jpg", "11.jpg"), ("0.jpg", "3.jpg")],
            r"line 3: test pair 5.jpg -> 11.jpg: identities 3 and 4 differ",
        ),
        ([("8.jpg", "8.jpg")], r"line 2: .*identity 0 is junk or distractors"),
        (
            [("5.jpg", "6.jpg"), ("0.jpg", "1.jpg")],
            r"line 3: test pair 0.jpg -> 1.jpg: identity 1 is in the training pairs",
        ),
    ],
)
def test_a_bad_list_names_its_first_bad_pair_and_keeps_the_stage(
    tmp_path, snapshot, lines, message
):
    store = _store(tmp_path)
    sample_pairs(store, PairsConfig(test_pairs=None))
    before = snapshot(store)
    listed = _list(tmp_path / "test.csv", lines)
    with pytest.raises(PairsFileError, match=message):
        sample_pairs(store, PairsConfig(test_pairs_file=listed))
    assert snapshot(store) == before


def test_a_malformed_or_missing_list_is_one_line(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("from,to\na.jpg,b.jpg\nc.jpg\n")
    with pytest.raises(PairsFileError, match=r"bad.csv, line 3: 'c.jpg' is not 'from,to'"):
        read_pairs_file(bad)
    with pytest.raises(PairsFileError, match="no such pairs file"):
        read_pairs_file(tmp_path / "absent.csv")
    headerless = tmp_path / "plain.csv"
    headerless.write_text("a.jpg,b.jpg\n\nb.jpg,a.jpg\n")
    assert read_pairs_file(headerless) == [(1, "a.jpg", "b.jpg"), (3, "b.jpg", "a.jpg")]


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
    splits = ["train", "train", "gallery", "query"]
    store = _ingested(tmp_path, [1, 1, 1, 1], splits, ["a", "b", "c", "d"])
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
