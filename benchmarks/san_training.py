"""SAN training throughput: in-memory batch gathering and train steps, CPU and CUDA.

    python benchmarks/san_training.py [--device cuda] [--steps N] [--compile] [--preset demo]

Prints the figures and appends rows to the "SAN training" section of BENCHMARKS.md. The model
is the paper-size generator (ngf 64, T = 5) and discriminator at 128x64, batch 32, with the
relu1_2 perceptual loss on a randomly initialised VGG-19 (same cost as the ImageNet one, whose
file may be absent). Data are random arrays of Market-1501's size held in memory.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

# Runnable as a script from a checkout that is not installed: make the repository importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import BENCHMARKS, machine, write_section  # noqa: E402
from san_model.batches import ModelBatch, PairSampler, SANTrainData  # noqa: E402
from san_model.config import SANConfig  # noqa: E402
from san_model.train import SANTrainer  # noqa: E402

TITLE = "SAN training"
TABLE_HEAD = (
    "| machine, date | device | measurement | setting | steps/s | pairs/s |\n"
    "|---|---|---|---|---|---|"
)
MARKET_IMAGES = 12_936  # bounding_box_train
MARKET_PAIRS = 243_200  # the paper's training pairs


def market_sized_data(config: SANConfig, seed: int = 0) -> SANTrainData:
    """Random uint8 arrays with Market-1501's training-set shapes (about 0.5 GB)."""
    rng = np.random.default_rng(seed)
    height, width = config.image_size
    n = MARKET_IMAGES
    return SANTrainData(
        images=rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8),
        masks=rng.integers(0, 2, (n, height, width), dtype=np.uint8),
        parsing=rng.integers(0, 20, (n, height, width), dtype=np.uint8),
        pairs=rng.integers(0, n, (MARKET_PAIRS, 2), dtype=np.int64),
    )


def timed(step: Callable[[], object], repeats: int, sync: bool, warmup: int = 1) -> float:
    """Seconds per call of ``step`` over ``repeats`` calls after ``warmup`` warm-up calls."""
    for _ in range(warmup):
        step()
    if sync:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    if sync:
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def loader_rate(sampler: PairSampler, config: SANConfig, repeats: int = 50) -> tuple[float, float]:
    """Pairs/s of (gather uint8 only, gather + float/one-hot conversion) on the CPU, in the
    steady state of training: the first conversions of a process page-fault their one-hot
    buffers in until the allocator keeps them, several times slower (10 warm-up calls)."""
    cpu = torch.device("cpu")
    gather = timed(
        lambda: sampler.gather(sampler.next_pairs(), cpu), repeats, sync=False, warmup=10
    )
    convert = timed(
        lambda: ModelBatch.from_pairs(
            sampler.gather(sampler.next_pairs(), cpu), num_classes=config.parsing_classes
        ),
        repeats,
        sync=False,
        warmup=10,
    )
    return config.batch_size / gather, config.batch_size / convert


def step_rate(
    config: SANConfig,
    sampler: PairSampler,
    device: torch.device,
    *,
    steps: int,
    channels_last: bool,
    bf16: bool = False,
    compile_models: bool = False,
) -> float:
    """Seconds per training step (one G and one D update, :meth:`SANTrainer.step`) on
    ``device``; bf16 autocast is for CUDA (the trainer keeps the CPU in fp32)."""
    trainer = SANTrainer(
        config,
        device,
        pretrained_vgg=False,
        channels_last=channels_last,
        autocast_dtype=torch.bfloat16 if bf16 else None,
    )
    if compile_models:
        trainer.g_model = torch.compile(trainer.generator)  # type: ignore[assignment]
        trainer.d_model = torch.compile(trainer.discriminator)  # type: ignore[assignment]

    def one_step() -> None:
        trainer.step(sampler)

    if compile_models:  # compilation happens in the first calls, keep it out of the timing
        started = time.perf_counter()
        one_step()
        print(f"torch.compile: first step {time.perf_counter() - started:.0f} s", flush=True)
    return timed(one_step, steps, sync=device.type == "cuda")


