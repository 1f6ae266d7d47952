"""The ``augment-market`` Prefect flow: the pipeline's stages as cached, retried tasks.

DAG (an arrow is "reads the stamp of"; ``<kind>`` is each Re-ID baseline, ide / siamese)::

    ingest -> masks ---> pairs -> generator -> evaluate
          \\-> parsing -------------/      \\-> synthesize -> reid_<kind>_augmented -> report
          \\--------------------------------------------> reid_<kind>_original ---/

Each task calls one plain function of ``pipeline/`` and returns its :class:`storage.StageStamp`;
nothing here knows how a stage works. Caching is :class:`flows.caching.StageCachePolicy`
(settings + input digests + version, and the output must still be in the store); ``refresh``
forces stages, ``stages`` runs a subset (the others' stamps are read from the store). Masks and
parsing, evaluate and synthesize, and the Re-ID trainings are independent and run
concurrently (threads by default, or Dask workers, see ``runner`` in :mod:`flows.config`). On
Dask, the blocks of masks, parsing and synthesis also fan out over the workers
(:func:`dask_fan_out`, :mod:`pipeline.fanout`): the stage's task holds the stage lock, block
tasks write disjoint blocks, and the stage's task stamps.

Retries: up to :data:`RETRIES` times, only for transient I/O errors (:func:`is_transient`);
bad input (``ValueError``, ``StoreValidationError``, a missing file) fails at once.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Task, flow, get_run_logger, task
from prefect.futures import PrefectFuture
from prefect.states import State

from flows.caching import StageCachePolicy, folder_fingerprint
from flows.config import STAGES, AugmentMarketParams, StageName, load_params, set_fields
from flows.offline import resolve_offline
from flows.progress import (
    StageProgress,
    publish_generator_table,
    publish_reid_table,
    publish_report,
)
from pipeline.fanout import FanOut
from storage import StageStamp, open_store

RETRIES = 2
RETRY_DELAY_SECONDS = 10
# Stages that read each stage's stamp: the edges of the DAG, and the digests in its cache key.
INPUTS: dict[StageName, tuple[StageName, ...]] = {
    "ingest": (),
    "masks": ("ingest",),
    "parsing": ("ingest",),
    "pairs": ("ingest", "masks"),
    "generator": ("pairs", "masks", "parsing"),
    "evaluate": ("generator", "pairs"),
    "synthesize": ("generator", "masks", "parsing"),
    "reid_original": ("ingest",),
    "reid_augmented": ("ingest", "synthesize"),
    "report": STAGES[:-1],
}
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

P = ParamSpec("P")
R = TypeVar("R")
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


def stage_task(stage: str) -> Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a stage function as a cached, retried Prefect task named ``stage``."""
    return task(
        name=stage,
        cache_policy=StageCachePolicy(stage=stage),
        retries=RETRIES,
        retry_delay_seconds=RETRY_DELAY_SECONDS,
        retry_condition_fn=retry_on_transient_io,
        persist_result=True,
    )


def _with_progress(stage: str, run: Callable[[StageProgress], StageStamp | None]) -> StageStamp:
    """Call ``run(progress)`` with the stage's progress artifact, then mark it complete.

    Raises:
        RuntimeError: the stage returned no stamp (what a non-zero torchrun rank returns; the
            flow runs stages in one process, where rank 0 stamps).
    """
    progress = StageProgress(stage)
    stamp = run(progress)
    if stamp is None:
        raise RuntimeError(
            f"stage '{stage}' returned no stamp: is RANK set to a non-zero "
            "torchrun rank in the flow's environment?"
        )
    progress.finish()
    return stamp


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
    from prefect.context import FlowRunContext, TaskRunContext
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


@task(name="synthetic-dataset")
def make_synthetic(source: str, *, ids: int, images_per_id: int, seed: int) -> str:
    """Write the synthetic dataset to ``source`` unless it is already there (bytes are a pure
    function of the arguments, so keeping it keeps the ingest cache valid)."""
    from pipeline.synthetic import generate_synthetic

    root = Path(source)
    if not (root / "bounding_box_train").is_dir():
        generate_synthetic(root, ids=ids, images_per_id=images_per_id, seed=seed)
    return str(root)


