"""DukeMTMC-reID, MSMT17 and CUHK03-NP: tiny fake layouts ingested, stretched, exported and
ingested again."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from augment_market.cli import main
from pipeline.datasets import FOLDER_DATASETS, DatasetLayoutError, scan_folders
from pipeline.datasets.cuhk03 import CUHK03_NP_DETECTED
from pipeline.datasets.msmt17 import msmt17_labels, msmt17_person_ids, scan_msmt17
from pipeline.export import MANIFEST, export_market
from pipeline.ingest import ingest
from pipeline.pairs import PairsConfig, sample_pairs
from storage import open_store

# (width, height) of the fake images: never a store size (64x128, 128x256) unless said so,
# never its aspect.
SIZES = [(50, 120), (70, 180), (40, 100), (90, 150)]


def _image(path, value, size):
    """A flat image of grey ``value``, size (width, height); the suffix picks the format."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path, quality=95)


def _folders(root, names, suffix=".jpg"):
    """Market-layout folders: ``names`` maps folder -> file stems; images of varying sizes."""
    for folder, stems in names.items():
        for i, stem in enumerate(stems):
            _image(root / folder / f"{stem}{suffix}", 20 + 10 * i, SIZES[i % len(SIZES)])


DUKE = {
    "bounding_box_train": [
        "0001_c1_f0000100",
        "0001_c5_f0000200",
        "0002_c2_f0000300",
        "0002_c8_f0000400",
        "0004_c3_f0000500",
        "0004_c6_f0000600",
    ],
    "bounding_box_test": [
        "0005_c1_f0001000",
        "0005_c7_f0001100",
        "0006_c4_f0001200",
        "0006_c8_f0001300",
        "0100_c2_f0001400",  # a distractor identity: gallery only
    ],
    "query": ["0005_c2_f0002000", "0006_c1_f0002100"],
}


def _duke(root):
    _folders(root, DUKE)
    # One image already of the store's 256x128: kept verbatim, as in Market-1501.
    _image(root / "bounding_box_train" / "0004_c1_f0000700.jpg", 200, (128, 256))
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"not an image")
    return root


def _cuhk03(root):
    """detected/ and labeled/ with different boxes: labeled has one more training image."""
    train = ["0001_c1_1", "0001_c2_6", "0003_c1_2", "0003_c2_7"]
    test = {"bounding_box_test": ["0010_c1_2", "0010_c2_7", "0011_c1_1", "0011_c2_6"]}
    test["query"] = ["0010_c1_1", "0010_c2_6", "0011_c1_3", "0011_c2_8"]
    _folders(root / "detected", {"bounding_box_train": train, **test}, suffix=".png")
    labeled = {"bounding_box_train": [*train, "0003_c2_9"], **test}
    _folders(root / "labeled", labeled, suffix=".png")
    return root


# MSMT17 (V1): list file -> its lines as (pid folder, file name after the pid, label). Labels
# count from 0 in train/ and in test/; the camera is the name's third field (two digits, 1-15).
MSMT17_LINES = {
    "list_train.txt": [
        ("0000", "000_01_0303morning_0015_0", 0),
        ("0000", "001_15_0303noon_0020_1", 0),
        ("0001", "000_03_0302morning_0001_0", 1),
        ("0001", "001_04_0302noon_0007_0", 1),
        ("0002", "000_07_0113afternoon_0100_0", 2),
    ],
    "list_val.txt": [("0002", "001_09_0113afternoon_0120_2", 2)],
    "list_query.txt": [
        ("0000", "000_02_0303morning_0031_0", 0),
        ("0001", "000_11_0302noon_0009_1", 1),
    ],
    "list_gallery.txt": [
        ("0000", "001_05_0303morning_0040_0", 0),
        ("0000", "002_12_0303noon_0041_0", 0),
        ("0001", "001_14_0302noon_0010_0", 1),
        ("0001", "002_06_0303noon_0010_0", 1),
        ("0002", "000_10_0303noon_0050_0", 2),
    ],
}


