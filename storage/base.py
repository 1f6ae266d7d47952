"""What every part of a store shares: its attributes, its Zarr group, its files, its errors.

:class:`StoreBase` is the handle the concerns of :class:`storage.PersonStore` build on (image
arrays, index and tables, stamps, stage runs): the store's URL and filesystem, its group and
shape, paths of its own files, and the guard every write passes.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import fsspec
import zarr

from foundation.errors import UserError

if TYPE_CHECKING:
    from storage.stages import StageRun

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


class StoreValidationError(UserError, ValueError):
    """Data offered to the store has the wrong shape, dtype or label range."""


class StoreNotFoundError(UserError, FileNotFoundError):
    """No augment-market store at the path or URL given."""


class StoreLocationError(UserError, ValueError):
    """The path cannot hold a store: a regular file, or a folder of other files."""


class DamagedStoreError(UserError, ValueError):
    """A store whose own files do not read or disagree: a truncated stamp, an index of
    another length than the image count, attributes edited by hand."""


class StoreBase:
    """The handle of an open store. Use :func:`storage.create_store` or
    :func:`storage.open_store`, not the constructor."""

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
        # Coordinator runs open on this handle, innermost last (see _begin_writes).
        self._open_runs: list[StageRun] = []

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

    def has(self, name: str) -> bool:
        """Whether array or group ``name`` exists in the store."""
        return name in self.group

    def arrays(self) -> dict[str, zarr.Array]:
        """Every Zarr array of the store by path (``images``, ``done/masks``,
        ``generated/alpha2/images``...)."""
        with warnings.catch_warnings():  # stamps/, locks/, tables/ are ours, not Zarr's
            warnings.simplefilter("ignore", zarr.errors.ZarrUserWarning)
            members = self.group.members(max_depth=None)
        return {path: node for path, node in members if isinstance(node, zarr.Array)}

    def attributes(self, name: str) -> dict[str, Any]:
        """The attributes of array or group ``name`` (e.g. a generated set's ``alpha``)."""
        return dict(self.group[name].attrs)

    def copy_files_from(self, source: StoreBase, folder: str) -> list[str]:
        """Copy every file of ``folder`` (``stamps`` or ``tables``) from store ``source`` into
        this one, each written atomically where the filesystem allows.

        Returns:
            The copied files, e.g. ``["stamps/ingest.json"]``.
        """
        path = source._path(folder)
        if not source.fs.exists(path):
            return []
        copied = []
        for file in sorted(source.fs.ls(path, detail=False)):
            name = file.rsplit("/", 1)[-1]
            self._atomic_write(self._path(folder, name), source.fs.cat(file))
            copied.append(f"{folder}/{name}")
        return copied

    def _array(self, name: str) -> zarr.Array:
        """The array at ``name`` (a path inside the store's group)."""
        return as_array(self.group[name])

    def _path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def _atomic_write(self, path: str, payload: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        if self.local:
            temporary = f"{path}.tmp"
            self.fs.pipe(temporary, payload)
            self.fs.mv(temporary, path)
        else:
            self.fs.pipe(path, payload)

    def _check_writable(self) -> None:
        if self.mode == "r":
            raise PermissionError(f"store {self.url} is open read-only")

    def _begin_writes(self) -> None:
        """A write through the store begins the innermost stage run open on it (if any)."""
        if self._open_runs:
            self._open_runs[-1].begin()


def as_array(node: zarr.Array | zarr.Group) -> zarr.Array:
    if not isinstance(node, zarr.Array):
        raise TypeError(f"{node.path!r} is a Zarr group, expected an array")
    return node


def as_group(node: zarr.Array | zarr.Group) -> zarr.Group:
    if not isinstance(node, zarr.Group):
        raise TypeError(f"{node.path!r} is a Zarr array, expected a group")
    return node
