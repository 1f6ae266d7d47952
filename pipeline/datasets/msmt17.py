"""MSMT17 (V1): ``train/`` and ``test/`` image folders and list files naming their images
(:func:`scan_msmt17`); 15 cameras, boxes of every size (stretched to the store's)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.datasets.layout import (
    CANDIDATE_COLUMNS,
    IMAGE_SUFFIXES,
    Dataset,
    DatasetLayoutError,
    ScanResult,
)

if TYPE_CHECKING:
    import numpy as np

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


def scan_msmt17(source: Path, *, with_val: bool = False) -> ScanResult:
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
    import numpy as np
    import pandas as pd

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


DATASET = Dataset(
    name="msmt17",
    title="MSMT17",
    help="Ingest MSMT17 (15 cameras; training = list_train; stretched to 256x128).",
    source_help="MSMT17_V1 folder: train/, test/, list_train.txt, list_val.txt, "
    "list_query.txt, list_gallery.txt.",
    command="msmt17",
    layout=scan_msmt17,
    official_counts={"train": 30_248, "query": 11_659, "gallery": 82_161},
    # The 256x128 that torchreid and fast-reid resize the original boxes to.
    image_size=(256, 128),
    with_val_help=(
        "Train on list_train + list_val (32,621 images) instead of list_train (30,248)."
    ),
    official_counts_with_val={"train": 32_621, "query": 11_659, "gallery": 82_161},
)
