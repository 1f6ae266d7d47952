"""The pipeline's stages as cached, retried Prefect tasks: one thin wrapper per stage function.

Each task calls one plain function of ``pipeline/`` with a :class:`flows.progress.StageProgress`
and returns its :class:`storage.StageStamp`; nothing here knows how a stage works. A task's
arguments besides ``store_url`` and ``upstream`` are its settings (built from the parameters in
:func:`flows.graph.build_nodes`); ``upstream`` holds the stamps it reads, for the cache key
(:class:`flows.caching.StageCachePolicy`).

Retries: up to :data:`RETRIES` times, only for transient I/O errors (:func:`is_transient`);
bad input (``ValueError``, ``StoreValidationError``, a missing file) fails at once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

from prefect import Task, get_run_logger, task
from prefect.states import State

from flows.caching import StageCachePolicy
from flows.dask_runner import FanOutSettings, dask_fan_out
from flows.progress import StageProgress, TrainingWatch, Watch
from foundation.progress import LogTail
from storage import StageStamp, open_store

RETRIES = 2
RETRY_DELAY_SECONDS = 10

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


def named(stage_fn: Task[..., StageStamp], stamp_name: str) -> Task[..., StageStamp]:
    """A task serving several stamps (segmentation, Re-ID) named and cached as ``stamp_name``."""
    return stage_fn.with_options(name=stamp_name, cache_policy=StageCachePolicy(stage=stamp_name))


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
    image_size: tuple[int, int] | None = None,
    with_val: bool = False,
    official: bool = True,
) -> StageStamp:
    """Read the dataset folder into the store. ``source_fingerprint`` is for the cache key."""
    from pipeline.ingest import ingest

    return run_stage(
        "ingest",
        lambda progress: ingest(
            Path(source),
            store_url,
            kind=kind,  # type: ignore[arg-type]
            size=None if image_size is None else (image_size[0], image_size[1]),
            with_val=with_val,
            official=official,
            block_size=block_size,
            overwrite=overwrite,
            progress=progress,
        ),
    )


@stage_task("segmentation")
def segmentation_stage(
    store_url: str,
    upstream: Upstream,
    *,
    kind: str,
    source: str,
    annotations_dir: str | None,
    batch_size: int,
    weights: str | None,
    device: str,
    flip: bool,
    fan_out: FanOutSettings = None,
) -> StageStamp:
    """Masks (``kind`` masks: Mask R-CNN) or parsing (``kind`` parsing: SCHP), or the provided
    PNGs (``source`` provided). Named and cached per kind by :func:`named`."""
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

    return run_stage(kind, run)


@stage_task("pairs")
def pairs_stage(
    store_url: str,
    upstream: Upstream,
    *,
    train_pairs: int | None,
    test_pairs: int | None,
    seed: int,
    skip_empty_masks: bool,
    train_pairs_file: str | None = None,
    test_pairs_file: str | None = None,
    test_from: str = "gallery",
    lists_sha256: dict[str, str | None] | None = None,
) -> StageStamp:
    """Same-identity training and test pairs, drawn or from published lists.
    ``lists_sha256`` (each list's content) is for the cache key."""
    from pipeline.pairs import PairsConfig, sample_pairs

    config = PairsConfig(
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        seed=seed,
        skip_empty_masks=skip_empty_masks,
        train_pairs_file=train_pairs_file,
        test_pairs_file=test_pairs_file,
        test_from=test_from,  # type: ignore[arg-type]
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
    """Train SAN; offline: perceptual loss off (no VGG-19 weights needed). Sample grids and
    losses reach the UI while it trains (:class:`flows.progress.TrainingWatch`)."""
    from pipeline.train_generator import shortened_schedule, train_generator
    from san_model.config import SANConfig

    settings = {"seed": seed, **overrides}
    if offline:
        settings["use_perceptual"] = False
    # from_dict turns YAML lists back into the config's tuples (image_size, betas).
    config = SANConfig.from_dict({**getattr(SANConfig, preset)().to_dict(), **settings})
    if (note := shortened_schedule(config, max_steps)) is not None:
        get_run_logger().warning("generator: %s", note)
    out = Path(run_dir) / "generator"
    return run_stage(
        "generator",
        lambda progress: train_generator(
            open_store(store_url, mode="r+"),
            out,
            config=config,
            device=device,
            resume=resume,
            max_steps=max_steps,
            pretrained_vgg=not offline,
            # The flow's run folder is its own: changed settings train afresh, as its cache.
            overwrite=True,
            progress=progress,
        ),
        watch=TrainingWatch(out),
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

    return run_stage(
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
    source: str,
    alpha: int,
    seed: int,
    batch_size: int,
    device: str,
    fan_out: FanOutSettings = None,
) -> StageStamp:
    """One augmentation set: the generator's (``synthesize``), or a control made from the
    same target-pose draw (``synthesize_copies``...; named and cached by :func:`named`)."""
    from pipeline.augmentation_sets import synthesis_stage_name
    from pipeline.synthesize import synthesize

    def run(progress: StageProgress) -> StageStamp:
        with dask_fan_out(fan_out) as blocks:
            return synthesize(
                open_store(store_url, mode="r+"),
                Path(run_dir) / "generator" if source == "generator" else None,
                source=source,  # type: ignore[arg-type]
                alpha=alpha,
                seed=seed,
                device=device,
                batch_size=batch_size,
                progress=progress,
                fan_out=blocks,
            )

    return run_stage(synthesis_stage_name(source), run)


@stage_task("reid")
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
    set_name: str,
    alpha: int | None,
    budget: str,
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
    """One Re-ID baseline (IDE, Siamese or BoT) on one training set with one seed of the
    comparison (``pipeline.reid_compare.train_paired_run``); offline: random backbone. Named
    and cached per stamp (``reid_ide_copies_s0``...) by :func:`named`."""
    from pipeline.reid_compare import train_paired_run
    from pipeline.reid_stage import reid_stage_name
    from reid.train import recipe

    base = recipe(kind, preset)
    pretrained = not offline and model.get("pretrained", base.model.pretrained)
    architecture = dataclasses.replace(
        base.model, **{**model, "kind": kind, "arch": arch, "pretrained": pretrained}
    )
    # Tuples again: the flow passes JSON values (lr_milestones arrives as a list).
    changes: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in train.items()}
    config = dataclasses.replace(base, model=architecture, **changes)
    return run_stage(
        reid_stage_name(kind, set_name, seed, equal_epochs=budget == "equal-epochs"),
        lambda progress: train_paired_run(
            open_store(store_url, mode="r+"),
            Path(run_dir) / "reid",
            config=config,
            set_name=set_name,
            alpha=alpha,
            seed=seed,
            budget=budget,  # type: ignore[arg-type]
            metrics=metrics,
            metric_options=metric_options,
            ap=ap,
            normalize_features=normalize_features,
            flip_features=flip_features,
            device=device,
            max_steps=max_steps,
            weights=weights,
            overwrite=True,  # as the generator's: the flow's run folder is its own
            progress=progress,
        ),
        watch=LogTail("reid.train"),
    )


@stage_task("report")
def report_stage(
    store_url: str,
    upstream: Upstream,
    *,
    run_dir: str,
    offline: dict[str, str],
) -> StageStamp:
    """The Markdown report of every finished stage, offline declarations first, then this
    run's pictures (all inside ``run_dir``)."""
    from pipeline.report import write_report

    return write_report(open_store(store_url, mode="r+"), run_dir, offline=offline)
