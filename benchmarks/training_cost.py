"""What the paper's trainings cost: FLOPs counted by torch, GPU estimates, and a measured step.

For the SAN presets and the Re-ID recipes on Market-1501's training set (12,936 images of 751
identities, and twice that with the alpha-2 set), the same count as ``train --dry-run`` /
``reid train --dry-run``: FLOPs of one real training step (torch's flop counter on the real
networks), steps, total, and hours on A100/H100 at 30% and 50% of the bf16 peak. Then one
measurement on ``--device``: the paper-size SAN step timed over ``--steps`` steps (bf16 autocast
and channels_last on CUDA, as training runs; fp32 on the CPU, at batch ``--cpu-batch`` to keep
it short), the FLOP/s it reached, and the paper schedule's time at that rate beside the
estimate.

Run from the repository root: ``python -m benchmarks.training_cost [--device cuda]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

import torch

from benchmarks.report import machine, write_section
from foundation.cost import (
    GPU_PEAKS,
    UTILISATIONS,
    TrainingCost,
    format_count,
    format_flops,
    format_hours,
    gpu_estimates,
)
from reid.config import recipe
from reid.cost import training_cost as reid_cost
from san_model.config import SANConfig
from san_model.cost import training_cost as san_cost
from san_model.discriminator import build_discriminator
from san_model.generator import build_generator
from san_model.image_pool import ImagePool
from san_model.losses import build_perceptual_loss
from san_model.train import ModelBatch, train_step

# Market-1501's training split: 751 identities, 12,936 images.
MARKET_TRAIN_IDS, MARKET_TRAIN_IMAGES = 751, 12_936


def market_labels(alpha: int | None) -> torch.Tensor:
    """Identity labels int64 [N] shaped like Market-1501's training set (times ``alpha``)."""
    labels = torch.arange(MARKET_TRAIN_IMAGES) % MARKET_TRAIN_IDS
    return labels.repeat(alpha or 1)


def row(name: str, cost: TrainingCost) -> str:
    """One table row: parameters, each network's FLOPs per sample, FLOPs per step, steps,
    total, estimates."""
    parameters = ", ".join(f"{k} {format_count(v)}" for k, v in cost.parameters.items())
    networks = ", ".join(f"{k} {format_flops(v)}" for k, v in cost.networks.items())
    estimates = gpu_estimates(cost.total_flops)
    hours = [
        " / ".join(format_hours(e.hours) for e in estimates if e.gpu == gpu) for gpu in GPU_PEAKS
    ]
    return (
        f"| {name} | {parameters} | {networks} | {format_flops(cost.step_flops)} | "
        f"{cost.steps:,} | "
        f"{format_flops(cost.total_flops)} | " + " | ".join(hours) + " |"
    )


