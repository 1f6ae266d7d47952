"""Re-ID benchmarks: evaluator, XQDA fit, feature extraction, IDE and BoT training throughput.

Usage: ``python benchmarks/reid.py [--device cuda]``. Prints the results and writes them as the
"## Re-ID" section of BENCHMARKS.md (other sections are left as they are).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.reid_evaluator import evaluator_lines  # noqa: E402
from reid.metric_learning import XQDA  # noqa: E402
from reid.models import ReIDModelConfig, build_reid_model  # noqa: E402
from reid.train import TrainConfig, extract_features, train_reid  # noqa: E402

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
NUM_TRAIN, TRAIN_IDS = 12936, 751


def best_of(repeats: int, run) -> float:
    """Fastest wall time of ``repeats`` calls (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_xqda() -> list[str]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(NUM_TRAIN) % TRAIN_IDS
    cameras = (torch.arange(NUM_TRAIN) // TRAIN_IDS) % 6 + 1  # each id seen by several cameras
    features = torch.randn(NUM_TRAIN, 2048, generator=gen)
    xqda = XQDA()
    seconds = best_of(1, lambda: xqda.fit(features, labels, cameras))
    return [
        f"- XQDA fit on {NUM_TRAIN} x 2048 random features, {TRAIN_IDS} ids: {seconds:.1f} s "
        f"(float64; kept {len(xqda.eigenvalues)} dims)"
    ]


def bench_network(device: str) -> list[str]:
    """ResNet-50 at 256x128, random init (no weights needed): extraction and training."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    gen = torch.Generator().manual_seed(0)
    batches, batch = (2, 32) if dev.type == "cpu" else (20, 128)
    images = torch.randint(0, 256, (batches * batch, 128, 64, 3), generator=gen, dtype=torch.uint8)
    model = build_reid_model(config=ReIDModelConfig(pretrained=False), num_classes=TRAIN_IDS)
    extract_features(model, images[:batch], batch_size=batch, device=dev)  # warm-up
    if dev.type == "cuda":
        torch.cuda.synchronize()
    seconds = best_of(1, lambda: extract_features(model, images, batch_size=batch, device=dev))
    extract_rate = len(images) / seconds

    # Four images per identity, so PK batches (BoT: 16 ids x 4) draw without repeats.
    labels = torch.arange(len(images)) // 4
    recipes = {
        "IDE (modern recipe)": TrainConfig(model=ReIDModelConfig(pretrained=False)),
        "BoT (BNNeck, last stride 1, PK batches, triplet)": TrainConfig.bot(
            model=ReIDModelConfig(kind="bot", last_stride=1, dropout=0.0, pretrained=False)
        ),
    }
    steps = 3 if dev.type == "cpu" else 20
    precision = "bf16 autocast" if dev.type == "cuda" else "float32"
    lines = [
        f"- {device}: feature extraction, ResNet-50 256x128, batch {batch}: "
        f"{extract_rate:.1f} images/s ({precision})"
    ]
    rates = {}
    for name, recipe in recipes.items():
        config = dataclasses.replace(recipe, checkpoint_every=10**9, checkpoint_minutes=0.0)
        with tempfile.TemporaryDirectory() as run_dir:
            # The first call builds the model and takes one step; the resumed call times the rest.
            train_reid(config, images, labels, run_dir, device=dev, max_steps=1)
            start = time.perf_counter()
            train_reid(config, images, labels, run_dir, device=dev, max_steps=steps)
            train_seconds = time.perf_counter() - start
        rates[name] = (steps - 1) * config.batch_size / train_seconds
        lines.append(
            f"- {device}: {name} training, ResNet-50 256x128, batch {config.batch_size}, "
            f"{steps - 1} steps after a warm-up step (includes a checkpoint load/save): "
            f"{rates[name]:.1f} images/s ({precision})"
        )
    ide, bot = rates.values()
    lines.append(f"- {device}: BoT trains {bot / ide:.2f}x as many images/s as IDE in the same run")
    return lines


def write_section(lines: list[str]) -> None:
    """Replace (or append) the "## Re-ID" section of BENCHMARKS.md."""
    section = "## Re-ID\n\n" + "\n".join(lines) + "\n"
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## Re-ID\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text).rstrip("\n") + "\n"
    else:
        text = text.rstrip("\n") + "\n\n" + section
    BENCHMARKS.write_text(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="also measure the networks on this device")
    args = parser.parse_args(argv)
    machine = (
        f"- machine: {platform.platform()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
        f" ({torch.get_num_threads()} threads), {datetime.date.today().isoformat()}"
    )
    print(machine, flush=True)
    lines = [machine]
    benches = [evaluator_lines, bench_xqda, lambda: bench_network("cpu")]
    if args.device.startswith("cuda") and torch.cuda.is_available():
        benches.append(
            lambda: [f"- GPU: {torch.cuda.get_device_name()}"] + bench_network(args.device)
        )
    else:
        benches.append(lambda: ["- cuda: not measured (no GPU on this machine)"])
    for bench in benches:
        new = bench()
        print("\n".join(new), flush=True)
        lines += new
    write_section(lines)


if __name__ == "__main__":
    main()
