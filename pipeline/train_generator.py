"""Generator stage: train SAN on a store's training pairs (stage ``generator``).

The store's arrays for the rows the training pairs use are loaded into memory once (the fast
path for training) and handed to :func:`san_model.train.train_san`. Checkpoints are written
every ``checkpoint_interval`` steps and resume is exact, so a crash at hour five loses at most
one interval.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from foundation.weights import sha256_of
from pipeline.pairs import TRAIN_TABLE
from san_model.config import SANConfig
from san_model.train import SANTrainData, TrainResult, train_san
from storage import PersonStore, StageStamp

INPUTS = ("pairs", "masks", "parsing")


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
    progress: Callable[[int, int], None] | None = None,
) -> StageStamp | None:
    """Train the generator into ``run_dir`` and stamp the ``generator`` stage.

    Under ``torchrun`` every rank trains its slice of each batch (DDP); rank 0 alone holds the
    stage's lock and writes its stamp, the other ranks return None.

    Args:
        config: SAN settings; ``config.image_size`` must equal the store's image size.
        run_dir: checkpoints, TensorBoard logs and sample grids go here.
        resume: continue from ``run_dir``'s checkpoint (exactly) when it exists.
        max_steps: stop after this many steps in total (default: the whole schedule).
        pretrained_vgg: ImageNet VGG-19 for the perceptual loss; False only in the declared
            offline mode (the stamp records it).
        progress: called as ``progress(steps_done, steps_total)``.
    """
    if tuple(config.image_size) != (store.height, store.width):
        raise ValueError(
            f"config.image_size {config.image_size} differs from the store's "
            f"{store.height}x{store.width} images ({store.url})"
        )
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
