"""The ``augment-market`` flow's parameters: one pydantic model, drawn as a form by the UI.

Everything a run needs is in :class:`AugmentMarketParams`; sub-models group the settings of
each stage. :func:`load_params` reads a YAML file (``demo.yaml``) or a dict into the model. The
translation from these settings to each pipeline function's arguments happens in one place,
:func:`flows.graph.build_nodes`.

One parameter, not one per top-level field: Prefect's ``--param key=value`` sets only top-level
keys, and a nested one (``generator``) given that way replaces the whole sub-object, silently
dropping its other settings (the demo's ``preset: demo`` would become ``market1501``). So every
change goes through ``augment-market submit DEPLOYMENT --set generator.max_steps=20``
(:mod:`flows.submit`), which merges dotted keys into the deployment's stored parameters and
validates the result with this model.

The form: every field has a one-line description; its default is appended
(:func:`_form_schema`). An optional field whose default is None is drawn as its type alone (the
UI's "Omit value" leaves it unset) instead of a type-or-None switch whose None side shows only
'Property is type "None"'; where None has a meaning of its own the switch stays, its None side
titled with that meaning.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from pathlib import Path
from typing import Any, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveInt,
    create_model,
    field_validator,
    model_validator,
)

from foundation.fields import field_descriptions
from pipeline.datasets import dataset_names, get_dataset
from reid.config import ReIDModelConfig, TrainConfig
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


def _show(value: Any) -> str:
    """A default as the form's description shows it: ``64``, ``cuda``, ``[ide, siamese]``."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    return json.dumps(value)


