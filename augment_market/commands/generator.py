"""The generator's commands: ``pairs``, ``train``, ``evaluate``, ``evaluate-folder`` and
``synthesize`` (the generator's set and the controls)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

if TYPE_CHECKING:
    from storage import StageStamp

from augment_market.commands.common import (
    DeviceOption,
    DryRunOption,
    StoreArg,
    default,
    field_option,
    on_store,
    print_estimate,
    run_registered,
    settings_of,
)
from pipeline.model_settings import GeneratorSettings
from pipeline.settings import EvaluateSettings, PairsSettings, SynthesisSettings
from san_model.config import SANConfig


def pairs(
    store: StoreArg,
    train_pairs: Annotated[
        int | None,
        typer.Option(min=1, help="Training pairs (default: every ordered same-identity pair)."),
    ] = default(PairsSettings, "train_pairs"),
    test_pairs: Annotated[int | None, typer.Option(min=1, help="Test pairs.")] = default(
        PairsSettings, "test_pairs"
    ),
    preset: Annotated[
        Literal["market1501", "deepfashion"] | None,
        typer.Option(
            help="Paper counts: market1501 (243,200/12,000) or deepfashion (106,966/8,570).",
        ),
    ] = None,
    seed: int = field_option(PairsSettings, "seed"),
    train_pairs_file: Path | None = field_option(PairsSettings, "train_pairs_file"),
    test_pairs_file: Path | None = field_option(PairsSettings, "test_pairs_file"),
    test_from: Literal["gallery", "gallery+query"] = field_option(PairsSettings, "test_from"),
) -> None:
    """Same-identity (source, target) pairs for training and testing: published lists or drawn."""
    from pipeline.pairs import PairsConfig

    if preset is not None:
        paper = getattr(PairsConfig, preset)()
        train_pairs, test_pairs = paper.train_pairs, paper.test_pairs
    settings = PairsSettings(
        train_pairs=train_pairs,
        test_pairs=test_pairs,
        seed=seed,
        train_pairs_file=None if train_pairs_file is None else str(train_pairs_file.resolve()),
        test_pairs_file=None if test_pairs_file is None else str(test_pairs_file.resolve()),
        test_from=test_from,
    )
    stamp = run_registered("pairs", store, settings)
    typer.echo(f"pairs: {stamp.counts}")


def train(
    store: StoreArg,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoints, TensorBoard, samples.")],
    preset: Annotated[
        Literal["market1501", "deepfashion", "demo", "tiny"],
        typer.Option(help="Paper settings of the dataset, or the small CPU demo/tiny models."),
    ] = default(GeneratorSettings, "preset"),
    resume: Annotated[
        bool,
        typer.Option(
            help="Continue from the run's checkpoint (--no-resume: start afresh over it)."
        ),
    ] = default(GeneratorSettings, "resume"),
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace a checkpoint in OUT trained under other settings or inputs."),
    ] = False,
    max_steps: Annotated[int | None, typer.Option(help="Stop after this many steps.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Override the preset's epochs.")] = None,
    perceptual: Annotated[
        bool, typer.Option(help="Perceptual loss (eq. 6); --no-perceptual: its ablation.")
    ] = default(SANConfig, "use_perceptual"),
    mask_inputs: Annotated[
        bool, typer.Option(help="Mask inputs; --no-mask-inputs: their ablation.")
    ] = default(SANConfig, "use_mask_inputs"),
    blocks: Annotated[int | None, typer.Option(help="Ablation: number of SAN blocks T.")] = None,
    weights: Annotated[
        Path | None,
        typer.Option(help="vgg19-dcbfe2b4.pth for the perceptual loss (else the weights folders)."),
    ] = None,
    device: DeviceOption = "cpu",
    dry_run: DryRunOption = False,
) -> None:
    """Train the SAN generator on the store's training pairs (torchrun for several GPUs)."""
    from foundation.progress import TrainingLosses
    from pipeline.train_generator import estimate_training, shortened_schedule

    overrides = {
        "use_perceptual": perceptual,
        "use_mask_inputs": mask_inputs,
        "epochs": epochs,
        "num_blocks": blocks,
    }
    settings = settings_of(
        GeneratorSettings,
        "generator settings",
        preset=preset,
        overrides=overrides,
        max_steps=max_steps,
        resume=resume,
    )
    config = settings.san_config()
    if dry_run:
        cost = on_store(store, estimate_training, write=False, config=config, max_steps=max_steps)
        height, width = config.image_size
        print_estimate(
            f"SAN preset {preset}, {height}x{width}, {config.epochs} x {config.epoch_length:,} "
            "pairs (epochs x pairs per epoch)",
            cost,
            sample="pair",
            note=shortened_schedule(config, max_steps),
        )
        return
    if (note := shortened_schedule(config, max_steps)) is not None:
        typer.echo(f"note: {note}", err=True)
    stamp = run_registered(
        "generator",
        store,
        settings,
        label="train",
        folder=out,
        status=TrainingLosses(out).poll,
        device=device,
        extra={"overwrite": overwrite, "vgg_weights": weights},
    )
    if stamp is None:  # a non-zero torchrun rank
        return
    typer.echo(f"trained {stamp.counts['steps']} steps; checkpoint {stamp.report['checkpoint']}")


def evaluate(
    store: StoreArg,
    run: Annotated[Path, typer.Option(help="Trained generator run folder.")],
    device: DeviceOption = "cpu",
    offline: Annotated[
        bool,
        typer.Option(
            help="Declared offline mode: pixel metrics only (no Inception/AlexNet weights)."
        ),
    ] = False,
    fid_variant: Literal["torchvision", "tf-fid"] = field_option(EvaluateSettings, "fid_variant"),
) -> None:
    """FID, LPIPS and mask-LPIPS on the test pairs, beside the paper's table 1."""
    settings = EvaluateSettings(fid_variant=fid_variant)
    stamp = run_registered("evaluate", store, settings, folder=run, device=device, offline=offline)
    typer.echo(Path(stamp.report["results"]).read_text())
    typer.echo(f"examples: {stamp.report['examples']}")


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
    device: DeviceOption = "cpu",
    offline: Annotated[
        bool,
        typer.Option(help="Pixel metrics only (no Inception/AlexNet weights)."),
    ] = False,
) -> None:
    """Score another method's outputs (PATN/GFLA names) exactly as the evaluate stage does."""
    from pipeline.evaluate_folder import add_to_comparison
    from pipeline.evaluate_folder import evaluate_folder as score_folder

    results = on_store(
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
    alpha: int = field_option(SynthesisSettings, "alpha", min=2),
    seed: int = field_option(SynthesisSettings, "seed"),
    write_pairs: Annotated[
        Path | None,
        typer.Option(
            help="Write the plan as a PATN/GFLA `from,to` list of file names to this CSV file "
            "and stop (run another method on it, then --source folder)."
        ),
    ] = None,
    device: DeviceOption = "cpu",
) -> None:
    """Write an augmentation set into the store: the generator's alpha-augmented training set
    (the paper's), or a control made from the same assignments."""
    from pipeline.augmentation_sets import set_group
    from pipeline.augmentation_sets import write_pairs as write_plan

    if write_pairs is not None:
        count = on_store(store, write_plan, write_pairs, alpha=alpha, seed=seed, write=False)
        typer.echo(f"wrote {count} pairs (alpha {alpha}, seed {seed}) to {write_pairs}")
        return
    from pipeline.synthesize import synthesize as run_synthesis

    stamp: StageStamp = on_store(
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


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    for command in (pairs, train, evaluate, synthesize):
        app.command()(command)
    app.command("evaluate-folder")(evaluate_folder)
