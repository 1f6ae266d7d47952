"""Market-1501 / DeepFashion ingest: name parsing, bad files, resume, both DeepFashion forms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.datasets import DatasetLayoutError
from pipeline.datasets.deepfashion import (
    DeepFashionName,
    flatten_inshop_path,
    parse_deepfashion_name,
    scan_deepfashion,
)
from pipeline.datasets.market1501 import parse_market_name, scan_market1501
from pipeline.ingest import decode_image, ingest
from pipeline.pairs import PairsConfig, PairsFileError, sample_pairs
from pipeline.scoring import dataset_kind
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
    ("name", "problem"),
    [
        ("Thumbs.db", "not a Market-1501 image name"),
        ("abc.jpg", "not a Market-1501 image name"),
        ("0002_c9s1_000451_01.jpg", r"camera 9 is out of range \(Market-1501 cameras are 1-6\)"),
        ("0002_c0s1_000451_01.jpg", "camera 0 is out of range"),
        ("99999_c1s1_000451_01.jpg", "person id 99999 is out of range"),
        ("2_c1s1_000451_01.jpg", "person id 2 is out of range"),
        ("-2_c1s1_000451_01.jpg", "person id -2 is out of range"),
    ],
)
def test_parse_market_name_rejects(name, problem):
    with pytest.raises(ValueError, match=rf"^{name}: {problem}"):
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
    store.group["images"][4:8] = np.array([b""] * 4, dtype=object)  # rows never written
    store.clear_stamp("ingest")
    second = ingest(source, url, block_size=4)
    assert second.digest == first.digest
    assert store.read("images", slice(4, 8)).max() > 0, "the missing block was rewritten"
    _jpeg(source / "query" / "0010_c3s1_000900_00.jpg", 1)
    with pytest.raises(FileExistsError, match="--overwrite"):
        ingest(source, url, block_size=4)
    assert ingest(source, url, block_size=4, overwrite=True).counts["images"] == 16


# (raw In-shop path under img/, its flattened name). Item 00000693 photo group 02 appears
# under two categories (as 106 real item/group pairs do): two identities, one per list.
INSHOP = [
    ("WOMEN/Dresses/id_00002629/02_1_front.jpg", "fashionWOMENDressesid0000262902_1front.jpg"),
    ("WOMEN/Dresses/id_00002629/02_3_back.jpg", "fashionWOMENDressesid0000262902_3back.jpg"),
    ("WOMEN/Dresses/id_00002629/03_2_side.jpg", "fashionWOMENDressesid0000262903_2side.jpg"),
    (
        "WOMEN/Dresses/id_00002629/03_7_additional.jpg",
        "fashionWOMENDressesid0000262903_7additional.jpg",
    ),
    (
        "WOMEN/Blouses_Shirts/id_00000693/02_1_front.jpg",
        "fashionWOMENBlouses_Shirtsid0000069302_1front.jpg",
    ),
    (
        "WOMEN/Blouses_Shirts/id_00000693/02_4_full.jpg",
        "fashionWOMENBlouses_Shirtsid0000069302_4full.jpg",
    ),
    (
        "WOMEN/Tees_Tanks/id_00000693/02_1_front.jpg",
        "fashionWOMENTees_Tanksid0000069302_1front.jpg",
    ),
    ("WOMEN/Tees_Tanks/id_00000693/02_2_side.jpg", "fashionWOMENTees_Tanksid0000069302_2side.jpg"),
    ("MEN/Denim/id_00000080/01_6_flat.jpg", "fashionMENDenimid0000008001_6flat.jpg"),
]
TEST_LIST = {INSHOP[i][1] for i in (2, 3, 6, 7)}  # item 2629 group 03, Tees_Tanks 693 group 02


def _deepfashion(root, form, *, unlisted=True):
    """A tiny DeepFashion folder: train.lst / test.lst plus images in ``form`` ("raw": the
    In-shop img/ tree, "flat": PATN/GFLA train/ and test/ folders). Image i has value 20 i."""
    train = [flat for _, flat in INSHOP[:-1] if flat not in TEST_LIST]
    test = [flat for _, flat in INSHOP if flat in TEST_LIST]
    root.mkdir(parents=True)
    (root / "train.lst").write_text("\n".join(train) + "\n")
    (root / "test.lst").write_text("\n".join(test) + "\n\n")
    for i, (raw, flat) in enumerate(INSHOP if unlisted else INSHOP[:-1]):
        folder = "test" if flat in TEST_LIST else "train"
        _jpeg(root / ("img/" + raw if form == "raw" else f"{folder}/{flat}"), 20 * i, (12, 16))
    return root


@pytest.mark.parametrize(
    ("raw", "flat"),
    [
        *INSHOP,
        (
            "WOMEN/Dresses/id_00002629/02_3_back_full.jpg",
            "fashionWOMENDressesid0000262902_3backfull.jpg",
        ),
    ],
)
def test_flatten_inshop_path(raw, flat):
    assert flatten_inshop_path(raw) == flat


def test_parse_deepfashion_name():
    name = parse_deepfashion_name("fashionWOMENBlouses_Shirtsid0000069302_3back.jpg")
    assert name == DeepFashionName("fashionWOMENBlouses_Shirtsid0000069302", 693, 2, 3)
    for bad in ("fashionWOMENDressesid00002629_3back.jpg", "WOMENDressesid0000262902_3back.jpg"):
        with pytest.raises(ValueError, match="not a flattened DeepFashion name"):
            parse_deepfashion_name(bad)
    with pytest.raises(ValueError, match="gender/category/id_item/file"):
        flatten_inshop_path("Dresses/id_00002629/02_3_back.jpg")


def test_deepfashion_raw_and_flat_forms_give_the_same_rows(tmp_path):
    raw, skipped_raw = scan_deepfashion(_deepfashion(tmp_path / "raw", "raw"))
    flat, skipped_flat = scan_deepfashion(_deepfashion(tmp_path / "flat", "flat"))
    pd.testing.assert_frame_equal(raw.drop(columns="path"), flat.drop(columns="path"))
    assert (
        skipped_raw
        == skipped_flat
        == ["fashionMENDenimid0000008001_6flat.jpg: in no list (train.lst, test.lst)"]
    )
    # Identities sorted: Blouses_Shirts 693/02 = 1, Dresses 2629/02 = 2, 2629/03 = 3,
    # Tees_Tanks 693/02 = 4. Train rows first, each list sorted by name.
    assert raw["filename"].tolist() == [
        "fashionWOMENBlouses_Shirtsid0000069302_1front.jpg",
        "fashionWOMENBlouses_Shirtsid0000069302_4full.jpg",
        "fashionWOMENDressesid0000262902_1front.jpg",
        "fashionWOMENDressesid0000262902_3back.jpg",
        "fashionWOMENDressesid0000262903_2side.jpg",
        "fashionWOMENDressesid0000262903_7additional.jpg",
        "fashionWOMENTees_Tanksid0000069302_1front.jpg",
        "fashionWOMENTees_Tanksid0000069302_2side.jpg",
    ]  # fmt: skip
    assert raw["person_id"].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    assert raw["camera"].tolist() == [1, 4, 1, 3, 2, 7, 1, 2]
    assert raw["split"].tolist() == ["train"] * 4 + ["gallery"] * 4
    assert raw["path"].iloc[0].endswith("img/WOMEN/Blouses_Shirts/id_00000693/02_1_front.jpg")
    assert flat["path"].iloc[4].endswith("test/fashionWOMENDressesid0000262903_2side.jpg")


def test_deepfashion_ingest_and_pairs_stay_in_photo_groups(tmp_path):
    source = _deepfashion(tmp_path / "df", "raw", unlisted=False)
    stamp = ingest(source, str(tmp_path / "store"), kind="deepfashion", size=(32, 32))
    assert stamp.counts["train_images"] == 4 and stamp.counts["gallery_images"] == 4
    assert stamp.report["skipped"] == []
    store = open_store(str(tmp_path / "store"), mode="r+")
    assert store.group["person_id"].dtype == np.int32 and (store.height, store.width) == (32, 32)
    images = store.load_in_memory(("images",))["images"]
    # Row 2 is Dresses 2629/02 front, the first raw image (value 0); row 7 the eighth (140).
    assert abs(images[2].mean() - 0) <= 3 and abs(images[7].mean() - 140) <= 3
    sample_pairs(store, PairsConfig(train_pairs=None, test_pairs=None, skip_empty_masks=False))
    filenames = store.index["filename"]
    for table, count in (("pairs_train", 4), ("pairs_test", 4)):  # 2 ids x 2 images, ordered
        pairs = store.read_table(table)
        assert len(pairs) == count
        source_ids = filenames[pairs["source"]].str.rsplit("_", n=1).str[0].to_numpy()
        target_ids = filenames[pairs["target"]].str.rsplit("_", n=1).str[0].to_numpy()
        assert (source_ids == target_ids).all()


@pytest.mark.parametrize("form", ["raw", "flat"])
def test_deepfashion_list_naming_a_missing_image(tmp_path, form):
    source = _deepfashion(tmp_path / "df", form)
    gone = "fashionWOMENTees_Tanksid0000069302_2side.jpg"
    path = source / (
        "img/WOMEN/Tees_Tanks/id_00000693/02_2_side.jpg" if form == "raw" else f"test/{gone}"
    )
    path.unlink()
    with pytest.raises(DatasetLayoutError, match=rf"test\.lst names {gone}, which is not in"):
        scan_deepfashion(source)


def test_deepfashion_layout_errors(tmp_path):
    source = _deepfashion(tmp_path / "df", "flat")
    with pytest.raises(DatasetLayoutError, match="needs train.lst and test.lst"):
        ingest(source / "train", str(tmp_path / "s"), kind="deepfashion")
    (source / "test.lst").write_text(INSHOP[0][1] + "\n")
    with pytest.raises(DatasetLayoutError, match=f"{INSHOP[0][1]} is in both"):
        scan_deepfashion(source)
    (source / "test.lst").write_text(INSHOP[2][1] + "\nimg/WOMEN/x.jpg\n")
    with pytest.raises(DatasetLayoutError, match=r"test\.lst, entry 2: img/WOMEN/x\.jpg: not a"):
        scan_deepfashion(source)
    (source / "train.lst").unlink()
    with pytest.raises(DatasetLayoutError, match="not a DeepFashion folder"):
        scan_deepfashion(source)


def test_decode_image_names_the_file(tmp_path):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="x.jpg: unreadable"):
        decode_image(str(bad), size=(128, 64), resize=False)


def test_double_suffix_names_parse_as_torchreid_reads_them():
    parsed = parse_market_name("1488_c1s6_023021_00.jpg.jpg")
    assert (parsed.person_id, parsed.camera, parsed.frame, parsed.box) == (1488, 1, 23021, 0)


def test_real_market_sample_is_stored_verbatim_and_decodes_as_pil(real_market, tmp_path):
    stamp = ingest(real_market, str(tmp_path / "store"), block_size=16)
    assert stamp.counts["images"] == 46 and stamp.counts["skipped"] == 0
    assert (stamp.counts["train_images"], stamp.counts["gallery_images"]) == (12, 26)
    assert stamp.counts["query_images"] == 8
    assert stamp.counts["double_suffix_images"] == 24 == len(stamp.report["double_suffix"])
    assert stamp.counts["jpeg_verbatim"] == 46 and stamp.counts["lossless"] == 0
    store = open_store(str(tmp_path / "store"))
    index = store.index
    query = index[index["split"] == "query"]
    assert sorted(set(query["person_id"])) == [1, 1488], "the *.jpg.jpg queries are there"
    folders = {"train": "bounding_box_train", "gallery": "bounding_box_test", "query": "query"}
    rows = zip(index["split"], index["filename"], strict=True)
    paths = [real_market / folders[split] / name for split, name in rows]
    assert store.read_encoded("images") == [path.read_bytes() for path in paths]
    expected = np.stack([np.asarray(Image.open(path).convert("RGB")) for path in paths])
    np.testing.assert_array_equal(store.load_in_memory(("images",))["images"], expected)


def _barred(path, size=(256, 256)):
    """An In-shop img/-style image: white side bars of 40/256 of the width around a red
    photo (PNG bytes, so no JPEG ringing blurs the bar's edge)."""
    width, height = size
    pixels = np.full((height, width, 3), 255, np.uint8)
    bar = round(width * 40 / 256)
    pixels[:, bar : width - bar] = (200, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


@pytest.mark.parametrize("tree", ["img", "img_highres"])
def test_raw_inshop_img_loses_its_side_bars_as_patn(tmp_path, tree):
    source = _deepfashion(tmp_path / "df", "raw", unlisted=False)
    if tree == "img_highres":
        (source / "img").rename(source / "img_highres")
    barred = source / tree / INSHOP[0][0]
    _barred(barred)
    ingest(source, str(tmp_path / "store"), kind="deepfashion")
    store = open_store(str(tmp_path / "store"))
    assert (store.height, store.width) == (256, 256)
    image = store.read("images", [store.index["filename"].tolist().index(INSHOP[0][1])])[0]
    if tree == "img":
        # The 176 photo columns stretched to 256: red to the edges, no white bar left.
        assert (image == (200, 0, 0)).all()
    else:  # a high-resolution photo has no bars: stretched as it is, white stays
        assert (image[:, :30].min(axis=2) > 225).all()


def test_ingest_compares_each_split_with_the_official_count(real_market, tmp_path):
    stamp = ingest(real_market, str(tmp_path / "store"))
    assert stamp.report["count_differences"] == [
        "Market-1501 train: 12 images, the official count is 12,936 (a partial or altered copy?)",
        "Market-1501 query: 8 images, the official count is 3,368 (a partial or altered copy?)",
        "Market-1501 gallery: 26 images, the official count is 19,732 (a partial or altered copy?)",
    ]
    # A set in the layout that is not the dataset (the demo's synthetic one): no comparison,
    # and evaluation pages call it a custom dataset, beside no paper row.
    quiet = ingest(real_market, str(tmp_path / "quiet"), official=False)
    assert "count_differences" not in quiet.report and quiet.config["official"] is False
    assert dataset_kind(open_store(str(tmp_path / "quiet"))) == "custom"
    assert dataset_kind(open_store(str(tmp_path / "store"))) == "market1501"
    assert "official" not in stamp.config  # an official copy's digest is as before


def test_official_counts_of_a_complete_copy_give_no_warning():
    from pipeline.datasets import DATASETS, official_count_differences

    market = DATASETS["market1501"].official_counts
    assert official_count_differences("market1501", market) == []
    msmt17 = {"train": 30_248, "query": 11_659, "gallery": 82_161}
    assert official_count_differences("msmt17", msmt17) == []
    (line,) = official_count_differences("msmt17", msmt17, with_val=True)
    assert line.startswith("MSMT17 train: 30,248 images, the official count is 32,621")
    (line,) = official_count_differences("deepfashion", {"train": 48_674, "gallery": 4_037})
    assert line.startswith("DeepFashion gallery: 4,037 images, the official count is 4,038")


def test_a_barred_jpeg_of_the_store_size_is_cropped_not_kept_verbatim(tmp_path):
    """Real img/ files are 256x256 JPEGs, the store's size: they must still lose their bars."""
    source = _deepfashion(tmp_path / "df", "raw", unlisted=False)
    path = source / "img" / INSHOP[0][0]
    _barred(path)
    Image.open(path).convert("RGB").save(path, format="JPEG", quality=95)
    stamp = ingest(source, str(tmp_path / "store"), kind="deepfashion")
    store = open_store(str(tmp_path / "store"))
    image = store.read("images", [store.index["filename"].tolist().index(INSHOP[0][1])])[0]
    assert stamp.counts["jpeg_verbatim"] == 0
    assert image[:, 4:-4, 1].max() < 40  # JPEG ringing at the very edge only; no white bar


def test_deepfashion_published_lists_use_the_flattened_names(tmp_path):
    """GFLA's fasion-resize-pairs-*.csv name images by their flattened names, as the store."""
    source = _deepfashion(tmp_path / "df", "raw", unlisted=False)
    ingest(source, str(tmp_path / "store"), kind="deepfashion", size=(32, 32))
    store = open_store(str(tmp_path / "store"), mode="r+")
    test = tmp_path / "fasion-resize-pairs-test.csv"
    test.write_text(
        "from,to\n"
        "fashionWOMENTees_Tanksid0000069302_2side.jpg,fashionWOMENTees_Tanksid0000069302_1front.jpg\n"
        "fashionWOMENDressesid0000262903_2side.jpg,fashionWOMENDressesid0000262903_7additional.jpg\n"
    )
    sample_pairs(store, PairsConfig(test_pairs_file=str(test), skip_empty_masks=False))
    names = store.index["filename"]
    pairs = store.read_table("pairs_test")
    assert names[pairs["source"]].tolist() == [
        "fashionWOMENTees_Tanksid0000069302_2side.jpg",
        "fashionWOMENDressesid0000262903_2side.jpg",
    ]
    assert names[pairs["target"]].tolist()[1] == "fashionWOMENDressesid0000262903_7additional.jpg"
    # Two photo groups of one item are two identities: such a pair is refused.
    test.write_text(
        "from,to\n"
        "fashionWOMENDressesid0000262903_2side.jpg,fashionWOMENDressesid0000262902_1front.jpg\n"
    )
    with pytest.raises(PairsFileError, match=r"line 2: test pair .*: identities 3 and 2 differ"):
        sample_pairs(store, PairsConfig(test_pairs_file=str(test), skip_empty_masks=False))
