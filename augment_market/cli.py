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
from typer.core import TyperGroup

from foundation.errors import UserError

if TYPE_CHECKING:
    from augment_market.progress import CommandProgress
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
# `--help` lists the commands in the order a run uses them.
COMMAND_ORDER = (
    "doctor", "synth", "ingest", "segment", "pairs", "train", "evaluate", "evaluate-folder",
    "synthesize", "reid", "export", "run", "submit", "info", "migrate",
)  # fmt: skip


class _PipelineOrder(TyperGroup):
    def list_commands(self, ctx: Any) -> list[str]:
        def position(name: str) -> int:
            return COMMAND_ORDER.index(name) if name in COMMAND_ORDER else len(COMMAND_ORDER)

        return sorted(super().list_commands(ctx), key=position)


app = typer.Typer(
    cls=_PipelineOrder,
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


def _image_size(value: str | None) -> tuple[int, int] | None:
    """``HxW`` (e.g. ``256x128``) as (height, width)."""
    if value is None:
        return None
    height, _, width = value.lower().partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise typer.BadParameter(f"{value!r} is not HEIGHTxWIDTH in pixels, e.g. 256x128")
    return int(height), int(width)


ImageSizeOption = Annotated[
    str | None,
    typer.Option(
        help="Store size HxW (default: Market-1501 128x64, DeepFashion 256x256, the others "
        "256x128; docs/datasets.md).",
    ),
]


class ParametersError(UserError, ValueError):
    """A parameters file that does not validate."""


# What each command's ``progress(done, total)`` counts (default: store blocks of 64 images).
PROGRESS_UNITS = {"train": "steps", "reid": "steps", "evaluate": "test pairs"}


def _progress(label: str, status: Callable[[], str] | None = None) -> CommandProgress:
    """A progress bar on a terminal, plain lines elsewhere (see :mod:`augment_market.progress`)."""
    from augment_market.progress import CommandProgress

    return CommandProgress(label, PROGRESS_UNITS.get(label, "blocks"), status=status)


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
    status: Callable[[], str] | None = None,
    out: Path | None = None,
    rerun: str = STAGE_RESUMES,
    **options: Any,
) -> T:
    """Open ``store`` and call ``stage(opened_store, *args, **options)``: the one way every
    command runs a stage.

    Args:
        write: open the store for writing (stages) or read only (info, export, comparisons).
        progress: label of the progress bar on stderr, passed as ``progress=``.
        status: polled by the progress bar for a short text (training losses).
        out: a folder the stage writes besides the store, named in I/O errors.
        rerun: what a rerun does, said after a full disk.
    """
    from storage import open_store

    where = f"store {store}" if out is None else f"store {store} or {out}"
    with _naming(where, rerun):
        opened = open_store(store, mode="r+" if write else "r")
        if progress is None:
            return stage(opened, *args, **options)
        with _progress(progress, status) as report:
            return stage(opened, *args, progress=report, **options)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    ids: Annotated[int, typer.Option(help="Identities (split between train and test).")] = 24,
    images_per_id: Annotated[int, typer.Option(help="Images per identity.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
) -> None:
    """Write the synthetic dataset (Market-1501 layout, with ground-truth masks/parsing)."""
    from pipeline.synthetic_dataset import generate_synthetic

    with _naming(str(out), "it writes every file again"):
        summary = generate_synthetic(out, ids=ids, images_per_id=images_per_id, seed=seed)
    typer.echo(f"wrote {summary} to {out}")


def _ingest(
    kind: DatasetKind,
    source: Path,
    store: str,
    annotations: Path | None,
    overwrite: bool,
    image_size: str | None = None,
    with_val: bool = False,
) -> None:
    from pipeline.ingest import ingest
    from pipeline.segmentation import import_provided

    size = _image_size(image_size)
    with _naming(f"store {store}"), _progress("ingest") as report:
        stamp = ingest(
            source,
            store,
            kind=kind,
            size=size,
            with_val=with_val,
            overwrite=overwrite,
            progress=report,
        )
    typer.echo(
        f"ingested {stamp.counts['images']} images into {store} ({stamp.counts['skipped']} skipped)"
    )
    for note in stamp.report.get("skipped", [])[:20]:
        typer.echo(f"  skipped: {note}")
    for difference in stamp.report.get("count_differences", []):
        typer.echo(f"warning: {difference}", err=True)
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
    image_size: ImageSizeOption = None,
) -> None:
    """Ingest Market-1501 (bounding_box_train, bounding_box_test, query)."""
    _ingest("market1501", source, store, annotations, overwrite, image_size)


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
    image_size: ImageSizeOption = None,
) -> None:
    """Ingest DeepFashion In-shop as pose transfer uses it (train.lst / test.lst, 256x256)."""
    _ingest("deepfashion", source, store, annotations, overwrite, image_size)


