"""Training IDE / Siamese Re-ID networks on in-memory images, and feature extraction.

The recipes (``modern``, ``ide_original``, ``bot``) are :class:`reid.config.TrainConfig`
presets. Siamese (Zheng et al. 2017): half a batch of anchors, each paired with a
same-identity image (probability ``positive_fraction``) or a different-identity one;
identification loss on every image plus the verification loss on the pairs.

Reproducibility: every random draw of step ``t`` (augmentation, sampling, dropout) comes from
generators seeded by (seed, t, rank), and initial weights from one seeded by the config; torch's
global RNG is never used, so a run gives the same numbers whatever else runs in the process
(stages run as threads), and a run resumed from a checkpoint (model, optimizer, scheduler, step)
continues bit-for-bit on the CPU without storing generator states. With ``WORLD_SIZE > 1``
(torchrun) the loop runs under DistributedDataParallel (NCCL on CUDA, gloo on the CPU); each rank
takes its share of the same global batch and rank 0 writes the checkpoints.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from foundation.cpu import training_threads
from reid.checkpoint import IMAGENET_MEAN, IMAGENET_STD, load_checkpoint, save_checkpoint
from reid.config import RESUMABLE_CHANGES, TrainConfig, config_from_dict, training_settings
from reid.losses import batch_hard_triplet_loss, identification_loss, verification_loss
from reid.models import IDENet, SiameseNet, build_reid_model, set_dropout_generator
from reid.sampling import BatchSampler, step_seed

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train_reid` produced.

    Attributes:
        model: the trained network (unwrapped, eval mode, on the training device).
        steps: optimizer steps done in total (including those before a resume).
        losses: (step, loss) every ``log_every`` steps of this call.
        checkpoint: the checkpoint file.
        classes: int64 [C]; logit c is identity ``classes[c]`` of the training labels.
        resumed_at: the checkpoint step this call continued from; None for a fresh start.
    """

    model: IDENet
    steps: int
    losses: tuple[tuple[int, float], ...]
    checkpoint: Path
    classes: torch.Tensor
    resumed_at: int | None


