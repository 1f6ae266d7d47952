"""DeepFashion In-shop as the pose-transfer papers use it: PATN's / GFLA's ``train.lst`` and
``test.lst`` of flattened names, the images flattened or in the raw In-shop tree
(:func:`scan_deepfashion`), stretched to 256x256.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.datasets.layout import (
    CANDIDATE_COLUMNS,
    IMAGE_SUFFIXES,
    Dataset,
    DatasetLayoutError,
    ScanResult,
)

if TYPE_CHECKING:
    from PIL import Image

# PATN/GFLA flattened DeepFashion name: identity (gender, category, item, photo group), then
# the view number and name.
DEEPFASHION_NAME = re.compile(
    r"^(?P<identity>fashion(?:MEN|WOMEN)[A-Za-z_]+id(?P<item>\d{8})(?P<group>\d{2}))"
    r"_(?P<view>\d+)[a-z]+\.jpg$"
)


@dataclass(frozen=True)
class DeepFashionName:
    """The fields of a flattened DeepFashion name such as
    ``fashionWOMENDressesid0000262902_3back.jpg`` (PATN/GFLA lists).

    Attributes:
        identity: the name before the last ``_`` (gender, category, item, photo group), e.g.
            ``fashionWOMENDressesid0000262902``: one person in one outfit.
        item: In-shop item id (00002629); group: photo group of the item (02), i.e. one model
            in one colour; view: In-shop view number (1 front, 2 side, 3 back, 4 full, 6 flat,
            7 additional).
    """

    identity: str
    item: int
    group: int
    view: int


def parse_deepfashion_name(name: str) -> DeepFashionName:
    """Parse a flattened DeepFashion name.

    Raises:
        ValueError: the name does not follow the pattern.
    """
    match = DEEPFASHION_NAME.match(name)
    if match is None:
        raise ValueError(
            f"{name}: not a flattened DeepFashion name "
            "(fashion<GENDER><Category>id<item 8 digits><group 2 digits>_<view><name>.jpg)"
        )
    return DeepFashionName(
        match["identity"], int(match["item"]), int(match["group"]), int(match["view"])
    )


def flatten_inshop_path(relative: str | Path) -> str:
    """The flattened name of a raw In-shop image, as PATN's and GFLA's lists spell it.

    ``WOMEN/Dresses/id_00002629/02_3_back.jpg`` (relative to ``img/``) becomes
    ``fashionWOMENDressesid0000262902_3back.jpg``: "fashion", then the gender and category
    folders as they are, the item folder without underscores, then the file name with every
    underscore after the first removed.

    Raises:
        ValueError: the path is not gender/category/item/file.
    """
    parts = Path(relative).parts
    if len(parts) != 4:
        raise ValueError(f"{relative}: not an In-shop image path (gender/category/id_item/file)")
    gender, category, item, file = parts
    group, *rest = file.split("_")
    return f"fashion{gender}{category}{item.replace('_', '')}{group}_{''.join(rest)}"


def _read_list(path: Path) -> list[str]:
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    for number, name in enumerate(names, 1):
        try:
            parse_deepfashion_name(name)
        except ValueError as error:
            raise DatasetLayoutError(f"{path}, entry {number}: {error}") from None
    return names


def _inshop_tree(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Flattened name -> file for every image under a raw In-shop ``img/`` tree."""
    files, skipped = {}, []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
            continue
        try:
            files[flatten_inshop_path(path.relative_to(root))] = path
        except ValueError as error:
            skipped.append(str(error))
    return files, skipped