def measure_san_step(
    config: SANConfig, device: torch.device, steps: int
) -> tuple[float, int | None]:
    """Seconds per training step of ``config`` on ``device`` (random weights and inputs),
    after one warm-up step, and on CUDA the peak of allocated GPU memory in bytes."""
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.device(device):
        generator = build_generator(config=config)
        discriminator = build_discriminator(config=config)
        perceptual = build_perceptual_loss(config=config, pretrained=False)
    if cuda:
        for module in (generator, discriminator, perceptual):
            if module is not None:
                module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    gen = torch.Generator().manual_seed(0)
    b, (h, w), classes = config.batch_size, config.image_size, config.parsing_classes

    def tensor(channels: int) -> torch.Tensor:
        return torch.rand(b, channels, h, w, generator=gen).to(device)

    batch = ModelBatch(tensor(3), tensor(1), tensor(classes), tensor(3), tensor(1), tensor(classes))
    options = {
        "generator": generator,
        "discriminator": discriminator,
        "perceptual": perceptual,
        "opt_g": torch.optim.Adam(generator.parameters(), lr=config.lr, betas=config.betas),
        "opt_d": torch.optim.Adam(discriminator.parameters(), lr=config.lr, betas=config.betas),
        "batch": batch,
        "config": config,
        "pool": ImagePool(config.pool_size, seed=0),
        "autocast_dtype": torch.bfloat16 if cuda else None,
    }
    train_step(**options)  # type: ignore[arg-type]
    if cuda:
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        train_step(**options)  # type: ignore[arg-type]
    if cuda:
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - started) / steps
    return seconds, torch.cuda.max_memory_allocated(device) if cuda else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed SAN steps")
    parser.add_argument("--cpu-batch", type=int, default=8, help="SAN batch timed on a CPU")
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = [
        row("SAN, `--preset market1501` (128x64, batch 32)", san_cost(SANConfig.market1501())),
        row("SAN, `--preset deepfashion` (256x256, batch 8)", san_cost(SANConfig.deepfashion())),
    ]
    for model in ("ide", "siamese", "bot"):
        for alpha in (None, 2):
            config = recipe(model, "modern")
            data = "original" if alpha is None else "alpha 2"
            name = (
                f"Re-ID {model}, ResNet-50 {config.height}x{config.width}, batch "
                f"{config.batch_size}, {config.epochs} epochs, {data}"
            )
            rows.append(row(name, reid_cost(config, market_labels(alpha))))
    paper = SANConfig.market1501()
    timed = (
        paper if device.type == "cuda" else dataclasses.replace(paper, batch_size=args.cpu_batch)
    )
    load_before = os.getloadavg()[0]
    seconds, peak_memory = measure_san_step(timed, device, args.steps)
    load_after = os.getloadavg()[0]
    achieved = san_cost(timed).step_flops / seconds
    paper_cost = san_cost(paper)
    estimate = {e.utilisation: e for e in gpu_estimates(paper_cost.total_flops)}
    measured = (
        f"Measured on {args.device}: the paper-size SAN step at batch {timed.batch_size} "
        f"({'bf16 autocast, channels_last' if device.type == 'cuda' else 'fp32 eager'}) took "
        f"{seconds:.2f} s over {args.steps} steps after a warm-up (load average "
        f"{load_before:.1f} before, {load_after:.1f} after): {format_flops(achieved)}/s. At "
        f"that rate the paper's {paper_cost.steps:,} steps take "
        f"{format_hours(paper_cost.total_flops / achieved / 3600)}"
    )
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = next((p for gpu, p in GPU_PEAKS.items() if gpu.split()[0] in name), None)
        if peak is not None:
            measured += f", {achieved / peak:.0%} of this GPU's bf16 peak"
        measured += "; estimated: " + ", ".join(
            f"{e.gpu} at {u:.0%} {format_hours(e.hours)}"
            for u, e in estimate.items()
            if e.gpu.split()[0] in name
        )
    if peak_memory is not None:
        measured += f". Peak GPU memory allocated: {peak_memory / 2**30:.1f} GiB"
    measured += "."
    header = " | ".join(
        f"{gpu.split(' (')[0]} at {' / '.join(f'{u:.0%}' for u in UTILISATIONS)}"
        for gpu in GPU_PEAKS
    )
    body = (
        f"Machine: {machine()}; `python -m benchmarks.training_cost --device {args.device}`.\n"
        "FLOPs of one training step counted by torch's flop counter on the real networks "
        "(the step `train --dry-run` and `reid train --dry-run` count; Re-ID on Market-1501's "
        f"{MARKET_TRAIN_IMAGES:,} training images of {MARKET_TRAIN_IDS} identities, or twice "
        "that with the alpha-2 set). Hours are estimates from the FLOPs at 30% and 50% of the "
        "dense bf16 peak (A100 312, H100 SXM 989 TFLOP/s), not measurements: small 128x64 "
        "images and BatchNorm-heavy networks often run below 30%.\n\n"
        "| training | parameters | forward+backward per sample (pair or image) | FLOPs per step "
        f"| steps | total | {header} |\n"
        "|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n\n" + measured + "\n\n"
        "GPU measurement: not measured here unless the line above names a CUDA device; "
        "`benchmarks/gpu.sh` runs this script on a GPU and prints measured beside estimated."
    )
    print(body)
    write_section("Training cost: FLOPs, GPU estimates, a measured step", body)


if __name__ == "__main__":
    main()
