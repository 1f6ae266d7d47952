"""Every stage that needs no pretrained weights, on the real Market-1501 at full scale.

Ingest, info, placeholder masks/parsing (the Mask R-CNN and SCHP weights cannot be downloaded
here: a fixed person-shaped template is imported as "provided" annotations, so the numbers
downstream are pipeline mechanics, not results), the paper's pairs (243,200 / 12,000), the
generator's training loaders, a briefly trained demo generator, synthesis (alpha 2) and
export, Re-ID feature extraction (ResNet-18 at 128x64, random weights: ImageNet weights
cannot be downloaded either) and evaluation at real size. Run:
``python -m benchmarks.real_market SOURCE [--work DIR] [--steps 200]``; writes the
"real Market-1501" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from benchmarks.report import machine_and_load, publish
from pipeline.export import export_market
from pipeline.ingest import ingest
from pipeline.pairs import PairsConfig, sample_pairs
from pipeline.reid_stage import split_features
from pipeline.segmentation import import_provided
from pipeline.streaming import StreamingPairSampler
from pipeline.synthesize import synthesize
from pipeline.train_generator import load_training_data, train_generator
from reid.evaluate import compute_distance, evaluate_ranking
from reid.models import ReIDModelConfig, build_reid_model
from san_model.config import SANConfig
from san_model.train import PairSampler
from storage import PersonStore, open_store


def placeholder_annotations(store: PersonStore, folder: Path) -> None:
    """One fixed person-shaped mask and LIP parsing for every image (not a segmentation)."""
    height, width = store.height, store.width
    y, x = np.mgrid[:height, :width]
    mask = (((y - height / 2) / (0.47 * height)) ** 2 + ((x - width / 2) / (0.3 * width)) ** 2) < 1
    bands = np.select(
        [y < 0.1 * height, y < 0.2 * height, y < 0.5 * height, y < 0.9 * height],
        [2, 13, 5, 9],  # hair, face, upper-clothes, pants
        default=18,  # left-shoe
    )
    parsing = np.where(mask, bands, 0).astype(np.uint8)
    for kind, picture in (("masks", mask.astype(np.uint8) * 255), ("parsing", parsing)):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        Image.fromarray(picture).save(folder / kind / "template.png")
        for name in store.index["filename"]:
            os.link(folder / kind / "template.png", folder / kind / f"{Path(name).stem}.png")


def timed(run: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def loader_rates(store: PersonStore, steps: int = 50) -> dict[str, float]:
    """Pairs/s of the training loaders on the real pairs table, batch 32."""
    cpu = torch.device("cpu")
    load_s, data = timed(lambda: load_training_data(store))
    samplers: dict[str, Any] = {
        "in memory (PairSampler)": PairSampler(data, batch_size=32, seed=0),
        "streaming, encoded chunks cached": StreamingPairSampler(
            store,
            store.read_table("pairs_train")[["source", "target"]].to_numpy(np.int64),
            batch_size=32,
            seed=0,
        ),
    }
    rates = {"load_training_data seconds": load_s}
    for name, sampler in samplers.items():
        sampler.gather(sampler.next_pairs(), cpu)
        seconds, _ = timed(lambda s=sampler: [s.gather(s.next_pairs(), cpu) for _ in range(steps)])
        rates[name] = steps * 32 / seconds
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("source", type=Path)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="am-real-"))
    for name in ("store", "annotations", "run", "export"):
        shutil.rmtree(work / name, ignore_errors=True)
    url = str(work / "store")
    load = [os.getloadavg()[0]]
    rows: list[tuple[str, str]] = []

    seconds, stamp = timed(lambda: ingest(args.source, url))
    counts = stamp.counts
    rows.append(
        (
            "ingest",
            f"{seconds:.1f} s, {counts['images'] / seconds:,.0f} images/s; {counts['images']:,} "
            f"images (train {counts['train_images']:,}, gallery {counts['gallery_images']:,}, "
            f"query {counts['query_images']:,}), {counts['double_suffix_images']} `*.jpg.jpg`, "
            f"{counts['skipped']} skipped, {counts['jpeg_verbatim']:,} JPEGs verbatim",
        )
    )
    store = open_store(url, mode="r+")
    summary = store.summary()
    ids = summary.ids_per_split
    rows.append(
        (
            "info",
            f"identities train {ids['train']}, gallery {ids['gallery']} (pid > 0), query "
            f"{ids['query']}; store {summary.size_bytes / 2**20:.1f} MiB",
        )
    )
    placeholder_annotations(store, work / "annotations")
    seconds, _ = timed(
        lambda: [import_provided(store, work / "annotations", kind=k) for k in ("masks", "parsing")]
    )
    rows.append(
        ("placeholder masks + parsing imported (one template PNG each)", f"{seconds:.1f} s")
    )
    seconds, stamp = timed(lambda: sample_pairs(store, PairsConfig.market1501()))
    c = stamp.counts
    rows.append(
        (
            "pairs (paper's counts)",
            f"{c['train_pairs']:,} train ({c['train_ids']} ids) / {c['test_pairs']:,} test "
            f"({c['test_ids']} ids), {seconds:.1f} s",
        )
    )
    rates = loader_rates(store)
    rows.append(
        (
            "generator loader, batch 32 (uint8 on the CPU)",
            f"training rows loaded in {rates.pop('load_training_data seconds'):.1f} s; "
            + ", ".join(f"{name} {rate:,.0f} pairs/s" for name, rate in rates.items()),
        )
    )
    config = SANConfig.demo(use_perceptual=False)
    seconds, stamp = timed(
        lambda: train_generator(
            store, work / "run", config=config, max_steps=args.steps, pretrained_vgg=False
        )
    )
    assert stamp is not None
    rows.append(
        (
            f"generator: SANConfig.demo(use_perceptual=False), {stamp.counts['steps']} steps",
            f"{seconds / 60:.1f} min ({stamp.counts['steps'] / seconds:.2f} steps/s, batch "
            f"{config.batch_size}); last step's L1 {stamp.report['losses'].get('g_l1', 0):.3f}",
        )
    )
    seconds, stamp = timed(lambda: synthesize(store, work / "run", alpha=2))
    rows.append(
        (
            "synthesis, alpha 2",
            f"{stamp.counts['generated']:,} images in {seconds / 60:.1f} min "
            f"({stamp.counts['generated'] / seconds:,.0f} images/s)",
        )
    )
    seconds, written = timed(lambda: export_market(store, work / "export", alpha=2))
    rows.append(("export (Market-1501 layout, alpha 2)", f"{written:,} files in {seconds:.1f} s"))

    torch.set_num_threads(2)
    model = build_reid_model(
        config=ReIDModelConfig(arch="resnet18", pretrained=False), num_classes=751
    )
    seconds, features = timed(lambda: split_features(store, model, size=(128, 64)))
    n = sum(len(f["pids"]) for f in features.values())
    rows.append(
        (
            "Re-ID features, ResNet-18 at 128x64, random weights (train, query, gallery)",
            f"{n:,} images in {seconds:.0f} s ({n / seconds:,.0f} images/s, 2 threads)",
        )
    )
    q, g = features["query"], features["gallery"]
    distance_s, distmat = timed(lambda: compute_distance(q["features"], g["features"]))
    seconds, result = timed(
        lambda: evaluate_ranking(distmat, q["pids"], g["pids"], q["cams"], g["cams"])
    )
    rows.append(
        (
            f"Re-ID evaluation, {len(q['pids']):,} x {len(g['pids']):,}",
            f"distances {distance_s:.2f} s, evaluate_ranking {seconds:.2f} s; "
            f"{result.num_valid_queries:,} valid queries; rank-1 {100 * result.rank1:.2f}, "
            f"mAP {100 * result.mAP:.2f} (random weights: mechanics only)",
        )
    )
    load.append(os.getloadavg()[0])
    publish(
        "real Market-1501",
        [
            f"{machine_and_load(load)} (2 cores shared with other benchmarks). "
            f"Source: {args.source.name}, complete. Masks and parsing are a fixed placeholder "
            "template imported as provided annotations (no Mask R-CNN / SCHP weights here), and "
            "the Re-ID network has random weights: the figures measure the pipeline at real "
            "scale, not the method. "
            f"`python -m benchmarks.real_market SOURCE --steps {args.steps}`.",
            "",
            "| stage | figure |",
            "|---|---|",
            *[f"| {stage} | {figure} |" for stage, figure in rows],
        ],
    )
    if args.work is None:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
