"""The server path: prefect.yaml deployed on a process work pool, run by a worker, twice.

Slow (about a minute): ``prefect deploy`` and every flow run start Python processes that import
torch and the pipeline. It still runs in ``make test``.
"""

from __future__ import annotations

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
    from prefect.deployments import run_deployment

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
    worker = subprocess.Popen(
        [server_sh, "worker"], env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        parameters = {
            "params": tiny_params(tmp_path, stages=["ingest", "masks", "parsing", "pairs"])
        }
        runs = [
            run_deployment("augment-market/default", parameters=parameters, timeout=300)
            for _ in range(2)
        ]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
    assert [run.state.type.value for run in runs] == ["COMPLETED", "COMPLETED"]
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
    assert (tmp_path / "store" / "stamps" / "pairs.json").is_file()
