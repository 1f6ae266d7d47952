"""Re-ID settings, torch-free: :class:`ReIDModelConfig` (the network), :class:`TrainConfig`,
its named recipes and what a resume must match.

Two named recipes (:class:`TrainConfig` presets). ``modern`` (the defaults): the ResNet-50
softmax baseline as trained today: resize to 256x128, random horizontal flip, zero-pad 10 +
random crop, random erasing (Zhong et al. 2020), label smoothing, batch 32, SGD momentum 0.9 /
weight decay 5e-4 with a 10x smaller learning rate on the pretrained backbone (or AMSGrad), step
schedule. ``ide_original``: the IDE-baseline repository's ResNet-50 recipe (Zheng et al. 2016;
zhunzhong07/IDE-baseline-Market-1501, Caffe): 224x224 inputs, flip only, batch 16, lr 1e-3 on
every layer, about 50,000 iterations with a 10x step at 20,000, no dropout, BatchNorm
statistics frozen; see :meth:`TrainConfig.ide_original` for what still differs. ``bot``: Bag of
Tricks (Luo et al. 2019), the recipe of the ``bot`` network.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from foundation.fields import HELP, described

# Pooled feature dimension of each backbone.
FEATURE_DIMS = {"resnet50": 2048, "resnet18": 512}


@dataclass(frozen=True)
class ReIDModelConfig:
    """Architecture of a Re-ID network (values as in the papers unless noted)."""

    kind: Literal["ide", "siamese", "bot"] = described(
        "ide",
        '"ide": classifier only; "siamese": adds the verification head (Zheng et al. 2017); '
        '"bot": BNNeck + bias-free classifier of the Bag of Tricks baseline (Luo et al. 2019).',
    )
    arch: Literal["resnet50", "resnet18"] = described(
        "resnet50",
        "The paper's backbone is ResNet-50; resnet18 (512-d features) is for CPU demos and tests.",
    )
    pretrained: bool = described(
        True,
        "ImageNet initialisation, as both baselines; from scratch Market-1501 is far too small.",
    )
    last_stride: int = described(
        2,
        "2 as torchvision; 1 keeps a 16x8 final map at 256x128 input (Sun et al. 2018, PCB), a "
        "common +1-2 rank-1 at 4x the cost of the last stage. The paper's baselines use 2.",
    )
    bottleneck_dim: int | None = described(
        None,
        "None: classifier directly on pool5 (the IDE baseline); e.g. 512: Linear + BatchNorm "
        "bottleneck before it (the widely used layumi/Person_reID_baseline_pytorch head).",
    )
    dropout: float = described(
        0.5,
        "Dropout before the identity classifier: 0.5 as the layumi PyTorch baseline; the "
        "IDE-baseline ResNet-50 has none (TrainConfig.ide_original sets 0).",
    )
    verification_dropout: float = described(
        0.9,
        "Dropout on the squared difference before the verification classifier (Siamese only): "
        "0.9 as the reference (layumi/2016_person_re-ID resnet52_2stream.m, 'dropout_D').",
    )

    @property
    def feature_dim(self) -> int:
        """Dimension D of ``forward_features``: the backbone's pooled features."""
        return FEATURE_DIMS[self.arch]


