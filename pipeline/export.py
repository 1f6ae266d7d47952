"""Export an (alpha-augmented) store in its dataset's own folder layout for other Re-ID toolkits.

The ingest stamp names the dataset. Market-1501, DukeMTMC-reID and CUHK03-NP (and
DeepFashion, and stores whose stamp names none) are written in Market-1501's folders, CUHK03-NP
under its setting's folder (``detected/`` or ``labeled/``), as it is distributed:
``bounding_box_train`` holds the real training images plus the generated ones, named in the
dataset's own pattern (:meth:`pipeline.datasets.FolderDataset.generated_file_name`: the source's
pid and camera, the generated row and the draw number in fields that real names never reach),
so torchreid and fast-reid parse identity and camera as usual. MSMT17 is written as its ``train/``
and ``test/`` folders with its four list files: the generated images go into their identity's
folder under ``train/`` (:func:`msmt17_generated_path`) and into ``list_train.txt``, which holds
every training image (the store's training split: list_train, plus list_val when ingested
``with_val``, so ``list_val.txt`` is written empty).

``bounding_box_test`` and ``query`` (MSMT17: ``test/``) are written from the store unchanged:
an image ingested as a JPEG is copied byte for byte (format-2 stores keep the source file), any
other is written in the format its name says (JPEG, or PNG for CUHK03-NP), at the store's size;
``generated.csv`` maps each generated file (its path in the export) to its source and
target-pose images.

An export never mixes with anything: a non-empty destination is refused, and ``overwrite``
replaces only an earlier export, found by its manifest (:data:`MANIFEST`, written before the
first image, so an interrupted export is replaceable too). A folder holding any file its
manifest does not list is refused even then, so nothing else is deleted and torchreid never
trains on a leftover generated image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from foundation.errors import UserError
from pipeline.augmentation_sets import finished_set_group
from pipeline.datasets import (
    FOLDER_DATASETS,
    MARKET1501,
    MARKET_FOLDERS,
    FolderDataset,
    msmt17_labels,
)
from storage import PersonStore

JPEG_QUALITY = 95
MANIFEST = "export_manifest.json"
GENERATED_TABLE = "generated.csv"
_TEMPORARY = f".{MANIFEST}.tmp"


class ExportDestinationError(UserError, FileExistsError):
    """The export folder holds files the export would mix with or would have to delete."""


@dataclass(frozen=True)
class ExportLayout:
    """Where an export puts each image, relative to its folder.

    Attributes:
        real: [N] path of each store row.
        generated: [M] path of each generated row.
        lists: path -> text of the list files (MSMT17), {} for the Market-1501 layout.
    """

    real: list[str]
    generated: list[str]
    lists: dict[str, str]


def market_layout(
    index: pd.DataFrame, dataset: FolderDataset, sources: np.ndarray, draws: np.ndarray
) -> ExportLayout:
    """Market-1501's folders (under ``dataset.subfolder``: CUHK03-NP's ``detected/`` or
    ``labeled/``), generated images named in ``dataset``'s pattern.

    Args:
        index: the store's index (person_id, camera, split, filename).
        sources: int [M] store row of each generated image's source; draws: int [M] its draw
            number (1 .. alpha - 1).
    """
    root = f"{dataset.subfolder}/" if dataset.subfolder else ""
    folder_of = {split: f"{root}{folder}" for folder, split in MARKET_FOLDERS.items()}
    real = [
        f"{folder_of[split]}/{Path(name).name}"
        for name, split in zip(index["filename"], index["split"], strict=True)
    ]
    person_ids, cameras = index["person_id"].to_numpy(), index["camera"].to_numpy()
    generated = [
        f"{folder_of['train']}/"
        + dataset.generated_file_name(int(person_ids[s]), int(cameras[s]), row, int(d))
        for row, (s, d) in enumerate(zip(sources, draws, strict=True))
    ]
    return ExportLayout(real, generated, {})


def msmt17_generated_path(label: int, camera: int, row: int, draw: int) -> str:
    """Path under ``train/`` of a generated MSMT17 image: in its identity's folder, named like
    the real ones (``pid_index_camera_...``, camera in the third field as toolkits read it),
    with the 6-digit row as index (real ones have 3 digits) and ``generated`` for the date."""
    if not 0 <= row < 1_000_000:
        raise ValueError(f"generated row {row} does not fit the 6-digit index field")
    return f"{label:04d}/{label:04d}_{row:06d}_{camera:02d}_generated_{draw:02d}.jpg"


def msmt17_layout(index: pd.DataFrame, sources: np.ndarray, draws: np.ndarray) -> ExportLayout:
    """MSMT17's ``train/`` and ``test/`` folders and list files (arguments as
    :func:`market_layout`); list labels from :func:`pipeline.datasets.msmt17_labels`."""
    splits = index["split"].to_numpy()
    person_ids = index["person_id"].to_numpy(np.int64)
    test = splits != "train"
    train_ids = int(person_ids[~test].max()) if (~test).any() else 0
    labels = msmt17_labels(person_ids, test, train_ids=train_ids)
    real = index["filename"].tolist()
    cameras = index["camera"].to_numpy()
    generated_under_train = [
        msmt17_generated_path(int(labels[s]), int(cameras[s]), row, int(d))
        for row, (s, d) in enumerate(zip(sources, draws, strict=True))
    ]
    lines: dict[str, list[str]] = {"train": [], "query": [], "gallery": []}
    for name, split, label in zip(real, splits, labels, strict=True):
        folder = "train" if split == "train" else "test"
        lines[split].append(f"{name.removeprefix(folder + '/')} {label}")
    lines["train"] += [
        f"{path} {labels[s]}" for path, s in zip(generated_under_train, sources, strict=True)
    ]
    lists = {  # list_val is empty: the store's training split holds any of its images
        "list_train.txt": lines["train"],
        "list_val.txt": [],
        "list_query.txt": lines["query"],
        "list_gallery.txt": lines["gallery"],
    }
    texts = {name: "".join(f"{line}\n" for line in listed) for name, listed in lists.items()}
    generated = [f"train/{path}" for path in generated_under_train]
    return ExportLayout(real, generated, texts)


def export_market(
    store: PersonStore,
    out_dir: str | Path,
    *,
    alpha: int | None = None,
    set_name: str = "generator",
    overwrite: bool = False,
) -> int:
    """Write the store (plus the augmentation set ``set_name`` at ``alpha`` when ``alpha`` is
    given) in the folder layout of the dataset it was ingested from (see the module).

    Args:
        out_dir: a new or empty folder, or (with ``overwrite``) one an earlier export wrote.
        set_name: which augmentation set (:mod:`pipeline.synthesize`): generator, copies,
            flip, paint-by-parts or a folder set's name.
        overwrite: remove the files of the earlier export in ``out_dir`` first.
    Returns:
        Number of image files written.
    Raises:
        MissingInputError: ``alpha`` given but the store holds no such finished set.
        ExportDestinationError: ``out_dir`` is not empty and not replaceable (see the module).
    """
    out = Path(out_dir)
    index = store.index
    group = None
    sources = draws = np.zeros(0, np.int64)
    if alpha is not None:
        group = finished_set_group(store, set_name, alpha, stage="export")
        sources = store.read(f"{group}/source_index")
        draws = np.arange(len(sources)) % (alpha - 1) + 1
    stamp = store.stamp("ingest")
    kind = stamp.config.get("kind", "market1501") if stamp is not None else "market1501"
    if kind == "msmt17":
        layout = msmt17_layout(index, sources, draws)
    else:
        layout = market_layout(index, FOLDER_DATASETS.get(kind, MARKET1501), sources, draws)
    files = layout.real + layout.generated + list(layout.lists)
    files += [GENERATED_TABLE] if group is not None else []
    _clear(out, overwrite=overwrite)
    manifest: dict[str, Any] = {
        "format": "augment-market-export/1",
        "store": store.url,
        "alpha": alpha,
        "set": set_name if alpha is not None else None,
        "complete": False,
        "files": sorted(files),
    }
    _write_manifest(out, manifest)
    for image, relative in zip(store.iter_images(), layout.real, strict=True):
        if isinstance(image, bytes):  # the ingested JPEG file, copied byte for byte
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            (out / relative).write_bytes(image)
        else:
            _save(image, out / relative)
    for relative, text in layout.lists.items():
        (out / relative).write_text(text)
    if group is not None:
        generated = store.load_in_memory((f"{group}/images", f"{group}/target_index"))
        for relative, image in zip(layout.generated, generated[f"{group}/images"], strict=True):
            _save(image, out / relative)
        pd.DataFrame(
            {
                "file": layout.generated,
                "source": index["filename"].to_numpy()[sources],
                "target_pose": index["filename"].to_numpy()[generated[f"{group}/target_index"]],
            }
        ).to_csv(out / GENERATED_TABLE, index=False)
    _write_manifest(out, {**manifest, "complete": True})
    return len(layout.real) + len(layout.generated)


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
