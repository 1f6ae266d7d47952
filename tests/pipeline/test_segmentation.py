"""Masks and parsing stages: a rerun that fails its checks leaves the finished stage as it was."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from foundation.weights import UnreadableWeightsError
from pipeline.masks import compute_masks
from pipeline.segmentation import ProvidedAnnotationError, import_provided
from tests.annotations import write_pngs


def test_a_bad_provided_png_writes_nothing(small_store, tmp_path, snapshot):
    paths = write_pngs(small_store, tmp_path / "annotations" / "masks", "masks")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(paths[-1])  # the last block's image
    paths[-2].unlink()
    before = snapshot(small_store)
    with pytest.raises(ProvidedAnnotationError) as raised:
        import_provided(small_store, tmp_path / "annotations", kind="masks")
    message = str(raised.value)
    assert message.startswith(f"provided masks: {paths[-2]} does not exist")
    assert f"2 of {small_store.n_images} files have problems; also {paths[-1].name}" in message
    assert "\n" not in message
    assert snapshot(small_store) == before


def test_a_provided_label_above_19_writes_nothing(small_store, tmp_path, snapshot):
    paths = write_pngs(small_store, tmp_path / "annotations" / "parsing", "parsing")
    labels = np.asarray(Image.open(paths[-1])).copy()
    labels[0, 0] = 25
    Image.fromarray(labels).save(paths[-1])
    before = snapshot(small_store)
    with pytest.raises(ProvidedAnnotationError, match=f"{paths[-1].name} has label 25"):
        import_provided(small_store, tmp_path / "annotations", kind="parsing")
    assert snapshot(small_store) == before


def test_truncated_weights_are_refused_before_the_stage_changes(small_store, tmp_path, snapshot):
    weights = tmp_path / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    weights.write_bytes(b"PK\x03\x04" + b"\0" * 100)  # the start of a zip, cut off
    before = snapshot(small_store)
    with pytest.raises(UnreadableWeightsError, match=f"weights file {weights} cannot be read"):
        compute_masks(small_store, weights=weights)
    assert snapshot(small_store) == before


def test_a_missing_provided_folder_is_named(small_store, tmp_path):
    with pytest.raises(ProvidedAnnotationError, match="folder .*annotations/parsing does not"):
        import_provided(small_store, tmp_path / "annotations", kind="parsing")
