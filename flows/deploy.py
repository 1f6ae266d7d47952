"""Deployments of the ``augment-market`` flow: served from this process, or from ``prefect.yaml``.

Two routes to a deployment, both without ``flow.from_source``:

* ``python -m flows.deploy serve``: this process registers the deployments listed in
  ``prefect.yaml`` (same names and parameters) and runs their flow runs itself; no work pool,
  no worker. Handy on one GPU machine and in tests.
* ``prefect deploy --all`` (``make server-deploy``): registers the same deployments on the
  ``augment-market`` process work pool; a worker started in the project folder
  (``make server-worker``) runs them there.

Either way: ``augment-market submit default`` (the demo settings, ``make submit``) or
``market1501`` (the paper's), with ``--set key=value`` for changed settings
(:mod:`flows.submit`), and watch it in the UI.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, cast

import yaml

from flows.config import load_params

PROJECT_FILE = Path(__file__).resolve().parent.parent / "prefect.yaml"


def deployment_specs(path: str | Path = PROJECT_FILE) -> list[dict[str, Any]]:
    """The ``deployments`` entries of ``prefect.yaml``, their parameters validated.

    Raises:
        pydantic.ValidationError: a deployment's ``params`` do not fit the flow's model.
    """
    specs = list(yaml.safe_load(Path(path).read_text())["deployments"])
    for spec in specs:
        load_params(spec["parameters"]["params"])
    return specs


def serve(
    names: list[str] | None = None, *, path: str | Path = PROJECT_FILE, limit: int | None = None
) -> None:
    """Serve the deployments of ``prefect.yaml`` (all, or those in ``names``) until stopped.

    Args:
        names: deployment names (``default``, ``market1501``); None serves all.
        limit: flow runs executed at once by this process (None: no limit).
    """
    from prefect import serve as prefect_serve
    from prefect.deployments.runner import RunnerDeployment

    from flows.dag import augment_market

    deployments = [
        cast(
            RunnerDeployment,
            augment_market.to_deployment(
                name=spec["name"],
                parameters=spec["parameters"],
                description=spec.get("description"),
                tags=spec.get("tags"),
            ),
        )
        for spec in deployment_specs(path)
        if names is None or spec["name"] in names
    ]
    if not deployments:
        raise ValueError(f"no deployment named {names} in {path}")
    prefect_serve(*deployments, limit=limit)


def main(argv: list[str] | None = None) -> None:
    """``python -m flows.deploy serve [--name default] [--limit N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m flows.deploy",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="serve the prefect.yaml deployments")
    serve_parser.add_argument("--name", action="append", help="deployment to serve (repeat)")
    serve_parser.add_argument("--limit", type=int, default=None, help="concurrent flow runs")
    serve_parser.add_argument("--project-file", default=str(PROJECT_FILE))
    args = parser.parse_args(argv)
    serve(args.name, path=args.project_file, limit=args.limit)


if __name__ == "__main__":
    main()
