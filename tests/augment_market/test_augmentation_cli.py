"""The augmentation-source and comparison commands as a user types them (issue 19's names)."""

from __future__ import annotations

import json

import pandas as pd

from tests.augment_market.commands import cli


def error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


RECIPE = ("--models", "ide", "--arch", "resnet18", "--no-pretrained", "--epochs", "1")
RECIPE += ("--batch-size", "4", "--metrics", "euclidean")


def test_sources_write_pairs_and_compare(capsys, snapshot, small_store, tmp_path):
    store = small_store.url
    code, out, err = cli(capsys, "synthesize", store, "--source", "copies")
    assert code == 0, err
    assert "set copies: 12 images (copies, alpha 2) in generated/copies-alpha2" in out
    pairs = tmp_path / "pairs.csv"
    code, out, _ = cli(capsys, "synthesize", store, "--write-pairs", pairs)
    assert code == 0 and "wrote 12 pairs" in out
    assert list(pd.read_csv(pairs).columns) == ["from", "to"]
    (tmp_path / "gfla").mkdir()
    before = snapshot(small_store)
    code, _, err = cli(
        capsys, "synthesize", store, "--source", "folder", "--folder", tmp_path / "gfla"
    )
    assert code == 1 and "12 of 12 listed pairs have no image (first: 0001_" in error_line(err)
    assert snapshot(small_store) == before

    code, _, err = cli(capsys, "reid", "compare", store, "--out", tmp_path / "c", "--seeds", "1")
    assert code == 1 and "--seeds 1 gives no interval" in error_line(err)
    code, _, err = cli(
        capsys, "reid", "compare", store, "--out", tmp_path / "c", "--sets", "original,patn"
    )
    assert code == 1 and "has no set 'patn'" in error_line(err)
    code, _, err = cli(
        capsys,
        "reid",
        "compare",
        store,
        "--out",
        tmp_path / "c",
        "--alpha",
        "3",
        "--sets",
        "original,copies",
    )
    assert code == 1 and "set 'copies' at alpha 2, not alpha 3" in error_line(err)

    out_dir = tmp_path / "comparison"
    code, out, err = cli(
        capsys,
        "reid",
        "compare",
        store,
        "--out",
        out_dir,
        "--sets",
        "original,copies",
        "--seeds",
        "2",
        *RECIPE,
    )
    assert code == 0, err
    rows = json.loads((out_dir / "comparison.json").read_text())["rows"]
    assert sorted((r["set"], r["seed"]) for r in rows) == [
        ("copies", 0),
        ("copies", 1),
        ("original", 0),
        ("original", 1),
    ]
    assert {r["steps"] for r in rows} == {3} and {r["images"] for r in rows} == {12, 24}
    page = (out_dir / "comparison.md").read_text()
    assert "## Verdicts (against copies, mAP)" in page and "| ide | euclidean | copies |" in page
    assert (out_dir / "cmc.png").is_file()

    code, out, err = cli(
        capsys,
        "reid",
        "train",
        store,
        "--out",
        tmp_path / "one",
        "--set",
        "copies",
        "--arch",
        "resnet18",
        "--no-pretrained",
        "--epochs",
        "1",
        "--batch-size",
        "4",
        "--metrics",
        "euclidean",
    )
    assert code == 0, err
    assert small_store.stamp("reid_ide_copies_s0").report["set"] == "copies"
