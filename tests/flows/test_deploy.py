"""The server path: prefect.yaml deployed on a process work pool, run by a worker, twice,
each run submitted as ``augment-market submit default --set ...`` (flows.submit), the first on
a Dask cluster that the flow run starts from its parameters.

Slow (about 50 s): ``prefect deploy`` and every flow run start Python processes that import
Prefect and the flow (not torch: tests/augment_market/test_light_imports.py keeps the flow's
import light). It still runs in ``make test``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest

PROJECT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_deployment_runs_on_a_worker_and_reruns_from_cache(prefect_server, tmp_path, tiny_params):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from flows.submit import submit
    from storage import open_store

    environment = {
        **os.environ,
        "PORT": str(urlparse(prefect_server).port),
        "PREFECT_API_URL": prefect_server,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "PREFECT": str(Path(sys.executable).parent / "prefect"),
    }
    server_sh = str(PROJECT / "scripts" / "server.sh")
    deployed = subprocess.run(
        [server_sh, "deploy"], env=environment, capture_output=True, text=True, timeout=300
    )
    assert deployed.returncode == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    assert "make server-worker" in deployed.stdout and "prefect worker start" not in deployed.stdout
    worker = subprocess.Popen(
        [server_sh, "worker"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        # Each top-level setting of the tiny run replaces the demo's (JSON is YAML).
        tiny = tiny_params(tmp_path, stages=["ingest", "masks", "parsing", "pairs"])
        sets = [f"{key}={json.dumps(value)}" for key, value in tiny.items()]
        dask = {"kind": "dask", "dask_workers": 2, "dask_processes": False, "blocks_per_task": 1}
        runs = [
            submit("default", [*sets, *extra], wait=300)[0]
            for extra in ([f"runner={json.dumps(dask)}"], [])
        ]
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:  # a loaded machine: the worker's shutdown is slow
            worker.kill()
            worker.wait()
    assert [run.state.type.value for run in runs] == ["COMPLETED", "COMPLETED"]
    assert runs[1].name.startswith("default dataset=") and "set:runner" in runs[0].tags
    assert "set:stages" in runs[1].tags and "set:runner" not in runs[1].tags
    with get_client(sync_client=True) as client:
        states = [
            sorted(
                task.state.name
                for task in client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id]))
                )
            )
            for run in runs
        ]
    assert states[0].count("Completed") == 5  # the synthetic dataset + 4 stages
    assert states[1] == ["Cached"] * 4 + ["Completed"]
    store = open_store(str(tmp_path / "store"))
    assert store.stamp("pairs") is not None
    # The first run's masks went block by block to the Dask workers of the deployment's run.
    assert store.stamp("masks").report["block_tasks"] == store.n_blocks > 1


def test_server_start_clears_a_stale_pid_file_and_keeps_a_running_server(prefect_server, tmp_path):
    """After a crash, a PID file naming a dead process is removed; a running server is kept."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    home = tmp_path / "home"
    home.mkdir()
    (home / "server.pid").write_text(str(dead.pid))
    environment = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PORT": str(urlparse(prefect_server).port),
        "PREFECT": "false",  # must not be called: the session's server answers on PORT
    }
    started = subprocess.run(
        [str(PROJECT / "scripts" / "server.sh"), "start"],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert started.returncode == 0, started.stderr
    assert f"removing stale {home / 'server.pid'}" in started.stderr
    assert "already answers" in started.stdout and not (home / "server.pid").exists()
