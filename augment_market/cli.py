"""The ``augment-market`` command line: one command per pipeline stage, plus ``run`` for the DAG.

Each command parses its options and calls one plain function from ``pipeline`` through
:func:`_on_store`; nothing here knows how a stage works.

:func:`main` is the one error boundary. Every error prints one line on stderr, ``error: ...``,
and the command exits non-zero: 1 for an error the user can fix (a
:class:`foundation.errors.UserError`, an I/O error, invalid parameters), 2 for a mistyped
command line, 70 for anything else, which is a bug and says so; Ctrl-C says how to resume and
exits 130. The line starts a line of its own after a progress line. ``--debug`` anywhere on the
command line, or ``AUGMENT_MARKET_DEBUG=1``, prints the traceback above that line.
"""

from __future__ import annotations

import errno
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

import typer

from foundation.errors import UserError

if TYPE_CHECKING:
    from pipeline.datasets import DatasetKind
    from storage import StageStamp

DEBUG_FLAG = "--debug"
DEBUG_ENV = "AUGMENT_MARKET_DEBUG"
EXIT_USER = 1  # the user can fix it: the message says how
EXIT_BUG = 70  # sysexits' EX_SOFTWARE: an unexpected error
# Commands that finish each stage, for "needs stage X finished first" errors.
STAGE_COMMANDS = {
    "ingest": "augment-market ingest market1501 SOURCE --store STORE",
    "masks": "augment-market segment masks STORE",
    "parsing": "augment-market segment parsing STORE",
    "pairs": "augment-market pairs STORE",
    "generator": "augment-market train STORE --out RUN",
    "synthesize": "augment-market synthesize STORE --run RUN",
}
T = TypeVar("T")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="SAN person-image generation for Re-ID augmentation. An error prints one line; "
    f"add {DEBUG_FLAG} anywhere (or set {DEBUG_ENV}=1) for its traceback.",
)
ingest_app = typer.Typer(no_args_is_help=True, help="Read a dataset folder into a store.")
app.add_typer(ingest_app, name="ingest")
reid_app = typer.Typer(no_args_is_help=True, help="Re-ID baselines on original/augmented data.")
app.add_typer(reid_app, name="reid")
segment_app = typer.Typer(no_args_is_help=True, help="Fill masks or parsing in a store.")
app.add_typer(segment_app, name="segment")

StoreArg = Annotated[str, typer.Argument(help="Store folder or fsspec URL.")]
# The options every `ingest` command shares.
StoreOption = Annotated[str, typer.Option(help="Store folder or fsspec URL.")]
AnnotationsOption = Annotated[
    Path | None,
    typer.Option(help="Folder with masks/*.png and parsing/*.png to import by file name."),
]
OverwriteOption = Annotated[bool, typer.Option(help="Replace a store built from other files.")]


class ParametersError(UserError, ValueError):
    """A parameters file that does not validate."""


class _ProgressLine:
    """Whether a progress line on stderr still waits for its end: an error line after it
    starts a line of its own."""

    open = False


def _progress(label: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        typer.echo(f"\r{label}: block {done}/{total}", nl=done == total, err=True)
        _ProgressLine.open = done != total

    return report


# What a rerun after a full disk does, for most commands.
STAGE_RESUMES = "a stage resumes after its last finished block"


@contextmanager
def _naming(where: str, rerun: str = STAGE_RESUMES) -> Iterator[None]:
    """Tell an I/O error that names no file (a full disk, a lost connection) with ``where``,
    the store or folders the command writes; errors the user can fix pass unchanged.

    Args:
        rerun: what rerunning the command does after the disk is freed (the advice).
    """
    try:
        yield
    except OSError as error:
        if isinstance(error, UserError) or error.errno is None:  # ours, with its own message
            raise
        reason = error.strerror or str(error) or type(error).__name__
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"no space left on the disk of {where} ({reason}); free some space there or "
                f"use a folder on another disk, then rerun ({rerun})"
            ) from error
        if error.filename is not None:
            raise UserError(f"{reason}: {error.filename} (while working on {where})") from error
        raise UserError(f"{reason} while working on {where}") from error


