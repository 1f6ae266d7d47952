"""The evaluation protocol over generated test pairs, as in the paper's table 1.

FID (generated test images against the whole training set, Inception variant named), LPIPS
(AlexNet, v0.1) and mask-LPIPS (target's binary segmentation mask; GFLA used a keypoint mask),
plus pixel metrics (L1, SSIM, PSNR, masked L1, part-colour error) for the generated images and
for the "copy the source image" and "paint by parts" baselines. :class:`PairScorer` applies it
for the evaluate stage (:mod:`pipeline.evaluate`, a trained generator's images) and for
``evaluate-folder`` (:mod:`pipeline.evaluate_folder`, another method's), so their numbers are
comparable. Real-set FID statistics are cached in the store (``fid/<variant>/``) with their own
stamp, so a second evaluation skips them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from foundation.weights import resolve_weights, sha256_of
from pipeline.datasets import CUSTOM
from pipeline.pairs import describe_test_pairs
from san_model import metrics
from san_model.baselines import paint_by_parts
from san_model.fid_inception import FID_INCEPTION_SPECS, FIDVariant, InceptionFeatures
from san_model.generator import tensor_to_images
from storage import PersonStore

# The baselines of every evaluation (san_model.baselines), and the prefix of their result keys.
BASELINES = {"copy the source image": "copy_source_", "paint by parts": "paint_by_parts_"}
PSNR_CAP = 100.0  # identical images have infinite PSNR; cap so means stay finite
EXAMPLE_ROWS = 8


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
) -> metrics.FeatureStatistics:
    """Inception statistics of the store's whole training split, cached with a stamp.

    Args:
        extractor: the FID network (:func:`san_model.metrics.build_fid_extractor`), on ``device``.
        weights: what identifies its weights: the weight file's sha256, or "random". The cache
            is keyed by it, so statistics from another Inception file are never reused.
    """
    variant = extractor.variant
    stage = f"fid_real_{variant}"
    config = {"variant": variant, "weights": weights}
    stamp = store.stamp(stage)
    prefix = f"fid/{variant}"
    if stamp is not None and stamp.config == config and store.has(f"{prefix}/mu"):
        return metrics.FeatureStatistics(
            mu=store.read(f"{prefix}/mu"),
            sigma=store.read(f"{prefix}/sigma"),
            n=stamp.counts["images"],
            variant=variant,
        )
    train_rows = np.flatnonzero((store.index["split"] == "train").to_numpy())
    accumulator = metrics.FeatureAccumulator(variant=variant)
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
    """The evaluation protocol over batches of generated test images.

    Feed it the generated images of the test pairs (:meth:`score`, or batch by batch with
    :meth:`add`), then read :meth:`results`: pixel metrics of the generated images and of both
    baselines, and, unless offline, LPIPS, mask-LPIPS and FID against the store's training
    split (cached statistics) for every Inception variant asked for.

    Args:
        store: the store whose test pairs were generated; its ``images``, ``masks`` and
            ``parsing`` are loaded into :attr:`arrays`.
        offline: pixel metrics only (no Inception/AlexNet weights).
        pretrained: ImageNet Inception/AlexNet; False: random networks (tests only).
        fid_variants: Inception variants to compute FID with; the first is ``results["fid"]``.
        device, batch_size: where the networks run, and the pairs of one batch.
    """

    def __init__(
        self,
        store: PersonStore,
        *,
        offline: bool,
        pretrained: bool,
        fid_variants: tuple[FIDVariant, ...] = ("torchvision",),
        device: str = "cpu",
        batch_size: int = 64,
    ) -> None:
        self.store, self.offline, self.pretrained = store, offline, pretrained
        self.device, self.batch_size = device, batch_size
        self.arrays = store.load_in_memory(("images", "masks", "parsing"))
        self.pairs = 0
        # The first batch's first EXAMPLE_ROWS: source and target rows, generated images and
        # the paint-by-parts baseline (for the examples picture); empty before any batch.
        self.examples: list[np.ndarray] = []
        self.per_pair: dict[str, list[torch.Tensor]] = {}
        self.extractors: dict[FIDVariant, tuple[InceptionFeatures, str]] = {}
        self.fake_features: dict[FIDVariant, metrics.FeatureAccumulator] = {}
        self.lpips_net = None
        if offline:
            return
        for variant in fid_variants:
            weights_file = (
                resolve_weights(FID_INCEPTION_SPECS[variant].weights) if pretrained else None
            )
            extractor = metrics.build_fid_extractor(
                variant=variant, pretrained=pretrained, weights_path=weights_file
            ).to(device)
            # Real-set statistics are cached under the weight file's hash ("random" in tests).
            identity = "random" if weights_file is None else sha256_of(weights_file)
            self.extractors[variant] = (extractor, identity)
            self.fake_features[variant] = metrics.FeatureAccumulator(variant=variant)
        self.lpips_net = metrics.build_lpips(pretrained=pretrained).to(device)

    def add(self, source: np.ndarray, target: np.ndarray, generated: np.ndarray) -> np.ndarray:
        """Score one batch: store rows ``source``, ``target`` int [B], images uint8 [B, H, W, 3].

        Returns:
            The paint-by-parts baseline of the batch, uint8 [B, H, W, 3] (for example pictures).
        """
        arrays = self.arrays
        self.pairs += len(source)
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
                self.per_pair.setdefault(name, []).append(value)
        if self.lpips_net is not None:
            with torch.no_grad():
                mask = target_mask.float()[:, None].to(self.device)
                a, b = fake_t.to(self.device), real_t.to(self.device)
                self.per_pair.setdefault("lpips", []).append(
                    metrics.lpips_distance(self.lpips_net, a, b).cpu()
                )
                self.per_pair.setdefault("mask_lpips", []).append(
                    metrics.masked_lpips(self.lpips_net, a, b, mask).cpu()
                )
                for variant, (extractor, _) in self.extractors.items():
                    self.fake_features[variant].update(extractor(a))
        return tensor_to_images(paint_t).numpy()

    def score(
        self,
        pairs: np.ndarray,
        generated: Callable[[slice], np.ndarray],
        progress: Callable[[int, int], None] | None = None,
    ) -> dict[str, Any]:
        """Score ``pairs`` int64 [P, 2] (source, target store rows) batch by batch and return
        :meth:`results`.

        Args:
            generated: the generated images of ``pairs[rows]``, uint8 [B, H, W, 3].
            progress: called as ``progress(pairs_done, P)`` after each batch.
        """
        for start in range(0, len(pairs), self.batch_size):
            rows = slice(start, start + self.batch_size)
            source, target = pairs[rows].T
            fake = generated(rows)
            painted = self.add(source, target, fake)
            if not self.examples:
                self.examples = [a[:EXAMPLE_ROWS] for a in (source, target, fake, painted)]
            if progress is not None:
                progress(min(start + self.batch_size, len(pairs)), len(pairs))
        return self.results()

    def results(self) -> dict[str, Any]:
        """Means over every pair added, FID per variant (``fid`` = the first), the mode, the
        pairs scored (``test_pairs``), the store's dataset and where its test pairs came from."""
        # nanmean: masked L1 and part-colour error are undefined for an empty target mask.
        results: dict[str, Any] = {
            name: float(torch.cat(values).nanmean()) for name, values in self.per_pair.items()
        }
        for k, (variant, (extractor, identity)) in enumerate(self.extractors.items()):
            real = real_statistics(
                self.store,
                extractor=extractor,
                weights=identity,
                device=self.device,
                batch_size=self.batch_size,
            )
            fid = metrics.fid_from_statistics(real, self.fake_features[variant].statistics())
            results[f"fid_{variant}"] = fid.value
            if k == 0:
                results.update(fid=fid.value, fid_variant=variant, fid_real_images=fid.n_real)
        results["mode"] = _mode(self.offline, self.pretrained)
        results.update(
            test_pairs=self.pairs,
            dataset=dataset_kind(self.store),
            test_pairs_source=describe_test_pairs(self.store.stamp("pairs")),
        )
        return results


def _pixel_metrics(
    images: torch.Tensor,
    target: torch.Tensor,
    target_mask: torch.Tensor,
    target_parsing: torch.Tensor,
    prefix: str,
) -> dict[str, torch.Tensor]:
    """Per-pair pixel metrics of ``images`` against the ground truth, keys prefixed."""
    return {
        f"{prefix}l1": metrics.l1_distance(images, target),
        f"{prefix}masked_l1": metrics.masked_l1(images, target, target_mask),
        f"{prefix}ssim": metrics.ssim(images, target),
        f"{prefix}psnr": metrics.psnr(images, target).clamp(max=PSNR_CAP),
        f"{prefix}part_colour": metrics.part_colour_error(images, target, target_parsing),
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