def _form_schema(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Shape a settings model's JSON schema for Prefect's parameter form (see module doc).

    A field's ``json_schema_extra={"null_means": "..."}`` titles the None side of its
    type-or-None switch (optional fields whose default is not None).
    """
    for name, prop in schema.get("properties", {}).items():
        field = model.model_fields[name]
        null_means = prop.pop("null_means", None)
        options = prop.get("anyOf", [])
        typed = [option for option in options if option != {"type": "null"}]
        if len(typed) < len(options):
            if field.default is None:
                del prop["anyOf"]
                prop.pop("default", None)
                prop.update(typed[0] if len(typed) == 1 else {"anyOf": typed})
            else:
                prop["anyOf"] = [*typed, {"type": "null", "title": null_means or "none"}]
        description = str(prop.get("description", ""))
        if "default" in prop and "default" not in description.lower():
            if not isinstance(prop["default"], dict):
                prop["description"] = f"{description} Default: {_show(prop['default'])}."
        elif field.default is None and "default" not in description.lower():
            if "unset" not in description.lower():
                prop["description"] = f"{description} Default: unset."


class _Settings(BaseModel):
    """Unknown keys are typos (``ngff`` for ``ngf``): refused, naming the closest valid key."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_form_schema)

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


def _overrides_model(name: str, config: type, *, preset: str, exclude: tuple[str, ...] = ()) -> Any:
    """A settings model with every field of the frozen dataclass ``config`` optional.

    A field left unset (None) keeps the preset's value. Values are validated and coerced to the
    field's type (``1`` -> ``1.0`` for a float), so equal settings hash equally whatever the UI
    or a YAML file wrote. Generated from the dataclass so the two never drift apart; the
    descriptions are the dataclass's field descriptions and the value of ``preset`` (the
    dataclass defaults).
    """
    hints = typing.get_type_hints(config)
    comments = field_descriptions(config)
    defaults = {f.name: getattr(config(), f.name) for f in dataclasses.fields(config)}
    fields = {
        f.name: (
            hints[f.name] | None,
            Field(
                default=None,
                description=f"{comments.get(f.name, f'{config.__name__}.{f.name}.')} "
                f"Unset: the preset's value ({preset}: {_show(defaults[f.name])}).",
            ),
        )
        for f in dataclasses.fields(config)
        if f.name not in exclude
    }
    return create_model(name, __base__=_Settings, __doc__=config.__doc__, **fields)  # type: ignore[call-overload]


# The seed is the run's (AugmentMarketParams.seed); kind and arch are ReidSettings fields.
GeneratorOverrides = _overrides_model(
    "GeneratorOverrides", SANConfig, preset="market1501", exclude=("seed",)
)
ReidTrainOverrides = _overrides_model(
    "ReidTrainOverrides", TrainConfig, preset="modern", exclude=("model", "seed")
)
ReidModelOverrides = _overrides_model(
    "ReidModelOverrides", ReIDModelConfig, preset="modern", exclude=("kind", "arch")
)


def set_fields(overrides: BaseModel) -> dict[str, Any]:
    """The fields an overrides model sets, as plain values (lists become tuples)."""
    values = overrides.model_dump(exclude_none=True)
    return {key: tuple(v) if isinstance(v, list) else v for key, v in values.items()}


class DatasetSettings(_Settings):
    """Where the images come from and how they are stored."""

    source: str = Field(
        description="Dataset folder in the layout of `kind` (docs/datasets.md); relative "
        "paths start at the worker's project folder."
    )
    kind: str = Field(
        default="market1501",
        description="Dataset and folder layout of `source` (docs/datasets.md); every kind but "
        "market1501 is stretched to the store's size. cuhk03_*: CUHK03-NP's detected or "
        "labeled boxes.",
        json_schema_extra={"enum": list(dataset_names())},
    )
    synthetic: bool = Field(
        default=False,
        description="Write the synthetic Market-1501-layout dataset to `source` first "
        "(demo and tests; ground-truth masks and parsing land in `source/annotations`).",
    )
    synthetic_ids: int = Field(default=24, ge=2, description="Synthetic dataset: identities.")
    synthetic_images_per_id: int = Field(
        default=8, ge=2, description="Synthetic dataset: images per identity."
    )
    block_size: int = Field(
        default=64, ge=1, description="Images per Zarr chunk and per stage block."
    )
    overwrite: bool = Field(default=False, description="Replace a store built from other images.")
    image_size: tuple[PositiveInt, PositiveInt] | None = Field(
        default=None,
        description="Store size [height, width] (default: market1501 128x64, deepfashion "
        "256x256, the others 256x128; docs/datasets.md).",
    )
    with_val: bool = Field(
        default=False,
        description="msmt17: train on list_train + list_val (32,621 images) instead of "
        "list_train (30,248), the toolkits' default.",
    )

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        """A kind of the dataset registry (:data:`pipeline.datasets.DATASETS`)."""
        return get_dataset(kind).name


class SegmentationSettings(_Settings):
    """Masks (Mask R-CNN) and parsing (SCHP), or PNGs provided with the dataset."""

    masks_from: Literal["model", "provided"] = Field(
        default="model",
        description="Person masks: `model` (Mask R-CNN, needs its weights) or `provided` PNGs.",
    )
    parsing_from: Literal["model", "provided"] = Field(
        default="model",
        description="LIP parsing: `model` (SCHP, needs its weights) or `provided` PNGs.",
    )
    annotations_dir: str | None = Field(
        default=None,
        description="Folder with masks/*.png and parsing/*.png named like the images "
        "(needed when either source is `provided`; default: `source/annotations`).",
    )
    masks_batch_size: int = Field(default=64, ge=1, description="Mask R-CNN images per batch.")
    parsing_batch_size: int = Field(default=32, ge=1, description="SCHP images per batch.")
    parsing_flip: bool = Field(default=False, description="SCHP flip test-time augmentation.")
    masks_weights: str | None = Field(
        default=None,
        description="Mask R-CNN checkpoint file or folder (default: the weights folders).",
    )
    parsing_weights: str | None = Field(
        default=None,
        description="SCHP LIP checkpoint file or folder (default: the weights folders).",
    )


class PairsSettings(_Settings):
    """Same-identity (source, target) pairs, train and test identities disjoint."""

    train_pairs: int | None = Field(
        default=243_200,
        ge=1,
        description="Training pairs drawn (paper: 243,200); none: every ordered pair.",
        json_schema_extra={"null_means": "every pair"},
    )
    test_pairs: int | None = Field(
        default=12_000,
        ge=1,
        description="Test pairs drawn (paper: 12,000); none: every ordered pair.",
        json_schema_extra={"null_means": "every pair"},
    )
    seed: int = Field(default=0, description="Seed of the pair draw.")
    skip_empty_masks: bool = Field(
        default=True, description="Leave out images whose person mask is empty (drawn pairs)."
    )
    train_pairs_file: str | None = Field(
        default=None,
        description="PATN/GFLA from,to list of training pairs, used as given instead of a draw "
        "(docs/pairs.md).",
    )
    test_pairs_file: str | None = Field(
        default=None,
        description="PATN/GFLA from,to list of test pairs, e.g. market-pairs-test.csv, used as "
        "given instead of a draw (docs/pairs.md).",
    )
    test_from: Literal["gallery", "gallery+query"] = Field(
        default="gallery",
        description="Splits of drawn test pairs: gallery only (bounding_box_test, as "
        "PATN/GFLA) or gallery and query.",
    )


class GeneratorSettings(_Settings):
    """SAN training: a preset of ``san_model.config.SANConfig`` plus field overrides."""

    preset: Literal["market1501", "deepfashion", "demo", "tiny"] = Field(
        default="market1501",
        description="SANConfig preset: the paper's market1501 / deepfashion settings, the CPU "
        "demo (about 4 minutes on 2 cores), or tiny (tests).",
    )
    overrides: GeneratorOverrides = Field(  # type: ignore[valid-type]
        default_factory=GeneratorOverrides,
        description="SANConfig fields to change, e.g. {epochs: 10, use_perceptual: false}.",
    )
    max_steps: int | None = Field(
        default=None,
        ge=1,
        description="Stop after this many optimiser steps (default: the whole schedule). The "
        "learning rate still decays over the whole schedule (the run logs a warning); lower "
        "overrides.epochs to shorten the schedule itself.",
    )
    resume: bool = Field(default=True, description="Continue from the run folder's checkpoint.")

    @model_validator(mode="after")
    def _check_generator(self) -> GeneratorSettings:
        # SANConfig checks its fields together (widths, image size, schedule): a setting that
        # cannot build a generator is refused here, not when the generator stage starts.
        getattr(SANConfig, self.preset)(**set_fields(self.overrides))
        return self


class EvaluateSettings(_Settings):
    """FID / LPIPS / mask-LPIPS of the generator on the test pairs."""

    fid_variant: Literal["torchvision", "tf-fid"] = Field(
        default="torchvision",
        description="torchvision Inception (GFLA protocol, the paper's table) or TF-FID.",
    )
    batch_size: int = Field(default=64, ge=1, description="Test pairs per batch.")


class XQDAOptions(_Settings):
    """XQDA (Liao et al. 2015) as ``reid.metric_learning.XQDA``."""

    reg: float = Field(default=1e-3, description="Added to the intra-personal covariance.")
    max_dim: int | None = Field(
        default=None, ge=1, description="Cap on the subspace dimension (default: no cap)."
    )
    seed: int = Field(default=0, description="Seed of the training-pair split.")


class KISSMEOptions(_Settings):
    """KISSME (Koestinger et al. 2012) as ``reid.metric_learning.KISSME``."""

    pca_dim: int | None = Field(
        default=200,
        ge=1,
        description="PCA dimensions first (IDE baseline: 200); none: no PCA. At most the "
        "training images minus one: a larger size is refused before training.",
        json_schema_extra={"null_means": "no PCA"},
    )
    reg: float = Field(default=1e-6, description="Added to both covariances.")
    seed: int = Field(default=0, description="Seed of the random negative pairs.")


class MetricOptions(_Settings):
    """Options of the learned metrics (Euclidean has none)."""

    xqda: XQDAOptions = Field(default_factory=XQDAOptions, description="XQDA options.")
    kissme: KISSMEOptions = Field(default_factory=KISSMEOptions, description="KISSME options.")


class ReidSettings(_Settings):
    """Re-ID baselines trained on the original set and on augmentation sets, compared with
    paired seeds and an equal budget (``pipeline.reid_compare``)."""

    sets: list[Literal["original", "copies", "flip", "paint-by-parts", "generator"]] = Field(
        default=["original", "copies", "paint-by-parts", "generator"],
        description="Training sets: the real images alone (original), or with the alpha "
        "set made from one target-pose draw by copying, mirroring, painting by parts or "
        "the generator. Verdicts read each set against copies.",
    )
    seeds: int = Field(
        default=1,
        ge=1,
        description="Paired seeds per (model, set), from the run's seed; 2 or more give 95% "
        "intervals and verdicts, 1 gives neither.",
    )
    budget: Literal["equal-steps", "equal-epochs"] = Field(
        default="equal-steps",
        description="equal-steps: every set gets the original set's optimiser steps; "
        "equal-epochs: the same epochs, alpha times the steps on an alpha-times set.",
    )
    kinds: list[Literal["ide", "siamese", "bot"]] = Field(
        default=["ide", "siamese"],
        description="Baselines to train: IDE (classifier), Siamese (+ verification) and/or "
        "bot (Bag of Tricks: BNNeck, triplet loss, always its own recipe).",
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
    metrics: list[Literal["euclidean", "xqda", "kissme"]] = Field(
        default=["euclidean", "xqda", "kissme"],
        description="Distances each trained model is ranked with.",
    )
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
        default=None, ge=1, description="Stop training after this many steps (default: all)."
    )
    weights: str | None = Field(
        default=None,
        description="ImageNet backbone weight file or folder (default: the weights folders).",
    )


class DeviceSettings(_Settings):
    """Torch device per stage group (``cpu``, ``cuda``, ``cuda:1``...)."""

    segmentation: str = Field(default="cuda", description="Device of Mask R-CNN and SCHP.")
    generator: str = Field(default="cuda", description="Device of SAN training.")
    evaluate: str = Field(default="cuda", description="Device of FID / LPIPS.")
    synthesize: str = Field(default="cuda", description="Device of the augmentation.")
    reid: str = Field(default="cuda", description="Device of Re-ID training and ranking.")


class RunnerSettings(_Settings):
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


class AugmentMarketParams(_Settings):
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
    alpha: int = Field(
        default=2, ge=2, description="Augmentation factor: alpha - 1 new images per image."
    )
    synthesis_seed: int = Field(default=0, description="Seed of the target-pose draw.")
    synthesis_batch_size: int = Field(default=64, ge=1, description="Images generated per batch.")
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