def _on_store(
    store: str,
    stage: Callable[..., T],
    /,
    *args: Any,
    write: bool = True,
    progress: str | None = None,
    out: Path | None = None,
    rerun: str = STAGE_RESUMES,
    **options: Any,
) -> T:
    """Open ``store`` and call ``stage(opened_store, *args, **options)``: the one way every
    command runs a stage.

    Args:
        write: open the store for writing (stages) or read only (info, export, comparisons).
        progress: label of a progress line on stderr, passed as ``progress=``.
        out: a folder the stage writes besides the store, named in I/O errors.
        rerun: what a rerun does, said after a full disk.
    """
    from storage import open_store

    where = f"store {store}" if out is None else f"store {store} or {out}"
    with _naming(where, rerun):
        opened = open_store(store, mode="r+" if write else "r")
        if progress is not None:
            options["progress"] = _progress(progress)
        return stage(opened, *args, **options)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    ids: Annotated[int, typer.Option(help="Identities (split between train and test).")] = 24,
    images_per_id: Annotated[int, typer.Option(help="Images per identity.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
) -> None:
    """Write the synthetic dataset (Market-1501 layout, with ground-truth masks/parsing)."""
    from pipeline.synthetic import generate_synthetic

    with _naming(str(out), "it writes every file again"):
        summary = generate_synthetic(out, ids=ids, images_per_id=images_per_id, seed=seed)
    typer.echo(f"wrote {summary} to {out}")


def _ingest(
    kind: DatasetKind,
    source: Path,
    store: str,
    annotations: Path | None,
    overwrite: bool,
) -> None:
    from pipeline.ingest import ingest
    from pipeline.segmentation import import_provided

    with _naming(f"store {store}"):
        stamp = ingest(source, store, kind=kind, overwrite=overwrite, progress=_progress("ingest"))
    typer.echo(
        f"ingested {stamp.counts['images']} images into {store} ({stamp.counts['skipped']} skipped)"
    )
    for note in stamp.report.get("skipped", [])[:20]:
        typer.echo(f"  skipped: {note}")
    if annotations is not None:
        for kind_name in ("masks", "parsing"):
            _on_store(
                store, import_provided, annotations, kind=kind_name, progress=f"import {kind_name}"
            )
        typer.echo(f"imported masks and parsing from {annotations}")


@ingest_app.command("market1501")
def ingest_market1501(
    source: Annotated[Path, typer.Argument(help="Market-1501-v15.09.15 folder.")],
    store: StoreOption,
    annotations: AnnotationsOption = None,
    overwrite: OverwriteOption = False,
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
    store: StoreOption,
    annotations: AnnotationsOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Ingest DeepFashion In-shop as pose transfer uses it (train.lst / test.lst, 256x256)."""
    _ingest("deepfashion", source, store, annotations, overwrite)


@ingest_app.command("dukemtmc-reid")
def ingest_dukemtmc_reid(
    source: Annotated[
        Path, typer.Argument(help="DukeMTMC-reID folder (bounding_box_train, _test, query).")
    ],
    store: StoreOption,
    annotations: AnnotationsOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Ingest DukeMTMC-reID (8 cameras; images stretched to 128x64)."""
    _ingest("dukemtmc_reid", source, store, annotations, overwrite)


@ingest_app.command("msmt17")
def ingest_msmt17(
    source: Annotated[
        Path,
        typer.Argument(
            help="MSMT17_V1 folder: train/, test/, list_train.txt, list_val.txt, "
            "list_query.txt, list_gallery.txt."
        ),
    ],
    store: StoreOption,
    annotations: AnnotationsOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Ingest MSMT17 (15 cameras; training = list_train + list_val; stretched to 128x64)."""
    _ingest("msmt17", source, store, annotations, overwrite)


@ingest_app.command("cuhk03")
def ingest_cuhk03(
    source: Annotated[
        Path,
        typer.Argument(help="CUHK03-NP folder holding detected/ and labeled/ (Market layout)."),
    ],
    store: StoreOption,
    setting: Annotated[
        Literal["detected", "labeled"],
        typer.Option(help="Boxes of the DPM detector or the hand-drawn ones."),
    ] = "detected",
    annotations: AnnotationsOption = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Ingest CUHK03-NP, the new protocol (767/700 identities; stretched to 128x64)."""
    _ingest(
        "cuhk03_detected" if setting == "detected" else "cuhk03_labeled",
        source,
        store,
        annotations,
        overwrite,
    )


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
        Literal["torchvision", "detectron2"],
        typer.Option(help="torchvision, or detectron2 if installed."),
    ] = "torchvision",
    provided: Annotated[
        Path | None,
        typer.Option(
            help="Import masks/<stem>.png from this folder instead of running Mask R-CNN."
        ),
    ] = None,
) -> None:
    """Person masks: Mask R-CNN (highest-scoring person >= 0.5) or provided PNGs."""
    import importlib.util

    from pipeline.masks import compute_masks
    from pipeline.segmentation import import_provided

    if provided is not None:
        stamp = _on_store(store, import_provided, provided, kind="masks", progress="masks")
    else:
        if backend == "detectron2" and importlib.util.find_spec("detectron2") is None:
            raise UserError(
                "detectron2 is not installed (it is not on the package registries); use the "
                "default --backend torchvision"
            )
        stamp = _on_store(
            store,
            compute_masks,
            device=device,
            batch_size=batch_size,
            weights=weights,
            backend=backend,
            progress="masks",
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

    if provided is not None:
        stamp = _on_store(store, import_provided, provided, kind="parsing", progress="parsing")
    else:
        stamp = _on_store(
            store,
            compute_parsing,
            device=device,
            batch_size=batch_size,
            weights=weights,
            flip=flip,
            progress="parsing",
        )
    typer.echo(f"parsing: {stamp.counts}")


@app.command()
def info(store: StoreArg) -> None:
    """Counts per split, identities, finished stages and their findings, store size."""
    from storage import PersonStore

    summary = _on_store(store, PersonStore.summary, write=False)
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
        int | None,
        typer.Option(min=1, help="Training pairs (default: every ordered same-identity pair)."),
    ] = None,
    test_pairs: Annotated[int | None, typer.Option(min=1, help="Test pairs.")] = 12_000,
    preset: Annotated[
        Literal["market1501", "deepfashion"] | None,
        typer.Option(
            help="Paper counts: market1501 (243,200/12,000) or deepfashion (106,966/8,570).",
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Draw seed.")] = 0,
) -> None:
    """Sample same-identity (source, target) pairs for training and testing."""
    from pipeline.pairs import PairsConfig, sample_pairs

    config = (
        getattr(PairsConfig, preset)()
        if preset
        else PairsConfig(train_pairs=train_pairs, test_pairs=test_pairs, seed=seed)
    )
    stamp = _on_store(store, sample_pairs, config)
    typer.echo(f"pairs: {stamp.counts}")


@app.command()
def train(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, samples.")],
    preset: Annotated[
        Literal["market1501", "deepfashion", "demo", "tiny"],
        typer.Option(help="Paper settings of the dataset, or the small CPU demo/tiny models."),
    ] = "market1501",
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the run's checkpoint (--no-resume: start afresh over it)."
        ),
    ] = True,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace a checkpoint in OUT trained under other settings or inputs."),
    ] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    no_perceptual: Annotated[bool, typer.Option(help="Ablation: no perceptual loss.")] = False,
    no_mask_inputs: Annotated[bool, typer.Option(help="Ablation: no mask inputs.")] = False,
    blocks: Annotated[int | None, typer.Option(help="Ablation: number of SAN blocks T.")] = None,
    weights: Annotated[
        Path | None,
        typer.Option(help="vgg19-dcbfe2b4.pth for the perceptual loss (else the weights folders)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Train the SAN generator on the store's training pairs (torchrun for several GPUs)."""
    from pipeline.train_generator import train_generator
    from san_model.config import SANConfig

    overrides: dict[str, object] = {
        "use_perceptual": not no_perceptual,
        "use_mask_inputs": not no_mask_inputs,
    }
    if epochs is not None:
        overrides["epochs"] = epochs
    if blocks is not None:
        overrides["num_blocks"] = blocks
    try:
        config = getattr(SANConfig, preset)(**overrides)
    except ValueError as error:  # SANConfig checks its fields
        raise ParametersError(f"generator settings: {error}") from None
    stamp = _on_store(
        store,
        train_generator,
        out,
        config=config,
        device=device,
        resume=resume,
        max_steps=max_steps,
        vgg_weights=weights,
        overwrite=overwrite,
        progress="train",
        out=out,
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
        Literal["torchvision", "tf-fid"],
        typer.Option(help="torchvision (GFLA protocol) or tf-fid."),
    ] = "torchvision",
) -> None:
    """FID, LPIPS and mask-LPIPS on the test pairs, beside the paper's table 1."""
    from pipeline.evaluate import evaluate_generator

    stamp = _on_store(
        store,
        evaluate_generator,
        run,
        device=device,
        offline=offline,
        fid_variant=fid_variant,
        progress="evaluate",
        out=run,
    )
    typer.echo(Path(stamp.report["results"]).read_text())
    typer.echo(f"examples: {stamp.report['examples']}")


@app.command("evaluate-folder")
def evaluate_folder(
    folder: Annotated[Path, typer.Argument(help="Images generated by any method.")],
    store: Annotated[str, typer.Option(help="The store whose test pairs they show.")],
    name: Annotated[
        str | None, typer.Option(help="The method's row name (default: the folder's name).")
    ] = None,
    pairs: Annotated[str, typer.Option(help="Pairs table the files follow.")] = "pairs_test",
    panel: Annotated[
        int, typer.Option(help="Which panel of a *_vis strip is generated (-1: the last).")
    ] = -1,
    out: Annotated[
        Path, typer.Option(help="Folder of the comparison table (comparison.md / .json).")
    ] = Path("comparison"),
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    offline: Annotated[
        bool,
        typer.Option(help="Pixel metrics only (no Inception/AlexNet weights)."),
    ] = False,
) -> None:
    """Score another method's outputs (PATN/GFLA names) exactly as the evaluate stage does."""
    from pipeline.evaluate_folder import add_to_comparison
    from pipeline.evaluate_folder import evaluate_folder as score_folder

    results = _on_store(
        store,
        score_folder,
        folder,
        name=name or folder.name,
        table=pairs,
        panel=panel,
        offline=offline,
        device=device,
        out=folder,
    )
    page = add_to_comparison(results, out)
    typer.echo(
        f"{results['matched']} images matched, {len(results['unmatched'])} files named no "
        f"pair, {results['missing_pairs']} test pairs had no file"
    )
    for file, reason in list(results["unmatched"].items())[:10]:
        typer.echo(f"  unmatched {file}: {reason}")
    typer.echo(page.read_text())


@app.command()
def synthesize(
    store: StoreArg,
    run: Annotated[Path, typer.Option(help="Trained generator run folder.")],
    alpha: Annotated[
        int, typer.Option(min=2, help="Augmentation factor (alpha - 1 new per image).")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Target-pose draw seed.")] = 0,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Generate the alpha-augmented training set into the store."""
    from pipeline.synthesize import synthesize as run_synthesis

    stamp: StageStamp = _on_store(
        store, run_synthesis, run, alpha=alpha, seed=seed, device=device, progress="synthesize"
    )
    typer.echo(f"generated {stamp.counts['generated']} images (alpha {alpha})")


@app.command()
def export(
    store: StoreArg,
    out: Annotated[
        Path, typer.Argument(help="New or empty folder for the dataset's own folder layout.")
    ],
    alpha: Annotated[int | None, typer.Option(help="Include generated/alpha<A>.")] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace an earlier export in OUT: only the files its manifest lists are "
            "removed, and OUT must hold no others."
        ),
    ] = False,
) -> None:
    """Write the (augmented) dataset in its own layout for torchreid/fast-reid: Market-1501's
    folders (Market-1501, DukeMTMC-reID, CUHK03-NP), MSMT17's folders and list files."""
    from pipeline.export import export_market

    written = _on_store(
        store,
        export_market,
        out,
        alpha=alpha,
        overwrite=overwrite,
        write=False,
        out=out,
        rerun="add --overwrite to replace the partial export",
    )
    typer.echo(f"wrote {written} images to {out}")


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
    ] = "ide",
    arch: Annotated[
        Literal["resnet50", "resnet18"],
        typer.Option(help="resnet50 (paper) or resnet18 (CPU demos)."),
    ] = "resnet50",
    alpha: Annotated[
        int | None,
        typer.Option(help="Train on the real images plus the store's generated/alpha<A> set."),
    ] = None,
    preset: Annotated[
        Literal["modern", "ide_original"],
        typer.Option(
            help="Recipe of ide/siamese: modern (random erasing, label smoothing, 256x128) or "
            "ide_original (the IDE-baseline Caffe recipe: 224x224, batch 16, lr 1e-3).",
        ),
    ] = "modern",
    epochs: Annotated[int | None, typer.Option(help="Training epochs (default: preset's).")] = None,
    batch_size: Annotated[
        int | None, typer.Option(min=2, help="Images per step (default: preset's).")
    ] = None,
    pretrained: Annotated[bool, typer.Option(help="ImageNet initialisation.")] = True,
    ap: Annotated[
        Literal["standard", "trapezoid"],
        typer.Option(help="standard (torchreid) or trapezoid (Market code)."),
    ] = "standard",
    flip_features: Annotated[
        bool, typer.Option(help="Average each feature with its mirror image's.")
    ] = False,
    checkpoint_every: Annotated[
        int | None, typer.Option(min=1, help="Steps between checkpoints (default: preset's).")
    ] = None,
    checkpoint_minutes: Annotated[
        float | None,
        typer.Option(min=0, help="Minutes between checkpoints as well; 0: by steps only."),
    ] = None,
    metrics: Annotated[
        str,
        typer.Option(
            help="Distances to rank with, comma-separated: euclidean, xqda, kissme.",
            callback=_metric_names,
        ),
    ] = "euclidean,xqda,kissme",
    kissme_pca: Annotated[
        int,
        typer.Option(min=1, help="KISSME's PCA size (IDE baseline: 200); below the image count."),
    ] = 200,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace a checkpoint in OUT trained under other settings or inputs."),
    ] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Train IDE/Siamese/BoT, then evaluate with Euclidean, XQDA and KISSME distances."""
    import dataclasses

    from pipeline.reid_stage import train_reid_baseline
    from reid.train import recipe

    config = recipe(model, preset)
    schedule: dict[str, Any] = {
        name: value
        for name, value in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("checkpoint_every", checkpoint_every),
            ("checkpoint_minutes", checkpoint_minutes),
        )
        if value is not None
    }
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, arch=arch, pretrained=pretrained),
        **schedule,
    )
    stamp = _on_store(
        store,
        train_reid_baseline,
        out,
        config=config,
        alpha=alpha,
        metrics=metrics.split(","),
        metric_options={"kissme": {"pca_dim": kissme_pca}},
        ap=ap,
        flip_features=flip_features,
        overwrite=overwrite,
        device=device,
        progress="reid",
        out=out,
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

    table = _on_store(store, compare_reid_runs, out, write=False, out=out)
    typer.echo(table.read_text())
    typer.echo(f"CMC curves: {table.parent / 'cmc.png'}")


@app.command()
def run(
    config: Annotated[Path, typer.Option(help="YAML parameters, e.g. demo.yaml.")],
) -> None:
    """Run the whole augment-market DAG in this process (Prefect embedded mode, no server)."""
    # The embedded server starts in a subprocess: 10-17 s on an idle 2-core laptop, more under
    # load, past Prefect's 20 s default. Offline machines send no analytics.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from flows.dag import run_from_config

    params = _load_params(config)
    with _naming(f"store {params.store_url}"):
        summary = run_from_config(params)
    for stage, entry in summary.items():
        typer.echo(f"{stage:<24} {entry['status']:<7} {entry['digest']}")
    report = _on_store(params.store_url, lambda store: store.stamp("report"), write=False)
    if report is not None:
        typer.echo(f"\nreport: {report.report['path']}")


@app.command()
def submit(
    deployment: Annotated[
        str, typer.Argument(help="default (the demo), market1501, or flow/name.")
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="KEY.PATH=VALUE merged into the deployment's parameters (repeat; YAML)."
        ),
    ] = None,
    wait: Annotated[
        bool, typer.Option(help="Wait for the end; exit 1 unless it completed.")
    ] = False,
) -> None:
    """Run a deployment on the Prefect server with settings changed: --set alpha=3."""
    from flows.submit import submit as submit_run

    run, page = submit_run(deployment, set_ or [], wait=None if wait else 0)
    state = run.state
    typer.echo(f"flow run {run.name} of {deployment}: {state.name if state else 'Scheduled'}")
    typer.echo(f"flow run id {run.id}\n{page}")
    if wait and not (state is not None and state.is_completed()):
        typer.echo(_one_line(str(state.message if state else "no state")), err=True)
        raise typer.Exit(EXIT_USER)


def _load_params(path: Path) -> Any:
    """The flow's parameters from ``path``; a file that does not validate is one line."""
    import pydantic
    import yaml

    from flows.config import load_params

    try:
        return load_params(path)
    except pydantic.ValidationError as error:
        problems = [
            f"{'.'.join(str(part) for part in problem['loc']) or 'file'}: {problem['msg']}"
            for problem in error.errors()
        ]
        raise ParametersError(f"{path}: {'; '.join(problems)}") from None
    except (yaml.YAMLError, ValueError) as error:
        message = _one_line(str(error))  # the file's own errors name it already
        raise ParametersError(message if str(path) in message else f"{path}: {message}") from None


