"""Ingest stage: a dataset folder (a Re-ID dataset of :mod:`pipeline.datasets`, or DeepFashion
In-shop) into a store.

Every image is decoded once. The first pass reads each file and decodes it to find the
unreadable ones and the wrong sizes (they are reported and skipped, the rest goes on): a
complete JPEG of the store's size is kept as it is (its bytes are written verbatim, see
:mod:`storage.encoding`), anything else (a resized DeepFashion or DukeMTMC-reID image, a PNG, a
CMYK JPEG) is encoded losslessly right away and held in a temporary spill file. The second pass
writes blocks of those elements (re-reading the verbatim files, not decoding them) through the
store's resumable stage bookkeeping. A crash in the second pass leaves finished blocks in
place; running the same ingest again continues from there.

Sizes (:data:`pipeline.datasets.STORE_SIZES`, or the ``size`` given): Market-1501 is stored at
its images' 128x64, and one of another size is skipped. DukeMTMC-reID, MSMT17 and CUHK03-NP are
resized from their original boxes to 256x128, DeepFashion to 256x256, by stretching, without
keeping the aspect ratio, as torchreid and fast-reid resize Re-ID images (bicubic, as
fast-reid). A raw In-shop ``img/`` image first loses its white side bars (:func:`crop_bars`).

The totals per split are compared with the complete dataset's
(:func:`pipeline.datasets.official_count_differences`); each difference is a warning line
kept in the stamp.
"""

from __future__ import annotations

import re
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO, get_args

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from foundation.errors import UserError
from pipeline.datasets import (
    CANDIDATE_COLUMNS,
    FOLDER_DATASETS,
    IMAGE_SUFFIXES,
    MARKET1501,
    STORE_SIZES,
    DatasetKind,
    DatasetLayoutError,
    official_count_differences,
    scan_folders,
    scan_msmt17,
)
from storage import PersonStore, StageStamp, create_store, encode_rgb, keeps_verbatim, open_store

# 24 real Market-1501 images are named *.jpg.jpg (6 query, 18 bounding_box_test). torchreid
# globs *.jpg and reads pid and camera from the name's start, so they belong to the benchmark.
DOUBLE_SUFFIX = ".jpg.jpg"
# PATN/GFLA flattened DeepFashion name: identity (gender, category, item, photo group), then
# the view number and name.
DEEPFASHION_NAME = re.compile(
    r"^(?P<identity>fashion(?:MEN|WOMEN)[A-Za-z_]+id(?P<item>\d{8})(?P<group>\d{2}))"
    r"_(?P<view>\d+)[a-z]+\.jpg$"
)

Progress = Callable[[int, int], None]


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


