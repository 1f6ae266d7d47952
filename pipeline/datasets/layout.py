"""What every dataset kind declares (:class:`Dataset`), and Market-1501's three-folder layout
that Market-1501, DukeMTMC-reID and CUHK03-NP share (:class:`FolderDataset`,
:func:`scan_folders`).

A scan returns the candidates ingest stores (columns :data:`CANDIDATE_COLUMNS`) and notes on
the files it skips; a folder that is not the layout it was given as raises
:class:`DatasetLayoutError`, whose one-line message names the file.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from foundation.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
CANDIDATE_COLUMNS = ["person_id", "camera", "split", "filename", "path"]
MARKET_FOLDERS = {"bounding_box_train": "train", "bounding_box_test": "gallery", "query": "query"}

# (candidates with columns CANDIDATE_COLUMNS, notes on the skipped files)
ScanResult = tuple["pd.DataFrame", list[str]]


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


def scan_folders(source: Path, dataset: FolderDataset) -> ScanResult:
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
    import pandas as pd

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


@dataclass(frozen=True)
class Dataset:
    """One dataset kind, everything the ingest, the export and the command line know of it.

    Attributes:
        name: the kind, as the ingest stamp, ``dataset.kind`` in the flow and
            :func:`pipeline.datasets.get_dataset` spell it, e.g. ``cuhk03_labeled``.
        title: the dataset's name in messages and pages, e.g. ``CUHK03-NP (labeled)``.
        help: one line for ``--help``.
        source_help: what folder to pass as the source.
        command: the ``augment-market ingest`` subcommand, e.g. ``dukemtmc-reid``; CUHK03-NP's
            two kinds share ``cuhk03`` and differ in ``setting``.
        layout: Market-1501's three folders as this dataset names its files, or the function
            listing the images of a folder of another layout, called as ``layout(source)``
            (with ``with_val=`` too where ``with_val_help`` is set).
        official_counts: images per split (train, query, gallery) of the complete dataset,
            from its own readme (docs/datasets.md).
        image_size: the store's (height, width) unless the ingest names one.
        resizes: images of another size than the store's are stretched to it; False for
            Market-1501, whose boxes are all 128x64: at that size one of another size is
            skipped.
        setting: the value of ``--setting`` that picks this kind under ``command``.
        setting_help: what ``--setting`` chooses.
        with_val_help: what ``--with-val`` does (MSMT17: train on list_train + list_val);
            None where the kind has no such option.
        official_counts_with_val: ``official_counts`` when ingested ``with_val``.
        barred_folder: folder under the source whose images carry white side bars, cut off
            before the resize (DeepFashion's raw In-shop ``img/``).
        notable_files: file names -> lists of names the ingest reports by name (key -> list,
            counted as ``<key>_images``), e.g. Market-1501's ``*.jpg.jpg`` files.
    """

    name: str
    title: str
    help: str
    source_help: str
    command: str
    layout: FolderDataset | Callable[..., ScanResult]
    official_counts: Mapping[str, int]
    image_size: tuple[int, int]
    resizes: bool = True
    setting: str | None = None
    setting_help: str | None = None
    with_val_help: str | None = None
    official_counts_with_val: Mapping[str, int] | None = None
    barred_folder: str | None = None
    notable_files: Callable[[Sequence[str]], dict[str, list[str]]] | None = None

    def scan(self, source: Path, *, with_val: bool = False) -> ScanResult:
        """List the images of dataset folder ``source`` (``with_val``: see
        ``with_val_help``; ignored by a kind without it).

        Returns:
            (candidates with columns :data:`CANDIDATE_COLUMNS`; skipped notes).
        Raises:
            DatasetLayoutError: ``source`` is not this kind's layout.
        """
        if isinstance(self.layout, FolderDataset):
            return scan_folders(Path(source), self.layout)
        if self.with_val_help is not None:
            return self.layout(Path(source), with_val=with_val)
        return self.layout(Path(source))
