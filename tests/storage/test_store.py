"""Store round trips, validation, tables, generated images, summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from storage import (
    StoreLocationError,
    StoreNotFoundError,
    StoreValidationError,
    create_store,
    open_store,
)


def _index(n: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "person_id": np.arange(n) // 2 + 1,
            "camera": np.arange(n) % 6 + 1,
            "split": ["train"] * (n // 2) + ["gallery"] * (n - n // 2 - 1) + ["query"],
            "filename": [f"{i:04d}.jpg" for i in range(n)],
        }
    )


def test_round_trip_all_arrays(tmp_path):
    rng = np.random.default_rng(0)
    store = create_store(str(tmp_path / "s"), index=_index(7), height=6, width=4, block_size=3)
    assert store.n_blocks == 3
    images = rng.integers(0, 256, (7, 6, 4, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (7, 6, 4), dtype=np.uint8)
    parsing = rng.integers(0, 20, (7, 6, 4), dtype=np.uint8)
    for block in range(store.n_blocks):
        rows = store.block_slice(block)
        store.write("images", block, images[rows])
        store.write("masks", block, masks[rows])
        store.write("parsing", block, parsing[rows])
    reopened = open_store(str(tmp_path / "s"))
    loaded = reopened.load_in_memory()
    np.testing.assert_array_equal(loaded["images"], images)
    np.testing.assert_array_equal(loaded["masks"], masks)
    np.testing.assert_array_equal(loaded["parsing"], parsing)
    np.testing.assert_array_equal(reopened.read("images", [6, 0, 3]), images[[6, 0, 3]])
    pd.testing.assert_frame_equal(reopened.index, _index(7).astype(reopened.index.dtypes))
    rows = np.array([1, 5])
    np.testing.assert_array_equal(
        reopened.load_in_memory(("masks",), rows=rows)["masks"], masks[rows]
    )


def test_validation_names_the_image(tmp_path):
    store = create_store(str(tmp_path / "s"), index=_index(4), height=2, width=2, block_size=2)
    bad = np.zeros((2, 2, 2), np.uint8)
    bad[1, 0, 0] = 25
    with pytest.raises(StoreValidationError, match="0001.jpg has value 25"):
        store.write("parsing", 0, bad)
    with pytest.raises(StoreValidationError, match="value 2"):
        store.write("masks", 1, np.full((2, 2, 2), 2, np.uint8))
    with pytest.raises(StoreValidationError, match="shape"):
        store.write("images", 0, np.zeros((2, 3, 2, 3), np.uint8))
    with pytest.raises(StoreValidationError, match="dtype"):
        store.write("images", 0, np.zeros((2, 2, 2, 3), np.float32))
    assert open_store(str(tmp_path / "s")).read("parsing").max() == 0


def test_index_validation(tmp_path):
    index = _index(4)
    index.loc[0, "split"] = "validation"
    with pytest.raises(StoreValidationError, match="unknown split"):
        create_store(str(tmp_path / "a"), index=index, height=2, width=2)
    index = _index(4)
    index.loc[1, "filename"] = index.loc[0, "filename"]
    with pytest.raises(StoreValidationError, match="duplicate"):
        create_store(str(tmp_path / "b"), index=index, height=2, width=2)


def test_existing_store_is_not_overwritten_silently(tmp_path):
    create_store(str(tmp_path / "s"), index=_index(4), height=2, width=2)
    with pytest.raises(FileExistsError):
        create_store(str(tmp_path / "s"), index=_index(4), height=2, width=2)
    with pytest.raises(FileNotFoundError, match="no augment-market store"):
        open_store(str(tmp_path / "missing"))


def test_read_only_store_refuses_writes(tmp_path):
    create_store(str(tmp_path / "s"), index=_index(4), height=2, width=2, block_size=2)
    with pytest.raises(PermissionError):
        open_store(str(tmp_path / "s")).write("masks", 0, np.zeros((2, 2, 2), np.uint8))


def test_tables_and_generated(tmp_path):
    store = create_store(str(tmp_path / "s"), index=_index(4), height=2, width=2, block_size=2)
    pairs = pd.DataFrame({"source": [0, 1], "target": [1, 0]})
    store.write_table("pairs_train", pairs)
    pd.testing.assert_frame_equal(store.read_table("pairs_train"), pairs)
    with pytest.raises(FileNotFoundError, match="pairs_test"):
        store.read_table("pairs_test")
    store.create_generated("run1", 3)
    store.write("generated/run1/images", 1, np.ones((1, 2, 2, 3), np.uint8))
    assert store.generated_runs() == {"run1": 3}
    assert store.read("generated/run1/images")[2].min() == 1


def test_summary_counts(tmp_path):
    index = _index(8)
    index.loc[5, "person_id"] = -1
    store = create_store(str(tmp_path / "s"), index=index, height=2, width=2)
    summary = store.summary()
    assert summary.images_per_split == {"train": 4, "gallery": 3, "query": 1}
    assert summary.ids_per_split["train"] == 2
    assert summary.size_bytes > 0


def test_fsspec_memory_url():
    url = "memory://augment-market-test/store"
    store = create_store(url, index=_index(4), height=2, width=2, block_size=2, overwrite=True)
    store.write("masks", 1, np.ones((2, 2, 2), np.uint8))
    with store.stage("masks", config={"x": 1}, n_blocks=1) as run:
        run.mark_done(0)
        run.finish(counts={"images": 4})
    reopened = open_store(url)
    assert reopened.read("masks").sum() == 8
    assert reopened.stamp("masks") is not None


def test_a_regular_file_is_no_store_and_is_said_once(tmp_path):
    path = tmp_path / "market.zarr"
    path.write_text("not a store")
    for call in (
        lambda: open_store(str(path)),
        lambda: create_store(str(path), index=_index(2), height=2, width=2),
    ):
        with pytest.raises(StoreLocationError, match="is a regular file") as raised:
            call()
        assert raised.value.__cause__ is None and raised.value.__context__ is None
    assert path.read_text() == "not a store"


def test_a_folder_of_other_files_is_never_emptied(tmp_path):
    folder = tmp_path / "documents"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(StoreNotFoundError, match="no augment-market store"):
        open_store(str(folder))
    for overwrite in (False, True):
        with pytest.raises(StoreLocationError, match="folder of other files"):
            create_store(str(folder), index=_index(2), height=2, width=2, overwrite=overwrite)
    assert (folder / "notes.txt").read_text() == "keep me"


def _jpeg_bytes(value: int, size=(6, 4)) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.full((*size, 3), value, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_jpegs_are_stored_verbatim_and_checked(tmp_path):
    import io

    from PIL import Image

    store = create_store(str(tmp_path / "s"), index=_index(3), height=6, width=4, block_size=2)
    files = [_jpeg_bytes(40), _jpeg_bytes(200)]
    store.write_encoded("images", 0, files)
    assert store.read_encoded("images", [1, 0]) == files[::-1]
    expected = [np.asarray(Image.open(io.BytesIO(f)).convert("RGB")) for f in files]
    np.testing.assert_array_equal(store.read("images", slice(0, 2)), np.stack(expected))
    assert store.read("images", [2]).max() == 0, "a row never written reads as zeros"
    with pytest.raises(StoreValidationError, match="0002.jpg: JPEG of 4x6, expected 6x4"):
        store.write_encoded("images", 1, [_jpeg_bytes(1, size=(4, 6))])
    with pytest.raises(StoreValidationError, match="expected 1 elements"):
        store.write_encoded("images", 1, files)
    with pytest.raises(StoreValidationError, match="unknown element encoding"):
        store.write_encoded("images", 1, [b"GIF89a"])


def test_reads_decode_only_the_rows_asked_for(tmp_path, monkeypatch):
    import storage.elements as module

    rng = np.random.default_rng(3)
    store = create_store(str(tmp_path / "s"), index=_index(9), height=6, width=4, block_size=4)
    parsing = rng.integers(0, 20, (9, 6, 4), dtype=np.uint8)
    for block in range(store.n_blocks):
        store.write("parsing", block, parsing[store.block_slice(block)])
    decoded = []
    original = module.decode_label_maps
    monkeypatch.setattr(
        module,
        "decode_label_maps",
        lambda elements, out: decoded.extend(elements) or original(elements, out),
    )
    rows = np.array([7, 1, 7, 4])
    np.testing.assert_array_equal(store.read("parsing", rows), parsing[rows])
    assert len(decoded) == 3, "repeated rows decode once"
    decoded.clear()
    loaded = store.load_in_memory(("parsing",), rows=np.array([8, 2]), threads=2)
    np.testing.assert_array_equal(loaded["parsing"], parsing[[8, 2]])
    assert len(decoded) == 2


def test_threaded_decode_equals_serial(tmp_path):
    rng = np.random.default_rng(4)
    n = 300  # above the size where reads use the thread pool
    store = create_store(str(tmp_path / "s"), index=_index(n), height=4, width=2, block_size=64)
    images = rng.integers(0, 256, (n, 4, 2, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (n, 4, 2), dtype=np.uint8)
    for block in range(store.n_blocks - 1):  # the last block never written: zeros
        store.write("images", block, images[store.block_slice(block)])
        store.write("masks", block, masks[store.block_slice(block)])
    last = store.block_slice(store.n_blocks - 1)
    images[last], masks[last] = 0, 0
    for threads in (1, 3):
        loaded = store.load_in_memory(("images", "masks"), threads=threads)
        np.testing.assert_array_equal(loaded["images"], images)
        np.testing.assert_array_equal(loaded["masks"], masks)


def test_row_reader_caches_encoded_chunks_within_its_budget(tmp_path):
    rng = np.random.default_rng(5)
    store = create_store(str(tmp_path / "s"), index=_index(10), height=6, width=4, block_size=2)
    images = rng.integers(0, 256, (10, 6, 4, 3), dtype=np.uint8)
    masks = rng.integers(0, 2, (10, 6, 4), dtype=np.uint8)
    for block in range(store.n_blocks):
        store.write("images", block, images[store.block_slice(block)])
        store.write("masks", block, masks[store.block_slice(block)])
    reader = store.reader(("images", "masks"), cache_bytes=1 << 20)
    for rows in ([9, 0, 0, 5], [3, 9]):
        batch = reader.read(rows)
        np.testing.assert_array_equal(batch["images"], images[rows])
        np.testing.assert_array_equal(batch["masks"], masks[rows])
    assert len(reader._chunks) == 8  # chunks 0, 1, 2, 4 of each array
    small = store.reader(("images",), cache_bytes=1)
    np.testing.assert_array_equal(small.read([1, 8, 4])["images"], images[[1, 8, 4]])
    assert len(small._chunks) == 1, "over budget: only the latest chunk stays"


def test_format_1_store_is_created_as_before_and_takes_no_encoded_images(tmp_path):
    rng = np.random.default_rng(6)
    store = create_store(
        str(tmp_path / "v1"), index=_index(5), height=6, width=4, block_size=4, format_version=1
    )
    images = rng.integers(0, 256, (5, 6, 4, 3), dtype=np.uint8)
    for block in range(store.n_blocks):
        store.write("images", block, images[store.block_slice(block)])
    store.create_generated("alpha2", 3)
    reopened = open_store(str(tmp_path / "v1"), mode="r+")
    assert reopened.format == "augment-market/1"
    np.testing.assert_array_equal(reopened.read("images"), images)
    assert [type(image) for image in reopened.iter_images()] == [np.ndarray] * 5
    assert reopened.read("generated/alpha2/images").shape == (3, 6, 4, 3)
    with pytest.raises(StoreValidationError, match="format-1 store .* take no encoded images"):
        reopened.write_encoded("images", 0, [b""] * 4)


def test_format_1_store_reads_and_writes(tmp_path):
    import shutil
    from pathlib import Path

    data = Path(__file__).parents[1] / "data"
    shutil.copytree(data / "store_v1", tmp_path / "v1")
    expected = np.load(data / "store_v1_expected.npz")
    store = open_store(str(tmp_path / "v1"), mode="r+")
    assert store.format == "augment-market/1"
    loaded = store.load_in_memory(rows=np.array([5, 0]))
    for name in ("images", "masks", "parsing"):
        np.testing.assert_array_equal(loaded[name], expected[name][[5, 0]])
    np.testing.assert_array_equal(store.read("generated/alpha2/images"), expected["generated"])
    assert store.reader(("masks",)).read([3])["masks"].shape == (1, 8, 4)
    with pytest.raises(StoreValidationError, match="decoded pixels"):
        store.read_encoded("images")
    store.write("masks", 1, np.ones((2, 8, 4), np.uint8))
    assert open_store(str(tmp_path / "v1")).read("masks", [4, 5]).min() == 1
    assert store.stamp("ingest") is not None and store.generated_runs() == {"alpha2": 4}
