"""Ingest stage: a dataset folder (Market-1501 or DeepFashion In-shop layout) into a store.

Two passes over the files: the first decodes every image to find the unreadable ones and the
wrong sizes (they are reported and skipped, the rest goes on), the second writes blocks of
decoded images through the store's resumable stage bookkeeping. A crash in the second pass
leaves finished blocks in place; running the same ingest again continues from there.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from storage import PersonStore, StageStamp, create_store, open_store

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
MARKET_FOLDERS = {"bounding_box_train": "train", "bounding_box_test": "gallery", "query": "query"}
# pid (-1 junk, 0000 distractor), camera 1-6, sequence, frame, box index.
MARKET_NAME = re.compile(
    r"^(?P<pid>-1|\d{4})_c(?P<cam>\d)s(?P<seq>\d+)_(?P<frame>\d+)_(?P<box>\d+)$"
)
DEEPFASHION_VIEWS = {"front": 1, "side": 2, "back": 3, "full": 4, "additional": 5, "flat": 6}
DEEPFASHION_SPLITS = {"train": "train", "query": "query", "gallery": "gallery"}

Progress = Callable[[int, int], None]


class DatasetLayoutError(ValueError):
    """The source folder is not the dataset layout it was given as."""


@dataclass(frozen=True)
class MarketName:
    """The fields of a Market-1501 file name such as ``0002_c3s1_000451_01.jpg``."""

    person_id: int
    camera: int
    sequence: int
    frame: int
    box: int


def parse_market_name(name: str) -> MarketName:
    """Parse a Market-1501 file name (pid -1 = junk, 0 = distractor).

    Raises:
        ValueError: the name does not follow the Market-1501 pattern.
    """
    match = MARKET_NAME.match(Path(name).stem)
    if match is None or not 1 <= int(match["cam"]) <= 6:
        raise ValueError(f"{name}: not a Market-1501 image name (pid_cCsS_frame_box.jpg)")
    return MarketName(
        int(match["pid"]),
        int(match["cam"]),
        int(match["seq"]),
        int(match["frame"]),
        int(match["box"]),
    )


def scan_market1501(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """List the images of a Market-1501 folder.

    Returns:
        (candidates with columns person_id, camera, split, filename, path; skipped notes).
    Raises:
        DatasetLayoutError: a required folder is missing (the message lists which).
    """
    source = Path(source)
    if not source.is_dir():
        raise DatasetLayoutError(f"{source}: folder does not exist")
    missing = [name for name in MARKET_FOLDERS if not (source / name).is_dir()]
    if missing:
        raise DatasetLayoutError(
            f"{source} is not a Market-1501 folder: missing {', '.join(missing)} "
            f"(expected {', '.join(MARKET_FOLDERS)})"
        )
    rows, skipped = [], []
    for folder, split in MARKET_FOLDERS.items():
        for path in sorted((source / folder).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue  # Thumbs.db and the like
            try:
                name = parse_market_name(path.name)
            except ValueError as error:
                skipped.append(str(error))
                continue
            rows.append((name.person_id, name.camera, split, path.name, str(path)))
    return pd.DataFrame(rows, columns=["person_id", "camera", "split", "filename", "path"]), skipped


def scan_deepfashion(source: Path) -> tuple[pd.DataFrame, list[str]]:
    """List the images of a DeepFashion In-shop folder (``img/`` + ``list_eval_partition.txt``).

    The item id is the identity; the view (front/side/back/full/...) stands in for the camera.
    """
    source = Path(source)
    partition = next(
        (
            p
            for p in (
                source / "list_eval_partition.txt",
                source / "Eval" / "list_eval_partition.txt",
            )
            if p.is_file()
        ),
        None,
    )
    if not (source / "img").is_dir() or partition is None:
        raise DatasetLayoutError(
            f"{source} is not a DeepFashion In-shop folder: needs img/ and "
            "list_eval_partition.txt (or Eval/list_eval_partition.txt)"
        )
    rows, skipped = [], []
    for line in partition.read_text().splitlines()[2:]:  # count line, then header line
        fields = line.split()
        if len(fields) != 3:
            continue
        image_name, item_id, status = fields
        path = source / image_name
        view = Path(image_name).stem.split("_")[-1]
        if status not in DEEPFASHION_SPLITS or not item_id.startswith("id_"):
            skipped.append(f"{image_name}: unknown split '{status}' or item '{item_id}'")
            continue
        rows.append(
            (
                int(item_id[3:]),
                DEEPFASHION_VIEWS.get(view, 0),
                DEEPFASHION_SPLITS[status],
                image_name.removeprefix("img/"),
                str(path),
            )
        )
    return pd.DataFrame(rows, columns=["person_id", "camera", "split", "filename", "path"]), skipped


def decode_image(path: str, *, size: tuple[int, int], resize: bool) -> np.ndarray:
    """Decode an image file to RGB uint8 [H, W, 3].

    Raises:
        ValueError: unreadable, truncated, or (when not ``resize``) of the wrong size; the
            message names the file.
    """
    try:
        with Image.open(path) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as error:
        raise ValueError(f"{path}: unreadable image ({error})") from None
    height, width = size
    if rgb.size != (width, height):
        if not resize:
            raise ValueError(f"{path}: size {rgb.size[1]}x{rgb.size[0]}, expected {height}x{width}")
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def _check_all(
    candidates: pd.DataFrame, size: tuple[int, int], resize: bool, workers: int
) -> list[str | None]:
    def check(path: str) -> str | None:
        try:
            decode_image(path, size=size, resize=resize)
        except ValueError as error:
            return str(error)
        return None

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(check, candidates["path"]))


def ingest(
    source: Path,
    store_url: str,
    *,
    kind: Literal["market1501", "deepfashion"] = "market1501",
    size: tuple[int, int] | None = None,
    block_size: int = 64,
    overwrite: bool = False,
    workers: int = 4,
    progress: Progress | None = None,
) -> StageStamp:
    """Read a dataset folder into a new store (or finish an interrupted ingest of it).

    Args:
        source: the dataset's root folder.
        store_url: where the store goes (local folder or fsspec URL).
        kind: ``market1501`` (128x64, wrong sizes skipped) or ``deepfashion`` (resized to
            256x256, the size pose-transfer work uses).
        size: (height, width) override.
        overwrite: replace an existing store built from other files.
        progress: called as ``progress(done_blocks, total_blocks)``.
    Returns:
        The ``ingest`` stamp; its report lists every skipped file and why.
    """
    scan = scan_market1501 if kind == "market1501" else scan_deepfashion
    candidates, skipped = scan(Path(source))
    if candidates.empty:
        raise DatasetLayoutError(f"{source}: no images found")
    resize = kind == "deepfashion"
    size = size or ((128, 64) if kind == "market1501" else (256, 256))
    problems = _check_all(candidates, size, resize, workers)
    keep = np.array([p is None for p in problems])
    skipped += [p for p in problems if p is not None]
    files = candidates[keep].reset_index(drop=True)
    index = files.drop(columns="path")
    store = _create_or_resume(store_url, index, size, block_size, overwrite)
    config = {
        "source": str(Path(source).resolve()),
        "kind": kind,
        "size": list(size),
        "n_images": len(index),
    }
    with store.stage("ingest", config=config, on_block=progress) as run:
        for block in run.pending_blocks():
            rows = store.block_slice(block)
            paths = files["path"].iloc[rows]
            with ThreadPoolExecutor(workers) as pool:
                images = list(pool.map(lambda p: decode_image(p, size=size, resize=resize), paths))
            run.write("images", block, np.stack(images))
            run.mark_done(block)
        counts = {
            "images": len(index),
            "skipped": len(skipped),
            **{
                f"{split}_images": int((index["split"] == split).sum())
                for split in ("train", "gallery", "query")
            },
        }
        return run.finish(counts=counts, report={"skipped": skipped})


def _create_or_resume(
    url: str, index: pd.DataFrame, size: tuple[int, int], block_size: int, overwrite: bool
) -> PersonStore:
    try:
        existing = open_store(url, mode="r+")
    except FileNotFoundError:
        return create_store(url, index=index, height=size[0], width=size[1], block_size=block_size)
    same = (
        existing.n_images == len(index)
        and (existing.height, existing.width) == size
        and existing.index["filename"].tolist() == index["filename"].tolist()
    )
    if same:
        return existing
    if not overwrite:
        raise FileExistsError(
            f"{url} already holds a store built from other images; pass --overwrite to replace it"
        )
    return create_store(
        url, index=index, height=size[0], width=size[1], block_size=block_size, overwrite=True
    )
