"""The ``augment-market`` flow's parameters: one pydantic model, drawn as a form by the UI.

Everything a run needs is in :class:`AugmentMarketParams`; sub-models group the settings of
each stage. :func:`load_params` reads a YAML file (``demo.yaml``) or a dict into the model. The
translation from these settings to each pipeline function's arguments happens in one place,
``flows/dag.py``.
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from reid.models import ReIDModelConfig
from reid.train import TrainConfig
from san_model.config import SANConfig

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
STAGES: tuple[StageName, ...] = get_args(StageName)


class _Settings(BaseModel):
    """Unknown keys are typos (``ngff`` for ``ngf``): refused, naming the closest valid key."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_unknown_keys(cls, values: Any) -> Any:
        if isinstance(values, dict):
            unknown = [key for key in values if key not in cls.model_fields]
            if unknown:
                valid = sorted(cls.model_fields)
                named = []
                for key in unknown:
                    close = difflib.get_close_matches(str(key), valid, n=1)
                    named.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
                raise ValueError(
                    f"unknown setting {', '.join(named)}; valid settings: {', '.join(valid)}"
                )
        return values


def _overrides_model(name: str, config: type, *, exclude: tuple[str, ...] = ()) -> Any:
    """A settings model with every field of the frozen dataclass ``config`` optional.

    A field left unset (None) keeps the preset's value. Values are validated and coerced to the
    field's type (``1`` -> ``1.0`` for a float), so equal settings hash equally whatever the UI
    or a YAML file wrote. Generated from the dataclass so the two never drift apart.
    """
    hints = typing.get_type_hints(config)
    fields = {
        f.name: (
            hints[f.name] | None,
            Field(default=None, description=f"{config.__name__}.{f.name} (unset: the preset's)."),
        )
        for f in dataclasses.fields(config)
        if f.name not in exclude
    }
    return create_model(name, __base__=_Settings, __doc__=config.__doc__, **fields)  # type: ignore[call-overload]


# The seed is the run's (AugmentMarketParams.seed); kind and arch are ReidSettings fields.
GeneratorOverrides = _overrides_model("GeneratorOverrides", SANConfig, exclude=("seed",))
ReidTrainOverrides = _overrides_model("ReidTrainOverrides", TrainConfig, exclude=("model", "seed"))
ReidModelOverrides = _overrides_model(
    "ReidModelOverrides", ReIDModelConfig, exclude=("kind", "arch")
)


def set_fields(overrides: BaseModel) -> dict[str, Any]:
    """The fields an overrides model sets, as plain values (lists become tuples)."""
    values = overrides.model_dump(exclude_none=True)
    return {key: tuple(v) if isinstance(v, list) else v for key, v in values.items()}


class DatasetSettings(_Settings):
    """Where the images come from and how they are stored."""

    source: str = Field(description="Dataset folder (Market-1501 or DeepFashion In-shop layout).")
    kind: Literal["market1501", "deepfashion"] = "market1501"
    synthetic: bool = Field(
        default=False,
        description="Write the synthetic Market-1501-layout dataset to `source` first "
        "(demo and tests; ground-truth masks and parsing land in `source/annotations`).",
    )
    synthetic_ids: int = Field(default=24, ge=2, description="Synthetic dataset: identities.")
    synthetic_images_per_id: int = Field(
        default=8, ge=2, description="Synthetic dataset: images/id."
    )
    block_size: int = Field(
        default=64, ge=1, description="Images per Zarr chunk and per stage block."
    )
    overwrite: bool = Field(default=False, description="Replace a store built from other images.")


