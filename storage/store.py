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
"""

from __future__ import annotations

import io
import mmap
import os
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec, BloscShuffle
from zarr.core.dtype import VariableLengthBytes
from zarr.errors import UnstableSpecificationWarning

from foundation import __version__
from foundation.errors import UserError
from storage.encoding import (
    JPEG_MAGIC,
    EncodingError,
    decode_element,
    decode_label_maps,
    encode_labels,
    encode_rgb,
    jpeg_size,
)
from storage.stages import MissingInputError, StageLock, StageRun, StageStamp, config_hash

SPLITS = ("train", "gallery", "query")
# The parsing array's labels (LIP, as SCHP's LIP model predicts them): value = index.
LIP_LABELS: tuple[str, ...] = (
    "background", "hat", "hair", "glove", "sunglasses", "upper-clothes", "dress", "coat",
    "socks", "pants", "jumpsuits", "scarf", "skirt", "face", "left-arm", "right-arm",
    "left-leg", "right-leg", "left-shoe", "right-shoe",
)  # fmt: skip
NUM_PARSING_LABELS = len(LIP_LABELS)
INDEX_COLUMNS = ("person_id", "camera", "split", "filename")
FORMAT = "augment-market/2"
FORMAT_V1 = "augment-market/1"
# Format 1's image arrays: decoded pixels in Blosc zstd-5 bitshuffle chunks.
_COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle)
# Attribute of a format-2 element array: the decoded shape of one image ([H, W, 3] or [H, W]).
_ITEM_SHAPE = "item_shape"
# Decoding threads of a large read: libjpeg-turbo and zstd release the GIL.
DEFAULT_THREADS = min(4, os.cpu_count() or 1)
# Below this many rows a thread pool costs more than it saves.
_POOL_MIN_ROWS = 256


class StoreValidationError(UserError, ValueError):
    """Data offered to the store has the wrong shape, dtype or label range."""


class StoreNotFoundError(UserError, FileNotFoundError):
    """No augment-market store at the path or URL given."""


class StoreLocationError(UserError, ValueError):
    """The path cannot hold a store: a regular file, or a folder of other files."""


class DamagedStoreError(UserError, ValueError):
    """A store whose own files do not read or disagree: a truncated stamp, an index of
    another length than the image count, attributes edited by hand."""


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


class PersonStore:
    """A dataset's store. Use :func:`create_store` or :func:`open_store`, not the constructor."""

    def __init__(self, url: str, group: zarr.Group, *, mode: str) -> None:
        self.url = url
        self.group = group
        self.mode = mode
        self.fs, self.root = fsspec.core.url_to_fs(url)
        self.local = "file" in (
            self.fs.protocol if isinstance(self.fs.protocol, tuple) else (self.fs.protocol,)
        )
        attrs: dict[str, Any] = dict(group.attrs)
        self.n_images = int(attrs["n_images"])
        self.height = int(attrs["height"])
        self.width = int(attrs["width"])
        self.block_size = int(attrs["block_size"])
        self.format = str(attrs["format"])
        self._index: pd.DataFrame | None = None
        # Coordinator runs open on this handle, innermost last (see _begin_writes).
        self._open_runs: list[StageRun] = []

    # -- shape and index -------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return -(-self.n_images // self.block_size)

    def block_slice(self, block: int, n: int | None = None) -> slice:
        """Rows of block ``block`` in an array of ``n`` rows (default: the store's images)."""
        n = self.n_images if n is None else n
        start = block * self.block_size
        if not 0 <= start < max(n, 1):
            raise IndexError(f"block {block} out of range for {n} rows")
        return slice(start, min(start + self.block_size, n))

    @property
    def index(self) -> pd.DataFrame:
        """Index-aligned columns ``person_id``, ``camera``, ``split``, ``filename`` (cached)."""
        if self._index is None:
            self._index = pd.DataFrame(
                {column: np.asarray(self._array(column)[:]) for column in INDEX_COLUMNS}
            )
        return self._index

    # -- arrays ----------------------------------------------------------------------------
    def _array(self, name: str) -> zarr.Array:
        """The array at ``name`` (a path inside the store's group)."""
        return _as_array(self.group[name])

    def _group(self, name: str) -> zarr.Group:
        """The group at ``name`` (a path inside the store's group)."""
        return _as_group(self.group[name])

    def item_shape(self, name: str) -> tuple[int, ...]:
        """Shape of one decoded row of array ``name`` (e.g. ``(128, 64, 3)`` for images)."""
        array = self._array(name)
        if _is_elements(array):
            shape = array.attrs[_ITEM_SHAPE]
            if not isinstance(shape, list):
                raise StoreValidationError(f"{name}: {_ITEM_SHAPE} is not a list")
            return tuple(int(v) for v in shape)
        return tuple(int(v) for v in array.shape[1:])

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
        if not _is_elements(array):
            if isinstance(selection, slice):
                return np.asarray(array[selection])
            rows = np.asarray(selection, dtype=np.int64)
            return np.asarray(array.get_orthogonal_selection((rows,)))
        if isinstance(selection, slice):
            return decode_elements(_get(array, selection), self.item_shape(name), threads=threads)
        rows = np.asarray(selection, dtype=np.int64)
        unique, inverse = np.unique(rows, return_inverse=True)
        decoded = decode_elements(_get(array, unique), self.item_shape(name), threads=threads)
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
        if not _is_elements(array):
            raise StoreValidationError(f"{name} in {self.url} holds decoded pixels, no elements")
        if isinstance(selection, slice):
            return list(_get(array, selection))
        return list(_get(array, np.asarray(selection, dtype=np.int64)))

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
            if _is_elements(array):
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
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")
        self._begin_writes()
        array = self._array(name)
        rows = self.block_slice(block, array.shape[0])
        expected = (rows.stop - rows.start, *self.item_shape(name))
        data = np.asarray(data)
        if data.shape != expected:
            raise StoreValidationError(
                f"{name} block {block}: expected shape {expected}, got {data.shape}"
            )
        dtype = np.dtype(np.uint8) if _is_elements(array) else array.dtype
        if data.dtype != dtype:
            raise StoreValidationError(
                f"{name} block {block}: expected dtype {dtype}, got {data.dtype}"
            )
        self._check_range(name, rows, data)
        if _is_elements(array):
            encode = encode_rgb if data.ndim == 4 else encode_labels
            array[rows] = _object_array([encode(image) for image in data])
        else:
            array[rows] = data

    def write_encoded(self, name: str, block: int, elements: Sequence[bytes]) -> None:
        """Write block ``block`` of a format-2 image array from encoded elements: JPEG files
        kept verbatim (their headers must give the array's image size; the caller has decoded
        each once to check it is complete) or elements of :mod:`storage.encoding`.

        Raises:
            StoreValidationError: wrong count, a JPEG of another size, an unknown encoding,
                or a format-1 array; the message names the image.
        """
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")
        self._begin_writes()
        array = self._array(name)
        if not _is_elements(array):
            raise StoreValidationError(f"{name} in {self.url} holds decoded pixels (format 1)")
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
        array[rows] = _object_array(elements)

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
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")
        self._begin_writes()
        data = np.asarray(data)
        array = self.group.create_array(
            name, shape=data.shape, dtype=data.dtype, chunks=data.shape or (1,), overwrite=True
        )
        array[...] = data

    def has(self, name: str) -> bool:
        """Whether array or group ``name`` exists in the store."""
        return name in self.group

    # -- generated images ------------------------------------------------------------------
    def create_generated(
        self, run: str, n: int, *, attributes: Mapping[str, Any] | None = None
    ) -> None:
        """Create (or keep, if same size) ``generated/<run>`` with ``n`` rows of images and
        their ``source_index``, ``target_index`` and ``person_id``."""
        path = f"generated/{run}"
        if path in self.group and _as_array(self._group(path)["images"]).shape[0] == n:
            return
        self._begin_writes()
        group = self.group.require_group(path)
        chunk = (self.block_size,)
        if self.format == FORMAT_V1:
            group.create_array(
                "images",
                shape=(n, self.height, self.width, 3),
                dtype="uint8",
                chunks=(self.block_size, self.height, self.width, 3),
                compressors=_COMPRESSOR,
                overwrite=True,
            )
        else:
            _create_elements(group, "images", n, (self.height, self.width, 3), self.block_size)
        for column in ("source_index", "target_index", "person_id"):
            group.create_array(column, shape=(n,), dtype="int64", chunks=chunk, overwrite=True)
        group.attrs.update(dict(attributes or {}))

    def generated_runs(self) -> dict[str, int]:
        """Generated sets in the store: run name -> number of images."""
        if "generated" not in self.group:
            return {}
        runs = self._group("generated")
        return {
            name: int(_as_array(_as_group(runs[name])["images"]).shape[0])
            for name in sorted(runs.group_keys())
        }

    # -- tables ----------------------------------------------------------------------------
    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def write_table(self, name: str, table: pd.DataFrame) -> None:
        """Write ``tables/<name>.parquet`` atomically where the filesystem allows."""
        self._begin_writes()
        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        self._atomic_write(self._path("tables", f"{name}.parquet"), buffer.getvalue())

    def read_table(self, name: str) -> pd.DataFrame:
        path = self._path("tables", f"{name}.parquet")
        if not self.fs.exists(path):
            raise FileNotFoundError(f"table '{name}' not in store {self.url} ({path})")
        with self.fs.open(path, "rb") as handle:
            return pd.read_parquet(handle)

    def has_table(self, name: str) -> bool:
        return bool(self.fs.exists(self._path("tables", f"{name}.parquet")))

    def _atomic_write(self, path: str, payload: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self.local:
            temporary = f"{path}.tmp"
            self.fs.pipe(temporary, payload)
            self.fs.mv(temporary, path)
        else:
            self.fs.pipe(path, payload)

    # -- stages ----------------------------------------------------------------------------
    def stamp(self, stage: str) -> StageStamp | None:
        """The stamp of a finished stage, or None."""
        path = self._path("stamps", f"{stage}.json")
        if not self.fs.exists(path):
            return None
        try:
            return StageStamp.from_json(self.fs.cat(path).decode())
        except (ValueError, TypeError) as error:  # cut short, or edited by hand
            raise DamagedStoreError(
                f"stamp file {path} of store {self.url} does not read ({type(error).__name__}: "
                f"{str(error)[:120]}); delete it and rerun stage '{stage}' (its finished "
                "blocks are kept)"
            ) from None

    def run_digest(self, stage: str, *, settings: Mapping[str, Any], inputs: Sequence[str]) -> str:
        """What a checkpoint that ``stage`` resumes must have been trained on.

        A hash of ``settings``, the digests of the current stamps of ``inputs`` and the code
        version. A stage keeps it in its checkpoints and never continues one with another
        digest (another alpha's images, pairs of another seed). Pass the settings that define
        the training, not a step target, so a longer schedule still continues a shorter run.
        """
        digests = {name: getattr(self.stamp(name), "digest", None) for name in inputs}
        return config_hash(
            {"stage": stage, "settings": settings, "inputs": digests, "version": __version__}
        )

    def stamps(self) -> dict[str, StageStamp]:
        folder = self._path("stamps")
        if not self.fs.exists(folder):
            return {}
        names = sorted(
            p.rsplit("/", 1)[-1][: -len(".json")]
            for p in self.fs.ls(folder, detail=False)
            if p.endswith(".json")
        )
        return {name: stamp for name in names if (stamp := self.stamp(name)) is not None}

    def _write_stamp(self, stamp: StageStamp) -> None:
        self._atomic_write(self._path("stamps", f"{stamp.stage}.json"), stamp.to_json().encode())

    def clear_stamp(self, stage: str) -> None:
        path = self._path("stamps", f"{stage}.json")
        if self.fs.exists(path):
            self.fs.rm(path)

    def _done_array(self, stage: str, n_blocks: int, digest: str) -> zarr.Array | None:
        """The done flags of ``stage`` if they belong to configuration ``digest`` and this block
        count, else None (read only: see :meth:`_create_done_array`)."""
        path = f"done/{stage}"
        if path in self.group:
            done = self._array(path)
            if done.attrs.get("config_hash") == digest and done.shape == (n_blocks,):
                return done
        return None

    def _create_done_array(self, stage: str, n_blocks: int, digest: str) -> zarr.Array:
        """Fresh done flags of ``stage`` for configuration ``digest``, replacing any others."""
        done = self.group.create_array(
            f"done/{stage}",
            shape=(n_blocks,),
            dtype="bool",
            chunks=(1,),
            fill_value=False,
            overwrite=True,
        )
        done.attrs["config_hash"] = digest
        return done

    def _lock(self, stage: str) -> StageLock:
        return StageLock(self.fs, self._path("locks", f"{stage}.lock"), self.local)

    def _begin_writes(self) -> None:
        """A write through the store begins the innermost stage run open on it (if any)."""
        if self._open_runs:
            self._open_runs[-1].begin()

    @contextmanager
    def stage(
        self,
        name: str,
        *,
        config: Mapping[str, Any] | None = None,
        inputs: Sequence[str] = (),
        n_blocks: int | None = None,
        on_block: Callable[[int, int], None] | None = None,
    ) -> Iterator[StageRun]:
        """Run stage ``name``: hold its lock, resume its done blocks, then let it stamp.

        Nothing in the store changes until the run begins (:meth:`StageRun.begin`, or any write
        through this store while the run is open): a stage that fails its checks before that
        leaves its earlier stamp, done flags and outputs as they were.

        Args:
            config: JSON-able settings; a change starts the stage's blocks afresh. None: the
                stage computes them under the lock and calls :meth:`StageRun.configure`.
            inputs: stages whose output this one reads; each must have a stamp.
            n_blocks: blocks of the stage's output (default: the store's image blocks).
            on_block: called as ``on_block(done, total)`` after each block (progress).

        Raises:
            StageBusyError: another process runs this stage on this store.
            MissingInputError: an input stage has not finished.
        """
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")
        input_digests = {}
        for stage_name in inputs:
            stamp = self.stamp(stage_name)
            if stamp is None:
                raise MissingInputError(
                    f"stage '{name}' needs stage '{stage_name}' finished first on {self.url}",
                    stage=name,
                    missing=stage_name,
                )
            input_digests[stage_name] = stamp.digest
        lock = self._lock(name)
        lock.acquire(name)
        try:
            run = StageRun(
                store=self,
                name=name,
                config=config,
                inputs=input_digests,
                n_blocks=self.n_blocks if n_blocks is None else n_blocks,
                on_block=on_block,
                coordinator=True,
            )
            self._open_runs.append(run)
            try:
                yield run
            finally:
                self._open_runs.remove(run)
        finally:
            lock.release()

    def join_stage(self, name: str, *, config: Mapping[str, Any]) -> StageRun:
        """A worker's handle on stage ``name``, which another process runs with ``config``.

        The worker writes and marks done the blocks its coordinator gave it; it takes no lock
        and cannot finish the stage (see :mod:`storage.stages`).

        Raises:
            RuntimeError: no process holds the stage's lock, or the run in progress has another
                configuration (the coordinator restarted with other settings) or has not begun.
        """
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")
        lock = self._lock(name)
        if not self.fs.exists(lock.path):
            raise RuntimeError(
                f"stage '{name}' is not running on {self.url}: a worker joins a stage only "
                "while its coordinator holds the lock"
            )
        digest = config_hash(config)
        path = f"done/{name}"
        done = self._array(path) if path in self.group else None
        if done is None or done.attrs.get("config_hash") != digest:
            raise RuntimeError(
                f"stage '{name}' on {self.url} runs with other settings than this worker's "
                f"(config hash {digest}), or its coordinator has not begun the run; the "
                "worker's blocks are not written"
            )
        return StageRun(
            store=self,
            name=name,
            config=config,
            inputs={},
            n_blocks=int(done.shape[0]),
            on_block=None,
            coordinator=False,
            done=done,
        )

    # -- summary ---------------------------------------------------------------------------
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


class RowReader:
    """Random rows of some image arrays, decoded on demand from encoded chunks kept in memory.

    A chunk of encoded elements is read once (one Zarr read of ``block_size`` rows) and kept
    while the cache holds less than ``cache_bytes`` (least recently used chunks go first), so
    repeated random batches cost one decode per image: Market-1501's encoded images, masks
    and parsing are about 100 MB, against 1.3 GB decoded. Format-1 arrays are read through
    :meth:`PersonStore.read` (no cache). Not for arrays that change while it reads: a chunk
    cached before another process rewrites it stays as it was.
    """

    def __init__(
        self, store: PersonStore, names: Sequence[str], *, cache_bytes: int, threads: int
    ) -> None:
        self.store = store
        self.names = tuple(names)
        self.threads = threads
        self.cache_bytes = cache_bytes
        self._arrays = {name: store._array(name) for name in self.names}
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
            fetched = list(_get(array, np.concatenate(spans)))
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
            if _is_elements(self._arrays[name]):
                elements = self._elements(name, rows)
                out[name] = decode_elements(elements, self._shapes[name], threads=self.threads)
            else:
                out[name] = self.store.read(name, rows)
        return out


def generated_run_name(alpha: int) -> str:
    """The run name of an alpha-augmented set under ``generated/``, e.g. ``alpha2``."""
    return f"alpha{alpha}"


def zeroed(shape: tuple[int, ...]) -> np.ndarray:
    """A zero-filled uint8 array of ``shape``; a large one in fresh anonymous memory of
    ordinary pages.

    numpy asks the kernel for transparent huge pages for large arrays (madvise). Where the
    kernel then compacts memory on every fault (THP defrag ``madvise``, a common default),
    that costs more than decoding into the array: loading Market-1501's 885 MB of images took
    2.9-3.7 s of system time that way against 0.5-0.6 s here, beside 2 s of decoding
    (BENCHMARKS.md, "Storage").
    """
    nbytes = int(np.prod(shape))
    if nbytes < 1 << 24:
        return np.zeros(shape, np.uint8)
    return np.frombuffer(mmap.mmap(-1, nbytes), np.uint8).reshape(shape)


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


def _get(array: zarr.Array, selection: slice | np.ndarray) -> np.ndarray:
    """Rows of ``array``: a slice, or sorted or unsorted row indices."""
    if isinstance(selection, slice):
        return np.asarray(array[selection])
    return np.asarray(array.get_orthogonal_selection((selection,)))


def _is_elements(array: zarr.Array) -> bool:
    """Whether ``array`` holds encoded elements (format 2) rather than decoded pixels."""
    return _ITEM_SHAPE in array.attrs


def _object_array(elements: Sequence[bytes]) -> np.ndarray:
    out = np.empty(len(elements), dtype=object)
    out[:] = [bytes(e) for e in elements]
    return out


def _create_elements(
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
            attributes={_ITEM_SHAPE: list(item_shape)},
        )
    return array


def _as_array(node: zarr.Array | zarr.Group) -> zarr.Array:
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{node.path!r} is a Zarr group, expected an array")
    return node


def _as_group(node: zarr.Array | zarr.Group) -> zarr.Group:
    if not isinstance(node, zarr.Group):
        raise TypeError(f"{node.path!r} is a Zarr array, expected a group")
    return node


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
) -> PersonStore:
    """Create an empty store for the images listed in ``index``.

    Args:
        url: local folder or fsspec URL.
        index: one row per image with ``person_id`` (int; -1 junk, 0 distractor), ``camera``
            (int), ``split`` (train/gallery/query), ``filename`` (str, unique).
        height, width: image size; every image written must have it.
        block_size: images per chunk and per stage block.
        overwrite: replace an existing store (otherwise an existing store is an error).

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
            "format": FORMAT,
        }
    )
    _create_elements(group, "images", n, (height, width, 3), block_size)
    _create_elements(group, "masks", n, (height, width), block_size)
    _create_elements(group, "parsing", n, (height, width), block_size)
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
