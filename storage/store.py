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

Chunking (measured, ENVIRONMENT.md and benchmarks/storage.py): ``block_size`` images per chunk
(default 64) along N, whole images inside, Blosc zstd level 5 with bitshuffle. One chunk is one
block, so one writer per block never shares a chunk with another writer, and the whole store
loads into memory in about a second (the training path); random batches read chunk by chunk.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import numpy as np
import pandas as pd
import zarr
from zarr.codecs import BloscCodec, BloscShuffle

from foundation import __version__
from foundation.errors import UserError
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
_COMPRESSOR = BloscCodec(cname="zstd", clevel=5, shuffle=BloscShuffle.bitshuffle)


class StoreValidationError(UserError, ValueError):
    """Data offered to the store has the wrong shape, dtype or label range."""


class StoreNotFoundError(UserError, FileNotFoundError):
    """No augment-market store at the path or URL given."""


class StoreLocationError(UserError, ValueError):
    """The path cannot hold a store: a regular file, or a folder of other files."""


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

    def read(
        self, name: str, selection: slice | np.ndarray | Sequence[int] = slice(None)
    ) -> np.ndarray:
        """Read rows of array ``name`` (``images``, ``masks``, ``parsing``, or a generated
        array such as ``generated/<run>/images``)."""
        array = self._array(name)
        if isinstance(selection, slice):
            return np.asarray(array[selection])
        rows = np.asarray(selection, dtype=np.int64)
        return np.asarray(array.get_orthogonal_selection((rows,)))

    def load_in_memory(
        self,
        names: Sequence[str] = ("images", "masks", "parsing"),
        *,
        rows: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Decode whole arrays into memory (the fast training path: one sequential read).

        Args:
            names: arrays to load.
            rows: optional row indices to keep (loaded whole, then indexed: sequential chunk
                reads are ~50x faster than random ones).
        Returns:
            name -> array, e.g. ``images`` [N, H, W, 3] uint8.
        """
        loaded = {name: np.asarray(self._array(name)[:]) for name in names}
        if rows is not None:
            loaded = {name: array[rows] for name, array in loaded.items()}
        return loaded

    def write(self, name: str, block: int, data: np.ndarray) -> None:
        """Validate ``data`` and write it as block ``block`` of array ``name``.

        Raises:
            StoreValidationError: wrong shape, dtype, or label range; the message names the
                first offending image by file name.
        """
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")
        self._begin_writes()
        array = self._array(name)
        rows = self.block_slice(block, array.shape[0])
        expected = (rows.stop - rows.start, *array.shape[1:])
        data = np.asarray(data)
        if data.shape != expected:
            raise StoreValidationError(
                f"{name} block {block}: expected shape {expected}, got {data.shape}"
            )
        if data.dtype != array.dtype:
            raise StoreValidationError(
                f"{name} block {block}: expected dtype {array.dtype}, got {data.dtype}"
            )
        self._check_range(name, rows, data)
        array[rows] = data

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
        group.create_array(
            "images",
            shape=(n, self.height, self.width, 3),
            dtype="uint8",
            chunks=(self.block_size, self.height, self.width, 3),
            compressors=_COMPRESSOR,
            overwrite=True,
        )
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
        return StageStamp.from_json(self.fs.cat(path).decode())

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
            "format": "augment-market/1",
        }
    )
    for name, shape in (
        ("images", (n, height, width, 3)),
        ("masks", (n, height, width)),
        ("parsing", (n, height, width)),
    ):
        group.create_array(
            name,
            shape=shape,
            dtype="uint8",
            chunks=(block_size, *shape[1:]),
            compressors=_COMPRESSOR,
        )
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
        StoreValidationError: a Zarr group that is not an augment-market store.
    """
    fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
    _check_location(fs, root, url)
    if not fs.exists(f"{root}/zarr.json"):
        raise StoreNotFoundError(
            f"no augment-market store at {url} (missing zarr.json); "
            "create one with `augment-market ingest`"
        )
    group = zarr.open_group(url, mode=mode, storage_options=dict(storage_options or {}) or None)
    if group.attrs.get("format") != "augment-market/1":
        raise StoreValidationError(f"{url} is a Zarr group but not an augment-market store")
    return PersonStore(url, group, mode=mode)