@ingest_app.command("dukemtmc-reid")
def ingest_dukemtmc_reid(
    source: Annotated[
        Path, typer.Argument(help="DukeMTMC-reID folder (bounding_box_train, _test, query).")
    ],
    store: StoreOption,
    annotations: AnnotationsOption = None,
    overwrite: OverwriteOption = False,
    image_size: ImageSizeOption = None,
) -> None:
    """Ingest DukeMTMC-reID (8 cameras; images stretched to 256x128)."""
    _ingest("dukemtmc_reid", source, store, annotations, overwrite, image_size)


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
    image_size: ImageSizeOption = None,
    with_val: Annotated[
        bool,
        typer.Option(
            "--with-val",
            help="Train on list_train + list_val (32,621 images) instead of list_train (30,248).",
        ),
    ] = False,
) -> None:
    """Ingest MSMT17 (15 cameras; training = list_train; stretched to 256x128)."""
    _ingest("msmt17", source, store, annotations, overwrite, image_size, with_val)


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
    image_size: ImageSizeOption = None,
) -> None:
    """Ingest CUHK03-NP, the new protocol (767/700 identities; stretched to 256x128)."""
    _ingest(
        "cuhk03_detected" if setting == "detected" else "cuhk03_labeled",
        source,
        store,
        annotations,
        overwrite,
        image_size,
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
def doctor(
    store: Annotated[
        str | None, typer.Argument(help="Store folder or URL to examine (optional).")
    ] = None,
) -> None:
    """Check this machine for a paper run (GPU, weights, disk, store); exit 1 if short."""
    from augment_market.doctor import examine, table

    findings = examine(store)
    for line in table(findings):
        typer.echo(line)
    problems = [finding for finding in findings if finding.is_problem]
    if not problems:
        typer.echo("ready for a paper run")
        return
    for finding in problems:
        typer.echo(f"{finding.status}: {finding.fix}", err=True)
    raise typer.Exit(EXIT_USER)


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
            typer.echo("    " + " ".join(f"{key}={value}" for key, value in shown.items()))
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
    train_pairs_file: Annotated[
        Path | None,
        typer.Option(
            help="PATN/GFLA from,to list of training pairs, used as given (docs/pairs.md)."
        ),
    ] = None,
    test_pairs_file: Annotated[
        Path | None,
        typer.Option(
            help="PATN/GFLA from,to list of test pairs, e.g. market-pairs-test.csv (docs/pairs.md)."
        ),
    ] = None,
    test_from: Annotated[
        Literal["gallery", "gallery+query"],
        typer.Option(help="Drawn test pairs: gallery only (PATN/GFLA) or gallery and query."),
    ] = "gallery",
) -> None:
    """Same-identity (source, target) pairs for training and testing: published lists or drawn."""
    import dataclasses

    from pipeline.pairs import PairsConfig, sample_pairs

    config = (
        getattr(PairsConfig, preset)()
        if preset
        else PairsConfig(train_pairs=train_pairs, test_pairs=test_pairs, seed=seed)
    )
    config = dataclasses.replace(
        config,
        train_pairs_file=None if train_pairs_file is None else str(train_pairs_file.resolve()),
        test_pairs_file=None if test_pairs_file is None else str(test_pairs_file.resolve()),
        test_from=test_from,
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
    perceptual: Annotated[
        bool, typer.Option(help="Perceptual loss (eq. 6); --no-perceptual: its ablation.")
    ] = True,
    mask_inputs: Annotated[
        bool, typer.Option(help="Mask inputs; --no-mask-inputs: their ablation.")
    ] = True,
    blocks: Annotated[int | None, typer.Option(help="Ablation: number of SAN blocks T.")] = None,
    weights: Annotated[
        Path | None,
        typer.Option(help="vgg19-dcbfe2b4.pth for the perceptual loss (else the weights folders)."),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print parameters, FLOPs per step and in all, and GPU time estimates; "
            "write nothing."
        ),
    ] = False,
) -> None:
    """Train the SAN generator on the store's training pairs (torchrun for several GPUs)."""
    from pipeline.train_generator import (
        TrainingLosses,
        estimate_training,
        shortened_schedule,
        train_generator,
    )
    from san_model.config import SANConfig

    overrides: dict[str, object] = {"use_perceptual": perceptual, "use_mask_inputs": mask_inputs}
    if epochs is not None:
        overrides["epochs"] = epochs
    if blocks is not None:
        overrides["num_blocks"] = blocks
    try:
        config = getattr(SANConfig, preset)(**overrides)
    except ValueError as error:  # SANConfig checks its fields
        raise ParametersError(f"generator settings: {error}") from None
    if dry_run:
        cost = _on_store(store, estimate_training, write=False, config=config, max_steps=max_steps)
        height, width = config.image_size
        _print_estimate(
            f"SAN preset {preset}, {height}x{width}, {config.epochs} x {config.epoch_length:,} "
            "pairs (epochs x pairs per epoch)",
            cost,
            sample="pair",
            note=shortened_schedule(config, max_steps),
        )
        return
    if (note := shortened_schedule(config, max_steps)) is not None:
        typer.echo(f"note: {note}", err=True)
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
        status=TrainingLosses(out).poll,
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
    source: Annotated[
        Literal["generator", "copies", "flip", "paint-by-parts", "folder"],
        typer.Option(
            help="How each planned (source image, target pose) becomes an image: the trained "
            "generator, the source unchanged, mirrored, painted by parts, or another method's "
            "outputs in --folder. Every source uses the same plan for the same alpha and seed."
        ),
    ] = "generator",
    run: Annotated[
        Path | None, typer.Option(help="Trained generator run folder (--source generator).")
    ] = None,
    folder: Annotated[
        Path | None,
        typer.Option(
            help="Another method's outputs for the --write-pairs list (--source folder): PATN "
            "a___b_vis panels, GFLA a_2_b or a___b images."
        ),
    ] = None,
    name: Annotated[
        str | None,
        typer.Option(help="The set's name (default: the source's; a folder set: the folder's)."),
    ] = None,
    panel: Annotated[
        int, typer.Option(help="Which panel of a _vis strip is generated (-1: the last).")
    ] = -1,
    alpha: Annotated[
        int, typer.Option(min=2, help="Augmentation factor (alpha - 1 new per image).")
    ] = 2,
    seed: Annotated[int, typer.Option(help="Target-pose draw seed.")] = 0,
    write_pairs: Annotated[
        Path | None,
        typer.Option(
            help="Write the plan as a PATN/GFLA `from,to` list of file names to this CSV file "
            "and stop (run another method on it, then --source folder)."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
) -> None:
    """Write an augmentation set into the store: the generator's alpha-augmented training set
    (the paper's), or a control made from the same assignments."""
    from pipeline.augmentation_sets import set_group
    from pipeline.augmentation_sets import write_pairs as write_plan

    if write_pairs is not None:
        count = _on_store(store, write_plan, write_pairs, alpha=alpha, seed=seed, write=False)
        typer.echo(f"wrote {count} pairs (alpha {alpha}, seed {seed}) to {write_pairs}")
        return
    from pipeline.synthesize import synthesize as run_synthesis

    stamp: StageStamp = _on_store(
        store,
        run_synthesis,
        run,
        source=source,
        name=name,
        folder=folder,
        panel=panel,
        alpha=alpha,
        seed=seed,
        device=device,
        progress="synthesize",
    )
    set_name = stamp.config["set"]
    typer.echo(
        f"set {set_name}: {stamp.counts['generated']} images ({source}, alpha {alpha}) in "
        f"{set_group(set_name, alpha)}"
    )


@app.command()
def export(
    store: StoreArg,
    out: Annotated[
        Path, typer.Argument(help="New or empty folder for the dataset's own folder layout.")
    ],
    alpha: Annotated[
        int | None, typer.Option(help="Include the augmentation set of this alpha.")
    ] = None,
    set_name: Annotated[
        str,
        typer.Option(
            "--set",
            help="Which augmentation set: generator, copies, flip, paint-by-parts, a "
            "folder set's name.",
        ),
    ] = "generator",
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
        set_name=set_name,
        overwrite=overwrite,
        write=False,
        out=out,
        rerun="add --overwrite to replace the partial export",
    )
    typer.echo(f"wrote {written} images to {out}")


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


def _reid_recipe(
    kind: str, preset: str, arch: Literal["resnet50", "resnet18"], pretrained: bool, **schedule: Any
) -> Any:
    """The Re-ID recipe of ``kind`` with the command line's changes (None: the preset's)."""
    import dataclasses

    from reid.train import recipe

    config = recipe(kind, preset)
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, arch=arch, pretrained=pretrained),
        **{name: value for name, value in schedule.items() if value is not None},
    )


