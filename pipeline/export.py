"""Export an (alpha-augmented) store in the Market-1501 folder layout for other Re-ID toolkits.

``bounding_box_train`` holds the real training images plus the generated ones; generated names
follow the Market-1501 pattern (``{pid}_c{cam}s{seq}_{frame}_{box}.jpg``), so torchreid and
fast-reid parse identity and camera as usual: the source's pid and camera, sequence
:data:`GENERATED_SEQUENCE` (Market-1501 uses 1-6), the generated row as frame, and the draw
number as box. A generated name therefore never equals a real one. ``bounding_box_test`` and
``query`` are written from the store unchanged: an image ingested as a JPEG is copied byte for
byte (format-2 stores keep the source file), any other is written as a JPEG;
``generated.csv`` maps each generated file to its source and target-pose images.

An export never mixes with anything: a non-empty destination is refused, and ``overwrite``
replaces only an earlier export, found by its manifest (:data:`MANIFEST`, written before the
first image, so an interrupted export is replaceable too). A folder holding any file its
manifest does not list is refused even then, so nothing else is deleted and torchreid never
trains on a leftover generated image.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from foundation.errors import UserError
from pipeline.datasets import MARKET_FOLDERS
from pipeline.synthesize import generated_run_name
from storage import MissingInputError, PersonStore
from storage.encoding import JPEG_MAGIC
from storage.store import FORMAT_V1, decode_elements

GENERATED_SEQUENCE = 9
JPEG_QUALITY = 95
MANIFEST = "export_manifest.json"
GENERATED_TABLE = "generated.csv"
_TEMPORARY = f".{MANIFEST}.tmp"


class ExportDestinationError(UserError, FileExistsError):
    """The export folder holds files the export would mix with or would have to delete."""


def generated_file_name(person_id: int, camera: int, row: int, draw: int) -> str:
    """Market-1501-style name of generated row ``row`` (draw ``draw`` of its source)."""
    if not 0 <= row < 1_000_000:
        raise ValueError(f"generated row {row} does not fit the 6-digit frame field")
    return f"{person_id:04d}_c{camera}s{GENERATED_SEQUENCE}_{row:06d}_{draw:02d}.jpg"


def export_market(
    store: PersonStore, out_dir: str | Path, *, alpha: int | None = None, overwrite: bool = False
) -> int:
    """Write the store (plus ``generated/alpha<A>`` when ``alpha`` is given) as Market-1501.

    Args:
        out_dir: a new or empty folder, or (with ``overwrite``) one an earlier export wrote.
        overwrite: remove the files of the earlier export in ``out_dir`` first.
    Returns:
        Number of image files written.
    Raises:
        MissingInputError: ``alpha`` given but the store holds no such generated set.
        ExportDestinationError: ``out_dir`` is not empty and not replaceable (see the module).
    """
    out = Path(out_dir)
    index = store.index
    folder_of = {split: folder for folder, split in MARKET_FOLDERS.items()}
    real = [
        f"{folder_of[split]}/{Path(name).name}"
        for name, split in zip(index["filename"], index["split"], strict=True)
    ]
    group = None
    generated_names: list[str] = []
    if alpha is not None:
        group = f"generated/{generated_run_name(alpha)}"
        if not store.has(group):
            raise MissingInputError(
                f"store {store.url} has no {group}; run `augment-market synthesize` with "
                f"--alpha {alpha} first",
                stage="export",
                missing="synthesize",
            )
        sources = store.read(f"{group}/source_index")
        cameras = index["camera"].to_numpy()
        person_ids = index["person_id"].to_numpy()
        draws = np.arange(len(sources)) % (alpha - 1) + 1
        generated_names = [
            generated_file_name(int(person_ids[s]), int(cameras[s]), row, int(d))
            for row, (s, d) in enumerate(zip(sources, draws, strict=True))
        ]
    files = real + [f"bounding_box_train/{name}" for name in generated_names]
    files += [GENERATED_TABLE] if group is not None else []
    _clear(out, overwrite=overwrite)
    manifest: dict[str, Any] = {
        "format": "augment-market-export/1",
        "store": store.url,
        "alpha": alpha,
        "complete": False,
        "files": sorted(files),
    }
    _write_manifest(out, manifest)
    if store.format == FORMAT_V1:
        images = store.load_in_memory(("images",))["images"]
        for row, relative in enumerate(real):
            _save(images[row], out / relative)
    else:
        shape = store.item_shape("images")
        for element, relative in zip(store.read_encoded("images"), real, strict=True):
            if element.startswith(JPEG_MAGIC):
                (out / relative).parent.mkdir(parents=True, exist_ok=True)
                (out / relative).write_bytes(element)
            else:
                _save(decode_elements([element], shape)[0], out / relative)
    if group is not None:
        generated = store.load_in_memory((f"{group}/images", f"{group}/target_index"))
        for name, image in zip(generated_names, generated[f"{group}/images"], strict=True):
            _save(image, out / "bounding_box_train" / name)
        pd.DataFrame(
            {
                "file": generated_names,
                "source": index["filename"].to_numpy()[sources],
                "target_pose": index["filename"].to_numpy()[generated[f"{group}/target_index"]],
            }
        ).to_csv(out / GENERATED_TABLE, index=False)
    _write_manifest(out, {**manifest, "complete": True})
    return len(real) + len(generated_names)


def _clear(out: Path, *, overwrite: bool) -> None:
    """Make ``out`` ready for an export: new or empty, or an earlier export removed."""
    if out.exists() and not out.is_dir():
        raise ExportDestinationError(f"{out} is a file; export to a new or empty folder")
    present = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if not p.is_dir())
    if not present:
        return
    if not overwrite:
        raise ExportDestinationError(
            f"{out} is not empty ({len(present)} files); choose an empty folder, or pass "
            "--overwrite to replace the export written there (only the files its manifest "
            "lists are removed)"
        )
    try:
        listed = set(json.loads((out / MANIFEST).read_text())["files"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        raise ExportDestinationError(
            f"{out} holds {len(present)} files and no readable {MANIFEST}: no export wrote "
            "them, so --overwrite removes nothing there; choose an empty folder"
        ) from None
    listed |= {MANIFEST, _TEMPORARY}
    foreign = [relative for relative in present if relative not in listed]
    if foreign:
        raise ExportDestinationError(
            f"{out} holds {len(foreign)} files its earlier export did not write (e.g. "
            f"{foreign[0]}); --overwrite removes only that export's files, and these would "
            "mix with the new one: move them away or choose an empty folder"
        )
    for relative in sorted(present, key=lambda name: name == MANIFEST):  # the manifest last
        (out / relative).unlink()
    folders = {Path(relative).parent for relative in present}
    for folder in sorted(folders, key=lambda path: len(path.parts), reverse=True):
        if folder != Path(".") and not any((out / folder).iterdir()):
            (out / folder).rmdir()


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    temporary = out / _TEMPORARY
    temporary.write_text(json.dumps(manifest, indent=1))
    os.replace(temporary, out / MANIFEST)


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)