@dataclass(frozen=True)
class TrainConfig:
    """Re-ID training settings (defaults: the ``modern`` recipe; see :meth:`ide_original`)."""

    model: ReIDModelConfig = field(
        default_factory=ReIDModelConfig,
        metadata={HELP: "The network: kind, backbone and head (:class:`ReIDModelConfig`)."},
    )
    height: int = described(
        256,
        "Input height in pixels: Market-1501's 128x64 boxes upsampled 2x, the standard "
        "ResNet-50 Re-ID input.",
    )
    width: int = described(128, "Input width in pixels (see height).")
    flip: bool = described(True, "Horizontal flip: people are roughly left/right symmetric.")
    pad: int = described(
        10, "Zero padding before a random crop back to the input size (translation jitter)."
    )
    random_erasing: float = described(
        0.5, "Probability of random erasing (Zhong et al. 2020; the IDE baseline has none)."
    )
    label_smoothing: float = described(
        0.1, "Label smoothing of the identification loss (the IDE baseline has none)."
    )
    batch_size: int = described(
        32, "Global batch over all ranks (IDE baseline: 16); Siamese: batch / 2 pairs."
    )
    optimizer: Literal["sgd", "adam", "amsgrad"] = described(
        "sgd",
        '"sgd" (IDE baseline), "adam" (BoT) or "amsgrad" (Adam with AMSGrad); lr ~3.5e-4 with '
        "the Adam ones.",
    )
    lr: float = described(
        0.05, "Learning rate of the new layers; 0.05 with SGD as the layumi baseline."
    )
    backbone_lr_mult: float = described(
        0.1, "The pretrained backbone learns 10x slower: fine-tuning, not retraining."
    )
    momentum: float = described(0.9, "SGD momentum.")
    weight_decay: float = described(5e-4, "L2 weight decay of every layer.")
    epochs: int = described(60, "Epochs = passes over the images (Siamese: over the anchors).")
    epoch_steps: int | None = described(
        None,
        "Steps the schedule counts as one epoch (run length, milestones, warmup); None: one "
        "pass over the training images. Equal-step comparisons give every training set the "
        "original set's value, so a set alpha times larger gets the same optimiser steps, not "
        "alpha times.",
    )
    lr_milestones: tuple[int, ...] = described(
        (40,),
        "Epochs at which the learning rate is multiplied by lr_gamma (step schedule).",
    )
    lr_gamma: float = described(0.1, "Learning-rate factor at each milestone.")
    warmup_epochs: int = described(
        0,
        "Linear warmup from warmup_factor x lr over the first epochs (BoT: 10 epochs from 0.1x).",
    )
    warmup_factor: float = described(
        0.1, "Learning-rate factor at the start of the warmup (see warmup_epochs)."
    )
    triplet_weight: float = described(
        0.0,
        "Batch-hard triplet loss on the pooled features (Hermans et al. 2017), added to the "
        "identification loss with this weight (BoT: 1, margin 0.3); 0: none.",
    )
    triplet_margin: float = described(
        0.3, "Margin of the batch-hard triplet loss (see triplet_weight)."
    )
    instances_per_id: int | None = described(
        None,
        "K images per identity in a batch of batch_size / K identities (PK sampling, what "
        "triplet mining needs); None: random batches.",
    )
    verification_weight: float = described(
        1.0,
        "Weight of the verification loss against identification (Zheng et al. 2017: 1).",
    )
    positive_fraction: float = described(
        0.5, "Share of same-identity pairs in a Siamese batch (1:1 as the paper)."
    )
    freeze_bn_stats: bool = described(
        False,
        "Backbone BatchNorm keeps its ImageNet statistics (eval mode) while its scale and "
        "shift still learn: Caffe's use_global_stats in the IDE baseline, sound at batch 16.",
    )
    seed: int = described(
        0, "Seeds the initial weights and every step's sampling, augmentation and dropout."
    )
    checkpoint_every: int = described(
        1000, "Steps between checkpoints (one is always written at the last step)."
    )
    checkpoint_minutes: float = described(
        10.0,
        "Minutes between checkpoints as well, so a crash on a slow machine loses at most this "
        "much training whatever the step interval (0: by steps only).",
    )
    log_every: int = described(50, "Steps between loss log lines.")

    @classmethod
    def modern(cls, **overrides: Any) -> TrainConfig:
        """The defaults: today's ResNet-50 softmax baseline (random erasing 0.5, label
        smoothing 0.1, 256x128, batch 32, SGD 0.05 with the backbone at 0.1x, 60 epochs)."""
        return dataclasses.replace(cls(), **overrides)

    @classmethod
    def ide_original(cls, **overrides: Any) -> TrainConfig:
        """The IDE-baseline repository's ResNet-50 recipe (``ResNet_50_solver.prototxt``,
        ``ResNet_50_train_val.prototxt``), whose Market-1501 numbers are the reference rows.

        Same: 224x224 resize (aspect ratio not kept) with random mirroring and no crop jitter,
        no random erasing or label smoothing, no dropout before the classifier, batch 16, SGD
        lr 1e-3 on every layer, momentum 0.9, weight decay 5e-4, 10x step, BatchNorm statistics
        frozen, classifier initialised N(0, 0.001). Still different: the schedule counts epochs,
        62 of them with the step after 25, which on Market-1501's 12,936 training images is
        50,096 iterations with the step at 20,200 (the reference: 50,000 and 20,000 iterations
        on 11,642 images, a 90% split of the training set); the classifier bias learns at lr 1e-3
        with weight decay (reference: 2e-3, no decay); torchvision's ImageNet ResNet-50 and its
        mean/std normalisation instead of the MSRA Caffe model and BGR mean subtraction.
        """
        base = cls(
            model=ReIDModelConfig(dropout=0.0),
            height=224,
            width=224,
            pad=0,
            random_erasing=0.0,
            label_smoothing=0.0,
            batch_size=16,
            lr=1e-3,
            backbone_lr_mult=1.0,
            epochs=62,
            lr_milestones=(25,),
            freeze_bn_stats=True,
        )
        return dataclasses.replace(base, **overrides)

    @classmethod
    def bot(cls, **overrides: Any) -> TrainConfig:
        """Bag of Tricks (Luo et al., CVPR-W 2019), the strong ResNet-50 baseline: Market-1501
        94.1 rank-1 / 85.7 mAP with ImageNet weights (their table, without re-ranking or center
        loss).

        BNNeck (``kind="bot"``), last stride 1, 256x128 with flip, pad 10 + crop and random
        erasing 0.5, ID loss with label smoothing 0.1 plus batch-hard triplet loss (margin 0.3)
        on PK batches of 16 identities x 4 images, Adam lr 3.5e-4 with a 10-epoch linear
        warmup from 0.1x, x0.1 at epochs 40 and 70 of 120, weight decay 5e-4. Not included:
        center loss (the paper's optional last trick) and their test-time cosine distance (our
        metrics use L2-normalised BNNeck features, the same ranking).
        """
        base = cls(
            model=ReIDModelConfig(kind="bot", last_stride=1, dropout=0.0),
            batch_size=64,
            instances_per_id=4,
            optimizer="adam",
            lr=3.5e-4,
            backbone_lr_mult=1.0,
            epochs=120,
            lr_milestones=(40, 70),
            warmup_epochs=10,
            triplet_weight=1.0,
            triplet_margin=0.3,
        )
        return dataclasses.replace(base, **overrides)


