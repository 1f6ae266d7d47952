"""Training the SAN generator (paper section 4.2): in-memory pairs, Adam, linear decay, DDP.

The caller loads images, masks, parsing and the pairs table into memory (Market-1501 is about
1.3 GB decoded) and passes them as :class:`san_model.batches.SANTrainData`; batches are
gathered by index from those arrays, which is faster than any file-backed loader (no worker
processes needed). :class:`SANTrainer` holds what a step updates; its :meth:`SANTrainer.step`
is the step of every caller (this loop, the throughput benchmark).

Under ``torchrun`` (``WORLD_SIZE > 1``) the process group is initialised here (NCCL on CUDA,
Gloo on CPU), G and D are wrapped in DDP, every rank draws the same global batch from the same
seeded sampler and keeps its own slice of it, and only rank 0 writes checkpoints and logs.
BatchNorm statistics stay per rank (no SyncBatchNorm), as in the single-GPU reference code.

Randomness: nothing here touches torch's or numpy's global generators (stages run as threads
of one process). Initial weights are drawn from ``config.seed``; batch sampling and the image
pool have their own ``torch.Generator``s, whose states go into every checkpoint.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from foundation.cpu import training_threads

from .batches import ModelBatch, PairSampler, RandomPairs, SANTrainData
from .blocks import POOL_STREAM, derived_seed
from .checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from .config import SANConfig
from .discriminator import build_discriminator
from .generator import build_generator, tensor_to_images
from .image_pool import ImagePool
from .losses import VGGPerceptualLoss, build_perceptual_loss, discriminator_loss, generator_loss
from .visualize import sample_grid, save_png

logger = logging.getLogger(__name__)

# Config fields that may change between a run and its resume without changing the result.
RESUMABLE_CHANGES = {"checkpoint_interval", "sample_interval", "log_interval", "name"}
SAMPLE_ROWS = 4


def train_step(
    *,
    generator: nn.Module,
    discriminator: nn.Module,
    perceptual: VGGPerceptualLoss | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    batch: ModelBatch,
    config: SANConfig,
    pool: ImagePool,
    autocast_dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One G update, then one D update (eq. 4-7); returns (generated image, detached losses).

    As PATN's ``optimize_parameters``: G first, against the current D; then D on real pairs
    and on this step's fakes (through the pool of past fakes), each kind in its own forward
    pass, so D's BatchNorm normalises batches of one kind in the D step as in the G step.

    D's weights are frozen during the G update (their gradients would be discarded). Under DDP
    the passes whose gradients must not be all-reduced yet run under ``no_sync``: the G update's
    pass through D (no D gradients) and the real half of the D update, whose gradients the
    fake half's backward then all-reduces together with its own.
    """
    b = batch

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(b.source_image.device.type, dtype=autocast_dtype)

    def no_sync() -> contextlib.AbstractContextManager[Any]:
        if isinstance(discriminator, DistributedDataParallel):
            return discriminator.no_sync()
        return contextlib.nullcontext()

    with autocast():
        fake = generator(
            b.source_image, b.source_mask, b.source_parsing, b.target_mask, b.target_parsing
        )
    discriminator.requires_grad_(False)
    with no_sync(), autocast():
        terms = generator_loss(
            fake_probability=discriminator(b.source_image, fake),
            generated=fake,
            target=b.target_image,
            config=config,
            perceptual=perceptual,
        )
    opt_g.zero_grad(set_to_none=True)
    terms.total.backward()
    opt_g.step()
    discriminator.requires_grad_(True)

    channels = b.source_image.shape[1]
    pooled = pool.query(torch.cat([b.source_image, fake], dim=1))  # [B, 2 * 3, H, W]
    opt_d.zero_grad(set_to_none=True)
    with no_sync():
        with autocast():
            real_probability = discriminator(b.source_image, b.target_image)
        loss_d_real = discriminator_loss(real_probability, real=True)
        loss_d_real.backward()
    with autocast():
        fake_probability = discriminator(pooled[:, :channels], pooled[:, channels:])
    loss_d_fake = discriminator_loss(fake_probability, real=False)
    loss_d_fake.backward()
    opt_d.step()
    losses = {
        "g_total": terms.total,
        "g_adversarial": terms.adversarial,
        "g_l1": terms.l1,
        "g_perceptual": terms.perceptual,
        "d": loss_d_real + loss_d_fake,
    }
    return fake.detach(), {name: value.detach() for name, value in losses.items()}


