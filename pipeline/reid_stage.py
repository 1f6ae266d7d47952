"""Re-ID stages: train a baseline on the original training split or on it plus one
augmentation set, fit the metrics, evaluate.

Stage ``reid_<model>_<set>_s<seed>`` trains on the store's real training images (set
``original``) or on them plus an augmentation set of :mod:`pipeline.synthesize` (``generator``,
``copies``, ``flip``, ``paint-by-parts`` or a folder set), whose images are labelled with their
source identities (paper section 5). Each then extracts features of the real training, query
and gallery images (L2-normalised by default, as the IDE baseline before all three metrics;
optionally averaged with the features of the mirrored images), fits every requested metric
(Euclidean, XQDA, KISSME) on the real training features with their cameras, and evaluates
single-query Market-1501 ranking (same pid + same camera and junk removed, distractors kept;
AP as chosen). The metrics see real images only, whatever the set: XQDA and KISSME learn from
cross-camera pairs and generated images have no camera of their own, and the metric protocol
stays the IDE baseline's, so runs on different sets differ in the network alone.
:mod:`pipeline.reid_compare` runs and compares many of them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from foundation.cost import TrainingCost
from foundation.errors import SettingsError
from foundation.runs import check_checkpoint_kept
from foundation.weights import MissingWeightsError, check_torch_file, resolve_weights
from pipeline.augmentation_sets import ORIGINAL, finished_set_group, synthesis_stage_name
from reid.checkpoint import IMAGENET_WEIGHTS
from reid.cost import training_cost
from reid.evaluate import evaluate_ranking
from reid.metric_learning import UnfittableMetricError, build_metric, check_fittable
from reid.models import IDENet, check_backbone_weights
from reid.train import (
    CHECKPOINT_NAME,
    TrainConfig,
    TrainResult,
    extract_features,
    train_reid,
    training_settings,
)
from storage import PersonStore, StageStamp, config_hash

# Market-1501 without augmentation, (rank-1, mAP): the IDE-baseline repository's ResNet-50, and
# the strong baseline a reviewer asks for. Each name says its AP definition: the IDE baseline
# evaluates with Market-1501's MATLAB code (compute_AP.m, trapezoid), Bag of Tricks with the
# non-interpolated AP that torchreid and this tool use by default (standard).
REFERENCE_ROWS = {
    "IDE ResNet-50 + Euclidean (reference, trapezoid AP)": (75.62, 50.68),
    "IDE ResNet-50 + XQDA (reference, trapezoid AP)": (76.01, 52.98),
    "IDE ResNet-50 + KISSME (reference, trapezoid AP)": (77.52, 53.88),
    # Luo et al. 2019, BNNeck + triplet + the other tricks, ImageNet ResNet-50, no re-ranking.
    "Bag of Tricks ResNet-50 (reference, standard AP)": (94.1, 85.7),
}
METRICS = ("euclidean", "xqda", "kissme")


def reid_stage_name(kind: str, set_name: str, seed: int, *, equal_epochs: bool = False) -> str:
    """``reid_ide_original_s0``, ``reid_siamese_generator_s2``, ``reid_ide_copies_s1``...;
    an augmentation set trained for the original's epochs rather than its steps (a
    comparison's ``equal-epochs`` budget) ends in ``_equal-epochs``."""
    suffix = "_equal-epochs" if equal_epochs and set_name != ORIGINAL else ""
    return f"reid_{kind}_{set_name}_s{seed}{suffix}"


def _training_rows(store: PersonStore) -> np.ndarray:
    """Store rows of the real training images with an identity (no junk, no distractors)."""
    index = store.index
    return np.flatnonzero(
        (index["split"] == "train").to_numpy() & (index["person_id"] > 0).to_numpy()
    )


def _set_group(store: PersonStore, set_name: str, alpha: int | None) -> str | None:
    """The store group of an augmentation set (None for ``original``)."""
    if set_name == ORIGINAL:
        return None
    if alpha is None:
        raise SettingsError(f"set {set_name!r} needs its alpha")
    return finished_set_group(store, set_name, alpha, stage="reid")


