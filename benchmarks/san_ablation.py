"""The paper's ablations (section 4.4) at the demo's CPU budget, on the synthetic set.

Variants of the demo preset, each trained for the same number of steps with several seeds on
the demo's synthetic set and evaluated on the same held-out pairs: the full model (T = 2, the
demo's), without the segmentation-mask inputs, and T = 1, 3 and 5 attention blocks. Without
perceptual loss is what every row does here (no VGG-19 weights offline); a "with perceptual
loss" row is added when the VGG-19 file is present. Writes the "SAN ablations" section of
BENCHMARKS.md (mean and spread over seeds) and ``docs/figures/san_ablation.png`` (the same
held-out pairs, one column per variant, as the paper's figs. 7 and 8).

    python -m benchmarks.san_ablation [--seeds 3] [--steps N] [--no-write]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.report import machine, write_section
from benchmarks.san_learning import COLUMNS, build_synthetic_store
from foundation.weights import MissingWeightsError, resolve_weights
from pipeline.evaluate import evaluate_generator, generate_pairs
from pipeline.pairs import TEST_TABLE
from pipeline.train_generator import train_generator
from san_model.checkpoint import VGG19_WEIGHTS, load_generator
from san_model.config import SANConfig
from san_model.visualize import colorize_pose, save_png

FIGURE = Path(__file__).resolve().parent.parent / "docs" / "figures" / "san_ablation.png"
FIGURE_ROWS = 6
VARIANTS: dict[str, dict[str, Any]] = {
    "full (T = 2)": {},
    "without mask inputs": {"use_mask_inputs": False},
    "T = 1": {"num_blocks": 1},
    "T = 3": {"num_blocks": 3},
    "T = 5": {"num_blocks": 5},
}


def vgg19_available() -> bool:
    try:
        resolve_weights(VGG19_WEIGHTS, download=False)
    except MissingWeightsError:
        return False
    return True


def figure(store: Any, runs: dict[str, Path]) -> np.ndarray:
    """Rows of held-out pairs: source | target pose | one column per variant | ground truth."""
    pairs = store.read_table(TEST_TABLE)[["source", "target"]].to_numpy(np.int64)[:FIGURE_ROWS]
    source, target = pairs.T
    arrays = store.load_in_memory(("images", "masks", "parsing"))
    columns = [
        arrays["images"][source],
        colorize_pose(arrays["masks"][target], arrays["parsing"][target]),
    ]
    for run_dir in runs.values():
        generator, _ = load_generator(run_dir)
        columns.append(generate_pairs(generator, arrays, source, target))
    columns.append(arrays["images"][target])
    rows = np.concatenate(columns, axis=2)  # [R, H, K * W, 3]
    return rows.reshape(-1, rows.shape[2], 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=None, help="default: the demo preset's")
    parser.add_argument("--test-pairs", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from flows.config import load_params

    demo = load_params(Path(__file__).resolve().parent.parent / "demo.yaml").dataset
    work = Path(tempfile.mkdtemp(prefix="am-ablation-"))
    store = build_synthetic_store(
        work,
        ids=demo.synthetic_ids,
        images_per_id=demo.synthetic_images_per_id,
        test_pairs=args.test_pairs,
    )
    perceptual = vgg19_available()
    variants = dict(VARIANTS)
    if perceptual:
        variants["with perceptual loss (VGG-19 relu1_2)"] = {"use_perceptual": True}
    base = SANConfig.demo(use_perceptual=False)
    steps = args.steps or base.total_steps
    results: dict[str, list[dict[str, Any]]] = {}
    minutes: dict[str, list[float]] = {}
    last_runs: dict[str, Path] = {}
    for name, change in variants.items():
        for seed in range(args.seeds):
            config = dataclasses.replace(base, seed=seed, **change)
            run_dir = work / f"{len(results)}-{seed}"
            started = time.perf_counter()
            train_generator(
                store, run_dir, config=config, max_steps=steps, pretrained_vgg=perceptual
            )
            minutes.setdefault(name, []).append((time.perf_counter() - started) / 60)
            metrics = evaluate_generator(store, run_dir, offline=True).report["metrics"]
            results.setdefault(name, []).append(metrics)
            print(name, seed, {k: round(metrics[k], 4) for k in COLUMNS}, flush=True)
            if seed == 0:
                last_runs[name] = run_dir
    pairs = store.stamp("pairs").counts
    lines = [
        f"Machine: {machine()}; {args.threads} threads, load {os.getloadavg()[0]:.1f} at the end. "
        f"Demo preset (128x64, ngf 8, batch 8, lr 2e-3, adversarial weight 0.05), {steps} steps "
        f"per run, seeds 0..{args.seeds - 1}; demo synthetic set ({pairs['train_ids']} training "
        f"identities), {results['full (T = 2)'][0]['test_pairs']} held-out test pairs of "
        f"{pairs['test_ids']} unseen identities. Every row without perceptual loss "
        + (
            "except the last (VGG-19 weights present)."
            if perceptual
            else "(no VGG-19 weights on this machine, so no 'with perceptual loss' row)."
        )
        + (
            " Mean and standard deviation over seeds."
            if args.seeds > 1
            else " One seed: the spread between seeds is not measured here (the GAN-loop "
            "section's two seeds differ by up to 0.003 in L1 and 0.024 in SSIM)."
        )
        + " Training minutes depend on the machine's load. `python -m benchmarks.san_ablation`.",
        "",
        "| variant | training minutes | " + " | ".join(COLUMNS) + " |",
        "|---" * (len(COLUMNS) + 2) + "|",
    ]
    for name, runs in results.items():
        cells = []
        for column in COLUMNS:
            values = np.array([run[column] for run in runs])
            spread = f" ± {values.std():.4f}" if len(values) > 1 else ""
            cells.append(f"{values.mean():.4f}{spread}")
        lines.append(f"| {name} | {np.mean(minutes[name]):.1f} | " + " | ".join(cells) + " |")
    copy = results["full (T = 2)"][0]
    lines.append(
        "| copy the source image | | "
        + " | ".join(f"{copy['copy_source_' + c]:.4f}" for c in COLUMNS)
        + " |"
    )
    lines.append(
        "| paint by parts | | "
        + " | ".join(f"{copy['paint_by_parts_' + c]:.4f}" for c in COLUMNS)
        + " |"
    )
    lines += [
        "",
        "Same held-out pairs, seed 0 (source | target pose | "
        + " | ".join(variants)
        + f" | ground truth): `{FIGURE.relative_to(FIGURE.parents[2])}`.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.no_write:
        save_png(figure(store, last_runs), FIGURE)
        write_section("SAN ablations", body)


if __name__ == "__main__":
    main()
