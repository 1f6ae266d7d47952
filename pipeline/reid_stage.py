"""Re-ID stages: train a baseline on the original or alpha-augmented training split, evaluate.

Stage ``reid_<model>_original`` trains on the store's real training images; stage
``reid_<model>_augmented`` adds the ``generated/alpha<A>`` images, labelled with their source
identities (paper section 5). Each then extracts features of the real training, query and
gallery images (L2-normalised by default, as the IDE baseline before all three metrics;
optionally averaged with the features of the mirrored images), fits every requested metric
(Euclidean, XQDA, KISSME) on the real training features with their cameras, and evaluates
single-query Market-1501 ranking (same pid + same camera and junk removed, distractors kept;
AP as chosen). The metrics see real images only, in both stages: XQDA and KISSME learn from
cross-camera pairs and generated images have no camera of their own, and the metric protocol
stays the IDE baseline's, so original and augmented runs differ in the network alone.
:func:`compare_reid_runs` puts all finished runs of a store side by side with the IDE-baseline
reference numbers and draws their CMC curves.
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
from matplotlib.figure import Figure

from foundation.errors import SettingsError
from foundation.weights import MissingWeightsError, check_torch_file, resolve_weights
from reid.checkpoint import IMAGENET_WEIGHTS
from reid.evaluate import evaluate_ranking
from reid.metric_learning import build_metric
from reid.models import IDENet
from reid.train import (
    CHECKPOINT_NAME,
    TrainConfig,
    TrainResult,
    extract_features,
    train_reid,
    training_settings,
)
from storage import MissingInputError, PersonStore, StageStamp
from storage.store import generated_run_name

# Market-1501 without augmentation, (rank-1, mAP): the IDE-baseline repository's ResNet-50, and
# the strong baseline a reviewer asks for.
REFERENCE_ROWS = {
    "IDE ResNet-50 + Euclidean (reference)": (75.62, 50.68),
    "IDE ResNet-50 + XQDA (reference)": (76.01, 52.98),
    "IDE ResNet-50 + KISSME (reference)": (77.52, 53.88),
    # Luo et al. 2019, BNNeck + triplet + the other tricks, ImageNet ResNet-50, no re-ranking.
    "Bag of Tricks ResNet-50 (reference)": (94.1, 85.7),
}
METRICS = ("euclidean", "xqda", "kissme")


def reid_stage_name(kind: str, alpha: int | None) -> str:
    """``reid_ide_original``, ``reid_siamese_augmented``, ..."""
    return f"reid_{kind}_{'original' if alpha is None else 'augmented'}"


def generated_group(store: PersonStore, alpha: int) -> str:
    """The store group of the alpha-augmented set, ``generated/alpha<A>``.

    Raises:
        MissingInputError: the store holds no such set (the synthesize stage may have run with
            another alpha).
    """
    group = f"generated/{generated_run_name(alpha)}"
    if not store.has(group):
        raise MissingInputError(
            f"store {store.url} has no {group}; run `augment-market synthesize` with "
            f"--alpha {alpha} first",
            stage="reid",
            missing="synthesize",
        )
    return group


def training_set(store: PersonStore, alpha: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Training images uint8 [N, H, W, 3] and identity labels int64 [N]: the real training
    split, plus the generated images of ``generated/alpha<A>`` when ``alpha`` is given."""
    index = store.index
    rows = np.flatnonzero(
        (index["split"] == "train").to_numpy() & (index["person_id"] > 0).to_numpy()
    )
    images = store.load_in_memory(("images",), rows=rows)["images"]
    labels = index["person_id"].to_numpy(np.int64)[rows]
    if alpha is None:
        return images, labels
    group = generated_group(store, alpha)
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
    alpha: int | None = None,
    metrics: Sequence[str] = METRICS,
    metric_options: dict[str, dict[str, Any]] | None = None,
    ap: Literal["standard", "trapezoid"] = "standard",
    normalize_features: bool = True,
    flip_features: bool = False,
    device: str = "cpu",
    max_steps: int | None = None,
    weights: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> StageStamp | None:
    """Train, extract features, fit metrics, evaluate; results in ``out_dir`` and the stamp.

    Under ``torchrun`` all ranks train (DDP); rank 0 alone evaluates and stamps, the other
    ranks return None.

    Args:
        config: the Re-ID recipe (model kind/arch, input size, schedule).
        alpha: add ``generated/alpha<A>`` to the training images (None: original set).
        metrics: metric learners fitted on the real training features.
        metric_options: per-metric constructor options, e.g. ``{"kissme": {"pca_dim": 64}}``
            (KISSME: PCA to 200 dimensions by default; XQDA and KISSME draw their pairs from
            ``seed``, 0 unless given).
        ap: average-precision definition, the same for every run compared.
        normalize_features: L2-normalise every feature before all metrics (IDE baseline).
        flip_features: average each image's feature with its mirror's (Siamese reference).
        weights: ImageNet weight file for ``config.model.pretrained``.
        progress: called as ``progress(steps_done, steps_total)`` while training.
    Returns:
        The stamp; ``report["results"]`` maps metric -> rank-1/5/10, mAP (percent).
    """
    name = reid_stage_name(config.model.kind, alpha)
    out = Path(out_dir) / name
    inputs = ["ingest"] + (["synthesize"] if alpha is not None else [])
    settings = {
        "train": _jsonable(config),
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
        "alpha": alpha,
    }
    run_tag = store.run_digest(name, settings=training, inputs=inputs)

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
        train(*training_set(store, alpha))
        return None
    with store.stage(name, config=settings, inputs=inputs, n_blocks=1) as run:
        images, labels = training_set(store, alpha)
        check_trainable(config, out / "checkpoint", n_images=len(labels), weights=weights)
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
            if not torch.isfinite(distances).all():
                raise ValueError(
                    f"{name}: {metric} gave non-finite distances ({len(t['pids'])} training "
                    f"features of dimension {t['features'].shape[1]}); try its PCA or "
                    "regularisation options in metric_options"
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
                "alpha": alpha,
                "model": f"{config.model.kind} {config.model.arch}"
                f"{' ImageNet' if config.model.pretrained else ' random init'}",
                "output": str(out),
                "resumed_at_step": result.resumed_at,
            },
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
        UnreadableWeightsError: that file, or the checkpoint to resume, does not load.
    """
    per_step = config.batch_size // 2 if config.model.kind == "siamese" else config.batch_size
    if n_images < per_step:
        raise SettingsError(
            f"{n_images} training images cannot fill one step of {per_step} "
            f"({config.model.kind}, batch {config.batch_size}); lower the batch size"
        )
    if config.model.pretrained:
        try:
            path = resolve_weights(IMAGENET_WEIGHTS[config.model.arch], path=weights)
        except MissingWeightsError as error:
            raise MissingWeightsError(
                f"{error} Or train from a random initialisation: --no-pretrained"
            ) from None
        check_torch_file(path)
    checkpoint = checkpoint_dir / CHECKPOINT_NAME
    if checkpoint.is_file():
        check_torch_file(checkpoint, what="Re-ID checkpoint")


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


def compare_reid_runs(store: PersonStore, out_dir: str | Path) -> Path:
    """Side-by-side table (Markdown + JSON) and CMC curves of every finished Re-ID stage.

    Returns:
        The Markdown file; ``cmc.png`` lies beside it.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = {name: stamp for name, stamp in store.stamps().items() if name.startswith("reid_")}
    lines = [
        "| model | training set | distance | rank-1 | rank-5 | rank-10 | mAP |",
        "|---|---|---|---|---|---|---|",
    ]
    figure = Figure(figsize=(6, 4))
    axis = figure.add_subplot()
    for _, stamp in sorted(runs.items()):
        alpha = stamp.report["alpha"]
        label = "original" if alpha is None else f"augmented alpha={alpha}"
        for metric, row in stamp.report["results"].items():
            lines.append(
                f"| {stamp.report['model']} | {label} | {metric} | {row['rank1']:.2f} "
                f"| {row['rank5']:.2f} | {row['rank10']:.2f} | {row['mAP']:.2f} |"
            )
            curve = stamp.report["cmc"][metric]
            axis.plot(np.arange(1, len(curve) + 1), curve, label=f"{label}, {metric}")
    for name, (rank1, mean_ap) in REFERENCE_ROWS.items():
        lines.append(f"| {name} | Market-1501 original | | {rank1:.2f} | | | {mean_ap:.2f} |")
    ap_names = {stamp.report["ap"] for stamp in runs.values()}
    lines += [
        "",
        f"AP definition: {', '.join(sorted(ap_names)) or 'n/a'} "
        "(standard = non-interpolated, as torchreid). Reference rows: IDE-baseline "
        "repository on the real Market-1501, for scale only.",
    ]
    axis.set_xlabel("rank")
    axis.set_ylabel("matching rate (%)")
    axis.set_xlim(1, 20)
    axis.grid(alpha=0.3)
    if runs:
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(out / "cmc.png", dpi=120)
    table = out / "reid_results.md"
    table.write_text("# Re-ID: original vs augmented\n\n" + "\n".join(lines) + "\n")
    return table
