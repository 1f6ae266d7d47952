"""Start a deployment's flow run with a few settings changed: ``augment-market submit``.

The flow has one parameter, ``params`` (see :mod:`flows.config` for why), so Prefect's own
``prefect deployment run --param alpha=3`` is refused and ``--params`` must repeat the whole
object. Here each ``--set key.path=value`` is merged into the parameters stored with the
deployment, the result is validated by :class:`flows.config.AugmentMarketParams` (a typo is
refused naming the closest key) before anything reaches the server, and the run is created
with ``run_deployment``, named after the deployment and the assignments (``default alpha=3``)
and tagged ``set:<key>`` for each key changed.

Values are YAML: ``alpha=3`` is a number, ``reid.kinds=[ide]`` a list, ``pairs.train_pairs=null``
None, ``devices.generator=cuda:1`` a string.

Without ``PREFECT_API_URL`` the command talks to the local server of ``scripts/server.sh``
(``http://127.0.0.1:$PORT/api``, port 4200) instead of starting a throwaway one, and says so
when nothing answers there.
"""

from __future__ import annotations

import copy
import os
import urllib.error
import urllib.request
from collections.abc import Iterable
from typing import Any

import pydantic
import yaml

from flows.config import load_params
from foundation.errors import UserError

FLOW_NAME = "augment-market"
MAX_NAME = 100  # characters of a run name; the UI shows about this many


