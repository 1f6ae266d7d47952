"""``augment-market doctor``: weight files the test writes (present, damaged, missing), the
store's state, and the exit status with one line per missing item."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import pipeline.masks
from augment_market.cli import main
from augment_market.doctor import PAPER_WEIGHTS, check_weights, examine
from foundation.weights import sha256_of
from pipeline.schp import SCHP_LIP
from san_model.checkpoint import VGG19_WEIGHTS


@pytest.fixture
def weights(tmp_path, monkeypatch):
    """An empty weights folder and torch cache, searched instead of the user's."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("AUGMENT_MARKET_WEIGHTS", str(folder))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("AUGMENT_MARKET_DEBUG", raising=False)
    return folder


def doctor(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exited:
        main(["doctor", *map(str, args)])
    out, err = capsys.readouterr()
    return exited.value.code, out, err


def row(out: str, item: str) -> str:
    """The table row of ``item``."""
    rows = [line for line in out.splitlines() if line.split("  ")[0].strip() == item]
    assert len(rows) == 1, out
    return rows[0]


def test_present_damaged_and_missing_weight_files(capsys, weights, small_store, monkeypatch):
    torch.save({"conv.weight": torch.zeros(4, 3)}, weights / SCHP_LIP.file.file_name)
    mask_file = weights / pipeline.masks.MASKRCNN_COCO.file_name
    torch.save({"backbone.weight": torch.ones(8)}, mask_file)
    # The published prefix of this file's name is replaced by the written file's own: present.
    monkeypatch.setattr(
        pipeline.masks,
        "MASKRCNN_COCO",
        dataclasses.replace(pipeline.masks.MASKRCNN_COCO, sha256_prefix=sha256_of(mask_file)[:8]),
    )
    (weights / VGG19_WEIGHTS.file_name).write_bytes(b"not the published file")  # damaged

    code, out, err = doctor(capsys, small_store.url)

    assert code == 1
    assert "Traceback" not in out + err
    assert " ok " in row(out, SCHP_LIP.file.file_name)
    assert "no published sha256; loads as tensors" in row(out, SCHP_LIP.file.file_name)
    assert "matches" in row(out, mask_file.name) and " ok " in row(out, mask_file.name)
    assert " damaged " in row(out, VGG19_WEIGHTS.file_name)
    assert " missing " in row(out, "resnet50-0676ba61.pth")
    assert " optional " in row(out, "resnet18-f37072fd.pth")
    lines = err.strip().splitlines()
    assert all(line.startswith(("missing: ", "damaged: ")) for line in lines), err
    damaged = [line for line in lines if line.startswith("damaged: ")]
    assert damaged == [
        f"damaged: {VGG19_WEIGHTS.file_name} at {weights / VGG19_WEIGHTS.file_name}: delete it "
        f"and run `make weights` (or get it from {VGG19_WEIGHTS.url})"
    ]
    missing = " ".join(lines)
    for name in set(PAPER_WEIGHTS) - {SCHP_LIP.file.file_name, mask_file.name}:
        if name != VGG19_WEIGHTS.file_name:
            assert f"missing: {name}: run `make weights`" in missing
    assert SCHP_LIP.file.file_name not in missing and mask_file.name not in missing
    assert "resnet18" not in missing  # optional files are no problem
    assert f"format augment-market/2, {small_store.n_images} images" in row(out, "store")
    assert "ingest" in row(out, "finished stages")


def test_a_truncated_file_without_published_hash_is_damaged(weights):
    path = weights / SCHP_LIP.file.file_name
    torch.save({"conv.weight": torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:500])
    finding = check_weights(SCHP_LIP.file, required=True)
    assert finding.status == "damaged" and finding.is_problem
    assert str(path) in finding.detail and "cannot be read" in finding.detail


def test_a_store_that_does_not_open_is_one_missing_line(capsys, weights, tmp_path):
    code, _, err = doctor(capsys, tmp_path / "nowhere.zarr")
    assert code == 1
    store_lines = [line for line in err.splitlines() if "nowhere.zarr" in line]
    assert len(store_lines) == 1 and store_lines[0].startswith("missing: store ")


def test_nothing_but_the_listed_files_is_checked_and_nothing_written(weights, small_store):
    before = sorted(p.name for p in weights.parent.rglob("*"))
    findings = examine(small_store.url, weights=[VGG19_WEIGHTS])
    items = [finding.item for finding in findings]
    assert VGG19_WEIGHTS.file_name in items and SCHP_LIP.file.file_name not in items
    assert items[:3] == ["Python", "memory", "disk"]
    assert sorted(p.name for p in weights.parent.rglob("*")) == before  # no download
