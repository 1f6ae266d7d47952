"""docker/: the pins in the Dockerfile, compose file and prefect.yaml match pyproject/uv.lock."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

PROJECT = Path(__file__).resolve().parents[2]
DOCKERFILE = (PROJECT / "docker" / "Dockerfile").read_text()
COMPOSE = yaml.safe_load((PROJECT / "docker" / "compose.yaml").read_text())


def locked_version(name: str) -> str:
    lock = tomllib.loads((PROJECT / "uv.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == name)


def python_minor() -> str:
    requires = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]["requires-python"]
    return re.search(r">=\s*(\d+\.\d+)", requires).group(1)  # type: ignore[union-attr]


def test_worker_image_uses_the_locked_environment():
    assert f"ARG PYTHON_VERSION={python_minor()}" in DOCKERFILE
    assert "uv sync --locked --no-dev" in DOCKERFILE
    assert re.search(r"^USER (?!root)\w+", DOCKERFILE, re.MULTILINE)
    # The CUDA base matches the CUDA of the locked torch wheels (nvidia-cuda-runtime 13.0.x).
    cuda = ".".join(locked_version("nvidia-cuda-runtime").split(".")[:2])
    assert re.search(rf"nvidia/cuda:{re.escape(cuda)}\.\d+-runtime", DOCKERFILE)


def test_server_image_and_project_file_match_the_locked_prefect():
    prefect = locked_version("prefect")
    server = COMPOSE["services"]["server"]
    assert server["image"] == f"prefecthq/prefect:{prefect}-python{python_minor()}"
    project = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
    assert project["prefect-version"] == prefect


def test_compose_server_is_local_authenticated_and_on_postgres():
    server = COMPOSE["services"]["server"]
    assert all(port.startswith("127.0.0.1:") for port in server["ports"])
    environment = server["environment"]
    assert "PREFECT_SERVER_API_AUTH_STRING" in environment
    assert environment["PREFECT_SERVER_DATABASE_CONNECTION_URL"].startswith(
        "${PREFECT_SERVER_DATABASE_CONNECTION_URL:-postgresql+asyncpg://"
    )
    major, minor = re.search(
        r"postgres:(\d+)\.?(\d*)",  # type: ignore[union-attr]
        COMPOSE["services"]["postgres"]["image"],
    ).groups()
    assert (int(major), int(minor or 0)) >= (14, 9)
    worker = COMPOSE["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert worker["environment"]["PREFECT_API_AUTH_STRING"]
    assert worker["build"]["dockerfile"] == "docker/Dockerfile"


def test_compose_config_renders_when_docker_compose_is_available():
    docker = shutil.which("docker")
    if (
        docker is None
        or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0
    ):
        pytest.skip("the docker compose plugin is not installed here")
    result = subprocess.run(
        [docker, "compose", "-f", str(PROJECT / "docker" / "compose.yaml"), "config"],
        capture_output=True,
        text=True,
        env={
            "POSTGRES_PASSWORD": "x",
            "PREFECT_SERVER_API_AUTH_STRING": "a:b",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.returncode == 0, result.stderr


def test_worker_mounts_weights_keeps_cache_records_and_writes_as_the_host_user():
    worker = COMPOSE["services"]["worker"]
    binds = {v["target"]: v for v in worker["volumes"] if isinstance(v, dict)}
    weights_dir = re.search(r"AUGMENT_MARKET_WEIGHTS=(\S+)", DOCKERFILE).group(1)  # type: ignore[union-attr]
    assert binds[weights_dir]["source"] == "../weights" and binds[weights_dir]["read_only"]
    assert {"/app/data", "/app/runs"} <= set(binds)
    # A missing host folder is an error, not one that root creates and the worker cannot write.
    assert all(v["bind"]["create_host_path"] is False for v in binds.values())
    assert set(worker["build"]["args"]) == {"WORKER_UID", "WORKER_GID"}
    assert "useradd --create-home --uid ${WORKER_UID}" in DOCKERFILE
    # Result storage (cache records) lives under PREFECT_HOME, on a named volume.
    home = re.search(r"PREFECT_HOME=(\S+)", DOCKERFILE).group(1)  # type: ignore[union-attr]
    named = [v.split(":") for v in worker["volumes"] if isinstance(v, str)]
    assert [volume for volume, target in named if target == home] == ["worker-prefect"]
    assert "worker-prefect" in COMPOSE["volumes"]
    assert "COPY scripts ./scripts" in DOCKERFILE  # scripts/download_weights.py


def test_the_paper_deployment_refuses_offline_mode_unless_asked():
    project = yaml.safe_load((PROJECT / "prefect.yaml").read_text())
    paper = next(d for d in project["deployments"] if d["name"] == "market1501")
    assert paper["parameters"]["params"]["offline"] is False
