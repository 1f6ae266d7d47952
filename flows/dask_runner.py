"""Where the DAG's tasks and a block stage's blocks run: this process's threads, or Dask.

``runner: {kind: dask}`` in the parameters takes effect inside the flow, so a deployment, a
served flow and an embedded run all honour it: :func:`task_runner` enters a
``DaskTaskRunner`` (a local cluster, or the scheduler at ``runner.dask_address``) for the
length of the run, and the flow submits its stage tasks there. On Dask:

* a GPU stage that runs as one task needs a free ``GPU`` resource (:func:`placement`);
* the blocks of masks, parsing and synthesis fan out over the workers (:func:`dask_fan_out`,
  :mod:`pipeline.fanout`): the stage's task holds the stage lock, block tasks write disjoint
  blocks, and the stage's task stamps.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

from prefect.context import FlowRunContext
from prefect.task_runners import TaskRunner

from flows.config import AugmentMarketParams
from pipeline.fanout import FanOut

R = TypeVar("R")
GPU_STAGES = {
    "masks",
    "parsing",
    "generator",
    "evaluate",
    "synthesize",
    "reid_original",
    "reid_augmented",
}
# Block stages: their blocks fan out over the Dask workers (``runner.blocks_per_task``).
FAN_OUT_STAGES = {"masks", "parsing", "synthesize"}
# A block stage's ``fan_out`` argument: ``{"blocks_per_task": int, "gpu": bool}``, or None.
FanOutSettings = dict[str, Any] | None


def fan_out_settings(params: AugmentMarketParams) -> FanOutSettings:
    """The block stages' ``fan_out`` argument: set on Dask with ``runner.blocks_per_task``."""
    runner = params.runner
    if runner.kind != "dask" or runner.blocks_per_task is None:
        return None
    return {"blocks_per_task": runner.blocks_per_task, "gpu": runner.gpu_resources}


def dask_task_runner(params: AugmentMarketParams) -> TaskRunner[Any]:
    """The ``DaskTaskRunner`` that ``params.runner`` describes (not started)."""
    from prefect_dask import DaskTaskRunner

    runner = params.runner
    if runner.dask_address:
        return DaskTaskRunner(address=runner.dask_address)
    resources = {"resources": {"GPU": 1}} if runner.gpu_resources else {}
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": runner.dask_workers,
            "threads_per_worker": 1,
            "processes": runner.dask_processes,
            **resources,
        }
    )


@contextlib.contextmanager
def task_runner(params: AugmentMarketParams) -> Iterator[TaskRunner[Any]]:
    """The started task runner a flow run submits its stages to: the flow's own (threads),
    or a Dask one for the length of the block. Call inside the flow."""
    context = FlowRunContext.get()
    if context is None or context.task_runner is None:
        raise RuntimeError("task_runner() is for use inside the augment-market flow")
    if params.runner.kind == "threads":
        yield context.task_runner
        return
    with dask_task_runner(params) as runner:
        yield runner


@contextlib.contextmanager
def placement(params: AugmentMarketParams, stage: str) -> Iterator[None]:
    """On Dask with ``gpu_resources``, a GPU stage needs a worker with a free ``GPU`` (a
    fanned-out block stage asks it for each block task instead, see :func:`dask_fan_out`)."""
    fans_out = stage in FAN_OUT_STAGES and fan_out_settings(params) is not None
    gpu = params.runner.kind == "dask" and params.runner.gpu_resources
    if gpu and stage in GPU_STAGES and not fans_out:
        import dask

        with dask.annotate(resources={"GPU": 1}):
            yield
    else:
        yield


@contextlib.contextmanager
def dask_fan_out(settings: FanOutSettings) -> Iterator[FanOut | None]:
    """Where a block stage's blocks run: ``None`` (in this task), or the Dask cluster that
    runs this task, in tasks of ``settings["blocks_per_task"]`` blocks.

    ``worker_client`` takes this task out of its worker's thread pool while the blocks run,
    so a one-thread worker runs blocks too; with ``settings["gpu"]`` each block task needs a
    free ``GPU`` resource (the stage's own task needs none: it only waits).
    """
    if settings is None:
        yield None
        return
    from distributed import worker_client

    outside = _outside_prefect_runs()
    client_context = worker_client()
    client = outside.run(client_context.__enter__)
    try:
        executor = client.get_executor(resources={"GPU": 1} if settings["gpu"] else None)
        yield FanOut(_InContext(executor, outside), int(settings["blocks_per_task"]))
    finally:
        outside.run(client_context.__exit__, None, None, None)


def _outside_prefect_runs() -> contextvars.Context:
    """A copy of this thread's context without Prefect's run and transaction variables.

    The Dask calls of a fan-out (leaving and rejoining the thread pool, submitting) schedule
    callbacks on the worker's event loop, which copy the caller's context into the next task
    the worker starts. Made from inside a stage's task, they would hand that task this
    task's transaction as its parent, and its cache record would never be written.
    """
    from prefect.context import TaskRunContext
    from prefect.transactions import BaseTransaction

    context = contextvars.copy_context()
    for model in (FlowRunContext, TaskRunContext, BaseTransaction):
        context.run(model.__var__.set, None)  # type: ignore[arg-type]
    return context


class _InContext(Executor):
    """An executor whose submissions run in ``context`` (see :func:`_outside_prefect_runs`)."""

    def __init__(self, executor: Executor, context: contextvars.Context) -> None:
        self._executor = executor
        self._context = context

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        return self._context.run(self._executor.submit, fn, *args, **kwargs)