def scan_deepfashion(source: Path) -> ScanResult:
    """List the images of DeepFashion In-shop as the pose-transfer papers use it.

    ``source`` holds PATN's / GFLA's ``train.lst`` and ``test.lst`` (48,674 / 4,038 flattened
    names) and the images either as those repositories distribute them (``train/`` and
    ``test/`` folders of flattened names) or as the raw In-shop tree (``img_highres/`` or
    ``img/``, e.g. ``img/WOMEN/Dresses/id_00002629/02_3_back.jpg``), mapped to the same
    names by :func:`flatten_inshop_path`. Both forms give the same rows.

    Identity = the flattened name before its last ``_``: item plus photo group (plus gender and
    category: 106 item/group pairs are listed under two categories, 15 of them in train.lst
    under one and test.lst under the other). ``person_id`` numbers the identities of both lists
    in sorted order from 1, so pairs never cross photo groups and the lists' train and test
    identities stay disjoint. ``camera`` is the view number; test.lst goes to split
    ``gallery`` (the store's test split). Images that no list names are skipped and reported.

    Returns:
        (candidates with columns person_id, camera, split, filename, path, sorted by split then
        name; skipped notes).
    Raises:
        DatasetLayoutError: a list or the image folders are missing, a list entry is not a
            flattened name or is in both lists, or a list names an image that is not there
            (the message names the list and the file).
    """
    source = Path(source)
    lists = {split: source / f"{split}.lst" for split in ("train", "test")}
    tree = next((source / d for d in ("img_highres", "img") if (source / d).is_dir()), None)
    has_lists = all(path.is_file() for path in lists.values())
    skipped: list[str] = []
    if has_lists and all((source / split).is_dir() for split in lists):
        folders = {split: source / split for split in lists}
        files = {
            split: {p.name: p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
            for split, folder in folders.items()
        }
    elif has_lists and tree is not None:
        folders = {split: tree for split in lists}
        found, skipped = _inshop_tree(tree)
        files = {split: found for split in lists}
    else:
        raise DatasetLayoutError(
            f"{source} is not a DeepFashion folder: needs train.lst and test.lst (PATN/GFLA) "
            "and the images in train/ and test/ or in the In-shop img_highres/ or img/ tree"
        )
    names = {split: _read_list(path) for split, path in lists.items()}
    both = sorted(set(names["train"]) & set(names["test"]))
    if both:
        raise DatasetLayoutError(f"{both[0]} is in both train.lst and test.lst")
    identities = sorted(
        {parse_deepfashion_name(n).identity for split in lists for n in names[split]}
    )
    person_ids = {identity: i for i, identity in enumerate(identities, 1)}
    rows = []
    for split, listed in names.items():
        missing = [name for name in listed if name not in files[split]]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise DatasetLayoutError(
                f"{lists[split]} names {missing[0]}, which is not in {folders[split]}{more}"
            )
        for name in sorted(listed):
            parsed = parse_deepfashion_name(name)
            rows.append(
                (
                    person_ids[parsed.identity],
                    parsed.view,
                    "train" if split == "train" else "gallery",
                    name,
                    str(files[split][name]),
                )
            )
    listed_names = set(names["train"]) | set(names["test"])
    unlisted = {name for split in lists for name in files[split]} - listed_names
    skipped += [f"{name}: in no list (train.lst, test.lst)" for name in sorted(unlisted)]
    import pandas as pd

    return pd.DataFrame(rows, columns=CANDIDATE_COLUMNS), skipped


# PATN's tool/resize_fashion.py cuts 40 columns off each side of the 256-pixel-wide In-shop
# img/ images: the white bars around the photo (the rest, 176 columns, is the photo).
BAR_FRACTION = 40 / 256


def crop_bars(image: Image.Image) -> Image.Image:
    """An In-shop ``img/`` image without its white side bars: :data:`BAR_FRACTION` of the width
    off each side (40 of 256 columns, as PATN), so that stretching the rest to 256x256 gives the
    framing GFLA gets by stretching the ``img_highres/`` photo."""
    bar = round(image.width * BAR_FRACTION)
    return image.crop((bar, 0, image.width - bar, image.height))


DATASET = Dataset(
    name="deepfashion",
    title="DeepFashion",
    help="Ingest DeepFashion In-shop as pose transfer uses it (train.lst / test.lst, 256x256).",
    source_help="Folder with PATN/GFLA train.lst and test.lst, and train/ + test/ "
    "(flattened names) or the In-shop img_highres/ or img/ tree.",
    command="deepfashion",
    layout=scan_deepfashion,
    official_counts={"train": 48_674, "query": 0, "gallery": 4_038},
    # The pose-transfer papers' 256x256.
    image_size=(256, 256),
    barred_folder="img",
)
