"""Generator stage: train SAN on a store's training pairs (stage ``generator``).

The store's arrays for the rows the training pairs use are loaded into memory once (the fast
path for training) and handed to :func:`san_model.train.train_san`. Checkpoints are written
every ``checkpoint_interval`` steps and resume is exact, so a crash at hour five loses at most
one interval.

Everything the run needs is checked under the stage's lock before the run begins (and before
anything is written to the run folder): enough training pairs for a batch, the VGG-19 file
when the perceptual loss is on, a readable checkpoint to resume, and no checkpoint of other
settings that training afresh would replace (unless ``overwrite``). A rerun that fails these
checks keeps the finished stage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from foundation.cost import TrainingCost
from foundation.errors import SettingsError, UserError
from foundation.runs import check_checkpoint_kept
from foundation.weights import MissingWeightsError, check_torch_file, resolve_weights, sha256_of
from pipeline.pairs import TRAIN_TABLE, NotEnoughPairsError
from san_model.checkpoint import VGG19_WEIGHTS, check_vgg19_weights, checkpoint_path
from san_model.config import SANConfig
from san_model.cost import training_cost
from san_model.train import SANTrainData, TrainResult, train_san
from storage import PersonStore, StageStamp

INPUTS = ("pairs", "masks", "parsing")
logger = logging.getLogger(__name__)


class MissingRunError(UserError, FileNotFoundError):
    """No trained generator where a run folder was given."""


def generator_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint of a trained generator run (folder or file), checked to load.

    Raises:
        MissingRunError: no checkpoint there (the message says how to train one).
        UnreadableWeightsError: the checkpoint is truncated or holds pickled objects.
    """
    path = checkpoint_path(run_dir)
    if not path.is_file():
        raise MissingRunError(
            f"no trained generator in {run_dir} ({path} does not exist); train one with "
            f"`augment-market train STORE --out {run_dir}`, or give the folder a training "
            "run wrote to"
        )
    check_torch_file(path, what="generator checkpoint")
    return path


def check_trainable(
    config: SANConfig,
    data: SANTrainData,
    *,
    run_dir: Path,
    resume: bool,
    pretrained_vgg: bool,
    vgg_weights: str | Path | None,
    run_tag: str | None = None,
    overwrite: bool = False,
) -> None:
    """What :func:`train_san` would find wrong only after it starts writing ``run_dir``.

    Raises:
        NotEnoughPairsError: fewer training pairs than the batch size.
        MissingWeightsError: the VGG-19 file of the perceptual loss is missing (the message
            says how to train without it).
        UnreadableWeightsError: the VGG-19 file or the checkpoint to resume does not load, or
            the VGG-19 file is another network's.
        RunFolderInUseError: ``resume``, but the checkpoint there has another ``run_tag``
            (other settings or inputs) and ``overwrite`` is off: training afresh would
            replace it.
    """
    if len(data.pairs) < config.batch_size:
        raise NotEnoughPairsError(
            f"only {len(data.pairs)} training pairs for batches of {config.batch_size}: every "
            "batch would repeat the same pairs; draw more pairs (more identities, or "
            "`augment-market pairs` with a larger --train-pairs) or lower the batch size"
        )
    if config.use_perceptual and pretrained_vgg:
        try:
            vgg = resolve_weights(VGG19_WEIGHTS, path=vgg_weights)
        except MissingWeightsError as error:
            raise MissingWeightsError(
                f"{error} Or train without the perceptual loss (eq. 6): --no-perceptual "
                "(use_perceptual=False)"
            ) from None
        check_vgg19_weights(vgg, layer=config.perceptual_layer)
    checkpoint = checkpoint_path(run_dir)
    if resume and checkpoint.is_file():
        check_torch_file(checkpoint, what="generator checkpoint")
        if run_tag is not None:
            check_checkpoint_kept(
                checkpoint,
                run_tag=run_tag,
                config=config.to_dict(),
                what="generator checkpoint",
                inputs="the pairs, masks or parsing it read were made again since",
                overwrite=overwrite,
            )


def shortened_schedule(config: SANConfig, max_steps: int | None) -> str | None:
    """The warning that ``max_steps`` stops the run before its schedule ends while the
    learning rate still decays over the whole schedule; None when it does not."""
    if max_steps is None or max_steps >= config.total_steps:
        return None
    return (
        f"max_steps {max_steps} stops training before the schedule's {config.total_steps:,} "
        f"steps, and the learning rate still decays over all {config.total_steps:,} (it ends "
        f"at {1 - max_steps / config.total_steps:.0%} of its start); lower epochs to shorten "
        "the schedule itself"
    )


