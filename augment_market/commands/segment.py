"""``segment masks`` and ``segment parsing``: fill a store's masks or parsing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from augment_market.commands.common import (
    DeviceOption,
    StoreArg,
    on_store,
)
from foundation.errors import UserError

segment_app = typer.Typer(no_args_is_help=True, help="Fill masks or parsing in a store.")


@segment_app.command("masks")
def segment_masks(
    store: StoreArg,
    device: DeviceOption = "cpu",
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
        stamp = on_store(store, import_provided, provided, kind="masks", progress="masks")
    else:
        if backend == "detectron2" and importlib.util.find_spec("detectron2") is None:
            raise UserError(
                "detectron2 is not installed (it is not on the package registries); use the "
                "default --backend torchvision"
            )
        stamp = on_store(
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
    device: DeviceOption = "cpu",
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
        stamp = on_store(store, import_provided, provided, kind="parsing", progress="parsing")
    else:
        stamp = on_store(
            store,
            compute_parsing,
            device=device,
            batch_size=batch_size,
            weights=weights,
            flip=flip,
            progress="parsing",
        )
    typer.echo(f"parsing: {stamp.counts}")
