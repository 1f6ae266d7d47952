"""Evaluation stage: a trained generator on the test pairs, measured as in the paper's table 1.

FID (generated test images against the whole training set, Inception variant named), LPIPS
(AlexNet, v0.1) and mask-LPIPS (target's binary segmentation mask; GFLA used a keypoint mask),
plus pixel metrics (L1, SSIM, PSNR) for the generator and for the "copy the source image"
baseline. In the declared offline mode (no pretrained Inception/AlexNet on the machine) only
the pixel metrics are computed, and every output says so. Real-set FID statistics are cached in
the store (``fid/<variant>/``) with their own stamp, so a second evaluation skips them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from foundation.weights import resolve_weights, sha256_of
from pipeline.datasets import CUSTOM, dataset_title
from pipeline.pairs import TEST_TABLE, describe_test_pairs
from pipeline.train_generator import generator_checkpoint
from san_model.baselines import paint_by_parts
from san_model.checkpoint import load_generator
from san_model.fid_inception import FID_INCEPTION_SPECS, FIDVariant, InceptionFeatures
from san_model.generator import SANGenerator, generate, tensor_to_images
from san_model.metrics import (
    FeatureAccumulator,
    FeatureStatistics,
    build_fid_extractor,
    build_lpips,
    fid_from_statistics,
    l1_distance,
    lpips_distance,
    masked_l1,
    masked_lpips,
    part_colour_error,
    psnr,
    ssim,
)
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
EXAMPLE_ROWS = 8
# The baselines of every evaluation (san_model.baselines), and the prefix of their result keys.
BASELINES = {"copy the source image": "copy_source_", "paint by parts": "paint_by_parts_"}
# Pixel metric -> whether higher is better.
PIXEL_METRICS = {"l1": False, "masked_l1": False, "ssim": True, "psnr": True, "part_colour": False}
PSNR_CAP = 100.0  # identical images have infinite PSNR; cap so means stay finite


def dataset_kind(store: PersonStore) -> str:
    """The kind the store was ingested as (``market1501`` for a store whose ingest stamp does
    not say, as every store before DeepFashion), or :data:`pipeline.datasets.CUSTOM` for a set
    that is not the official dataset (the synthetic demo set: ingest ``official=False``)."""
    stamp = store.stamp("ingest")
    if stamp is None:
        return "market1501"
    if stamp.config.get("official", True) is False:
        return CUSTOM
    return str(stamp.config.get("kind", "market1501"))


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


def _as_signed(images: np.ndarray) -> torch.Tensor:
    """uint8 [B, H, W, 3] -> float [B, 3, H, W] in [-1, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def real_statistics(
    store: PersonStore,
    *,
    extractor: InceptionFeatures,
    weights: str,
    device: str,
    batch_size: int,
) -> FeatureStatistics:
    """Inception statistics of the store's whole training split, cached with a stamp.

    Args:
        extractor: the FID network (:func:`build_fid_extractor`), on ``device``.
        weights: what identifies its weights: the weight file's sha256, or "random". The cache
            is keyed by it, so statistics from another Inception file are never reused.
    """
    variant = extractor.variant
    stage = f"fid_real_{variant}"
    config = {"variant": variant, "weights": weights}
    stamp = store.stamp(stage)
    prefix = f"fid/{variant}"
    if stamp is not None and stamp.config == config and store.has(f"{prefix}/mu"):
        return FeatureStatistics(
            mu=store.read(f"{prefix}/mu"),
            sigma=store.read(f"{prefix}/sigma"),
            n=stamp.counts["images"],
            variant=variant,
        )
    train_rows = np.flatnonzero((store.index["split"] == "train").to_numpy())
    accumulator = FeatureAccumulator(variant=variant)
    with store.stage(stage, config=config, inputs=["ingest"], n_blocks=1) as run:
        images = store.load_in_memory(("images",), rows=train_rows)["images"]
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                batch = _as_signed(images[start : start + batch_size]).to(device)
                accumulator.update(extractor(batch))
        statistics = accumulator.statistics()
        store.write_array(f"{prefix}/mu", statistics.mu)
        store.write_array(f"{prefix}/sigma", statistics.sigma)
        run.mark_done(0)
        run.finish(counts={"images": statistics.n})
    return statistics


class PairScorer:
    """The evaluate stage's protocol over batches of generated test images.

    Feed it the generated images of the test pairs batch by batch (:meth:`add`), then read
    :meth:`results`: pixel metrics of the generated images and of both baselines, and, unless
    offline, LPIPS, mask-LPIPS and FID against the store's training split (cached statistics)
    for every Inception variant asked for. The evaluate stage and ``evaluate-folder`` (a
    folder of another method's outputs) both score through it, so their numbers are comparable.

    Args:
        store: the store whose test pairs were generated.
        arrays: the store's ``images``, ``masks`` and ``parsing`` in memory.
        offline: pixel metrics only (no Inception/AlexNet weights).
        pretrained: ImageNet Inception/AlexNet; False: random networks (tests only).
        fid_variants: Inception variants to compute FID with; the first is ``results["fid"]``.
    """

    def __init__(
        self,
        store: PersonStore,
        arrays: dict[str, np.ndarray],
        *,
        offline: bool,
        pretrained: bool,
        fid_variants: tuple[FIDVariant, ...] = ("torchvision",),
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.store, self.arrays, self.offline, self.pretrained = store, arrays, offline, pretrained
        self.device, self.batch_size = device, batch_size
        self.metrics: dict[str, list[torch.Tensor]] = {}
        self.extractors: dict[FIDVariant, tuple[InceptionFeatures, str]] = {}
        self.fake_features: dict[FIDVariant, FeatureAccumulator] = {}
        self.lpips_net = None
        if offline:
            return
        for variant in fid_variants:
            weights_file = (
                resolve_weights(FID_INCEPTION_SPECS[variant].weights) if pretrained else None
            )
            extractor = build_fid_extractor(
                variant=variant, pretrained=pretrained, weights_path=weights_file
            ).to(device)
            # Real-set statistics are cached under the weight file's hash ("random" in tests).
            identity = "random" if weights_file is None else sha256_of(weights_file)
            self.extractors[variant] = (extractor, identity)
            self.fake_features[variant] = FeatureAccumulator(variant=variant)
        self.lpips_net = build_lpips(pretrained=pretrained).to(device)

    def add(self, source: np.ndarray, target: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """Score one batch: store rows ``source``, ``target`` int [B], images uint8 [B, H, W, 3].

        Returns:
            The paint-by-parts baseline of the batch, uint8 [B, H, W, 3] (for example pictures).
        """
        arrays = self.arrays
        fake_t, real_t = _as_signed(generated), _as_signed(arrays["images"][target])
        copy_t = _as_signed(arrays["images"][source])
        target_mask = torch.from_numpy(arrays["masks"][target])
        target_parsing = torch.from_numpy(arrays["parsing"][target])
        paint_t = paint_by_parts(
            copy_t, torch.from_numpy(arrays["parsing"][source]), target_parsing
        )
        for prefix, images in (
            ("", fake_t),
            *zip(BASELINES.values(), (copy_t, paint_t), strict=True),
        ):
            for name, value in _pixel_metrics(
                images, real_t, target_mask, target_parsing, prefix
            ).items():
                self.metrics.setdefault(name, []).append(value)
        if self.lpips_net is not None:
            with torch.no_grad():
                mask = target_mask.float()[:, None].to(self.device)
                a, b = fake_t.to(self.device), real_t.to(self.device)
                self.metrics.setdefault("lpips", []).append(
                    lpips_distance(self.lpips_net, a, b).cpu()
                )
                self.metrics.setdefault("mask_lpips", []).append(
                    masked_lpips(self.lpips_net, a, b, mask).cpu()
                )
                for variant, (extractor, _) in self.extractors.items():
                    self.fake_features[variant].update(extractor(a))
        return tensor_to_images(paint_t).numpy()

    def results(self) -> dict[str, Any]:
        """Means over every pair added, FID per variant (``fid`` = the first), the mode."""
        # nanmean: masked L1 and part-colour error are undefined for an empty target mask.
        results: dict[str, Any] = {
            name: float(torch.cat(values).nanmean()) for name, values in self.metrics.items()
        }
        for k, (variant, (extractor, identity)) in enumerate(self.extractors.items()):
            real = real_statistics(
                self.store,
                extractor=extractor,
                weights=identity,
                device=self.device,
                batch_size=self.batch_size,
            )
            fid = fid_from_statistics(real, self.fake_features[variant].statistics())
            results[f"fid_{variant}"] = fid.value
            if k == 0:
                results.update(fid=fid.value, fid_variant=variant, fid_real_images=fid.n_real)
        results["mode"] = _mode(self.offline, self.pretrained)
        return results


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
        arrays = store.load_in_memory(("images", "masks", "parsing"))
        scorer = PairScorer(
            store,
            arrays,
            offline=offline,
            pretrained=pretrained,
            fid_variants=(fid_variant,),
            device=device,
            batch_size=batch_size,
        )
        examples = []
        for start in range(0, len(pairs), batch_size):
            source, target = pairs[start : start + batch_size].T
            fake = generate_pairs(generator, arrays, source, target)
            painted = scorer.add(source, target, fake)
            if start == 0:
                rows = slice(0, EXAMPLE_ROWS)
                examples = [source[rows], target[rows], fake[rows], painted[rows]]
            if progress is not None:
                progress(min(start + batch_size, len(pairs)), len(pairs))
        results = scorer.results()
        results.update(
            test_pairs=len(pairs),
            dataset=dataset_kind(store),
            test_pairs_source=describe_test_pairs(store.stamp("pairs")),
        )
        run.begin()  # the results go to the run folder, outside the store
        _write_outputs(out, results, arrays, examples)
        run.mark_done(0)
        return run.finish(
            counts={"test_pairs": len(pairs)},
            report={
                "metrics": results,
                "results": str(out / "results.md"),
                "examples": str(out / "examples.png"),
            },
        )


def _pixel_metrics(
    images: torch.Tensor,
    target: torch.Tensor,
    target_mask: torch.Tensor,
    target_parsing: torch.Tensor,
    prefix: str,
) -> dict[str, torch.Tensor]:
    """Per-pair pixel metrics of ``images`` against the ground truth, keys prefixed."""
    return {
        f"{prefix}l1": l1_distance(images, target),
        f"{prefix}masked_l1": masked_l1(images, target, target_mask),
        f"{prefix}ssim": ssim(images, target),
        f"{prefix}psnr": psnr(images, target).clamp(max=PSNR_CAP),
        f"{prefix}part_colour": part_colour_error(images, target, target_parsing),
    }


def _mode(offline: bool, pretrained: bool) -> str:
    if offline:
        return (
            "offline (declared): no pretrained Inception/AlexNet here, so FID, LPIPS and "
            "mask-LPIPS are not computed; pixel metrics L1/SSIM/PSNR instead"
        )
    if not pretrained:
        return "random Inception/AlexNet weights (test mode): FID/LPIPS not comparable to papers"
    return "paper protocol"


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