def training_labels(
    store: PersonStore, set_name: str = ORIGINAL, alpha: int | None = None
) -> np.ndarray:
    """Identity labels int64 [N] of :func:`training_set`'s images, without reading images."""
    labels = store.index["person_id"].to_numpy(np.int64)[_training_rows(store)]
    group = _set_group(store, set_name, alpha)
    if group is None:
        return labels
    return np.concatenate(
        [labels, store.load_in_memory((f"{group}/person_id",))[f"{group}/person_id"]]
    )


def estimate_reid_training(
    store: PersonStore,
    *,
    config: TrainConfig,
    set_name: str = ORIGINAL,
    alpha: int | None = None,
    max_steps: int | None = None,
) -> TrainingCost:
    """What training ``config`` on ``store``'s training set (plus an augmentation set) would
    cost (``reid train --dry-run``); reads labels only and writes nothing.

    Raises:
        SettingsError: the images cannot fill one batch of the recipe.
    """
    labels = training_labels(store, set_name, alpha)
    check_fills_a_step(config, len(labels))
    return training_cost(config, torch.from_numpy(labels), max_steps=max_steps)


def training_set(
    store: PersonStore, set_name: str = ORIGINAL, alpha: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Training images uint8 [N, H, W, 3] and identity labels int64 [N]: the real training
    split, plus the augmentation set ``set_name`` at ``alpha`` unless the set is ``original``.

    Raises:
        MissingInputError: the set is not finished at ``alpha`` in the store.
    """
    rows = _training_rows(store)
    group = _set_group(store, set_name, alpha)
    images = store.load_in_memory(("images",), rows=rows)["images"]
    labels = store.index["person_id"].to_numpy(np.int64)[rows]
    if group is None:
        return images, labels
    generated = store.load_in_memory((f"{group}/images", f"{group}/person_id"))
    return (
        np.concatenate([images, generated[f"{group}/images"]]),
        np.concatenate([labels, generated[f"{group}/person_id"]]),
    )


def train_reid_baseline(
    store: PersonStore,
    out_dir: str | Path,
    *,
    config: TrainConfig,
    set_name: str = ORIGINAL,
    alpha: int | None = None,
    metrics: Sequence[str] = METRICS,
    metric_options: dict[str, dict[str, Any]] | None = None,
    ap: Literal["standard", "trapezoid"] = "standard",
    normalize_features: bool = True,
    flip_features: bool = False,
    device: str = "cpu",
    max_steps: int | None = None,
    weights: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
    reuse: bool = False,
    name: str | None = None,
) -> StageStamp | None:
    """Train, extract features, fit metrics, evaluate; results in ``out_dir`` and the stamp.

    Under ``torchrun`` all ranks train (DDP); rank 0 alone evaluates and stamps, the other
    ranks return None.

    Args:
        config: the Re-ID recipe (model kind/arch, input size, schedule, seed; its
            ``epoch_steps`` sets the budget of a set larger than the original).
        set_name: ``original``, or the augmentation set added to the real training images.
        alpha: the set's augmentation factor (ignored for ``original``).
        metrics: metric learners fitted on the real training features.
        metric_options: per-metric constructor options, e.g. ``{"kissme": {"pca_dim": 64}}``
            (KISSME: PCA to 200 dimensions by default; XQDA and KISSME draw their pairs from
            ``seed``, 0 unless given).
        ap: average-precision definition, the same for every run compared.
        normalize_features: L2-normalise every feature before all metrics (IDE baseline).
        flip_features: average each image's feature with its mirror's (Siamese reference).
        weights: ImageNet weight file for ``config.model.pretrained``.
        overwrite: replace a checkpoint in the run folder trained under other settings or
            inputs (another alpha); else such a run is refused before training.
        progress: called as ``progress(steps_done, steps_total)`` while training.
        reuse: return the stage's stamp untouched when it finished with these settings on
            these inputs (a comparison's cache).
        name: the stage's name (default :func:`reid_stage_name` of the kind, set and seed).
    Returns:
        The stamp; ``report["results"]`` maps metric -> rank-1/5/10, mAP (percent).
    Raises:
        UnfittableMetricError: a metric cannot be fitted on the store's real training images
            (:func:`check_metrics`), found before training.
        RunFolderInUseError: the run folder holds a checkpoint of other settings or inputs
            and ``overwrite`` is off.
    """
    if set_name == ORIGINAL:
        alpha = None
    name = name or reid_stage_name(config.model.kind, set_name, config.seed)
    out = Path(out_dir) / name
    inputs = ["ingest"] + ([synthesis_stage_name(set_name)] if alpha is not None else [])
    settings = {
        "train": _jsonable(config),
        "set": set_name,
        "alpha": alpha,
        "metrics": list(metrics),
        "metric_options": metric_options or {},
        "ap": ap,
        "features": {"normalize": normalize_features, "flip": flip_features},
        "max_steps": max_steps,
    }
    # The checkpoint is continued only by training on these settings and these input images
    # (alpha 2 after alpha 3 must not resume alpha 3's network).
    training = {
        "train": json.loads(json.dumps(training_settings(config), default=list)),
        "set": set_name,
        "alpha": alpha,
    }
    run_tag = store.run_digest(name, settings=training, inputs=inputs)
    finished = store.stamp(name)
    if (
        reuse
        and finished is not None
        and finished.config_hash == config_hash(json.loads(json.dumps(settings, default=list)))
        and finished.inputs == {n: getattr(store.stamp(n), "digest", None) for n in inputs}
    ):
        return finished

    def train(images: np.ndarray, labels: np.ndarray) -> TrainResult:
        return train_reid(
            config,
            torch.from_numpy(images),
            torch.from_numpy(labels),
            out / "checkpoint",
            device=device,
            max_steps=max_steps,
            weights=weights,
            progress=progress,
            run_tag=run_tag,
        )

    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 evaluates and stamps
        train(*training_set(store, set_name, alpha))
        return None
    with store.stage(name, config=settings, inputs=inputs, n_blocks=1) as run:
        images, labels = training_set(store, set_name, alpha)
        check_trainable(config, out / "checkpoint", n_images=len(labels), weights=weights)
        check_metrics(store, metrics, metric_options or {}, config=config)
        check_checkpoint_kept(
            out / "checkpoint" / CHECKPOINT_NAME,
            run_tag=run_tag,
            config=dataclasses.asdict(config),
            what="Re-ID checkpoint",
            inputs="another --set or --alpha, or the images it read were made again since",
            overwrite=overwrite,
        )
        run.begin()  # training writes its checkpoints to out_dir
        result = train(images, labels)
        del images  # the metrics need the real training images only; split_features reads them
        features = split_features(
            store,
            result.model,
            size=(config.height, config.width),
            device=device,
            flip=flip_features,
            normalize=normalize_features,
        )
        t, q, g = features["train"], features["query"], features["gallery"]
        if not torch.isfinite(t["features"]).all():
            raise ValueError(
                f"{name}: training diverged (non-finite features; last losses "
                f"{result.losses[-2:]}); lower the learning rate ({config.lr})"
            )
        results, curves = {}, {}
        for metric in metrics:
            learner = build_metric(metric, **(metric_options or {}).get(metric, {}))  # type: ignore[arg-type]
            learner.fit(t["features"], torch.from_numpy(t["pids"]), torch.from_numpy(t["cams"]))
            distances = learner.distance(q["features"], g["features"]).float()
            if not torch.isfinite(distances).all():  # past check_metrics: features too alike
                raise UnfittableMetricError(
                    f"{name}: {metric} gave non-finite distances ({len(t['pids'])} training "
                    f"features of dimension {t['features'].shape[1]}, in {out}); lower its "
                    "PCA size (--kissme-pca) or leave it out (--metrics)"
                )
            ranking = evaluate_ranking(
                distances,
                q["pids"],
                g["pids"],
                q["cams"],
                g["cams"],
                ap=ap,
            )
            results[metric] = {
                "rank1": 100 * ranking.rank1,
                "rank5": 100 * ranking.rank5,
                "rank10": 100 * ranking.rank10,
                "mAP": 100 * ranking.mAP,
                "queries_without_match": ranking.num_queries_without_match,
            }
            curves[metric] = (100 * np.asarray(ranking.cmc)).tolist()
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps({"results": results, "cmc": curves}, indent=2))
        run.mark_done(0)
        return run.finish(
            counts={
                "train_images": len(labels),
                "train_ids": len(np.unique(labels)),
                "metric_train_images": len(t["pids"]),
                "steps": result.steps,
            },
            report={
                "results": results,
                "cmc": curves,
                "ap": ap,
                "features": settings["features"],
                "set": set_name,
                "alpha": alpha,
                "seed": config.seed,
                "kind": config.model.kind,
                "model": f"{config.model.kind} {config.model.arch}"
                f"{' ImageNet' if config.model.pretrained else ' random init'}",
                "output": str(out),
                "resumed_at_step": result.resumed_at,
            },
        )


def check_fills_a_step(config: TrainConfig, n_images: int) -> None:
    """Raise :class:`SettingsError` when ``n_images`` cannot fill one step of ``config`` (a
    Siamese step takes half the batch as anchors)."""
    per_step = config.batch_size // 2 if config.model.kind == "siamese" else config.batch_size
    if n_images < per_step:
        raise SettingsError(
            f"{n_images} training images cannot fill one step of {per_step} "
            f"({config.model.kind}, batch {config.batch_size}); lower the batch size"
        )


def check_trainable(
    config: TrainConfig, checkpoint_dir: Path, *, n_images: int, weights: str | Path | None
) -> None:
    """What :func:`train_reid` would find wrong only after it may have written a checkpoint.

    Raises:
        SettingsError: fewer training images than one step takes (a Siamese step takes half
            the batch as anchors).
        MissingWeightsError: the ImageNet file of a pretrained backbone is missing (the message
            says how to train without it).
        UnreadableWeightsError: that file, or the checkpoint to resume, does not load (or the
            ImageNet file is another network's).
    """
    check_fills_a_step(config, n_images)
    if config.model.pretrained:
        try:
            path = resolve_weights(IMAGENET_WEIGHTS[config.model.arch], path=weights)
        except MissingWeightsError as error:
            raise MissingWeightsError(
                f"{error} Or train from a random initialisation: --no-pretrained"
            ) from None
        check_backbone_weights(config.model.arch, path)
    checkpoint = checkpoint_dir / CHECKPOINT_NAME
    if checkpoint.is_file():
        check_torch_file(checkpoint, what="Re-ID checkpoint")


def check_metrics(
    store: PersonStore,
    metrics: Sequence[str],
    metric_options: dict[str, dict[str, Any]],
    *,
    config: TrainConfig,
) -> None:
    """Refuse metrics that cannot be fitted on the store's real training images, the ones
    every Re-ID stage fits its metrics on (pid > 0), before any network is trained.

    Raises:
        UnfittableMetricError: see :func:`reid.metric_learning.check_fittable`; the message
            names the store, the sizes that work and how to leave the metric out.
    """
    index = store.index
    rows = (index["split"] == "train").to_numpy() & (index["person_id"] > 0).to_numpy()
    try:
        check_fittable(
            metrics,
            metric_options,
            labels=index["person_id"].to_numpy(np.int64)[rows],
            cameras=index["camera"].to_numpy(np.int64)[rows],
            feature_dim=config.model.feature_dim,
        )
    except UnfittableMetricError as error:
        raise UnfittableMetricError(f"store {store.url}: {error}") from None


def split_features(
    store: PersonStore,
    model: IDENet,
    *,
    size: tuple[int, int],
    device: str = "cpu",
    flip: bool = False,
    normalize: bool = True,
) -> dict[str, dict[str, Any]]:
    """Features of the store's real training (pid > 0), query and gallery images.

    Args:
        model: the trained network; size: its (height, width) input.
        flip: average each feature with the feature of the mirrored image.
        normalize: scale every feature to unit L2 norm (after the flip average).
    Returns:
        split -> ``{"features": float32 [N, D] CPU, "pids": int64 [N], "cams": int64 [N]}``.
    """
    index = store.index
    images = store.load_in_memory(("images",))["images"]  # one decode for every split
    pids = index["person_id"].to_numpy(np.int64)
    cams = index["camera"].to_numpy(np.int64)
    out: dict[str, dict[str, Any]] = {}
    for split in ("train", "query", "gallery"):
        chosen = (index["split"] == split).to_numpy() & ((pids > 0) | (split != "train"))
        rows = np.flatnonzero(chosen)
        batch = torch.from_numpy(images[rows])
        out[split] = {
            "features": extract_features(
                model, batch, device=device, size=size, flip=flip, normalize=normalize
            )
            .float()
            .cpu(),
            "pids": pids[rows],
            "cams": cams[rows],
        }
    return out


def _jsonable(config: TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(config), default=list))
