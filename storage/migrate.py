"""Copy a format-1 store (decoded pixels) into a new format-2 store (encoded elements).

Everything comes along unchanged in meaning: the index, every image array decoded exactly as
before (format 1 kept no JPEG bytes, so images are stored losslessly, see
:mod:`storage.encoding`; ingesting the source folder again stores the JPEGs verbatim and is
smaller), generated sets with their columns and attributes, done flags with their settings,
other arrays, tables and stamps. Finished stages stay finished: their stamps and digests are
the source's. The source store is only read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from foundation.errors import UserError
from storage.base import FORMAT
from storage.store import PersonStore, create_store, open_store

# Arrays create_store makes from the index.
_INDEX = ("person_id", "camera", "split", "filename")


class MigrationError(UserError, ValueError):
    """The source cannot be migrated (already the current format)."""


@dataclass(frozen=True)
class MigrationResult:
    """What :func:`migrate_store` wrote: image arrays re-encoded, other arrays and files
    copied, and the two stores' sizes in bytes."""

    encoded: list[str]
    copied: list[str]
    files: list[str]
    source_bytes: int
    target_bytes: int


def _encode(source: PersonStore, target: PersonStore, name: str) -> None:
    """Write array ``name`` block by block into ``target``'s element array of that name;
    all-zero blocks are left unwritten (they read as zeros in both formats)."""
    n = source.n_rows(name)
    for block in range(-(-n // source.block_size)):
        data = source.read(name, source.block_slice(block, n))
        if data.any():
            target.write(name, block, data)


def migrate_store(source_url: str, target_url: str, *, overwrite: bool = False) -> MigrationResult:
    """Write the format-1 store at ``source_url`` as a format-2 store at ``target_url``.

    Raises:
        MigrationError: the source is already format 2.
        FileExistsError: a store exists at ``target_url`` and ``overwrite`` is False.
    """
    source = open_store(source_url)
    if source.format == FORMAT:
        raise MigrationError(f"{source_url} is already in the current format ({FORMAT})")
    target = create_store(
        target_url,
        index=source.index,
        height=source.height,
        width=source.width,
        block_size=source.block_size,
        overwrite=overwrite,
    )
    arrays = source.arrays()
    encoded: list[str] = [name for name in ("images", "masks", "parsing") if name in arrays]
    for run, n in source.generated_runs().items():
        target.create_generated(run, n, attributes=source.attributes(f"generated/{run}"))
        encoded.append(f"generated/{run}/images")
    for name in encoded:
        _encode(source, target, name)
    copied = []
    for path, array in sorted(arrays.items()):
        if path in encoded or path in _INDEX:
            continue
        copy = target.group.create_array(
            path,
            shape=array.shape,
            dtype=array.dtype,
            chunks=array.chunks,
            fill_value=array.fill_value,
            compressors=array.compressors,
            overwrite=True,
        )
        copy[...] = np.asarray(array[...])
        copy.attrs.update(dict(array.attrs))
        copied.append(path)
    files = [*target.copy_files_from(source, "stamps"), *target.copy_files_from(source, "tables")]
    return MigrationResult(
        encoded=encoded,
        copied=copied,
        files=files,
        source_bytes=int(source.fs.du(source.root)),
        target_bytes=int(target.fs.du(target.root)),
    )