def _one_line(message: str) -> str:
    return " ".join(line.strip() for line in message.splitlines() if line.strip())


def _is_command_line_error(error: BaseException) -> bool:
    """A mistyped command line: click's ClickException, which typer vendors (typer._click), so
    it is recognised by name as typer itself does."""
    return any(cls.__name__ == "ClickException" for cls in type(error).__mro__)


def describe(error: BaseException) -> tuple[str, int]:
    """The one line an error prints (without ``error: ``) and the exit code."""
    from storage import MissingInputError

    if _is_command_line_error(error):
        context = getattr(error, "ctx", None)
        path = context.command_path if context is not None else "augment-market"
        message = _one_line(error.format_message())  # type: ignore[attr-defined]
        return f"{message} (see `{path} --help`)", int(error.exit_code)  # type: ignore[attr-defined]
    if isinstance(error, MissingInputError) and error.missing in STAGE_COMMANDS:
        if "augment-market" not in str(error):
            return f"{_one_line(str(error))}: run `{STAGE_COMMANDS[error.missing]}`", EXIT_USER
    if isinstance(error, UserError):
        return _one_line(str(error)), EXIT_USER
    if isinstance(error, OSError):  # outside any store (a parameters file): it names its file
        reason = error.strerror or str(error)
        return _one_line(f"{reason}: {error.filename}" if error.filename else reason), EXIT_USER
    message = _one_line(str(error)) or "(no message)"
    return f"unexpected {type(error).__name__}: {message}", EXIT_BUG


