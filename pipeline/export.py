"""Export an (alpha-augmented) store in the Market-1501 folder layout for other Re-ID toolkits.

``bounding_box_train`` holds the real training images plus the generated ones; generated names
follow the Market-1501 pattern (``{pid}_c{cam}s{seq}_{frame}_{box}.jpg``), so torchreid and
fast-reid parse identity and camera as usual: the source's pid and camera, sequence
:data:`GENERATED_SEQUENCE` (Market-1501 uses 1-6), the generated row as frame, and the draw
number as box. A generated name therefore never equals a real one. ``bounding_box_test`` and
``query`` are written from the store unchanged; ``generated.csv`` maps each generated file to
its source and target-pose images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pipeline.ingest import MARKET_FOLDERS
from pipeline.synthesize import generated_run_name
from storage import PersonStore

GENERATED_SEQUENCE = 9
JPEG_QUALITY = 95


def generated_file_name(person_id: int, camera: int, row: int, draw: int) -> str:
    """Market-1501-style name of generated row ``row`` (draw ``draw`` of its source)."""
    if not 0 <= row < 1_000_000:
        raise ValueError(f"generated row {row} does not fit the 6-digit frame field")
    return f"{person_id:04d}_c{camera}s{GENERATED_SEQUENCE}_{row:06d}_{draw:02d}.jpg"


def export_market(store: PersonStore, out_dir: str | Path, *, alpha: int | None = None) -> int:
    """Write the store (plus ``generated/alpha<A>`` when ``alpha`` is given) as Market-1501.

    Returns:
        Number of image files written.
    Raises:
        KeyError: ``alpha`` given but the store holds no such generated set.
    """
    out = Path(out_dir)
    index = store.index
    images = store.load_in_memory(("images",))["images"]
    folder_of = {split: folder for folder, split in MARKET_FOLDERS.items()}
    written = 0
    for row, (name, split) in enumerate(zip(index["filename"], index["split"], strict=True)):
        _save(images[row], out / folder_of[split] / Path(name).name)
        written += 1
    if alpha is None:
        return written
    group = f"generated/{generated_run_name(alpha)}"
    if not store.has(group):
        raise KeyError(f"store {store.url} has no {group}; run `augment-market synthesize` first")
    generated = store.load_in_memory(
        (f"{group}/images", f"{group}/source_index", f"{group}/target_index")
    )
    sources = generated[f"{group}/source_index"]
    cameras = index["camera"].to_numpy()
    person_ids = index["person_id"].to_numpy()
    draws = np.arange(len(sources)) % (alpha - 1) + 1
    names = [
        generated_file_name(int(person_ids[s]), int(cameras[s]), row, int(d))
        for row, (s, d) in enumerate(zip(sources, draws, strict=True))
    ]
    for name, image in zip(names, generated[f"{group}/images"], strict=True):
        _save(image, out / "bounding_box_train" / name)
    pd.DataFrame(
        {
            "file": names,
            "source": index["filename"].to_numpy()[sources],
            "target_pose": index["filename"].to_numpy()[generated[f"{group}/target_index"]],
        }
    ).to_csv(out / "generated.csv", index=False)
    return written + len(names)


def _save(image: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path, quality=JPEG_QUALITY)
