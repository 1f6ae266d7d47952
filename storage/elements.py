"""Image arrays as Zarr holds them: element arrays (format 2), pixel arrays (format 1), their
decoding into memory, and the random-access :class:`RowReader`.

A format-2 image array is a Zarr array of ``n`` variable-length byte strings, ``block_size``
per chunk and no codec on top, each one image encoded as :mod:`storage.encoding` describes; its
``item_shape`` attribute gives the decoded shape of one row. A format-1 image array holds the
decoded pixels ``[n, *item_shape]`` uint8 in Blosc zstd-5 bitshuffle chunks of ``block_size``
rows.
"""

from __future__ import annotations

import mmap
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.core.dtype import VariableLengthBytes
from zarr.errors import UnstableSpecificationWarning

from storage.base import StoreValidationError, as_array
from storage.encoding import EncodingError, decode_element, decode_label_maps

if TYPE_CHECKING:
    from storage.arrays import ImageArrays

# Format 1's image arrays: decoded pixels in Blosc zstd-5 bitshuffle chunks.
PIXELS_COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle)
# Attribute of a format-2 element array: the decoded shape of one image ([H, W, 3] or [H, W]).
ITEM_SHAPE = "item_shape"
# Decoding threads of a large read: libjpeg-turbo and zstd release the GIL.
DEFAULT_THREADS = min(4, os.cpu_count() or 1)
# Below this many rows a thread pool costs more than it saves.
_POOL_MIN_ROWS = 256
# madvise(2) advice that maps every page of a range at once (Linux 5.14 and later); the mmap
# module of Python 3.11 has no name for it.
_MADV_POPULATE_WRITE = 23


def is_elements(array: zarr.Array) -> bool:
    """Whether ``array`` holds encoded elements (format 2) rather than decoded pixels."""
    return ITEM_SHAPE in array.attrs


def get_rows(array: zarr.Array, selection: slice | np.ndarray) -> np.ndarray:
    """Rows of ``array``: a slice, or sorted or unsorted row indices."""
    if isinstance(selection, slice):
        return np.asarray(array[selection])
    return np.asarray(array.get_orthogonal_selection((selection,)))


def object_array(elements: Sequence[bytes]) -> np.ndarray:
    """Elements as the 1-D object array Zarr writes into a variable-length bytes array."""
    out = np.empty(len(elements), dtype=object)
    out[:] = [bytes(e) for e in elements]
    return out


def create_elements(
    group: zarr.Group, name: str, n: int, item_shape: tuple[int, ...], block_size: int
) -> zarr.Array:
    """A format-2 element array: ``n`` variable-length byte strings, ``block_size`` per chunk
    (already compressed elements: no codec on top)."""
    with warnings.catch_warnings():
        # zarr-python's variable-length bytes have no Zarr v3 specification yet: stores are
        # read by zarr-python (pinned in pyproject.toml), and `migrate` rewrites them if a
        # future version changes the representation.
        warnings.simplefilter("ignore", UnstableSpecificationWarning)
        array = group.create_array(
            name,
            shape=(n,),
            dtype=VariableLengthBytes(),
            chunks=(max(1, min(block_size, n)),),
            compressors=None,
            overwrite=True,
            attributes={ITEM_SHAPE: list(item_shape)},
        )
    return array


def create_pixels(
    group: zarr.Group, name: str, n: int, item_shape: tuple[int, ...], block_size: int
) -> zarr.Array:
    """A format-1 pixel array: uint8 ``[n, *item_shape]``, ``block_size`` rows per chunk."""
    return group.create_array(
        name,
        shape=(n, *item_shape),
        dtype="uint8",
        chunks=(block_size, *item_shape),
        compressors=PIXELS_COMPRESSOR,
        overwrite=True,
    )


