"""Run a stage's blocks in this process, or fan them out over an executor's workers.

A block stage (masks, parsing, synthesis) describes its work as a :data:`BlockWriter`: a
picklable callable that writes the given blocks through a :class:`storage.StageRun` and marks
each one done, building its models itself (so a worker process builds them once per task,
not once per block). :func:`run_blocks` either calls it once with every pending block, or,
given a :class:`FanOut`, submits lists of ``blocks_per_task`` blocks to the executor (a Dask
``Client.get_executor()``, or any ``concurrent.futures.Executor``). Each task reopens the store
by URL, joins the stage the calling process holds (:meth:`storage.PersonStore.join_stage`) and
runs the writer on its blocks; the caller counts progress as tasks complete and alone stamps.

A failed task fails the stage once every other task has ended: a Dask worker cannot stop a
running task, so waiting is the only way to be sure nothing writes after the caller releases
the stage's lock. The blocks that finished stay done and a rerun resumes after them.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future, as_completed
from dataclasses import dataclass
from typing import Any

from storage import StageRun, open_store

# Writes blocks ``blocks`` of the stage through ``run`` and marks each one done.
BlockWriter = Callable[[StageRun, list[int]], None]


@dataclass(frozen=True)
class FanOut:
    """Where a stage's blocks run when they leave the calling process.

    Attributes:
        executor: submits ``fn(*args)`` to a worker; the workers must reach the store's URL.
        blocks_per_task: store blocks per submitted task (each task builds the stage's model
            and, for synthesis, loads the store's arrays once).
    """

    executor: Executor
    blocks_per_task: int = 8

    def __post_init__(self) -> None:
        if self.blocks_per_task < 1:
            raise ValueError(f"blocks_per_task must be at least 1, got {self.blocks_per_task}")


def run_blocks(
    run: StageRun, writer: BlockWriter, blocks: list[int], fan_out: FanOut | None = None
) -> int:
    """Write ``blocks`` with ``writer``: here, or as tasks on ``fan_out``'s executor.

    Returns:
        The number of tasks submitted (0 when the blocks ran in this process).
    Raises:
        The first failed task's exception, once every submitted task has ended.
    """
    if not blocks:
        return 0
    if fan_out is None:
        writer(run, blocks)
        return 0
    run.begin()  # workers join only a run that has begun (its done flags are in place)
    size = fan_out.blocks_per_task
    # Workers may run elsewhere: a local store goes by its absolute path.
    url = run.store.root if run.store.local else run.store.url
    tasks = [blocks[start : start + size] for start in range(0, len(blocks), size)]
    futures: dict[Future[None], list[int]] = {
        fan_out.executor.submit(write_joined, url, run.name, run.config, writer, task): task
        for task in tasks
    }
    errors: list[BaseException] = []
    for future in as_completed(futures):
        error = future.exception()
        if error is None:
            run.count_done(futures[future])
        else:
            errors.append(error)
    if errors:
        raise errors[0]
    return len(tasks)


def write_joined(
    store_url: str, stage: str, config: dict[str, Any], writer: BlockWriter, blocks: list[int]
) -> None:
    """One fan-out task, run by a worker: join ``stage`` on the store and write ``blocks``."""
    run = open_store(store_url, mode="r+").join_stage(stage, config=config)
    writer(run, blocks)
