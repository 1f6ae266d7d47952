"""The DAG on a 2-worker local Dask cluster, GPU stages placed through Dask resources.

The run uses thread workers (``dask_processes: false``): process workers each import torch and
the pipeline (about 20 s on 2 cores) and test nothing more about the flow.
"""

from __future__ import annotations

from flows.config import load_params
from flows.dag import configured_flow, run_from_config


def test_dask_runner_is_configured_from_params(tmp_path, tiny_params):
    params = load_params(
        tiny_params(tmp_path, runner={"kind": "dask", "dask_workers": 2, "gpu_resources": True})
    )
    runner = configured_flow(params).task_runner
    assert type(runner).__name__ == "DaskTaskRunner"
    assert runner.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "resources": {"GPU": 1},
    }


def test_segmentation_stages_run_on_dask_workers(prefect_server, tmp_path, tiny_params):
    params = tiny_params(
        tmp_path,
        stages=["ingest", "masks", "parsing", "pairs"],
        runner={"kind": "dask", "dask_workers": 2, "gpu_resources": True, "dask_processes": False},
    )
    summary = run_from_config(params)
    assert {stage: summary[stage]["status"] for stage in params["stages"]} == {
        "ingest": "ran",
        "masks": "ran",
        "parsing": "ran",
        "pairs": "ran",
    }
    again = run_from_config(params)
    assert {stage: again[stage]["status"] for stage in params["stages"]} == {
        stage: "cached" for stage in params["stages"]
    }