def zeroed(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-filled uint8 array of ``shape``; a large one (16 MiB and more, on Linux) in
    fresh anonymous memory of ordinary 4 KiB pages, all mapped by the kernel in one call.

    Chosen by measurement on the 2-core machines (transparent huge pages: enabled madvise,
    defrag madvise; BENCHMARKS.md, "Storage: whole-set loads"): a whole-set load into this
    buffer took 0.99-1.11x the CPU time of a bare simplejpeg decode of the same bytes into
    fresh arrays, steady from round to round. Decoding into pages faulted in one at a time as
    the decoder writes them (a plain mmap, the earlier choice) took 1.3-1.4x; into numpy's own
    buffers, which ask for huge pages, from 0.7x to 2.1x: fast when huge pages that another
    buffer has just freed are taken again, slow otherwise (system time; no compaction was
    counted). ``MADV_NOHUGEPAGE`` keeps ordinary pages whatever the huge-page setting.
    """
    nbytes = int(np.prod(shape))
    if nbytes < 1 << 24 or not hasattr(mmap, "MADV_NOHUGEPAGE"):
        return np.zeros(shape, np.uint8)
    memory = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE)
    memory.madvise(mmap.MADV_NOHUGEPAGE)
    try:
        memory.madvise(_MADV_POPULATE_WRITE)
    except OSError:  # a kernel before 5.14: the pages fault in as they are written
        pass
    return np.frombuffer(memory, np.uint8).reshape(shape)


def decode_elements(
    elements: Sequence[bytes] | np.ndarray, item_shape: tuple[int, ...], *, threads: int = 1
) -> np.ndarray:
    """Decode encoded elements (:mod:`storage.encoding`) into uint8 ``[len, *item_shape]``;
    an empty element (a row never written) decodes to zeros.

    Raises:
        StoreValidationError: an element of an unknown encoding or of another size.
    """
    out = zeroed((len(elements), *item_shape))
    present = [i for i in range(len(elements)) if len(elements[i])]
    target = out if len(present) == len(out) else zeroed((len(present), *item_shape))

    def decode_span(start: int, stop: int) -> None:
        try:
            if len(item_shape) == 2:  # label maps: one zstd call for the whole span
                decode_label_maps([elements[i] for i in present[start:stop]], target[start:stop])
            else:
                for j in range(start, stop):
                    decode_element(elements[present[j]], target[j])
        except EncodingError as error:
            raise StoreValidationError(f"rows {start}-{stop - 1} of a read: {error}") from None

    if threads > 1 and len(present) >= _POOL_MIN_ROWS:
        # Contiguous spans per task: one task per image would cost more than its decode.
        step = -(-len(present) // (threads * 4))
        with ThreadPoolExecutor(threads) as pool:
            done = [
                pool.submit(decode_span, start, min(start + step, len(present)))
                for start in range(0, len(present), step)
            ]
            for future in done:
                future.result()
    else:
        decode_span(0, len(present))
    if target is not out:
        out[present] = target
    return out


class RowReader:
    """Random rows of some image arrays, decoded on demand from encoded chunks kept in memory.

    A chunk of encoded elements is read once (one Zarr read of ``block_size`` rows) and kept
    while the cache holds less than ``cache_bytes`` (least recently used chunks go first), so
    repeated random batches cost one decode per image: Market-1501's encoded images, masks
    and parsing are about 100 MB, against 1.3 GB decoded. Format-1 arrays are read through
    :meth:`storage.PersonStore.read` (no cache). Not for arrays that change while it reads: a
    chunk cached before another process rewrites it stays as it was.
    """

    def __init__(
        self, store: ImageArrays, names: Sequence[str], *, cache_bytes: int, threads: int
    ) -> None:
        self.store = store
        self.names = tuple(names)
        self.threads = threads
        self.cache_bytes = cache_bytes
        self._arrays = {name: as_array(store.group[name]) for name in self.names}
        self._shapes = {name: store.item_shape(name) for name in self.names}
        self._chunks: dict[tuple[str, int], list[bytes]] = {}
        self._cached = 0

    def _elements(self, name: str, rows: np.ndarray) -> list[bytes]:
        array, size = self._arrays[name], self.store.block_size
        chunks: dict[int, list[bytes]] = {}
        for chunk in np.unique(rows // size).tolist():
            if (cached := self._chunks.pop((name, chunk), None)) is not None:
                self._chunks[(name, chunk)] = cached  # most recently used last
                chunks[chunk] = cached
        missing = sorted(set(np.unique(rows // size).tolist()) - set(chunks))
        if missing:
            spans = [np.arange(c * size, min((c + 1) * size, array.shape[0])) for c in missing]
            fetched = list(get_rows(array, np.concatenate(spans)))
            start = 0
            for chunk, span in zip(missing, spans, strict=True):
                chunks[chunk] = fetched[start : start + len(span)]
                self._remember((name, chunk), chunks[chunk])
                start += len(span)
        return [chunks[row // size][row % size] for row in rows.tolist()]

    def _remember(self, key: tuple[str, int], elements: list[bytes]) -> None:
        self._chunks[key] = elements
        self._cached += sum(len(e) for e in elements)
        while self._cached > self.cache_bytes and len(self._chunks) > 1:
            oldest = next(iter(self._chunks))
            self._cached -= sum(len(e) for e in self._chunks.pop(oldest))

    def read(self, rows: np.ndarray | Sequence[int]) -> dict[str, np.ndarray]:
        """Decoded rows (any order, repeats allowed) of every array: name -> [R, ...] uint8."""
        rows = np.asarray(rows, dtype=np.int64)
        out = {}
        for name in self.names:
            if is_elements(self._arrays[name]):
                elements = self._elements(name, rows)
                out[name] = decode_elements(elements, self._shapes[name], threads=self.threads)
            else:
                out[name] = self.store.read(name, rows)
        return out
