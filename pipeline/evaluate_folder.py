"""Score a folder of any method's generated images under the evaluate stage's protocol.

Table 1 of the paper compares methods by re-evaluating each one's outputs; this does the same
for any folder. File names follow the public pose-transfer code and are mapped to the store's
test pairs:

* PATN / GFLA result panels ``{source}___{target}_vis.png`` (or ``.jpg``): panels of the
  store's image width side by side; the generated one is cut out (``panel``, default the last,
  where PATN's ``[source | source pose | target | target pose | generated]`` puts it). PATN's
  DeepFashion panels are 176 wide and 256 high (:data:`NARROW_WIDTHS`): on a 256x256 store
  the generated one is stretched to 256x256, as the ingest stretches the photo;
* plain images ``{source}_2_{target}.jpg`` (GFLA) and ``{source}___{target}.jpg``.

``source`` and ``target`` are the images' file names in the store, with or without their
extension. Files that name no test pair are reported, as are test pairs without a file. Scores
come from :class:`pipeline.scoring.PairScorer`, so they equal the evaluate stage's on the same
images; each run becomes a named row of a comparison table beside the paper's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from foundation.errors import UserError
from pipeline.datasets import dataset_title
from pipeline.evaluate import paper_comparison, pixel_table
from pipeline.pairs import TEST_TABLE
from pipeline.scoring import PairScorer
from san_model.fid_inception import FIDVariant
from storage import PersonStore

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Store (height, width) -> the narrower width another method's images may have at that height:
# PATN's DeepFashion images are 256x176, the In-shop photo without its side bars
# (pipeline.datasets.deepfashion.crop_bars), which a 256x256 store holds stretched.
NARROW_WIDTHS = {(256, 256): 176}
# {source}___{target}[_vis] or {source}_2_{target}[_vis]; "___" is tried first.
SEPARATORS = ("___", "_2_")


@dataclass(frozen=True)
class FolderMatch:
    """How a folder's files map to the store's test pairs.

    Attributes:
        files: the matched image files, in the order of ``rows`` (a file twice when its pair
            is listed twice).
        rows: int64 [M] positions of the matched pairs in the test table.
        panels: per file, whether it is a ``_vis`` panel strip.
        unmatched: files that name no test pair, with the reason.
        missing: test pairs (table positions) without a file.
    """

    files: list[Path]
    rows: np.ndarray
    panels: list[bool]
    unmatched: dict[str, str]
    missing: list[int]


class FolderError(UserError):
    """A folder of generated images that cannot be scored (named in the message)."""


def _stem(name: str) -> str:
    """A store file name or a name part without image extensions (``a.jpg.jpg`` -> ``a``)."""
    while Path(name).suffix.lower() in IMAGE_SUFFIXES:
        name = name[: -len(Path(name).suffix)]
    return name


def match_folder(store: PersonStore, folder: Path, table: str = TEST_TABLE) -> FolderMatch:
    """Map every image file of ``folder`` to a pair of the store's ``table``."""
    pairs = store.read_table(table)[["source", "target"]].to_numpy(np.int64)
    return match_files(store, folder, pairs, f"not a pair of {table}")


def match_files(
    store: PersonStore, folder: Path, pairs: np.ndarray, not_listed: str
) -> FolderMatch:
    """Map every image file of ``folder`` to one of ``pairs``.

    Args:
        pairs: int64 [K, 2] (source, target) store rows; distinct.
        not_listed: the reason given for a file whose pair is not among ``pairs``.
    Returns:
        :class:`FolderMatch`, with ``rows`` and ``missing`` positions into ``pairs``.
    """
    if not folder.is_dir():
        raise FolderError(f"{folder}: no such folder of generated images")
    rows_by_stem = {_stem(name): row for row, name in enumerate(store.index["filename"])}
    # A published list may repeat a pair: its one file stands for every position, so that the
    # folder is scored over the same pairs as the evaluate stage.
    position: dict[tuple[int, int], list[int]] = {}
    for k, (s, t) in enumerate(pairs):
        position.setdefault((int(s), int(t)), []).append(k)
    files, rows, panels, unmatched = [], [], [], {}
    seen: set[int] = set()
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        name = path.name[: -len(path.suffix)]
        panel = name.endswith("_vis")
        name = name[: -len("_vis")] if panel else name
        parts = next((name.split(sep, 1) for sep in SEPARATORS if sep in name), None)
        if parts is None:
            unmatched[path.name] = "name is neither {source}___{target} nor {source}_2_{target}"
            continue
        source, target = (rows_by_stem.get(_stem(part)) for part in parts)
        if source is None or target is None:
            unmatched[path.name] = f"{'source' if source is None else 'target'} not in the store"
            continue
        at = position.get((source, target))
        if at is None:
            unmatched[path.name] = not_listed
        elif at[0] in seen:
            unmatched[path.name] = "a second file for the same pair"
        else:
            seen.update(at)
            files += [path] * len(at)
            rows += at
            panels += [panel] * len(at)
    missing = [k for k in range(len(pairs)) if k not in seen]
    return FolderMatch(files, np.array(rows, dtype=np.int64), panels, unmatched, missing)