def existing_rows() -> list[str]:
    """The table rows already in this section, kept so the history accumulates."""
    if not BENCHMARKS.exists():
        return []
    text = BENCHMARKS.read_text()
    heading = f"## {TITLE}\n"
    if heading not in text:
        return []
    start = text.index(heading) + len(heading)
    end = text.find("\n## ", start)
    section = text[start : end if end != -1 else len(text)]
    return [
        line
        for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| machine") and "---" not in line
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per row")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (2 = CI machines)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument(
        "--preset",
        choices=["market1501", "demo"],
        default="market1501",
        help="the paper's model (with VGG-19), or the CPU demo's (no perceptual loss, offline)",
    )
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    torch.set_num_threads(args.threads)
    config = getattr(SANConfig, args.preset)(
        **({"use_perceptual": False} if args.preset == "demo" else {})
    )
    model = "paper-size G+D+VGG" if args.preset == "market1501" else "demo preset G+D"
    sampler = PairSampler(market_sized_data(config), batch_size=config.batch_size, seed=0)
    host = machine()  # platform, core count, GPU, torch version and date
    # The CI machines are shared: the 1-minute load average says how busy the cores were.
    load = os.getloadavg()[0]
    setting = f"128x64, batch {config.batch_size}, {args.threads} CPU threads, load {load:.1f}"
    rows = []

    def row(device: str, what: str, how: str, seconds: float | None, pairs: float | None) -> None:
        if seconds is None:
            steps = "n/a" if pairs is not None else "not measured"  # loader rows have no steps
        else:
            steps = f"{1 / seconds:.3f}"
        rate = "not measured" if pairs is None else f"{pairs:,.1f}"
        rows.append(f"| {host} | {device} | {what} | {how} | {steps} | {rate} |")
        print(rows[-1], flush=True)

    gather, convert = loader_rate(sampler, config, repeats=200)
    row("cpu", "loader: gather uint8 batch", setting, None, gather)
    row("cpu", "loader: gather + float/one-hot", setting, None, convert)
    if args.device == "cpu":  # fp32; channels_last (NHWC) is the layout mkldnn prefers
        cpu_rows = [("fp32", False, False), ("fp32 + channels_last", True, False)]
        if args.compile:
            cpu_rows.append(("fp32 + channels_last + torch.compile", True, True))
        for label, channels_last, compiled in cpu_rows:
            seconds = step_rate(
                config, sampler, torch.device("cpu"), steps=args.steps,
                channels_last=channels_last, compile_models=compiled,
            )  # fmt: skip
            row("cpu", f"train step, {model}", f"{setting}, {label}", seconds,
                config.batch_size / seconds)  # fmt: skip
    cuda_rows = [("fp32 eager", False, False), ("bf16 + channels_last", True, False)]
    if args.compile:
        cuda_rows.append(("bf16 + channels_last + torch.compile", True, True))
    for label, fast, compiled in cuda_rows:
        if args.device == "cuda":
            seconds = step_rate(
                config, sampler, torch.device("cuda"), steps=args.steps,
                channels_last=fast, bf16=fast, compile_models=compiled,
            )  # fmt: skip
            name = torch.cuda.get_device_name(0)
            row(name, f"train step, {model}", f"batch {config.batch_size}, {label}", seconds,
                config.batch_size / seconds)  # fmt: skip
        else:
            row("cuda", f"train step, {model}", f"batch {config.batch_size}, {label}", None, None)
    if not args.no_write:
        body = (
            "Run `python benchmarks/san_training.py [--device cuda] [--steps N] [--compile]`; "
            "each run appends its rows. Paper-size generator (43.7M parameters) and "
            "discriminator at 128x64, batch 32, relu1_2 perceptual loss on a random VGG-19 "
            "(same cost as ImageNet weights), or (`--preset demo`) the demo preset's G and D "
            "at batch 8 without perceptual loss; one step = one G and one D update; random "
            f"Market-sized arrays ({MARKET_IMAGES:,} images, {MARKET_PAIRS:,} pairs) in "
            "memory. Loader rows time `PairSampler` on the CPU; in GPU training only the "
            "uint8 gather runs there, the float/one-hot conversion runs on the GPU. CPU "
            "figures vary about 2x with the load of the shared machine (see `load`). "
            '"not measured": the run had no CUDA device.\n\n'
            + TABLE_HEAD
            + "\n"
            + "\n".join(existing_rows() + rows)
        )
        write_section(TITLE, body)
        print(f"wrote section '{TITLE}' of {BENCHMARKS}")


if __name__ == "__main__":
    main()
