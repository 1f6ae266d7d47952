"""Market-1501 export: never mixed with an earlier export, never deleting other files."""

from __future__ import annotations

import json

import pytest

from pipeline.export import MANIFEST, ExportDestinationError, export_market


def files_under(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_second_export_needs_overwrite_and_then_holds_only_itself(
    small_store, tmp_path, add_generated
):
    add_generated(small_store, 3)
    out = tmp_path / "market"
    assert export_market(small_store, out, alpha=3) == small_store.n_images + 2 * 12
    augmented = files_under(out)
    with pytest.raises(ExportDestinationError, match="is not empty .*--overwrite"):
        export_market(small_store, out)
    assert files_under(out) == augmented, "a refused export touches nothing"
    assert export_market(small_store, out, overwrite=True) == small_store.n_images
    plain = files_under(out)
    assert "generated.csv" not in plain
    assert not any("s9_" in name for name in plain), "no generated image is left behind"
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["complete"] and manifest["alpha"] is None
    assert sorted(manifest["files"]) == [name for name in plain if name != MANIFEST]


def test_overwrite_never_deletes_files_no_export_wrote(small_store, tmp_path):
    out = tmp_path / "market"
    (out / "bounding_box_train").mkdir(parents=True)
    (out / "bounding_box_train" / "mine.jpg").write_bytes(b"not ours")
    with pytest.raises(ExportDestinationError, match=f"no readable {MANIFEST}"):
        export_market(small_store, out, overwrite=True)
    export_market(small_store, tmp_path / "clean")
    (tmp_path / "clean" / "query" / "mine.jpg").write_bytes(b"not ours")
    with pytest.raises(ExportDestinationError, match="1 files its earlier export did not write"):
        export_market(small_store, tmp_path / "clean", overwrite=True)
    assert (out / "bounding_box_train" / "mine.jpg").read_bytes() == b"not ours"
    assert (tmp_path / "clean" / "query" / "mine.jpg").read_bytes() == b"not ours"


def test_ingested_jpegs_export_byte_for_byte(real_market, tmp_path):
    from pipeline.ingest import ingest
    from storage import open_store

    ingest(real_market, str(tmp_path / "store"))
    out = tmp_path / "exported"
    assert export_market(open_store(str(tmp_path / "store")), out) == 46
    for folder in ("bounding_box_train", "bounding_box_test", "query"):
        sources = sorted(p for p in (real_market / folder).iterdir() if p.name != "Thumbs.db")
        assert sorted(p.name for p in (out / folder).iterdir()) == [p.name for p in sources]
        for path in sources:
            assert (out / folder / path.name).read_bytes() == path.read_bytes()
