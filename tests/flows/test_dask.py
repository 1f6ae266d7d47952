"""The DAG on a 2-worker local Dask cluster: GPU stages placed through Dask resources, the
blocks of masks, parsing and synthesis fanned out over the workers. The flow itself starts the
cluster from its ``runner`` parameter, so deployments honour it too (tests/flows/test_deploy.py).

The run uses thread workers (``dask_processes: false``): process workers each import torch and
the pipeline (about 20 s on 2 cores) and test nothing more about the flow.
"""

from __future__ import annotations

from flows.config import load_params
from flows.dag import run_from_config
from flows.dask_runner import dask_task_runner
from storage import open_store


def test_dask_runner_is_configured_from_params(tmp_path, tiny_params):
    params = load_params(
        tiny_params(tmp_path, runner={"kind": "dask", "dask_workers": 2, "gpu_resources": True})
    )
    runner = dask_task_runner(params)
    assert type(runner).__name__ == "DaskTaskRunner"
    assert runner.cluster_kwargs == {
        "n_workers": 2,
        "threads_per_worker": 1,
        "processes": True,
        "resources": {"GPU": 1},
    }


def test_block_stages_fan_out_over_dask_workers(prefect_server, tmp_path, tiny_params):
    stages = ["ingest", "masks", "parsing", "pairs", "generator", "synthesize"]
    runner = {
        "kind": "dask",
        "dask_workers": 2,
        "gpu_resources": True,
        "dask_processes": False,
        "blocks_per_task": 1,
    }
    params = tiny_params(tmp_path, stages=stages, runner=runner)
    summary = run_from_config(params)
    assert {stage: summary[stage]["status"] for stage in stages} == dict.fromkeys(stages, "ran")
    store = open_store(params["store_url"])
    for stage in ("masks", "parsing"):
        assert store.stamp(stage).report["block_tasks"] == store.n_blocks > 1
    generated = store.stamp("synthesize").counts["generated"]
    assert store.stamp("synthesize").report["block_tasks"] == -(-generated // store.block_size)

    in_threads = run_from_config({**params, "runner": {"kind": "threads"}})
    assert {stage: in_threads[stage]["status"] for stage in stages} == dict.fromkeys(
        stages, "cached"
    ), "where the blocks ran is not part of a stage's cache key"