class SANTrainer:
    """What a training step updates: G, D, the image pool, both Adam optimisers and their
    linear decay to 0 over ``config.total_steps`` (section 4.2), and the eq. 6 VGG-19.

    Initial weights come from ``config.seed`` (identical on every rank), the pool's draws from
    (seed, rank), never from torch's global RNG. :attr:`g_model` and :attr:`d_model` are what
    the step runs: the networks themselves, or a wrapper around them (DDP, ``torch.compile``).

    Args:
        device: where the networks live and batches are gathered to.
        rank: this process's rank (seeds its image pool).
        pretrained_vgg, vgg_weights: as :func:`train_san`.
        channels_last: NHWC networks and batches (the fast layout for bf16 on CUDA).
        autocast_dtype: the forward passes' autocast type (``torch.bfloat16``); None: fp32.
    """

    def __init__(
        self,
        config: SANConfig,
        device: torch.device,
        *,
        rank: int = 0,
        pretrained_vgg: bool = True,
        vgg_weights: str | Path | None = None,
        channels_last: bool = False,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        self.config, self.device = config, device
        self.channels_last, self.autocast_dtype = channels_last, autocast_dtype
        self.generator = build_generator(config=config).to(device)
        self.discriminator = build_discriminator(config=config).to(device)
        self.pool = ImagePool(config.pool_size, seed=derived_seed(config.seed, POOL_STREAM, rank))
        perceptual = build_perceptual_loss(
            config=config, pretrained=pretrained_vgg, weights_path=vgg_weights
        )
        self.perceptual = None if perceptual is None else perceptual.to(device)
        if channels_last:
            for module in (self.generator, self.discriminator, self.perceptual):
                if module is not None:
                    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr, betas=config.betas)
        self.opt_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=config.lr, betas=config.betas
        )
        total = config.total_steps

        def decay(step: int) -> float:  # linear to 0 over the whole schedule (section 4.2)
            return max(0.0, 1.0 - step / total)

        self.sched_g = torch.optim.lr_scheduler.LambdaLR(self.opt_g, decay)
        self.sched_d = torch.optim.lr_scheduler.LambdaLR(self.opt_d, decay)
        self.g_model: nn.Module = self.generator
        self.d_model: nn.Module = self.discriminator

    def step(
        self, sampler: RandomPairs
    ) -> tuple[ModelBatch, torch.Tensor, dict[str, torch.Tensor]]:
        """Draw the next batch from ``sampler``, run :func:`train_step` on it and advance both
        learning-rate schedules; returns (the batch, the generated images, detached losses)."""
        batch = ModelBatch.from_pairs(
            sampler.gather(sampler.next_pairs(), self.device),
            num_classes=self.config.parsing_classes,
            channels_last=self.channels_last,
        )
        fake, losses = train_step(
            batch=batch,
            generator=self.g_model,
            discriminator=self.d_model,
            perceptual=self.perceptual,
            opt_g=self.opt_g,
            opt_d=self.opt_d,
            config=self.config,
            pool=self.pool,
            autocast_dtype=self.autocast_dtype,
        )
        self.sched_g.step()
        self.sched_d.step()
        return batch, fake, losses


@dataclass(frozen=True)
class TrainResult:
    """What one :func:`train_san` call did."""

    run_dir: Path
    checkpoint: Path  # run_dir / "checkpoints" / "latest.pt"
    step: int  # optimiser steps completed in total (including resumed ones)
    total_steps: int  # the schedule's length, config.total_steps
    losses: dict[str, float]  # the last step's terms ({} when no step ran)
    pairs_per_second: float  # global pairs per wall-clock second in this call
    resumed_at: int | None  # the checkpoint's step this call continued from; None: fresh start


