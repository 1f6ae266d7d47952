"""The ``augment-market`` flow's parameters: one pydantic model, drawn as a form by the UI.

Everything a run needs is in :class:`AugmentMarketParams`; sub-models group the settings of
each stage, which live beside the stage registry (:mod:`pipeline.settings`,
:mod:`pipeline.model_settings`) so that the command line uses them without Prefect.
:func:`load_params` reads a YAML file (``demo.yaml``) or a dict into the model;
:func:`flows.graph.build_nodes` hands each stage its settings object.

One parameter, not one per top-level field: Prefect's ``--param key=value`` sets only top-level
keys, and a nested one (``generator``) given that way replaces the whole sub-object, silently
dropping its other settings (the demo's ``preset: demo`` would become ``market1501``). So every
change goes through ``augment-market submit DEPLOYMENT --set generator.max_steps=20``
(:mod:`flows.submit`), which merges dotted keys into the deployment's stored parameters and
validates the result with this model.

The form: every field has a one-line description and its default
(:class:`pipeline.settings.Settings`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, model_validator

from pipeline.model_settings import GeneratorSettings, ReidSettings
from pipeline.settings import (
    DatasetSettings,
    EvaluateSettings,
    PairsSettings,
    ReportSettings,
    SegmentationSettings,
    Settings,
    SynthesisSettings,
    field_of,
)
from pipeline.stage_registry import STAGE_NAMES, StageName

# Topological order of the DAG (also the order of the report and of the progress artifact).
STAGES: tuple[StageName, ...] = STAGE_NAMES


class DeviceSettings(Settings):
    """Torch device per stage group (``cpu``, ``cuda``, ``cuda:1``...)."""

    segmentation: str = Field(default="cuda", description="Device of Mask R-CNN and SCHP.")
    generator: str = Field(default="cuda", description="Device of SAN training.")
    evaluate: str = Field(default="cuda", description="Device of FID / LPIPS.")
    synthesize: str = Field(default="cuda", description="Device of the augmentation.")
    reid: str = Field(default="cuda", description="Device of Re-ID training and ranking.")


class RunnerSettings(Settings):
    """Where the tasks run: threads in the flow's process, or a Dask cluster."""

    kind: Literal["threads", "dask"] = Field(
        default="threads",
        description="`threads` of the flow's process, or `dask` (started by the flow run, on "
        "a worker or embedded alike).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler address of an existing cluster (default: a local one).",
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local Dask cluster.")
    dask_processes: bool = Field(
        default=True,
        description="Local cluster workers as processes (false: threads of this process).",
    )
    gpu_resources: bool = Field(
        default=False,
        description="Annotate GPU stages with Dask resources {GPU: 1} (workers started "
        "with --resources GPU=1 run one at a time each).",
    )
    blocks_per_task: int | None = Field(
        default=8,
        ge=1,
        description="Dask: masks, parsing and synthesis fan out over the workers in tasks of "
        "this many store blocks; none: each of those stages runs as one task.",
        json_schema_extra={"null_means": "no fan-out"},
    )


class AugmentMarketParams(Settings):
    """Every setting of one ``augment-market`` run."""

    dataset: DatasetSettings = Field(description="Where the images come from.")
    store_url: str = Field(description="Zarr store (local folder or fsspec URL).")
    run_dir: str = Field(description="Folder for checkpoints, metrics, figures and the report.")
    stages: list[StageName] = Field(
        default=list(STAGES),
        description="Stages to run; the others are read from the store's stamps.",
    )
    refresh: list[StageName] = Field(
        default=[], description="Stages to run even when their cache is valid."
    )
    segmentation: SegmentationSettings = Field(
        default_factory=SegmentationSettings, description="Masks and parsing."
    )
    pairs: PairsSettings = Field(
        default_factory=PairsSettings, description="Training and test pairs."
    )
    generator: GeneratorSettings = Field(
        default_factory=GeneratorSettings, description="SAN generator training."
    )
    evaluate: EvaluateSettings = Field(
        default_factory=EvaluateSettings, description="Generator evaluation."
    )
    # The synthesis stages' settings (pipeline.settings.SynthesisSettings), kept at the top.
    alpha: int = field_of(SynthesisSettings, "alpha")
    synthesis_seed: int = field_of(SynthesisSettings, "seed")
    synthesis_batch_size: int = field_of(SynthesisSettings, "batch_size")
    reid: ReidSettings = Field(default_factory=ReidSettings, description="Re-ID baselines.")
    devices: DeviceSettings = Field(
        default_factory=DeviceSettings, description="Torch device per stage group."
    )
    seed: int = Field(default=0, description="Seed of the generator and Re-ID training.")
    offline: Literal["auto"] | bool = Field(
        default="auto",
        description="true: run without pretrained weights (declared offline modes); "
        "auto: only where a weight file is missing; false: missing weights are an error.",
        json_schema_extra={
            "anyOf": [
                {"const": "auto", "type": "string", "title": "auto"},
                {"type": "boolean", "title": "always (true) / never (false)"},
            ]
        },
    )
    runner: RunnerSettings = Field(
        default_factory=RunnerSettings, description="Threads or a Dask cluster."
    )

    def stage_settings(self, stage: StageName) -> Settings:
        """The settings object of ``stage`` under these parameters (both Re-ID stages: the
        comparison's; one run's is its ``for_run``)."""
        if stage in ("masks", "parsing"):
            return self.segmentation.for_stage(stage)  # type: ignore[arg-type]
        if stage == "synthesize":
            return SynthesisSettings(
                alpha=self.alpha, seed=self.synthesis_seed, batch_size=self.synthesis_batch_size
            )
        if stage == "report":
            return ReportSettings()
        field = {"ingest": "dataset", "reid_original": "reid", "reid_augmented": "reid"}
        return getattr(self, field.get(stage, stage))  # type: ignore[no-any-return]

    @model_validator(mode="after")
    def _check_annotations(self) -> AugmentMarketParams:
        provided = "provided" in (self.segmentation.masks_from, self.segmentation.parsing_from)
        if provided and self.segmentation.annotations_dir is None:
            self.segmentation.annotations_dir = str(Path(self.dataset.source) / "annotations")
        return self


def load_params(source: str | Path | dict[str, Any] | AugmentMarketParams) -> AugmentMarketParams:
    """Read parameters from a YAML file, a dict, or pass a model through.

    Relative paths in a YAML file stay relative to the working directory (as the CLI's).

    Raises:
        pydantic.ValidationError: a field is missing, mistyped, or unknown.
    """
    if isinstance(source, AugmentMarketParams):
        return source
    if isinstance(source, dict):
        return AugmentMarketParams.model_validate(source)
    values = yaml.safe_load(Path(source).read_text())
    if not isinstance(values, dict):
        raise ValueError(
            f"{source}: expected a YAML mapping of parameters (`key: value` lines, as in "
            f"demo.yaml), found {type(values).__name__}"
        )
    return AugmentMarketParams.model_validate(values)
