"""The ``augment-market`` command line: one command per pipeline stage, plus ``run`` for the DAG.

Each command parses its options and calls one plain function from ``pipeline``; nothing here
knows how a stage works.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="SAN person-image generation for Re-ID augmentation.",
)
ingest_app = typer.Typer(no_args_is_help=True, help="Read a dataset folder into a store.")
app.add_typer(ingest_app, name="ingest")
reid_app = typer.Typer(no_args_is_help=True, help="Re-ID baselines on original/augmented data.")
app.add_typer(reid_app, name="reid")
segment_app = typer.Typer(no_args_is_help=True, help="Fill masks or parsing in a store.")
app.add_typer(segment_app, name="segment")

StoreArg = Annotated[str, typer.Argument(help="Store folder or fsspec URL.")]


def _progress(label: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        typer.echo(f"\r{label}: block {done}/{total}", nl=done == total, err=True)

    return report


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    ids: Annotated[int, typer.Option(help="Identities (split between train and test).")] = 24,
    images_per_id: Annotated[int, typer.Option(help="Images per identity.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
) -> None:
    """Write the synthetic dataset (Market-1501 layout, with ground-truth masks/parsing)."""
    from pipeline.synthetic import generate_synthetic

    summary = generate_synthetic(out, ids=ids, images_per_id=images_per_id, seed=seed)
    typer.echo(f"wrote {summary} to {out}")


def _ingest(
    kind: Literal["market1501", "deepfashion"],
    source: Path,
    store: str,
    annotations: Path | None,
    overwrite: bool,
) -> None:
    from pipeline.ingest import ingest

    stamp = ingest(
        source,
        store,
        kind=kind,
        overwrite=overwrite,
        progress=_progress("ingest"),
    )
    typer.echo(
        f"ingested {stamp.counts['images']} images into {store} ({stamp.counts['skipped']} skipped)"
    )
    for note in stamp.report.get("skipped", [])[:20]:
        typer.echo(f"  skipped: {note}")
    if annotations is not None:
        from pipeline.segmentation import import_provided
        from storage import open_store

        opened = open_store(store, mode="r+")
        for kind_name in ("masks", "parsing"):
            import_provided(
                opened,
                annotations,
                kind=kind_name,
                progress=_progress(f"import {kind_name}"),
            )
        typer.echo(f"imported masks and parsing from {annotations}")


@ingest_app.command("market1501")
def ingest_market1501(
    source: Annotated[Path, typer.Argument(help="Market-1501-v15.09.15 folder.")],
    store: Annotated[str, typer.Option(help="Store folder or fsspec URL.")],
    annotations: Annotated[
        Path | None,
        typer.Option(help="Folder with masks/*.png and parsing/*.png to import by file name."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a store built from other files.")
    ] = False,
) -> None:
    """Ingest Market-1501 (bounding_box_train, bounding_box_test, query)."""
    _ingest("market1501", source, store, annotations, overwrite)


@ingest_app.command("deepfashion")
def ingest_deepfashion(
    source: Annotated[
        Path,
        typer.Argument(
            help="Folder with PATN/GFLA train.lst and test.lst, and train/ + test/ "
            "(flattened names) or the In-shop img_highres/ or img/ tree."
        ),
    ],
    store: Annotated[str, typer.Option(help="Store folder or fsspec URL.")],
    annotations: Annotated[
        Path | None,
        typer.Option(help="Folder with masks/ and parsing/ PNGs to import by file name."),
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a store built from other files.")
    ] = False,
) -> None:
    """Ingest DeepFashion In-shop as pose transfer uses it (train.lst / test.lst, 256x256)."""
    _ingest("deepfashion", source, store, annotations, overwrite)


@segment_app.command("masks")
def segment_masks(
    store: StoreArg,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 64,
    weights: Annotated[
        Path | None,
        typer.Option(help="maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth (else the weights folders)."),
    ] = None,
    backend: Annotated[
        str, typer.Option(help="torchvision, or detectron2 if installed.")
    ] = "torchvision",
    provided: Annotated[
        Path | None,
        typer.Option(
            help="Import masks/<stem>.png from this folder instead of running Mask R-CNN."
        ),
    ] = None,
) -> None:
    """Person masks: Mask R-CNN (highest-scoring person >= 0.5) or provided PNGs."""
    from pipeline.masks import Backend, compute_masks
    from pipeline.segmentation import import_provided
    from storage import open_store

    opened = open_store(store, mode="r+")
    if provided is not None:
        stamp = import_provided(opened, provided, kind="masks", progress=_progress("masks"))
    else:
        stamp = compute_masks(
            opened,
            device=device,
            batch_size=batch_size,
            weights=weights,
            backend=cast(Backend, backend),
            progress=_progress("masks"),
        )
    typer.echo(f"masks: {stamp.counts}")
    for name in stamp.report.get("empty_masks", [])[:20]:
        typer.echo(f"  no person found: {name}")


@segment_app.command("parsing")
def segment_parsing(
    store: StoreArg,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
    weights: Annotated[
        Path | None, typer.Option(help="exp-schp-201908261155-lip.pth (else the weights folders).")
    ] = None,
    flip: Annotated[bool, typer.Option(help="Flip test-time augmentation.")] = False,
    provided: Annotated[
        Path | None,
        typer.Option(help="Import parsing/<stem>.png from this folder instead of running SCHP."),
    ] = None,
) -> None:
    """20-class LIP human parsing: SCHP (ResNet-101 AugmentCE2P) or provided PNGs."""
    from pipeline.parsing import compute_parsing
    from pipeline.segmentation import import_provided
    from storage import open_store

    opened = open_store(store, mode="r+")
    if provided is not None:
        stamp = import_provided(opened, provided, kind="parsing", progress=_progress("parsing"))
    else:
        stamp = compute_parsing(
            opened,
            device=device,
            batch_size=batch_size,
            weights=weights,
            flip=flip,
            progress=_progress("parsing"),
        )
    typer.echo(f"parsing: {stamp.counts}")


@app.command()
def info(store: StoreArg) -> None:
    """Counts per split, identities, finished stages and their findings, store size."""
    from storage import open_store

    summary = open_store(store).summary()
    typer.echo(f"store      {summary.url}")
    typer.echo(f"images     {summary.n_images} of {summary.height}x{summary.width}")
    for split, count in summary.images_per_split.items():
        typer.echo(f"  {split:<8} {count:>7} images  {summary.ids_per_split[split]:>5} ids")
    typer.echo(f"size       {summary.size_bytes / 2**20:.1f} MiB")
    typer.echo("stages")
    for name, stamp in summary.stages.items():
        counts = ", ".join(f"{k}={v}" for k, v in stamp.counts.items())
        typer.echo(f"  {name:<12} {stamp.digest}  {counts}")
        if "consistency" in stamp.report:
            shown = {
                k: round(v, 4) if isinstance(v, float) else v
                for k, v in stamp.report["consistency"].items()
                if k != "worst"
            }
            typer.echo(f"    {shown}")
    for run, count in summary.generated.items():
        typer.echo(f"generated  {run}: {count} images")


@app.command()
def pairs(
    store: StoreArg,
    train_pairs: Annotated[
        int | None, typer.Option(help="Training pairs (default: every ordered same-identity pair).")
    ] = None,
    test_pairs: Annotated[int | None, typer.Option(help="Test pairs.")] = 12_000,
    preset: Annotated[
        str | None,
        typer.Option(
            help="Paper counts: market1501 (243,200/12,000) or deepfashion (106,966/8,570)."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Draw seed.")] = 0,
) -> None:
    """Sample same-identity (source, target) pairs for training and testing."""
    from pipeline.pairs import PairsConfig, sample_pairs
    from storage import open_store

    config = (
        getattr(PairsConfig, preset)()
        if preset
        else PairsConfig(train_pairs=train_pairs, test_pairs=test_pairs, seed=seed)
    )
    stamp = sample_pairs(open_store(store, mode="r+"), config)
    typer.echo(f"pairs: {stamp.counts}")


@app.command()
def train(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, samples.")],
    preset: Annotated[str, typer.Option(help="market1501 | deepfashion | tiny.")] = "market1501",
    resume: Annotated[bool, typer.Option(help="Continue from the run's checkpoint.")] = True,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    no_perceptual: Annotated[bool, typer.Option(help="Ablation: no perceptual loss.")] = False,
    no_mask_inputs: Annotated[bool, typer.Option(help="Ablation: no mask inputs.")] = False,
    blocks: Annotated[int | None, typer.Option(help="Ablation: number of SAN blocks T.")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Train the SAN generator on the store's training pairs (torchrun for several GPUs)."""
    from pipeline.train_generator import train_generator
    from san_model.config import SANConfig
    from storage import open_store

    overrides: dict[str, object] = {
        "use_perceptual": not no_perceptual,
        "use_mask_inputs": not no_mask_inputs,
    }
    if epochs is not None:
        overrides["epochs"] = epochs
    if blocks is not None:
        overrides["num_blocks"] = blocks
    config = getattr(SANConfig, preset)(**overrides)
    stamp = train_generator(
        open_store(store, mode="r+"),
        out,
        config=config,
        device=device,
        resume=resume,
        max_steps=max_steps,
        progress=_progress("train"),
    )
    if stamp is None:  # a non-zero torchrun rank
        return
    typer.echo(f"trained {stamp.counts['steps']} steps; checkpoint {stamp.report['checkpoint']}")