@stage_task("ingest")
def ingest_stage(
    store_url: str,
    upstream: Upstream,
    *,
    source: str,
    kind: str,
    block_size: int,
    overwrite: bool,
    source_fingerprint: str,
) -> StageStamp:
    """Read the dataset folder into the store. ``source_fingerprint`` is for the cache key."""
    from pipeline.ingest import ingest

    return _with_progress(
        "ingest",
        lambda progress: ingest(
            Path(source),
            store_url,
            kind=kind,  # type: ignore[arg-type]
            block_size=block_size,
            overwrite=overwrite,
            progress=progress,
        ),
    )


def _segmentation(
    kind: str,
    store_url: str,
    *,
    source: str,
    annotations_dir: str | None,
    batch_size: int,
    weights: str | None,
    device: str,
    flip: bool,
    fan_out: FanOutSettings,
) -> StageStamp:
    from pipeline.masks import compute_masks
    from pipeline.parsing import compute_parsing
    from pipeline.segmentation import import_provided

    store = open_store(store_url, mode="r+")

    def run(progress: StageProgress) -> StageStamp:
        with dask_fan_out(fan_out) as blocks:
            if source == "provided":
                return import_provided(
                    store,
                    str(annotations_dir),
                    kind=kind,  # type: ignore[arg-type]
                    progress=progress,
                    fan_out=blocks,
                )
            if kind == "masks":
                return compute_masks(
                    store,
                    device=device,
                    batch_size=batch_size,
                    weights=weights,
                    progress=progress,
                    fan_out=blocks,
                )
            return compute_parsing(
                store,
                device=device,
                batch_size=batch_size,
                weights=weights,
                flip=flip,
                progress=progress,
                fan_out=blocks,
            )

    return _with_progress(kind, run)


@stage_task("masks")
def masks_stage(
    store_url: str,
    upstream: Upstream,
    *,
    source: str,
    annotations_dir: str | None,
    batch_size: int,
    weights: str | None,
    device: str,
    fan_out: FanOutSettings = None,
) -> StageStamp:
    """Person masks: Mask R-CNN, or the provided PNGs."""
    return _segmentation(
        "masks",
        store_url,
        source=source,
        annotations_dir=annotations_dir,
        batch_size=batch_size,
        weights=weights,
        device=device,
        flip=False,
        fan_out=fan_out,
    )


@stage_task("parsing")
def parsing_stage(
    store_url: str,
    upstream: Upstream,
    *,
    source: str,
    annotations_dir: str | None,
    batch_size: int,
    weights: str | None,
    device: str,
    flip: bool,
    fan_out: FanOutSettings = None,
) -> StageStamp:
    """LIP parsing: SCHP, or the provided PNGs."""
    return _segmentation(
        "parsing",
        store_url,
        source=source,
        annotations_dir=annotations_dir,
        batch_size=batch_size,
        weights=weights,
        device=device,
        flip=flip,
        fan_out=fan_out,
    )


@stage_task("pairs")
def pairs_stage(
    store_url: str,
    upstream: Upstream,
    *,
    train_pairs: int | None,
    test_pairs: int | None,
    seed: int,
    skip_empty_masks: bool,
) -> StageStamp:
    """Same-identity training and test pairs."""
    from pipeline.pairs import PairsConfig, sample_pairs

    config = PairsConfig(
        train_pairs=train_pairs, test_pairs=test_pairs, seed=seed, skip_empty_masks=skip_empty_masks
    )
    return sample_pairs(open_store(store_url, mode="r+"), config)


@stage_task("generator")
def generator_stage(
    store_url: str,
    upstream: Upstream,
    *,
    run_dir: str,
    preset: str,
    overrides: dict[str, Any],
    seed: int,
    max_steps: int | None,
    resume: bool,
    device: str,
    offline: bool,
) -> StageStamp:
    """Train SAN; offline: perceptual loss off (no VGG-19 weights needed)."""
    from pipeline.train_generator import train_generator
    from san_model.config import SANConfig

    settings = {"seed": seed, **overrides}
    if offline:
        settings["use_perceptual"] = False
    # from_dict turns YAML lists back into the config's tuples (image_size, betas).
    config = SANConfig.from_dict({**getattr(SANConfig, preset)().to_dict(), **settings})
    return _with_progress(
        "generator",
        lambda progress: train_generator(
            open_store(store_url, mode="r+"),
            Path(run_dir) / "generator",
            config=config,
            device=device,
            resume=resume,
            max_steps=max_steps,
            pretrained_vgg=not offline,
            progress=progress,
        ),
    )


