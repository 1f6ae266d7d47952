"""A format-1 store (written by the format-1 code, tests/data/store_v1) migrates exactly."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from storage import MigrationError, migrate_store, open_store

DATA = Path(__file__).parents[1] / "data"


def test_migration_keeps_every_array_table_and_stamp(tmp_path):
    shutil.copytree(DATA / "store_v1", tmp_path / "v1")
    result = migrate_store(str(tmp_path / "v1"), str(tmp_path / "v2"))
    old, new = open_store(str(tmp_path / "v1")), open_store(str(tmp_path / "v2"))
    assert new.format == "augment-market/2"
    assert result.encoded == ["images", "masks", "parsing", "generated/alpha2/images"]
    assert "done/ingest" in result.copied and "generated/alpha2/source_index" in result.copied
    assert set(result.files) == {
        "stamps/ingest.json",
        "stamps/masks.json",
        "stamps/parsing.json",
        "stamps/synthesize.json",
        "tables/pairs_train.parquet",
    }
    expected = np.load(DATA / "store_v1_expected.npz")
    for name in ("images", "masks", "parsing"):
        np.testing.assert_array_equal(new.read(name), expected[name])
    np.testing.assert_array_equal(new.read("generated/alpha2/images"), expected["generated"])
    np.testing.assert_array_equal(
        new.read("generated/alpha2/target_index"), old.read("generated/alpha2/target_index")
    )
    assert new.group["generated/alpha2"].attrs["alpha"] == 2
    pd.testing.assert_frame_equal(new.index, old.index)
    pd.testing.assert_frame_equal(new.read_table("pairs_train"), old.read_table("pairs_train"))
    assert new.stamps() == old.stamps(), "finished stages stay finished, same digests"
    assert new.group["done/masks"].attrs.asdict() == old.group["done/masks"].attrs.asdict()
    np.testing.assert_array_equal(new.group["done/masks"][:], old.group["done/masks"][:])
    with pytest.raises(MigrationError, match="already in the current format"):
        migrate_store(str(tmp_path / "v2"), str(tmp_path / "v3"))
    with pytest.raises(FileExistsError):
        migrate_store(str(tmp_path / "v1"), str(tmp_path / "v2"))