def scan_market1501(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """List the images of a Market-1501 folder (:func:`pipeline.datasets.scan_folders`)."""
    return scan_folders(source, MARKET1501)


@dataclass(frozen=True)
class DeepFashionName:
    """The fields of a flattened DeepFashion name such as
    ``fashionWOMENDressesid0000262902_3back.jpg`` (PATN/GFLA lists).

    Attributes:
        identity: the name before the last ``_`` (gender, category, item, photo group), e.g.
            ``fashionWOMENDressesid0000262902``: one person in one outfit.
        item: In-shop item id (00002629); group: photo group of the item (02), i.e. one model
            in one colour; view: In-shop view number (1 front, 2 side, 3 back, 4 full, 6 flat,
            7 additional).
    """

    identity: str
    item: int
    group: int
    view: int


def parse_deepfashion_name(name: str) -> DeepFashionName:
    """Parse a flattened DeepFashion name.

    Raises:
        ValueError: the name does not follow the pattern.
    """
    match = DEEPFASHION_NAME.match(name)
    if match is None:
        raise ValueError(
            f"{name}: not a flattened DeepFashion name "
            "(fashion<GENDER><Category>id<item 8 digits><group 2 digits>_<view><name>.jpg)"
        )
    return DeepFashionName(
        match["identity"], int(match["item"]), int(match["group"]), int(match["view"])
    )


def flatten_inshop_path(relative: str | Path) -> str:
    """The flattened name of a raw In-shop image, as PATN's and GFLA's lists spell it.

    ``WOMEN/Dresses/id_00002629/02_3_back.jpg`` (relative to ``img/``) becomes
    ``fashionWOMENDressesid0000262902_3back.jpg``: "fashion", then the gender and category
    folders as they are, the item folder without underscores, then the file name with every
    underscore after the first removed.

    Raises:
        ValueError: the path is not gender/category/item/file.
    """
    parts = Path(relative).parts
    if len(parts) != 4:
        raise ValueError(f"{relative}: not an In-shop image path (gender/category/id_item/file)")
    gender, category, item, file = parts
    group, *rest = file.split("_")
    return f"fashion{gender}{category}{item.replace('_', '')}{group}_{''.join(rest)}"


def _read_list(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for number, name in enumerate(names, 1):
        try:
            parse_deepfashion_name(name)
        except ValueError as error:
            raise DatasetLayoutError(f"{path}, entry {number}: {error}") from None
    return names


def _inshop_tree(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Flattened name -> file for every image under a raw In-shop ``img/`` tree."""
    files, skipped = {}, []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            files[flatten_inshop_path(path.relative_to(root))] = path
        except ValueError as error:
            skipped.append(str(error))
    return files, skipped


def scan_deepfashion(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """List the images of DeepFashion In-shop as the pose-transfer papers use it.

    ``source`` holds PATN's / GFLA's ``train.lst`` and ``test.lst`` (48,674 / 4,038 flattened
    names) and the images either as those repositories distribute them (``train/`` and
    ``test/`` folders of flattened names) or as the raw In-shop tree (``img_highres/`` or
    ``img/``, e.g. ``img/WOMEN/Dresses/id_00002629/02_3_back.jpg``), mapped to the same
    names by :func:`flatten_inshop_path`. Both forms give the same rows.

    Identity = the flattened name before its last ``_``: item plus photo group (plus gender and
    category: 106 item/group pairs are listed under two categories, 15 of them in train.lst
    under one and test.lst under the other). ``person_id`` numbers the identities of both lists
    in sorted order from 1, so pairs never cross photo groups and the lists' train and test
    identities stay disjoint. ``camera`` is the view number; test.lst goes to split
    ``gallery`` (the store's test split). Images that no list names are skipped and reported.

    Returns:
        (candidates with columns person_id, camera, split, filename, path, sorted by split then
        name; skipped notes).
    Raises:
        DatasetLayoutError: a list or the image folders are missing, a list entry is not a
            flattened name or is in both lists, or a list names an image that is not there
            (the message names the list and the file).
    """
    source = Path(source)
    lists = {split: source / f"{split}.lst" for split in ("train", "test")}
    tree = next((source / d for d in ("img_highres", "img") if (source / d).is_dir()), None)
    has_lists = all(path.is_file() for path in lists.values())
    skipped: list[str] = []
    if has_lists and all((source / split).is_dir() for split in lists):
        folders = {split: source / split for split in lists}
        files = {
            split: {p.name: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            for split, folder in folders.items()
        }
    elif has_lists and tree is not None:
        folders = {split: tree for split in lists}
        found, skipped = _inshop_tree(tree)
        files = {split: found for split in lists}
    else:
        raise DatasetLayoutError(
            f"{source} is not a DeepFashion folder: needs train.lst and test.lst (PATN/GFLA) "
            "and the images in train/ and test/ or in the In-shop img_highres/ or img/ tree"
        )
    names = {split: _read_list(path) for split, path in lists.items()}
    both = sorted(set(names["train"]) & set(names["test"]))
    if both:
        raise DatasetLayoutError(f"{both[0]} is in both train.lst and test.lst")
    identities = sorted(
        {parse_deepfashion_name(n).identity for split in lists for n in names[split]}
    )
    person_ids = {identity: i for i, identity in enumerate(identities, 1)}
    rows = []
    for split, listed in names.items():
        missing = [name for name in listed if name not in files[split]]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetLayoutError(
                f"{lists[split]} names {missing[0]}, which is not in {folders[split]}{more}"
            )
        for name in sorted(listed):
            parsed = parse_deepfashion_name(name)
            rows.append(
                (
                    person_ids[parsed.identity],
                    parsed.view,
                    "train" if split == "train" else "gallery",
                    name,
                    str(files[split][name]),
                )
            )
    listed_names = set(names["train"]) | set(names["test"])
    unlisted = {name for split in lists for name in files[split]} - listed_names
    skipped += [f"{name}: in no list (train.lst, test.lst)" for name in sorted(unlisted)]
    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS), skipped


# PATN's tool/resize_fashion.py cuts 40 columns off each side of the 256-pixel-wide In-shop
# img/ images: the white bars around the photo (the rest, 176 columns, is the photo).
BAR_FRACTION = 40 / 256


def crop_bars(image: Image.Image) -> Image.Image:
    """An In-shop ``img/`` image without its white side bars: :data:`BAR_FRACTION` of the width
    off each side (40 of 256 columns, as PATN), so that stretching the rest to 256x256 gives the
    framing GFLA gets by stretching the ``img_highres/`` photo."""
    bar = round(image.width * BAR_FRACTION)
    return image.crop((bar, 0, image.width - bar, image.height))


def decode_image(
    path: str, *, size: tuple[int, int], resize: bool, bars: bool = False
) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3] (``bars``: :func:`crop_bars` first).

    Raises:
        ValueError: unreadable, truncated, or (when not ``resize``) of the wrong size; the
            message names the file.
    """
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: unreadable image ({error})") from None
    if bars:
        rgb = crop_bars(rgb)
    height, width = size
    if rgb.size != (width, height):
        if not resize:
            raise ValueError(f"{path}: size {rgb.size[1]}x{rgb.size[0]}, expected {height}x{width}")
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


class _Spill:
    """Encoded elements of the images that are not kept verbatim, in a temporary file (a
    resized DeepFashion set does not fit in memory decoded; its elements are written by the
    second pass). Thread-safe appends."""

    def __init__(self) -> None:
        self._file: IO[bytes] | None = None
        self._lock = threading.Lock()

    def put(self, element: bytes) -> tuple[int, int]:
        with self._lock:
            if self._file is None:
                self._file = tempfile.TemporaryFile()
            self._file.seek(0, 2)
            offset = self._file.tell()
            self._file.write(element)
            return offset, len(element)

    def get(self, where: tuple[int, int]) -> bytes:
        assert self._file is not None
        with self._lock:
            self._file.seek(where[0])
            return self._file.read(where[1])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()


def _prepare_all(
    candidates: pd.DataFrame,
    size: tuple[int, int],
    resize: bool,
    workers: int,
    spill: _Spill,
    bars_under: Path | None = None,
) -> list[str | tuple[int, int] | None]:
    """Decode every candidate once: None = a complete JPEG of ``size``, kept verbatim;
    (offset, length) = its lossless element in ``spill``; a string = why it is skipped.
    Images under ``bars_under`` (an In-shop ``img/`` tree) lose their side bars first."""

    def prepare(path: str) -> str | tuple[int, int] | None:
        try:
            data = Path(path).read_bytes()
        except OSError as error:
            return f"{path}: unreadable image ({error})"
        bars = bars_under is not None and Path(path).is_relative_to(bars_under)
        if not bars and keeps_verbatim(data, size):
            return None
        try:
            return spill.put(encode_rgb(decode_image(path, size=size, resize=resize, bars=bars)))
        except ValueError as error:
            return str(error)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(prepare, candidates["path"]))


def scan_dataset(
    kind: DatasetKind, source: Path, *, with_val: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """List the images of dataset folder ``source`` laid out as ``kind`` (``with_val``: MSMT17
    trains on list_train + list_val).

    Returns:
        (candidates with columns :data:`pipeline.datasets.CANDIDATE_COLUMNS`; skipped notes).
    Raises:
        DatasetLayoutError: ``source`` is not that layout.
        ValueError: ``kind`` is not one of :data:`pipeline.datasets.DatasetKind`.
    """
    if kind == "deepfashion":
        return scan_deepfashion(source)
    if kind == "msmt17":
        return scan_msmt17(source, with_val=with_val)
    if kind not in FOLDER_DATASETS:
        raise ValueError(
            f"unknown dataset kind {kind!r}; one of {', '.join(get_args(DatasetKind))}"
        )
    return scan_folders(source, FOLDER_DATASETS[kind])


def ingest(
    source: Path,
    store_url: str,
    *,
    kind: DatasetKind = "market1501",
    size: tuple[int, int] | None = None,
    with_val: bool = False,
    official: bool = True,
    block_size: int = 64,
    overwrite: bool = False,
    workers: int = 4,
    progress: Progress | None = None,
) -> StageStamp:
    """Read a dataset folder into a new store (or finish an interrupted ingest of it).

    Args:
        source: the dataset's root folder.
        store_url: where the store goes (local folder or fsspec URL).
        kind: ``market1501`` (128x64, wrong sizes skipped); ``dukemtmc_reid``, ``msmt17``
            (V1 list files), ``cuhk03_detected`` or ``cuhk03_labeled`` (CUHK03-NP), stretched
            to 256x128 (see :mod:`pipeline.datasets` and docs/datasets.md); or ``deepfashion``
            (PATN/GFLA train.lst / test.lst, see :func:`scan_deepfashion`; stretched to
            256x256, the size pose-transfer work uses).
        size: (height, width) instead of the kind's :data:`pipeline.datasets.STORE_SIZES`;
            Market-1501 at another size than 128x64 is stretched too.
        with_val: MSMT17 trains on list_train + list_val (32,621 images) instead of
            list_train (30,248).
        official: ``source`` is a copy of the published dataset: its totals per split are
            compared with the official ones. False for a synthetic or custom set in the kind's
            layout (the demo's): nothing is compared, and the stamp's config says
            ``official: false``, so evaluation pages compare it with no paper row.
        overwrite: replace an existing store built from other files.
        progress: called as ``progress(done_blocks, total_blocks)``.
    Returns:
        The ``ingest`` stamp; its config names the ``kind``, which export reads. Counts: images
        per split, ``skipped``, ``jpeg_verbatim`` (source files stored as they are) and
        ``lossless`` (stored decoded, losslessly), for Market-1501 ``double_suffix_images``
        (the ``*.jpg.jpg`` files, ingested as images as torchreid does). Report: every skipped
        file and why; the ``*.jpg.jpg`` names; ``count_differences``, one line per split
        whose total is not the official one.
    Raises:
        DatasetLayoutError: ``source`` is not the layout of ``kind``, or holds no image that
            parses (the message gives the first skipped file and why).
    """
    if size is not None and min(size) < 1:
        raise UserError(f"image size {size[0]}x{size[1]}: both sides must be at least 1 pixel")
    candidates, skipped = scan_dataset(kind, Path(source), with_val=with_val)
    if candidates.empty:
        example = f" ({len(skipped)} skipped, e.g. {skipped[0]})" if skipped else ""
        raise DatasetLayoutError(f"{source}: no images found{example}")
    shape: tuple[int, int] = STORE_SIZES[kind] if size is None else (size[0], size[1])
    resize = kind != "market1501" or shape != STORE_SIZES["market1501"]
    spill = _Spill()
    try:
        # Raw low-resolution In-shop images (img/, not img_highres/) carry white side bars.
        bars = Path(source) / "img" if kind == "deepfashion" else None
        prepared = _prepare_all(candidates, shape, resize, workers, spill, bars)
        keep = np.array([not isinstance(p, str) for p in prepared])
        skipped += [p for p in prepared if isinstance(p, str)]
        files = candidates[keep].reset_index(drop=True)
        elements = [p for p in prepared if not isinstance(p, str)]
        index = files.drop(columns="path")
        store = _create_or_resume(store_url, index, shape, block_size, overwrite)
        config = {
            "source": str(Path(source).resolve()),
            "kind": kind,
            "size": list(shape),
            "n_images": len(index),
        }
        if kind == "msmt17":
            config["with_val"] = with_val
        if not official:
            config["official"] = False
        with store.stage("ingest", config=config, on_block=progress) as run:
            for block in run.pending_blocks():
                rows = store.block_slice(block)
                payloads = [
                    Path(files["path"].iloc[row]).read_bytes()
                    if (where := elements[row]) is None
                    else spill.get(where)
                    for row in range(rows.start, rows.stop)
                ]
                run.write_encoded("images", block, payloads)
                run.mark_done(block)
            verbatim = sum(element is None for element in elements)
            double = [n for n in index["filename"] if n.lower().endswith(DOUBLE_SUFFIX)]
            counts = {
                "images": len(index),
                "skipped": len(skipped),
                "jpeg_verbatim": verbatim,
                "lossless": len(index) - verbatim,
                **{
                    f"{split}_images": int((index["split"] == split).sum())
                    for split in ("train", "gallery", "query")
                },
            }
            report: dict[str, list[str]] = {"skipped": skipped}
            if official:
                report["count_differences"] = official_count_differences(
                    kind, index["split"].value_counts().to_dict(), with_val=with_val
                )
            if kind == "market1501":
                counts["double_suffix_images"] = len(double)
                report["double_suffix"] = double
            return run.finish(counts=counts, report=report)
    finally:
        spill.close()


def _create_or_resume(
    url: str, index: pd.DataFrame, size: tuple[int, int], block_size: int, overwrite: bool
) -> PersonStore:
    try:
        existing = open_store(url, mode="r+")
    except FileNotFoundError:
        return create_store(url, index=index, height=size[0], width=size[1], block_size=block_size)
    same = (
        existing.n_images == len(index)
        and (existing.height, existing.width) == size
        and existing.index["filename"].tolist() == index["filename"].tolist()
    )
    if same:
        return existing
    if not overwrite:
        raise FileExistsError(
            f"{url} already holds a store built from other images; pass --overwrite to replace it"
        )
    return create_store(
        url, index=index, height=size[0], width=size[1], block_size=block_size, overwrite=True
    )