def _msmt17(root):
    for number, (name, lines) in enumerate(MSMT17_LINES.items()):
        folder = "train" if name in ("list_train.txt", "list_val.txt") else "test"
        entries = []
        for i, (pid, tail, label) in enumerate(lines):
            relative = f"{pid}/{pid}_{tail}.jpg"
            _image(root / folder / relative, 20 * number + 5 * i, SIZES[i % len(SIZES)])
            entries.append(f"{relative} {label}\n")
        (root / name).write_text("".join(entries))
    return root


def _counts(store):
    """(images, identities) per split of a store."""
    index = store.index
    return {
        split: (
            int((index["split"] == split).sum()),
            index[index["split"] == split]["person_id"].nunique(),
        )
        for split in ("train", "query", "gallery")
    }


def test_duke_ingest_counts_cameras_and_sizes(tmp_path):
    stamp = ingest(_duke(tmp_path / "duke"), str(tmp_path / "store"), kind="dukemtmc_reid")
    store = open_store(str(tmp_path / "store"))
    assert _counts(store) == {"train": (7, 3), "query": (2, 2), "gallery": (5, 3)}
    assert store.index["camera"].tolist().count(8) == 2 and store.index["camera"].max() == 8
    # Stored at the 256x128 torchreid and fast-reid resize the original boxes to.
    assert (store.height, store.width) == (256, 128) and stamp.config["size"] == [256, 128]
    assert stamp.counts["skipped"] == 0 and stamp.config["kind"] == "dukemtmc_reid"
    assert stamp.counts["jpeg_verbatim"] == 1 and stamp.counts["lossless"] == 13
    verbatim = store.index["filename"].tolist().index("0004_c1_f0000700.jpg")
    assert abs(float(store.read("images", [verbatim]).mean()) - 200) <= 2


def test_an_unknown_camera_is_skipped_with_a_note_naming_the_file(tmp_path):
    source = _duke(tmp_path / "duke")
    _image(source / "query" / "0005_c9_f0002200.jpg", 0, (30, 80))
    candidates, skipped = scan_folders(source, FOLDER_DATASETS["dukemtmc_reid"])
    assert skipped == [
        "0005_c9_f0002200.jpg: camera 9 is out of range (DukeMTMC-reID cameras are 1-8)"
    ]
    assert len(candidates) == 14
    cuhk03 = _cuhk03(tmp_path / "cuhk03")
    _image(cuhk03 / "detected" / "query" / "0010_c3_4.png", 0, (30, 80))
    _, skipped = scan_folders(cuhk03, CUHK03_NP_DETECTED)
    assert skipped == [
        "0010_c3_4.png: camera 3 is out of range (CUHK03-NP (detected) cameras are 1-2)"
    ]


def test_a_dataset_given_as_another_kind_says_why_nothing_was_found(tmp_path):
    source = _duke(tmp_path / "duke")
    with pytest.raises(DatasetLayoutError, match=r"no images found \(14 skipped, e\.g\. 0001_c1_f"):
        ingest(source, str(tmp_path / "store"), kind="market1501")


@pytest.mark.parametrize(("setting", "train"), [("detected", 4), ("labeled", 5)])
def test_cuhk03_setting_picks_its_folder(tmp_path, setting, train):
    source = _cuhk03(tmp_path / "cuhk03-np")
    stamp = ingest(source, str(tmp_path / "store"), kind=f"cuhk03_{setting}")
    store = open_store(str(tmp_path / "store"))
    assert _counts(store) == {"train": (train, 2), "query": (4, 2), "gallery": (4, 2)}
    assert set(store.index["camera"]) == {1, 2}
    assert stamp.counts["lossless"] == store.n_images, "PNGs are never kept verbatim"


