"""Evaluation stage: a trained generator on the test pairs, measured as in the paper's table 1.

The generator's images of every test pair are scored by :class:`pipeline.scoring.PairScorer`
(FID, LPIPS, mask-LPIPS and pixel metrics beside two baselines). In the declared offline mode
(no pretrained Inception/AlexNet on the machine) only the pixel metrics are computed, and every
output says so. The results page (:func:`results_markdown`) sets them beside the paper's table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foundation.weights import sha256_of
from pipeline.datasets import dataset_title
from pipeline.pairs import TEST_TABLE
from pipeline.scoring import BASELINES, PairScorer
from pipeline.train_generator import generator_checkpoint
from san_model.checkpoint import load_generator
from san_model.fid_inception import FIDVariant
from san_model.generator import SANGenerator, generate
from san_model.visualize import sample_grid, save_png
from storage import PersonStore, StageStamp

# Paper table 1 per dataset kind: the metrics it reports (result keys), then each method's
# numbers (Market-1501: FID, LPIPS, mask-LPIPS; DeepFashion: FID, LPIPS).
PAPER_TABLE: dict[str, tuple[tuple[str, ...], dict[str, tuple[float, ...]]]] = {
    "market1501": (
        ("fid", "lpips", "mask_lpips"),
        {
            "VU-Net": (20.144, 0.3211, 0.1747),
            "Def-GAN": (25.364, 0.2994, 0.1496),
            "Intro-Flow": (27.163, 0.2888, 0.1403),
            "Deep Image Spatial (GFLA)": (19.751, 0.2817, 0.1482),
            "SAN": (14.142, 0.2632, 0.1282),
        },
    ),
    "deepfashion": (
        ("fid", "lpips"),
        {
            "VU-Net": (23.667, 0.2637),
            "Def-GAN": (18.457, 0.2330),
            "Intro-Flow": (16.314, 0.2131),
            "Deep Image Spatial (GFLA)": (10.573, 0.2341),
            "SAN": (8.732, 0.2078),
        },
    ),
}
METRIC_NAMES = {"fid": "FID", "lpips": "LPIPS", "mask_lpips": "mask-LPIPS"}
METRIC_DIGITS = {"fid": 3, "lpips": 4, "mask_lpips": 4}
# Pixel metric -> whether higher is better.
PIXEL_METRICS = {"l1": False, "masked_l1": False, "ssim": True, "psnr": True, "part_colour": False}


def paper_comparison(dataset: str, rows: dict[str, dict[str, Any]]) -> list[str]:
    """The dataset's rows of the paper's table 1 with ``rows`` (name -> results) beside them,
    in the table's columns; a dataset the table lacks gets a line saying so and the rows' own
    FID / LPIPS / mask-LPIPS.

    Args:
        dataset: a dataset kind (:func:`pipeline.datasets.dataset_names`) or
            :data:`pipeline.datasets.CUSTOM`.
        rows: results with ``fid``, ``lpips``, ``mask_lpips`` (a missing one shows n/a).
    """
    title = dataset_title(dataset)

    def cell(row: dict[str, Any], key: str) -> str:
        return f"{row[key]:.{METRIC_DIGITS[key]}f}" if key in row else "n/a"

    if dataset not in PAPER_TABLE:
        lines = [
            f"The paper's table 1 has no results on {title}, so nothing to compare with here.",
            "",
            "| method | " + " | ".join(METRIC_NAMES.values()) + " |",
            "|---|" + "---|" * len(METRIC_NAMES),
        ]
        lines += [
            f"| {name} | " + " | ".join(cell(row, k) for k in METRIC_NAMES) + " |"
            for name, row in rows.items()
        ]
        return lines
    metrics, published = PAPER_TABLE[dataset]
    extra = [k for k in METRIC_NAMES if k not in metrics]
    header = [f"{title} {METRIC_NAMES[k]}" for k in metrics]
    header += [f"{METRIC_NAMES[k]} (not in the paper's {title} columns)" for k in extra]
    lines = [
        f"The paper's table 1, {title} columns, and the rows measured here:",
        "",
        "| method | " + " | ".join(header) + " |",
        "|---|" + "---|" * len(header),
    ]
    blank = " |" * len(extra)
    lines += [
        f"| {name} (paper table 1) | " + " | ".join(f"{v:g}" for v in values) + " |" + blank
        for name, values in published.items()
    ]
    lines += [
        f"| {name} | " + " | ".join(cell(row, k) for k in [*metrics, *extra]) + " |"
        for name, row in rows.items()
    ]
    return lines


def generate_pairs(
    generator: SANGenerator,
    arrays: dict[str, np.ndarray],
    source: np.ndarray,
    target: np.ndarray,
) -> np.ndarray:
    """The generator's images of (source, target) rows of ``arrays`` (the store's decoded
    ``images``, ``masks``, ``parsing``): uint8 [P, H, W, 3]."""
    inputs = [
        torch.from_numpy(arrays[name][rows])
        for name, rows in (
            ("images", source),
            ("masks", source),
            ("parsing", source),
            ("masks", target),
            ("parsing", target),
        )
    ]
    return generate(generator, *inputs).numpy()


def evaluate_generator(
    store: PersonStore,
    run_dir: str | Path,
    *,
    device: str = "cpu",
    offline: bool = False,
    pretrained: bool = True,
    fid_variant: FIDVariant = "torchvision",
    batch_size: int = 64,
    progress: Callable[[int, int], None] | None = None,
) -> StageStamp:
    """Generate every test pair and measure; write ``<run_dir>/evaluation/``.

    Args:
        run_dir: the trained generator's run folder.
        offline: declared offline mode: pixel metrics only (no Inception/AlexNet weights).
        pretrained: ImageNet Inception/AlexNet; False uses random networks (tests only; the
            numbers are then not comparable and labelled so).
        fid_variant: ``torchvision`` (GFLA protocol, the paper's table) or ``tf-fid``.
    Returns:
        The ``evaluate`` stamp; ``report["metrics"]`` holds the numbers.
    Raises:
        MissingRunError, UnreadableWeightsError: no readable generator checkpoint in
            ``run_dir``; the stage's earlier results and stamp are kept.
    """
    out = Path(run_dir) / "evaluation"
    with store.stage("evaluate", inputs=["generator", "pairs"], n_blocks=1) as run:
        checkpoint = generator_checkpoint(run_dir)
        run.configure(
            {
                "checkpoint_sha256": sha256_of(checkpoint),
                "offline": offline,
                "pretrained": pretrained,
                "fid_variant": fid_variant,
            }
        )
        pairs = store.read_table(TEST_TABLE)[["source", "target"]].to_numpy(np.int64)
        generator, _ = load_generator(checkpoint, device=device)
        scorer = PairScorer(
            store,
            offline=offline,
            pretrained=pretrained,
            fid_variants=(fid_variant,),
            device=device,
            batch_size=batch_size,
        )
        results = scorer.score(
            pairs, lambda rows: generate_pairs(generator, scorer.arrays, *pairs[rows].T), progress
        )
        run.begin()  # the results go to the run folder, outside the store
        _write_outputs(out, results, scorer.arrays, scorer.examples)
        run.mark_done(0)
        return run.finish(
            counts={"test_pairs": len(pairs)},
            report={
                "metrics": results,
                "results": str(out / "results.md"),
                "examples": str(out / "examples.png"),
            },
        )


def results_markdown(
    results: dict[str, Any], *, examples: str | None = None, level: int = 1
) -> str:
    """The evaluation page: examples picture, pixel metrics with baselines, then table 1.

    Args:
        results: the ``evaluate`` stage's metrics.
        examples: link to the examples picture, relative to where the page is written.
        level: Markdown heading level of the page's title (2 inside the run's report).
    """
    dataset = results.get("dataset", "market1501")
    title = dataset_title(dataset)
    lines = [
        f"{'#' * level} Generator evaluation on {title} ({results['test_pairs']} test pairs)",
        "",
    ]
    if "test_pairs_source" in results:
        lines += [f"Test pairs: {results['test_pairs_source']}.", ""]
    if examples is not None:
        lines += [
            f"![Held-out test pairs]({examples})",
            "",
            "Held-out test pairs, one per row: source | target pose (mask + parsing) | "
            "paint by parts | generated | ground truth.",
            "",
        ]
    lines += [*pixel_table(results), "", f"Mode: {results['mode']}.", ""]
    if "fid" in results:
        lines += [
            f"FID variant: {results['fid_variant']} Inception (generated test images vs "
            f"the {results['fid_real_images']} training images). mask-LPIPS uses the "
            "target's segmentation mask (GFLA: keypoint mask).",
            "",
            *paper_comparison(dataset, {"this run": results}),
            "",
        ]
    return "\n".join(lines)


def pixel_table(results: dict[str, Any], name: str = "this run") -> list[str]:
    """The pixel-metric table: the generator beside both baselines, and what it beats.

    L1, SSIM and PSNR over the whole image; masked L1 inside the target's person mask (the
    target background cannot be known from the inputs); part-colour error in grey levels
    (:func:`san_model.metrics.part_colour_error`).
    """
    lines = [
        "| method | L1 (lower better) | masked L1 (lower) | SSIM (higher) | PSNR (higher) "
        "| part-colour error, grey levels (lower) |",
        "|---|---|---|---|---|---|",
    ]
    for label, prefix in {name: "", **BASELINES}.items():
        lines.append(
            f"| {label} | {results[prefix + 'l1']:.4f} | {results[prefix + 'masked_l1']:.4f} | "
            f"{results[prefix + 'ssim']:.4f} | {results[prefix + 'psnr']:.2f} | "
            f"{results[prefix + 'part_colour']:.1f} |"
        )
    lines.append("")
    for label, prefix in BASELINES.items():
        won = beaten_metrics(results, prefix)
        lost = [m for m in PIXEL_METRICS if m not in won]
        verdict = f"- {name} vs {label}: beats it on {', '.join(won) or 'nothing'}"
        lines.append(verdict + (f"; not on {', '.join(lost)}." if lost else "."))
    return lines


def beaten_metrics(results: dict[str, Any], prefix: str) -> list[str]:
    """Names of the pixel metrics on which the generator beats the baseline ``prefix``."""
    won = []
    for metric, higher_is_better in PIXEL_METRICS.items():
        ours, theirs = results[metric], results[prefix + metric]
        if (ours > theirs) if higher_is_better else (ours < theirs):
            won.append(metric)
    return won


def _write_outputs(
    out: Path, results: dict[str, Any], arrays: dict[str, np.ndarray], examples: list[np.ndarray]
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True))
    (out / "results.md").write_text(results_markdown(results, examples="examples.png"))
    source, target, fake, painted = examples
    grid = sample_grid(
        arrays["images"][source],
        arrays["masks"][target],
        arrays["parsing"][target],
        fake,
        arrays["images"][target],
        baselines=[painted],
    )
    save_png(grid, out / "examples.png")