class SubmitError(UserError, ValueError):
    """A ``--set`` that cannot be applied, parameters that do not validate, no server or no
    such deployment; the message says which and what to do."""


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``"generator.max_steps=20"`` -> ``(["generator", "max_steps"], 20)`` (value as YAML).

    A leading ``params.`` (the flow's parameter name) is accepted and dropped.
    """
    key, sep, raw = text.partition("=")
    path = key.strip().split(".")
    if not sep or not all(path):
        raise SubmitError(f"--set {text!r}: expected KEY=VALUE, e.g. generator.max_steps=20")
    if path[0] == "params" and len(path) > 1:
        path = path[1:]
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise SubmitError(f"--set {text!r}: the value is not valid YAML ({error})") from error
    return path, value


def apply_assignments(values: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """A copy of ``values`` with each ``key.path=value`` set (missing levels are created)."""
    merged = copy.deepcopy(values)
    for text in assignments:
        path, value = parse_assignment(text)
        node = merged
        for depth, key in enumerate(path[:-1]):
            child = node.setdefault(key, {})
            if not isinstance(child, dict):
                where = ".".join(path[: depth + 1])
                raise SubmitError(f"--set {text!r}: {where} is {child!r}, not a group of settings")
            node = child
        node[path[-1]] = value
    return merged


def merged_params(stored: dict[str, Any], assignments: Iterable[str]) -> dict[str, Any]:
    """The deployment's stored ``params`` with the assignments merged in, validated.

    Raises:
        SubmitError: an assignment is malformed, or the result does not fit the flow's
            parameters (each problem named by its dotted key).
    """
    merged = apply_assignments(stored, assignments)
    try:
        load_params(merged)
    except pydantic.ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc']) or 'params'}: {problem['msg']}"
            for problem in error.errors()
        )
        raise SubmitError(f"the parameters with these --set do not validate: {problems}") from None
    return merged


def api_url() -> str:
    """``PREFECT_API_URL``, else the local server of ``scripts/server.sh`` (``$PORT``, 4200)."""
    from prefect.settings import PREFECT_API_URL

    configured = PREFECT_API_URL.value()
    if configured:
        return str(configured)
    return f"http://127.0.0.1:{os.environ.get('PORT', '4200')}/api"


def check_server(url: str) -> None:
    """Raise :class:`SubmitError` unless a Prefect server answers at ``url``."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10) as response:
            if response.status == 200:
                return
    except (urllib.error.URLError, OSError):
        pass
    raise SubmitError(
        f"no Prefect server answers at {url}: start one with `make server-start` "
        "(then `make server-deploy` and `make server-worker`), or set PREFECT_API_URL"
    )


def deployment_name(name: str) -> str:
    """``default`` -> ``augment-market/default``; a full ``flow/deployment`` name is kept."""
    return name if "/" in name else f"{FLOW_NAME}/{name}"


def run_name(deployment: str, assignments: Iterable[str]) -> str:
    """The flow run's name: the deployment and what changed, ``"default alpha=3"`` (at most
    :data:`MAX_NAME` characters)."""
    name = " ".join([deployment.split("/")[-1], *assignments])
    return name if len(name) <= MAX_NAME else name[: MAX_NAME - 3] + "..."


def run_tags(assignments: Iterable[str]) -> list[str]:
    """One tag per changed key, ``"set:generator.max_steps"``, to filter runs in the UI."""
    return [f"set:{'.'.join(parse_assignment(text)[0])}" for text in assignments]


def submit(
    deployment: str, assignments: Iterable[str], *, wait: float | None = 0
) -> tuple[Any, str]:
    """Create a flow run of ``deployment`` with ``assignments`` merged into its parameters.

    Args:
        deployment: ``default``, ``market1501`` or ``flow/deployment``.
        assignments: ``key.path=value`` strings.
        wait: seconds to wait for the run to end (0: return once it is created; None: as
            long as it takes).
    Returns:
        The flow run (``prefect.client.schemas.objects.FlowRun``, in its state when the wait
        ended) and its page in the UI.
    Raises:
        SubmitError: no server (or it went away while waiting), no such deployment, a
            malformed assignment, or merged parameters that do not fit the flow's.
    """
    import httpx  # Prefect's HTTP client
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL, temporary_settings

    assignments = list(assignments)
    for text in assignments:  # a malformed one is refused before any server is asked
        parse_assignment(text)
    url = api_url()
    check_server(url)
    name = deployment_name(deployment)
    with temporary_settings(updates={PREFECT_API_URL: url}):
        with get_client(sync_client=True) as client:
            try:
                stored = client.read_deployment_by_name(name).parameters
            except ObjectNotFound:
                raise SubmitError(
                    f"no deployment {name!r} on {url}: register them with `make server-deploy`"
                ) from None
        params = merged_params(dict(stored.get("params", {})), assignments)
        try:
            # Called from sync code, so the sync variant runs (its stub also admits a coroutine).
            run: Any = run_deployment(
                name,
                parameters={"params": params},
                flow_run_name=run_name(name, assignments),
                tags=run_tags(assignments),
                timeout=wait,
                # Prefect's default looks every 5 s: a cached run ends seconds after it starts.
                poll_interval=1,
                as_subflow=False,
            )
        except httpx.TransportError as error:  # the server went away while we waited
            raise SubmitError(
                f"lost the Prefect server at {url} ({type(error).__name__}: {error}); a run "
                "already created goes on on its worker: restart the server and watch it in "
                "the UI"
            ) from error
    page = f"{url.removesuffix('/api')}/runs/flow-run/{run.id}"
    return run, page


def wait_for(run_id: Any) -> Any:
    """Wait for flow run ``run_id`` to end, however long it takes; the run in its final state.

    Raises:
        SubmitError: the server went away while waiting (the run goes on on its worker).
    """
    import httpx
    from prefect.flow_runs import wait_for_flow_run
    from prefect.settings import PREFECT_API_URL, temporary_settings

    url = api_url()
    with temporary_settings(updates={PREFECT_API_URL: url}):
        try:
            # Called from sync code, so the sync variant runs (its stub also admits a coroutine).
            return wait_for_flow_run(run_id, timeout=None)
        except httpx.TransportError as error:
            raise SubmitError(
                f"lost the Prefect server at {url} ({type(error).__name__}: {error}) while "
                f"waiting for flow run {run_id}; it goes on on its worker: restart the server "
                "and watch it in the UI"
            ) from error