def _set_alpha(store: str, set_name: str, alpha: int | None) -> int | None:
    """``alpha``, or for an augmentation set without one, the alpha of its last synthesis."""
    if set_name == "original" or alpha is not None:
        return alpha
    from pipeline.augmentation_sets import synthesis_stage_name
    from storage import open_store

    with _naming(f"store {store}"):
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
    ] = "ide",
    arch: ReidModelOption = "resnet50",
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
    preset: ReidPresetOption = "modern",
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    seed: Annotated[int, typer.Option(help="Initialisation and batch-order seed.")] = 0,
    pretrained: PretrainedOption = True,
    ap: APOption = "standard",
    flip_features: Annotated[
        bool, typer.Option(help="Average each feature with its mirror image's.")
    ] = False,
    checkpoint_every: CheckpointEveryOption = None,
    checkpoint_minutes: CheckpointMinutesOption = None,
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
    dry_run: Annotated[
        bool,
        typer.Option(
            help="Print parameters, FLOPs per step and in all, and GPU time estimates; "
            "write nothing."
        ),
    ] = False,
) -> None:
    """Train IDE/Siamese/BoT, then evaluate with Euclidean, XQDA and KISSME distances."""
    from foundation.progress import LogTail
    from pipeline.reid_stage import estimate_reid_training, train_reid_baseline

    chosen = set_name or ("original" if alpha is None else "generator")
    config = _reid_recipe(
        model,
        preset,
        arch,
        pretrained,
        epochs=epochs,
        batch_size=batch_size,
        seed=seed,
        checkpoint_every=checkpoint_every,
        checkpoint_minutes=checkpoint_minutes,
    )
    alpha = _set_alpha(store, chosen, alpha)
    if dry_run:
        cost = _on_store(
            store,
            estimate_reid_training,
            write=False,
            config=config,
            set_name=chosen,
            alpha=alpha,
        )
        data = "original" if chosen == "original" else f"original + {chosen} alpha {alpha}"
        _print_estimate(
            f"Re-ID {model} ({arch}, {preset}), {config.height}x{config.width}, "
            f"{config.epochs} epochs on the {data} training set",
            cost,
            sample="image",
        )
        return
    losses = LogTail("reid.train")  # train_reid logs "step s/n loss x" every log_every steps
    losses.start()
    try:
        stamp = _on_store(
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
    ] = "original,copies,paint-by-parts,generator",
    models: Annotated[
        str, typer.Option(help="Re-ID models, comma-separated: ide, siamese, bot.")
    ] = "ide,siamese",
    seeds: Annotated[
        int, typer.Option(min=1, help="Paired seeds 0..N-1 (each: same init and batch order).")
    ] = 3,
    budget: Annotated[
        Literal["equal-steps", "equal-epochs"],
        typer.Option(
            help="equal-steps: every set gets the original set's optimiser steps; "
            "equal-epochs: the same epochs, so alpha times the steps on an alpha-times set."
        ),
    ] = "equal-steps",
    intervals: Annotated[
        bool,
        typer.Option(
            "--intervals/--no-intervals",
            help="Require 2+ seeds for 95% intervals (--no-intervals: one seed, no verdicts).",
        ),
    ] = True,
    alpha: Annotated[int, typer.Option(min=2, help="The augmentation sets' alpha.")] = 2,
    metrics: Annotated[
        str, typer.Option(help="Distances, comma-separated: euclidean, xqda, kissme.")
    ] = "euclidean,xqda,kissme",
    kissme_pca: Annotated[
        int, typer.Option(min=1, help="KISSME's PCA dimension (IDE baseline: 200).")
    ] = 200,
    arch: ReidModelOption = "resnet50",
    preset: ReidPresetOption = "modern",
    epochs: EpochsOption = None,
    batch_size: BatchOption = None,
    pretrained: PretrainedOption = True,
    ap: APOption = "standard",
    checkpoint_every: CheckpointEveryOption = None,
    checkpoint_minutes: CheckpointMinutesOption = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Replace a run's checkpoint in OUT trained under other settings or inputs."
        ),
    ] = False,
    device: Annotated[str, typer.Option(help="cpu or cuda.")] = "cpu",
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
    configs = {
        kind: _reid_recipe(
            kind,
            preset,
            arch,
            pretrained,
            epochs=epochs,
            batch_size=batch_size,
            checkpoint_every=checkpoint_every,
            checkpoint_minutes=checkpoint_minutes,
        )
        for kind in kinds
    }
    stamps = _on_store(
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

    table = _on_store(store, compare_store_runs, out, write=False, out=out)
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
        typer.echo(f"{stage:<24} {entry['status']:<7} {entry['digest'] or ''}".rstrip())
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
        bool,
        typer.Option(
            help="Print the run's id and page, wait for its end; exit 1 unless it completed."
        ),
    ] = False,
) -> None:
    """Run a deployment on the Prefect server with settings changed: --set alpha=3."""
    from flows.submit import submit as submit_run
    from flows.submit import wait_for

    run, page = submit_run(deployment, set_ or [], wait=0)
    state = run.state
    typer.echo(f"flow run {run.name} of {deployment}: {state.name if state else 'Scheduled'}")
    typer.echo(f"flow run id {run.id}\n{page}")
    if not wait:
        return
    run = wait_for(run.id)
    state = run.state
    typer.echo(f"flow run {run.name}: {state.name if state else 'no state'}")
    if not (state is not None and state.is_completed()):
        typer.echo(_one_line(str(state.message if state else "no state")), err=True)
        raise typer.Exit(EXIT_USER)


def _print_estimate(what: str, cost: Any, *, sample: str, note: str | None = None) -> None:
    """``--dry-run``'s output: what would run, the cost lines, and that nothing was written."""
    from foundation.cost import describe

    typer.echo(f"dry run: {what}")
    for line in describe(cost, sample=sample):
        typer.echo(line)
    if note is not None:
        typer.echo(f"note: {note}")
    typer.echo("nothing was written")


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
