"""One Prefect server for the whole flows test session, and tiny run settings.

The server is started by ``scripts/server.sh start`` (so the script is tested too) on a free
127.0.0.1 port with ``PREFECT_HOME`` in a temporary folder; tests talk to it through
``temporary_settings``, subprocesses (the worker) through their environment.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PROJECT = Path(__file__).resolve().parents[2]
# Before anything imports prefect: its settings (home, result storage) come from here.
os.environ["PREFECT_HOME"] = tempfile.mkdtemp(prefix="prefect-home-")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_environment(api_url: str) -> dict[str, str]:
    """Environment for a subprocess that talks to the session's server."""
    return {
        **os.environ,
        "PREFECT_API_URL": api_url,
        "PREFECT": str(Path(sys.executable).parent / "prefect"),
    }


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[str]:
    """The API URL of a Prefect server running for this test session."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    port = _free_port()
    environment = {
        **os.environ,
        "PORT": str(port),
        "PREFECT": str(Path(sys.executable).parent / "prefect"),
    }
    subprocess.run(
        [str(PROJECT / "scripts" / "server.sh"), "start"],
        env=environment,
        check=True,
        timeout=420,
        capture_output=True,
    )
    api_url = f"http://127.0.0.1:{port}/api"
    try:
        with temporary_settings(updates={PREFECT_API_URL: api_url}):
            yield api_url
    finally:
        subprocess.run(
            [str(PROJECT / "scripts" / "server.sh"), "stop"],
            env=environment,
            timeout=60,
            capture_output=True,
        )


@pytest.fixture(scope="session")
def tiny_params() -> Any:
    """``tiny_params(root, **changes)``: see :func:`make_tiny_params`."""
    return make_tiny_params


def make_tiny_params(root: Path, **changes: Any) -> dict[str, Any]:
    """Settings for a whole-DAG run in seconds: 4 synthetic identities, a 2-step generator,
    a 1-epoch ResNet-18 IDE; everything offline on the CPU."""
    params: dict[str, Any] = {
        "dataset": {
            "source": str(root / "synthetic"),
            "synthetic": True,
            "synthetic_ids": 4,
            "synthetic_images_per_id": 4,
            "block_size": 8,
        },
        "store_url": str(root / "store"),
        "run_dir": str(root / "run"),
        "segmentation": {"masks_from": "provided", "parsing_from": "provided"},
        "pairs": {"train_pairs": None, "test_pairs": 8},
        "generator": {
            "preset": "tiny",
            "overrides": {
                "image_size": [128, 64],
                "ngf": 4,
                "ndf": 4,
                "num_blocks": 1,
                "batch_size": 4,
                "epochs": 1,
                "epoch_length": 8,
            },
        },
        "evaluate": {"batch_size": 8},
        "reid": {
            "sets": ["original", "copies", "generator"],
            "kinds": ["ide"],
            "arch": "resnet18",
            "metrics": ["euclidean"],
            "train": {"height": 64, "width": 32, "batch_size": 4, "epochs": 1},
        },
        "devices": {
            name: "cpu" for name in ("segmentation", "generator", "evaluate", "synthesize", "reid")
        },
        "offline": True,
    }
    params.update(changes)
    return params