@stage_task("evaluate")
def evaluate_stage(
    store_url: str,
    upstream: Upstream,
    *,
    run_dir: str,
    fid_variant: str,
    batch_size: int,
    device: str,
    offline: bool,
) -> StageStamp:
    """FID / LPIPS / mask-LPIPS; offline: pixel metrics only."""
    from pipeline.evaluate import evaluate_generator
    from san_model.fid_inception import FIDVariant

    return _with_progress(
        "evaluate",
        lambda progress: evaluate_generator(
            open_store(store_url, mode="r+"),
            Path(run_dir) / "generator",
            device=device,
            offline=offline,
            fid_variant=cast(FIDVariant, fid_variant),
            batch_size=batch_size,
            progress=progress,
        ),
    )


@stage_task("synthesize")
def synthesize_stage(
    store_url: str,
    upstream: Upstream,
    *,
    run_dir: str,
    alpha: int,
    seed: int,
    batch_size: int,
    device: str,
    fan_out: FanOutSettings = None,
) -> StageStamp:
    """Alpha-augment the training split with the trained generator."""
    from pipeline.synthesize import synthesize

    def run(progress: StageProgress) -> StageStamp:
        with dask_fan_out(fan_out) as blocks:
            return synthesize(
                open_store(store_url, mode="r+"),
                Path(run_dir) / "generator",
                alpha=alpha,
                seed=seed,
                device=device,
                batch_size=batch_size,
                progress=progress,
                fan_out=blocks,
            )

    return _with_progress("synthesize", run)


@task(
    name="reid",
    retries=RETRIES,
    retry_delay_seconds=RETRY_DELAY_SECONDS,
    retry_condition_fn=retry_on_transient_io,
    persist_result=True,
)
def reid_stage(
    store_url: str,
    upstream: Upstream,
    *,
    run_dir: str,
    kind: str,
    arch: str,
    preset: str,
    model: dict[str, Any],
    train: dict[str, Any],
    seed: int,
    alpha: int | None,
    metrics: list[str],
    metric_options: dict[str, dict[str, Any]],
    ap: str,
    normalize_features: bool,
    flip_features: bool,
    max_steps: int | None,
    weights: str | None,
    device: str,
    offline: bool,
) -> StageStamp:
    """One Re-ID baseline (IDE or Siamese) on the original (``alpha`` None) or augmented set;
    offline: random backbone. Given a per-stage name and cache policy by :func:`reid_task`."""
    from pipeline.reid_stage import reid_stage_name, train_reid_baseline
    from reid.train import TrainConfig

    base = getattr(TrainConfig, preset)(seed=seed)
    pretrained = not offline and model.get("pretrained", base.model.pretrained)
    architecture = dataclasses.replace(
        base.model, **{**model, "kind": kind, "arch": arch, "pretrained": pretrained}
    )
    # Tuples again: the flow passes JSON values (lr_milestones arrives as a list).
    recipe = {key: tuple(v) if isinstance(v, list) else v for key, v in train.items()}
    config = dataclasses.replace(base, model=architecture, **recipe)
    return _with_progress(
        reid_stage_name(kind, alpha),
        lambda progress: train_reid_baseline(
            open_store(store_url, mode="r+"),
            Path(run_dir) / "reid",
            config=config,
            alpha=alpha,
            metrics=metrics,
            metric_options=metric_options,
            ap=ap,  # type: ignore[arg-type]
            normalize_features=normalize_features,
            flip_features=flip_features,
            device=device,
            max_steps=max_steps,
            weights=weights,
            progress=progress,
        ),
    )


def reid_task(stamp_name: str) -> Task[..., StageStamp]:
    """:func:`reid_stage` named and cached as the stamp it writes (``reid_ide_original``...)."""
    return reid_stage.with_options(name=stamp_name, cache_policy=StageCachePolicy(stage=stamp_name))


@stage_task("report")
def report_stage(
    store_url: str, upstream: Upstream, *, run_dir: str, offline: dict[str, str]
) -> StageStamp:
    """The Markdown report of every finished stage, offline declarations first."""
    from pipeline.report import write_report

    return write_report(open_store(store_url, mode="r+"), run_dir, offline=offline)


