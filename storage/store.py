"""One Zarr (v3) store per dataset: images, masks, parsing, the index, tables and stage stamps.

Layout under the store root (a local folder or an fsspec URL such as ``s3://bucket/market``)::

    images    [N, H, W, 3] uint8      RGB
    masks     [N, H, W]    uint8      {0, 1}, person = 1 (Mask R-CNN or provided)
    parsing   [N, H, W]    uint8      0..19, LIP labels (SCHP or provided)
    person_id [N] int32, camera [N] int8, split [N] str (train/gallery/query), filename [N] str
    done/<stage>         [n_blocks] bool   per-block done flags (see storage/stages.py)
    generated/<run>/...  synthesized images with source/target indices and identity labels
    tables/<name>.parquet  e.g. the pairs tables
    stamps/<stage>.json  finished-stage records;  locks/<stage>.lock  one-writer locks

Format 2 (``augment-market/2``, measured in BENCHMARKS.md "Storage"): ``images``, ``masks``,
``parsing`` and ``generated/<run>/images`` hold one encoded element per image (a Zarr array of
variable-length bytes, ``block_size`` elements per chunk, no further compression): an ingested
JPEG verbatim, anything else losslessly (:mod:`storage.encoding`). Reads decode only the rows
asked for, with libjpeg-turbo and zstd in a thread pool. The store is the size of the JPEG
folder, ingest decodes each image once (to check it), and a random row costs one chunk read of
encoded bytes (about 150 KB on Market-1501) plus one decode. :meth:`PersonStore.reader` keeps
encoded chunks in memory for repeated random access (the streaming training loader).

Format 1 (``augment-market/1``: decoded pixels, 64-image chunks, Blosc zstd-5 bitshuffle)
stays readable and writable through the same methods; ``augment-market migrate`` (see
:mod:`storage.migrate`) converts it.

One chunk is one block in both formats, so one writer per block never shares a chunk with
another writer.

This module opens, creates and checks stores; :class:`PersonStore` gathers the concerns kept in
their own modules: :mod:`storage.base` (the handle, its files and errors),
:mod:`storage.tables` (index and tables), :mod:`storage.arrays` and :mod:`storage.elements`
(image arrays and their decoding), :mod:`storage.stamps`, :mod:`storage.stages` and
:mod:`storage.locks` (stage runs).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import zarr

from foundation import __version__
from storage.arrays import ImageArrays
from storage.base import (
    FORMAT,
    FORMAT_V1,
    INDEX_COLUMNS,
    SPLITS,
    DamagedStoreError,
    StoreLocationError,
    StoreNotFoundError,
    StoreValidationError,
)
from storage.elements import create_elements, create_pixels
from storage.stages import StageRuns
from storage.stamps import StageStamp


@dataclass(frozen=True)
class StoreSummary:
    """What ``augment-market info`` prints."""

    url: str
    n_images: int
    height: int
    width: int
    images_per_split: dict[str, int]
    ids_per_split: dict[str, int]
    stages: dict[str, StageStamp]
    generated: dict[str, int]
    size_bytes: int


class PersonStore(ImageArrays, StageRuns):
    """A dataset's store: its image arrays, index and tables (:class:`ImageArrays`), stamps
    and stage runs (:class:`StageRuns`). Use :func:`create_store` or :func:`open_store`, not
    the constructor."""

    def summary(self) -> StoreSummary:
        index = self.index
        known = index[index["person_id"] > 0]
        return StoreSummary(
            url=self.url,
            n_images=self.n_images,
            height=self.height,
            width=self.width,
            images_per_split={s: int((index["split"] == s).sum()) for s in SPLITS},
            ids_per_split={
                s: int(known.loc[known["split"] == s, "person_id"].nunique()) for s in SPLITS
            },
            stages=self.stamps(),
            generated=self.generated_runs(),
            size_bytes=int(self.fs.du(self.root)) if self.fs.exists(self.root) else 0,
        )


def _check_location(fs: Any, root: str, url: str) -> None:
    if fs.isfile(root):
        raise StoreLocationError(
            f"{url} is a regular file, not a store folder; give a folder path (a new one to "
            "create a store)"
        )


def _validate_index(index: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise StoreValidationError(f"index lacks columns {missing}")
    unknown = sorted(set(index["split"]) - set(SPLITS))
    if unknown:
        raise StoreValidationError(f"unknown split values {unknown}; allowed {SPLITS}")
    duplicates = index["filename"][index["filename"].duplicated()]
    if len(duplicates):
        raise StoreValidationError(f"duplicate file names: {duplicates.tolist()[:5]}")
    return index.reset_index(drop=True)


def create_store(
    url: str,
    *,
    index: pd.DataFrame,
    height: int,
    width: int,
    block_size: int = 64,
    overwrite: bool = False,
    storage_options: Mapping[str, Any] | None = None,
    format_version: Literal[1, 2] = 2,
) -> PersonStore:
    """Create an empty store for the images listed in ``index``.

    Args:
        url: local folder or fsspec URL.
        index: one row per image with ``person_id`` (int; -1 junk, 0 distractor), ``camera``
            (int), ``split`` (train/gallery/query), ``filename`` (str, unique).
        height, width: image size; every image written must have it.
        block_size: images per chunk and per stage block.
        overwrite: replace an existing store (otherwise an existing store is an error).
        format_version: 2, the current format; 1 writes decoded pixels as the format before
            (for comparing the two in benchmarks/store_io.py; ``migrate`` converts it).

    Raises:
        FileExistsError: a store exists at ``url`` and ``overwrite`` is False.
        StoreLocationError: ``url`` is a regular file or a non-empty folder holding no store
            (never emptied, even with ``overwrite``).
    """
    index = _validate_index(index)
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    _check_location(fs, root, url)
    if fs.exists(f"{root}/zarr.json"):
        if not overwrite:
            raise FileExistsError(
                f"a store already exists at {url}; pass overwrite=True to replace"
            )
        fs.rm(root, recursive=True)
    elif fs.isdir(root) and fs.ls(root, detail=False):
        # Zarr's mode "w" would empty the folder: never delete files that are not a store's.
        raise StoreLocationError(
            f"{url} is a folder of other files, not a store; give a new or empty folder"
        )
    group = zarr.open_group(url, mode="w", storage_options=dict(storage_options or {}) or None)
    n = len(index)
    group.attrs.update(
        {
            "n_images": n,
            "height": height,
            "width": width,
            "block_size": block_size,
            "format": FORMAT_V1 if format_version == 1 else FORMAT,
        }
    )
    create = create_pixels if format_version == 1 else create_elements
    create(group, "images", n, (height, width, 3), block_size)
    create(group, "masks", n, (height, width), block_size)
    create(group, "parsing", n, (height, width), block_size)
    group.create_array("person_id", data=index["person_id"].to_numpy(np.int32), chunks=(max(n, 1),))
    group.create_array("camera", data=index["camera"].to_numpy(np.int8), chunks=(max(n, 1),))
    for column in ("split", "filename"):
        column_array = group.create_array(column, shape=(n,), dtype=str, chunks=(max(n, 1),))
        column_array[:] = index[column].astype(str).to_numpy(dtype=object)
    return PersonStore(url, group, mode="r+")


def open_store(
    url: str, *, mode: Literal["r", "r+"] = "r", storage_options: Mapping[str, Any] | None = None
) -> PersonStore:
    """Open an existing store; a clear error when ``url`` holds none.

    Raises:
        StoreNotFoundError: nothing, or no store, at ``url``.
        StoreLocationError: ``url`` is a regular file.
        StoreValidationError: a Zarr group that is not an augment-market store, or one of a
            format this version does not read.
        DamagedStoreError: attributes cut short, or index or image arrays whose length is not
            the store's image count.
    """
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    _check_location(fs, root, url)
    if not fs.exists(f"{root}/zarr.json"):
        raise StoreNotFoundError(
            f"no augment-market store at {url} (missing zarr.json); "
            "create one with `augment-market ingest`"
        )
    group = zarr.open_group(url, mode=mode, storage_options=dict(storage_options or {}) or None)
    found = group.attrs.get("format")
    if found not in (FORMAT, FORMAT_V1):
        if isinstance(found, str) and found.startswith("augment-market/"):
            raise StoreValidationError(
                f"{url} is an augment-market store of format {found}, which augment-market "
                f"{__version__} cannot read (it reads {FORMAT_V1} and {FORMAT}); use the "
                "version that wrote it, or a newer one"
            )
        raise StoreValidationError(f"{url} is a Zarr group but not an augment-market store")
    _check_shape(url, group)
    return PersonStore(url, group, mode=mode)


def _check_shape(url: str, group: zarr.Group) -> None:
    """The store's attributes are whole and every per-image array has ``n_images`` rows.

    Raises:
        DamagedStoreError: naming the store's ``zarr.json`` or the array that disagrees.
    """
    attrs: dict[str, Any] = dict(group.attrs)
    try:
        n_images = int(attrs["n_images"])
        for name in ("height", "width", "block_size"):
            int(attrs[name])
    except (KeyError, TypeError, ValueError) as error:
        raise DamagedStoreError(
            f"{url}/zarr.json lacks a whole attribute ({type(error).__name__}: {error}); the "
            "store's attributes were edited or cut: restore the store from a copy or ingest "
            "again with --overwrite"
        ) from None
    with warnings.catch_warnings():  # stamps/, locks/, tables/ are ours, not Zarr's
        warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
        arrays = dict(group.arrays())
    for name in (*INDEX_COLUMNS, "images", "masks", "parsing"):
        if name in INDEX_COLUMNS and name not in arrays:
            raise DamagedStoreError(
                f"store {url} has no index array {name!r}; restore the store from a copy or "
                "ingest again with --overwrite"
            )
        if name in arrays and arrays[name].shape[0] != n_images:
            raise DamagedStoreError(
                f"store {url} is damaged: its zarr.json says n_images {n_images} but "
                f"{name} has {arrays[name].shape[0]} rows; restore the store from a copy or "
                "ingest again with --overwrite"
            )
