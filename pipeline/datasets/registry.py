"""The dataset kinds: the one list of them (:data:`DATASETS`), and look-ups by name.

Each kind is declared once, as a :class:`pipeline.datasets.layout.Dataset` in its own module
(docs/datasets.md, "Adding a dataset kind"); the ingest, the export, the flow's settings and
the command line take the kinds from here.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any, TypeAlias

import pipeline.datasets.cuhk03 as cuhk03
import pipeline.datasets.deepfashion as deepfashion
import pipeline.datasets.dukemtmc_reid as dukemtmc_reid
import pipeline.datasets.market1501 as market1501
import pipeline.datasets.msmt17 as msmt17
from pipeline.datasets.layout import Dataset, FolderDataset

# A kind's name, one of dataset_names().
DatasetKind: TypeAlias = str

DATASETS: Mapping[str, Dataset] = {
    dataset.name: dataset
    for dataset in (
        market1501.DATASET,
        deepfashion.DATASET,
        dukemtmc_reid.DATASET,
        msmt17.DATASET,
        cuhk03.DETECTED,
        cuhk03.LABELED,
    )
}
# The kinds in Market-1501's three folders, as they name their files.
FOLDER_DATASETS: Mapping[str, FolderDataset] = {
    name: dataset.layout
    for name, dataset in DATASETS.items()
    if isinstance(dataset.layout, FolderDataset)
}
# What evaluation pages call a set in a kind's layout that is not the dataset itself (the
# synthetic demo set, ingested with official=False); it is no kind of its own.
CUSTOM = "custom"


def dataset_names() -> tuple[str, ...]:
    """The kinds' names, in the registry's order (``market1501`` first)."""
    return tuple(DATASETS)


def get_dataset(name: str) -> Dataset:
    """The kind called ``name``.

    Raises:
        ValueError: no such kind; the message names the closest one and lists them all.
    """
    if name in DATASETS:
        return DATASETS[name]
    close = difflib.get_close_matches(name, list(DATASETS), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(f"unknown dataset kind {name!r}{hint}; one of {', '.join(DATASETS)}")


def dataset_title(kind: str) -> str:
    """The name of kind ``kind`` in pages, e.g. ``Market-1501``; ``a custom dataset`` for
    :data:`CUSTOM`; an unknown kind as it is."""
    if kind == CUSTOM:
        return "a custom dataset"
    return DATASETS[kind].title if kind in DATASETS else kind


def official_count_differences(
    kind: str, images_per_split: Mapping[Any, int], *, with_val: bool = False
) -> list[str]:
    """One line per split whose image count differs from the complete dataset's
    (:attr:`Dataset.official_counts`), e.g. ``Market-1501 train: 12,000 images, the official
    count is 12,936``; empty when every split matches.

    Args:
        images_per_split: split -> images ingested (a split absent counts 0).
        with_val: MSMT17 read with list_val (:attr:`Dataset.official_counts_with_val`).
    """
    dataset = get_dataset(kind)
    official = dataset.official_counts
    if with_val and dataset.official_counts_with_val is not None:
        official = dataset.official_counts_with_val
    return [
        f"{dataset.title} {split}: {images_per_split.get(split, 0):,} images, the "
        f"official count is {expected:,} (a partial or altered copy?)"
        for split, expected in official.items()
        if images_per_split.get(split, 0) != expected
    ]