@dataclass(frozen=True)
class Node:
    """One task of the DAG.

    Attributes:
        group: the stage name users list in ``stages`` / ``refresh`` (``reid_original``...).
        name: the stamp it writes (``reid_ide_original`` for a Re-ID group), the result key.
        task: the cached Prefect task.
        settings: its keyword arguments besides ``store_url`` and ``upstream``.
        inputs: groups whose stamps it reads (every node of each).
    """

    group: StageName
    name: str
    task: Task[..., StageStamp]
    settings: dict[str, Any]
    inputs: tuple[StageName, ...]


def fan_out_settings(params: AugmentMarketParams) -> FanOutSettings:
    """The block stages' ``fan_out`` argument: set on Dask with ``runner.blocks_per_task``."""
    runner = params.runner
    if runner.kind != "dask" or runner.blocks_per_task is None:
        return None
    return {"blocks_per_task": runner.blocks_per_task, "gpu": runner.gpu_resources}


def build_nodes(params: AugmentMarketParams, offline: Mapping[str, str]) -> list[Node]:
    """The DAG's tasks in topological order: the one place where parameters become arguments."""
    from pipeline.reid_stage import reid_stage_name

    seg, devices, gen, reid = params.segmentation, params.devices, params.generator, params.reid
    dataset = params.dataset
    run_dir = str(Path(params.run_dir).resolve())
    fingerprint = folder_fingerprint(dataset.source) if "ingest" in params.stages else ""
    fan_out = fan_out_settings(params)
    settings: dict[StageName, tuple[Task[..., StageStamp], dict[str, Any]]] = {
        "ingest": (
            ingest_stage,
            {
                "source": str(Path(dataset.source).resolve()),
                "kind": dataset.kind,
                "block_size": dataset.block_size,
                "overwrite": dataset.overwrite,
                "source_fingerprint": fingerprint,
            },
        ),
        "masks": (
            masks_stage,
            {
                "source": seg.masks_from,
                "annotations_dir": seg.annotations_dir,
                "batch_size": seg.masks_batch_size,
                "weights": seg.masks_weights,
                "device": devices.segmentation,
                "fan_out": fan_out,
            },
        ),
        "parsing": (
            parsing_stage,
            {
                "source": seg.parsing_from,
                "annotations_dir": seg.annotations_dir,
                "batch_size": seg.parsing_batch_size,
                "weights": seg.parsing_weights,
                "device": devices.segmentation,
                "flip": seg.parsing_flip,
                "fan_out": fan_out,
            },
        ),
        "pairs": (pairs_stage, params.pairs.model_dump()),
        "generator": (
            generator_stage,
            {
                "run_dir": run_dir,
                "preset": gen.preset,
                "overrides": set_fields(gen.overrides),
                "seed": params.seed,
                "max_steps": gen.max_steps,
                "resume": gen.resume,
                "device": devices.generator,
                "offline": "generator" in offline,
            },
        ),
        "evaluate": (
            evaluate_stage,
            {
                "run_dir": run_dir,
                "fid_variant": params.evaluate.fid_variant,
                "batch_size": params.evaluate.batch_size,
                "device": devices.evaluate,
                "offline": "evaluate" in offline,
            },
        ),
        "synthesize": (
            synthesize_stage,
            {
                "run_dir": run_dir,
                "alpha": params.alpha,
                "seed": params.synthesis_seed,
                "batch_size": params.synthesis_batch_size,
                "device": devices.synthesize,
                "fan_out": fan_out,
            },
        ),
    }
    nodes = [
        Node(group, group, task_, arguments, INPUTS[group])
        for group, (task_, arguments) in settings.items()
    ]
    reid_common = {
        "run_dir": run_dir,
        "arch": reid.arch,
        "preset": reid.preset,
        "model": set_fields(reid.model),
        "train": set_fields(reid.train),
        "seed": params.seed,
        "metrics": list(reid.metrics),
        "metric_options": reid.metric_options.model_dump(),
        "ap": reid.ap,
        "normalize_features": reid.normalize_features,
        "flip_features": reid.flip_features,
        "max_steps": reid.max_steps,
        "weights": reid.weights,
        "device": devices.reid,
        "offline": "reid" in offline,
    }
    reid_sets: tuple[tuple[StageName, int | None], ...] = (
        ("reid_original", None),
        ("reid_augmented", params.alpha),
    )
    for group, alpha in reid_sets:
        for kind in reid.kinds:
            name = reid_stage_name(kind, alpha)
            nodes.append(
                Node(
                    group,
                    name,
                    reid_task(name),
                    {**reid_common, "kind": kind, "alpha": alpha},
                    INPUTS[group],
                )
            )
    nodes.append(
        Node(
            "report",
            "report",
            report_stage,
            {"run_dir": run_dir, "offline": dict(offline)},
            INPUTS["report"],
        )
    )
    return nodes