def main(argv: Sequence[str] | None = None) -> None:
    """Run the command line and exit; the one place errors become their one line."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")
    args = [arg for arg in args if arg != DEBUG_FLAG]
    # The command runs outside typer's own main, which turns Ctrl-C into a silent exit 130.
    command = typer.main.get_command(app)
    try:
        with command.make_context("augment-market", args) as context:
            code = command.invoke(context)
    except typer.Exit as exit_:  # --help, or a command's typer.Exit(code)
        code = exit_.exit_code
    except (Exception, KeyboardInterrupt) as error:
        if type(error).__name__ == "NoArgsIsHelpError":  # the help was printed already
            raise SystemExit(getattr(error, "exit_code", 2)) from None
        if debug:
            traceback.print_exception(error)
        if isinstance(error, KeyboardInterrupt):
            message, code = "interrupted; rerun the same command to resume", 130
        else:
            message, code = describe(error)
            if code == EXIT_BUG and not debug:
                message += f" (a bug: rerun with {DEBUG_FLAG} for the traceback and report it)"
        if _ProgressLine.open:
            typer.echo(err=True)
            _ProgressLine.open = False
        typer.echo(f"error: {message}", err=True)
    raise SystemExit(code if isinstance(code, int) else 0)


@app.command()
def migrate(
    source: Annotated[str, typer.Argument(help="A store of format 1 (decoded pixels).")],
    target: Annotated[str, typer.Argument(help="New folder or URL for the format-2 copy.")],
    overwrite: Annotated[bool, typer.Option(help="Replace a store already at TARGET.")] = False,
) -> None:
    """Copy a format-1 store into the current format: same arrays, stamps and tables."""
    from storage import migrate_store

    result = migrate_store(source, target, overwrite=overwrite)
    typer.echo(
        f"{target}: {len(result.encoded)} image arrays encoded, {len(result.copied)} arrays "
        f"and {len(result.files)} files copied, {result.source_bytes / 2**20:.1f} MiB -> "
        f"{result.target_bytes / 2**20:.1f} MiB; {source} is unchanged"
    )


if __name__ == "__main__":  # torchrun -m augment_market.cli train ...
    main()