def test_cuhk03_without_the_setting_folder_names_it(tmp_path):
    source = _cuhk03(tmp_path / "cuhk03-np")
    for path in sorted((source / "labeled").rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    (source / "labeled").rmdir()
    with pytest.raises(
        DatasetLayoutError, match=r"is not a CUHK03-NP \(labeled\) folder: missing labeled"
    ):
        ingest(source, str(tmp_path / "store"), kind="cuhk03_labeled")


def test_stretch_policy_fills_the_store_size_without_padding(tmp_path):
    """A wide image, top half red, bottom half blue, becomes 256x128 by a bicubic stretch
    (torchreid / fast-reid): no padding band, the halves stay halves, and the pixels equal
    PIL's own bicubic resize of the file."""
    source = _cuhk03(tmp_path / "cuhk03-np")
    wide = np.zeros((100, 200, 3), np.uint8)
    wide[:50, :, 0] = 255
    wide[50:, :, 2] = 255
    path = source / "detected" / "bounding_box_train" / "0003_c1_3.png"
    Image.fromarray(wide).save(path)
    ingest(source, str(tmp_path / "store"), kind="cuhk03_detected")
    store = open_store(str(tmp_path / "store"))
    row = store.index["filename"].tolist().index("0003_c1_3.png")
    image = store.read("images", [row])[0]
    reference = np.asarray(Image.fromarray(wide).resize((128, 256), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(image, reference)
    assert (image[:120, :, 0] > 250).all() and (image[:120, :, 2] < 5).all()
    assert (image[136:, :, 2] > 250).all() and (image[136:, :, 0] < 5).all()


def test_msmt17_ingest_splits_ids_and_cameras(tmp_path):
    source = _msmt17(tmp_path / "MSMT17_V1")
    _image(source / "test" / "0002" / "0002_001_03_0303noon_0051_0.jpg", 9, (40, 90))  # unlisted
    stamp = ingest(source, str(tmp_path / "store"), kind="msmt17", with_val=True)
    store = open_store(str(tmp_path / "store"), mode="r+")
    assert _counts(store) == {"train": (6, 3), "query": (2, 2), "gallery": (5, 3)}
    assert stamp.config["with_val"] is True
    assert stamp.report["skipped"] == [
        "test/0002/0002_001_03_0303noon_0051_0.jpg: in no list (list_train.txt, list_val.txt, "
        "list_query.txt, list_gallery.txt)"
    ]
    index = store.index.set_index("filename")
    # Labels 0-2 in both folders: training ids 1-3, test ids 4-6, never 0 (a distractor).
    assert index.loc["train/0000/0000_000_01_0303morning_0015_0.jpg"].tolist()[:2] == [1, 1]
    assert index.loc["train/0002/0002_001_09_0113afternoon_0120_2.jpg", "split"] == "train"
    assert index.loc["test/0000/0000_000_02_0303morning_0031_0.jpg"].tolist()[:2] == [4, 2]
    assert index.loc["test/0002/0002_000_10_0303noon_0050_0.jpg"].tolist()[:2] == [6, 10]
    assert store.index["camera"].max() == 15
    train_ids = set(store.index[store.index["split"] == "train"]["person_id"])
    assert train_ids.isdisjoint(store.index[store.index["split"] != "train"]["person_id"])
    sample_pairs(store, PairsConfig(train_pairs=None, test_pairs=None, skip_empty_masks=False))
    pairs = store.read_table("pairs_train")
    person_ids = store.index["person_id"].to_numpy()
    assert len(pairs) == 3 * 2  # the ordered pairs of each training identity's 2 images
    assert (person_ids[pairs["source"]] == person_ids[pairs["target"]]).all()


def test_msmt17_trains_on_list_train_unless_with_val(tmp_path):
    source = _msmt17(tmp_path / "MSMT17_V1")
    stamp = ingest(source, str(tmp_path / "store"), kind="msmt17")
    store = open_store(str(tmp_path / "store"))
    assert _counts(store) == {"train": (5, 3), "query": (2, 2), "gallery": (5, 3)}
    assert "train/0002/0002_001_09_0113afternoon_0120_2.jpg" not in set(store.index["filename"])
    assert stamp.report["skipped"] == [] and stamp.config["with_val"] is False
    # The ids are the same either way: test identities start after the training labels.
    with_val = ingest(source, str(tmp_path / "with_val"), kind="msmt17", with_val=True)
    both = open_store(str(tmp_path / "with_val")).index.set_index("filename")
    assert (
        both.loc[store.index["filename"], "person_id"].tolist() == store.index["person_id"].tolist()
    )
    assert with_val.counts["train_images"] == 6


def test_image_size_overrides_the_kinds_size(tmp_path):
    ingest(_duke(tmp_path / "duke"), str(tmp_path / "store"), kind="dukemtmc_reid", size=(64, 32))
    assert (
        open_store(str(tmp_path / "store")).height,
        open_store(str(tmp_path / "store")).width,
    ) == (64, 32)


def test_msmt17_ids_round_trip():
    labels, test = np.array([0, 1040, 0, 3059]), np.array([False, False, True, True])
    person_ids = msmt17_person_ids(labels, test, train_ids=1041)
    assert person_ids.tolist() == [1, 1041, 1042, 4101]
    np.testing.assert_array_equal(msmt17_labels(person_ids, test, train_ids=1041), labels)


def test_msmt17_missing_list_file_is_named(tmp_path):
    source = _msmt17(tmp_path / "MSMT17_V1")
    (source / "list_val.txt").unlink()
    with pytest.raises(
        DatasetLayoutError, match=r"MSMT17_V1 is not an MSMT17 \(V1\) folder: missing list_val\.txt"
    ):
        scan_msmt17(source)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (
            "0001/0001_002_16_0302noon_0011_0.jpg 1",
            r"0001_002_16_0302noon_0011_0\.jpg: camera 16 is out of range "
            r"\(MSMT17 cameras are 1-15\)",
        ),
        ("0001/0001_002_00_0302noon_0011_0.jpg 1", "camera 0 is out of range"),
        ("0001/photo.jpg 1", r"photo\.jpg: not an MSMT17 image name"),
        ("0001/0001_002_03_0302noon_0011_0.jpg", "is not 'path label'"),
        (
            "0001/0001_002_03_0302noon_0011_0.jpg 1",
            r"names 0001/0001_002_03_0302noon_0011_0\.jpg, which is not in .*test",
        ),
        (
            "0000/0000_000_02_0303morning_0031_0.jpg 0",
            r"^test/0000/0000_000_02_0303morning_0031_0\.jpg is listed twice: "
            r"list_query\.txt line 1 and list_query\.txt line 4",
        ),
    ],
)
def test_msmt17_bad_list_line_names_the_list_the_line_and_the_file(tmp_path, line, problem):
    source = _msmt17(tmp_path / "MSMT17_V1")
    with (source / "list_query.txt").open("a") as listed:
        listed.write(f"\n{line}\n")  # after a blank line: line 4 of the file
    with pytest.raises(DatasetLayoutError, match=problem) as raised:
        scan_msmt17(source)
    message = str(raised.value)
    assert "\n" not in message
    assert "list_query.txt" in message and "line 4" in message


@pytest.mark.parametrize("dataset", list(FOLDER_DATASETS.values()), ids=list(FOLDER_DATASETS))
def test_generated_names_parse_in_the_datasets_own_pattern(dataset):
    camera = dataset.cameras.stop - 1
    name = dataset.generated_file_name(12, camera, 123_456, 3)
    match = dataset.match(name)
    assert (int(match["pid"]), int(match["cam"])) == (12, camera)
    with pytest.raises(ValueError, match="6-digit"):
        dataset.generated_file_name(12, camera, 1_000_000, 1)


MARKET_LAYOUT = ["bounding_box_train", "bounding_box_test", "query"]
LAYOUTS = {
    "dukemtmc_reid": (_duke, MARKET_LAYOUT),
    "cuhk03_labeled": (_cuhk03, ["labeled"]),
    "msmt17": (_msmt17, ["train", "test", *MSMT17_LINES]),
}


@pytest.mark.parametrize("kind", list(LAYOUTS))
def test_export_writes_the_datasets_layout_and_ingests_back_the_same(tmp_path, kind):
    make, top_level = LAYOUTS[kind]
    ingest(make(tmp_path / "source"), str(tmp_path / "store"), kind=kind)
    store = open_store(str(tmp_path / "store"))
    out = tmp_path / "exported"
    assert export_market(store, out) == store.n_images
    assert sorted(p.name for p in out.iterdir()) == sorted([*top_level, MANIFEST])
    if kind == "cuhk03_labeled":
        assert sorted(p.name for p in (out / "labeled").iterdir()) == sorted(MARKET_LAYOUT)
    ingest(out, str(tmp_path / "again"), kind=kind)
    again = open_store(str(tmp_path / "again"))
    assert _counts(again) == _counts(store)
    assert again.index.equals(store.index)
    if kind == "cuhk03_labeled":  # PNG both ways: the pixels too
        np.testing.assert_array_equal(again.read("images"), store.read("images"))


@pytest.mark.parametrize("kind", ["dukemtmc_reid", "msmt17"])
def test_generated_images_export_in_the_datasets_naming_and_ingest_back(
    tmp_path, kind, add_generated
):
    make, _ = LAYOUTS[kind]
    ingest(make(tmp_path / "source"), str(tmp_path / "store"), kind=kind)
    store = open_store(str(tmp_path / "store"), mode="r+")
    add_generated(store, 2)
    train = store.index[store.index["split"] == "train"]
    assert export_market(store, tmp_path / "exported", alpha=2) == store.n_images + len(train)
    stamp = ingest(tmp_path / "exported", str(tmp_path / "again"), kind=kind)
    assert stamp.counts["skipped"] == 0, stamp.report["skipped"]
    again = open_store(str(tmp_path / "again"))
    assert stamp.counts["train_images"] == 2 * len(train)
    generated = again.index[~again.index["filename"].isin(store.index["filename"])]
    assert len(generated) == len(train) and set(generated["split"]) == {"train"}
    # Each identity keeps its images, real and generated, with the same cameras.
    assert sorted(zip(generated["person_id"], generated["camera"], strict=True)) == sorted(
        zip(train["person_id"], train["camera"], strict=True)
    )
    if kind == "msmt17":
        assert (tmp_path / "exported" / "list_val.txt").read_text() == ""
        listed = (tmp_path / "exported" / "list_train.txt").read_text().splitlines()
        assert len(listed) == 2 * len(train)
        assert "0002/0002_000004_07_generated_01.jpg 2" in listed


def test_cli_ingests_cuhk03_labeled_and_names_a_missing_msmt17_list(tmp_path, capsys):
    source = _cuhk03(tmp_path / "cuhk03-np")
    store = tmp_path / "store"
    with pytest.raises(SystemExit) as exited:
        main(["ingest", "cuhk03", str(source), "--store", str(store), "--setting", "labeled"])
    assert exited.value.code in (0, None)
    assert "ingested 13 images" in capsys.readouterr().out
    msmt17 = _msmt17(tmp_path / "MSMT17_V1")
    (msmt17 / "list_gallery.txt").unlink()
    with pytest.raises(SystemExit) as exited:
        main(["ingest", "msmt17", str(msmt17), "--store", str(tmp_path / "other")])
    err = capsys.readouterr().err.strip()
    assert exited.value.code == 1
    assert err.startswith("error: ") and "\n" not in err
    assert "not an MSMT17 (V1) folder: missing list_gallery.txt" in err


def test_cli_image_size_with_val_and_count_warnings(tmp_path, capsys):
    def run(*args):
        with pytest.raises(SystemExit) as exited:
            main([str(arg) for arg in args])
        out, err = capsys.readouterr()
        return exited.value.code or 0, out, err

    msmt17 = _msmt17(tmp_path / "MSMT17_V1")
    store = tmp_path / "msmt17"
    code, out, err = run("ingest", "msmt17", msmt17, "--store", store, "--with-val")
    assert code == 0 and "ingested 13 images" in out
    # One warning line per split that differs from MSMT17's official counts (with list_val).
    assert err.splitlines()[-3:] == [
        "warning: MSMT17 train: 6 images, the official count is 32,621 (a partial or altered "
        "copy?)",
        "warning: MSMT17 query: 2 images, the official count is 11,659 (a partial or altered "
        "copy?)",
        "warning: MSMT17 gallery: 5 images, the official count is 82,161 (a partial or altered "
        "copy?)",
    ]
    assert open_store(str(store)).stamp("ingest").report["count_differences"] == [
        line.removeprefix("warning: ") for line in err.splitlines()[-3:]
    ]
    duke = _duke(tmp_path / "duke")
    code, _, err = run(
        "ingest", "dukemtmc-reid", duke, "--store", tmp_path / "d", "--image-size", "384x192"
    )
    assert code == 0, err
    assert (open_store(str(tmp_path / "d")).height, open_store(str(tmp_path / "d")).width) == (
        384,
        192,
    )
    code, _, err = run(
        "ingest", "dukemtmc-reid", duke, "--store", tmp_path / "e", "--image-size", "256"
    )
    assert code == 2 and "'256' is not HEIGHTxWIDTH in pixels" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "e").exists()
