"""Does SAN augmentation help Re-ID here, against controls? Section 5 as a paired experiment.

For each seed k: a synthetic Market-1501-layout set drawn with seed k (default 200
identities x 10 images: 100 for training, 100 held out), the demo-preset generator trained
with seed k, and the alpha-augmented sets made from ONE assignment of target poses by four
sources (original, copies, paint-by-parts, generator; :mod:`pipeline.synthesize`). Then the
Re-ID baselines (ResNet-18 from random weights at 128x64, the offline demo's recipe) train on
every set with seed k under an equal-steps budget (:func:`pipeline.reid_compare.run_comparison`),
and the rows of all seeds go through :func:`pipeline.reid_compare.summarize`: means with 95%
t-intervals over the seeds, paired differences against original and copies, a verdict per
model and distance. The dataset draw, the generator and the Re-ID training all change with the
seed. One extra row per seed trains IDE on the generator set at equal EPOCHS (twice the steps
at alpha 2), the confound of the earlier comparison, so its size shows beside the controlled
result.

Writes the "Re-ID: augmentation sources (synthetic)" section of BENCHMARKS.md and, with
``--out``, the comparison pages. A benchmark, not a test: 1.6 h for both models and 3 seeds on
2 loaded cores (the section gives the load).

    python -m benchmarks.reid_augmentation [--ids 200] [--seeds 3] [--epochs 5]
        [--models ide,siamese] [--out DIR] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import machine, write_section
from benchmarks.san_learning import build_synthetic_store
from pipeline.reid_compare import (
    Interval,
    comparison_rows,
    render_markdown,
    run_comparison,
    summarize,
    write_comparison,
)
from pipeline.synthesize import synthesize
from pipeline.train_generator import train_generator
from reid.config import TrainConfig
from reid.models import ReIDModelConfig
from san_model.config import SANConfig

SECTION = "Re-ID: augmentation sources (synthetic)"
SETS = ("original", "copies", "paint-by-parts", "generator")
METRICS = ("euclidean", "xqda", "kissme")


def recipe(kind: str, *, epochs: int) -> TrainConfig:
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
        checkpoint_every=10_000,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ids", type=int, default=200)
    parser.add_argument("--images-per-id", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--alpha", type=int, default=2)
    parser.add_argument("--models", default="ide,siamese")
    parser.add_argument("--generator-steps", type=int, default=None, help="default: preset's")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="reuse this folder (resumes)")
    parser.add_argument("--out", type=Path, default=None, help="also write the pages here")
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="am-reid-aug-"))
    kinds = args.models.split(",")
    started = time.perf_counter()
    rows, confound, counts = [], [], {}
    for seed in range(args.seeds):
        folder = work / f"seed{seed}"
        if (folder / "store").exists():
            from storage import open_store

            store = open_store(str(folder / "store"), mode="r+")
        else:
            store = build_synthetic_store(
                folder,
                ids=args.ids,
                images_per_id=args.images_per_id,
                test_pairs=128,
                seed=seed,
                queries_per_id=4,
            )
        counts = store.stamp("ingest").counts
        config = SANConfig.demo(use_perceptual=False, seed=seed)
        train_generator(
            store,
            folder / "generator",
            config=config,
            max_steps=args.generator_steps,
            pretrained_vgg=False,
        )
        synthesize(store, folder / "generator", alpha=args.alpha)
        for source in ("copies", "paint-by-parts"):
            synthesize(store, source=source, alpha=args.alpha)  # type: ignore[arg-type]
        configs = {kind: recipe(kind, epochs=args.epochs) for kind in kinds}
        stamps = run_comparison(
            store,
            folder / "reid",
            configs=configs,
            sets=SETS,
            alpha=args.alpha,
            seeds=[seed],
            intervals=False,
            metrics=METRICS,
            metric_options={"kissme": {"pca_dim": 64}},
            on_run=lambda name: print(f"{time.strftime('%H:%M:%S')} {name}", flush=True),
        )
        rows += comparison_rows(stamps)
        epochs = run_comparison(
            store,
            folder / "reid-equal-epochs",
            configs={"ide": configs.get("ide", recipe("ide", epochs=args.epochs))},
            sets=("generator",),
            alpha=args.alpha,
            seeds=[seed],
            budget="equal-epochs",
            intervals=False,
            metrics=METRICS,
            metric_options={"kissme": {"pca_dim": 64}},
        )
        confound += [{**row, "set": "generator (equal epochs)"} for row in comparison_rows(epochs)]
        print(f"{time.strftime('%H:%M:%S')} seed {seed} done", flush=True)
    hours = (time.perf_counter() - started) / 3600
    note = (
        f"Machine: {machine()}; {args.threads} threads, load {os.getloadavg()[0]:.1f} at the "
        f"end, {hours:.1f} h in all. Per seed k = 0..{args.seeds - 1}: a synthetic set drawn "
        f"with seed k ({args.ids} identities x {args.images_per_id} images: "
        f"{counts.get('train_images')} training images, {counts.get('query_images')} queries, "
        f"{counts.get('gallery_images')} gallery images), the demo-preset generator trained "
        f"with seed k ({args.generator_steps or SANConfig.demo().total_steps} steps, offline), "
        f"alpha {args.alpha} sets from one target-pose draw, and Re-ID ({', '.join(kinds)}: "
        f"ResNet-18 from random weights, 128x64, batch 16, SGD lr 0.01, {args.epochs} epoch(s) of "
        "the original set, equal steps for every set) with seed k. KISSME after PCA to 64. "
        "`python -m benchmarks.reid_augmentation --ids "
        f"{args.ids} --seeds {args.seeds} --epochs {args.epochs} --models {args.models}`."
    )
    page = render_markdown(rows, title=SECTION, note=note)
    # Without the title (the section heading is BENCHMARKS'), its headings one level down.
    body = "\n".join(
        "#" + line if line.startswith("## ") else line for line in page.split("\n")[2:]
    )
    ide_rows = [row for row in rows if row["model"] == "ide" and row["set"] == "generator"]
    summary = summarize(ide_rows + confound)
    body += (
        "\n### The old confound: the generator set at equal epochs (IDE)\n\n"
        "The same generator sets, IDE trained for the same EPOCHS as the original set, so "
        f"{args.alpha}x its steps (what the earlier comparison did). Mean [95% interval] over "
        "the seeds, and the paired difference against the equal-steps run:\n\n"
        "| distance | budget | steps | rank-1 | mAP |\n|---|---|---|---|---|\n"
    )
    for s in summary["sets"]:
        budget = "equal epochs" if "epochs" in s["set"] else "equal steps"
        body += (
            f"| {s['distance']} | {budget} | {s['steps']} | "
            f"{_text(s['rank1'])} | {_text(s['mAP'])} |\n"
        )
    for distance in METRICS:
        steps = {r["seed"]: r for r in ide_rows if r["distance"] == distance}
        epochs = {r["seed"]: r for r in confound if r["distance"] == distance}
        paired = sorted(set(steps) & set(epochs))
        for key in ("rank1", "mAP"):
            gap = Interval.of([epochs[s][key] - steps[s][key] for s in paired])
            body += f"\n{distance} {key}: equal epochs minus equal steps {gap.text(True)}"
    body += "\n"
    print(body)
    if args.out is not None:
        write_comparison(rows, args.out, title=SECTION, note=note)
    if not args.no_write:
        write_section(SECTION, body)


def _text(values: dict) -> str:
    low, high = values["low"], values["high"]
    if low is None:
        return f"{values['mean']:.2f}"
    return f"{values['mean']:.2f} [{low:.2f}, {high:.2f}]"


if __name__ == "__main__":
    main()
