"""The dataset registry is the one list of dataset kinds; the rest is derived from it."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flows.config import DatasetSettings
from pipeline.datasets import (
    DATASETS,
    FOLDER_DATASETS,
    dataset_names,
    dataset_title,
    get_dataset,
)


def test_the_flow_settings_offer_the_registry_kinds():
    schema = DatasetSettings.model_json_schema()["properties"]["kind"]
    assert schema["enum"] == list(dataset_names())
    assert schema["default"] == dataset_names()[0] == "market1501"
    for name in dataset_names():
        assert DatasetSettings(source="x", kind=name).kind == name
    with pytest.raises(ValidationError, match="did you mean 'msmt17'"):
        DatasetSettings(source="x", kind="msmt-17")


def test_each_kind_declares_itself_once():
    assert dataset_names() == (
        "market1501",
        "deepfashion",
        "dukemtmc_reid",
        "msmt17",
        "cuhk03_detected",
        "cuhk03_labeled",
    )
    for name, dataset in DATASETS.items():
        assert dataset.name == name and get_dataset(name) is dataset
        assert dataset_title(name) == dataset.title
        assert set(dataset.official_counts) == {"train", "query", "gallery"}
        assert dataset.help and dataset.source_help and dataset.command
    assert set(FOLDER_DATASETS) == {
        "market1501",
        "dukemtmc_reid",
        "cuhk03_detected",
        "cuhk03_labeled",
    }
    cuhk03 = {d.setting: d.name for d in DATASETS.values() if d.command == "cuhk03"}
    assert cuhk03 == {"detected": "cuhk03_detected", "labeled": "cuhk03_labeled"}
    assert [d.name for d in DATASETS.values() if d.with_val_help] == ["msmt17"]
    assert dataset_title("custom") == "a custom dataset"


def test_an_unknown_kind_names_the_closest_one():
    with pytest.raises(
        ValueError, match=r"unknown dataset kind 'market' \(did you mean 'market1501'"
    ):
        get_dataset("market")
    with pytest.raises(ValueError, match="one of market1501, deepfashion, dukemtmc_reid"):
        get_dataset("imagenet")