class _Objective(nn.Module):
    """The training loss as a module, so DDP sees one forward per step."""

    def __init__(self, model: IDENet, config: TrainConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(self, images: torch.Tensor, targets: torch.Tensor, same: torch.Tensor | None):
        features = self.model.forward_features(images)
        loss = identification_loss(
            self.model.forward_head(features), targets, label_smoothing=self.config.label_smoothing
        )
        if self.config.triplet_weight:  # on the pooled features, before BNNeck (BoT)
            loss = loss + self.config.triplet_weight * batch_hard_triplet_loss(
                features, targets, margin=self.config.triplet_margin
            )
        if same is not None:
            assert isinstance(self.model, SiameseNet)
            pairs = len(same)  # first half anchors, second half their partners
            pair_logits = self.model.forward_verification(features[:pairs], features[pairs:])
            loss = loss + self.config.verification_weight * verification_loss(pair_logits, same)
        return loss


def steps_per_epoch(config: TrainConfig, n_images: int) -> int:
    """Steps of one pass over ``n_images`` training images (Siamese: over the anchors, half a
    batch each), what :class:`reid.sampling.BatchSampler` counts as an epoch."""
    per_step = config.batch_size // 2 if config.model.kind == "siamese" else config.batch_size
    return n_images // per_step


def batch_sampler(
    config: TrainConfig, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, BatchSampler]:
    """The recipe's sampler over ``labels`` int64 [N] (any identity integers).

    Returns:
        (classes int64 [C], sorted identities; targets int64 [N], each image's class index;
        the :class:`reid.sampling.BatchSampler` of ``config``: Siamese pairs, PK or random).
    """
    classes, targets = torch.unique(labels.cpu(), return_inverse=True)
    siamese = config.model.kind == "siamese"
    sampler = BatchSampler(
        targets,
        batch_size=config.batch_size,
        seed=config.seed,
        mode="siamese" if siamese else "pk" if config.instances_per_id else "random",
        positive_fraction=config.positive_fraction,
        instances_per_id=config.instances_per_id or 1,
    )
    return classes, targets, sampler


def lr_schedule(config: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Learning-rate factor of each step: a linear warmup from ``warmup_factor`` over
    ``warmup_epochs`` (Goyal et al. 2017; BoT), then x ``lr_gamma`` at each milestone epoch."""
    milestones = [m * steps_per_epoch for m in config.lr_milestones]
    warmup = config.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        decay = config.lr_gamma ** bisect.bisect_right(milestones, step)
        if step < warmup:
            return decay * (config.warmup_factor + (1 - config.warmup_factor) * step / warmup)
        return decay

    return factor


def _to_input(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, h, w] in [0, 1], bilinearly resized."""
    x = images.permute(0, 3, 1, 2).float().div_(255.0)
    if x.shape[-2:] != size:
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    return x


def _normalize(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] RGB -> ImageNet-normalised (the backbone's pretraining statistics)."""
    mean = torch.tensor(IMAGENET_MEAN, device=x.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=x.device)[:, None, None]
    return (x - mean) / std


def _augment(x: torch.Tensor, config: TrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Flip, pad + crop, normalise, erase. x: float [B, 3, h, w] in [0, 1] -> normalised.

    Random numbers come from ``gen`` on the CPU whatever the device, so they are reproducible.
    """
    b, _, h, w = x.shape
    if config.flip:
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device)[:, None, None, None]
        x = torch.where(flip, x.flip(-1), x)
    if config.pad > 0:
        p = config.pad
        padded = F.pad(x, (p, p, p, p))
        offsets = torch.randint(0, 2 * p + 1, (b, 2), generator=gen).tolist()
        x = torch.stack(
            [padded[i, :, oy : oy + h, ox : ox + w] for i, (oy, ox) in enumerate(offsets)]
        )
    x = _normalize(x)
    if config.random_erasing > 0:
        # Zhong et al.: area 2-40% of the image, aspect ratio log-uniform in [0.3, 1/0.3]; the
        # box is clipped to the image instead of re-drawn. Filled with 0 = the mean colour.
        draws = torch.rand(b, 5, generator=gen).tolist()
        for i, (u_apply, u_area, u_aspect, u_y, u_x) in enumerate(draws):
            if u_apply >= config.random_erasing:
                continue
            area = (0.02 + 0.38 * u_area) * h * w
            aspect = 0.3 ** (1 - 2 * u_aspect)  # log-uniform in [0.3, 1/0.3]
            eh, ew = min(h, round((area * aspect) ** 0.5)), min(w, round((area / aspect) ** 0.5))
            y0, x0 = int(u_y * (h - eh + 1)), int(u_x * (w - ew + 1))
            x[i, :, y0 : y0 + eh, x0 : x0 + ew] = 0.0
    return x


def _optimizer(model: IDENet, config: TrainConfig) -> torch.optim.Optimizer:
    backbone = list(model.backbone.parameters())
    backbone_ids = {id(p) for p in backbone}
    new = [p for p in model.parameters() if id(p) not in backbone_ids]
    groups = [
        {"params": backbone, "lr": config.lr * config.backbone_lr_mult},
        {"params": new, "lr": config.lr},
    ]
    if config.optimizer in ("adam", "amsgrad"):
        return torch.optim.Adam(
            groups,
            lr=config.lr,
            weight_decay=config.weight_decay,
            amsgrad=config.optimizer == "amsgrad",
        )
    if config.optimizer != "sgd":
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )


def _distributed(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """(world size, rank, device, whether we created the process group) from torchrun's env."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 1, 0, device, False
    created = not dist.is_initialized()
    if created:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    return world, dist.get_rank(), device, created


def train_reid(
    config: TrainConfig,
    images: torch.Tensor,
    labels: torch.Tensor,
    run_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    resume: bool = True,
    max_steps: int | None = None,
    weights: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    run_tag: str | None = None,
) -> TrainResult:
    """Train an IDE or Siamese network (``config.model.kind``) and checkpoint it in ``run_dir``.

    Args:
        config: the recipe.
        images: uint8 [N, H, W, 3] RGB training images (CPU; any size, resized on the device).
        labels: int64 [N] identity of each image (any integers; mapped to 0..C-1 in sorted order).
        run_dir: folder of ``last.pt``; created if missing.
        device: "cpu" or "cuda" (bf16 autocast on CUDA); under torchrun each rank uses
            ``cuda:LOCAL_RANK``.
        resume: continue from ``run_dir/last.pt`` when it exists (it must come from the same
            config and labels).
        max_steps: stop after this many steps in total (default: ``epochs`` full epochs); the
            learning-rate schedule still follows ``epochs``.
        weights: explicit ImageNet weight file/folder when ``config.model.pretrained``.
        progress: called on rank 0 as ``progress(steps_done, steps_to_do)`` after every step.
        run_tag: what the run is trained on (the stage's digest of its settings and inputs),
            kept in the checkpoint; a checkpoint with another tag is never resumed: training
            starts afresh (``TrainResult.resumed_at`` None) and a warning is logged.

    On the CPU the steps run on one intra-op thread (:func:`foundation.cpu.training_threads`).

    Returns:
        :class:`TrainResult`.
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be uint8 [N, H, W, 3], got {images.dtype} {images.shape}")
    if labels.shape != images.shape[:1]:
        raise ValueError(f"labels {tuple(labels.shape)} do not match {images.shape[0]} images")
    with training_threads(device):
        world, rank, device, created_group = _distributed(torch.device(device))
        if config.batch_size % (2 * world if config.model.kind == "siamese" else world):
            raise ValueError(f"batch_size {config.batch_size} does not split over {world} ranks")
        classes, targets, sampler = batch_sampler(config, labels)
        steps_per_epoch = config.epoch_steps or sampler.steps_per_epoch
        total_steps = config.epochs * steps_per_epoch
        stop = total_steps if max_steps is None else min(total_steps, max_steps)

        # The seed draws the new layers' (and a random backbone's) initial weights.
        model = build_reid_model(
            config=config.model,
            num_classes=len(classes),
            weights=weights,
            seed=step_seed(config.seed, 4),
        )
        model = model.to(device)
        if device.type == "cuda":
            # Faster bf16 convolutions; Module.to accepts memory_format, its stubs do not say so.
            model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        optimizer = _optimizer(model, config)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_schedule(config, steps_per_epoch)
        )
        checkpoint = Path(run_dir) / CHECKPOINT_NAME
        step = 0
        resumed_at = None
        state = (
            load_checkpoint(checkpoint, map_location=device)
            if resume and checkpoint.exists()
            else None
        )
        if state is not None and run_tag is not None and state.get("run_tag") != run_tag:
            logger.warning(
                "%s was trained on other settings or inputs (tag %s, this run %s): starting afresh",
                checkpoint,
                state.get("run_tag"),
                run_tag,
            )
            state = None
        if state is not None:
            saved = {k: v for k, v in state["config"].items() if k not in RESUMABLE_CHANGES}
            if saved != training_settings(config) or not torch.equal(state["classes"], classes):
                raise ValueError(f"{checkpoint} was written with another config or label set")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            step = resumed_at = int(state["step"])
            logger.info("resumed %s at step %d", checkpoint, step)

        objective: nn.Module = _Objective(model, config)
        if world > 1:
            objective = DistributedDataParallel(
                objective, device_ids=[device.index] if device.type == "cuda" else None
            )
        size = (config.height, config.width)
        losses: list[tuple[int, float]] = []
        model.train()
        saved_at = time.monotonic()
        if config.freeze_bn_stats:
            for module in model.backbone.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        while step < stop:
            indices, same = sampler(step)
            # Each rank takes every world-th sample (Siamese: every world-th pair, both images).
            if same is not None:
                pairs = len(same)
                same = same[rank::world]
                anchors, partners = indices[:pairs][rank::world], indices[pairs:][rank::world]
                indices = torch.cat([anchors, partners])
            else:
                indices = indices[rank::world]
            gen = torch.Generator().manual_seed(step_seed(config.seed, step, 2, rank))
            dropout = torch.Generator(device).manual_seed(step_seed(config.seed, step, 3, rank))
            set_dropout_generator(model, dropout)
            x = _augment(_to_input(images[indices].to(device), size), config, gen)
            if device.type == "cuda":
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = objective(
                    x, targets[indices].to(device), None if same is None else same.to(device)
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if progress is not None and rank == 0:
                progress(step, stop)
            if step % config.log_every == 0 or step == stop:
                losses.append((step, float(loss.detach())))
                logger.info("step %d/%d loss %.4f", step, total_steps, losses[-1][1])
            overdue = 0 < config.checkpoint_minutes * 60 <= time.monotonic() - saved_at
            if (step % config.checkpoint_every == 0 or step == stop or overdue) and rank == 0:
                saved_at = time.monotonic()
                save_checkpoint(
                    checkpoint,
                    {
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "step": step,
                        "config": dataclasses.asdict(config),
                        "classes": classes,
                        "run_tag": run_tag,
                    },
                )
        if world > 1:
            dist.barrier()  # the last checkpoint is on disk before any rank returns
            if created_group:
                dist.destroy_process_group()
        model.eval()
        return TrainResult(
            model=model,
            steps=step,
            losses=tuple(losses),
            checkpoint=checkpoint,
            classes=classes,
            resumed_at=resumed_at,
        )


def load_trained_model(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[IDENet, TrainConfig, torch.Tensor]:
    """Rebuild a trained network from a :func:`train_reid` checkpoint.

    Returns:
        (model in eval mode on ``device``, its TrainConfig, classes int64 [C]).
    """
    state = load_checkpoint(path, map_location="cpu")
    config = config_from_dict(state["config"])
    # The checkpoint holds every weight: no ImageNet file is needed to rebuild.
    model_config = dataclasses.replace(config.model, pretrained=False)
    model = build_reid_model(config=model_config, num_classes=len(state["classes"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), config, state["classes"]


@torch.inference_mode()
def extract_features(
    model: IDENet,
    images: torch.Tensor,
    *,
    batch_size: int = 128,
    device: str | torch.device = "cpu",
    size: tuple[int, int] = (256, 128),
    flip: bool = False,
    normalize: bool = False,
) -> torch.Tensor:
    """Embed images with ``model.embed`` (the test-time descriptor) in eval mode.

    Args:
        model: a trained :class:`IDENet` / :class:`SiameseNet` (moved to ``device``).
        images: uint8 [N, H, W, 3] RGB.
        batch_size: images per forward pass.
        device: where to run; bf16 autocast on CUDA.
        size: (height, width) the network was trained at.
        flip: average the features of the image and its mirror (a common +0.5-1 mAP).
        normalize: L2-normalise each feature (then squared Euclidean = 2 - 2 cos).

    Returns:
        float32 [N, D] on the CPU.
    """
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    outputs = []
    for start in range(0, len(images), batch_size):
        x = _normalize(_to_input(images[start : start + batch_size].to(device), size))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            features = model.embed(x).float()
            if flip:
                features = (features + model.embed(x.flip(-1)).float()) / 2
        outputs.append(features.cpu())
    model.train(was_training)
    result = torch.cat(outputs) if outputs else torch.empty(0, 0)
    return F.normalize(result, dim=1) if normalize else result
