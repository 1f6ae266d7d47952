"""Provided annotations for tests (imported as ``tests.annotations``)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from storage import PersonStore


def write_pngs(store: PersonStore, folder: Path, kind: str) -> list[Path]:
    """The store's own masks (0/255) or parsing as provided PNGs; returns the file paths."""
    folder.mkdir(parents=True)
    paths = []
    for name, labels in zip(store.index["filename"], store.read(kind), strict=True):
        path = folder / name.replace(".jpg", ".png")
        Image.fromarray(labels * 255 if kind == "masks" else labels).save(path)
        paths.append(path)
    return paths
