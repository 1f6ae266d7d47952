"""Does SAN augmentation help Re-ID here? Original vs alpha-augmented training, several seeds.

On a synthetic Market-1501-layout set big enough to measure (default 240 identities: 120 for
training, 120 held out with about 340 queries), trains the demo-preset generator, synthesizes
the alpha-augmented training set, then trains the IDE and Siamese baselines (ResNet-18 from
random weights at 128x64, the offline demo's recipe with more epochs) on the original and the
augmented set with several seeds, and reports rank-1 and mAP (Euclidean, XQDA, KISSME) as mean
and standard deviation. Writes the "Re-ID: original vs augmented (synthetic)" section of
BENCHMARKS.md. This is a benchmark, not a test: about an hour on 2 CPU cores.

    python -m benchmarks.reid_augmentation [--ids 240] [--seeds 3] [--epochs 8] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.report import machine, write_section
from benchmarks.san_learning import build_synthetic_store
from pipeline.reid_stage import train_reid_baseline
from pipeline.synthesize import synthesize
from pipeline.train_generator import train_generator
from reid.models import ReIDModelConfig
from reid.train import TrainConfig
from san_model.config import SANConfig

SECTION = "Re-ID: original vs augmented (synthetic)"
METRICS = ("euclidean", "xqda", "kissme")


def recipe(kind: str, *, epochs: int, seed: int) -> TrainConfig:
    """The offline demo's Re-ID recipe (demo.yaml) with ``epochs`` epochs."""
    return TrainConfig(
        model=ReIDModelConfig(
            kind=kind,  # type: ignore[arg-type]
            arch="resnet18",
            pretrained=False,
            verification_dropout=0.5,
        ),
        height=128,
        width=64,
        batch_size=16,
        epochs=epochs,
        lr_milestones=(max(1, epochs * 3 // 4),),
        lr=0.01,
        backbone_lr_mult=1.0,
        seed=seed,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=240)
    parser.add_argument("--images-per-id", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--alpha", type=int, default=2)
    parser.add_argument("--generator-steps", type=int, default=None, help="default: preset's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="am-reid-aug-"))
    started = time.perf_counter()
    store = build_synthetic_store(
        work, ids=args.ids, images_per_id=args.images_per_id, test_pairs=128, queries_per_id=4
    )
    counts = store.stamp("ingest").counts
    config = SANConfig.demo(use_perceptual=False)
    train_generator(
        store,
        work / "generator",
        config=config,
        max_steps=args.generator_steps,
        pretrained_vgg=False,
    )
    synthesize(store, work / "generator", alpha=args.alpha, seed=0)
    results: dict[tuple[str, str], list[dict[str, dict[str, float]]]] = {}
    for seed in range(args.seeds):
        for kind in ("ide", "siamese"):
            for alpha in (None, args.alpha):
                stamp = train_reid_baseline(
                    store,
                    work / f"reid-{seed}",
                    config=recipe(kind, epochs=args.epochs, seed=seed),
                    alpha=alpha,
                    metrics=METRICS,
                    metric_options={"kissme": {"pca_dim": 64}},
                )
                assert stamp is not None
                label = "original" if alpha is None else f"augmented alpha={alpha}"
                results.setdefault((kind, label), []).append(stamp.report["results"])
                print(seed, kind, label, stamp.report["results"]["euclidean"], flush=True)
    hours = (time.perf_counter() - started) / 3600
    lines = [
        f"Machine: {machine()}; {args.threads} threads, load {os.getloadavg()[0]:.1f} at the "
        f"end, {hours:.1f} h in all. Synthetic set: {args.ids} identities x "
        f"{args.images_per_id} images ({counts['train_images']} training images, "
        f"{counts['query_images']} queries, {counts['gallery_images']} gallery images). "
        f"Generator: the demo preset ({args.generator_steps or config.total_steps} steps, "
        "offline). Re-ID: ResNet-18 "
        f"from random weights (offline), 128x64, batch 16, SGD lr 0.01, {args.epochs} epochs; "
        f"KISSME after PCA to 64; seeds 0..{args.seeds - 1}; rank-1 / mAP in percent, mean ± "
        "standard deviation over seeds. `python -m benchmarks.reid_augmentation "
        f"--ids {args.ids} --seeds {args.seeds} --epochs {args.epochs}`.",
        "",
        "| model | training set | distance | rank-1 | mAP |",
        "|---|---|---|---|---|",
    ]
    for (kind, label), runs in results.items():
        for metric in METRICS:
            rank1 = np.array([run[metric]["rank1"] for run in runs])
            mean_ap = np.array([run[metric]["mAP"] for run in runs])
            lines.append(
                f"| {kind} | {label} | {metric} | {rank1.mean():.2f} ± {rank1.std():.2f} | "
                f"{mean_ap.mean():.2f} ± {mean_ap.std():.2f} |"
            )
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        write_section(SECTION, body)


if __name__ == "__main__":
    main()