class SegmentationSettings(_Settings):
    """Masks (Mask R-CNN) and parsing (SCHP), or PNGs provided with the dataset."""

    masks_from: Literal["model", "provided"] = "model"
    parsing_from: Literal["model", "provided"] = "model"
    annotations_dir: str | None = Field(
        default=None,
        description="Folder with masks/*.png and parsing/*.png named like the images "
        "(needed when either source is 'provided'; default: <source>/annotations).",
    )
    masks_batch_size: int = Field(default=64, ge=1)
    parsing_batch_size: int = Field(default=32, ge=1)
    parsing_flip: bool = Field(default=False, description="SCHP flip test-time augmentation.")
    masks_weights: str | None = Field(
        default=None, description="Mask R-CNN checkpoint file or folder."
    )
    parsing_weights: str | None = Field(
        default=None, description="SCHP LIP checkpoint file or folder."
    )


class PairsSettings(_Settings):
    """Same-identity (source, target) pairs; None takes every ordered pair."""

    train_pairs: int | None = 243_200
    test_pairs: int | None = 12_000
    seed: int = 0
    skip_empty_masks: bool = True


class GeneratorSettings(_Settings):
    """SAN training: a preset of ``san_model.config.SANConfig`` plus field overrides."""

    preset: Literal["market1501", "deepfashion", "demo", "tiny"] = Field(
        default="market1501",
        description="SANConfig preset: the paper's market1501 / deepfashion settings, the CPU "
        "demo, or tiny (tests).",
    )
    overrides: GeneratorOverrides = Field(  # type: ignore[valid-type]
        default_factory=GeneratorOverrides,
        description="SANConfig fields to change, e.g. {epochs: 10, use_perceptual: false}.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many optimiser steps (default: whole schedule).",
    )
    resume: bool = Field(default=True, description="Continue from the run folder's checkpoint.")


class EvaluateSettings(_Settings):
    """FID / LPIPS / mask-LPIPS of the generator on the test pairs."""

    fid_variant: Literal["torchvision", "tf-fid"] = Field(
        default="torchvision",
        description="torchvision Inception (GFLA protocol, the paper's table) or TF-FID.",
    )
    batch_size: int = Field(default=64, ge=1)


class XQDAOptions(_Settings):
    """XQDA (Liao et al. 2015) as ``reid.metric_learning.XQDA``."""

    reg: float = Field(default=1e-3, description="Added to the intra-personal covariance.")
    max_dim: int | None = Field(default=None, description="Cap on the subspace dimension.")
    seed: int = Field(default=0, description="Seed of the training-pair split.")


class KISSMEOptions(_Settings):
    """KISSME (Koestinger et al. 2012) as ``reid.metric_learning.KISSME``."""

    pca_dim: int | None = Field(
        default=200, description="PCA dimensions first (IDE baseline: 200; null: none)."
    )
    reg: float = Field(default=1e-6, description="Added to both covariances.")
    seed: int = Field(default=0, description="Seed of the random negative pairs.")


class MetricOptions(_Settings):
    """Options of the learned metrics (Euclidean has none)."""

    xqda: XQDAOptions = XQDAOptions()
    kissme: KISSMEOptions = KISSMEOptions()


