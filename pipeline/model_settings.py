"""The settings of the two trained models, and the one place each becomes its model's config:
:meth:`GeneratorSettings.san_config` (a :class:`san_model.config.SANConfig`) and
:meth:`ReidSettings.train_config` (a :class:`reid.config.TrainConfig`).

Built from the torch-free config dataclasses :mod:`san_model.config` and :mod:`reid.config`
(their fields, defaults and descriptions), so reading them loads no torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.settings import Settings, overrides_model, set_fields
from reid.config import ReIDModelConfig, TrainConfig, recipe
from san_model.config import SANConfig

# The seed is the run's (AugmentMarketParams.seed); Re-ID's kind and arch are ReidSettings
# fields.
GeneratorOverrides = overrides_model(
    "GeneratorOverrides", SANConfig, preset="market1501", exclude=("seed",)
)
ReidTrainOverrides = overrides_model(
    "ReidTrainOverrides", TrainConfig, preset="modern", exclude=("model", "seed")
)
ReidModelOverrides = overrides_model(
    "ReidModelOverrides", ReIDModelConfig, preset="modern", exclude=("kind", "arch")
)


class GeneratorSettings(Settings):
    """SAN training: a preset of ``san_model.config.SANConfig`` plus field overrides."""

    preset: Literal["market1501", "deepfashion", "demo", "tiny"] = Field(
        default="market1501",
        description="SANConfig preset: the paper's market1501 / deepfashion settings, the CPU "
        'demo (minutes on 2 cores: BENCHMARKS.md "Demo and Prefect"), or tiny (tests).',
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
        self.san_config()
        return self

    def san_config(self, *, seed: int | None = None, offline: bool = False) -> SANConfig:
        """The one SANConfig these settings make: the preset with the overrides.

        Args:
            seed: the run's seed (None: the preset's).
            offline: the declared offline mode: the perceptual loss off (no VGG-19 weights).
        """
        config = getattr(SANConfig, self.preset)(**set_fields(self.overrides))
        changes: dict[str, Any] = {} if seed is None else {"seed": seed}
        if offline:
            changes["use_perceptual"] = False
        return dataclasses.replace(config, **changes) if changes else config

    @property
    def uses_vgg(self) -> bool:
        """Whether training needs the ImageNet VGG-19 (the perceptual loss, eq. 6, is on)."""
        return self.san_config().use_perceptual


class XQDAOptions(Settings):
    """XQDA (Liao et al. 2015) as ``reid.metric_learning.XQDA``."""

    reg: float = Field(default=1e-3, description="Added to the intra-personal covariance.")
    max_dim: int | None = Field(
        default=None, ge=1, description="Cap on the subspace dimension (default: no cap)."
    )
    seed: int = Field(default=0, description="Seed of the training-pair split.")


class KISSMEOptions(Settings):
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


class MetricOptions(Settings):
    """Options of the learned metrics (Euclidean has none)."""

    xqda: XQDAOptions = Field(default_factory=XQDAOptions, description="XQDA options.")
    kissme: KISSMEOptions = Field(default_factory=KISSMEOptions, description="KISSME options.")


class ReidSettings(Settings):
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

    def train_config(self, kind: str, *, offline: bool = False) -> TrainConfig:
        """The one :class:`reid.train.TrainConfig` of model ``kind`` these settings make: its
        recipe (``reid.train.recipe``) with the model and training overrides; offline (the
        declared offline mode): a randomly initialised backbone. The seed is the run's."""
        base = recipe(kind, self.preset)
        model = {**set_fields(self.model), "kind": kind, "arch": self.arch}
        if offline:
            model["pretrained"] = False
        return dataclasses.replace(
            base, model=dataclasses.replace(base.model, **model), **set_fields(self.train)
        )

    def for_run(self, kind: str, set_name: str) -> ReidSettings:
        """These settings as one run of the comparison sees them: ``kinds`` and ``sets`` that
        run's alone, ``seeds`` 1, so that a run's settings (and cache key) do not change when
        other models, sets or seeds join the comparison."""
        return self.model_copy(update={"kinds": [kind], "sets": [set_name], "seeds": 1})
