"""Market-1501: three folders of 128x64 JPEGs named ``pid_c<camera>s<sequence>_<frame>_<box>``.

Person id -1 is junk, 0000 a distractor. 24 real images are named ``*.jpg.jpg`` (6 query, 18
bounding_box_test); torchreid globs ``*.jpg`` and reads pid and camera from the name's start,
so they belong to the benchmark: they are ingested, and listed in the stamp's report.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.datasets.layout import Dataset, FolderDataset, ScanResult, scan_folders

DOUBLE_SUFFIX = ".jpg.jpg"
MARKET1501 = FolderDataset(
    title="Market-1501",
    # pid (-1 junk, 0000 distractor), camera 1-6, sequence, frame, box index.
    name_pattern=re.compile(
        r"^(?P<pid>-?\d+)_c(?P<cam>\d+)s(?P<seq>\d+)_(?P<frame>\d+)_(?P<box>\d+)$"
    ),
    name_form="pid_cCsS_frame_box.jpg",
    cameras=range(1, 7),
    # Sequence 9 (Market-1501 has 1-6), the generated row as frame, the draw as box.
    generated_name="{pid:04d}_c{camera}s9_{row:06d}_{draw:02d}.jpg",
)


@dataclass(frozen=True)
class MarketName:
    """The fields of a Market-1501 file name such as ``0002_c3s1_000451_01.jpg``."""

    person_id: int
    camera: int
    sequence: int
    frame: int
    box: int


def parse_market_name(name: str) -> MarketName:
    """Parse a Market-1501 file name (pid -1 = junk, 0 = distractor).

    Raises:
        ValueError: the name does not follow the Market-1501 pattern, or says which of its
            fields is out of range (person id, camera).
    """
    match = MARKET1501.match(name)
    return MarketName(
        int(match["pid"]),
        int(match["cam"]),
        int(match["seq"]),
        int(match["frame"]),
        int(match["box"]),
    )


def scan_market1501(source: Path) -> ScanResult:
    """List the images of a Market-1501 folder (:func:`pipeline.datasets.scan_folders`)."""
    return scan_folders(source, MARKET1501)


def double_suffix_files(names: Sequence[str]) -> dict[str, list[str]]:
    """``{"double_suffix": the names ending in .jpg.jpg}``, which the ingest reports."""
    return {"double_suffix": [name for name in names if name.lower().endswith(DOUBLE_SUFFIX)]}


DATASET = Dataset(
    name="market1501",
    title="Market-1501",
    help="Ingest Market-1501 (bounding_box_train, bounding_box_test, query).",
    source_help="Market-1501-v15.09.15 folder.",
    command="market1501",
    layout=MARKET1501,
    official_counts={"train": 12_936, "query": 3_368, "gallery": 19_732},
    # Its boxes as they are.
    image_size=(128, 64),
    resizes=False,
    notable_files=double_suffix_files,
)
