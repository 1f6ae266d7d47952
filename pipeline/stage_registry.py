"""The stage registry: every stage of the pipeline declared once, in :data:`REGISTRY`.

A :class:`Stage` says what the stage reads (the edges of the DAG), its settings model (from
:mod:`pipeline.settings`), how to run it (a run adapter calling the plain function of
``pipeline/``), the pretrained files it needs under given settings, its declared offline mode
and whether it fans out over store blocks. Derived from it:

* the Prefect tasks (:mod:`flows.tasks`: one generic cached task per entry),
* the DAG's edges (:mod:`flows.graph`),
* the offline decisions and the weights check before a run (:mod:`flows.offline`),
* the CLI's stage commands (:mod:`augment_market.commands`), which build the same settings
  object from their options and call the same run adapter.

Every adapter imports its stage's module when called, so importing the registry costs neither
torch nor Prefect.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pipeline.settings import (
    DatasetSettings,
    EvaluateSettings,
    PairsSettings,
    ReportSettings,
    SegmentSettings,
    Settings,
    SynthesisSettings,
)

Progress = Callable[[int, int], None]  # progress(done, total)

if TYPE_CHECKING:
    from foundation.weights import WeightsFile
    from pipeline.fanout import FanOut
    from pipeline.model_settings import GeneratorSettings, ReidSettings
    from storage import PersonStore, StageStamp

StageName = Literal[
    "ingest",
    "masks",
    "parsing",
    "pairs",
    "generator",
    "evaluate",
    "synthesize",
    "reid_original",
    "reid_augmented",
    "report",
]
# Topological order of the DAG (also the order of the report and of the progress artifact).
STAGE_NAMES: tuple[StageName, ...] = get_args(StageName)


@dataclass(frozen=True)
class StageJob:
    """Where and how one stage run works, besides its settings.

    Attributes:
        store: the store, opened ``r+`` (``None`` for ingest, which creates it: ``store_url``).
        store_url: the store's URL.
        folder: the folder it works in besides the store (the generator's run folder for the
            generator, evaluate and synthesize; the Re-ID runs' folder; the report's); None
            where unused. A flow run's are :attr:`Stage.folder` inside its ``run_dir``.
        device: torch device (``cpu``, ``cuda``, ``cuda:1``).
        offline: run in the stage's declared offline mode.
        progress: called as ``progress(done, total)``.
        fan_out: where store blocks run (a Dask cluster); None: here.
        extra: what a stage's settings leave to the run: the run's ``seed`` (generator, Re-ID)
            and ``alpha`` (Re-ID), cache-only fingerprints; from the CLI a masks ``backend``,
            the generator's ``vgg_weights`` and ``overwrite`` (the flow's: True, its run
            folder is its own).
    """

    store: PersonStore | None
    store_url: str
    folder: Path | None = None
    device: str = "cpu"
    offline: bool = False
    progress: Progress | None = None
    fan_out: FanOut | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        """:attr:`folder` (the stages that have one)."""
        assert self.folder is not None, "this stage works in a folder: give one"
        return self.folder

    @property
    def opened(self) -> PersonStore:
        """The store (every stage but ingest has one)."""
        assert self.store is not None, "ingest creates the store: it has none yet"
        return self.store


@dataclass(frozen=True)
class Stage:
    """One stage of the pipeline (see module doc).

    Attributes:
        name: the group users list in ``stages`` and ``refresh``.
        inputs: stages whose stamps it reads: the DAG's edges, the digests in its cache key
            (of any of its runs: ``reads`` narrows them per run).
        settings: its settings model, or ``"module:Class"`` where importing it is heavy (see
            :func:`settings_model`); one instance travels from YAML or CLI to ``run``.
        run: ``run(settings, job) -> stamp`` (None on a non-zero torchrun rank).
        stamp_name: the stamp a run with these settings writes (``synthesize_copies``...).
        weights: the pretrained files a run with these settings needs: a stage with an
            offline mode runs without them in that mode, one without cannot start.
        weights_path: the file or folder its settings name for those files, the only place
            looked at for them (None: the weights folders).
        offline_mode: its declared offline mode (the reason logged and reported), if any.
        reads: the stages a run with these settings reads, where that depends on them.
        folder: where in a flow run's folder it works (``job.folder``): ``generator``,
            ``reid``, ``.`` (the run's folder itself); None: it needs none.
        note: a warning about these settings, shown before the stage runs.
        fans_out: its store blocks can run on a Dask cluster.
        device: which ``devices`` setting it runs on (None: no torch device).
        after: stages it starts after without reading them (order, not data).
    """

    name: StageName
    inputs: tuple[StageName, ...]
    settings: type[Settings] | str
    run: Callable[[Any, StageJob], StageStamp | None]
    stamp_name: Callable[[Any, Mapping[str, Any]], str] | None = None
    weights: Callable[[Any], list[WeightsFile]] | None = None
    weights_path: Callable[[Any], str | None] | None = None
    offline_mode: str | None = None
    reads: Callable[[Any], tuple[StageName, ...]] | None = None
    folder: str | None = None
    note: Callable[[Any], str | None] | None = None
    fans_out: bool = False
    device: str | None = None
    after: tuple[StageName, ...] = ()

    @property
    def offline_group(self) -> str:
        """The name its offline decision goes by: ``reid`` for both Re-ID stages."""
        return "reid" if self.name.startswith("reid_") else self.name

    def inputs_of(self, settings: Any) -> tuple[StageName, ...]:
        """The stages a run with ``settings`` reads."""
        return self.inputs if self.reads is None else self.reads(settings)

    def stamp(self, settings: Any, extra: Mapping[str, Any] | None = None) -> str:
        """The stamp a run of ``settings`` writes."""
        return self.name if self.stamp_name is None else self.stamp_name(settings, extra or {})


def _pick(source: Any, *names: str) -> dict[str, Any]:
    """``source``'s attributes ``names`` as keyword arguments: what an adapter passes on as
    it is from the settings or the job."""
    return {name: getattr(source, name) for name in names}


def _ingest(settings: DatasetSettings, job: StageJob) -> StageStamp:
    from pipeline.ingest import ingest

    return ingest(
        Path(settings.source),
        job.store_url,
        size=settings.image_size,
        progress=job.progress,
        **_pick(settings, "kind", "with_val", "official", "block_size", "overwrite"),
    )


def _segment(settings: SegmentSettings, job: StageJob) -> StageStamp:
    from pipeline import masks, parsing, segmentation

    if settings.source == "provided":
        return segmentation.import_provided(
            job.opened,
            str(settings.annotations_dir),
            kind=settings.kind,
            **_pick(job, "progress", "fan_out"),
        )
    if settings.kind == "masks":
        compute: Callable[..., StageStamp] = masks.compute_masks
    else:
        compute = functools.partial(parsing.compute_parsing, flip=settings.flip)
    return compute(
        job.opened,
        **_pick(settings, "batch_size", "weights"),
        **_pick(job, "device", "progress", "fan_out"),
        **job.extra,  # the CLI's masks backend
    )


def _segment_weights(settings: SegmentSettings) -> list[WeightsFile]:
    from pipeline.masks import MASKRCNN_COCO
    from pipeline.schp import SCHP_LIP

    if settings.source == "provided":
        return []
    return [MASKRCNN_COCO if settings.kind == "masks" else SCHP_LIP.file]


def _own_weights(settings: SegmentSettings | ReidSettings) -> str | None:
    return settings.weights


def _pairs(settings: PairsSettings, job: StageJob) -> StageStamp:
    from pipeline.pairs import sample_pairs

    return sample_pairs(job.opened, settings.config())


def _generator(settings: GeneratorSettings, job: StageJob) -> StageStamp | None:
    from pipeline.train_generator import train_generator

    return train_generator(
        job.opened,
        job.out,
        config=settings.san_config(seed=job.extra.get("seed"), offline=job.offline),
        device=job.device,
        resume=settings.resume,
        max_steps=settings.max_steps,
        vgg_weights=job.extra.get("vgg_weights"),
        # The flow's run folder is its own: changed settings train afresh, as its cache.
        overwrite=job.extra.get("overwrite", True),
        progress=job.progress,
    )


def _generator_weights(settings: GeneratorSettings) -> list[WeightsFile]:
    from san_model.checkpoint import VGG19_WEIGHTS

    return [VGG19_WEIGHTS] if settings.uses_vgg else []


def _generator_note(settings: GeneratorSettings) -> str | None:
    from pipeline.train_generator import shortened_schedule

    return shortened_schedule(settings.san_config(), settings.max_steps)


def _evaluate(settings: EvaluateSettings, job: StageJob) -> StageStamp:
    from pipeline.evaluate import evaluate_generator

    return evaluate_generator(
        job.opened,
        job.out,
        **_pick(settings, "fid_variant", "batch_size"),
        **_pick(job, "device", "offline", "progress"),
    )


def _evaluate_weights(settings: EvaluateSettings) -> list[WeightsFile]:
    from san_model.fid_inception import FID_INCEPTION_SPECS
    from san_model.metrics import ALEXNET_WEIGHTS

    return [FID_INCEPTION_SPECS[settings.fid_variant].weights, ALEXNET_WEIGHTS]


def _synthesize(settings: SynthesisSettings, job: StageJob) -> StageStamp:
    from pipeline.synthesize import synthesize

    return synthesize(
        job.opened,
        job.out if settings.source == "generator" else None,
        **_pick(settings, "source", "alpha", "seed", "batch_size"),
        **_pick(job, "device", "progress", "fan_out"),
    )


def _synthesis_reads(settings: SynthesisSettings) -> tuple[StageName, ...]:
    from pipeline.synthesize import SOURCE_INPUTS

    return tuple(SOURCE_INPUTS[settings.source])  # type: ignore[arg-type]


def _synthesis_stamp(settings: SynthesisSettings, extra: Mapping[str, Any]) -> str:
    from pipeline.augmentation_sets import synthesis_stage_name

    return synthesis_stage_name(settings.source)


def _reid(settings: ReidSettings, job: StageJob) -> StageStamp | None:
    """One run of the comparison: ``settings.for_run(kind, set_name)``'s model on its set,
    with the seed and alpha in ``job.extra``."""
    from pipeline.reid_compare import train_paired_run

    return train_paired_run(
        job.opened,
        job.out,
        config=settings.train_config(settings.kinds[0], offline=job.offline),
        set_name=settings.sets[0],
        metric_options=settings.metric_options.model_dump(),
        overwrite=True,  # as the generator's: the flow's run folder is its own
        alpha=job.extra["alpha"],
        seed=job.extra["seed"],
        **_pick(settings, "budget", "metrics", "ap", "normalize_features", "flip_features"),
        **_pick(settings, "max_steps", "weights"),
        **_pick(job, "device", "progress"),
    )


def _reid_stamp(settings: ReidSettings, extra: Mapping[str, Any]) -> str:
    from pipeline.reid_stage import reid_stage_name

    return reid_stage_name(
        settings.kinds[0],
        settings.sets[0],
        extra["seed"],
        equal_epochs=settings.budget == "equal-epochs",
    )


def _reid_weights(settings: ReidSettings) -> list[WeightsFile]:
    from reid.checkpoint import IMAGENET_WEIGHTS

    return [IMAGENET_WEIGHTS[settings.arch]]


def _report(settings: ReportSettings, job: StageJob) -> StageStamp:
    from pipeline.report import write_report

    return write_report(job.opened, job.out, offline=settings.offline)


REID_OFFLINE = "randomly initialised Re-ID backbone (ImageNet weights unavailable)"


def _reid_stage(name: StageName, inputs: tuple[StageName, ...], **more: Any) -> Stage:
    """``reid_original`` and ``reid_augmented``: one run adapter, two groups."""
    return Stage(
        name,
        inputs,
        "pipeline.model_settings:ReidSettings",
        _reid,
        stamp_name=_reid_stamp,
        weights=_reid_weights,
        weights_path=_own_weights,
        offline_mode=REID_OFFLINE,
        folder="reid",
        device="reid",
        **more,
    )


def _segment_stage(name: StageName) -> Stage:
    """``masks`` and ``parsing``: one run adapter, two groups."""
    return Stage(
        name,
        ("ingest",),
        SegmentSettings,
        _segment,
        weights=_segment_weights,
        weights_path=_own_weights,
        fans_out=True,
        device="segmentation",
    )


def settings_model(stage: Stage) -> type[Settings]:
    """The settings model of ``stage``, imported when named by path (the Re-ID one imports
    torch)."""
    if isinstance(stage.settings, str):
        module, _, name = stage.settings.partition(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]
    return stage.settings


REGISTRY: dict[StageName, Stage] = {
    stage.name: stage
    for stage in (
        Stage("ingest", (), DatasetSettings, _ingest),
        _segment_stage("masks"),
        _segment_stage("parsing"),
        Stage("pairs", ("ingest", "masks"), PairsSettings, _pairs),
        Stage(
            "generator",
            ("pairs", "masks", "parsing"),
            "pipeline.model_settings:GeneratorSettings",
            _generator,
            weights=_generator_weights,
            offline_mode="perceptual loss off (ImageNet VGG-19 weights unavailable)",
            folder="generator",
            note=_generator_note,
            device="generator",
        ),
        Stage(
            "evaluate",
            ("generator", "pairs"),
            EvaluateSettings,
            _evaluate,
            weights=_evaluate_weights,
            offline_mode="pixel metrics L1/SSIM/PSNR instead of FID/LPIPS/mask-LPIPS "
            "(Inception/AlexNet weights unavailable)",
            folder="generator",
            device="evaluate",
        ),
        Stage(
            "synthesize",
            ("ingest", "generator", "masks", "parsing"),
            SynthesisSettings,
            _synthesize,
            stamp_name=_synthesis_stamp,
            reads=_synthesis_reads,
            folder="generator",
            fans_out=True,
            device="synthesize",
        ),
        # Order without data: reid_original reads only ingest, but starting it after
        # synthesis keeps the GPU for the generator and lets the original and augmented
        # trainings run side by side.
        _reid_stage("reid_original", ("ingest",), after=("synthesize",)),
        _reid_stage("reid_augmented", ("ingest", "synthesize")),
        Stage("report", STAGE_NAMES[:-1], ReportSettings, _report, folder="."),
    )
}
assert tuple(REGISTRY) == STAGE_NAMES, "the registry lists the stages in the DAG's order"
