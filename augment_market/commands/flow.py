"""``doctor``, ``run`` and ``submit``: the machine, and the whole DAG in this process or on a
Prefect server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from augment_market.commands.common import (
    EXIT_USER,
    ParametersError,
    naming,
    on_store,
    one_line,
)


def doctor(
    store: Annotated[
        str | None, typer.Argument(help="Store folder or URL to examine (optional).")
    ] = None,
) -> None:
    """Check this machine for a paper run (GPU, weights, disk, store); exit 1 if short."""
    from augment_market.doctor import examine, table

    findings = examine(store)
    for line in table(findings):
        typer.echo(line)
    problems = [finding for finding in findings if finding.is_problem]
    if not problems:
        typer.echo("ready for a paper run")
        return
    for finding in problems:
        typer.echo(f"{finding.status}: {finding.fix}", err=True)
    raise typer.Exit(EXIT_USER)


def run(
    config: Annotated[Path, typer.Option(help="YAML parameters, e.g. demo.yaml.")],
) -> None:
    """Run the whole augment-market DAG in this process (Prefect embedded mode, no server)."""
    # The embedded server starts in a subprocess: 10-17 s on an idle 2-core laptop, more under
    # load, past Prefect's 20 s default. Offline machines send no analytics.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.dag import run_from_config

    params = _load_params(config)
    with naming(f"store {params.store_url}"):
        summary = run_from_config(params)
    for stage, entry in summary.items():
        typer.echo(f"{stage:<24} {entry['status']:<7} {entry['digest'] or ''}".rstrip())
    report = on_store(params.store_url, lambda store: store.stamp("report"), write=False)
    if report is not None:
        typer.echo(f"\nreport: {report.report['path']}")


def submit(
    deployment: Annotated[
        str, typer.Argument(help="default (the demo), market1501, or flow/name.")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="KEY.PATH=VALUE merged into the deployment's parameters (repeat; YAML)."
        ),
    ] = None,
    wait: Annotated[
        bool,
        typer.Option(
            help="Print the run's id and page, wait for its end; exit 1 unless it completed."
        ),
    ] = False,
) -> None:
    """Run a deployment on the Prefect server with settings changed: --set alpha=3."""
    from flows.submit import submit as submit_run
    from flows.submit import wait_for

    run, page = submit_run(deployment, set_ or [], wait=0)
    state = run.state
    typer.echo(f"flow run {run.name} of {deployment}: {state.name if state else 'Scheduled'}")
    typer.echo(f"flow run id {run.id}\n{page}")
    if not wait:
        return
    run = wait_for(run.id)
    state = run.state
    typer.echo(f"flow run {run.name}: {state.name if state else 'no state'}")
    if not (state is not None and state.is_completed()):
        typer.echo(one_line(str(state.message if state else "no state")), err=True)
        raise typer.Exit(EXIT_USER)


def _load_params(path: Path) -> Any:
    """The flow's parameters from ``path``; a file that does not validate is one line."""
    import pydantic
    import yaml

    from flows.config import load_params

    try:
        return load_params(path)
    except pydantic.ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or 'file'}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise ParametersError(f"{path}: {'; '.join(problems)}") from None
    except (yaml.YAMLError, ValueError) as error:
        message = one_line(str(error))  # the file's own errors name it already
        raise ParametersError(message if str(path) in message else f"{path}: {message}") from None


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for command in (doctor, run, submit):
        app.command()(command)