def read_generated(path: Path, *, height: int, width: int, panel: bool, index: int) -> np.ndarray:
    """One generated image at the store's size, uint8 [height, width, 3]; from a panel strip,
    its ``index``-th panel. An image (or panel) of the :data:`NARROW_WIDTHS` width is
    stretched to ``width`` (PIL bicubic, as the ingest)."""
    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except OSError as error:
        raise FolderError(f"{path}: unreadable image ({error})") from error
    h, w = pixels.shape[:2]
    widths = [width, *([NARROW_WIDTHS[height, width]] if (height, width) in NARROW_WIDTHS else [])]
    panel_width = next((p for p in widths if w % p == 0), None) if panel else None
    if panel and h == height and panel_width is not None:
        count = w // panel_width
        if not -count <= index < count:
            raise FolderError(f"{path}: panel {index} of a strip of {count}")
        start = (index % count) * panel_width
        pixels = pixels[:, start : start + panel_width]
    elif h != height or w not in widths:
        allowed = " or ".join(f"{p}x{height}" for p in widths)
        raise FolderError(
            f"{path}: {w}x{h} pixels; the store's images are {width}x{height}, so the images "
            f"must be {allowed}" + (" (a _vis strip a whole number of them)" if panel else "")
        )
    if pixels.shape[1] != width:
        stretched = Image.fromarray(np.ascontiguousarray(pixels)).resize(
            (width, height), Image.Resampling.BICUBIC
        )
        pixels = np.asarray(stretched)
    return pixels


def evaluate_folder(
    store: PersonStore,
    folder: str | Path,
    *,
    name: str,
    table: str = TEST_TABLE,
    panel: int = -1,
    offline: bool = False,
    pretrained: bool = True,
    fid_variants: tuple[FIDVariant, ...] = ("torchvision", "tf-fid"),
    device: str = "cpu",
    batch_size: int = 64,
) -> dict[str, Any]:
    """Score ``folder``'s images against the ground truth of the pairs they name.

    Args:
        name: the method's name, the row's label in the comparison table.
        panel: which panel of a ``_vis`` strip is the generated image (-1: the last).
        offline, pretrained, device, batch_size: as the evaluate stage.
        fid_variants: FID in both Inception variants by default (each number names its own).

    Returns:
        The metrics (as the evaluate stage's) plus ``name``, ``matched``, ``unmatched``
        (file -> reason) and ``missing_pairs``.

    Raises:
        FolderError: no file names a test pair, a file is unreadable or of the wrong size.
    """
    folder = Path(folder)
    match = match_folder(store, folder, table)
    if not match.files:
        raise FolderError(
            f"{folder}: none of its {len(match.unmatched)} images names a pair of {table}"
            + (f" (e.g. {next(iter(match.unmatched.items()))})" if match.unmatched else "")
        )
    pairs = store.read_table(table)[["source", "target"]].to_numpy(np.int64)[match.rows]
    generated = np.stack(
        [
            read_generated(
                path, height=store.height, width=store.width, panel=is_panel, index=panel
            )
            for path, is_panel in zip(match.files, match.panels, strict=True)
        ]
    )
    scorer = PairScorer(
        store,
        offline=offline,
        pretrained=pretrained,
        fid_variants=fid_variants,
        device=device,
        batch_size=batch_size,
    )
    results = scorer.score(pairs, lambda rows: generated[rows])
    results.update(
        name=name,
        matched=len(match.files),
        unmatched=match.unmatched,
        missing_pairs=len(match.missing),
    )
    return results


def add_to_comparison(results: dict[str, Any], out_dir: str | Path) -> Path:
    """Put ``results`` as row ``results["name"]`` (replacing one of that name) into
    ``out_dir/comparison.json`` and rewrite ``comparison.md``: per dataset, its rows of the
    paper's table 1 with every row measured on that dataset beside them (FID / LPIPS /
    mask-LPIPS), both FID variants and the test pairs; then each row's pixel metrics beside the
    baselines. Rows without a dataset (written before it was recorded) count as Market-1501."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    store_file = out / "comparison.json"
    rows = json.loads(store_file.read_text()) if store_file.is_file() else {}
    rows[results["name"]] = results
    store_file.write_text(json.dumps(rows, indent=2, sort_keys=True))
    by_dataset: dict[str, dict[str, dict[str, Any]]] = {}
    for method, row in rows.items():
        by_dataset.setdefault(row.get("dataset", "market1501"), {})[method] = row

    def cell(row: dict[str, Any], key: str, digits: int) -> str:
        return f"{row[key]:.{digits}f}" if key in row else "n/a"

    lines = ["# Generated images compared under one protocol"]
    for dataset, group in by_dataset.items():
        lines += ["", f"## {dataset_title(dataset)}", ""]
        lines += [*paper_comparison(dataset, group), ""]
        lines += [
            "FID above is each row's first variant (torchvision, GFLA's protocol, unless "
            "asked otherwise); both variants and the pairs measured:",
            "",
            "| method | FID (torchvision) | FID (TF-FID) | pairs scored | test pairs |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {method} | {cell(row, 'fid_torchvision', 3)} | {cell(row, 'fid_tf-fid', 3)} "
            f"| {row['matched']} | {row.get('test_pairs_source', 'not recorded')} |"
            for method, row in group.items()
        ]
    for method, row in rows.items():
        lines += ["", f"## {method}", "", f"Mode: {row['mode']}.", "", *pixel_table(row, method)]
    page = out / "comparison.md"
    page.write_text("\n".join(lines) + "\n")
    return page
