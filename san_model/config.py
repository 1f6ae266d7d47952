"""The SAN generator's settings: one frozen dataclass, presets for the paper's two datasets.

Every value the paper fixes (section 4.2) has a preset; the three ablations of section 4.4
(no perceptual loss, no segmentation-mask inputs, the number of blocks T) are plain fields.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal

from foundation.fields import described

# Optimiser steps of the demo preset: about four minutes on 2 CPU cores (BENCHMARKS.md).
DEMO_STEPS = 1200
# Encoder /4 (two stride-2 convs) then Conv_A / Conv_S /8 (three stride-2 sub-networks).
TOTAL_DOWNSAMPLING = 32

# torchvision VGG-19 ``features`` index of each ReLU, in the usual ``reluB_L`` naming.
VGG19_RELU_INDEX = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35,
}  # fmt: skip


@dataclass(frozen=True)
class SANConfig:
    """Architecture, loss and schedule of one SAN training run.

    The defaults are the Market-1501 settings; use :meth:`market1501`, :meth:`deepfashion` or
    :meth:`tiny` rather than spelling fields out.
    """

    image_size: tuple[int, int] = described(
        (128, 64),
        "(height, width) of every image: 128x64 Market-1501, 256x256 DeepFashion (section 4.2).",
    )
    num_blocks: int = described(
        5,
        "T, the number of Semantic Attention Blocks: 5 for both datasets (section 4.2), an "
        "ablation.",
    )
    ngf: int = described(
        64, "Generator base width: PATN's ngf; the attention blocks run at 4 * ngf channels."
    )
    ndf: int = described(64, "Discriminator base width (PATN's ndf).")
    use_mask_inputs: bool = described(
        True,
        'Ablation "without segmentation mask": pathways take 23 / 20 channels instead of 24 / 21.',
    )
    parsing_classes: int = described(
        20, "L, the LIP parsing labels one-hot encoded as inputs (section 4.2: L = 20)."
    )
    alpha: float = described(
        10.0,
        "Weight of the adversarial loss in eq. 7: alpha * L_adv + beta * L_l1 + gamma * L_perc.",
    )
    beta: float = described(15.0, "Weight of the L1 loss in eq. 7.")
    gamma: float = described(5.0, "Weight of the perceptual loss in eq. 7.")
    use_perceptual: bool = described(
        True, 'Ablation "without perceptual loss": also skips building VGG-19 at all.'
    )
    perceptual_layer: str = described(
        "relu1_2", "VGG-19 layer rho of eq. 6; PATN's public code uses relu1_2."
    )
    perceptual_distance: Literal["l2", "l1"] = described(
        "l2",
        'Eq. 6\'s distance between activations: "l2" (squared difference) as the formula; the '
        "paper's text calls it a perceptual L1 and PATN's code uses \"l1\".",
    )
    pool_size: int = described(
        50,
        "PATN's pool of past fakes that D also sees (pix2pix ImagePool; PATN's Market runs: 50, "
        "its DeepFashion runs: 0, as the deepfashion preset); 0 turns it off.",
    )
    lr: float = described(2e-4, "Adam learning rate of section 4.2, for G and D.")
    betas: tuple[float, float] = described(
        (0.5, 0.999), "Adam (beta1, beta2) of section 4.2, for G and D."
    )
    batch_size: int = described(
        32, "Global batch over all DDP ranks (section 4.2: 32 Market, 8 DeepFashion)."
    )
    epochs: int = described(
        300, "The learning rate decays linearly to 0 over this many epochs (section 4.2)."
    )
    epoch_length: int = described(
        4000,
        "Pairs per epoch. The paper does not define an epoch; PATN's reference code (which SAN "
        "builds on) draws 4,000 random training pairs per epoch, with replacement, and so do we.",
    )
    checkpoint_interval: int = described(
        1000, "Steps between atomic checkpoints (the resume granularity)."
    )
    sample_interval: int = described(
        500, "Steps between training sample grids (`samples/step_*.png`, in the UI)."
    )
    log_interval: int = described(50, "Steps between TensorBoard loss logs.")
    seed: int = described(
        0, "Seeds model initialisation and the batch sampler (restored exactly on resume)."
    )
    name: str = described("market1501", "Free-form name shown in logs and kept in checkpoints.")

    def __post_init__(self) -> None:
        height, width = self.image_size
        if height % TOTAL_DOWNSAMPLING or width % TOTAL_DOWNSAMPLING:
            raise ValueError(
                f"image_size {self.image_size} must be divisible by {TOTAL_DOWNSAMPLING} "
                "(encoder /4 then three stride-2 Conv_A / Conv_S stages)"
            )
        if self.num_blocks < 1:
            raise ValueError("num_blocks (T) must be at least 1")
        if min(self.ngf, self.ndf, self.parsing_classes) < 1:
            raise ValueError(
                f"ngf ({self.ngf}), ndf ({self.ndf}) and parsing_classes "
                f"({self.parsing_classes}) must be at least 1"
            )
        if self.perceptual_layer not in VGG19_RELU_INDEX:
            raise ValueError(
                f"unknown perceptual_layer {self.perceptual_layer!r}; "
                f"choose one of {sorted(VGG19_RELU_INDEX)}"
            )
        if self.perceptual_distance not in ("l2", "l1"):
            raise ValueError(
                f"perceptual_distance must be 'l2' or 'l1', got {self.perceptual_distance!r}"
            )
        if min(self.batch_size, self.epochs, self.epoch_length) < 1:
            raise ValueError("batch_size, epochs and epoch_length must be positive")
        if self.pool_size < 0:
            raise ValueError("pool_size must be >= 0 (0: no pool of past fakes)")
        if min(self.checkpoint_interval, self.sample_interval, self.log_interval) < 1:
            raise ValueError("checkpoint/sample/log intervals must be positive")

    @property
    def appearance_channels(self) -> int:
        """Appearance pathway input: image (3) + source mask (1) + source parsing (L)."""
        return 3 + int(self.use_mask_inputs) + self.parsing_classes

    @property
    def semantic_channels(self) -> int:
        """Semantic pathway input: target mask (1) + target parsing (L)."""
        return int(self.use_mask_inputs) + self.parsing_classes

    @property
    def total_steps(self) -> int:
        """Optimiser steps over the whole schedule: epochs * epoch_length / batch_size."""
        return max(1, self.epochs * self.epoch_length // self.batch_size)

    @classmethod
    def market1501(cls, **overrides: Any) -> SANConfig:
        """Market-1501 (section 4.2): 128x64, batch 32, 300 epochs, weights (10, 15, 5)."""
        return replace(cls(), **overrides)

    @classmethod
    def deepfashion(cls, **overrides: Any) -> SANConfig:
        """DeepFashion (section 4.2): 256x256, batch 8, 500 epochs, weights (15, 1, 5); no
        pool of past fakes (PATN's DeepFashion command: ``--pool_size 0``)."""
        base = cls(
            image_size=(256, 256),
            batch_size=8,
            epochs=500,
            alpha=15.0,
            beta=1.0,
            gamma=5.0,
            pool_size=0,
            name="deepfashion",
        )
        return replace(base, **overrides)

    @classmethod
    def demo(cls, **overrides: Any) -> SANConfig:
        """The CPU demo: a SAN that visibly learns in about four minutes on 2 cores.

        Market-1501's 128x64 images, but an eighth of the paper's widths (ngf = ndf = 8) and
        T = 2 blocks, DEMO_STEPS steps of batch 8 at a 10x higher learning rate, and an
        adversarial weight of 0.05 instead of 10: in so few steps the L1 term teaches shape and
        colour, and a stronger discriminator only makes the blurred output copy the source's
        background (measured: 0.2 scored worse on every pixel metric). It trades detail for
        time: people come out blurred, without texture; the paper's quality needs
        :meth:`market1501` on a GPU. Measured in BENCHMARKS.md ("SAN learning").
        """
        base = cls(
            num_blocks=2,
            ngf=8,
            ndf=8,
            alpha=0.05,
            lr=2e-3,
            batch_size=8,
            epochs=1,
            epoch_length=8 * DEMO_STEPS,
            checkpoint_interval=500,
            sample_interval=250,
            log_interval=50,
            name="demo",
        )
        return replace(base, **overrides)

    @classmethod
    def tiny(cls, **overrides: Any) -> SANConfig:
        """A few-kilobyte model on 64x32 images, for tests and smoke runs on a CPU."""
        base = cls(
            image_size=(64, 32),
            num_blocks=2,
            ngf=4,
            ndf=4,
            batch_size=4,
            epochs=2,
            epoch_length=16,
            checkpoint_interval=4,
            sample_interval=4,
            log_interval=2,
            name="tiny",
        )
        return replace(base, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so the dict loads under ``torch.load(weights_only=True)``."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SANConfig:
        """Inverse of :meth:`to_dict`; ignores unknown keys written by other versions."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        for key in ("image_size", "betas"):
            if key in kwargs:
                kwargs[key] = tuple(kwargs[key])
        return cls(**kwargs)