@app.command()
def evaluate(
    store: StoreArg,
    run: Annotated[Path, typer.Option(help="Trained generator run folder.")],
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    offline: Annotated[
        bool,
        typer.Option(
            help="Declared offline mode: pixel metrics only (no Inception/AlexNet weights)."
        ),
    ] = False,
    fid_variant: Annotated[
        str, typer.Option(help="torchvision (GFLA protocol) or tf-fid.")
    ] = "torchvision",
) -> None:
    """FID, LPIPS and mask-LPIPS on the test pairs, beside the paper's table 1."""
    from pipeline.evaluate import evaluate_generator
    from san_model.fid_inception import FIDVariant
    from storage import open_store

    stamp = evaluate_generator(
        open_store(store, mode="r+"),
        run,
        device=device,
        offline=offline,
        fid_variant=cast(FIDVariant, fid_variant),
        progress=_progress("evaluate"),
    )
    typer.echo(Path(stamp.report["results"]).read_text())
    typer.echo(f"examples: {stamp.report['examples']}")


@app.command()
def synthesize(
    store: StoreArg,
    run: Annotated[Path, typer.Option(help="Trained generator run folder.")],
    alpha: Annotated[int, typer.Option(help="Augmentation factor (alpha - 1 new per image).")] = 2,
    seed: Annotated[int, typer.Option(help="Target-pose draw seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Generate the alpha-augmented training set into the store."""
    from pipeline.synthesize import synthesize as run_synthesis
    from storage import open_store

    stamp = run_synthesis(
        open_store(store, mode="r+"),
        run,
        alpha=alpha,
        seed=seed,
        device=device,
        progress=_progress("synthesize"),
    )
    typer.echo(f"generated {stamp.counts['generated']} images (alpha {alpha})")


@app.command()
def export(
    store: StoreArg,
    out: Annotated[Path, typer.Argument(help="Folder for the Market-1501 layout.")],
    alpha: Annotated[int | None, typer.Option(help="Include generated/alpha<A>.")] = None,
) -> None:
    """Write the (augmented) dataset as Market-1501 folders for torchreid/fast-reid."""
    from pipeline.export import export_market
    from storage import open_store

    written = export_market(open_store(store), out, alpha=alpha)
    typer.echo(f"wrote {written} images to {out}")


@reid_app.command("train")
def reid_train(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Folder for checkpoints and results.")],
    model: Annotated[str, typer.Option(help="ide or siamese.")] = "ide",
    arch: Annotated[
        str, typer.Option(help="resnet50 (paper) or resnet18 (CPU demos).")
    ] = "resnet50",
    alpha: Annotated[
        int | None,
        typer.Option(help="Train on the real images plus the store's generated/alpha<A> set."),
    ] = None,
    preset: Annotated[
        str,
        typer.Option(
            help="modern (random erasing, label smoothing, 256x128) or ide_original "
            "(the IDE-baseline Caffe recipe: 224x224, batch 16, lr 1e-3)."
        ),
    ] = "modern",
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: preset's).")] = None,
    pretrained: Annotated[bool, typer.Option(help="ImageNet initialisation.")] = True,
    ap: Annotated[
        str, typer.Option(help="standard (torchreid) or trapezoid (Market code).")
    ] = "standard",
    flip_features: Annotated[
        bool, typer.Option(help="Average each feature with its mirror image's.")
    ] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Train IDE/Siamese, then evaluate with Euclidean, XQDA and KISSME distances."""
    import dataclasses

    from pipeline.reid_stage import train_reid_baseline
    from reid.train import TrainConfig
    from storage import open_store

    if preset not in ("modern", "ide_original"):
        raise typer.BadParameter(f"unknown preset {preset!r}; use modern or ide_original")
    config = getattr(TrainConfig, preset)()
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(
            config.model,
            kind=cast(Literal["ide", "siamese"], model),
            arch=cast(Literal["resnet50", "resnet18"], arch),
            pretrained=pretrained,
        ),
        epochs=config.epochs if epochs is None else epochs,
    )
    stamp = train_reid_baseline(
        open_store(store, mode="r+"),
        out,
        config=config,
        alpha=alpha,
        ap=cast(Literal["standard", "trapezoid"], ap),
        flip_features=flip_features,
        device=device,
        progress=_progress("reid"),
    )
    if stamp is None:  # a non-zero torchrun rank
        return
    for metric, row in stamp.report["results"].items():
        typer.echo(f"{metric:<10} rank-1 {row['rank1']:6.2f}  mAP {row['mAP']:6.2f}")


@reid_app.command("evaluate")
def reid_evaluate(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Folder for the comparison table and CMC plot.")],
) -> None:
    """Compare every finished Re-ID run of the store (table + CMC curves)."""
    from pipeline.reid_stage import compare_reid_runs
    from storage import open_store

    table = compare_reid_runs(open_store(store), out)
    typer.echo(table.read_text())
    typer.echo(f"CMC curves: {table.parent / 'cmc.png'}")


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="YAML parameters, e.g. demo.yaml.")],
) -> None:
    """Run the whole augment-market DAG in this process (Prefect embedded mode, no server)."""
    import os

    # The embedded server starts in a subprocess: 10-17 s on an idle 2-core laptop, more under
    # load, past Prefect's 20 s default. Offline machines send no analytics.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.config import load_params
    from flows.dag import run_from_config
    from storage import open_store

    params = load_params(config)
    for stage, entry in run_from_config(params).items():
        typer.echo(f"{stage:<24} {entry['status']:<7} {entry['digest']}")
    report = open_store(params.store_url).stamp("report")
    if report is not None:
        typer.echo(f"\nreport: {report.report['path']}")


def main() -> None:
    app()


if __name__ == "__main__":  # torchrun -m augment_market.cli train ...
    main()
