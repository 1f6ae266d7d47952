"""The stage cache policy without a server: keys, and the stale-record generations."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest

from flows import caching
from flows.caching import StageCachePolicy, folder_fingerprint, stage_key
from storage import StageStamp, create_store


def stamp(stage: str, count: int) -> StageStamp:
    return StageStamp(
        stage=stage, config_hash="c", config={}, inputs={}, version="v", counts={"images": count}
    )


class Records:
    """A stand-in for Prefect's result store: key -> recorded result."""

    def __init__(self, records: dict[str, Any]) -> None:
        self.records = records

    def exists(self, key: str) -> bool:
        return key in self.records

    def read(self, key: str) -> SimpleNamespace:
        return SimpleNamespace(result=self.records[key])


@pytest.fixture
def store_url(tmp_path: Path) -> str:
    index = pd.DataFrame(
        {
            "person_id": [1, 1],
            "camera": [1, 2],
            "split": ["train"] * 2,
            "filename": ["a.jpg", "b.jpg"],
        }
    )
    create_store(str(tmp_path / "store"), index=index, height=4, width=4, block_size=2)
    return str(tmp_path / "store")


def write_stamp(store_url: str, stage: str, count: int) -> StageStamp:
    from storage import open_store

    store = open_store(store_url, mode="r+")
    with store.stage(stage, config={"count": count}, n_blocks=1) as run:
        run.mark_done(0)
        return run.finish(counts={"images": count})


def key_of(policy: StageCachePolicy, records: dict[str, Any], inputs: dict[str, Any]) -> Any:
    return policy.compute_key(
        SimpleNamespace(result_store=Records(records)),  # type: ignore[arg-type]
        inputs,
        {},
    )


def test_key_covers_settings_inputs_and_version(monkeypatch):
    base = {
        "store_url": "s",
        "upstream": {"ingest": stamp("ingest", 1)},
        "batch_size": 4,
        "device": "cuda:0",
    }
    key = stage_key("masks", base)
    assert stage_key("masks", {**base, "device": "cuda:1"}) == key  # same device type
    assert stage_key("masks", {**base, "device": "cpu"}) != key
    assert stage_key("masks", {**base, "batch_size": 8}) != key
    assert stage_key("parsing", base) != key
    assert stage_key("masks", {**base, "upstream": {"ingest": stamp("ingest", 2)}}) != key
    assert stage_key("masks", {**base, "upstream": {"ingest": None}}) != key
    monkeypatch.setattr(caching, "__version__", "9.9.9")
    assert stage_key("masks", base) != key


def test_key_is_stable_for_equal_settings_in_another_form():
    upstream = {"ingest": stamp("ingest", 1)}
    a = stage_key(
        "pairs",
        {
            "store_url": "s",
            "upstream": upstream,
            "shape": (2, 3),
            "options": {"b": 1, "a": Path("/x")},
        },
    )
    b = stage_key(
        "pairs",
        {
            "store_url": "s",
            "upstream": dict(upstream),
            "shape": [2, 3],
            "options": {"a": "/x", "b": 1},
        },
    )
    assert a == b


def test_policy_needs_the_recorded_output_in_the_store(store_url):
    policy = StageCachePolicy(stage="masks")
    inputs = {"store_url": store_url, "upstream": {}, "batch_size": 4}
    base = stage_key("masks", inputs)
    # No record: the base key (the stage runs and records there).
    assert key_of(policy, {}, inputs) == base
    current = write_stamp(store_url, "masks", 3)
    # A record of the current output: a hit on the base key.
    assert key_of(policy, {base: current}, inputs) == base
    # The record's output is gone (another one is in the store): the next generation.
    other = dataclasses.replace(current, counts={"images": 4})
    generation = key_of(policy, {base: other}, inputs)
    assert generation not in (None, base)
    assert key_of(policy, {base: other, generation: current}, inputs) == generation
    # No stamp at all: the base record is stale too.
    from storage import open_store

    open_store(store_url, mode="r+").clear_stamp("masks")
    assert key_of(policy, {base: current}, inputs) not in (None, base)


def test_policy_gives_up_after_max_generations(store_url):
    policy = StageCachePolicy(stage="masks", max_generations=3)
    inputs = {"store_url": store_url, "upstream": {}}
    write_stamp(store_url, "masks", 3)
    stale = stamp("masks", 99)
    records: dict[str, Any] = {}
    for _ in range(3):
        key = key_of(policy, records, inputs)
        assert key is not None
        records[key] = stale
    assert key_of(policy, records, inputs) is None


def test_policy_without_a_store_is_a_miss(tmp_path):
    policy = StageCachePolicy(stage="ingest")
    inputs = {"store_url": str(tmp_path / "none"), "upstream": {}}
    assert key_of(policy, {}, inputs) == stage_key("ingest", inputs)


def test_folder_fingerprint_follows_files(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.jpg").write_bytes(b"1")
    first = folder_fingerprint(tmp_path)
    assert folder_fingerprint(tmp_path) == first
    (tmp_path / "a" / "y.jpg").write_bytes(b"2")
    second = folder_fingerprint(tmp_path)
    assert second != first
    os.utime(tmp_path / "a" / "y.jpg", ns=(1, 1))
    assert folder_fingerprint(tmp_path) != second