def check_image_size(store: PersonStore, config: SANConfig) -> None:
    """Raise :class:`SettingsError` unless ``config.image_size`` is the store's image size."""
    if tuple(config.image_size) != (store.height, store.width):
        raise SettingsError(
            f"config.image_size {config.image_size} differs from the store's "
            f"{store.height}x{store.width} images ({store.url}); use the preset of the "
            "dataset (e.g. --preset deepfashion for 256x256)"
        )


def estimate_training(
    store: PersonStore, *, config: SANConfig, max_steps: int | None = None
) -> TrainingCost:
    """What training ``config`` on ``store`` would cost (``train --dry-run``); reads the store's
    metadata only and writes nothing.

    Raises:
        SettingsError: ``config.image_size`` is not the store's image size.
    """
    check_image_size(store, config)
    return training_cost(config, max_steps=max_steps)


def load_training_data(store: PersonStore, pairs_table: str = TRAIN_TABLE) -> SANTrainData:
    """The arrays and pairs of a store's pairs table, compacted to the rows the pairs use.

    Returns:
        :class:`SANTrainData` with images [M, H, W, 3], masks, parsing [M, H, W] uint8 and
        pairs int64 [P, 2] indexing those M rows.
    """
    table = store.read_table(pairs_table)
    pairs = table[["source", "target"]].to_numpy(np.int64)
    rows, compact = np.unique(pairs, return_inverse=True)
    arrays = store.load_in_memory(("images", "masks", "parsing"), rows=rows)
    return SANTrainData(
        images=arrays["images"],
        masks=arrays["masks"],
        parsing=arrays["parsing"],
        pairs=compact.reshape(pairs.shape),
    )


def train_generator(
    store: PersonStore,
    run_dir: str | Path,
    *,
    config: SANConfig,
    device: str = "cpu",
    resume: bool = True,
    max_steps: int | None = None,
    pretrained_vgg: bool = True,
    vgg_weights: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> StageStamp | None:
    """Train the generator into ``run_dir`` and stamp the ``generator`` stage.

    Under ``torchrun`` every rank trains its slice of each batch (DDP); rank 0 alone holds the
    stage's lock and writes its stamp, the other ranks return None.

    Args:
        config: SAN settings; ``config.image_size`` must equal the store's image size.
        run_dir: checkpoints, TensorBoard logs and sample grids go here.
        resume: continue from ``run_dir``'s checkpoint (exactly) when it exists; False starts
            afresh and replaces it.
        max_steps: stop after this many steps in total (default: the whole schedule).
        pretrained_vgg: ImageNet VGG-19 for the perceptual loss; False only in the declared
            offline mode (the stamp records it).
        overwrite: replace a checkpoint in ``run_dir`` trained under other settings or
            inputs (else such a run is refused: it would not continue it).
        progress: called as ``progress(steps_done, steps_total)``.

    Raises:
        SettingsError: ``config.image_size`` is not the store's image size.
        NotEnoughPairsError, MissingWeightsError, UnreadableWeightsError, RunFolderInUseError: see
            :func:`check_trainable`; the stage's earlier stamp is kept.
    """
    check_image_size(store, config)
    run_dir = Path(run_dir)
    target = config.total_steps if max_steps is None else min(max_steps, config.total_steps)
    training = {"san": config.to_dict(), "pretrained_vgg": pretrained_vgg and config.use_perceptual}
    settings = {**training, "run_dir": str(run_dir.resolve()), "steps": target}
    # The checkpoint is continued only by a run on these settings and these inputs.
    run_tag = store.run_digest("generator", settings=training, inputs=INPUTS)

    def train(data: SANTrainData) -> TrainResult:
        return train_san(
            config,
            data,
            run_dir,
            device=device,
            resume=resume,
            max_steps=target,
            pretrained_vgg=pretrained_vgg,
            vgg_weights=vgg_weights,
            progress=progress,
            run_tag=run_tag,
        )

    if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 alone keeps the stage books
        train(load_training_data(store))
        return None
    with store.stage("generator", config=settings, inputs=INPUTS, n_blocks=1) as run:
        data = load_training_data(store)
        check_trainable(
            config,
            data,
            run_dir=run_dir,
            resume=resume,
            pretrained_vgg=pretrained_vgg,
            vgg_weights=vgg_weights,
            run_tag=run_tag,
            overwrite=overwrite,
        )
        run.begin()  # train_san writes checkpoints, logs and samples into run_dir
        result = train(data)
        run.mark_done(0)
        return run.finish(
            counts={"steps": result.step, "train_pairs": len(data.pairs)},
            report={
                "checkpoint": str(result.checkpoint),
                "checkpoint_sha256": sha256_of(result.checkpoint),
                "losses": result.losses,
                "pairs_per_second": result.pairs_per_second,
                "resumed_at_step": result.resumed_at,
                "perceptual_loss": "VGG-19 ImageNet"
                if settings["pretrained_vgg"]
                else "off (declared offline mode)"
                if not config.use_perceptual
                else "random VGG-19 (test mode)",
            },
        )
