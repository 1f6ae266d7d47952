"""The pipeline's stages as cached, retried Prefect tasks: one per entry of the stage registry.

Each task (:data:`TASKS`) calls its stage's run adapter (:data:`pipeline.stage_registry.REGISTRY`)
with a :class:`flows.progress.StageProgress` and returns its :class:`storage.StageStamp`;
nothing here knows how a stage works. A task's arguments besides ``store_url`` and ``upstream``
are its typed settings object and how it runs (built from the parameters in
:func:`flows.graph.build_nodes`); ``upstream`` holds the stamps it reads, for the cache key
(:class:`flows.caching.StageCachePolicy`).

Retries: up to :data:`RETRIES` times, only for transient I/O errors (:func:`is_transient`);
bad input (``ValueError``, ``StoreValidationError``, a missing file) fails at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from prefect import Task, get_run_logger, task
from prefect.states import State

from flows.caching import StageCachePolicy
from flows.dask_runner import FanOutSettings, dask_fan_out
from flows.progress import StageProgress, TrainingWatch, Watch
from foundation.progress import LogTail
from pipeline.settings import Settings
from pipeline.stage_registry import REGISTRY, Stage, StageJob, StageName
from storage import StageStamp, open_store

RETRIES = 2
RETRY_DELAY_SECONDS = 10

Upstream = Mapping[str, StageStamp | None]


def is_transient(error: BaseException) -> bool:
    """Whether ``error`` is an I/O failure worth retrying (network, disk, object store).

    ``OSError`` is, except its subclasses that mean the input is wrong or absent
    (``FileNotFoundError`` and so ``MissingWeightsError``, ``FileExistsError``,
    ``PermissionError``, ``IsADirectoryError``, ``NotADirectoryError``).
    """
    permanent = (
        FileNotFoundError,
        FileExistsError,
        PermissionError,
        IsADirectoryError,
        NotADirectoryError,
    )
    return isinstance(error, OSError) and not isinstance(error, permanent)


def retry_on_transient_io(task: Task[Any, Any], task_run: Any, state: State[Any]) -> bool:
    """Prefect ``retry_condition_fn``: retry only when the task raised a transient I/O error."""
    try:
        state.result()
    except Exception as error:  # the task's own exception, re-raised by state.result()
        return is_transient(error)
    return False


def named(stage_fn: Task[..., StageStamp], stamp_name: str) -> Task[..., StageStamp]:
    """A task serving several stamps (segmentation, synthesis, Re-ID) named and cached as
    ``stamp_name``."""
    return stage_fn.with_options(name=stamp_name, cache_policy=StageCachePolicy(stage=stamp_name))


def _watch(stage: StageName, folder: Path | None) -> Watch | None:
    """What the progress artifact follows while ``stage`` trains: the generator's sample grids
    and losses, Re-ID's loss log lines."""
    if stage == "generator" and folder is not None:
        return TrainingWatch(folder)
    if stage in ("reid_original", "reid_augmented"):
        return LogTail("reid.train")
    return None


def stage_task(stage: Stage) -> Task[..., StageStamp]:
    """``stage`` as a cached, retried Prefect task named after it.

    The task's arguments: ``store_url``, ``upstream`` (the stamps it reads, for the cache key),
    ``settings`` (the stage's settings object), ``run_dir``, ``device``, ``offline`` (its
    declared offline mode), ``fan_out`` (where blocks run: not part of the key) and ``extra``
    (:attr:`pipeline.stage_registry.StageJob.extra`).
    """

    def run_task(
        store_url: str,
        upstream: Upstream,
        *,
        settings: Settings,
        run_dir: str | None = None,
        device: str = "cpu",
        offline: bool = False,
        fan_out: FanOutSettings = None,
        extra: Mapping[str, Any] | None = None,
    ) -> StageStamp:
        folder = None if run_dir is None or stage.folder is None else Path(run_dir, stage.folder)
        name = stage.stamp(settings, extra)
        store = None if stage.name == "ingest" else open_store(store_url, mode="r+")
        if stage.note is not None and (note := stage.note(settings)) is not None:
            get_run_logger().warning("%s: %s", stage.name, note)

        def run(progress: StageProgress | None) -> StageStamp | None:
            with dask_fan_out(fan_out) as blocks:
                job = StageJob(
                    store, store_url, folder, device, offline, progress, blocks, extra or {}
                )
                return stage.run(settings, job)

        if stage.name == "report":  # no progress card: its key is the report artifact's
            return cast(StageStamp, run(None))
        return run_stage(name, run, watch=_watch(stage.name, folder))

    run_task.__name__ = run_task.__qualname__ = f"{stage.name}_stage"
    run_task.__doc__ = f"The {stage.name} stage (:data:`pipeline.stage_registry.REGISTRY`)."
    return task(
        name=stage.name,
        cache_policy=StageCachePolicy(stage=stage.name),
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAY_SECONDS,
        retry_condition_fn=retry_on_transient_io,
        persist_result=True,
    )(run_task)


def run_stage(
    stage: str, run: Callable[[StageProgress], StageStamp | None], *, watch: Watch | None = None
) -> StageStamp:
    """Call ``run(progress)`` with the stage's progress artifact, then mark it complete.

    Raises:
        RuntimeError: the stage returned no stamp (what a non-zero torchrun rank returns; the
            flow runs stages in one process, where rank 0 stamps).
    """
    progress = StageProgress(stage, watch=watch)
    with progress:
        stamp = run(progress)
    if stamp is None:
        raise RuntimeError(
            f"stage '{stage}' returned no stamp: is RANK set to a non-zero "
            "torchrun rank in the flow's environment?"
        )
    progress.finish(stamp)
    return stamp


@task(name="synthetic-dataset")
def make_synthetic(source: str, *, ids: int, images_per_id: int, seed: int) -> str:
    """Write the synthetic dataset to ``source`` unless it is already there (bytes are a pure
    function of the arguments, so keeping it keeps the ingest cache valid)."""
    from pipeline.synthetic_dataset import generate_synthetic

    root = Path(source)
    if not (root / "bounding_box_train").is_dir():
        generate_synthetic(root, ids=ids, images_per_id=images_per_id, seed=seed)
    return str(root)


# One task per stage of the registry.
TASKS: dict[StageName, Task[..., StageStamp]] = {
    name: stage_task(stage) for name, stage in REGISTRY.items()
}