def recipe(kind: str, preset: str = "modern", **overrides: Any) -> TrainConfig:
    """The training recipe of a Re-ID ``kind``: Bag of Tricks is a recipe as much as a network,
    so ``bot`` always gets :meth:`TrainConfig.bot`; ``ide`` and ``siamese`` get ``preset``
    (``modern`` or ``ide_original``). The model's kind is set to ``kind``."""
    base = (
        TrainConfig.bot(**overrides) if kind == "bot" else getattr(TrainConfig, preset)(**overrides)
    )
    return dataclasses.replace(base, model=dataclasses.replace(base.model, kind=kind))


# Fields that may change between a run and its resume without changing what it learns.
RESUMABLE_CHANGES = frozenset({"checkpoint_every", "checkpoint_minutes", "log_every"})


def training_settings(config: TrainConfig) -> dict[str, Any]:
    """``config`` as a dict without :data:`RESUMABLE_CHANGES`: what a checkpoint must match."""
    values = dataclasses.asdict(config)
    return {key: value for key, value in values.items() if key not in RESUMABLE_CHANGES}


def config_from_dict(values: dict) -> TrainConfig:
    """Inverse of ``dataclasses.asdict`` for :class:`TrainConfig` (checkpoints store the dict)."""
    return TrainConfig(**{**values, "model": ReIDModelConfig(**values["model"])})
