"""``reid train``, ``reid compare`` and ``reid evaluate``: the Re-ID baselines."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from augment_market.commands.common import (
    DeviceOption,
    DryRunOption,
    StoreArg,
    default,
    listed,
    naming,
    on_store,
    print_estimate,
    settings_of,
)
from foundation.errors import UserError
from pipeline.model_settings import KISSMEOptions, ReidSettings
from pipeline.settings import SynthesisSettings
from reid.config import ReIDModelConfig, TrainConfig

reid_app = typer.Typer(no_args_is_help=True, help="Re-ID baselines on original/augmented data.")


ReidModelOption = Annotated[
    Literal["resnet50", "resnet18"], typer.Option(help="resnet50 (paper) or resnet18 (CPU demos).")
]
ReidPresetOption = Annotated[
    Literal["modern", "ide_original"],
    typer.Option(
        help="Recipe of ide/siamese: modern (random erasing, label smoothing, 256x128) or "
        "ide_original (the IDE-baseline Caffe recipe: 224x224, batch 16, lr 1e-3).",
    ),
]
EpochsOption = Annotated[int | None, typer.Option(help="Training epochs (default: preset's).")]
BatchOption = Annotated[
    int | None, typer.Option(min=2, help="Images per step (default: preset's).")
]
PretrainedOption = Annotated[bool, typer.Option(help="ImageNet initialisation.")]
APOption = Annotated[
    Literal["standard", "trapezoid"],
    typer.Option(help="standard (torchreid) or trapezoid (Market code)."),
]
CheckpointEveryOption = Annotated[
    int | None, typer.Option(min=1, help="Steps between checkpoints (default: preset's).")
]
CheckpointMinutesOption = Annotated[
    float | None,
    typer.Option(min=0, help="Minutes between checkpoints as well; 0: by steps only."),
]


def _reid_settings(
    preset: str,
    arch: Literal["resnet50", "resnet18"],
    pretrained: bool,
    epochs: int | None,
    batch_size: int | None,
    checkpoint_every: int | None,
    checkpoint_minutes: float | None,
) -> Any:
    """The flow's Re-ID settings object (:class:`pipeline.model_settings.ReidSettings`) from the
    command line's options (None: the preset's); its ``train_config(kind)`` is a model's
    recipe."""
    train = {
        "epochs": epochs,
        "batch_size": batch_size,
        "checkpoint_every": checkpoint_every,
        "checkpoint_minutes": checkpoint_minutes,
    }
    model = {"pretrained": pretrained}
    return settings_of(
        ReidSettings, "Re-ID settings", preset=preset, arch=arch, model=model, train=train
    )


def _set_alpha(store: str, set_name: str, alpha: int | None) -> int | None:
    """``alpha``, or for an augmentation set without one, the alpha of its last synthesis."""
    if set_name == "original" or alpha is not None:
        return alpha
    from pipeline.augmentation_sets import synthesis_stage_name
    from storage import open_store

    with naming(f"store {store}"):
        stamp = open_store(store, mode="r").stamp(synthesis_stage_name(set_name))
    if stamp is None or "alpha" not in stamp.config:
        raise UserError(
            f"store {store} has no set '{set_name}'; make it with `augment-market synthesize "
            f"{store} --source {set_name if set_name != 'generator' else 'generator --run RUN'}`"
        )
    return int(stamp.config["alpha"])


def _metric_names(value: str) -> str:
    """``--metrics``: known names, each once, at least one."""
    from reid.metric_learning import METRIC_NAMES

    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in METRIC_NAMES]
    if unknown or not names or len(set(names)) < len(names):
        raise typer.BadParameter(
            f"{value!r}: give one or more of {', '.join(METRIC_NAMES)}, comma-separated, each once"
        )
    return ",".join(names)


@reid_app.command("train")
def reid_train(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Folder for checkpoints and results.")],
    model: Annotated[
        Literal["ide", "siamese", "bot"],
        typer.Option(help="ide, siamese, or bot (Bag of Tricks, always its own recipe)."),
    ] = default(ReIDModelConfig, "kind"),
    arch: ReidModelOption = default(ReidSettings, "arch"),
    set_name: Annotated[
        str | None,
        typer.Option(
            "--set",
            help="Training set: original, or the real images plus an augmentation set "
            "(generator, copies, flip, paint-by-parts, a folder set's name). Default: "
            "original, or generator with --alpha.",
        ),
    ] = None,
    alpha: Annotated[
        int | None,
        typer.Option(help="The augmentation set's alpha (default: its last synthesis's)."),
    ] = None,
    preset: ReidPresetOption = default(ReidSettings, "preset"),
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    seed: Annotated[int, typer.Option(help="Initialisation and batch-order seed.")] = default(
        TrainConfig, "seed"
    ),
    pretrained: PretrainedOption = default(ReIDModelConfig, "pretrained"),
    ap: APOption = default(ReidSettings, "ap"),
    flip_features: Annotated[
        bool, typer.Option(help="Average each feature with its mirror image's.")
    ] = default(ReidSettings, "flip_features"),
    checkpoint_every: CheckpointEveryOption = None,
    checkpoint_minutes: CheckpointMinutesOption = None,
    metrics: Annotated[
        str,
        typer.Option(
            help="Distances to rank with, comma-separated: euclidean, xqda, kissme.",
            callback=_metric_names,
        ),
    ] = listed(ReidSettings, "metrics"),
    kissme_pca: Annotated[
        int,
        typer.Option(min=1, help="KISSME's PCA size (IDE baseline: 200); below the image count."),
    ] = default(KISSMEOptions, "pca_dim"),
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace a checkpoint in OUT trained under other settings or inputs."),
    ] = False,
    device: DeviceOption = "cpu",
    dry_run: DryRunOption = False,
) -> None:
    """Train IDE/Siamese/BoT, then evaluate with Euclidean, XQDA and KISSME distances."""
    from foundation.progress import LogTail
    from pipeline.reid_stage import estimate_reid_training, train_reid_baseline

    chosen = set_name or ("original" if alpha is None else "generator")
    settings = _reid_settings(
        preset, arch, pretrained, epochs, batch_size, checkpoint_every, checkpoint_minutes
    )
    config = dataclasses.replace(settings.train_config(model), seed=seed)
    alpha = _set_alpha(store, chosen, alpha)
    if dry_run:
        cost = on_store(
            store,
            estimate_reid_training,
            write=False,
            config=config,
            set_name=chosen,
            alpha=alpha,
        )
        data = "original" if chosen == "original" else f"original + {chosen} alpha {alpha}"
        print_estimate(
            f"Re-ID {model} ({arch}, {preset}), {config.height}x{config.width}, "
            f"{config.epochs} epochs on the {data} training set",
            cost,
            sample="image",
        )
        return
    losses = LogTail("reid.train")  # train_reid logs "step s/n loss x" every log_every steps
    losses.start()
    try:
        stamp = on_store(
            store,
            train_reid_baseline,
            out,
            config=config,
            set_name=chosen,
            alpha=alpha,
            metrics=metrics.split(","),
            metric_options={"kissme": {"pca_dim": kissme_pca}},
            ap=ap,
            flip_features=flip_features,
            overwrite=overwrite,
            device=device,
            progress="reid",
            status=losses.poll,
            out=out,
        )
    finally:
        losses.stop()
    if stamp is None:  # a non-zero torchrun rank
        return
    for metric, row in stamp.report["results"].items():
        typer.echo(f"{metric:<10} rank-1 {row['rank1']:6.2f}  mAP {row['mAP']:6.2f}")


def _names(text: str, option: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise typer.BadParameter(f"{option} lists no names", param_hint=option)
    return names


@reid_app.command("compare")
def reid_compare(
    store: StoreArg,
    out: Annotated[
        Path, typer.Option(help="Folder for the runs, comparison.json, comparison.md, cmc.png.")
    ],
    sets: Annotated[
        str,
        typer.Option(
            help="Training sets, comma-separated: original and augmentation sets (copies, "
            "flip, paint-by-parts, generator, a folder set's name), all at --alpha."
        ),
    ] = listed(ReidSettings, "sets"),
    models: Annotated[
        str, typer.Option(help="Re-ID models, comma-separated: ide, siamese, bot.")
    ] = listed(ReidSettings, "kinds"),
    seeds: Annotated[
        int, typer.Option(min=1, help="Paired seeds 0..N-1 (each: same init and batch order).")
    ] = 3,
    budget: Annotated[
        Literal["equal-steps", "equal-epochs"],
        typer.Option(
            help="equal-steps: every set gets the original set's optimiser steps; "
            "equal-epochs: the same epochs, so alpha times the steps on an alpha-times set."
        ),
    ] = default(ReidSettings, "budget"),
    intervals: Annotated[
        bool,
        typer.Option(
            "--intervals/--no-intervals",
            help="Require 2+ seeds for 95% intervals (--no-intervals: one seed, no verdicts).",
        ),
    ] = True,
    alpha: Annotated[int, typer.Option(min=2, help="The augmentation sets' alpha.")] = default(
        SynthesisSettings, "alpha"
    ),
    metrics: Annotated[
        str, typer.Option(help="Distances, comma-separated: euclidean, xqda, kissme.")
    ] = listed(ReidSettings, "metrics"),
    kissme_pca: Annotated[
        int, typer.Option(min=1, help="KISSME's PCA dimension (IDE baseline: 200).")
    ] = default(KISSMEOptions, "pca_dim"),
    arch: ReidModelOption = default(ReidSettings, "arch"),
    preset: ReidPresetOption = default(ReidSettings, "preset"),
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    pretrained: PretrainedOption = default(ReIDModelConfig, "pretrained"),
    ap: APOption = default(ReidSettings, "ap"),
    checkpoint_every: CheckpointEveryOption = None,
    checkpoint_minutes: CheckpointMinutesOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace a run's checkpoint in OUT trained under other settings or inputs."
        ),
    ] = False,
    device: DeviceOption = "cpu",
) -> None:
    """Train every model on every set with paired seeds and an equal budget; write the means,
    paired differences with 95% intervals and a verdict against copies per model and
    distance."""
    from pipeline.reid_compare import comparison_rows, run_comparison, write_comparison

    kinds = _names(models, "--models")
    for kind in kinds:
        if kind not in ("ide", "siamese", "bot"):
            raise typer.BadParameter(
                f"unknown model {kind!r} (ide, siamese, bot)", param_hint="--models"
            )
    distances = _names(metrics, "--metrics")
    for distance in distances:
        if distance not in ("euclidean", "xqda", "kissme"):
            raise typer.BadParameter(
                f"unknown distance {distance!r} (euclidean, xqda, kissme)", param_hint="--metrics"
            )
    settings = _reid_settings(
        preset, arch, pretrained, epochs, batch_size, checkpoint_every, checkpoint_minutes
    )
    configs = {kind: settings.train_config(kind) for kind in kinds}
    stamps = on_store(
        store,
        run_comparison,
        out,
        configs=configs,
        sets=_names(sets, "--sets"),
        alpha=alpha,
        seeds=seeds,
        budget=budget,
        intervals=intervals,
        metrics=distances,
        metric_options={"kissme": {"pca_dim": kissme_pca}},
        ap=ap,
        device=device,
        overwrite=overwrite,
        on_run=lambda name: typer.echo(f"reid compare: {name}", err=True),
        out=out,
    )
    page = write_comparison(
        comparison_rows(stamps),
        out,
        note=f"Store {store}, alpha {alpha}, budget {budget}, {seeds} seed(s), models "
        f"{', '.join(kinds)} ({arch}, {'ImageNet' if pretrained else 'random init'}).",
        settings={"store": store, "alpha": alpha, "budget": budget, "seeds": seeds},
    )
    typer.echo(page.read_text())
    typer.echo(f"wrote {out / 'comparison.json'}, {page} and {out / 'cmc.png'}")


@reid_app.command("evaluate")
def reid_evaluate(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Folder for the comparison table and CMC plot.")],
) -> None:
    """Compare every finished Re-ID run of the store (table + CMC curves)."""
    from pipeline.reid_compare import compare_store_runs

    table = on_store(store, compare_store_runs, out, write=False, out=out)
    typer.echo(table.read_text())
    typer.echo(f"CMC curves: {table.parent / 'cmc.png'}")
