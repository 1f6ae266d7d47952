"""Commands on datasets and stores: ``synth``, ``ingest KIND``, ``info``, ``export``,
``migrate``. None of them imports torch or Prefect (tests/augment_market/test_light_imports.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from augment_market.commands.common import (
    StoreArg,
    default,
    field_option,
    naming,
    on_store,
    progress_bar,
    run_registered,
)
from pipeline.datasets import DATASETS, Dataset
from pipeline.settings import DatasetSettings, SegmentSettings


def _ingest_kinds() -> dict[str, dict[str | None, Dataset]]:
    """`ingest KIND`'s kinds: the dataset registry's commands in its order, each with its
    kinds by ``--setting`` (None where it has one kind; CUHK03-NP's two share ``cuhk03``)."""
    kinds: dict[str, dict[str | None, Dataset]] = {}
    for dataset in DATASETS.values():
        kinds.setdefault(dataset.command, {})[dataset.setting] = dataset
    return kinds


INGEST_KINDS = _ingest_kinds()
SETTINGS = tuple(name for kinds in INGEST_KINDS.values() for name in kinds if name is not None)
if TYPE_CHECKING:
    IngestKind = str
    IngestSetting = str
else:  # typer offers a Literal's values as the choices
    IngestKind = Literal[tuple(INGEST_KINDS)]
    IngestSetting = Literal[SETTINGS]


def _taking(option: str) -> dict[str, Dataset]:
    """The commands whose kinds declare ``option`` (a :class:`Dataset` help attribute), with
    the first such kind: what an option only some kinds take is for."""
    return {
        command: next(iter(kinds.values()))
        for command, kinds in INGEST_KINDS.items()
        if getattr(next(iter(kinds.values())), option) is not None
    }


def _help(option: str) -> str:
    """``COMMAND: text`` for each command whose kinds declare ``option``."""
    return " ".join(
        f"{command}: {getattr(kind, option)}" for command, kind in _taking(option).items()
    )


def _only_for(option: str, flag: str, kind: str) -> None:
    """Refuse ``flag`` for a ``kind`` whose datasets do not declare ``option``."""
    if kind not in _taking(option):
        raise typer.BadParameter(f"{flag} is for {' and '.join(_taking(option))} only, not {kind}")


def _image_size(value: str | None) -> tuple[int, int] | None:
    """``HxW`` (e.g. ``256x128``) as (height, width)."""
    if value is None:
        return None
    height, _, width = value.lower().partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise typer.BadParameter(f"{value!r} is not HEIGHTxWIDTH in pixels, e.g. 256x128")
    return int(height), int(width)


def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write the dataset to.")],
    ids: Annotated[int, typer.Option(help="Identities (split between train and test).")] = 24,
    images_per_id: Annotated[int, typer.Option(help="Images per identity.")] = 8,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same bytes.")] = 0,
) -> None:
    """Write the synthetic dataset (Market-1501 layout, with ground-truth masks/parsing)."""
    from pipeline.synthetic_dataset import generate_synthetic

    with naming(str(out), "it writes every file again"):
        summary = generate_synthetic(out, ids=ids, images_per_id=images_per_id, seed=seed)
    typer.echo(f"wrote {summary} to {out}")


def ingest(
    kind: Annotated[
        IngestKind,
        typer.Argument(
            help="Dataset and folder layout: "
            + " ".join(f"{command}: {kind.help}" for command, kind in _taking("help").items()),
        ),
    ],
    source: Annotated[Path, typer.Argument(help="The dataset's folder: " + _help("source_help"))],
    store: Annotated[str, typer.Option(help="Store folder or fsspec URL.")],
    annotations: Annotated[
        Path | None,
        typer.Option(help="Folder with masks/*.png and parsing/*.png to import by file name."),
    ] = None,
    overwrite: bool = field_option(DatasetSettings, "overwrite"),
    image_size: Annotated[
        str | None,
        typer.Option(
            help="Store size HxW (default: Market-1501 128x64, DeepFashion 256x256, the others "
            "256x128; docs/datasets.md).",
        ),
    ] = None,
    with_val: Annotated[bool, typer.Option("--with-val", help=_help("with_val_help"))] = default(
        DatasetSettings, "with_val"
    ),
    setting: Annotated[
        IngestSetting | None,
        typer.Option(help=_help("setting_help") + f" Default: {SETTINGS[0]}."),
    ] = None,
) -> None:
    """Read a dataset folder into a store, as the dataset KIND lays it out."""
    from pipeline.stage_registry import REGISTRY, StageJob

    if with_val:
        _only_for("with_val_help", "--with-val", kind)
    if setting is not None:
        _only_for("setting_help", "--setting", kind)
    kinds = INGEST_KINDS[kind]
    store_kind = kinds[setting or next(iter(kinds))].name
    settings = DatasetSettings(
        source=str(source),
        kind=store_kind,
        image_size=_image_size(image_size),
        with_val=with_val,
        overwrite=overwrite,
    )
    with naming(f"store {store}"), progress_bar("ingest") as report:
        stamp = REGISTRY["ingest"].run(settings, StageJob(None, store, progress=report))
    assert stamp is not None
    typer.echo(
        f"ingested {stamp.counts['images']} images into {store} ({stamp.counts['skipped']} skipped)"
    )
    for note in stamp.report.get("skipped", [])[:20]:
        typer.echo(f"  skipped: {note}")
    for difference in stamp.report.get("count_differences", []):
        typer.echo(f"warning: {difference}", err=True)
    if annotations is not None:
        for name in ("masks", "parsing"):
            provided = SegmentSettings(
                kind=name, source="provided", annotations_dir=str(annotations)
            )
            run_registered(name, store, provided, label=f"import {name}")
        typer.echo(f"imported masks and parsing from {annotations}")


def info(store: StoreArg) -> None:
    """Counts per split, identities, finished stages and their findings, store size."""
    from storage import PersonStore

    summary = on_store(store, PersonStore.summary, write=False)
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

    written = on_store(
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for command in (synth, ingest, info, export, migrate):
        app.command()(command)
