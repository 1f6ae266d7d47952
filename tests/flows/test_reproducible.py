"""Same config, same numbers: the whole DAG twice, its four Re-ID trainings running side by side
as threads of one process each time, gives equal numbers everywhere."""

from __future__ import annotations

from typing import Any

from flows.dag import run_from_config
from storage import open_store


def numbers(store_url: str) -> dict[str, Any]:
    """Every measured number in a run's stamps (metrics, Re-ID results, counts)."""
    stamps = open_store(store_url).stamps()
    found: dict[str, Any] = {"counts": {name: stamp.counts for name, stamp in stamps.items()}}
    found["evaluate"] = stamps["evaluate"].report["metrics"]
    for name, stamp in stamps.items():
        if name.startswith("reid_"):
            found[name] = (stamp.report["results"], stamp.report["cmc"])
    return found


def test_two_runs_of_one_config_give_the_same_numbers(
    prefect_server: str, tiny_params: Any, tmp_path
) -> None:
    runs = []
    for name in ("first", "second"):
        params = tiny_params(tmp_path / name)
        params["reid"]["kinds"] = ["ide", "siamese"]  # six Re-ID stages at once
        run_from_config(params)
        runs.append(numbers(params["store_url"]))
    assert sorted(k for k in runs[0] if k.startswith("reid_")) == [
        "reid_ide_copies_s0",
        "reid_ide_generator_s0",
        "reid_ide_original_s0",
        "reid_siamese_copies_s0",
        "reid_siamese_generator_s0",
        "reid_siamese_original_s0",
    ]
    assert runs[0] == runs[1]
