"""Pairs stage: (source, target) image pairs of the same identity for SAN training and testing.

A pair is two different images of one identity; the generator re-draws the source person in the
target's pose. Training pairs come from training identities only, test pairs from the disjoint
test identities (gallery and query); junk (pid -1) and distractors (pid 0) never take part, nor
do images whose person mask is empty when the masks stage has run. Pairs are drawn without
repeats, uniformly among all ordered same-identity pairs, deterministically for a seed (PATN's
reference code used every ordered permutation for training and a fixed-seed draw for testing).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from foundation.errors import SettingsError, UserError
from storage import PersonStore, StageStamp

TRAIN_TABLE = "pairs_train"
TEST_TABLE = "pairs_test"


class NotEnoughPairsError(UserError, ValueError):
    """The identities cannot supply the requested number of distinct pairs (or of pairs a
    training batch needs)."""


@dataclass(frozen=True)
class PairsConfig:
    """How many pairs to draw.

    Attributes:
        train_pairs: training pairs; None takes every ordered same-identity pair.
        test_pairs: test pairs; None takes every one.
        seed: draw seed; the same seed gives the same tables.
        skip_empty_masks: leave out images whose person mask is empty (needs the masks stage).

    Raises:
        SettingsError: a count below 1.
    """

    train_pairs: int | None = None
    test_pairs: int | None = 12_000
    seed: int = 0
    skip_empty_masks: bool = True

    def __post_init__(self) -> None:
        for name in ("train_pairs", "test_pairs"):
            count = getattr(self, name)
            if count is not None and count < 1:
                raise SettingsError(
                    f"pairs setting {name} is {count}; give at least 1, or none for every "
                    "ordered same-identity pair"
                )

    @classmethod
    def market1501(cls) -> PairsConfig:
        """The paper's Market-1501 counts (section 4.1): 243,200 train, 12,000 test."""
        return cls(train_pairs=243_200, test_pairs=12_000)

    @classmethod
    def deepfashion(cls) -> PairsConfig:
        """The paper's DeepFashion counts: 106,966 train, 8,570 test."""
        return cls(train_pairs=106_966, test_pairs=8_570)


def all_ordered_pairs(rows: np.ndarray, person_ids: np.ndarray) -> np.ndarray:
    """Every ordered pair of two different rows sharing a person id.

    Args:
        rows: int64 [M] store row of each candidate image.
        person_ids: int [M] identity of each candidate.
    Returns:
        int64 [P, 2] (source row, target row), P = sum over ids of k * (k - 1), grouped by id.
    """
    order = np.argsort(person_ids, kind="stable")
    rows, person_ids = rows[order], person_ids[order]
    _, starts, sizes = np.unique(person_ids, return_index=True, return_counts=True)
    per_image_size = np.repeat(sizes, sizes)  # k of each image's identity
    per_image_start = np.repeat(starts, sizes)
    # Each image is a source once per member of its identity (itself included, removed below).
    sources = np.repeat(np.arange(len(rows)), per_image_size)
    first_of_run = np.repeat(np.cumsum(per_image_size) - per_image_size, per_image_size)
    targets = np.repeat(per_image_start, per_image_size) + np.arange(len(sources)) - first_of_run
    keep = sources != targets
    return np.stack([rows[sources[keep]], rows[targets[keep]]], axis=1).astype(np.int64)


def draw_pairs(
    rows: np.ndarray,
    person_ids: np.ndarray,
    count: int | None,
    rng: np.random.Generator,
    *,
    label: str,
) -> np.ndarray:
    """``count`` distinct pairs drawn uniformly from :func:`all_ordered_pairs` (all if None).

    Raises:
        NotEnoughPairsError: fewer distinct pairs exist than asked for.
    """
    pairs = all_ordered_pairs(rows, person_ids)
    if count is None:
        return pairs[rng.permutation(len(pairs))]
    if count > len(pairs):
        raise NotEnoughPairsError(
            f"{label}: asked for {count} pairs but the {len(np.unique(person_ids))} identities "
            f"({len(rows)} images) supply only {len(pairs)} distinct ordered pairs; "
            "lower the count, or leave it out to take every pair"
        )
    return pairs[rng.choice(len(pairs), size=count, replace=False)]


def _table(pairs: np.ndarray, person_ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": pairs[:, 0],
            "target": pairs[:, 1],
            "person_id": person_ids[pairs[:, 0]].astype(np.int64),
        }
    )


def sample_pairs(store: PersonStore, config: PairsConfig = PairsConfig()) -> StageStamp:
    """Draw training and test pairs and store them as the ``pairs_train``/``pairs_test`` tables.

    Raises:
        NotEnoughPairsError: a requested count exceeds what the identities supply.
        ValueError: training and test identities overlap.
    """
    skip_empty = config.skip_empty_masks and store.stamp("masks") is not None
    inputs = ["ingest", "masks"] if skip_empty else ["ingest"]
    with store.stage("pairs", config=asdict(config), inputs=inputs, n_blocks=1) as run:
        # Under the lock; every count is drawn before the first table is written, so a count
        # the identities cannot supply leaves the earlier tables and stamp in place.
        index = store.index
        person_ids = index["person_id"].to_numpy(np.int64)
        usable = person_ids > 0
        if skip_empty:
            masks = store.load_in_memory(("masks",))["masks"]
            usable &= masks.reshape(len(masks), -1).any(axis=1)
        train = usable & (index["split"] == "train").to_numpy()
        test = usable & (index["split"] != "train").to_numpy()
        overlap = np.intersect1d(person_ids[train], person_ids[test])
        if overlap.size:
            raise ValueError(
                f"training and test identities overlap (e.g. {overlap[:5].tolist()}): "
                "pose-transfer test pairs must use unseen identities"
            )
        rng = np.random.default_rng(config.seed)
        train_rows, test_rows = np.flatnonzero(train), np.flatnonzero(test)
        train_pairs = draw_pairs(
            train_rows, person_ids[train_rows], config.train_pairs, rng, label="training pairs"
        )
        test_pairs = draw_pairs(
            test_rows, person_ids[test_rows], config.test_pairs, rng, label="test pairs"
        )
        store.write_table(TRAIN_TABLE, _table(train_pairs, person_ids))
        store.write_table(TEST_TABLE, _table(test_pairs, person_ids))
        run.mark_done(0)
        return run.finish(
            counts={
                "train_pairs": len(train_pairs),
                "test_pairs": len(test_pairs),
                "train_ids": len(np.unique(person_ids[train_rows])),
                "test_ids": len(np.unique(person_ids[test_rows])),
            }
        )