def train_san(
    config: SANConfig,
    data: SANTrainData,
    run_dir: str | Path,
    *,
    device: str | torch.device = "cpu",
    resume: bool = False,
    max_steps: int | None = None,
    pretrained_vgg: bool = True,
    vgg_weights: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    run_tag: str | None = None,
) -> TrainResult:
    """Train (or continue training) G and D; checkpoints, TensorBoard and samples in ``run_dir``.

    Args:
        config: the run's settings (section 4.2 presets in :class:`SANConfig`).
        data: in-memory arrays and the pairs table.
        run_dir: output folder: ``checkpoints/latest.pt``, ``tensorboard/``, ``samples/``.
        device: ``"cpu"`` or ``"cuda"`` (under torchrun the local rank's GPU is used).
        resume: continue from ``run_dir``'s checkpoint when it exists (fresh start otherwise);
            the continuation is exactly the uninterrupted run. ``False`` starts from scratch
            and replaces any checkpoint already there.
        max_steps: stop once this many steps (counted from the run's start, not this call's)
            are done; default: the whole schedule, ``config.total_steps``.
        pretrained_vgg: load ImageNet VGG-19 for eq. 6; ``False`` only for tests/offline runs.
        vgg_weights: explicit path of ``vgg19-dcbfe2b4.pth`` (else the weights folders).
        progress: called on rank 0 as ``progress(steps_done, steps_to_reach)`` after each step.
        run_tag: what the run was trained on (a stage's digest of its settings and inputs),
            kept in the checkpoint; a checkpoint with another tag is never resumed: the run
            starts afresh and says so (``TrainResult.resumed_at`` is None, a warning is logged).

    On the CPU the steps run on one intra-op thread (:func:`foundation.cpu.training_threads`).

    Returns:
        A :class:`TrainResult`. A checkpoint is always written at the end of the call.
    """
    run_dir = Path(run_dir)
    height, width = config.image_size
    if tuple(data.images.shape[1:3]) != (height, width):
        raise ValueError(
            f"images are {tuple(data.images.shape[1:3])}, config says {(height, width)}"
        )
    # Checked once here: per batch on the GPU, the check would cost a synchronisation.
    if int(torch.as_tensor(data.parsing).max()) >= config.parsing_classes:
        raise ValueError(f"parsing labels must be < parsing_classes = {config.parsing_classes}")
    with training_threads(device):
        rank, world_size, dev, own_group = _setup_distributed(torch.device(device))
        sampler = PairSampler(
            data, batch_size=config.batch_size, seed=config.seed, rank=rank, world_size=world_size
        )
        cuda = dev.type == "cuda"
        trainer = SANTrainer(
            config,
            dev,
            rank=rank,
            pretrained_vgg=pretrained_vgg,
            vgg_weights=vgg_weights,
            channels_last=cuda,  # NHWC convolutions are the fast path for bf16 tensor cores
            autocast_dtype=torch.bfloat16 if cuda else None,  # CPU: fp32, exact resume
        )
        ckpt_file = run_dir / "checkpoints" / CHECKPOINT_NAME
        step = 0
        resumed_at = None
        state = load_checkpoint(ckpt_file) if resume and ckpt_file.is_file() else None
        if state is not None and run_tag is not None and state.get("run_tag") != run_tag:
            logger.warning(
                "%s was trained on other settings or inputs (tag %s, this run %s): starting afresh",
                ckpt_file,
                state.get("run_tag"),
                run_tag,
            )
            state = None
        if state is not None:
            _check_resumable(config, SANConfig.from_dict(state["config"]))
            for name in ("generator", "discriminator", "opt_g", "opt_d", "sched_g", "sched_d"):
                getattr(trainer, name).load_state_dict(state[name])
            sampler.generator.set_state(state["sampler_rng"])
            trainer.pool.load_state_dict(state["image_pool"], dev)
            step = resumed_at = int(state["step"])
        if world_size > 1:
            ids = [dev.index] if cuda else None
            trainer.g_model = DistributedDataParallel(trainer.generator, device_ids=ids)
            trainer.d_model = DistributedDataParallel(trainer.discriminator, device_ids=ids)

        def snapshot() -> dict[str, Any]:
            return {
                "config": config.to_dict(),
                "step": step,
                "generator": trainer.generator.state_dict(),
                "discriminator": trainer.discriminator.state_dict(),
                "opt_g": trainer.opt_g.state_dict(),
                "opt_d": trainer.opt_d.state_dict(),
                "sched_g": trainer.sched_g.state_dict(),
                "sched_d": trainer.sched_d.state_dict(),
                "sampler_rng": sampler.generator.get_state(),
                "image_pool": trainer.pool.state_dict(),
                "run_tag": run_tag,
            }

        total = config.total_steps
        stop = total if max_steps is None else min(max_steps, total)
        writer = _open_writer(run_dir) if rank == 0 else None
        losses: dict[str, torch.Tensor] = {}
        start_step, started = step, time.perf_counter()
        window_step, window_start = step, started
        while step < stop:
            batch, fake, losses = trainer.step(sampler)
            step += 1
            if writer is None:  # ranks other than 0 neither log nor write
                continue
            if progress is not None:
                progress(step, stop)
            if step % config.log_interval == 0 or step == stop:
                now = time.perf_counter()
                rate = (step - window_step) * config.batch_size / max(now - window_start, 1e-9)
                for name, value in losses.items():
                    writer.add_scalar(f"loss/{name}", value.item(), step)
                writer.add_scalar("lr", trainer.sched_g.get_last_lr()[0], step)
                writer.add_scalar("pairs_per_second", rate, step)
                window_step, window_start = step, now
            if step % config.sample_interval == 0 or step == stop:
                grid = _sample_grid(batch, fake)
                save_png(grid, run_dir / "samples" / f"step_{step:07d}.png")
                writer.add_image("samples", grid, step, dataformats="HWC")
            if step % config.checkpoint_interval == 0:
                save_checkpoint(snapshot(), ckpt_file)
        elapsed = time.perf_counter() - started
        if rank == 0:
            save_checkpoint(snapshot(), ckpt_file)
            if writer is not None:
                writer.close()
        if world_size > 1:
            dist.barrier()  # nobody returns before rank 0's checkpoint is on disk
            if own_group:
                dist.destroy_process_group()
    return TrainResult(
        run_dir=run_dir,
        checkpoint=ckpt_file,
        step=step,
        total_steps=total,
        losses={name: value.item() for name, value in losses.items()},
        pairs_per_second=(step - start_step) * config.batch_size / max(elapsed, 1e-9),
        resumed_at=resumed_at,
    )


