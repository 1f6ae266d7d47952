"""Ingest stage: a dataset folder, laid out as one of the kinds of :mod:`pipeline.datasets`,
into a store.

Every image is decoded once. The first pass reads each file and decodes it to find the
unreadable ones and the wrong sizes (they are reported and skipped, the rest goes on): a
complete JPEG of the store's size is kept as it is (its bytes are written verbatim, see
:mod:`storage.encoding`), anything else (a resized DeepFashion or DukeMTMC-reID image, a PNG, a
CMYK JPEG) is encoded losslessly right away and held in a temporary spill file. The second pass
writes blocks of those elements (re-reading the verbatim files, not decoding them) through the
store's resumable stage bookkeeping. A crash in the second pass leaves finished blocks in
place; running the same ingest again continues from there.

Sizes (the kind's :attr:`pipeline.datasets.Dataset.image_size`, or the ``size`` given):
Market-1501 is stored at its images' 128x64, and one of another size is skipped.
DukeMTMC-reID, MSMT17 and CUHK03-NP are resized from their original boxes to 256x128,
DeepFashion to 256x256, by stretching, without keeping the aspect ratio, as torchreid and
fast-reid resize Re-ID images (bicubic, as fast-reid). A raw In-shop ``img/`` image first loses
its white side bars (:func:`pipeline.datasets.deepfashion.crop_bars`).

The totals per split are compared with the complete dataset's
(:func:`pipeline.datasets.official_count_differences`); each difference is a warning line
kept in the stamp.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from foundation.errors import UserError
from pipeline.datasets import (
    DatasetKind,
    DatasetLayoutError,
    deepfashion,
    get_dataset,
    official_count_differences,
)
from storage import PersonStore, StageStamp, create_store, encode_rgb, keeps_verbatim, open_store

Progress = Callable[[int, int], None]


def decode_image(
    path: str, *, size: tuple[int, int], resize: bool, bars: bool = False
) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3] (``bars``: cut off the side bars first,
    :func:`pipeline.datasets.deepfashion.crop_bars`).

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
        rgb = deepfashion.crop_bars(rgb)
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
        kind: the dataset kind of ``source``, one of :func:`pipeline.datasets.dataset_names`
            (``market1501``: 128x64, wrong sizes skipped; the Re-ID sets stretched to 256x128,
            ``deepfashion`` to 256x256; see docs/datasets.md).
        size: (height, width) instead of the kind's :attr:`pipeline.datasets.Dataset.image_size`;
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
        (the ``*.jpg.jpg`` files, ingested as images as torchreid does: the kind's
        :attr:`pipeline.datasets.Dataset.notable_files`). Report: every skipped file and why;
        the ``*.jpg.jpg`` names; ``count_differences``, one line per split whose total is not
        the official one.
    Raises:
        DatasetLayoutError: ``source`` is not the layout of ``kind``, or holds no image that
            parses (the message gives the first skipped file and why).
        ValueError: ``kind`` is no dataset kind (the message names the closest one).
    """
    if size is not None and min(size) < 1:
        raise UserError(f"image size {size[0]}x{size[1]}: both sides must be at least 1 pixel")
    dataset = get_dataset(kind)
    candidates, skipped = dataset.scan(Path(source), with_val=with_val)
    if candidates.empty:
        example = f" ({len(skipped)} skipped, e.g. {skipped[0]})" if skipped else ""
        raise DatasetLayoutError(f"{source}: no images found{example}")
    shape: tuple[int, int] = dataset.image_size if size is None else (size[0], size[1])
    resize = dataset.resizes or shape != dataset.image_size
    spill = _Spill()
    try:
        bars = Path(source) / dataset.barred_folder if dataset.barred_folder else None
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
        if dataset.with_val_help is not None:
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
            if dataset.notable_files is not None:
                for key, names in dataset.notable_files(index["filename"].tolist()).items():
                    counts[f"{key}_images"] = len(names)
                    report[key] = names
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
