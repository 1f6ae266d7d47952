"""Person Re-ID dataset layouts: which images a dataset folder holds, with identity, camera, split.

Market-1501, DukeMTMC-reID and CUHK03-NP share one layout, Market-1501's three folders
(:data:`MARKET_FOLDERS`) of files whose names start with the person id and ``c<camera>``; they
differ only in the rest of the name and in their cameras. Each is a :class:`FolderDataset`
passed to :func:`scan_folders`. MSMT17 names its images in list files instead
(:func:`scan_msmt17`). docs/datasets.md lists the official counts of each.

A scan returns the candidates ingest stores (columns :data:`CANDIDATE_COLUMNS`) and notes on
the files it skips; a folder that is not the layout it was given as raises
:class:`DatasetLayoutError`, whose one-line message names the file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from foundation.errors import UserError

DatasetKind = Literal[
    "market1501", "deepfashion", "dukemtmc_reid", "msmt17", "cuhk03_detected", "cuhk03_labeled"
]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# The store's (height, width) per kind unless the ingest names one: Market-1501's boxes as
# they are; DeepFashion at the pose-transfer papers' 256x256; the other Re-ID sets at the
# 256x128 that torchreid and fast-reid resize their original boxes to (docs/datasets.md).
STORE_SIZES: dict[str, tuple[int, int]] = {
    "market1501": (128, 64),
    "deepfashion": (256, 256),
    "dukemtmc_reid": (256, 128),
    "msmt17": (256, 128),
    "cuhk03_detected": (256, 128),
    "cuhk03_labeled": (256, 128),
}
# Images per split of each complete dataset, from its own readme (docs/datasets.md); MSMT17's
# training split is list_train (30,248) or, with list_val, 32,621 (``msmt17_with_val``).
OFFICIAL_COUNTS: dict[str, dict[str, int]] = {
    "market1501": {"train": 12_936, "query": 3_368, "gallery": 19_732},
    "dukemtmc_reid": {"train": 16_522, "query": 2_228, "gallery": 17_661},
    "msmt17": {"train": 30_248, "query": 11_659, "gallery": 82_161},
    "msmt17_with_val": {"train": 32_621, "query": 11_659, "gallery": 82_161},
    "cuhk03_labeled": {"train": 7_368, "query": 1_400, "gallery": 5_328},
    "cuhk03_detected": {"train": 7_365, "query": 1_400, "gallery": 5_332},
    "deepfashion": {"train": 48_674, "query": 0, "gallery": 4_038},
}
DATASET_TITLES = {
    "market1501": "Market-1501",
    "deepfashion": "DeepFashion",
    "dukemtmc_reid": "DukeMTMC-reID",
    "msmt17": "MSMT17",
    "cuhk03_detected": "CUHK03-NP (detected)",
    "cuhk03_labeled": "CUHK03-NP (labeled)",
    "custom": "a custom dataset",  # not the official one (pipeline.evaluate.dataset_kind)
}
MARKET_FOLDERS = {"bounding_box_train": "train", "bounding_box_test": "gallery", "query": "query"}
CANDIDATE_COLUMNS = ["person_id", "camera", "split", "filename", "path"]


class DatasetLayoutError(UserError, ValueError):
    """The source folder is not the dataset layout it was given as."""


@dataclass(frozen=True)
class FolderDataset:
    """A dataset in Market-1501's three folders, told apart by its file names and cameras.

    Attributes:
        title: the dataset's name in messages, e.g. ``DukeMTMC-reID``.
        name_pattern: full match of a file name without its suffix, with groups ``pid`` and
            ``cam`` (and any others). Both take any number, so that a name of the right shape
            gets a message about the field that is out of range.
        name_form: the pattern in words, for messages.
        cameras: the camera numbers the dataset's names carry.
        generated_name: format (fields pid, camera, row, draw) of a generated image's name in
            an export; it matches ``name_pattern`` and never equals a real name.
        subfolder: the folder under the given root that holds the three folders (CUHK03-NP's
            ``detected`` or ``labeled``), or "" for the root itself.
    """

    title: str
    name_pattern: re.Pattern[str]
    name_form: str
    cameras: range
    generated_name: str
    subfolder: str = ""

    def match(self, name: str) -> re.Match[str]:
        """The fields of file name ``name`` (a name ending in ``.jpg.jpg`` too).

        Raises:
            ValueError: the name does not follow the pattern, or its person id (four digits,
                or -1 for junk) or camera is out of range; the message starts with the name.
        """
        stem = Path(name).name
        while Path(stem).suffix.lower() in IMAGE_SUFFIXES:  # Market's *.jpg.jpg files
            stem = Path(stem).stem
        match = self.name_pattern.match(stem)
        if match is None:
            raise ValueError(f"{name}: not a {self.title} image name ({self.name_form})")
        if match["pid"] != "-1" and not re.fullmatch(r"\d{4}", match["pid"]):
            raise ValueError(
                f"{name}: person id {match['pid']} is out of range (four digits 0000-9999, or "
                "-1 for junk)"
            )
        if int(match["cam"]) not in self.cameras:
            raise ValueError(
                f"{name}: camera {match['cam']} is out of range ({self.title} cameras are "
                f"{self.cameras.start}-{self.cameras.stop - 1})"
            )
        return match

    def generated_file_name(self, person_id: int, camera: int, row: int, draw: int) -> str:
        """The export name of generated row ``row``, draw ``draw`` of its source image."""
        if not 0 <= row < 1_000_000:
            raise ValueError(f"generated row {row} does not fit the 6-digit row field")
        return self.generated_name.format(pid=person_id, camera=camera, row=row, draw=draw)


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
DUKEMTMC_REID = FolderDataset(
    title="DukeMTMC-reID",
    name_pattern=re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d+)_f(?P<frame>\d+)$"),
    name_form="pid_cC_fFRAME.jpg, e.g. 0001_c2_f0046182.jpg",
    cameras=range(1, 9),
    # Frame 9, row, draw: nine digits where the real frame numbers have seven.
    generated_name="{pid:04d}_c{camera}_f9{row:06d}{draw:02d}.jpg",
)
_CUHK03_NAME = re.compile(r"^(?P<pid>-?\d+)_c(?P<cam>\d+)_(?P<shot>\d+)$")
# Camera 1 or 2: the two views of the person's camera pair (CUHK03 has five pairs).
_CUHK03_CAMERAS = range(1, 3)
# Shot 9, row, draw: nine digits where the real shot numbers are 1-10. PNG like the real ones,
# so loaders that read *.png find them.
_CUHK03_GENERATED = "{pid:04d}_c{camera}_9{row:06d}{draw:02d}.png"
CUHK03_NP_DETECTED = FolderDataset(
    title="CUHK03-NP (detected)",
    name_pattern=_CUHK03_NAME,
    name_form="pid_cC_N.png, e.g. 0001_c1_1.png",
    cameras=_CUHK03_CAMERAS,
    generated_name=_CUHK03_GENERATED,
    subfolder="detected",
)
CUHK03_NP_LABELED = FolderDataset(
    title="CUHK03-NP (labeled)",
    name_pattern=_CUHK03_NAME,
    name_form="pid_cC_N.png, e.g. 0001_c1_1.png",
    cameras=_CUHK03_CAMERAS,
    generated_name=_CUHK03_GENERATED,
    subfolder="labeled",
)
FOLDER_DATASETS: dict[str, FolderDataset] = {
    "market1501": MARKET1501,
    "dukemtmc_reid": DUKEMTMC_REID,
    "cuhk03_detected": CUHK03_NP_DETECTED,
    "cuhk03_labeled": CUHK03_NP_LABELED,
}


def scan_folders(source: Path, dataset: FolderDataset) -> tuple[pd.DataFrame, list[str]]:
    """List the images of a dataset in Market-1501's three folders.

    Files without an image suffix (``Thumbs.db``) are ignored; images whose names do not
    parse (:meth:`FolderDataset.match`) are skipped with a note each.

    Returns:
        (candidates with columns :data:`CANDIDATE_COLUMNS`, filename = the file's name, in
        folder order then name order; skipped notes).
    Raises:
        DatasetLayoutError: ``source`` or a required folder is missing (the message lists
            which).
    """
    source = Path(source)
    if not source.is_dir():
        raise DatasetLayoutError(f"{source}: folder does not exist")
    root = source / dataset.subfolder
    if not root.is_dir():
        raise DatasetLayoutError(
            f"{source} is not a {dataset.title} folder: missing {dataset.subfolder} (expected "
            f"{dataset.subfolder}/ holding {', '.join(MARKET_FOLDERS)})"
        )
    missing = [name for name in MARKET_FOLDERS if not (root / name).is_dir()]
    if missing:
        raise DatasetLayoutError(
            f"{root} is not a {dataset.title} folder: missing {', '.join(missing)} "
            f"(expected {', '.join(MARKET_FOLDERS)})"
        )
    rows, skipped = [], []
    for folder, split in MARKET_FOLDERS.items():
        for path in sorted((root / folder).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                match = dataset.match(path.name)
            except ValueError as error:
                skipped.append(str(error))
                continue
            rows.append((int(match["pid"]), int(match["cam"]), split, path.name, str(path)))
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS), skipped


# MSMT17 (V1): list file -> (image folder, split). Training = list_train (30,248 images), as
# torchreid and fast-reid train by default; list_val (2,373 images of the same identities) is
# added with ``with_val``, the official 32,621.
MSMT17_LISTS = {
    "list_train.txt": ("train", "train"),
    "list_val.txt": ("train", "train"),
    "list_query.txt": ("test", "query"),
    "list_gallery.txt": ("test", "gallery"),
}
MSMT17_CAMERAS = range(1, 16)


def msmt17_camera(relative: str) -> int:
    """Camera of an MSMT17 image path such as ``0000/0000_000_01_0303morning_0015_0.jpg``:
    the third ``_`` field of the file name.

    Raises:
        ValueError: no such field, or a camera outside 1-15.
    """
    fields = Path(relative).name.split("_")
    if len(fields) < 3 or not fields[2].isdigit():
        raise ValueError(
            f"{relative}: not an MSMT17 image name (pid_index_camera_..., e.g. "
            "0000_000_01_0303morning_0015_0.jpg)"
        )
    camera = int(fields[2])
    if camera not in MSMT17_CAMERAS:
        raise ValueError(
            f"{relative}: camera {camera} is out of range (MSMT17 cameras are "
            f"{MSMT17_CAMERAS.start}-{MSMT17_CAMERAS.stop - 1})"
        )
    return camera


def msmt17_person_ids(labels: np.ndarray, test: np.ndarray, *, train_ids: int) -> np.ndarray:
    """Store person ids of MSMT17 list labels: label + 1 (the store's 0 is a distractor), and
    test labels after the ``train_ids`` training ones (both sides count from 0).

    Args:
        labels: int [N] list labels; test: bool [N], True for a query or gallery image.
        train_ids: the number of training labels (the largest one + 1).
    Returns:
        int [N].
    """
    return labels + 1 + train_ids * test


def msmt17_labels(person_ids: np.ndarray, test: np.ndarray, *, train_ids: int) -> np.ndarray:
    """The list labels int [N] of store person ids int [N] (test: bool [N]), the inverse of
    :func:`msmt17_person_ids`."""
    return person_ids - 1 - train_ids * test


def _read_msmt17_list(path: Path) -> list[tuple[int, str, int, int]]:
    """(line number, relative path, label, camera) of each line of an MSMT17 list file."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != 2 or not fields[1].isdigit():
            raise DatasetLayoutError(
                f"{path}, line {number}: {line.strip()!r} is not 'path label' (e.g. "
                "'0000/0000_000_01_0303morning_0015_0.jpg 0')"
            )
        try:
            camera = msmt17_camera(fields[0])
        except ValueError as error:
            raise DatasetLayoutError(f"{path}, line {number}: {error}") from None
        entries.append((number, fields[0], int(fields[1]), camera))
    return entries


def official_count_differences(
    kind: str, images_per_split: Mapping[Any, int], *, with_val: bool = False
) -> list[str]:
    """One line per split whose image count differs from the complete dataset's
    (:data:`OFFICIAL_COUNTS`), e.g. ``Market-1501 train: 12,000 images, the official count is
    12,936``; empty when every split matches.

    Args:
        images_per_split: split -> images ingested (a split absent counts 0).
        with_val: MSMT17 read with list_val.
    """
    official = OFFICIAL_COUNTS[f"{kind}_with_val" if kind == "msmt17" and with_val else kind]
    return [
        f"{DATASET_TITLES[kind]} {split}: {images_per_split.get(split, 0):,} images, the "
        f"official count is {expected:,} (a partial or altered copy?)"
        for split, expected in official.items()
        if images_per_split.get(split, 0) != expected
    ]


def scan_msmt17(source: Path, *, with_val: bool = False) -> tuple[pd.DataFrame, list[str]]:
    """List the images of MSMT17 (V1 layout): ``train/`` and ``test/`` image folders and the
    list files :data:`MSMT17_LISTS`, lines ``<path under the folder> <label>``.

    Split: list_train goes to ``train`` (with ``with_val``, list_val too), list_query to
    ``query``, list_gallery to ``gallery``. Without ``with_val`` list_val is still read and
    checked, and its images are left out without a note. Camera: the third field of the file
    name (1-15). Person id: :func:`msmt17_person_ids`, so training and test identities stay
    apart. Filename: the path
    under ``source`` (``train/0000/0000_000_01_0303morning_0015_0.jpg``; a bare file name may
    occur in both folders). Images that no list names are skipped and reported.

    Returns:
        (candidates with columns :data:`CANDIDATE_COLUMNS`, in list order; skipped notes).
    Raises:
        DatasetLayoutError: a folder or list file is missing, a line is not ``path label`` or
            names a camera outside 1-15, an image is listed twice, or a list names an image
            that is not there (the message names the list, the line and the file).
    """
    source = Path(source)
    if not source.is_dir():
        raise DatasetLayoutError(f"{source}: folder does not exist")
    folders = sorted({folder for folder, _ in MSMT17_LISTS.values()}, reverse=True)
    missing_folders = [f"{folder}/" for folder in folders if not (source / folder).is_dir()]
    missing = missing_folders + [name for name in MSMT17_LISTS if not (source / name).is_file()]
    expected = [f"{folder}/" for folder in folders] + list(MSMT17_LISTS)
    if missing:
        raise DatasetLayoutError(
            f"{source} is not an MSMT17 (V1) folder: missing {', '.join(missing)} (expected "
            f"{', '.join(expected)})"
        )
    present = {
        folder: {
            path.relative_to(source / folder).as_posix()
            for path in (source / folder).rglob("*")
            if path.suffix.lower() in IMAGE_SUFFIXES
        }
        for folder in folders
    }
    entries = {name: _read_msmt17_list(source / name) for name in MSMT17_LISTS}
    rows: list[tuple[int, int, str, str, str]] = []
    listed_at: dict[str, str] = {}  # filename -> where it is listed
    for name, listed in entries.items():
        folder, split = MSMT17_LISTS[name]
        for number, relative, label, camera in listed:
            filename = f"{folder}/{relative}"
            if filename in listed_at:
                raise DatasetLayoutError(
                    f"{filename} is listed twice: {listed_at[filename]} and {name} line {number}"
                )
            listed_at[filename] = f"{name} line {number}"
            if relative not in present[folder]:
                raise DatasetLayoutError(
                    f"{source / name}, line {number}: names {relative}, which is not in "
                    f"{source / folder}"
                )
            if name == "list_val.txt" and not with_val:
                continue
            rows.append((label, camera, split, filename, str(source / filename)))
    table = pd.DataFrame(rows, columns=["label", *CANDIDATE_COLUMNS[1:]])
    labels = table["label"].to_numpy(np.int64)
    test = (table["split"] != "train").to_numpy()
    train_ids = int(labels[~test].max()) + 1 if (~test).any() else 0
    table["label"] = msmt17_person_ids(labels, test, train_ids=train_ids)
    unlisted = sorted(f"{folder}/{relative}" for folder in folders for relative in present[folder])
    skipped = [
        f"{filename}: in no list ({', '.join(MSMT17_LISTS)})"
        for filename in unlisted
        if filename not in listed_at
    ]
    return table.rename(columns={"label": "person_id"}), skipped