def _setup_distributed(device: torch.device) -> tuple[int, int, torch.device, bool]:
    """(rank, world size, this rank's device, whether we created the process group)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, device, False
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world_size, device, created


def _check_resumable(config: SANConfig, saved: SANConfig) -> None:
    new, old = config.to_dict(), saved.to_dict()
    changed = sorted(k for k in new if new[k] != old.get(k) and k not in RESUMABLE_CHANGES)
    if changed:
        raise ValueError(f"cannot resume: config differs from the checkpoint's in {changed}")


def _open_writer(run_dir: Path) -> Any:
    # Imported here: tensorboard costs about 1.5 s to import, and only rank 0 of a training
    # run needs it (inference stages import san_model without it).
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(run_dir / "tensorboard"))


def _sample_grid(batch: ModelBatch, fake: torch.Tensor) -> np.ndarray:
    """The first rows of this step's batch as a source | pose | generated | truth grid."""
    n = min(SAMPLE_ROWS, fake.shape[0])
    masks = batch.target_mask[:n, 0].to(torch.uint8).cpu().numpy()
    parsing = batch.target_parsing[:n].argmax(dim=1).to(torch.uint8).cpu().numpy()
    return sample_grid(
        tensor_to_images(batch.source_image[:n]).cpu().numpy(),
        masks,
        parsing,
        tensor_to_images(fake[:n]).cpu().numpy(),
        tensor_to_images(batch.target_image[:n]).cpu().numpy(),
    )
