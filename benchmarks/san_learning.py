"""Learning benchmark: SAN on the synthetic set's held-out identities, against two baselines.

Builds a synthetic Market-1501-layout set (ground-truth masks and parsing), samples every
ordered training pair and ``--test-pairs`` held-out pairs of unseen identities, trains a preset
(default: the demo's) and evaluates it at a few points of its schedule with the evaluate
stage's pixel metrics: L1, masked L1 (inside the target's person mask), SSIM, PSNR and the
part-colour error, beside "copy the source image" and "paint by parts". Writes the "SAN
learning" section of BENCHMARKS.md and ``docs/figures/san_learning_examples.png``.

    python -m benchmarks.san_learning [--preset demo] [--steps N] [--pool-size K] [--no-write]

Shared with :mod:`benchmarks.san_ablation`: :func:`build_synthetic_store` and
:func:`learning_curve`.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from benchmarks.report import machine, write_section
from pipeline.evaluate import evaluate_generator, pixel_table
from pipeline.ingest import ingest
from pipeline.pairs import PairsConfig, sample_pairs
from pipeline.segmentation import import_provided
from pipeline.synthetic_dataset import generate_synthetic
from pipeline.train_generator import train_generator
from san_model.config import SANConfig
from storage import PersonStore, open_store

FIGURES = Path(__file__).resolve().parent.parent / "docs" / "figures"
FIGURE = FIGURES / "san_learning_examples.png"
COLUMNS = ("l1", "masked_l1", "ssim", "psnr", "part_colour")


def build_synthetic_store(
    work: Path, *, ids: int, images_per_id: int, test_pairs: int, seed: int = 0, **synthetic: Any
) -> PersonStore:
    """Synthetic set -> store with its ground-truth masks/parsing and every training pair.

    ``synthetic`` goes to :func:`pipeline.synthetic_dataset.generate_synthetic` (e.g.
    queries_per_id).
    """
    generate_synthetic(work / "data", ids=ids, images_per_id=images_per_id, seed=seed, **synthetic)
    ingest(work / "data", str(work / "store"))
    store = open_store(str(work / "store"), mode="r+")
    for kind in ("masks", "parsing"):
        import_provided(store, work / "data" / "annotations", kind=kind)  # type: ignore[arg-type]
    sample_pairs(store, PairsConfig(train_pairs=None, test_pairs=test_pairs, seed=seed))
    return store


def learning_curve(
    store: PersonStore, run_dir: Path, config: SANConfig, *, steps: int, points: int
) -> tuple[list[tuple[int, float, dict[str, Any]]], Path]:
    """Train ``config`` for ``steps`` steps, evaluating the held-out pairs ``points`` times.

    Resume is exact, so evaluating along the way does not change the final weights.

    Returns:
        ``[(step, training seconds so far, metrics)]`` and the last examples picture.
    """
    curve = []
    seconds = 0.0
    for k in range(1, points + 1):
        target = round(steps * k / points)
        started = time.perf_counter()
        train_generator(store, run_dir, config=config, max_steps=target, pretrained_vgg=False)
        seconds += time.perf_counter() - started
        metrics = evaluate_generator(store, run_dir, offline=True).report["metrics"]
        curve.append((target, seconds, metrics))
    return curve, run_dir / "evaluation" / "examples.png"


def curve_table(curve: list[tuple[int, float, dict[str, Any]]]) -> list[str]:
    lines = [
        "| step | training minutes | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for step, seconds, metrics in curve:
        values = " | ".join(f"{metrics[name]:.4f}" for name in COLUMNS)
        lines.append(f"| {step} | {seconds / 60:.1f} | {values} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="demo", choices=["demo", "tiny", "market1501"])
    parser.add_argument("--steps", type=int, default=None, help="default: the preset's")
    parser.add_argument("--pool-size", type=int, default=None, help="default: the preset's")
    parser.add_argument("--ids", type=int, default=None, help="default: the demo's dataset")
    parser.add_argument("--images-per-id", type=int, default=None)
    parser.add_argument("--test-pairs", type=int, default=256)
    parser.add_argument("--points", type=int, default=4, help="evaluations along the way")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from flows.config import load_params

    demo = load_params(Path(__file__).resolve().parent.parent / "demo.yaml").dataset
    ids = args.ids or demo.synthetic_ids
    per_id = args.images_per_id or demo.synthetic_images_per_id
    config = getattr(SANConfig, args.preset)(use_perceptual=False)
    if args.pool_size is not None:
        config = dataclasses.replace(config, pool_size=args.pool_size)
    steps = args.steps or config.total_steps
    work = Path(tempfile.mkdtemp(prefix="am-learn-"))
    store = build_synthetic_store(work, ids=ids, images_per_id=per_id, test_pairs=args.test_pairs)
    pairs = store.stamp("pairs").counts
    curve, examples = learning_curve(store, work / "run", config, steps=steps, points=args.points)
    final = curve[-1][2]
    load = os.getloadavg()[0]
    body = "\n".join(
        [
            f"Machine: {machine()}; {args.threads} threads, load {load:.1f} at the end. "
            f"Synthetic set: {ids} ids x {per_id} images, {pairs['train_pairs']} training "
            f"pairs of {pairs['train_ids']} identities; {final['test_pairs']} held-out test "
            f"pairs of {pairs['test_ids']} unseen identities. Generator: preset "
            f"`{args.preset}` ({config.image_size[0]}x{config.image_size[1]}, ngf "
            f"{config.ngf}, T = {config.num_blocks}, batch {config.batch_size}, lr "
            f"{config.lr:g} decaying linearly to 0, (alpha, beta, gamma) = ({config.alpha:g}, "
            f"{config.beta:g}, 0): no perceptual loss offline, image pool {config.pool_size}), "
            f"{steps} steps. `python -m benchmarks.san_learning`.",
            "",
            *pixel_table(final, name=f"SAN, {steps} steps"),
            "",
            "Learning curve on the held-out pairs:",
            "",
            *curve_table(curve),
            "",
            "Held-out examples (source | target pose | paint by parts | generated | ground "
            f"truth): `{FIGURE.relative_to(FIGURE.parents[2])}`.",
        ]
    )
    print(body)
    if not args.no_write:
        FIGURE.parent.mkdir(parents=True, exist_ok=True)
        Image.open(examples).save(FIGURE, optimize=True)
        write_section("SAN learning", body)


if __name__ == "__main__":
    main()
