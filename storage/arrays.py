"""The store's image arrays: validated writes, decoding reads, whole-set loads, generated sets.

Image arrays are ``images`` [N, H, W, 3], ``masks`` and ``parsing`` [N, H, W] (uint8) and each
generated set's ``generated/<run>/images``; a generated set also holds ``source_index``,
``target_index`` and ``person_id`` [M] int64. How they are held on disk (encoded elements or
decoded pixels) is :mod:`storage.elements`'s business; callers see decoded uint8 arrays, or
with :meth:`ImageArrays.iter_images` the stored JPEG files where the store kept them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from storage.base import FORMAT_V1, NUM_PARSING_LABELS, StoreValidationError, as_array, as_group
from storage.elements import (
    DEFAULT_THREADS,
    ITEM_SHAPE,
    RowReader,
    create_elements,
    create_pixels,
    decode_elements,
    get_rows,
    is_elements,
    object_array,
)
from storage.encoding import (
    JPEG_MAGIC,
    EncodingError,
    decode_element,
    encode_labels,
    encode_rgb,
    jpeg_size,
)
from storage.tables import IndexAndTables


class ImageArrays(IndexAndTables):
    """Reads and writes of a store's image arrays (part of :class:`storage.PersonStore`)."""

    def item_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one decoded row of array ``name`` (e.g. ``(128, 64, 3)`` for images)."""
        array = self._array(name)
        if is_elements(array):
            shape = array.attrs[ITEM_SHAPE]
            if not isinstance(shape, list):
                raise StoreValidationError(f"{name}: {ITEM_SHAPE} is not a list")
            return tuple(int(v) for v in shape)
        return tuple(int(v) for v in array.shape[1:])

    def n_rows(self, name: str) -> int:
        """Rows of array ``name`` (the store's images, or a generated set's)."""
        return int(self._array(name).shape[0])

    def read(
        self,
        name: str,
        selection: slice | np.ndarray | Sequence[int] = slice(None),
        *,
        threads: int = DEFAULT_THREADS,
    ) -> np.ndarray:
        """Read (and decode) rows of array ``name`` (``images``, ``masks``, ``parsing``, or a
        generated array such as ``generated/<run>/images``); only the chunks holding them are
        read and only those rows decoded. Rows never written read as zeros.

        Args:
            selection: a slice or row indices (any order, repeats allowed).
            threads: decoding threads for large reads.
        """
        array = self._array(name)
        if not is_elements(array):
            if isinstance(selection, slice):
                return np.asarray(array[selection])
            rows = np.asarray(selection, dtype=np.int64)
            return np.asarray(array.get_orthogonal_selection((rows,)))
        if isinstance(selection, slice):
            return decode_elements(
                get_rows(array, selection), self.item_shape(name), threads=threads
            )
        rows = np.asarray(selection, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        decoded = decode_elements(get_rows(array, unique), self.item_shape(name), threads=threads)
        return decoded if len(unique) == len(rows) and (unique == rows).all() else decoded[inverse]

    def read_encoded(
        self, name: str, selection: slice | np.ndarray | Sequence[int] = slice(None)
    ) -> list[bytes]:
        """The stored elements of rows of a format-2 image array, undecoded (e.g. to copy an
        ingested JPEG verbatim); see :mod:`storage.encoding`.

        Raises:
            StoreValidationError: ``name`` holds decoded pixels (format 1).
        """
        array = self._array(name)
        if not is_elements(array):
            raise StoreValidationError(f"{name} in {self.url} holds decoded pixels, no elements")
        if isinstance(selection, slice):
            return list(get_rows(array, selection))
        return list(get_rows(array, np.asarray(selection, dtype=np.int64)))

    def iter_images(self, name: str = "images") -> Iterator[bytes | np.ndarray]:
        """Every row of image array ``name`` in order, as stored: the bytes of the JPEG file
        the store kept verbatim (write them out to copy the file byte for byte), else the
        decoded RGB uint8 [H, W, 3]. Format-1 arrays are decoded whole first."""
        array = self._array(name)
        if not is_elements(array):
            yield from self.load_in_memory((name,))[name]
            return
        shape = self.item_shape(name)
        for element in get_rows(array, slice(None)):
            if bytes(element[:3]) == JPEG_MAGIC:
                yield bytes(element)
            else:
                yield decode_elements([element], shape)[0]

    def load_in_memory(
        self,
        names: Sequence[str] = ("images", "masks", "parsing"),
        *,
        rows: np.ndarray | None = None,
        threads: int = DEFAULT_THREADS,
    ) -> dict[str, np.ndarray]:
        """Decode arrays into memory (the fast training path).

        Args:
            names: arrays to load.
            rows: optional row indices to keep; only these are decoded (format 2; format 1
                arrays are loaded whole, then indexed: sequential chunk reads are ~50x faster
                than random ones there).
            threads: decoding threads (format 2).
        Returns:
            name -> array, e.g. ``images`` [N, H, W, 3] uint8.
        """
        loaded = {}
        for name in names:
            array = self._array(name)
            if is_elements(array):
                selection = slice(None) if rows is None else rows
                loaded[name] = self.read(name, selection, threads=threads)
            else:
                whole = np.asarray(array[:])
                loaded[name] = whole if rows is None else whole[rows]
        return loaded

    def reader(
        self, names: Sequence[str], *, cache_bytes: int = 1 << 30, threads: int = 1
    ) -> RowReader:
        """A random-access reader of ``names`` that keeps encoded chunks in memory (up to
        ``cache_bytes``; decoded pixels are never cached). For repeated random batches of a
        store whose decoded arrays need not fit in memory; see :class:`RowReader`."""
        return RowReader(self, names, cache_bytes=cache_bytes, threads=threads)

    def write(self, name: str, block: int, data: np.ndarray) -> None:
        """Validate ``data`` and write it as block ``block`` of array ``name`` (image arrays of
        format 2 encode it losslessly, see :mod:`storage.encoding`).

        Raises:
            StoreValidationError: wrong shape, dtype, or label range; the message names the
                first offending image by file name.
        """
        self._check_writable()
        self._begin_writes()
        array = self._array(name)
        rows = self.block_slice(block, array.shape[0])
        expected = (rows.stop - rows.start, *self.item_shape(name))
        data = np.asarray(data)
        if data.shape != expected:
            raise StoreValidationError(
                f"{name} block {block}: expected shape {expected}, got {data.shape}"
            )
        dtype = np.dtype(np.uint8) if is_elements(array) else array.dtype
        if data.dtype != dtype:
            raise StoreValidationError(
                f"{name} block {block}: expected dtype {dtype}, got {data.dtype}"
            )
        self._check_range(name, rows, data)
        if is_elements(array):
            encode = encode_rgb if data.ndim == 4 else encode_labels
            array[rows] = object_array([encode(image) for image in data])
        else:
            array[rows] = data

    def write_encoded(self, name: str, block: int, elements: Sequence[bytes]) -> None:
        """Write block ``block`` of a format-2 image array from encoded elements: JPEG files
        kept verbatim (their headers must give the array's image size; the caller has checked
        each with :func:`storage.keeps_verbatim`) or elements of :mod:`storage.encoding`.

        Raises:
            StoreValidationError: wrong count, a JPEG of another size, an unknown encoding,
                or a format-1 store (refused before anything is written); the message names
                the image.
        """
        self._check_writable()
        array = self._array(name)
        if not is_elements(array):
            raise StoreValidationError(
                f"{self.url} is a format-1 store (decoded pixels): its {name} take no encoded "
                "images; write a new store (ingest again with --overwrite), or finish it with "
                "the version that began it and run `augment-market migrate`"
            )
        self._begin_writes()
        rows = self.block_slice(block, array.shape[0])
        if len(elements) != rows.stop - rows.start:
            raise StoreValidationError(
                f"{name} block {block}: expected {rows.stop - rows.start} elements, "
                f"got {len(elements)}"
            )
        height, width = self.item_shape(name)[:2]
        for offset, element in enumerate(elements):
            try:
                if bytes(element[:3]) == JPEG_MAGIC:
                    size = jpeg_size(element)[:2]
                    if size != (height, width):
                        raise EncodingError(
                            f"JPEG of {size[0]}x{size[1]}, expected {height}x{width}"
                        )
                else:  # checked by decoding it: a lossless element is small and fast
                    decode_element(element, np.empty(self.item_shape(name), np.uint8))
            except EncodingError as error:
                row = rows.start + offset
                label = self.index["filename"].iloc[row] if name == "images" else f"row {row}"
                raise StoreValidationError(f"{name}: image {label}: {error}") from None
        array[rows] = object_array(elements)

    def _check_range(self, name: str, rows: slice, data: np.ndarray) -> None:
        limit = {"masks": 1, "parsing": NUM_PARSING_LABELS - 1}.get(name.rsplit("/", 1)[-1])
        if limit is None or data.size == 0:
            return
        per_image = data.reshape(len(data), -1).max(axis=1)
        bad = np.flatnonzero(per_image > limit)
        if bad.size:
            row = rows.start + int(bad[0])
            label = (
                self.index["filename"].iloc[row]
                if not name.startswith("generated/")
                else f"row {row}"
            )
            raise StoreValidationError(
                f"{name}: image {label} has value {int(per_image[bad[0]])}, allowed 0..{limit}"
            )

    def write_array(self, name: str, data: np.ndarray) -> None:
        """Write a small derived array whole (e.g. cached FID statistics), replacing it."""
        self._check_writable()
        self._begin_writes()
        data = np.asarray(data)
        array = self.group.create_array(
            name, shape=data.shape, dtype=data.dtype, chunks=data.shape or (1,), overwrite=True
        )
        array[...] = data

    def create_generated(
        self, run: str, n: int, *, attributes: Mapping[str, Any] | None = None
    ) -> None:
        """Create (or keep, if same size) ``generated/<run>`` with ``n`` rows of images and
        their ``source_index``, ``target_index`` and ``person_id``."""
        path = f"generated/{run}"
        if path in self.group and self.n_rows(f"{path}/images") == n:
            return
        self._begin_writes()
        group = self.group.require_group(path)
        create = create_pixels if self.format == FORMAT_V1 else create_elements
        create(group, "images", n, (self.height, self.width, 3), self.block_size)
        for column in ("source_index", "target_index", "person_id"):
            group.create_array(
                column, shape=(n,), dtype="int64", chunks=(self.block_size,), overwrite=True
            )
        group.attrs.update(dict(attributes or {}))

    def generated_runs(self) -> dict[str, int]:
        """Generated sets in the store: run name -> number of images."""
        if "generated" not in self.group:
            return {}
        runs = as_group(self.group["generated"])
        return {
            name: int(as_array(as_group(runs[name])["images"]).shape[0])
            for name in sorted(runs.group_keys())
        }
