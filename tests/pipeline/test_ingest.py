"""Market-1501 / DeepFashion ingest: name parsing, bad files, resume."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.ingest import (
    DatasetLayoutError,
    decode_image,
    ingest,
    parse_market_name,
    scan_market1501,
)
from storage import open_store


def _jpeg(path, value, size=(64, 128)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, quality=95)


def _market(root, extra_train=0):
    names = {
        "bounding_box_train": [
            "0002_c1s1_000451_01.jpg",
            "0002_c3s1_000551_01.jpg",
            "0007_c2s3_070952_01.jpg",
            "0007_c6s1_000151_02.jpg",
        ]
        + [f"0009_c1s1_{i:06d}_01.jpg" for i in range(extra_train)],
        "bounding_box_test": [
            "0000_c1s1_000001_01.jpg",
            "-1_c1s1_000401_03.jpg",
            "0010_c2s1_000100_01.jpg",
            "0010_c5s2_000200_01.jpg",
        ],
        "query": ["0010_c1s1_000300_00.jpg"],
    }
    for value, (folder, files) in enumerate(names.items()):
        for i, name in enumerate(files):
            _jpeg(root / folder / name, 10 * value + i)
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"\x00junk")
    (root / "gt_bbox").mkdir()
    return names


@pytest.mark.parametrize(
    "name, expected",
    [
        ("0002_c3s1_000451_01.jpg", (2, 3, 1, 451, 1)),
        ("-1_c1s1_000401_03.jpg", (-1, 1, 1, 401, 3)),
        ("0000_c6s4_002202_00.jpg", (0, 6, 4, 2202, 0)),
    ],
)
def test_parse_market_name(name, expected):
    parsed = parse_market_name(name)
    assert (parsed.person_id, parsed.camera, parsed.sequence, parsed.frame, parsed.box) == expected


@pytest.mark.parametrize(
    "name", ["Thumbs.db", "0002_c7s1_000451_01.jpg", "abc.jpg", "2_c1s1_000451_01.jpg"]
)
def test_parse_market_name_rejects(name):
    with pytest.raises(ValueError, match="not a Market-1501 image name"):
        parse_market_name(name)


def test_scan_skips_non_images_and_maps_splits(tmp_path):
    _market(tmp_path)
    candidates, skipped = scan_market1501(tmp_path)
    assert "Thumbs.db" not in set(candidates["filename"])
    assert skipped == []
    assert dict(candidates["split"].value_counts()) == {"train": 4, "gallery": 4, "query": 1}
    gallery = candidates[candidates["split"] == "gallery"]
    assert {-1, 0, 10} == set(gallery["person_id"])


def test_missing_folder_is_named(tmp_path):
    (tmp_path / "bounding_box_train").mkdir()
    with pytest.raises(DatasetLayoutError, match="missing bounding_box_test, query"):
        scan_market1501(tmp_path)
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        scan_market1501(tmp_path / "nope")


def test_ingest_skips_bad_images_and_keeps_the_rest(tmp_path):
    source = tmp_path / "Market"
    _market(source)
    truncated = source / "bounding_box_train" / "0007_c6s1_000151_02.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    _jpeg(source / "bounding_box_test" / "0010_c2s1_000100_01.jpg", 5, size=(60, 100))
    stamp = ingest(source, str(tmp_path / "store"), block_size=2)
    assert stamp.counts["images"] == 7
    assert stamp.counts["skipped"] == 2
    report = " ".join(stamp.report["skipped"])
    assert "0007_c6s1_000151_02.jpg: unreadable" in report
    assert "0010_c2s1_000100_01.jpg: size 100x60, expected 128x64" in report
    store = open_store(str(tmp_path / "store"))
    assert store.n_images == 7
    images = store.load_in_memory(("images",))["images"]
    assert images.shape == (7, 128, 64, 3)
    first = store.index["filename"].tolist().index("0002_c1s1_000451_01.jpg")
    assert abs(int(images[first].mean()) - 0) <= 2  # JPEG of a flat value 0


def test_ingest_resumes_and_refuses_other_data(tmp_path):
    source = tmp_path / "Market"
    _market(source, extra_train=6)
    url = str(tmp_path / "store")
    first = ingest(source, url, block_size=4)
    store = open_store(url, mode="r+")
    store.group["done/ingest"][1] = False  # as if the run had died before block 1
    store.group["images"][4:8] = 0
    store.clear_stamp("ingest")
    second = ingest(source, url, block_size=4)
    assert second.digest == first.digest
    assert store.read("images", slice(4, 8)).max() > 0, "the missing block was rewritten"
    _jpeg(source / "query" / "0010_c3s1_000900_00.jpg", 1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        ingest(source, url, block_size=4)
    assert ingest(source, url, block_size=4, overwrite=True).counts["images"] == 16


def test_deepfashion_layout(tmp_path):
    names = [
        "img/WOMEN/Dresses/id_00000002/02_1_front.jpg",
        "img/WOMEN/Dresses/id_00000002/02_2_side.jpg",
        "img/MEN/Denim/id_00000080/01_1_front.jpg",
        "img/MEN/Denim/id_00000080/01_3_back.jpg",
    ]
    statuses = ["train", "train", "query", "gallery"]
    for i, name in enumerate(names):
        _jpeg(tmp_path / name, i * 20, size=(176, 256))
    lines = [str(len(names)), "image_name item_id evaluation_status"]
    lines += [f"{n} {n.split('/')[3]} {s}" for n, s in zip(names, statuses, strict=True)]
    (tmp_path / "Eval").mkdir()
    (tmp_path / "Eval" / "list_eval_partition.txt").write_text("\n".join(lines) + "\n")
    stamp = ingest(tmp_path, str(tmp_path / "store"), kind="deepfashion")
    store = open_store(str(tmp_path / "store"))
    assert stamp.counts["images"] == 4 and (store.height, store.width) == (256, 256)
    assert store.index["person_id"].tolist() == [2, 2, 80, 80]
    assert store.index["camera"].tolist() == [1, 2, 1, 3]
    with pytest.raises(DatasetLayoutError, match="DeepFashion"):
        ingest(tmp_path / "img", str(tmp_path / "s2"), kind="deepfashion")


def test_decode_image_names_the_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="x.jpg: unreadable"):
        decode_image(str(bad), size=(128, 64), resize=False)
