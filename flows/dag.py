"""The ``augment-market`` Prefect flow: the stages of :mod:`flows.graph`, run as far as they can.

The flow submits each stage task (:mod:`flows.tasks`) as soon as every stage it reads has
finished, so independent stages run concurrently (threads by default, Dask workers with
``runner: {kind: dask}``, see :mod:`flows.dask_runner`). Caching is
:class:`flows.caching.StageCachePolicy`; ``refresh`` forces stages, ``stages`` runs a subset
(the others' stamps are read from the store).

A run that lacks a pretrained file it cannot do without (:func:`flows.offline.missing_weights`)
ends before any stage, naming the files. A failed stage stops only what reads it: the flow
logs one line naming the failed stage, its error and the stages left out because of it, lets
the independent stages finish, publishes what it has, and ends failed.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from prefect import flow, get_run_logger
from prefect.futures import PrefectFuture
from prefect.states import Failed, State
from prefect.task_runners import TaskRunner
from prefect.utilities.callables import get_call_parameters

from flows.config import AugmentMarketParams, load_params
from flows.dask_runner import placement, task_runner
from flows.graph import Node, build_nodes, downstream, upstream_nodes
from flows.offline import missing_weights, resolve_offline
from flows.progress import publish_cached
from flows.publish import publish_results
from flows.tasks import make_synthetic
from foundation.errors import UserError
from foundation.weights import MissingWeightsError, weights_dir
from storage import StageStamp, open_store

Summary = dict[str, dict[str, str | None]]


class StageFailed(UserError, RuntimeError):
    """A stage of the run failed; the message names it, its error and what did not run (the
    CLI prints it as one line; the stage's own traceback is in the flow's log)."""


@dataclass
class Outcome:
    """Where each node of a run ended.

    Attributes:
        stamps: node name -> its stamp (None when missing or not finished).
        status: node name -> ``ran``, ``cached``, ``stored`` (not in ``stages``, read from the
            store), ``missing`` (not in ``stages``, no stamp), ``failed`` or ``not run`` (a
            stage it reads failed).
        failures: failed node name -> (its error in one line, the nodes left out).
    """

    stamps: dict[str, StageStamp | None] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)
    failures: dict[str, tuple[str, list[str]]] = field(default_factory=dict)


def _stored_stamp(store_url: str, stage: str) -> StageStamp | None:
    try:
        return open_store(store_url).stamp(stage)
    except FileNotFoundError:
        return None


def _error_line(future: PrefectFuture[Any]) -> str:
    try:
        future.result()
    except Exception as error:  # the task's own exception, re-raised by result()
        return (f"{type(error).__name__}: {error}".splitlines() or [""])[0]
    return str(future.state.message or future.state.name)


def run_graph(nodes: list[Node], params: AugmentMarketParams, runner: TaskRunner[Any]) -> Outcome:
    """Submit each node of ``params.stages`` to ``runner`` once the nodes it reads, and those it
    starts after, have finished; wait for all. The dependants of a failed node are left out.

    Upstream results go to a task as its (finished) futures, so the UI draws the edges.
    """
    outcome = Outcome()
    futures: dict[str, PrefectFuture[StageStamp]] = {}
    finished: queue.Queue[str] = queue.Queue()
    pending: list[Node] = []
    for node in nodes:
        if node.group in params.stages:
            pending.append(node)
        else:
            stamp = _stored_stamp(params.store_url, node.name)
            outcome.stamps[node.name] = stamp
            outcome.status[node.name] = "stored" if stamp is not None else "missing"

    def of(groups: tuple[str, ...]) -> list[Node]:
        return [other for other in nodes if other.group in groups]

    def submit(node: Node) -> None:
        task = node.task
        if node.group in params.refresh:
            task = task.with_options(refresh_cache=True)
        upstream = {
            other.name: futures.get(other.name, outcome.stamps[other.name])
            for other in upstream_nodes(nodes, node)
        }
        wait_for = [
            futures[other.name]
            for other in of(node.after)
            if outcome.status[other.name] in ("ran", "cached")
        ]
        arguments = get_call_parameters(task.fn, (params.store_url, upstream), node.settings)
        with placement(params, node.group):
            future = runner.submit(task, arguments, wait_for=wait_for)
        futures[node.name] = future
        future.add_done_callback(lambda _, name=node.name: finished.put(name))

    def settle(name: str) -> None:
        future = futures[name]
        future.wait()
        if future.state.is_completed():
            stamp = future.result()
            outcome.stamps[name] = stamp
            outcome.status[name] = "cached" if future.state.name == "Cached" else "ran"
            if outcome.status[name] == "cached":
                publish_cached(name, stamp)
            return
        outcome.stamps[name], outcome.status[name] = None, "failed"
        waiting = {node.name for node in pending}
        left_out = [other for other in downstream(nodes, name) if other in waiting]
        for other in left_out:
            outcome.stamps[other], outcome.status[other] = None, "not run"
        pending[:] = [node for node in pending if node.name not in left_out]
        outcome.failures[name] = (_error_line(future), left_out)
        get_run_logger().error(
            "stage '%s' failed (%s); not run because of it: %s",
            name,
            outcome.failures[name][0],
            ", ".join(left_out) or "nothing",
        )

    while True:
        for node in list(pending):
            if all(
                other.name in outcome.status
                for other in upstream_nodes(nodes, node) + of(node.after)
            ):
                pending.remove(node)
                submit(node)
        if all(name in outcome.status for name in futures):
            return outcome
        settle(finished.get())


@flow(name="augment-market", validate_parameters=True)
def augment_market(params: AugmentMarketParams) -> Summary | State[Summary]:
    """Turn a Re-ID dataset into an alpha-augmented one with SAN, and report (see module doc).

    Returns:
        stage -> ``{"digest": stamp digest or None, "status": "ran" | "cached" | "stored" |
        "missing"}``; ``stored``: not in ``stages``, its stamp read from the store. When a
        stage failed: a ``Failed`` state whose message names it (the run ends failed without
        a traceback of the flow function; calling the flow raises :class:`StageFailed`).
    """
    logger = get_run_logger()
    if missing := missing_weights(params):
        message = (
            f"missing pretrained weights: {', '.join(missing)}. Fetch every file into "
            f"{weights_dir()} with `make weights` (scripts/download_weights.py); `offline: auto` "
            "lets the generator, evaluation and Re-ID run without theirs"
        )
        logger.error("%s", message)
        return Failed(message=message, data=MissingWeightsError(message))
    offline = resolve_offline(params)
    for group, reason in offline.items():
        logger.warning("offline mode for %s: %s", group, reason)
    if params.dataset.synthetic and "ingest" in params.stages:
        make_synthetic(
            params.dataset.source,
            ids=params.dataset.synthetic_ids,
            images_per_id=params.dataset.synthetic_images_per_id,
            seed=params.seed,
        )
    nodes = build_nodes(params, offline)
    with task_runner(params) as runner:
        outcome = run_graph(nodes, params, runner)
    summary: Summary = {}
    for node in nodes:
        stamp = outcome.stamps[node.name]
        digest = stamp.digest if stamp is not None else None
        summary[node.name] = {"digest": digest, "status": outcome.status[node.name]}
        logger.info("%-22s %-8s %s", node.name, outcome.status[node.name], digest or "")
    publish_results(outcome.stamps)
    if outcome.failures:
        message = "; ".join(
            f"stage '{name}' failed ({error})"
            + (f", so {', '.join(left_out)} did not run" if left_out else "")
            for name, (error, left_out) in outcome.failures.items()
        )
        return Failed(message=message, data=StageFailed(message))
    return summary


def run_from_config(
    source: str | Path | dict[str, Any] | AugmentMarketParams,
) -> Summary:
    """Run the whole DAG in this process, without a server (Prefect's ephemeral mode).

    Args:
        source: a YAML file (``demo.yaml``), a dict, or :class:`AugmentMarketParams`.
    Returns:
        The flow's summary: stage -> digest and status (ran / cached / stored / missing).
    """
    # A failed run raises StageFailed here, so the call returns the summary.
    return cast(Summary, augment_market(load_params(source)))