def _stored_stamp(store_url: str, stage: str) -> StageStamp | None:
    try:
        return open_store(store_url).stamp(stage)
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def _placement(params: AugmentMarketParams, stage: str) -> Iterator[None]:
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


@flow(name="augment-market", validate_parameters=True)
def augment_market(params: AugmentMarketParams) -> dict[str, dict[str, str | None]]:
    """Turn a Re-ID dataset into an alpha-augmented one with SAN, and report (see module doc).

    Returns:
        stage -> ``{"digest": stamp digest or None, "status": "ran" | "cached" | "stored" |
        "missing"}``; ``stored``: not in ``stages``, its stamp read from the store.
    """
    logger = get_run_logger()
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
    results: dict[str, PrefectFuture[StageStamp] | StageStamp | None] = {}
    nodes = build_nodes(params, offline)
    for node in nodes:
        if node.group not in params.stages:
            results[node.name] = _stored_stamp(params.store_url, node.name)
            continue
        stage_fn = (
            node.task.with_options(refresh_cache=True)
            if node.group in params.refresh
            else node.task
        )
        upstream = {
            other.name: results[other.name] for other in nodes if other.group in node.inputs
        }
        # reid_original reads only ingest: holding it until synthesis keeps the GPU for the
        # generator and lets the two Re-ID trainings run side by side.
        wait_for = (
            [results["synthesize"]]
            if node.group == "reid_original"
            and isinstance(results.get("synthesize"), PrefectFuture)
            else []
        )
        with _placement(params, node.group):
            results[node.name] = stage_fn.submit(
                params.store_url, upstream, wait_for=wait_for, **node.settings
            )
    summary: dict[str, dict[str, str | None]] = {}
    stamps: dict[str, StageStamp | None] = {}
    for stage, value in results.items():
        stamp: StageStamp | None
        if isinstance(value, PrefectFuture):
            stamp = value.result()
            status = "cached" if value.state.name == "Cached" else "ran"
        else:
            stamp = value
            status = "stored" if value is not None else "missing"
        stamps[stage] = stamp
        digest = stamp.digest if stamp is not None else None
        summary[stage] = {"digest": digest, "status": status}
        logger.info("%-15s %-7s %s", stage, status, digest)
    _publish(stamps)
    return summary


def _publish(stamps: Mapping[str, StageStamp | None]) -> None:
    """Table artifacts from the metric stamps and the report as a Markdown artifact."""
    if (evaluate := stamps.get("evaluate")) is not None:
        publish_generator_table(evaluate)
    publish_reid_table(
        {
            name: stamp
            for name, stamp in stamps.items()
            if name.startswith("reid_") and stamp is not None
        }
    )
    report = stamps.get("report")
    if report is not None and Path(str(report.report.get("path", ""))).is_file():
        publish_report(Path(report.report["path"]).read_text())


def configured_flow(params: AugmentMarketParams) -> Any:
    """The flow with the task runner that ``params.runner`` asks for."""
    if params.runner.kind == "threads":
        return augment_market
    from prefect_dask import DaskTaskRunner

    if params.runner.dask_address:
        runner = DaskTaskRunner(address=params.runner.dask_address)
    else:
        resources = {"resources": {"GPU": 1}} if params.runner.gpu_resources else {}
        runner = DaskTaskRunner(
            cluster_kwargs={
                "n_workers": params.runner.dask_workers,
                "threads_per_worker": 1,
                "processes": params.runner.dask_processes,
                **resources,
            }
        )
    # DaskTaskRunner's futures subclass PrefectFuture; the stub's invariance rejects that.
    return augment_market.with_options(task_runner=runner)  # type: ignore[arg-type]


def run_from_config(
    source: str | Path | dict[str, Any] | AugmentMarketParams,
) -> dict[str, dict[str, str | None]]:
    """Run the whole DAG in this process, without a server (Prefect's ephemeral mode).

    Args:
        source: a YAML file (``demo.yaml``), a dict, or :class:`AugmentMarketParams`.
    Returns:
        The flow's summary: stage -> digest and status (ran / cached / stored / missing).
    """
    params = load_params(source)
    return configured_flow(params)(params)
