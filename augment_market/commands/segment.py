"""``segment masks`` and ``segment parsing``: fill a store's masks or parsing, as the flow's
``masks`` and ``parsing`` stages do (one settings object, the registry's run adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from augment_market.commands.common import DeviceOption, StoreArg, default, run_registered
from foundation.errors import UserError
from pipeline.settings import SegmentationSettings, SegmentSettings

segment_app = typer.Typer(no_args_is_help=True, help="Fill masks or parsing in a store.")
BatchOption = Annotated[int, typer.Option(help="Images per forward pass.")]
WeightsHelp = "{} (else the weights folders)."
ProvidedHelp = "Import {kind}/<stem>.png from this folder instead of running {model}."


def _segment(
    kind: Literal["masks", "parsing"],
    store: str,
    provided: Path | None,
    *,
    device: str,
    batch_size: int,
    weights: Path | None,
    flip: bool = False,
    backend: str = "torchvision",
) -> dict[str, Any]:
    """Run the ``kind`` stage (its model, or the PNGs of ``provided``); its stamp's report."""
    settings = SegmentSettings(
        kind=kind,
        source="model" if provided is None else "provided",
        annotations_dir=None if provided is None else str(provided),
        batch_size=batch_size,
        weights=None if weights is None else str(weights),
        flip=flip,
    )
    extra = {"backend": backend} if kind == "masks" and backend != "torchvision" else {}
    stamp = run_registered(kind, store, settings, device=device, extra=extra)
    typer.echo(f"{kind}: {stamp.counts}")
    return stamp.report  # type: ignore[no-any-return]


@segment_app.command("masks")
def segment_masks(
    store: StoreArg,
    device: DeviceOption = "cpu",
    batch_size: BatchOption = default(SegmentationSettings, "masks_batch_size"),
    weights: Annotated[
        Path | None,
        typer.Option(help=WeightsHelp.format("maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth")),
    ] = None,
    backend: Annotated[
        Literal["torchvision", "detectron2"],
        typer.Option(help="torchvision, or detectron2 if installed."),
    ] = "torchvision",
    provided: Annotated[
        Path | None, typer.Option(help=ProvidedHelp.format(kind="masks", model="Mask R-CNN"))
    ] = None,
) -> None:
    """Person masks: Mask R-CNN (highest-scoring person >= 0.5) or provided PNGs."""
    import importlib.util

    if provided is None and backend == "detectron2":
        if importlib.util.find_spec("detectron2") is None:
            raise UserError(
                "detectron2 is not installed (it is not on the package registries); use the "
                "default --backend torchvision"
            )
    report = _segment(
        "masks",
        store,
        provided,
        device=device,
        batch_size=batch_size,
        weights=weights,
        backend=backend,
    )
    for name in report.get("empty_masks", [])[:20]:
        typer.echo(f"  no person found: {name}")


@segment_app.command("parsing")
def segment_parsing(
    store: StoreArg,
    device: DeviceOption = "cpu",
    batch_size: BatchOption = default(SegmentationSettings, "parsing_batch_size"),
    weights: Annotated[
        Path | None, typer.Option(help=WeightsHelp.format("exp-schp-201908261155-lip.pth"))
    ] = None,
    flip: Annotated[bool, typer.Option(help="Flip test-time augmentation.")] = default(
        SegmentationSettings, "parsing_flip"
    ),
    provided: Annotated[
        Path | None, typer.Option(help=ProvidedHelp.format(kind="parsing", model="SCHP"))
    ] = None,
) -> None:
    """20-class LIP human parsing: SCHP (ResNet-101 AugmentCE2P) or provided PNGs."""
    _segment(
        "parsing", store, provided, device=device, batch_size=batch_size, weights=weights, flip=flip
    )
