"""Pairs stage: (source, target) image pairs of the same identity for SAN training and testing.

A pair is two different images of one identity; the generator re-draws the source person in the
target's pose. Either side comes from a published list or is drawn:

* A list (``train_pairs_file`` / ``test_pairs_file``) is a PATN/GFLA ``from,to`` CSV of file
  names, such as PATN's ``market-pairs-test.csv`` (12,000 pairs) or GFLA's
  ``fasion-resize-pairs-test.csv`` (8,570): used exactly as given, order and repeats kept
  (:func:`read_pairs_file`, :func:`resolve_pairs`). The stamp records its sha256.
* A draw: training pairs from training identities only, test pairs from the disjoint test
  identities, by default from the gallery only (Market-1501's bounding_box_test, as PATN and
  GFLA; ``test_from="gallery+query"`` adds the query images, the old behaviour); junk (pid -1)
  and distractors (pid 0) never take part, nor do images whose person mask is empty when the
  masks stage has run. Pairs are drawn without repeats, uniformly among all ordered
  same-identity pairs, deterministically for a seed (PATN's reference code used every ordered
  permutation for training and a fixed-seed draw for testing).

Either way a test pair's identity never trains: no training pair shows it.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from foundation.errors import SettingsError, UserError
from storage import PersonStore, StageStamp

TRAIN_TABLE = "pairs_train"
TEST_TABLE = "pairs_test"
# Store splits the sampled test pairs come from.
TEST_SPLITS = {"gallery": ("gallery",), "gallery+query": ("gallery", "query")}
TestFrom = Literal["gallery", "gallery+query"]


class NotEnoughPairsError(UserError, ValueError):
    """The identities cannot supply the requested number of distinct pairs (or of pairs a
    training batch needs)."""


class PairsFileError(UserError, ValueError):
    """A pairs list that cannot be used as given (the message names the file, line and pair)."""


@dataclass(frozen=True)
class PairsConfig:
    """Where the pairs come from: published lists, or how many to draw.

    Attributes:
        train_pairs: training pairs drawn; None takes every ordered same-identity pair.
        test_pairs: test pairs drawn; None takes every one.
        seed: draw seed; the same seed gives the same tables.
        skip_empty_masks: leave out images whose person mask is empty (needs the masks stage);
            drawn pairs only, a list is used as given.
        train_pairs_file, test_pairs_file: a PATN/GFLA ``from,to`` list used instead of a draw
            (the count of that side is then ignored).
        test_from: store splits of drawn test pairs: ``gallery`` (bounding_box_test, as
            PATN/GFLA) or ``gallery+query`` (every test image, as this tool drew them before).

    Raises:
        SettingsError: a count below 1.
    """

    train_pairs: int | None = None
    test_pairs: int | None = 12_000
    seed: int = 0
    skip_empty_masks: bool = True
    train_pairs_file: str | None = None
    test_pairs_file: str | None = None
    test_from: TestFrom = "gallery"

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


def read_pairs_file(path: str | Path) -> list[tuple[int, str, str]]:
    """The pairs of a PATN/GFLA list: lines ``from,to`` of file names, an optional ``from,to``
    header first (PATN's ``market-pairs-test.csv``, GFLA's ``fasion-resize-pairs-test.csv``).

    Returns:
        (line number, source name, target name) per pair, in file order, repeats kept.
    Raises:
        PairsFileError: the file is missing or empty, or a line is not two names.
    """
    path = Path(path)
    if not path.is_file():
        raise PairsFileError(f"{path}: no such pairs file (a from,to CSV such as PATN's lists)")
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    pairs = []
    for number, fields in enumerate(rows, 1):
        names = [field.strip() for field in fields]
        if not any(names):
            continue
        if number == 1 and [name.lower() for name in names] == ["from", "to"]:
            continue
        if len(names) != 2 or not all(names):
            raise PairsFileError(
                f"{path}, line {number}: {','.join(fields)!r} is not 'from,to' (two file names, "
                "e.g. 0002_c1s1_000451_03.jpg,0002_c1s1_000551_01.jpg)"
            )
        pairs.append((number, names[0], names[1]))
    if not pairs:
        raise PairsFileError(f"{path}: no pairs in the file")
    return pairs


def _stem(name: str) -> str:
    """A file name without its image extensions: ``a.jpg.jpg`` (24 Market-1501 files) -> ``a``."""
    while Path(name).suffix.lower() in (".jpg", ".jpeg", ".png"):
        name = name[: -len(Path(name).suffix)]
    return name


def resolve_pairs(
    path: str | Path,
    filenames: pd.Series,
    person_ids: np.ndarray,
    *,
    label: str,
    trained_ids: np.ndarray | None = None,
) -> np.ndarray:
    """The store rows of a list's pairs, checked.

    A name is looked up as the store's file name, else by its stem (so ``x.jpg`` finds the
    store's ``x.jpg.jpg`` and the other way round).

    Args:
        filenames: the store's ``filename`` column [N]; person_ids: int [N].
        label: ``training`` or ``test``, for messages.
        trained_ids: identities of the training pairs; a pair of one of them is refused.
    Returns:
        int64 [P, 2] (source row, target row) in the file's order.
    Raises:
        PairsFileError: the first pair that names an image not in the store, joins two
            identities (or a distractor/junk image), or shows an identity that trains.
    """
    names = filenames.tolist()
    rows = {name: row for row, name in enumerate(names)}
    by_stem: dict[str, int] = {}
    for row, name in enumerate(names):
        by_stem.setdefault(_stem(name), row)
    trained = set() if trained_ids is None else set(trained_ids.tolist())
    pairs = []
    for number, source, target in read_pairs_file(path):
        where = f"{path}, line {number}: {label} pair {source} -> {target}"
        found = [rows.get(name, by_stem.get(_stem(name))) for name in (source, target)]
        if None in found:
            absent = source if found[0] is None else target
            raise PairsFileError(
                f"{where}: {absent} is not in the store (is this the list of the dataset the "
                "store was ingested from?)"
            )
        pid = [int(person_ids[row]) for row in found]
        if pid[0] != pid[1] or pid[0] <= 0:
            what = (
                f"identities {pid[0]} and {pid[1]} differ"
                if pid[0] != pid[1]
                else f"identity {pid[0]} is junk or distractors, not one person"
            )
            raise PairsFileError(f"{where}: {what}; a pair shows one person twice")
        if pid[0] in trained:
            raise PairsFileError(
                f"{where}: identity {pid[0]} is in the training pairs; test identities must be "
                "unseen"
            )
        pairs.append(found)
    return np.array(pairs, dtype=np.int64).reshape(-1, 2)


def describe_test_pairs(stamp: StageStamp | None) -> str:
    """Where a store's test pairs came from, for evaluation pages: ``published list
    market-pairs-test.csv (sha256 3f2a...)`` or ``drawn (seed 0, from the gallery)``."""
    if stamp is None:
        return "unknown (the store has no pairs stamp)"
    config = stamp.config
    listed = config.get("test_pairs_file")
    if listed:
        return f"published list {Path(listed).name} (sha256 {config['test_pairs_sha256'][:12]})"
    # Stamps from before the gallery-only draw did not record test_from: gallery and query.
    splits = config.get("test_from", "gallery+query").replace("+", " and ")
    return f"drawn (seed {config.get('seed', 0)}, from the {splits})"


def _table(pairs: np.ndarray, person_ids: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "source": pairs[:, 0],
            "target": pairs[:, 1],
            "person_id": person_ids[pairs[:, 0]].astype(np.int64),
        }
    )


def sample_pairs(store: PersonStore, config: PairsConfig = PairsConfig()) -> StageStamp:
    """Read or draw training and test pairs; store them as the ``pairs_train``/``pairs_test``
    tables.

    Every pair is read or drawn, and checked, before the first table is written, so an error
    leaves the finished stage (tables and stamp) as it was.

    Returns:
        The ``pairs`` stamp. Config: the settings plus ``train_pairs_sha256`` /
        ``test_pairs_sha256`` of the lists given. Counts: pairs and identities per side.
    Raises:
        PairsFileError: a list is unreadable or names a pair it cannot use (the first one).
        NotEnoughPairsError: a requested count exceeds what the identities supply.
        ValueError: training and test identities overlap.
    """
    skip_empty = config.skip_empty_masks and store.stamp("masks") is not None
    inputs = ["ingest", "masks"] if skip_empty else ["ingest"]
    settings = asdict(config)
    for side in ("train", "test"):
        listed = settings[f"{side}_pairs_file"]
        if listed is not None:
            read_pairs_file(listed)  # a missing or malformed file: its own message first
            settings[f"{side}_pairs_sha256"] = hashlib.sha256(Path(listed).read_bytes()).hexdigest()
    with store.stage("pairs", config=settings, inputs=inputs, n_blocks=1) as run:
        # Under the lock; every count is drawn before the first table is written, so a count
        # the identities cannot supply leaves the earlier tables and stamp in place.
        index = store.index
        person_ids = index["person_id"].to_numpy(np.int64)
        usable = person_ids > 0
        if skip_empty:
            masks = store.load_in_memory(("masks",))["masks"]
            usable &= masks.reshape(len(masks), -1).any(axis=1)
        train = usable & (index["split"] == "train").to_numpy()
        test = usable & index["split"].isin(TEST_SPLITS[config.test_from]).to_numpy()
        overlap = np.intersect1d(person_ids[train], person_ids[test])
        if overlap.size:
            raise ValueError(
                f"training and test identities overlap (e.g. {overlap[:5].tolist()}): "
                "pose-transfer test pairs must use unseen identities"
            )
        rng = np.random.default_rng(config.seed)
        if config.train_pairs_file is not None:
            train_pairs = resolve_pairs(
                config.train_pairs_file, index["filename"], person_ids, label="training"
            )
        else:
            rows = np.flatnonzero(train)
            train_pairs = draw_pairs(
                rows, person_ids[rows], config.train_pairs, rng, label="training pairs"
            )
        trained_ids = np.unique(person_ids[train_pairs[:, 0]])
        if config.test_pairs_file is not None:
            test_pairs = resolve_pairs(
                config.test_pairs_file,
                index["filename"],
                person_ids,
                label="test",
                trained_ids=trained_ids,
            )
        else:
            rows = np.flatnonzero(test & ~np.isin(person_ids, trained_ids))
            test_pairs = draw_pairs(
                rows, person_ids[rows], config.test_pairs, rng, label="test pairs"
            )
        store.write_table(TRAIN_TABLE, _table(train_pairs, person_ids))
        store.write_table(TEST_TABLE, _table(test_pairs, person_ids))
        run.mark_done(0)
        return run.finish(
            counts={
                "train_pairs": len(train_pairs),
                "test_pairs": len(test_pairs),
                "train_ids": len(trained_ids),
                "test_ids": len(np.unique(person_ids[test_pairs[:, 0]])),
            }
        )
