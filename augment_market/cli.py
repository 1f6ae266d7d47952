"""The ``augment-market`` command line: one command per pipeline stage, plus ``run`` for the DAG.

Each command parses its options and calls one plain function from ``pipeline``; nothing here
knows how a stage works.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="SAN person-image generation for Re-ID augmentation.")
ingest_app = typer.Typer(no_args_is_help=True, help="Read a dataset folder into a store.")
app.add_typer(ingest_app, name="ingest")

StoreArg = Annotated[str, typer.Argument(help="Store folder or fsspec URL.")]


def _progress(label: str):  # type: ignore[no-untyped-def]
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


def _ingest(kind: str, source: Path, store: str, annotations: Path | None,
            overwrite: bool) -> None:
    from pipeline.ingest import ingest

    stamp = ingest(source, store, kind=kind, overwrite=overwrite,  # type: ignore[arg-type]
                   progress=_progress("ingest"))
    typer.echo(f"ingested {stamp.counts['images']} images into {store} "
               f"({stamp.counts['skipped']} skipped)")
    for note in stamp.report.get("skipped", [])[:20]:
        typer.echo(f"  skipped: {note}")
    if annotations is not None:
        from pipeline.segmentation import import_provided

        for kind_name in ("masks", "parsing"):
            import_provided(store, annotations, kind=kind_name)
        typer.echo(f"imported masks and parsing from {annotations}")


@ingest_app.command("market1501")
def ingest_market1501(
    source: Annotated[Path, typer.Argument(help="Market-1501-v15.09.15 folder.")],
    store: Annotated[str, typer.Option(help="Store folder or fsspec URL.")],
    annotations: Annotated[Path | None, typer.Option(
        help="Folder with masks/*.png and parsing/*.png to import by file name.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a store built from other files.")]
    = False,
) -> None:
    """Ingest Market-1501 (bounding_box_train, bounding_box_test, query)."""
    _ingest("market1501", source, store, annotations, overwrite)


@ingest_app.command("deepfashion")
def ingest_deepfashion(
    source: Annotated[Path, typer.Argument(help="DeepFashion In-shop folder (img/, lists).")],
    store: Annotated[str, typer.Option(help="Store folder or fsspec URL.")],
    annotations: Annotated[Path | None, typer.Option(
        help="Folder with masks/ and parsing/ PNGs to import by file name.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a store built from other files.")]
    = False,
) -> None:
    """Ingest DeepFashion In-shop (images resized to 256x256)."""
    _ingest("deepfashion", source, store, annotations, overwrite)


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
        for key in ("consistency",):
            if key in stamp.report:
                typer.echo(f"    {key}: {stamp.report[key]}")
    for run, count in summary.generated.items():
        typer.echo(f"generated  {run}: {count} images")


def main() -> None:
    app()
