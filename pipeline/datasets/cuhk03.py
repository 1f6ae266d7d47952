"""CUHK03-NP, Zhong et al.'s new protocol: two kinds, the DPM detector's boxes
(``cuhk03_detected``) and the hand-drawn ones (``cuhk03_labeled``), each in Market-1501's three
folders under ``detected/`` or ``labeled/``, PNGs named ``pid_c<camera>_<shot>``.

The camera is 1 or 2: the two views of the person's camera pair (CUHK03 has five pairs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from pipeline.datasets.layout import Dataset, FolderDataset


def _folders(setting: str) -> FolderDataset:
    """The three folders under ``<setting>/``."""
    return FolderDataset(
        title=f"CUHK03-NP ({setting})",
        name_pattern=re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d+)_(?P<shot>\d+)$"),
        name_form="pid_cC_N.png, e.g. 0001_c1_1.png",
        cameras=range(1, 3),
        # Shot 9, row, draw: nine digits where the real shot numbers are 1-10. PNG like the
        # real ones, so loaders that read *.png find them.
        generated_name="{pid:04d}_c{camera}_9{row:06d}{draw:02d}.png",
        subfolder=setting,
    )


def _kind(folders: FolderDataset, official_counts: Mapping[str, int]) -> Dataset:
    """The kind ``cuhk03_<setting>`` of the folders under ``<setting>/``."""
    return Dataset(
        name=f"cuhk03_{folders.subfolder}",
        title=folders.title,
        help="Ingest CUHK03-NP, the new protocol (767/700 identities; stretched to 256x128).",
        source_help="CUHK03-NP folder holding detected/ and labeled/ (Market layout).",
        command="cuhk03",
        layout=folders,
        official_counts=official_counts,
        # The 256x128 that torchreid and fast-reid resize the original boxes to.
        image_size=(256, 128),
        setting=folders.subfolder,
        setting_help="Boxes of the DPM detector or the hand-drawn ones.",
    )


CUHK03_NP_DETECTED = _folders("detected")
CUHK03_NP_LABELED = _folders("labeled")
DETECTED = _kind(CUHK03_NP_DETECTED, {"train": 7_365, "query": 1_400, "gallery": 5_332})
LABELED = _kind(CUHK03_NP_LABELED, {"train": 7_368, "query": 1_400, "gallery": 5_328})
