"""Which training images each Re-ID step sees: a pure function of (seed, step).

Three ways to fill the global batch of ``batch_size`` images:

* ``random`` (IDE): consecutive slices of a per-epoch permutation; the last partial batch of an
  epoch is dropped.
* ``siamese`` (Zheng et al. 2017): ``batch_size / 2`` anchors from the permutation, each with a
  partner that shares its identity with probability ``positive_fraction``; the batch is the
  anchors then their partners.
* ``pk`` (Hermans et al. 2017, the Bag of Tricks baseline): P = ``batch_size / K`` distinct
  identities drawn uniformly, K = ``instances_per_id`` images of each (without replacement when
  the identity has K, else with); what batch-hard triplet mining needs.

An epoch is ``len(targets) // images-per-step`` steps in every mode. Nothing is stateful, so a
resumed run draws exactly the batches the uninterrupted one would have.
"""

from __future__ import annotations

from typing import Literal

import torch

SamplingMode = Literal["random", "siamese", "pk"]


def step_seed(*parts: int) -> int:
    """A generator seed from (seed, step, rank, stream): distinct tuples, distinct streams."""
    value = 0
    for part in parts:
        value = (value * 1_000_003 + part) % (1 << 62)
    return value


class BatchSampler:
    """Global batch indices of each step for integer class targets ``[N]`` in ``[0, C)``."""

    def __init__(
        self,
        targets: torch.Tensor,
        *,
        batch_size: int,
        seed: int,
        mode: SamplingMode = "random",
        positive_fraction: float = 0.5,
        instances_per_id: int = 4,
    ) -> None:
        self.targets, self.seed, self.mode = targets, seed, mode
        self.positive_fraction, self.instances = positive_fraction, instances_per_id
        self.per_step = batch_size // 2 if mode == "siamese" else batch_size
        if mode == "pk" and batch_size % instances_per_id:
            raise ValueError(
                f"batch_size {batch_size} is not a multiple of instances_per_id "
                f"{instances_per_id} (P identities x K images)"
            )
        self.steps_per_epoch = len(targets) // self.per_step
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(targets)} images cannot fill one step of {self.per_step}")
        self.by_class = torch.argsort(targets, stable=True)  # images grouped by class
        self.counts = torch.bincount(targets)
        self.starts = torch.cumsum(self.counts, 0) - self.counts
        position = torch.empty_like(targets)
        position[self.by_class] = torch.arange(len(targets))
        self.rank_in_class = position - self.starts[targets]
        if mode == "pk" and batch_size // instances_per_id > len(self.counts):
            raise ValueError(
                f"a batch of {batch_size // instances_per_id} identities x {instances_per_id} "
                f"images needs {batch_size // instances_per_id} identities, the data has "
                f"{len(self.counts)}"
            )

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (indices int64 [B], same bool [B/2] for ``siamese``, else None)."""
        if self.mode == "pk":
            return self._pk(step), None
        epoch, offset = divmod(step, self.steps_per_epoch)
        epoch_gen = torch.Generator().manual_seed(step_seed(self.seed, epoch, 0))
        perm = torch.randperm(len(self.targets), generator=epoch_gen)
        anchors = perm[offset * self.per_step : (offset + 1) * self.per_step]
        if self.mode == "random":
            return anchors, None
        gen = torch.Generator().manual_seed(step_seed(self.seed, step, 1))
        u = torch.rand(len(anchors), 4, generator=gen, dtype=torch.float64)
        same = u[:, 0] < self.positive_fraction
        cls = self.targets[anchors]
        # Positive: another image of the class (the anchor itself for one-image classes).
        shift = 1 + (u[:, 1] * (self.counts[cls] - 1)).long()
        positive = self.starts[cls] + (self.rank_in_class[anchors] + shift) % self.counts[cls]
        # Negative: a uniformly drawn other class, then a uniform image of it.
        num_classes = len(self.counts)
        other = (cls + 1 + (u[:, 2] * (num_classes - 1)).long()) % num_classes
        negative = self.starts[other] + (u[:, 3] * self.counts[other]).long()
        partners = self.by_class[torch.where(same, positive, negative)]
        return torch.cat([anchors, partners]), same

    def _pk(self, step: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(step_seed(self.seed, step, 5))
        identities = torch.randperm(len(self.counts), generator=gen)[
            : self.per_step // self.instances
        ]
        picks = []
        for cls in identities.tolist():
            count = int(self.counts[cls])
            if count >= self.instances:
                members = torch.randperm(count, generator=gen)[: self.instances]
            else:
                members = torch.randint(count, (self.instances,), generator=gen)
            picks.append(self.by_class[self.starts[cls] + members])
        return torch.cat(picks)  # [P * K], K images of each identity in a row