class ReidSettings(_Settings):
    """Re-ID baselines trained on the original and the augmented set (``reid.train``)."""

    kinds: list[Literal["ide", "siamese"]] = Field(
        default=["ide", "siamese"],
        description="Baselines to train: IDE (classifier) and/or Siamese (+ verification).",
    )
    arch: Literal["resnet50", "resnet18"] = Field(
        default="resnet50",
        description="Backbone: the paper's ResNet-50, or ResNet-18 for CPU demos.",
    )
    preset: Literal["modern", "ide_original"] = Field(
        default="modern",
        description="Re-ID recipe: modern (ResNet-50 softmax baseline) or ide_original (the "
        "IDE-baseline Caffe recipe: 224x224, batch 16, lr 1e-3, ~50k iterations).",
    )
    model: ReidModelOverrides = Field(  # type: ignore[valid-type]
        default_factory=ReidModelOverrides,
        description="ReIDModelConfig fields to change, e.g. {last_stride: 1}.",
    )
    train: ReidTrainOverrides = Field(  # type: ignore[valid-type]
        default_factory=ReidTrainOverrides,
        description="TrainConfig fields to change, e.g. {epochs: 60, batch_size: 32, "
        "freeze_bn_stats: true}.",
    )
    metrics: list[Literal["euclidean", "xqda", "kissme"]] = ["euclidean", "xqda", "kissme"]
    metric_options: MetricOptions = Field(
        default_factory=lambda: MetricOptions(),
        description="Per-metric options, e.g. {kissme: {pca_dim: 64}}.",
    )
    normalize_features: bool = Field(
        default=True, description="L2-normalise features before every metric (IDE baseline)."
    )
    flip_features: bool = Field(
        default=False, description="Average each image's feature with its mirror image's."
    )
    ap: Literal["standard", "trapezoid"] = Field(
        default="standard", description="AP definition: non-interpolated (torchreid) or trapezoid."
    )
    max_steps: int | None = Field(
        default=None, ge=1, description="Stop training after this many steps."
    )
    weights: str | None = Field(
        default=None, description="ImageNet backbone weight file or folder."
    )


class DeviceSettings(_Settings):
    """Torch device per stage group (``cpu``, ``cuda``, ``cuda:1``...)."""

    segmentation: str = "cuda"
    generator: str = "cuda"
    evaluate: str = "cuda"
    synthesize: str = "cuda"
    reid: str = "cuda"


class RunnerSettings(_Settings):
    """Where the tasks run: threads in the flow's process, or a Dask cluster."""

    kind: Literal["threads", "dask"] = "threads"
    dask_address: str | None = Field(
        default=None, description="Scheduler address of an existing cluster (default: a local one)."
    )
    dask_workers: int = Field(default=2, ge=1, description="Workers of the local Dask cluster.")
    dask_processes: bool = Field(
        default=True,
        description="Local cluster workers as processes (false: threads of this process).",
    )
    gpu_resources: bool = Field(
        default=False,
        description="Annotate GPU stages with Dask resources {'GPU': 1} (workers started "
        "with --resources GPU=1 run one at a time each).",
    )
    blocks_per_task: int | None = Field(
        default=8,
        ge=1,
        description="Dask: masks, parsing and synthesis fan out over the workers in tasks of "
        "this many store blocks (null: each of those stages runs as one task).",
    )


class AugmentMarketParams(_Settings):
    """Every setting of one ``augment-market`` run."""

    dataset: DatasetSettings
    store_url: str = Field(description="Zarr store (local folder or fsspec URL).")
    run_dir: str = Field(description="Folder for checkpoints, metrics, figures and the report.")
    stages: list[StageName] = Field(
        default=list(STAGES),
        description="Stages to run; the others are read from the store's stamps.",
    )
    refresh: list[StageName] = Field(
        default=[], description="Stages to run even when their cache is valid."
    )
    segmentation: SegmentationSettings = SegmentationSettings()
    pairs: PairsSettings = PairsSettings()
    generator: GeneratorSettings = GeneratorSettings()
    evaluate: EvaluateSettings = EvaluateSettings()
    alpha: int = Field(
        default=2, ge=2, description="Augmentation factor: alpha - 1 new images each."
    )
    synthesis_seed: int = Field(default=0, description="Seed of the target-pose draw.")
    synthesis_batch_size: int = Field(default=64, ge=1)
    reid: ReidSettings = ReidSettings()
    devices: DeviceSettings = DeviceSettings()
    seed: int = Field(default=0, description="Seed of the generator and Re-ID training.")
    offline: Literal["auto"] | bool = Field(
        default="auto",
        description="true: run without pretrained weights (declared offline modes); "
        "auto: only where a weight file is missing; false: missing weights are an error.",
    )
    runner: RunnerSettings = RunnerSettings()

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
        raise ValueError(f"{source}: expected a YAML mapping of parameters")
    return AugmentMarketParams.model_validate(values)
